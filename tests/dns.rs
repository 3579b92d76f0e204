//! The host agent's DNS server, queried from inside sandboxes: names, aliases and
//! `NAME.NETWORK` on shared networks only, PTR, AAAA, changes visible when the command
//! returns, forwarding (a sandbox's `--dns`, the host's resolvers, systemd-resolved's list or
//! its stub), SERVFAIL, TCP, strangers refused, `kill -9` and back, hostile packets and floods.
//!
//! Queries go to the network's gateway at the server's port (`RUN_DIR/dns.port`), and some
//! the way programs send them: to the gateway's port 53 (redirected there), or through the
//! sandbox's resolv.conf (`getent`).

mod common;

use std::time::{Duration, Instant};

use common::{Host, WithInternet};
use serde_json::Value;

/// The test client (python3 standard library only), run inside sandboxes.
const DNSQ: &str = include_str!("common/dnsq.py");

fn dns_host(h: &Host, extra: &str) {
    h.config(&format!("agent = true\n{extra}"));
}

/// Polls `f` every 20 ms until it holds or `limit` passed.
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

/// The DNS server's port, once the agent recorded it.
fn port(h: &Host) -> u16 {
    let file = h.run_dir().join("dns.port");
    let mut port = 0;
    assert!(
        within(Duration::from_secs(10), || {
            port = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            port != 0
        }),
        "no dns.port"
    );
    port
}

fn status(h: &Host) -> Value {
    let out = h.weft(&["--format", "json", "daemon", "status"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn gateway(h: &Host, net: &str, v6: bool) -> String {
    let v = h.json(&["network", "inspect", net]);
    let subnets = v[0]["subnets"].as_array().unwrap();
    subnets
        .iter()
        .map(|s| s["gateway"].as_str().unwrap().to_string())
        .find(|g| g.contains(':') == v6)
        .unwrap()
}

/// One query from inside `sandbox` to `server:port`.
fn ask_at(
    h: &Host,
    sandbox: &str,
    server: &str,
    port: u16,
    name: &str,
    qtype: &str,
    tcp: bool,
) -> Value {
    let port = port.to_string();
    let mut args = vec![
        "exec", sandbox, "--", "python3", "-c", DNSQ, "q", server, &port, name, qtype,
    ];
    if tcp {
        args.push("tcp");
    }
    let out = h.weft_ok(&args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// One UDP query from inside `sandbox` to its network's gateway.
fn ask(h: &Host, sandbox: &str, net: &str, name: &str, qtype: &str) -> Value {
    let gw = gateway(h, net, false);
    ask_at(h, sandbox, &gw, port(h), name, qtype, false)
}

fn values(r: &Value) -> Vec<String> {
    r["answers"]
        .as_array()
        .unwrap_or_else(|| panic!("no answers in {r}"))
        .iter()
        .map(|a| a["value"].as_str().unwrap().to_string())
        .collect()
}

const NOERROR: u64 = 0;
const SERVFAIL: u64 = 2;
const NXDOMAIN: u64 = 3;
const REFUSED: u64 = 5;

#[test]
fn names_aliases_and_qualified_names_on_shared_networks_only() {
    if !common::root_or_skip("names_aliases_and_qualified_names_on_shared_networks_only") {
        return;
    }
    let h = Host::new("dnsn");
    dns_host(&h, "");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.190.1.0/24"]);
    h.weft_ok(&["network", "create", "b", "--subnet", "10.190.2.0/24"]);
    h.sleeper(
        "x",
        &["--network", "a", "--network-alias", "db", "-h", "xhost"],
    );
    h.sleeper("y", &["--network", "a"]);
    h.sleeper("z", &["--network", "b"]);
    let x_ip = h.ip_of("x", 0);

    for name in ["x", "X", "xhost", "db", "x.a", "X.A."] {
        let r = ask(&h, "y", "a", name, "A");
        assert_eq!(r["rcode"], NOERROR, "{name}: {r}");
        assert_eq!(values(&r), [x_ip.as_str()], "{name}: {r}");
        assert_eq!(r["answers"][0]["ttl"], 5);
        assert_eq!(r["aa"], true);
    }
    // The way programs ask: the sandbox's resolv.conf names the gateway, whose port 53 is
    // redirected to the server's.
    let r = ask_at(&h, "y", &gateway(&h, "a", false), 53, "db", "A", false);
    assert_eq!(values(&r), [x_ip.as_str()], "{r}");
    let r = ask_at(&h, "y", &gateway(&h, "a", false), 53, "db", "A", true);
    assert_eq!(values(&r), [x_ip.as_str()], "{r}");
    let hosts = h.weft_ok(&["exec", "y", "--", "getent", "hosts", "xhost"]);
    assert!(hosts.starts_with(&format!("{x_ip} ")), "{hosts}");
    // z is only on b: x does not exist for it, nor z for y.
    assert_eq!(ask(&h, "z", "b", "x", "A")["rcode"], NXDOMAIN);
    assert_eq!(ask(&h, "y", "a", "z", "A")["rcode"], NXDOMAIN);
    assert_eq!(ask(&h, "y", "a", "z.b", "A")["rcode"], NXDOMAIN);
    // PTR, as Docker answers it: NAME.NETWORK.
    let rev: Vec<&str> = x_ip.split('.').rev().collect();
    let r = ask(
        &h,
        "y",
        "a",
        &format!("{}.in-addr.arpa", rev.join(".")),
        "PTR",
    );
    assert_eq!(values(&r), ["x.a"], "{r}");
    // No IPv6 on a: AAAA is NODATA.
    let r = ask(&h, "y", "a", "x", "AAAA");
    assert_eq!(r["rcode"], NOERROR);
    assert!(values(&r).is_empty());

    // Connected to b: z sees x at once, at its address on b; an alias given there too.
    h.weft_ok(&["network", "connect", "b", "x", "--alias", "cache"]);
    let x_b = h.ip_of("x", 1);
    assert_eq!(values(&ask(&h, "z", "b", "x", "A")), [x_b.as_str()]);
    assert_eq!(values(&ask(&h, "z", "b", "cache", "A")), [x_b.as_str()]);
    // The alias on b is not x's name on a.
    assert_eq!(ask(&h, "y", "a", "cache", "A")["rcode"], NXDOMAIN);
    // Disconnected: gone at once.
    h.weft_ok(&["network", "disconnect", "b", "x"]);
    assert_eq!(ask(&h, "z", "b", "x", "A")["rcode"], NXDOMAIN);
    // Removed: no longer a name of weft's (forwarded; no upstream here: SERVFAIL).
    h.weft_ok(&["rm", "-f", "x"]);
    let r = ask(&h, "y", "a", "x", "A");
    assert_eq!(r["rcode"], SERVFAIL, "{r}");
    assert!(values(&r).is_empty());

    // Created without a process: answered when `create` returns (it holds its address, and
    // `weft exec` runs processes in it).
    h.weft_ok(&["create", "--name", "idle", "--network", "a"]);
    assert_eq!(
        values(&ask(&h, "y", "a", "idle", "A")),
        [h.ip_of("idle", 0)]
    );

    let s = status(&h);
    let dns = &s["status"]["dns"];
    assert_eq!(dns["port"], port(&h));
    assert!(dns["answered"].as_u64().unwrap() >= 12, "{s}");
    assert!(dns["failed"].as_u64().unwrap() >= 1, "{s}");
    assert!(dns["records"].as_u64().unwrap() >= 2, "{s}");
    let text = h.weft_ok(&["daemon", "status"]);
    assert!(text.contains(&format!("dns: port {}", port(&h))), "{text}");
}

#[test]
fn aaaa_and_ipv6_ptr_on_an_ipv6_network() {
    if !common::root_or_skip("aaaa_and_ipv6_ptr_on_an_ipv6_network") {
        return;
    }
    let h = Host::new("dns6");
    dns_host(&h, "");
    h.weft_ok(&[
        "network",
        "create",
        "a",
        "--subnet",
        "10.190.3.0/24",
        "--ipv6",
        "--subnet",
        "fd00:190:3::/64",
    ]);
    h.sleeper("x", &["--network", "a", "--ip6", "fd00:190:3::99"]);
    h.sleeper("y", &["--network", "a"]);
    let gw6 = gateway(&h, "a", true);
    let p = port(&h);
    // Asked over IPv6, to the IPv6 gateway.
    let r = ask_at(&h, "y", &gw6, p, "x", "AAAA", false);
    assert_eq!(values(&r), ["fd00:190:3::99"], "{r}");
    let r = ask_at(&h, "y", &gw6, p, "x", "A", false);
    assert_eq!(values(&r), [h.ip_of("x", 0)], "{r}");
    let rev = "9.9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.0.0.9.1.0.0.0.d.f.ip6.arpa";
    let r = ask_at(&h, "y", &gw6, p, rev, "PTR", false);
    assert_eq!(values(&r), ["x.a"], "{r}");
    // Over TCP too.
    let r = ask_at(&h, "y", &gw6, p, "x", "AAAA", true);
    assert_eq!(values(&r), ["fd00:190:3::99"], "{r}");
}

/// Starts the test upstream resolver in `ns` on `addr:53`.
/// A child process killed and reaped when dropped: also when the test fails half-way, so
/// no upstream outlives it (holding the test's output open).
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn upstream(ns: &common::Netns, addr: &str) -> Reap {
    use std::io::BufRead;
    let mut child = ns
        .cmd("python3", &["-u", "-c", DNSQ, "serve", addr, "53"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(out);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("listening"),
        "upstream did not start: {line:?}"
    );
    // Keep reading (and discarding) what it prints, so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    Reap(child)
}

#[test]
fn forwarding_to_dns_flag_host_resolvers_resolved_and_its_stub() {
    if !common::root_or_skip("forwarding_to_dns_flag_host_resolvers_resolved_and_its_stub") {
        return;
    }
    let w = WithInternet::new("dnsf");
    let h = &w.host;
    dns_host(h, "");
    let up = upstream(&w.inet, "198.51.100.2");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.190.4.0/24"]);
    h.sleeper("own", &["--network", "a", "--dns", "198.51.100.2"]);
    h.sleeper("plain", &["--network", "a"]);
    // The first --dns refuses (nothing listens on the host's own uplink address: ICMP port
    // unreachable): the second answers, without waiting out the first's timeout.
    h.sleeper(
        "two",
        &[
            "--network",
            "a",
            "--dns",
            "198.51.100.1",
            "--dns",
            "198.51.100.2",
        ],
    );

    // The sandbox's own --dns server, as programs ask (resolv.conf names the gateway).
    let r = ask(h, "own", "a", "ext.example", "A");
    assert_eq!(values(&r), ["203.0.113.7"], "{r}");
    let hosts = h.weft_ok(&["exec", "own", "--", "getent", "hosts", "via-getent.example"]);
    assert!(hosts.starts_with("203.0.113.7 "), "{hosts}");
    let t = Instant::now();
    let r = ask(h, "two", "a", "failover.example", "A");
    assert_eq!(values(&r), ["203.0.113.7"], "{r}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // Without --dns and without host resolvers: SERVFAIL at once.
    let t = Instant::now();
    assert_eq!(ask(h, "plain", "a", "ext.example", "A")["rcode"], SERVFAIL);
    assert!(t.elapsed() < Duration::from_secs(2));
    // The host's resolv.conf (read again within a second).
    h.resolv_conf("nameserver 198.51.100.2\n");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        values(&ask(h, "plain", "a", "one.example", "A")),
        ["203.0.113.7"]
    );
    // Only systemd-resolved's stub: its upstream list.
    h.resolv_conf("nameserver 127.0.0.53\noptions edns0\n");
    h.resolved_conf("nameserver 198.51.100.2\n");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        values(&ask(h, "plain", "a", "two.example", "A")),
        ["203.0.113.7"]
    );
    // Only the stub and no list: the stub itself, reachable from the agent (not the sandbox).
    std::fs::remove_file(h.dir.join("resolved.conf")).unwrap();
    let stub = upstream(&h.ns, "127.0.0.53");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        values(&ask(h, "plain", "a", "three.example", "A")),
        ["203.0.113.7"]
    );
    drop(stub);

    // Truncated upstream answer: fetched again over TCP; too long for the client's 512 bytes
    // over UDP: TC, and the whole answer over TCP.
    let gw = gateway(h, "a", false);
    let p = port(h);
    let r = ask_at(h, "own", &gw, p, "big.example", "A", false);
    assert_eq!(r["tc"], true, "{r}");
    let r = ask_at(h, "own", &gw, p, "big.example", "A", true);
    assert_eq!(values(&r).len(), 60, "{r}");

    // Cached: answered with the upstream gone, until the TTL (capped at 30 s) ends.
    drop(up);
    assert_eq!(
        values(&ask(h, "own", "a", "ext.example", "A")),
        ["203.0.113.7"]
    );
    // Upstream down (ICMP port unreachable): SERVFAIL without waiting out the timeout.
    let t = Instant::now();
    assert_eq!(ask(h, "own", "a", "new.example", "A")["rcode"], SERVFAIL);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let dns = &status(h)["status"]["dns"];
    assert!(dns["forwarded"].as_u64().unwrap() >= 5, "{dns}");
    assert!(dns["cached"].as_u64().unwrap() >= 1, "{dns}");
}

#[test]
fn queries_over_tcp_and_strangers_refused() {
    if !common::root_or_skip("queries_over_tcp_and_strangers_refused") {
        return;
    }
    let h = Host::new("dnst");
    dns_host(&h, "");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.190.5.0/24"]);
    h.sleeper("x", &["--network", "a"]);
    h.sleeper("y", &["--network", "a"]);
    let gw = gateway(&h, "a", false);
    let p = port(&h);
    let r = ask_at(&h, "y", &gw, p, "x", "A", true);
    assert_eq!(values(&r), [h.ip_of("x", 0)], "{r}");
    // A process of the host (not a sandbox), UDP and TCP: REFUSED, nothing answered.
    let p = p.to_string();
    for tcp in [false, true] {
        let mut args = vec!["-c", DNSQ, "q", &gw, &p, "x", "A"];
        if tcp {
            args.push("tcp");
        }
        let out = common::ok(&mut h.ns.cmd("python3", &args));
        let r: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(r["rcode"], REFUSED, "{r}");
        assert!(values(&r).is_empty());
    }
    // To the loopback address: no network's gateway, refused too.
    let out = common::ok(
        &mut h
            .ns
            .cmd("python3", &["-c", DNSQ, "q", "127.0.0.1", &p, "x", "A"]),
    );
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["rcode"], REFUSED, "{r}");
    assert!(status(&h)["status"]["dns"]["refused"].as_u64().unwrap() >= 3);
}

#[test]
fn kill_9_then_answers_again_within_a_second() {
    if !common::root_or_skip("kill_9_then_answers_again_within_a_second") {
        return;
    }
    let h = Host::new("dnsk");
    dns_host(&h, "");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.190.6.0/24"]);
    h.sleeper("x", &["--network", "a"]);
    h.sleeper("y", &["--network", "a"]);
    let before = port(&h);
    let x_ip = h.ip_of("x", 0);
    assert_eq!(values(&ask(&h, "y", "a", "x", "A")), [x_ip.as_str()]);
    let pid = status(&h)["status"]["pid"].as_u64().unwrap();
    h.sh(&format!("kill -9 {pid}"));
    assert!(within(Duration::from_secs(5), || status(&h)["running"] == false));
    // Any command that needs the agent starts it again.
    h.weft_ok(&["network", "create", "b", "--subnet", "10.190.7.0/24"]);
    let t = Instant::now();
    let gw = gateway(&h, "a", false);
    let mut answered = false;
    while t.elapsed() < Duration::from_secs(3) {
        let r = ask_at(&h, "y", &gw, before, "x", "A", false);
        if r["rcode"] == NOERROR && values(&r) == [x_ip.as_str()] {
            answered = true;
            break;
        }
    }
    let took = t.elapsed();
    assert!(answered, "no answer after the restart");
    eprintln!("answers back {took:?} after the restarting command returned");
    // The same port again (the firewall's redirect still points there).
    assert_eq!(port(&h), before);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn thousands_of_malformed_packets_then_a_right_answer() {
    if !common::root_or_skip("thousands_of_malformed_packets_then_a_right_answer") {
        return;
    }
    let h = Host::new("dnsz");
    dns_host(&h, "dns_rate_limit = 0\n");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.190.8.0/24"]);
    h.sleeper("x", &["--network", "a"]);
    h.sleeper("y", &["--network", "a"]);
    let pid = status(&h)["status"]["pid"].as_u64().unwrap();
    let gw = gateway(&h, "a", false);
    let p = port(&h).to_string();
    let sent = h.weft_ok(&[
        "exec", "y", "--", "python3", "-c", DNSQ, "fuzz", &gw, &p, "6000",
    ]);
    assert!(sent.trim().parse::<u32>().unwrap() > 5000, "{sent}");
    // From the host too (strangers' garbage).
    common::ok(&mut h.ns.cmd("python3", &["-c", DNSQ, "fuzz", &gw, &p, "2000"]));
    let r = ask(&h, "y", "a", "x", "A");
    assert_eq!(values(&r), [h.ip_of("x", 0)], "{r}");
    assert_eq!(r["id_ok"], true);
    // A burst of valid queries (more than one wake of the server handles): every one
    // answered.
    let got = h.weft_ok(&[
        "exec", "y", "--", "python3", "-c", DNSQ, "burst", &gw, &p, "x", "1000",
    ]);
    assert_eq!(got.trim(), "1000");
    let s = status(&h);
    assert_eq!(s["status"]["pid"], pid, "the agent survived: {s}");
}

#[test]
fn a_flooding_sandbox_does_not_starve_the_others() {
    if !common::root_or_skip("a_flooding_sandbox_does_not_starve_the_others") {
        return;
    }
    let h = Host::new("dnsr");
    dns_host(&h, "dns_rate_limit = 100\n");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.190.9.0/24"]);
    h.sleeper("x", &["--network", "a"]);
    h.sleeper("flood", &["--network", "a"]);
    h.sleeper("y", &["--network", "a"]);
    let gw = gateway(&h, "a", false);
    let p = port(&h).to_string();
    let flooder = h
        .weft_cmd(&[
            "exec", "flood", "--", "python3", "-c", DNSQ, "flood", &gw, &p, "4",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let x_ip = h.ip_of("x", 0);
    for _ in 0..10 {
        let r = ask(&h, "y", "a", "x", "A");
        assert_eq!(values(&r), [x_ip.as_str()], "{r}");
    }
    let out = flooder.wait_with_output().unwrap();
    let sent: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let dns = &status(&h)["status"]["dns"];
    assert!(sent > 1000, "the flood sent {sent}");
    assert!(
        dns["rate_limited"].as_u64().unwrap() > sent / 2,
        "{sent} sent: {dns}"
    );
}
