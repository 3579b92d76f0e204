//! The overlay as a security boundary, attacked: hosts (namespaces) on an underlay (a bridge
//! in its own namespace), etcd in another, one `weft daemon --etcd ...` per host, an overlay
//! network made with the CLI and sandboxes run on it.
//!
//! - A forged VXLAN datagram (the network's VNI, an inner frame for a sandbox) from an
//!   underlay address that is no member reaches nothing; the same from a member's VTEP does
//!   (the control). The host's own UDP to other ports is untouched.
//! - The members follow the cluster: a host whose agent is gone leaves the set on the others
//!   within the TTL; emptied sets, a flushed table and a deleted table are restored.
//! - A sandbox on an overlay network with CAP_NET_RAW cannot send with another sandbox's
//!   address or MAC across the tunnel, nor change a remote sandbox's neighbour table.
//!
//! Root only; namespaces only.

mod common;

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::etcd::{etcd_or_skip, Etcd};
use common::frames::{eth, gratuitous_arp, mac, udp4};
use common::overlay::{Agent, Underlay};
use common::{Host, Netns};

const TTL: u64 = 2;
const ETCD: &str = "10.78.0.2";
const ATTACKER: &str = "10.78.0.50";
const VXLAN_PORT: u16 = 4789;

fn vtep(i: usize) -> String {
    format!("10.78.0.1{i}")
}

/// `n` hosts on an underlay with etcd, an agent each (nodes h1..hn, VTEPs 10.78.0.1i), and
/// overlay network `ovl` (12.12.12.0/24) made on h1 and built everywhere.
struct Cluster {
    // Dropped in order: agents before their hosts, etcd and the underlay last.
    agents: Vec<Agent>,
    hosts: Vec<Host>,
    _etcd: Etcd,
    ul: Underlay,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        Cluster::with(n, |_, _| {})
    }

    /// The same, with `configure(i, host)` called for every host (index from 0) before its
    /// agent starts.
    fn with(n: usize, configure: impl Fn(usize, &Host)) -> Cluster {
        let ul = Underlay::new("wt-xul");
        let etcd = Etcd::start_on("wt-xet", &format!("{ETCD}:2379"), |ns| {
            ul.plug(ns, &format!("{ETCD}/24"))
        });
        let url = etcd.url();
        let hosts: Vec<Host> = (1..=n).map(|_| Host::new("wt-xh")).collect();
        for (i, h) in hosts.iter().enumerate() {
            configure(i, h);
            ul.plug(&h.ns, &format!("{}/24", vtep(i + 1)));
        }
        let agents = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Agent::start(h, &url, &vtep(i + 1), &format!("h{}", i + 1), TTL))
            .collect();
        let c = Cluster {
            agents,
            hosts,
            _etcd: etcd,
            ul,
        };
        let joined = common::wait_for(15, || {
            c.hosts.iter().all(|h| {
                h.json(&["daemon", "status"])["status"]["cluster"]["hosts"]
                    .as_array()
                    .is_some_and(|a| a.len() == n)
            })
        });
        assert!(joined, "the agents did not all join:\n{}", c.logs());
        c.hosts[0].weft_ok(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--subnet",
            "12.12.12.0/24",
            "ovl",
        ]);
        let built = common::wait_for(15, || {
            c.hosts.iter().all(|h| {
                h.weft_ok(&["network", "ls"]).contains("ovl")
                    && vteps(h).is_some_and(|v| v.len() + 1 == n)
            })
        });
        assert!(built, "ovl was not built everywhere:\n{}", c.logs());
        c
    }

    fn logs(&self) -> String {
        self.agents
            .iter()
            .map(Agent::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

/// The addresses in `h`'s `vteps4` set (`None`: no such set).
fn vteps(h: &Host) -> Option<Vec<String>> {
    let out = common::run(
        &mut h
            .ns
            .cmd("nft", &["-j", "list", "set", "inet", "weft", "vteps4"]),
    );
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let set = v["nftables"]
        .as_array()?
        .iter()
        .find_map(|o| o.get("set"))?
        .clone();
    let mut addrs: Vec<String> = set["elem"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    addrs.sort();
    Some(addrs)
}

fn nft(h: &Host, args: &[&str]) -> String {
    common::ok(&mut h.ns.cmd("nft", args))
}

/// The MAC of `eth0` in namespace `ns`.
fn eth0_mac(ns: &Netns) -> [u8; 6] {
    let v: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "link", "show", "eth0"])).unwrap();
    mac(v[0]["address"].as_str().unwrap())
}

/// A VXLAN header with `vni` and an inner UDP frame to `sandbox_mac`/`sandbox_ip` carrying
/// `marker`, from an address and MAC no sandbox has.
fn vxlan_payload(vni: u32, sandbox_mac: [u8; 6], sandbox_ip: &str, marker: &[u8]) -> Vec<u8> {
    let inner = eth(
        sandbox_mac,
        [0x02, 0x42, 0xde, 0xad, 0xbe, 0xef],
        0x0800,
        &udp4(
            Ipv4Addr::new(12, 12, 12, 250),
            sandbox_ip.parse().unwrap(),
            5000,
            5001,
            marker,
        ),
    );
    let mut vx = vec![0x08, 0, 0, 0];
    vx.extend_from_slice(&vni.to_be_bytes()[1..]);
    vx.push(0);
    vx.extend_from_slice(&inner);
    vx
}

/// A VXLAN datagram from `src` (underlay address, sent from `from`'s `eth0`) to host `to`'s
/// VTEP, carrying `vx` (see [`vxlan_payload`]).
fn forged_vxlan(from: &Netns, src: &str, to: &Host, to_vtep: &str, vx: &[u8]) -> Vec<u8> {
    eth(
        eth0_mac(&to.ns),
        eth0_mac(from),
        0x0800,
        &udp4(
            src.parse().unwrap(),
            to_vtep.parse().unwrap(),
            40000,
            VXLAN_PORT,
            vx,
        ),
    )
}

/// The MAC of `ovl`'s bridge on `h` (its gateway's).
fn gateway_mac(h: &Host) -> [u8; 6] {
    let id = h.json(&["network", "inspect", "ovl"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bridge: serde_json::Value =
        serde_json::from_str(
            &h.ns
                .ip(&["-j", "link", "show", &format!("wo-{}", &id[..12])]),
        )
        .unwrap();
    mac(bridge[0]["address"].as_str().unwrap())
}

/// `h`'s connection tracking table (`/proc/net/nf_conntrack` of its namespace).
fn conntrack(h: &Host) -> String {
    common::ok(&mut h.ns.cmd("cat", &["/proc/net/nf_conntrack"]))
}

/// Sends raw frames out of `eth0` of namespace `ns` (three times each).
fn send_from(ns: &Netns, frames: &[Vec<u8>]) {
    let hexes: Vec<String> = frames.iter().map(|f| common::frames::hex(f)).collect();
    let mut args = vec!["frame", "eth0", "--count", "3"];
    args.extend(hexes.iter().map(String::as_str));
    let out = ns.tool(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn only_member_vteps_feed_the_tunnel_and_the_members_follow_the_cluster() {
    let test = "only_member_vteps_feed_the_tunnel_and_the_members_follow_the_cluster";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let mut c = Cluster::new(3);
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    // Each host's members: the others' VTEPs (never its own).
    let others = |i: usize| -> Vec<String> { (1..=3).filter(|&j| j != i).map(vtep).collect() };
    for (i, h) in c.hosts.iter().enumerate() {
        assert_eq!(vteps(h), Some(others(i + 1)), "host {}'s members", i + 1);
    }
    let all = others(1);
    let input = nft(h1, &["list", "chain", "inet", "weft", "input"]);
    assert!(
        input.contains("udp dport 4789 ip saddr != @vteps4 drop")
            && input.contains("udp dport 4789 ip6 saddr != @vteps6 drop"),
        "{input}"
    );
    let forward = nft(h1, &["list", "chain", "inet", "weft", "forward"]);
    assert!(
        forward.contains("udp dport 4789 iifname @bridges ip daddr @vteps4 drop")
            && forward.contains("udp dport 4789 iifname @bridges ip6 daddr @vteps6 drop"),
        "{forward}"
    );
    let vni = h1.json(&["network", "inspect", "ovl"])[0]["vni"]
        .as_u64()
        .unwrap();
    let vni = u32::try_from(vni).unwrap();
    h1.sleeper("a", &["--network", "ovl"]);
    h2.sleeper("b", &["--network", "ovl"]);
    let (a_ip, b_ip) = (h1.ip_of("a", 0), h2.ip_of("b", 0));
    assert!(
        common::wait_for(10, || h1.pings("a", &b_ip)),
        "a reaches b across the tunnel:\n{}",
        c.logs()
    );
    let a_mac = mac(&h1.mac_of("a", 0));

    // A namespace on the underlay that is no member.
    let attacker = Netns::new("wt-xat");
    c.ul.plug(&attacker, &format!("{ATTACKER}/24"));
    // The stranger's datagram reaches nothing, a member's does.
    let check_injection = |stranger: &Netns, stranger_ip: &str, what: &str| {
        let sniff = h1.sniff("a", "eth0", &[b"from-a-stranger", b"from-a-member"], 3);
        send_from(
            stranger,
            &[forged_vxlan(
                stranger,
                stranger_ip,
                h1,
                &vtep(1),
                &vxlan_payload(vni, a_mac, &a_ip, b"from-a-stranger"),
            )],
        );
        // The control: the same datagram from a member's VTEP (h2's underlay interface).
        send_from(
            &h2.ns,
            &[forged_vxlan(
                &h2.ns,
                &vtep(2),
                h1,
                &vtep(1),
                &vxlan_payload(vni, a_mac, &a_ip, b"from-a-member"),
            )],
        );
        let counts = sniff.counts();
        assert_eq!(
            counts[0], 0,
            "{what}: a non-member's datagram reached the sandbox"
        );
        assert!(
            counts[1] > 0,
            "{what}: a member's datagram did not: {counts:?}"
        );
    };
    check_injection(&attacker, ATTACKER, "at first");

    // A sandbox sending VXLAN to its gateway (the device's socket listens on every address
    // of the host): the inner frame, with any source, would enter the bridge past the
    // sandbox's port guard. d, on the same host, sees nothing.
    h1.sleeper("d", &["--network", "ovl"]);
    let (d_ip, d_mac) = (h1.ip_of("d", 0), mac(&h1.mac_of("d", 0)));
    let gw_mac = gateway_mac(h1);
    let sniff = h1.sniff("d", "eth0", &[b"via-the-gateway"], 3);
    h1.send_frames(
        "a",
        "eth0",
        &[eth(
            gw_mac,
            a_mac,
            0x0800,
            &udp4(
                a_ip.parse().unwrap(),
                Ipv4Addr::new(12, 12, 12, 1),
                40000,
                VXLAN_PORT,
                &vxlan_payload(vni, d_mac, &d_ip, b"via-the-gateway"),
            ),
        )],
    );
    assert_eq!(
        sniff.counts(),
        [0],
        "a sandbox's VXLAN to its gateway reached its neighbour"
    );

    // Two ways to borrow a member's source address:
    // - a sandbox on h1 sends VXLAN to h2's VTEP: routed out and masqueraded, it would
    //   leave with h1's VTEP as its source, a member's (h1's forward chain must stop it);
    // - any process on h1 sends from h1's own VTEP to h1's own VTEP (no host sends VXLAN to
    //   itself, so the own address is no member).
    let b_mac = mac(&h2.mac_of("b", 0));
    let via_masq = h2.sniff("b", "eth0", &[b"via-masquerade"], 3);
    let from_host = h1.sniff("d", "eth0", &[b"from-the-host"], 3);
    h1.send_frames(
        "a",
        "eth0",
        &[eth(
            gw_mac,
            a_mac,
            0x0800,
            &udp4(
                a_ip.parse().unwrap(),
                vtep(2).parse().unwrap(),
                40000,
                VXLAN_PORT,
                &vxlan_payload(vni, b_mac, &b_ip, b"via-masquerade"),
            ),
        )],
    );
    let payload: String = vxlan_payload(vni, d_mac, &d_ip, b"from-the-host")
        .iter()
        .map(|b| format!("\\x{b:02x}"))
        .collect();
    common::ok(&mut h1.ns.cmd(
        "python3",
        &[
            "-c",
            &format!(
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{v}',0))\nfor _ in range(3): s.sendto(b'{payload}',('{v}',{VXLAN_PORT}))",
                v = vtep(1)
            ),
        ],
    ));
    assert_eq!(
        (via_masq.counts(), from_host.counts()),
        (vec![0], vec![0]),
        "(a sandbox's VXLAN masqueraded to another member, a host process's from its own VTEP)"
    );

    // The host's own UDP to another port, from the same stranger: untouched.
    let listener = h1
        .ns
        .cmd(
            "python3",
            &[
                "-c",
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',4790))\ns.settimeout(8)\nprint(s.recvfrom(100)[0].decode())",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    common::ok(&mut attacker.cmd(
        "python3",
        &[
            "-c",
            &format!(
                "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor _ in range(5):\n s.sendto(b'plain-udp',('{}',4790)); time.sleep(0.1)",
                vtep(1)
            ),
        ],
    ));
    let got = listener.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "plain-udp",
        "UDP to another port is not the rule's"
    );

    // The members' sets emptied behind the agent's back: refilled.
    nft(h1, &["flush", "set", "inet", "weft", "vteps4"]);
    let t = Instant::now();
    assert!(
        common::wait_for(5, || vteps(h1) == Some(all.clone())),
        "the members came back: {:?}\n{}",
        vteps(h1),
        c.logs()
    );
    eprintln!("vteps4 flushed on h1: members back in {:?}", t.elapsed());
    // weft's table flushed (its rules): the rules come back, the members stay.
    nft(h1, &["flush", "table", "inet", "weft"]);
    assert!(
        common::wait_for(5, || nft(h1, &["list", "chain", "inet", "weft", "input"])
            .contains("udp dport 4789 ip saddr != @vteps4 drop")),
        "the member rule came back:\n{}",
        c.logs()
    );
    assert_eq!(vteps(h1), Some(all.clone()));
    // weft's table deleted: rebuilt, and the members filled in again.
    nft(h1, &["delete", "table", "inet", "weft"]);
    let t = Instant::now();
    assert!(
        common::wait_for(8, || vteps(h1) == Some(all.clone())
            && nft(h1, &["list", "chain", "inet", "weft", "input"])
                .contains("udp dport 4789 ip saddr != @vteps4 drop")),
        "the table and its members came back: {:?}\n{}",
        vteps(h1),
        c.logs()
    );
    eprintln!(
        "inet weft deleted on h1: table and members back in {:?}",
        t.elapsed()
    );
    check_injection(&attacker, ATTACKER, "after the repairs");

    // h3's agent killed: its VTEP leaves the others' sets within the TTL (and a margin).
    c.agents[2].kill9();
    let t = Instant::now();
    let gone = common::wait_for(TTL + 4, || {
        vteps(&c.hosts[0]) == Some(vec![vtep(2)]) && vteps(&c.hosts[1]) == Some(vec![vtep(1)])
    });
    assert!(
        gone,
        "h3 is no member any more: {:?}\n{}",
        vteps(&c.hosts[0]),
        c.logs()
    );
    eprintln!(
        "h3's agent killed: its VTEP out of both sets in {:?}",
        t.elapsed()
    );
    // What h3 sends now is a stranger's.
    check_injection(&c.hosts[2].ns, &vtep(3), "from h3 once it left");
    let h1 = &c.hosts[0];
    h1.weft_ok(&["rm", "-f", "a", "d"]);
    c.hosts[1].weft_ok(&["rm", "-f", "b"]);
}

/// The tunnel's own datagrams between members skip connection tracking (no entry on either
/// host while sandboxes talk across it); a sandbox's datagram to the VXLAN port with a
/// member's VTEP as its forged source (h1's port guard off, so that it gets that far) does
/// not: it comes from a weft bridge, stays tracked, and the rules that read conntrack (the
/// loopback guard of `input`, published ports) see it as before.
#[test]
fn only_the_members_tunnel_skips_conntrack() {
    let test = "only_the_members_tunnel_skips_conntrack";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let c = Cluster::with(2, |i, h| {
        if i == 0 {
            h.config("anti_spoofing = false\n");
        }
    });
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    let raw = nft(h1, &["list", "chain", "inet", "weft", "raw"]);
    assert!(
        raw.contains("udp dport 4789 ip saddr @vteps4 iifname != @bridges notrack return")
            && raw.contains("udp dport 4789 ip6 saddr @vteps6 iifname != @bridges notrack return"),
        "{raw}"
    );
    let out = nft(h1, &["list", "chain", "inet", "weft", "raw_output"]);
    assert!(
        out.contains("udp dport 4789 ip daddr @vteps4 notrack")
            && out.contains("udp dport 4789 ip6 daddr @vteps6 notrack"),
        "{out}"
    );
    h1.sleeper("a", &["--network", "ovl"]);
    h2.sleeper("b", &["--network", "ovl"]);
    let b_ip = h2.ip_of("b", 0);
    assert!(
        common::wait_for(10, || h1.pings("a", &b_ip)),
        "a reaches b across the tunnel:\n{}",
        c.logs()
    );
    for (h, name) in [(h1, "h1"), (h2, "h2")] {
        let ct = conntrack(h);
        assert!(
            !ct.lines().any(|l| l.contains("dport=4789")),
            "{name} tracks the tunnel:\n{ct}"
        );
    }
    // a forges h2's VTEP as its source, to its gateway's VXLAN port.
    let a_ip = h1.ip_of("a", 0);
    let a_mac = mac(&h1.mac_of("a", 0));
    h1.send_frames(
        "a",
        "eth0",
        &[eth(
            gateway_mac(h1),
            a_mac,
            0x0800,
            &udp4(
                vtep(2).parse().unwrap(),
                Ipv4Addr::new(12, 12, 12, 1),
                40000,
                VXLAN_PORT,
                b"forged-member",
            ),
        )],
    );
    let tracked = format!("src={} dst=12.12.12.1 sport=40000 dport=4789", vtep(2));
    assert!(
        common::wait_for(3, || conntrack(h1).contains(&tracked)),
        "a sandbox forging a member's address went untracked ({a_ip}):\n{}",
        conntrack(h1)
    );
}

#[test]
fn an_overlay_sandbox_cannot_send_as_another() {
    let test = "an_overlay_sandbox_cannot_send_as_another";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let c = Cluster::new(2);
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    // a (the attacker) and c (its victim) on h1, b (the peer) on h2.
    h1.sleeper("a", &["--network", "ovl"]);
    h1.sleeper("c", &["--network", "ovl"]);
    h2.sleeper("b", &["--network", "ovl"]);
    let (a_ip, b_ip, c_ip) = (h1.ip_of("a", 0), h2.ip_of("b", 0), h1.ip_of("c", 0));
    let (a_mac, b_mac, c_mac) = (
        mac(&h1.mac_of("a", 0)),
        mac(&h2.mac_of("b", 0)),
        mac(&h1.mac_of("c", 0)),
    );
    assert!(
        common::wait_for(10, || h2.pings("b", &c_ip) && h2.pings("b", &a_ip)),
        "b reaches a and c:\n{}",
        c.logs()
    );
    let c_text = h1.mac_of("c", 0);
    let neigh_of_c = || h2.ip_in("b", &["neigh", "show", &c_ip]);
    let before = neigh_of_c();
    assert!(before.contains(&format!("lladdr {c_text}")), "{before}");

    let (a4, b4, c4): (Ipv4Addr, Ipv4Addr, Ipv4Addr) = (
        a_ip.parse().unwrap(),
        b_ip.parse().unwrap(),
        c_ip.parse().unwrap(),
    );
    let udp = |src_mac, src_ip, marker: &[u8]| {
        eth(
            b_mac,
            src_mac,
            0x0800,
            &udp4(src_ip, b4, 5000, 5001, marker),
        )
    };
    let sniff = h2.sniff(
        "b",
        "eth0",
        &[b"own-source", b"forged-ip", b"forged-mac", b"forged-both"],
        3,
    );
    h1.send_frames(
        "a",
        "eth0",
        &[
            udp(a_mac, a4, b"own-source"),
            udp(a_mac, c4, b"forged-ip"),
            udp(c_mac, a4, b"forged-mac"),
            udp(c_mac, c4, b"forged-both"),
            // c's address claimed for a's MAC, and for c's own MAC from a's port.
            gratuitous_arp(a_mac, a_mac, c4),
            gratuitous_arp(c_mac, c_mac, c4),
            gratuitous_arp(a_mac, c_mac, c4),
        ],
    );
    let counts = sniff.counts();
    assert!(
        counts[0] > 0,
        "a's own frame crosses the tunnel: {counts:?}"
    );
    assert_eq!(
        &counts[1..],
        [0, 0, 0],
        "forged frames reached b (ip, mac, both)"
    );
    // b's neighbour entry for c still names c's MAC, and so does h2's VXLAN device.
    std::thread::sleep(Duration::from_millis(300));
    let after = neigh_of_c();
    assert!(
        after.contains(&format!("lladdr {c_text}")),
        "b's entry for c changed: {after}"
    );
    let id = h1.json(&["network", "inspect", "ovl"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dev = format!("wv-{}", &id[..12]);
    let remote = common::ok(&mut h2.ns.cmd("ip", &["neigh", "show", &c_ip, "dev", &dev]));
    assert!(
        remote.contains(&c_text),
        "h2's entry for c changed: {remote}"
    );
    // And the forged MAC was learned nowhere on h1's bridge but at c's own port.
    let bridge = format!("wo-{}", &id[..12]);
    let fdb = common::ok(&mut h1.ns.cmd("bridge", &["fdb", "show", "br", &bridge]));
    let a_port = h1.json(&["inspect", "a"])[0]["networks"][0]["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !fdb.lines()
            .any(|l| l.starts_with(&c_text) && l.contains(&format!("dev {a_port} "))),
        "c's MAC was learned on a's port:\n{fdb}"
    );
    for (h, s) in [(h1, "a"), (h1, "c"), (h2, "b")] {
        h.weft_ok(&["rm", "-f", s]);
    }
}

/// Deletes weft's table on `h` from a process named `weft` (a copy of `nft` by that name):
/// the kernel names weft's own transactions so, and the agent trusts them.
fn delete_table_as_weft(h: &Host) {
    let nft = common::stdout(&common::run(
        std::process::Command::new("sh").args(["-c", "command -v nft"]),
    ));
    let dir = h.dir.join("as-weft");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("weft");
    std::fs::copy(nft.trim(), &copy).unwrap();
    common::ok(
        &mut h
            .ns
            .cmd(copy.to_str().unwrap(), &["delete", "table", "inet", "weft"]),
    );
}

#[test]
fn the_members_come_back_at_once_when_a_weft_command_rebuilds_the_table() {
    let test = "the_members_come_back_at_once_when_a_weft_command_rebuilds_the_table";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let c = Cluster::new(2);
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    h1.sleeper("a", &["--network", "ovl"]);
    h2.sleeper("b", &["--network", "ovl"]);
    let b_ip = h2.ip_of("b", 0);
    assert!(
        common::wait_for(10, || h1.pings("a", &b_ip)),
        "a reaches b across the tunnel:\n{}",
        c.logs()
    );
    let member = Some(vec![vtep(2)]);
    // Each rebuild, then a command on h1 right away: the members are back within a second
    // and traffic resumes.
    let rebuilds: [(&str, &dyn Fn()); 3] = [
        ("nft flush ruleset", &|| {
            nft(h1, &["flush", "ruleset"]);
        }),
        ("nft delete table inet weft", &|| {
            nft(h1, &["delete", "table", "inet", "weft"]);
        }),
        // A transaction of a process named weft (as a command's own rebuild is): trusted
        // for the rules, not for the members.
        ("the table deleted by a process named weft", &|| {
            delete_table_as_weft(h1)
        }),
    ];
    for (i, (what, rebuild)) in rebuilds.iter().enumerate() {
        rebuild();
        h1.sleeper(&format!("e{i}"), &["--network", "ovl"]);
        let t = Instant::now();
        let back = common::wait_for(3, || vteps(h1) == member && h1.pings("a", &b_ip));
        let took = t.elapsed();
        assert!(
            back && took < Duration::from_millis(1500),
            "{what}, then a weft command: members {:?} after {took:?}\n{}",
            vteps(h1),
            c.logs()
        );
        eprintln!("{what}, then a weft command: members back and a reaches b in {took:?}");
    }
    for (h, s) in [(h1, "a"), (h1, "e0"), (h1, "e1"), (h1, "e2"), (h2, "b")] {
        h.weft_ok(&["rm", "-f", s]);
    }
}
