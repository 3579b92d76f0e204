//! `host_facts::observe()` in a fresh network namespace (needs root and `ip`; skipped
//! otherwise). Everything happens inside the namespace `wt-hf-<random>`, removed on drop.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

mod common;
use weft::adapters::host_facts::observe;
use weft::core::ipam::{HostView, PeerSource};

/// A named network namespace, deleted on drop (even when the test fails).
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let mut bytes = [0u8; 4];
        getrandom::getrandom(&mut bytes).expect("random bytes");
        let name = format!("wt-hf-{:08x}", u32::from_ne_bytes(bytes));
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    /// Runs `ip -n NAME ARGS...`.
    fn ip(&self, args: &[&str]) {
        let mut full = vec!["ip", "-n", &self.0];
        full.extend_from_slice(args);
        run(&full);
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        common::skipped(
            "observes_routes_addresses_and_peers_of_its_namespace",
            "needs root",
        );
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        common::skipped(
            "observes_routes_addresses_and_peers_of_its_namespace",
            "needs the ip command",
        );
        return false;
    }
    true
}

/// Tries to make conntrack track this namespace (it only does once a rule uses it). Returns
/// false when `nft` is not installed or refuses.
fn enable_conntrack(ns: &Netns) -> bool {
    let rules = "table inet wthf { chain out { type filter hook output priority 0; ct state new counter; }; }";
    Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", rules])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn observes_routes_addresses_and_peers_of_its_namespace() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    // A veth pair with both ends in the namespace (the dummy driver may be absent).
    ns.ip(&["link", "add", "wt0", "type", "veth", "peer", "name", "wt1"]);
    ns.ip(&["link", "set", "wt1", "up"]);
    ns.ip(&["link", "set", "wt0", "up"]);
    ns.ip(&["addr", "add", "172.42.10.112/24", "dev", "wt0"]);
    ns.ip(&["addr", "add", "fd00:42::112/64", "dev", "wt0", "nodad"]);
    ns.ip(&["route", "add", "default", "via", "172.42.10.1"]);
    ns.ip(&["route", "add", "10.77.0.0/16", "dev", "wt0", "table", "100"]);
    ns.ip(&[
        "route",
        "add",
        "10.78.0.0/16",
        "via",
        "172.42.10.1",
        "table",
        "1000",
    ]);
    let conntrack = enable_conntrack(&ns);
    if !conntrack {
        eprintln!("nft unavailable: the conntrack part is not checked");
    }

    let path = ns.path();
    let (host, port): (HostView, u16) = std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        // Sockets made from here on live in the namespace.
        let listener = TcpListener::bind("172.42.10.112:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(("172.42.10.112", port)).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        server.read_exact(&mut buf).unwrap();
        if conntrack {
            // A SYN to an address nobody has (it never leaves the namespace: ARP for it goes
            // to wt1 and is not answered): a conntrack entry with a peer that is not local.
            let target: SocketAddr = "172.42.10.50:9".parse().unwrap();
            let _ = TcpStream::connect_timeout(&target, Duration::from_millis(100));
        }
        let host = observe().expect("observe");
        drop((client, server, listener));
        (host, port)
    })
    .join()
    .expect("observer thread");

    // Only the namespace's interfaces: not the root namespace's.
    for a in &host.addresses {
        assert!(
            ["lo", "wt0", "wt1"].contains(&a.dev.as_str()),
            "unexpected address {a:?}"
        );
    }
    assert!(
        host.addresses
            .iter()
            .any(|a| a.addr.to_string() == "172.42.10.112/24" && a.dev == "wt0"),
        "{:#?}",
        host.addresses
    );
    assert!(host
        .addresses
        .iter()
        .any(|a| a.addr.to_string() == "fd00:42::112/64" && a.dev == "wt0"));

    let find = |dst: &str, table: u32| {
        host.routes
            .iter()
            .find(|r| r.dst.to_string() == dst && r.table == table)
            .unwrap_or_else(|| panic!("no route {dst} in table {table}: {:#?}", host.routes))
    };
    let default = find("0.0.0.0/0", 254);
    assert_eq!(
        default.gateway,
        Some("172.42.10.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(default.dev.as_deref(), Some("wt0"));
    assert_eq!(find("10.77.0.0/16", 100).dev.as_deref(), Some("wt0"));
    assert_eq!(
        find("10.78.0.0/16", 1000).gateway,
        Some("172.42.10.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(find("172.42.10.0/24", 254).dev.as_deref(), Some("wt0"));
    find("fd00:42::/64", 254);
    find("127.0.0.0/8", 255);

    let tcp_peer = host.peers.iter().find(|p| {
        p.source == PeerSource::Tcp
            && p.addr == "172.42.10.112".parse::<IpAddr>().unwrap()
            && p.local_port == port
    });
    assert!(
        tcp_peer.is_some(),
        "no TCP peer on port {port}: {:#?}",
        host.peers
    );

    if conntrack {
        let ct_peer = host.peers.iter().find(|p| {
            p.source == PeerSource::Conntrack
                && p.addr == "172.42.10.50".parse::<IpAddr>().unwrap()
                && p.remote_port == 9
        });
        assert!(ct_peer.is_some(), "no conntrack peer: {:#?}", host.peers);
        // Local addresses are never conntrack peers.
        assert!(!host.peers.iter().any(|p| p.source == PeerSource::Conntrack
            && p.addr == "172.42.10.112".parse::<IpAddr>().unwrap()));
    }
}
