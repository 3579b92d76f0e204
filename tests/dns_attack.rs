//! The DNS server attacked: by a host on another interface of the host (forged sandbox
//! sources, reflection to a victim, TCP), by sandboxes (another network's gateway, forged
//! loopback and neighbour sources with raw sockets, TCP connections held open), and by
//! whoever plants a FIFO or a symlink at `RUN_DIR/dns.port`.

mod common;

use std::io::BufRead as _;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Host, Netns, WithInternet};
use serde_json::Value;

/// The test client of tests/dns.rs.
const DNSQ: &str = include_str!("common/dnsq.py");
/// Hostile clients.
const ATTACK: &str = include_str!("common/dnsattack.py");

const NOERROR: u64 = 0;
const REFUSED: u64 = 5;

fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn port_file(h: &Host) -> std::path::PathBuf {
    h.run_dir().join("dns.port")
}

/// The port recorded in a regular `dns.port`, once there.
fn port(h: &Host) -> u16 {
    let file = port_file(h);
    let mut port = 0;
    assert!(
        within(Duration::from_secs(10), || {
            port = std::fs::symlink_metadata(&file)
                .ok()
                .filter(|m| m.is_file())
                .and_then(|_| std::fs::read_to_string(&file).ok())
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            port != 0
        }),
        "no dns.port"
    );
    port
}

fn dns_status(h: &Host) -> Value {
    let out = h.weft(&["--format", "json", "daemon", "status"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["status"]["dns"].clone()
}

fn counter(h: &Host, name: &str) -> u64 {
    dns_status(h)[name].as_u64().unwrap_or(0)
}

fn gateway(h: &Host, net: &str) -> String {
    let v = h.json(&["network", "inspect", net]);
    v[0]["subnets"][0]["gateway"].as_str().unwrap().to_string()
}

/// One query from `sandbox` (dnsq.py `q`).
fn ask(h: &Host, sandbox: &str, server: &str, port: u16, name: &str, tcp: bool) -> Value {
    let port = port.to_string();
    let mut args = vec![
        "exec", sandbox, "--", "python3", "-c", DNSQ, "q", server, &port, name, "A",
    ];
    if tcp {
        args.push("tcp");
    }
    let out = h.weft_ok(&args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn values(r: &Value) -> Vec<String> {
    r["answers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["value"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// An upstream resolver (dnsq.py `serve`) whose query names are collected.
fn upstream(ns: &Netns, addr: &str) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = ns
        .cmd("python3", &["-u", "-c", DNSQ, "serve", addr, "53"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening"), "upstream: {line:?}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for l in reader.lines().map_while(Result::ok) {
            s.lock().unwrap().push(l);
        }
    });
    (child, seen)
}

/// A datagram counter (dnsattack.py `listen`) running in `ns`, once it listens.
fn listener(ns: &Netns, addr: &str, port: &str, secs: &str) -> Child {
    let mut child = ns
        .cmd("python3", &["-u", "-c", ATTACK, "listen", addr, port, secs])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening"), "{line:?}");
    child
}

fn count_of(child: Child) -> u64 {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no count: {out:?}"))
}

#[test]
fn a_remote_host_with_a_sandboxs_address_gets_nothing_and_forwards_nothing() {
    if !common::root_or_skip(
        "a_remote_host_with_a_sandboxs_address_gets_nothing_and_forwards_nothing",
    ) {
        return;
    }
    // The "internet" namespace plays a host on the LAN (another interface of the host), and
    // the sandbox's --dns upstream.
    let w = WithInternet::new("dnxr");
    let h = &w.host;
    h.config("agent = true\n");
    let lan = &w.inet;
    let (up, seen) = upstream(lan, "198.51.100.2");
    let _up = Reap(up);
    h.weft_ok(&["network", "create", "a", "--subnet", "10.191.1.0/24"]);
    h.sleeper("x", &["--network", "a", "--dns", "198.51.100.2"]);
    let gw = gateway(h, "a");
    let p = port(h);
    let x_ip = h.ip_of("x", 0);
    // The sandbox itself is answered and forwarded for.
    assert_eq!(
        values(&ask(h, "x", &gw, p, "legit.example", false)),
        ["203.0.113.7"]
    );
    // The LAN host routes the sandboxes' subnet to the host; the host does not check
    // sources against routes (rp_filter off, as on many routers), the worst case.
    lan.ip(&["route", "add", "10.191.1.0/24", "via", "198.51.100.1"]);
    lan.ip(&["addr", "add", "198.51.100.99/24", "dev", "eth0"]);
    h.sh("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.uplink.rp_filter=0");
    let refused = counter(h, "refused");
    let forwarded = counter(h, "forwarded");
    // Reflection: a query "from" a victim (here an address of the LAN host's too, so a
    // reply would be seen) to GATEWAY:PORT and GATEWAY:53 gets no reply at all.
    for dport in [p.to_string(), "53".to_string()] {
        let out = common::ok(&mut lan.cmd(
            "python3",
            &["-c", ATTACK, "from", "198.51.100.99", &gw, &dport, "x"],
        ));
        assert_eq!(out.trim(), "none", "to port {dport}");
    }
    // Forged sandbox source, to the server's port: the sandbox receives nothing (a sniffer
    // in it counts the marker) and nothing is forwarded on its --dns.
    let sniff = h.sniff("x", "eth0", &[b"spoofedleak"], 3);
    let ps = p.to_string();
    let spoof = |dport: &str, name: &str| {
        common::ok(&mut lan.cmd(
            "python3",
            &["-c", ATTACK, "spoof", &x_ip, "40000", &gw, dport, name, "5"],
        ));
    };
    spoof(&ps, "spoofedleak.example");
    assert_eq!(sniff.counts(), [0], "a reply reached the sandbox");
    // To port 53 (redirected only from the bridges: from outside it is the host's own port
    // 53, closed here, whose ICMP error goes to the forged source, the kernel's doing):
    // nothing forwarded either.
    spoof("53", "spoofedleak53.example");
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("spoofedleak")),
        "forwarded for a forged source: {:?}",
        seen.lock().unwrap()
    );
    assert_eq!(counter(h, "forwarded"), forwarded);
    // The server did see them (the test is not vacuous): refused, silently.
    assert!(counter(h, "refused") >= refused + 6, "{}", dns_status(h));
    // TCP from the LAN host (its handshake proves its own address): REFUSED, no names.
    let out = common::ok(&mut lan.cmd(
        "python3",
        &["-c", DNSQ, "q", &gw, &p.to_string(), "x", "A", "tcp"],
    ));
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["rcode"], REFUSED, "{r}");
    assert!(values(&r).is_empty());
}

/// A child killed and reaped when the test ends, passed or not.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_sandbox_cannot_use_another_networks_gateway_or_forge_sources() {
    if !common::root_or_skip("a_sandbox_cannot_use_another_networks_gateway_or_forge_sources") {
        return;
    }
    let h = Host::new("dnxs");
    h.config("agent = true\n");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.191.2.0/24"]);
    h.weft_ok(&["network", "create", "b", "--subnet", "10.191.3.0/24"]);
    h.sleeper("x", &["--network", "a"]);
    h.sleeper("y", &["--network", "a"]);
    h.sleeper("z", &["--network", "b"]);
    let (gw_a, gw_b) = (gateway(&h, "a"), gateway(&h, "b"));
    let p = port(&h);
    let z_ip = h.ip_of("z", 0);
    assert_eq!(values(&ask(&h, "z", &gw_b, p, "z", false)), [z_ip.as_str()]);
    // x (on a) asks b's gateway, at the server's port and at 53: no reply over UDP (it
    // arrived on a's bridge), REFUSED over TCP; never z's address.
    for dport in [p, 53] {
        let r = ask(&h, "x", &gw_b, dport, "z", false);
        assert!(r["rcode"] != NOERROR || values(&r).is_empty(), "{r}");
        assert!(!values(&r).contains(&z_ip), "{r}");
        let r = ask(&h, "x", &gw_b, dport, "z", true);
        assert!(!values(&r).contains(&z_ip), "{r}");
    }
    // Forged sources from x's raw socket: z's address (another network), y's (a
    // neighbour) and the host's loopback (route_localnet is on for bridges) with a host
    // service listening there: nothing reaches the service, y, or the server as x.
    let service = listener(&h.ns, "127.0.0.1", "40053", "3");
    let sniff_y = h.sniff("y", "eth0", &[b"forgedname"], 3);
    let y_ip = h.ip_of("y", 0);
    for src in [z_ip.as_str(), y_ip.as_str(), "127.0.0.1"] {
        h.weft_ok(&[
            "exec",
            "x",
            "--",
            "python3",
            "-c",
            ATTACK,
            "spoof",
            src,
            "40053",
            &gw_a,
            &p.to_string(),
            "forgedname.example",
            "3",
        ]);
    }
    assert_eq!(count_of(service), 0, "a reply reached a loopback service");
    assert_eq!(sniff_y.counts(), [0], "a reply reached the neighbour");
    // And the server still answers everyone.
    assert_eq!(
        values(&ask(&h, "y", &gw_a, p, "x", false)),
        [h.ip_of("x", 0)]
    );
}

#[test]
fn tcp_connections_held_open_starve_no_other_sandbox() {
    if !common::root_or_skip("tcp_connections_held_open_starve_no_other_sandbox") {
        return;
    }
    let h = Host::new("dnxt");
    h.config("agent = true\n");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.191.4.0/24"]);
    h.sleeper("x", &["--network", "a"]);
    h.sleeper("hog", &["--network", "a"]);
    h.sleeper("y", &["--network", "a"]);
    let gw = gateway(&h, "a");
    let p = port(&h);
    let pid = h.json(&["daemon", "status"])["status"]["pid"].clone();
    let ps = p.to_string();
    // One sandbox opens 200 connections (more than the server serves at once), each
    // announcing a 64 KiB query and then sending a byte a second; the host opens 40 more.
    let start = |cmd: &mut std::process::Command| {
        let mut c = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("open"), "{line:?}");
        c
    };
    let hog = start(&mut h.weft_cmd(&[
        "exec", "hog", "--", "python3", "-u", "-c", ATTACK, "hog", &gw, &ps, "200", "6",
    ]));
    let host = start(
        &mut h
            .ns
            .cmd("python3", &["-u", "-c", ATTACK, "hog", &gw, &ps, "40", "6"]),
    );
    let (_hog, _host) = (Reap(hog), Reap(host));
    std::thread::sleep(Duration::from_millis(300));
    let x_ip = h.ip_of("x", 0);
    for _ in 0..5 {
        let r = ask(&h, "y", &gw, p, "x", true);
        assert_eq!(values(&r), [x_ip.as_str()], "{r}");
    }
    assert_eq!(values(&ask(&h, "y", &gw, p, "x", false)), [x_ip.as_str()]);
    assert_eq!(h.json(&["daemon", "status"])["status"]["pid"], pid);
}

#[test]
fn a_fifo_or_symlink_at_dns_port_blocks_no_command_and_is_replaced() {
    if !common::root_or_skip("a_fifo_or_symlink_at_dns_port_blocks_no_command_and_is_replaced") {
        return;
    }
    let h = Host::new("dnxf");
    h.config("agent = true\n");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.191.5.0/24"]);
    let p = port(&h);
    let file = port_file(&h);
    // A FIFO: opening it to read would wait for a writer forever. Each plant is made aside and
    // renamed over the file, atomically: the agent may rewrite the file at any moment, and a
    // remove-then-create lost that race under load (`mkfifo`: File exists).
    let aside = h.dir.join("plant");
    nix_mkfifo(&aside);
    std::fs::rename(&aside, &file).unwrap();
    let mut cmd = h
        .weft_cmd(&["network", "create", "b", "--subnet", "10.191.6.0/24"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let finished = within(Duration::from_secs(20), || {
        matches!(cmd.try_wait(), Ok(Some(_)))
    });
    if !finished {
        let _ = cmd.kill();
        let _ = cmd.wait();
        panic!("`network create` blocked on a FIFO at dns.port");
    }
    assert!(cmd.wait().unwrap().success());
    // The agent records its port again (a regular file), and b's redirect works.
    assert_eq!(port(&h), p);
    h.sleeper("x", &["--network", "b"]);
    h.sleeper("y", &["--network", "b"]);
    let gw_b = gateway(&h, "b");
    let x_ip = h.ip_of("x", 0);
    assert!(
        within(Duration::from_secs(5), || values(&ask(
            &h, "y", &gw_b, 53, "x", false
        )) == [x_ip.as_str()]),
        "no answer through b's port 53"
    );
    // A symlink to a file of someone else's: replaced, never written through.
    let victim = h.dir.join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    std::os::unix::fs::symlink(&victim, &aside).unwrap();
    std::fs::rename(&aside, &file).unwrap();
    assert_eq!(port(&h), p);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    // Garbage: replaced too.
    std::fs::write(&aside, "-1 or 99999; drop\n").unwrap();
    std::fs::rename(&aside, &file).unwrap();
    assert!(within(Duration::from_secs(3), || std::fs::read_to_string(
        &file
    )
    .is_ok_and(|t| t.trim() == p.to_string())));
}

fn nix_mkfifo(path: &std::path::Path) {
    common::ok(std::process::Command::new("mkfifo").arg(path));
}

#[test]
fn a_batch_mixing_garbage_oversize_and_strangers_gets_exactly_the_right_replies() {
    if !common::root_or_skip(
        "a_batch_mixing_garbage_oversize_and_strangers_gets_exactly_the_right_replies",
    ) {
        return;
    }
    let h = Host::new("dnxm");
    h.config("agent = true\n");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.191.6.0/24"]);
    h.sleeper("x", &["--network", "a"]);
    h.sleeper("y", &["--network", "a"]);
    let gw = gateway(&h, "a");
    let p = port(&h);
    let y_ip = h.ip_of("y", 0);
    assert_eq!(values(&ask(&h, "x", &gw, p, "y", false)), [y_ip.as_str()]);
    let netns = h.json(&["inspect", "x"])[0]["netns"]
        .as_str()
        .unwrap()
        .to_string();
    // 800 datagrams sent back to back (the server takes them dozens per call) from x and,
    // interleaved, from a host process (a stranger on loopback): every kind is in every batch.
    let n = 800u64;
    let out = common::ok(&mut h.ns.cmd(
        "python3",
        &[
            "-c",
            ATTACK,
            "mixed",
            &gw,
            &p.to_string(),
            &netns,
            "y",
            &n.to_string(),
        ],
    ));
    let got: Vec<(String, u64, u64, Vec<String>)> =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mut expected: Vec<(String, u64, u64, Vec<String>)> = (0..n)
        .filter_map(|i| {
            let (who, rcode, vals) = match i % 8 {
                // A: the address; AAAA with EDNS0: none (NODATA); oversize (cut to the
                // slot, trailing bytes ignored as before): the address; MX: NODATA.
                0 | 5 => ("sandbox", NOERROR, vec![y_ip.clone()]),
                1 | 6 => ("sandbox", NOERROR, vec![]),
                // A header without its question: FORMERR.
                4 => ("sandbox", 1, vec![]),
                // The stranger: REFUSED.
                7 => ("stranger", REFUSED, vec![]),
                // Garbage shorter than a header, and a response: nothing.
                _ => return None,
            };
            Some((who.to_string(), i, rcode, vals))
        })
        .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    expected.sort();
    assert_eq!(
        got_sorted,
        expected,
        "replies differ (got {} replies); server: {}",
        got.len(),
        dns_status(&h)
    );
    // The server keeps answering.
    assert_eq!(values(&ask(&h, "x", &gw, p, "y", false)), [y_ip.as_str()]);
}
