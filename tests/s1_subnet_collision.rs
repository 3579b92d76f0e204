//! Scenario S1 on one machine: a client network reached only through the default route must
//! never be swallowed by a network weft allocates.
//!
//! ```text
//! client (172.22.5.10/24) ── router (172.22.5.1 | 172.42.10.1) ── host (172.42.10.112/24, default via .1)
//! ```

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{link, Host, Netns};
use nix::sched::{setns, CloneFlags};

struct S1 {
    host: Host,
    client: Netns,
    _router: Netns,
}

fn build(prefix: &str) -> S1 {
    let host = Host::new(prefix);
    let client = Netns::new(&format!("{prefix}c"));
    let router = Netns::new(&format!("{prefix}r"));
    link(
        &client,
        "eth0",
        "172.22.5.10/24",
        &router,
        "c0",
        "172.22.5.1/24",
    );
    link(
        &router,
        "h0",
        "172.42.10.1/24",
        &host.ns,
        "eno8303",
        "172.42.10.112/24",
    );
    common::ok(&mut router.cmd("sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]));
    client.ip(&["route", "add", "default", "via", "172.22.5.1"]);
    host.ns
        .ip(&["route", "add", "default", "via", "172.42.10.1"]);
    S1 {
        host,
        client,
        _router: router,
    }
}

/// Runs `f` on a thread inside the namespace at `path`; sockets it makes live there.
fn in_ns<T: Send + 'static>(path: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// An echo service on the host at 172.42.10.112:2222 and a client connection to it from
/// 172.22.5.10, like the developers' SSH sessions of S1.
fn connect(s1: &S1) -> TcpStream {
    let listener = in_ns(s1.host.ns.path(), || {
        TcpListener::bind("172.42.10.112:2222").unwrap()
    });
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 64];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let stream = in_ns(s1.client.path(), || {
        TcpStream::connect_timeout(
            &"172.42.10.112:2222".parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap()
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
}

fn still_talks(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"ping").is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

fn subnets(host: &Host) -> Vec<ipnet::IpNet> {
    host.json(&["network", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subnets"][0]["subnet"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn auto_allocation_never_captures_a_peer_behind_the_default_route() {
    let s1 = build("s1");
    let mut conn = connect(&s1);
    assert!(
        still_talks(&mut conn),
        "the connection works before weft does anything"
    );
    let client: std::net::IpAddr = "172.22.5.10".parse().unwrap();
    let own: ipnet::IpNet = "172.42.10.0/24".parse().unwrap();
    // Docker's pools hand out 172.17, 18, ... 22 by the sixth network: go past it.
    for i in 0..10 {
        s1.host.weft_ok(&["network", "create", &format!("n{i}")]);
        assert!(
            still_talks(&mut conn),
            "network n{i} broke the client's connection"
        );
    }
    for net in subnets(&s1.host) {
        assert!(
            !net.contains(&client),
            "{net} captures the client 172.22.5.10"
        );
        assert!(
            !net.contains(&own.network()) && !own.contains(&net.network()),
            "{net} overlaps the host's own network"
        );
    }
    // Every choice is explained: the walk that led to n5 skipped 172.22.0.0/16 for the peer.
    let skipped = s1.host.json(&["network", "inspect", "n5"])[0]["allocation"]["skipped"].clone();
    let reason = skipped
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["candidate"] == "172.22.0.0/16")
        .unwrap_or_else(|| panic!("172.22.0.0/16 not among the skipped: {skipped}"))["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("172.22.5.10"), "{reason}");
    assert!(reason.contains("2222"), "{reason}");
}

#[test]
fn explicit_subnet_over_a_peer_is_refused_unless_allowed_and_then_it_really_breaks() {
    let s1 = build("s1x");
    let mut conn = connect(&s1);
    let err = s1.host.weft_err(
        1,
        &["network", "create", "bad", "--subnet", "172.22.0.0/16"],
    );
    assert!(err.contains("172.22.0.0/16"), "{err}");
    assert!(err.contains("172.22.5.10"), "{err}");
    assert!(err.contains("port 2222"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        subnets(&s1.host).is_empty(),
        "a refused create changes nothing"
    );
    assert!(still_talks(&mut conn));
    // What the check prevents: with --allow-overlap the bridge's connected route swallows
    // the replies, exactly as in S1.
    s1.host.weft_ok(&[
        "network",
        "create",
        "bad",
        "--subnet",
        "172.22.0.0/16",
        "--allow-overlap",
    ]);
    assert!(
        !still_talks(&mut conn),
        "the overlapping bridge should have captured the replies"
    );
}

#[test]
fn an_avoid_entry_alone_keeps_the_range_free() {
    let host = Host::new("s1a");
    host.weft_ok(&["ipam", "avoid", "add", "172.22.0.0/16"]);
    let ls = host.weft_ok(&["ipam", "avoid", "ls"]);
    assert!(ls.contains("172.22.0.0/16"), "{ls}");
    for i in 0..8 {
        host.weft_ok(&["network", "create", &format!("n{i}")]);
    }
    let target: ipnet::IpNet = "172.22.0.0/16".parse().unwrap();
    for net in subnets(&host) {
        assert_ne!(net, target);
    }
    let err = host.weft_err(1, &["network", "create", "x", "--subnet", "172.22.1.0/24"]);
    assert!(err.contains("weft ipam avoid"), "{err}");
}

#[test]
fn config_pools_and_avoid_are_honoured() {
    let host = Host::new("s1p");
    host.config(
        "default_address_pools = [{ base = \"10.10.0.0/16\", size = 24 }]\navoid = [\"10.10.0.0/24\"]\n",
    );
    host.weft_ok(&["network", "create", "a"]);
    host.weft_ok(&["network", "create", "b"]);
    let nets = subnets(&host);
    assert_eq!(
        nets,
        vec![
            "10.10.1.0/24".parse::<ipnet::IpNet>().unwrap(),
            "10.10.2.0/24".parse().unwrap()
        ]
    );
}

#[test]
fn an_explicit_subnet_around_a_nameserver_is_refused_with_the_reason() {
    let host = Host::new("s1ns");
    let file = host.resolv_conf("search lan\nnameserver 10.255.255.53\n");
    let err = host.weft_err(
        1,
        &["network", "create", "x", "--subnet", "10.255.255.0/24"],
    );
    assert!(
        err.contains(&format!(
            "10.255.255.0/24 contains 10.255.255.53, a nameserver of this host ({file})"
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        subnets(&host).is_empty(),
        "a refused create changes nothing"
    );
    host.weft_ok(&["network", "create", "y", "--subnet", "10.255.254.0/24"]);
}

#[test]
fn automatic_allocation_skips_a_nameserver_and_inspect_says_why() {
    let host = Host::new("s1nsa");
    host.config("default_address_pools = [{ base = \"10.255.0.0/16\", size = 24 }]\n");
    let file = host.resolv_conf("nameserver 10.255.0.53\n");
    host.weft_ok(&["network", "create", "a"]);
    assert_eq!(
        subnets(&host),
        vec!["10.255.1.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
    let allocation = host.json(&["network", "inspect", "a"])[0]["allocation"].clone();
    assert_eq!(allocation["skipped"][0]["candidate"], "10.255.0.0/24");
    assert_eq!(
        allocation["skipped"][0]["reason"],
        format!("10.255.0.0/24 contains 10.255.0.53, a nameserver of this host ({file})").as_str()
    );
}

#[test]
fn behind_systemd_resolveds_stub_its_upstream_servers_count() {
    let host = Host::new("s1nsr");
    host.resolv_conf("# stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n");
    let upstreams = host.resolved_conf("nameserver 10.255.0.53\nnameserver 10.255.99.53\n");
    let err = host.weft_err(1, &["network", "create", "x", "--subnet", "10.255.0.0/20"]);
    assert!(
        err.contains(&format!(
            "contains 10.255.0.53, a nameserver of this host ({upstreams})"
        )),
        "{err}"
    );
    assert!(
        !err.contains("127.0.0.53"),
        "the stub is no obstacle: {err}"
    );
    assert!(!err.contains("10.255.99.53"), "outside the subnet: {err}");
    host.config("default_address_pools = [{ base = \"10.255.0.0/16\", size = 24 }]\n");
    host.weft_ok(&["network", "create", "a"]);
    let skipped = host.json(&["network", "inspect", "a"])[0]["allocation"]["skipped"].clone();
    let candidates: Vec<&str> = skipped
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["candidate"].as_str().unwrap())
        .collect();
    assert_eq!(candidates, ["10.255.0.0/24"], "{skipped}");
    assert_eq!(
        subnets(&host),
        vec!["10.255.1.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
}

#[test]
fn loopback_nameservers_are_not_obstacles() {
    let host = Host::new("s1nsl");
    // A local resolver that is not resolved's stub (dnsmasq, unbound): resolved's file is
    // stale or absent and is not read.
    host.resolv_conf("nameserver 127.0.0.1\nnameserver ::1\n");
    host.resolved_conf("nameserver 10.255.0.53\n");
    host.weft_ok(&["network", "create", "x", "--subnet", "10.255.0.0/24"]);
    // Only the stub, and resolved's file absent: nothing is in the way.
    let host = Host::new("s1nsl2");
    host.resolv_conf("nameserver 127.0.0.53\n");
    host.weft_ok(&["network", "create", "a"]);
    assert_eq!(
        subnets(&host),
        vec!["172.17.0.0/16".parse::<ipnet::IpNet>().unwrap()]
    );
    let skipped = host.json(&["network", "inspect", "a"])[0]["allocation"]["skipped"].clone();
    assert_eq!(skipped.as_array().map(Vec::len), Some(0), "{skipped}");
}
