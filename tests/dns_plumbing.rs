//! The plumbing that brings sandboxes' DNS queries to the host agent's DNS server, without
//! the server: what a sandbox's `/etc/resolv.conf` names, and the redirect of its queries to
//! its gateway's port 53 to the port recorded in `RUN_DIR/dns.port` (here a small recording
//! listener the test starts), kept by `weft gc` like every other firewall element.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{root_or_skip, Host};

const PYTHON: &str = "/usr/bin/python3";

/// A UDP and TCP listener on every address (IPv4 and IPv6) of the host namespace: it appends
/// `PROTO SOURCE DESTINATION PAYLOAD` to its log for everything it receives and answers
/// `answer PAYLOAD`.
const LISTENER: &str = r#"
import select, socket, sys
port, log = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
socks = []
for fam, any_addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(fam, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_DGRAM:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        elif kind == socket.SOCK_DGRAM:
            s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        s.bind((any_addr, port))
        if kind == socket.SOCK_STREAM:
            s.listen(16)
        socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        if s.type == socket.SOCK_DGRAM:
            data, anc, _, src = s.recvmsg(2048, 256)
            dst = "?"
            for level, kind, d in anc:
                if s.family == socket.AF_INET and kind == IP_PKTINFO:
                    dst = socket.inet_ntop(socket.AF_INET, d[8:12])
                elif s.family == socket.AF_INET6 and kind == socket.IPV6_PKTINFO:
                    dst = socket.inet_ntop(socket.AF_INET6, d[:16])
            log.write("udp %s %s %s\n" % (src[0], dst, data.decode(errors="replace")))
            s.sendto(b"answer " + data, src)
        else:
            c, src = s.accept()
            c.settimeout(2)
            try:
                data = c.recv(2048)
                log.write("tcp %s %s %s\n" % (src[0], c.getsockname()[0], data.decode(errors="replace")))
                c.sendall(b"answer " + data)
            except OSError:
                pass
            c.close()
"#;

/// A query from inside a sandbox: `PROTO ADDR PORT PAYLOAD`; prints `SOURCE PORT ANSWER` of
/// the reply, exits 1 without one.
const CLIENT: &str = r#"
import socket, sys
proto, addr, port, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
if proto == "udp":
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    for _ in range(5):
        s.sendto(payload, (addr, port))
        try:
            data, src = s.recvfrom(2048)
        except socket.timeout:
            continue
        print(src[0], src[1], data.decode())
        sys.exit(0)
    sys.exit(1)
s = socket.create_connection((addr, port), timeout=1.5)
s.settimeout(1.5)
s.sendall(payload)
data = s.recv(2048)
peer = s.getpeername()
print(peer[0], peer[1], data.decode())
"#;

/// A listener started by the test, killed (by its own pid) when dropped.
struct Listener {
    child: Child,
    log: PathBuf,
}

impl Listener {
    fn start(h: &Host, port: u16, name: &str) -> Listener {
        let log = h.dir.join(format!("{name}.log"));
        std::fs::write(&log, "").unwrap();
        let mut child =
            h.ns.cmd(
                PYTHON,
                &[
                    "-c",
                    LISTENER,
                    &port.to_string(),
                    &log.display().to_string(),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let l = Listener { child, log };
        assert_eq!(line.trim(), "ready", "listener on {port} did not start");
        l
    }

    fn seen(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_port(h: &Host, port: u16) {
    std::fs::create_dir_all(h.run_dir()).unwrap();
    std::fs::write(h.run_dir().join("dns.port"), format!("{port}\n")).unwrap();
}

/// A query from `sandbox`: the reply's `SOURCE PORT ANSWER`, or `None`.
fn query(h: &Host, sandbox: &str, proto: &str, addr: &str, payload: &str) -> Option<String> {
    let out = h.weft(&[
        "exec", sandbox, "--", PYTHON, "-c", CLIENT, proto, addr, "53", payload,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn resolv(h: &Host, sandbox: &str) -> String {
    h.weft_ok(&["exec", sandbox, "--", "cat", "/etc/resolv.conf"])
}

fn address(h: &Host, sandbox: &str, family: &str) -> String {
    let v = h.json(&["inspect", sandbox]);
    let cidr = v[0]["networks"][0][family].as_str().unwrap().to_string();
    cidr.split('/').next().unwrap().to_string()
}

/// The text of the `elements = { ... }` block of map `name` in `nft list table inet weft`.
fn map_elements(h: &Host, name: &str) -> String {
    let table = h.sh("nft list table inet weft");
    let start = table
        .find(&format!("map {name} {{"))
        .unwrap_or_else(|| panic!("no map {name} in\n{table}"));
    let block = &table[start..];
    block[..block.find('}').unwrap()].to_string()
}

fn gc(h: &Host) {
    h.weft_ok(&["gc"]);
}

/// Waits for a log line (the listener writes as it receives).
fn wait_for(l: &Listener, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if l.seen().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn resolv_conf_names_the_gateway_of_the_first_dns_network() {
    if !root_or_skip("resolv_conf_names_the_gateway_of_the_first_dns_network") {
        return;
    }
    let h = Host::new("dnsrc");
    h.resolv_conf("nameserver 127.0.0.53\nnameserver 9.9.9.9\nsearch corp\noptions edns0\n");
    h.weft_ok(&["network", "create", "a", "--subnet", "10.181.0.0/24"]);
    h.weft_ok(&["network", "create", "b", "--subnet", "10.182.0.0/24"]);
    h.weft_ok(&[
        "network",
        "create",
        "off",
        "--subnet",
        "10.183.0.0/24",
        "--opt",
        "dns=false",
    ]);
    h.weft_ok(&[
        "network",
        "create",
        "v6",
        "--ipv6",
        "--subnet",
        "fd00:184::/64",
    ]);

    h.sleeper("on", &["--network", "a"]);
    assert_eq!(
        resolv(&h, "on"),
        "search corp\noptions edns0\nnameserver 10.181.0.1\n"
    );
    h.sleeper("plain", &["--network", "off"]);
    assert_eq!(
        resolv(&h, "plain"),
        "nameserver 9.9.9.9\nsearch corp\noptions edns0\n",
        "a network without DNS: the host's resolvers, as before"
    );
    h.sleeper(
        "given",
        &[
            "--network",
            "a",
            "--dns",
            "1.1.1.1",
            "--dns-search",
            "x",
            "--dns-option",
            "ndots:2",
        ],
    );
    let given = resolv(&h, "given");
    assert_eq!(given, "nameserver 10.181.0.1\nsearch x\noptions ndots:2\n");
    assert!(!given.contains("1.1.1.1"), "the agent forwards to --dns");
    h.sleeper("none", &["--network", "none"]);
    assert_eq!(
        resolv(&h, "none"),
        "search corp\noptions edns0\n",
        "--network none: no name server could be reached"
    );
    h.sleeper("hostnet", &["--network", "host"]);
    assert_eq!(
        resolv(&h, "hostnet"),
        std::fs::read_to_string("/etc/resolv.conf").unwrap(),
        "--network host: the host's own file"
    );
    h.sleeper("six", &["--network", "v6"]);
    // weft gives an IPv6 network an IPv4 subnet too: its IPv4 gateway is named (the
    // IPv6-only choice is `core::resolv`'s unit test).
    let six = resolv(&h, "six");
    let named = six
        .strip_prefix("search corp\noptions edns0\nnameserver ")
        .unwrap_or_default();
    assert!(named.trim().parse::<std::net::Ipv4Addr>().is_ok(), "{six}");

    // Connect and disconnect: the first DNS network's gateway, or the host's again.
    h.weft_ok(&["network", "connect", "a", "plain"]);
    assert!(resolv(&h, "plain").ends_with("nameserver 10.181.0.1\n"));
    h.weft_ok(&["network", "connect", "b", "plain"]);
    assert!(resolv(&h, "plain").ends_with("nameserver 10.181.0.1\n"));
    h.weft_ok(&["network", "disconnect", "a", "plain"]);
    assert!(resolv(&h, "plain").ends_with("nameserver 10.182.0.1\n"));
    h.weft_ok(&["network", "disconnect", "b", "plain"]);
    assert_eq!(
        resolv(&h, "plain"),
        "nameserver 9.9.9.9\nsearch corp\noptions edns0\n"
    );
}

#[test]
fn queries_to_the_gateway_reach_the_agents_port_from_the_sandbox_only() {
    if !root_or_skip("queries_to_the_gateway_reach_the_agents_port_from_the_sandbox_only") {
        return;
    }
    let h = Host::new("dnsrd");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.186.0.0/24",
        "--subnet",
        "fd00:186::/64",
    ]);
    h.sleeper("s", &["--network", "n"]);
    let (s4, s6) = (address(&h, "s", "ipv4"), address(&h, "s", "ipv6"));
    // A host process already holding port 53 on every address (dnsmasq, a local resolver).
    let squatter = Listener::start(&h, 53, "squatter");
    let agent = Listener::start(&h, 40053, "agent");
    // No port recorded yet: nothing is redirected (the query meets the host's port 53).
    assert!(map_elements(&h, "dns4").find("elements").is_none());
    assert!(query(&h, "s", "udp", "10.186.0.1", "early").is_some());
    assert!(wait_for(&squatter, "early"));
    assert!(!agent.seen().contains("early"));

    write_port(&h, 40053);
    gc(&h);
    for (proto, gw, src) in [
        ("udp", "10.186.0.1", &s4),
        ("tcp", "10.186.0.1", &s4),
        ("udp", "fd00:186::1", &s6),
        ("tcp", "fd00:186::1", &s6),
    ] {
        let tag = format!("q-{proto}-{gw}");
        let reply = query(&h, "s", proto, gw, &tag)
            .unwrap_or_else(|| panic!("no answer to {proto} {gw}:53; agent saw {}", agent.seen()));
        assert_eq!(
            reply,
            format!("{gw} 53 answer {tag}"),
            "the reply comes from {gw}:53"
        );
        assert!(
            wait_for(&agent, &format!("{proto} {src} {gw} {tag}")),
            "the agent's port sees the sandbox's address and the gateway: {}",
            agent.seen()
        );
    }
    assert!(
        !squatter.seen().contains("q-"),
        "the host's port 53 saw sandbox queries: {}",
        squatter.seen()
    );
    // The host's own queries to the gateway are not the sandboxes': not redirected.
    let out =
        h.ns.cmd(
            PYTHON,
            &["-c", CLIENT, "udp", "10.186.0.1", "53", "from-host"],
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(wait_for(&squatter, "from-host"));
    assert!(!agent.seen().contains("from-host"));
}

#[test]
fn internal_and_icc_false_networks_reach_the_agent_too() {
    if !root_or_skip("internal_and_icc_false_networks_reach_the_agent_too") {
        return;
    }
    let h = Host::new("dnsint");
    write_port(&h, 40053);
    h.weft_ok(&[
        "network",
        "create",
        "int",
        "--internal",
        "--ipv6",
        "--subnet",
        "10.190.0.0/24",
        "--subnet",
        "fd00:190::/64",
    ]);
    h.weft_ok(&[
        "network",
        "create",
        "iso",
        "--subnet",
        "10.191.0.0/24",
        "--opt",
        "icc=false",
    ]);
    let agent = Listener::start(&h, 40053, "agent");
    h.sleeper("i", &["--network", "int"]);
    h.sleeper("o", &["--network", "iso"]);
    for (sb, proto, gw) in [
        ("i", "udp", "10.190.0.1"),
        ("i", "tcp", "10.190.0.1"),
        ("i", "udp", "fd00:190::1"),
        ("i", "tcp", "fd00:190::1"),
        ("o", "udp", "10.191.0.1"),
        ("o", "tcp", "10.191.0.1"),
    ] {
        let tag = format!("{sb}-{proto}-{gw}");
        assert_eq!(
            query(&h, sb, proto, gw, &tag).as_deref(),
            Some(format!("{gw} 53 answer {tag}").as_str()),
            "agent saw {}",
            agent.seen()
        );
    }
}

#[test]
fn dns_false_networks_are_not_redirected() {
    if !root_or_skip("dns_false_networks_are_not_redirected") {
        return;
    }
    let h = Host::new("dnsoff");
    write_port(&h, 40053);
    h.weft_ok(&[
        "network",
        "create",
        "off",
        "--subnet",
        "10.187.0.0/24",
        "--opt",
        "dns=false",
    ]);
    h.sleeper("s", &["--network", "off"]);
    let squatter = Listener::start(&h, 53, "squatter");
    let agent = Listener::start(&h, 40053, "agent");
    gc(&h);
    assert!(map_elements(&h, "dns4").find("elements").is_none());
    assert!(query(&h, "s", "udp", "10.187.0.1", "plain").is_some());
    assert!(wait_for(&squatter, "plain"), "{}", squatter.seen());
    assert!(!agent.seen().contains("plain"));
}

#[test]
fn a_sandbox_publishing_port_53_takes_no_ones_lookups() {
    if !root_or_skip("a_sandbox_publishing_port_53_takes_no_ones_lookups") {
        return;
    }
    let h = Host::new("dnspub");
    write_port(&h, 40053);
    // Created after the port was recorded: the elements come with the network.
    h.weft_ok(&["network", "create", "n", "--subnet", "10.188.0.0/24"]);
    assert!(map_elements(&h, "dns4").contains("10.188.0.1 . udp . 53 : 10.188.0.1 . 40053"));
    let agent = Listener::start(&h, 40053, "agent");
    h.sleeper(
        "pub",
        &["--network", "n", "-p", "53:53/udp", "-p", "53:53/tcp"],
    );
    h.sleeper("s", &["--network", "n"]);
    let src = address(&h, "s", "ipv4");
    for proto in ["udp", "tcp"] {
        let tag = format!("pub-{proto}");
        assert_eq!(
            query(&h, "s", proto, "10.188.0.1", &tag).as_deref(),
            Some(format!("10.188.0.1 53 answer {tag}").as_str())
        );
        assert!(wait_for(&agent, &format!("{proto} {src} 10.188.0.1 {tag}")));
    }
    // The published port itself still works for what is not a sandbox's DNS query: from the
    // host, port 53 of the gateway is the publishing sandbox's.
    let published = h.json(&["inspect", "pub"])[0]["ports"].to_string();
    assert!(published.contains("53"), "{published}");
}

#[test]
fn the_elements_follow_the_port_the_networks_and_tampering() {
    if !root_or_skip("the_elements_follow_the_port_the_networks_and_tampering") {
        return;
    }
    let h = Host::new("dnsel");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.189.0.0/24",
        "--subnet",
        "fd00:189::/64",
    ]);
    write_port(&h, 40053);
    gc(&h);
    let (dns4, dns6) = (map_elements(&h, "dns4"), map_elements(&h, "dns6"));
    for want in [
        "10.189.0.1 . udp . 53 : 10.189.0.1 . 40053",
        "10.189.0.1 . tcp . 53 : 10.189.0.1 . 40053",
    ] {
        assert!(dns4.contains(want), "{want} in {dns4}");
    }
    for want in [
        "fd00:189::1 . udp . 53 : fd00:189::1 . 40053",
        "fd00:189::1 . tcp . 53 : fd00:189::1 . 40053",
    ] {
        assert!(dns6.contains(want), "{want} in {dns6}");
    }
    // Someone else deletes them: gc puts them back.
    h.sh("nft delete element inet weft dns4 '{ 10.189.0.1 . udp . 53 }'; nft delete element inet weft dns6 '{ fd00:189::1 . tcp . 53 }'");
    assert!(!map_elements(&h, "dns4").contains("udp"));
    gc(&h);
    assert!(map_elements(&h, "dns4").contains("10.189.0.1 . udp . 53 : 10.189.0.1 . 40053"));
    assert!(map_elements(&h, "dns6").contains("fd00:189::1 . tcp . 53 : fd00:189::1 . 40053"));
    // A redirect made to point elsewhere is corrected too.
    h.sh("nft delete element inet weft dns4 '{ 10.189.0.1 . tcp . 53 }'; nft add element inet weft dns4 '{ 10.189.0.1 . tcp . 53 : 10.189.0.1 . 22 }'");
    gc(&h);
    assert!(map_elements(&h, "dns4").contains("10.189.0.1 . tcp . 53 : 10.189.0.1 . 40053"));
    // The agent came back on another port.
    write_port(&h, 40054);
    gc(&h);
    let dns4 = map_elements(&h, "dns4");
    assert!(
        dns4.contains("10.189.0.1 . udp . 53 : 10.189.0.1 . 40054"),
        "{dns4}"
    );
    assert!(!dns4.contains("40053"), "{dns4}");
    // ... and the new port is where queries go.
    let agent = Listener::start(&h, 40054, "agent");
    h.sleeper("s", &["--network", "n"]);
    assert!(query(&h, "s", "udp", "10.189.0.1", "moved").is_some());
    assert!(wait_for(&agent, "moved"));
    h.weft_ok(&["rm", "--force", "s"]);
    // No port recorded: no redirect.
    std::fs::remove_file(h.run_dir().join("dns.port")).unwrap();
    gc(&h);
    assert!(map_elements(&h, "dns4").find("elements").is_none());
    write_port(&h, 40054);
    gc(&h);
    assert!(map_elements(&h, "dns4").contains("40054"));
    // The network goes: so do its redirects.
    h.weft_ok(&["network", "rm", "n"]);
    let (dns4, dns6) = (map_elements(&h, "dns4"), map_elements(&h, "dns6"));
    assert!(dns4.find("elements").is_none(), "{dns4}");
    assert!(dns6.find("elements").is_none(), "{dns6}");
}

#[test]
fn a_running_command_sees_the_rewrite() {
    if !root_or_skip("a_running_command_sees_the_rewrite") {
        return;
    }
    let h = Host::new("dnsrun");
    h.resolv_conf("nameserver 9.9.9.9\n");
    h.weft_ok(&[
        "network",
        "create",
        "off",
        "--subnet",
        "10.192.0.0/24",
        "--opt",
        "dns=false",
    ]);
    h.weft_ok(&["network", "create", "a", "--subnet", "10.193.0.0/24"]);
    // The command itself (not a later `exec`) reports what it sees, again and again.
    let seen = h.dir.join("seen");
    let s = seen.display();
    let script =
        format!("while :; do cat /etc/resolv.conf > {s}.tmp; mv {s}.tmp {s}; sleep 0.05; done");
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "off",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let sees = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if std::fs::read_to_string(&seen).unwrap_or_default() == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    assert!(sees("nameserver 9.9.9.9\n"));
    h.weft_ok(&["network", "connect", "a", "s"]);
    assert!(
        sees("nameserver 10.193.0.1\n"),
        "{:?}",
        std::fs::read_to_string(&seen)
    );
    h.weft_ok(&["network", "disconnect", "a", "s"]);
    assert!(sees("nameserver 9.9.9.9\n"));
}
