//! `conntrack::{dump, forget}` and `host_facts::{listeners, socket_owner}` in a fresh network
//! namespace (needs root, `ip` and `nft`; skipped otherwise). Everything happens inside the
//! namespace `wt-ct-<pid>-<n>`, removed on drop, also when the test fails; the machine's own
//! namespace is never touched.

mod common;

use std::fs::File;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::process::Command;

use common::Netns;
use nix::sched::{setns, CloneFlags};
use weft::adapters::conntrack::{self, CtEntry};
use weft::adapters::host_facts::{listeners, socket_owner, Listener};

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        common::skipped("dumps_and_forgets_flows_and_lists_listeners", "needs root");
        return false;
    }
    for tool in ["ip", "nft"] {
        if Command::new(tool).arg("-V").output().is_err() {
            common::skipped(
                "dumps_and_forgets_flows_and_lists_listeners",
                &format!("needs the {tool} command (apt-get install nftables iproute2)"),
            );
            return false;
        }
    }
    true
}

/// Makes conntrack track this namespace: it only does once a rule uses it.
fn enable_conntrack(ns: &Netns) {
    for args in [
        &["add", "table", "inet", "wtct"][..],
        &[
            "add",
            "chain",
            "inet",
            "wtct",
            "out",
            "{ type filter hook output priority 0; }",
        ],
        &[
            "add", "rule", "inet", "wtct", "out", "ct", "state", "new", "accept",
        ],
    ] {
        common::ok(
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "nft"])
                .args(args),
        );
    }
}

/// Runs `f` on a thread that has entered the namespace at `path`.
fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_string();
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in the namespace")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The UDP entries of the dump going to `dst:dport`.
fn flows_to<'a>(entries: &'a [CtEntry], dst: &str, dport: u16) -> Vec<&'a CtEntry> {
    entries
        .iter()
        .filter(|e| e.proto == 17 && e.dst == ip(dst) && e.dport == dport)
        .collect()
}

#[test]
fn dumps_and_forgets_flows_and_lists_listeners() {
    if !can_run() {
        return;
    }
    let ns = Netns::new("ct");
    enable_conntrack(&ns);
    let path = ns.path();

    // Two UDP flows, sent from inside the namespace (nobody listens: the entries stay anyway).
    let sport = in_netns(&path, || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.send_to(b"x", "127.0.0.2:5000").expect("send 1");
        socket.send_to(b"y", "127.0.0.3:6000").expect("send 2");
        socket.local_addr().unwrap().port()
    });

    let (before, forgotten, after) = in_netns(&path, || {
        let before = conntrack::dump().expect("dump");
        let forgotten = conntrack::forget(&[ip("127.0.0.2")]).expect("forget");
        let after = conntrack::dump().expect("dump after forget");
        (before, forgotten, after)
    });
    for (dst, dport) in [("127.0.0.2", 5000), ("127.0.0.3", 6000)] {
        let flows = flows_to(&before, dst, dport);
        assert_eq!(flows.len(), 1, "no flow to {dst}:{dport}: {before:#?}");
        let e = flows[0];
        assert_eq!(i32::from(e.family), libc::AF_INET);
        assert_eq!((e.src, e.sport), (ip("127.0.0.1"), sport));
        assert_eq!(e.reply_src, Some(ip(dst)));
    }
    assert_eq!(forgotten, 1, "before: {before:#?}\nafter: {after:#?}");
    assert!(flows_to(&after, "127.0.0.2", 5000).is_empty(), "{after:#?}");
    assert_eq!(flows_to(&after, "127.0.0.3", 6000).len(), 1, "{after:#?}");
    // Deleting an entry that is already gone is fine.
    let gone = flows_to(&before, "127.0.0.2", 5000)[0].clone();
    in_netns(&path, move || conntrack::delete(&gone)).expect("delete again");

    // Listeners of the namespace, and their owner.
    let (found, tcp_port, udp_port) = in_netns(&path, || {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp bind");
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let found = listeners().expect("listeners");
        let ports = (
            tcp.local_addr().unwrap().port(),
            udp.local_addr().unwrap().port(),
        );
        // The sockets stay open until the owners are looked up.
        let owners: Vec<(Listener, Option<(u32, String)>)> = found
            .into_iter()
            .map(|l| {
                let owner = socket_owner(l.inode);
                (l, owner)
            })
            .collect();
        drop((tcp, udp));
        (owners, ports.0, ports.1)
    });
    for (proto, port) in [(6u8, tcp_port), (17u8, udp_port)] {
        let (l, owner) = found
            .iter()
            .find(|(l, _)| l.proto == proto && l.port == port)
            .unwrap_or_else(|| panic!("no listener {proto}/{port}: {found:#?}"));
        assert_eq!(l.addr, ip("127.0.0.1"));
        assert_ne!(l.inode, 0);
        let (pid, comm) = owner.as_ref().expect("an owner");
        assert_eq!(*pid, std::process::id());
        assert!(!comm.is_empty());
    }
    // Only this namespace's sockets: it has no others.
    assert_eq!(found.len(), 2, "{found:#?}");
}
