//! The overlay's data plane, built by weft's own executor from plan operations: a VXLAN
//! device per "host" namespace, the forwarding and neighbour entries that make sandboxes on
//! different hosts reach each other, what is read back for repairs, and what a sandbox with
//! CAP_NET_RAW cannot change on another host.
//!
//! Topology: an "underlay" namespace holding a bridge, two "host" namespaces each joined to
//! it by a veth (`eth1`, MTU 1500), and in each host a bridge, a VXLAN device and two
//! "sandbox" namespaces — all made by [`KernelExecutor`] (the underlay by `ip`, as a real
//! network would be there already). Everything lives in namespaces made here.

mod common;

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};

use common::frames::{arp_reply, eth, gratuitous_arp, hex, ipv4, udp4, BROADCAST};
use common::{ok, root_or_skip, weft_bin, Netns};
use ipnet::IpNet;
use weft::adapters::netlink::KernelExecutor;
use weft::adapters::netns;
use weft::core::overlay_observed::{UnderlayLink, VxlanObserved, FLOOD_MAC};
use weft::core::plan::{apply_all, Executor, Ns, Op};
use weft::core::reconcile::{sysctl_keys, unmet, Views};

const VNI: u32 = 42;
const PORT: u16 = 4789;
const MTU: u32 = 1450;
const BRIDGE: &str = "wo-t";
const VXLAN: &str = "wv-t";
const NET_ALIAS: &str = "weft:overlaytest";

/// Applies `ops` with a [`KernelExecutor`] made on a thread inside `host` (so its host
/// namespace is that one); the first error as text.
fn apply_in(host: &Netns, ops: Vec<Op>) -> Result<(), String> {
    netns::run_in(Path::new(&host.path()), move || {
        let mut k = KernelExecutor::new().map_err(|e| e.to_string())?;
        apply_all(&mut k, &ops).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}

/// Applies one op, without rollback.
fn apply_one(host: &Netns, op: Op) -> Result<(), String> {
    netns::run_in(Path::new(&host.path()), move || {
        let mut k = KernelExecutor::new().map_err(|e| e.to_string())?;
        k.apply(&op).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}

/// What the kernel of `host` has on its VXLAN device.
fn observe(host: &Netns) -> Option<VxlanObserved> {
    netns::run_in(Path::new(&host.path()), || {
        KernelExecutor::new().unwrap().observe_vxlan(VXLAN)
    })
    .unwrap()
    .unwrap()
}

fn underlay_of(host: &Netns, local: IpAddr) -> Option<UnderlayLink> {
    netns::run_in(Path::new(&host.path()), move || {
        KernelExecutor::new().unwrap().underlay_link(local)
    })
    .unwrap()
    .unwrap()
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0x42, 12, 12, 12, n]
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(12, 12, 12, n)
}

fn vtep(subnet: u8, n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 99, subnet, n))
}

/// Bridge with the gateway 12.12.12.1 (the same MAC on every host, as weft derives it from
/// the gateway address) and the VXLAN device on it.
fn network_ops(local: IpAddr) -> Vec<Op> {
    vec![
        Op::CreateBridge {
            name: BRIDGE.into(),
            mtu: MTU,
            mac: mac(1),
            alias: NET_ALIAS.into(),
            ipv6: false,
        },
        Op::AddAddress {
            ns: Ns::Host,
            ifname: BRIDGE.into(),
            addr: "12.12.12.1/24".parse().unwrap(),
        },
        Op::LinkUp {
            ns: Ns::Host,
            ifname: BRIDGE.into(),
        },
        Op::CreateVxlan {
            name: VXLAN.into(),
            vni: VNI,
            local,
            port: PORT,
            mtu: MTU,
            bridge: BRIDGE.into(),
            alias: NET_ALIAS.into(),
        },
    ]
}

/// A sandbox's veth (host end `vt<n>`, MAC `mac(n)`, address 12.12.12.n/24).
fn sandbox_ops(sb: &Netns, n: u8) -> Vec<Op> {
    let ns = Ns::Sandbox(sb.path());
    vec![
        Op::CreateVeth {
            host_ifname: format!("vt{n}"),
            bridge: BRIDGE.into(),
            mtu: MTU,
            isolated: false,
            alias: format!("weft:sb{n}"),
            peer_ns: sb.path(),
            peer_ifname: "eth0".into(),
            peer_mac: mac(n),
            peer_ipv6: false,
        },
        Op::AddAddress {
            ns: ns.clone(),
            ifname: "eth0".into(),
            addr: IpNet::new(IpAddr::V4(ip(n)), 24).unwrap(),
        },
        Op::LinkUp {
            ns,
            ifname: "eth0".into(),
        },
    ]
}

/// What a host writes for a remote sandbox `n` behind the VTEP `dst`.
fn remote_ops(n: u8, dst: IpAddr) -> Vec<Op> {
    vec![
        Op::AddNeighbour {
            ns: Ns::Host,
            ifname: VXLAN.into(),
            ip: IpAddr::V4(ip(n)),
            mac: mac(n),
        },
        Op::AddFdb {
            ifname: VXLAN.into(),
            mac: mac(n),
            dst,
        },
    ]
}

fn flood_op(dst: IpAddr) -> Op {
    Op::AddFdb {
        ifname: VXLAN.into(),
        mac: FLOOD_MAC,
        dst,
    }
}

/// Two hosts on an underlay, each with the overlay network and two sandboxes: host A has
/// sandboxes 2 and 3, host B 4 and 5. With `entries`, each host has the other's neighbour,
/// forwarding and flood entries.
struct Overlay {
    underlay: Netns,
    a: Netns,
    b: Netns,
    /// Sandboxes 2, 3 (on A), 4, 5 (on B), in that order.
    sb: Vec<Netns>,
    vtep_a: IpAddr,
    vtep_b: IpAddr,
}

impl Overlay {
    fn new(subnet: u8, entries: bool) -> Self {
        Self::with_underlay(vtep(subnet, 1), vtep(subnet, 2), 24, entries)
    }

    /// The same on an underlay whose VTEP addresses are `vtep_a`/`vtep_b`/`prefix`.
    fn with_underlay(vtep_a: IpAddr, vtep_b: IpAddr, prefix: u8, entries: bool) -> Self {
        let underlay = Netns::new("vxu");
        underlay.ip(&["link", "add", "ul", "type", "bridge"]);
        underlay.ip(&["link", "set", "ul", "up"]);
        let a = Netns::new("vxa");
        let b = Netns::new("vxb");
        for (h, port, v) in [(&a, "ua", vtep_a), (&b, "ub", vtep_b)] {
            h.ip(&[
                "link",
                "add",
                "eth1",
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                &underlay.name,
            ]);
            underlay.ip(&["link", "set", port, "master", "ul", "up"]);
            let cidr = format!("{v}/{prefix}");
            // No duplicate address detection: the tunnel's source address is usable at once.
            h.ip(&["addr", "add", &cidr, "dev", "eth1", "nodad"]);
            h.ip(&["link", "set", "eth1", "up"]);
        }
        let sb: Vec<Netns> = (0..4).map(|_| Netns::new("vxs")).collect();
        let mut ops_a = network_ops(vtep_a);
        let mut ops_b = network_ops(vtep_b);
        ops_a.extend(sandbox_ops(&sb[0], 2));
        ops_a.extend(sandbox_ops(&sb[1], 3));
        ops_b.extend(sandbox_ops(&sb[2], 4));
        ops_b.extend(sandbox_ops(&sb[3], 5));
        if entries {
            ops_a.push(flood_op(vtep_b));
            ops_b.push(flood_op(vtep_a));
            for n in [4, 5] {
                ops_a.extend(remote_ops(n, vtep_b));
            }
            for n in [2, 3] {
                ops_b.extend(remote_ops(n, vtep_a));
            }
        }
        apply_in(&a, ops_a).expect("host A");
        apply_in(&b, ops_b).expect("host B");
        Overlay {
            underlay,
            a,
            b,
            sb,
            vtep_a,
            vtep_b,
        }
    }

    /// Sandbox `n` (2..=5).
    fn sandbox(&self, n: u8) -> &Netns {
        &self.sb[usize::from(n - 2)]
    }
}

/// An ICMP echo from a raw socket (no `ping` on a fresh machine): `dst size df tries`; exit
/// 0 on an answer with the full payload, 1 without answer, 2 when the send is refused (a
/// don't-fragment packet above the interface's MTU).
const PING: &str = r#"
import os, socket, struct, sys, time
dst, size, df, tries = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
# IP_MTU_DISCOVER = 10: IP_PMTUDISC_DO (2) sets DF and refuses what does not fit.
s.setsockopt(socket.IPPROTO_IP, 10, 2 if df else 0)
s.settimeout(0.3)
ident = os.getpid() & 0xffff
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
payload = bytes(i & 0xff for i in range(size))
for seq in range(tries):
    h = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(h + payload), ident, seq) + payload
    try:
        s.sendto(pkt, (dst, 0))
    except OSError as e:
        print("refused:", e); sys.exit(2)
    end = time.time() + 0.3
    while time.time() < end:
        try:
            d = s.recv(65535)
        except socket.timeout:
            break
        ic = d[(d[0] & 15) * 4:]
        if len(ic) >= 8 and ic[0] == 0 and struct.unpack("!HH", ic[4:8]) == (ident, seq):
            print("reply", len(ic) - 8); sys.exit(0 if len(ic) - 8 == size else 3)
sys.exit(1)
"#;

/// Exit code of [`PING`] from `sb` to `dst`.
fn ping(sb: &Netns, dst: Ipv4Addr, size: usize, df: bool, tries: u32) -> i32 {
    let out = common::run(&mut sb.cmd(
        "python3",
        &[
            "-c",
            PING,
            &dst.to_string(),
            &size.to_string(),
            if df { "1" } else { "0" },
            &tries.to_string(),
        ],
    ));
    out.status.code().unwrap_or(-1)
}

fn pings(sb: &Netns, dst: Ipv4Addr) -> bool {
    ping(sb, dst, 56, false, 10) == 0
}

/// Records, for `secs` seconds, every ARP frame and every UDP datagram an underlay port
/// carries (both directions): outer fields, VXLAN header, inner ethertype and ARP target.
const SNIFF: &str = r#"
import json, socket, struct, sys, time
iface, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((iface, 0)); s.settimeout(0.2)
print("listening", flush=True)
out = []; end = time.time() + secs
while time.time() < end:
    try:
        d = s.recv(65535)
    except socket.timeout:
        continue
    et = struct.unpack("!H", d[12:14])[0]
    if et == 0x0806:
        out.append({"arp": socket.inet_ntoa(d[38:42])}); continue
    if et != 0x0800 or d[14 + 9] != 17:
        continue
    ip = d[14:]; ihl = (ip[0] & 15) * 4
    udp = ip[ihl:]; vx = udp[8:16]; inner = udp[16:]
    r = {"dport": struct.unpack("!H", udp[2:4])[0], "len": struct.unpack("!H", ip[2:4])[0],
         "df": bool(struct.unpack("!H", ip[6:8])[0] & 0x4000),
         "flags": vx[0], "vni": int.from_bytes(vx[4:7], "big"),
         "inner": struct.unpack("!H", inner[12:14])[0] if len(inner) >= 14 else 0}
    if r["inner"] == 0x0806:
        r["inner_arp"] = socket.inet_ntoa(inner[14 + 24:14 + 28])
    out.append(r)
print(json.dumps(out), flush=True)
"#;

struct Capture {
    /// `None` once its records were read.
    child: Option<std::process::Child>,
}

impl Capture {
    /// Starts capturing on `iface` of `ns`; returns once the socket is bound.
    fn start(ns: &Netns, iface: &str, secs: u32) -> Self {
        let mut child = ns
            .cmd("python3", &["-c", SNIFF, iface, &secs.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.as_mut().unwrap();
        let mut r = std::io::BufReader::new(stdout);
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening");
        Capture { child: Some(child) }
    }

    /// Waits for the end and returns the records.
    fn records(mut self) -> Vec<serde_json::Value> {
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }
}

impl Drop for Capture {
    /// A test that fails before reading the records does not leave the capture running
    /// (nor its namespace held).
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn vxlan_device_entries_and_observation() {
    if !root_or_skip("vxlan_device_entries_and_observation") {
        return;
    }
    let h = Netns::new("vxh");
    h.ip(&[
        "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
    ]);
    h.ip(&["addr", "add", "10.99.9.1/24", "dev", "eth1"]);
    h.ip(&["link", "set", "eth1", "mtu", "9000", "up"]);
    let local = vtep(9, 1);
    apply_in(&h, network_ops(local)).unwrap();

    // The underlay: the interface holding the advertised address, with its MTU.
    let u = underlay_of(&h, local).expect("eth1 holds the address");
    assert_eq!((u.name.as_str(), u.mtu), ("eth1", 9000));
    assert_eq!(u.overlay_mtu(None), Ok(8950));
    assert_eq!(underlay_of(&h, vtep(9, 7)), None);

    // The device as planned.
    let obs = observe(&h).expect("the device exists");
    let c = &obs.config;
    assert_eq!(c.vni, Some(VNI));
    assert_eq!(c.local, Some(local));
    assert_eq!(c.port, Some(PORT));
    assert_eq!(c.learning, Some(false));
    assert_eq!(c.proxy, Some(true));
    assert_eq!((c.l2miss, c.l3miss), (Some(false), Some(false)));
    assert_eq!(c.master.as_deref(), Some(BRIDGE));
    assert_eq!(
        c.port_learning,
        Some(false),
        "its bridge port does not learn"
    );
    assert_eq!(c.mtu, Some(MTU));
    assert!(c.up);
    assert_eq!(c.alias.as_deref(), Some(NET_ALIAS));
    assert!(obs.fdb.is_empty(), "no entry until written: {:?}", obs.fdb);
    // `ip -d` agrees (no learning, proxy, the port).
    let details = h.ip(&["-d", "link", "show", VXLAN]);
    for want in [
        "vxlan id 42",
        "local 10.99.9.1",
        "dstport 4789",
        "nolearning",
        "proxy",
    ] {
        assert!(details.contains(want), "{want} missing in {details}");
    }

    // Flood entries: one per VTEP under the zero MAC, appended; writing one again is fine.
    let (v2, v3) = (vtep(9, 2), vtep(9, 3));
    apply_in(&h, vec![flood_op(v2), flood_op(v3), flood_op(v2)]).unwrap();
    let obs = observe(&h).unwrap();
    assert_eq!(obs.flood_dsts(), vec![v2, v3], "{:?}", obs.fdb);

    // A unicast MAC: one VTEP, replaced when it moves; the bridge gets a static sticky entry.
    apply_in(&h, remote_ops(4, v2)).unwrap();
    apply_in(&h, remote_ops(4, v2)).unwrap();
    assert!(observe(&h).unwrap().has_fdb(mac(4), v2));
    apply_one(
        &h,
        Op::AddFdb {
            ifname: VXLAN.into(),
            mac: mac(4),
            dst: v3,
        },
    )
    .unwrap();
    let obs = observe(&h).unwrap();
    assert!(
        obs.has_fdb(mac(4), v3) && !obs.has_fdb(mac(4), v2),
        "{:?}",
        obs.fdb
    );
    assert_eq!(obs.bridge_macs, vec![mac(4)]);
    assert!(
        obs.has_neighbour(IpAddr::V4(ip(4)), mac(4)),
        "{:?}",
        obs.neighbours
    );
    let bridge_fdb = ok(Command::new("bridge").args(["-n", &h.name, "fdb", "show", "dev", VXLAN]));
    let line = bridge_fdb
        .lines()
        .find(|l| l.starts_with("02:42:0c:0c:0c:04") && l.contains("master"))
        .unwrap_or_else(|| panic!("no bridge entry: {bridge_fdb}"));
    assert!(line.contains("static") && line.contains("sticky"), "{line}");

    // The old destination removed after a move: the MAC stays tunnelled (to its new VTEP)
    // and keeps its bridge entry.
    let del = |m: [u8; 6], d: IpAddr| Op::DeleteFdb {
        ifname: VXLAN.into(),
        mac: m,
        dst: d,
    };
    apply_one(&h, del(mac(4), v2)).unwrap();
    assert!(observe(&h).unwrap().has_fdb(mac(4), v3));
    let shown = ok(Command::new("bridge").args(["-n", &h.name, "fdb", "show", "dev", VXLAN]));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("02:42:0c:0c:0c:04") && l.contains("master")),
        "{shown}"
    );

    // Deleting one flood entry leaves the other; deleting what is gone is success.
    apply_one(&h, del(FLOOD_MAC, v2)).unwrap();
    apply_one(&h, del(FLOOD_MAC, v2)).unwrap();
    assert_eq!(observe(&h).unwrap().flood_dsts(), vec![v3]);
    apply_one(&h, del(mac(4), v3)).unwrap();
    apply_one(&h, del(mac(4), v3)).unwrap();
    let obs = observe(&h).unwrap();
    assert!(!obs.fdb.iter().any(|e| e.mac == mac(4)), "{:?}", obs.fdb);
    assert!(obs.bridge_macs.is_empty(), "{:?}", obs.bridge_macs);
    let shown = ok(Command::new("bridge").args(["-n", &h.name, "fdb", "show", "dev", VXLAN]));
    assert!(
        !shown.contains("02:42:0c:0c:0c:04"),
        "bridge entry left: {shown}"
    );
    apply_one(
        &h,
        Op::DeleteNeighbour {
            ns: Ns::Host,
            ifname: VXLAN.into(),
            ip: IpAddr::V4(ip(4)),
        },
    )
    .unwrap();
    assert!(observe(&h).unwrap().neighbours.is_empty());

    // A second device with the same VNI and port: refused, naming both causes.
    let err = apply_one(
        &h,
        Op::CreateVxlan {
            name: "wv-u".into(),
            vni: VNI,
            local,
            port: PORT,
            mtu: MTU,
            bridge: BRIDGE.into(),
            alias: NET_ALIAS.into(),
        },
    )
    .unwrap_err();
    assert!(err.contains("already has VNI 42 on UDP port 4789"), "{err}");
    let err = apply_one(
        &h,
        Op::CreateVxlan {
            name: "wv-u".into(),
            vni: 1 << 24,
            local,
            port: PORT,
            mtu: MTU,
            bridge: BRIDGE.into(),
            alias: NET_ALIAS.into(),
        },
    )
    .unwrap_err();
    assert!(err.contains("does not fit in 24 bits"), "{err}");

    // Rollback: a failure after the device and an entry takes both away again.
    let err = apply_in(
        &h,
        vec![
            Op::CreateVxlan {
                name: "wv-r".into(),
                vni: 43,
                local,
                port: PORT,
                mtu: MTU,
                bridge: BRIDGE.into(),
                alias: NET_ALIAS.into(),
            },
            Op::AddFdb {
                ifname: "wv-r".into(),
                mac: FLOOD_MAC,
                dst: v2,
            },
            Op::LinkUp {
                ns: Ns::Host,
                ifname: "nosuchlink".into(),
            },
        ],
    )
    .unwrap_err();
    assert!(err.contains("nosuchlink"), "{err}");
    let links = h.ip(&["-o", "link", "show"]);
    assert!(!links.contains("wv-r"), "rollback left the device: {links}");
}

#[test]
fn sandboxes_on_two_hosts_talk_through_the_tunnel() {
    if !root_or_skip("sandboxes_on_two_hosts_talk_through_the_tunnel") {
        return;
    }
    let o = Overlay::new(1, true);
    let cap = Capture::start(&o.underlay, "ua", 8);
    // Across hosts, both ways, and on the same host; the gateway answers locally.
    assert!(pings(o.sandbox(2), ip(4)), "A:2 -> B:4");
    assert!(pings(o.sandbox(5), ip(3)), "B:5 -> A:3");
    assert!(pings(o.sandbox(2), ip(3)), "A:2 -> A:3");
    assert!(pings(o.sandbox(4), ip(1)), "B:4 -> gateway");
    // The sandboxes ARP for the gateway (answered by the local bridge) and for remote
    // sandboxes (answered by the local VXLAN device's proxy) once more during the capture.
    for n in [2, 4] {
        o.sandbox(n).ip(&["neigh", "flush", "all"]);
    }
    assert!(pings(o.sandbox(2), ip(1)));
    assert!(pings(o.sandbox(2), ip(5)));
    assert!(pings(o.sandbox(4), ip(1)));
    // MTU 1450 on a 1500 underlay: 1422 bytes of ICMP payload (1450 bytes of IP) pass with
    // don't-fragment, 1423 do not.
    assert_eq!(
        ping(o.sandbox(3), ip(4), 1422, true, 10),
        0,
        "1422 must pass"
    );
    assert_ne!(
        ping(o.sandbox(3), ip(4), 1423, true, 3),
        0,
        "1423 must fail"
    );
    let recs = cap.records();

    let tunnel: Vec<_> = recs.iter().filter(|r| r.get("dport").is_some()).collect();
    assert!(!tunnel.is_empty(), "no UDP on the underlay: {recs:?}");
    for r in &tunnel {
        assert_eq!(r["dport"], PORT, "{r}");
        assert_eq!(r["vni"], VNI, "{r}");
        assert_eq!(r["flags"], 0x08, "VXLAN I flag: {r}");
    }
    // The largest encapsulated packet is exactly the underlay's MTU.
    let largest = tunnel.iter().filter_map(|r| r["len"].as_u64()).max();
    assert_eq!(largest, Some(1500), "{tunnel:?}");
    // No ARP crosses the tunnel, and no ARP for the gateway is on the underlay at all.
    assert!(
        !tunnel.iter().any(|r| r.get("inner_arp").is_some()),
        "ARP tunnelled: {tunnel:?}"
    );
    assert!(
        !recs.iter().any(|r| r["arp"] == "12.12.12.1"),
        "gateway ARP on the underlay: {recs:?}"
    );
    // The underlay's own ARP (VTEP to VTEP) is all there is.
    for r in recs.iter().filter(|r| r.get("arp").is_some()) {
        let t = r["arp"].as_str().unwrap();
        assert!(t.starts_with("10.99.1."), "{r}");
    }
    let _ = (o.vtep_a, o.vtep_b);
}

#[test]
fn deleted_entries_break_the_path_and_show_as_missing() {
    if !root_or_skip("deleted_entries_break_the_path_and_show_as_missing") {
        return;
    }
    let o = Overlay::new(2, true);
    assert!(pings(o.sandbox(2), ip(4)));
    let obs = observe(&o.a).unwrap();
    assert!(obs.has_fdb(mac(4), o.vtep_b) && obs.has_fdb(FLOOD_MAC, o.vtep_b));
    assert!(obs.has_neighbour(IpAddr::V4(ip(4)), mac(4)));

    // The forwarding entry gone: frames to sandbox 4 flood to B's flood entry... which is
    // removed too, so nothing knows where 4 is.
    for m in [mac(4), FLOOD_MAC] {
        apply_one(
            &o.a,
            Op::DeleteFdb {
                ifname: VXLAN.into(),
                mac: m,
                dst: o.vtep_b,
            },
        )
        .unwrap();
    }
    assert_ne!(
        ping(o.sandbox(2), ip(4), 56, false, 5),
        0,
        "path without FDB"
    );
    let obs = observe(&o.a).unwrap();
    assert!(!obs.has_fdb(mac(4), o.vtep_b), "{:?}", obs.fdb);
    assert!(obs.flood_dsts().is_empty(), "{:?}", obs.fdb);
    // Written again: the path is back.
    apply_in(&o.a, vec![flood_op(o.vtep_b)]).unwrap();
    apply_in(&o.a, remote_ops(4, o.vtep_b)).unwrap();
    assert!(pings(o.sandbox(2), ip(4)), "path back with FDB");
    // Only the bridge's static entry deleted behind weft's back (the path still works, by
    // flooding to every local port): observed as missing, and written again.
    ok(Command::new("bridge").args([
        "-n",
        &o.a.name,
        "fdb",
        "del",
        "02:42:0c:0c:0c:04",
        "dev",
        VXLAN,
        "master",
    ]));
    let obs = observe(&o.a).unwrap();
    assert!(!obs.has_fdb(mac(4), o.vtep_b), "{:?}", obs.bridge_macs);
    assert_eq!(obs.bridge_macs, vec![mac(5)]);
    apply_in(&o.a, remote_ops(4, o.vtep_b)).unwrap();
    assert!(observe(&o.a).unwrap().has_fdb(mac(4), o.vtep_b));

    // The neighbour entry gone (and the sandbox's cached answer with it): its ARP is not
    // answered, and does not cross the tunnel either.
    apply_one(
        &o.a,
        Op::DeleteNeighbour {
            ns: Ns::Host,
            ifname: VXLAN.into(),
            ip: IpAddr::V4(ip(4)),
        },
    )
    .unwrap();
    o.sandbox(2).ip(&["neigh", "flush", "all"]);
    assert_ne!(
        ping(o.sandbox(2), ip(4), 56, false, 5),
        0,
        "path without neighbour"
    );
    let obs = observe(&o.a).unwrap();
    assert!(
        !obs.has_neighbour(IpAddr::V4(ip(4)), mac(4)),
        "{:?}",
        obs.neighbours
    );
    assert!(obs.has_neighbour(IpAddr::V4(ip(5)), mac(5)));
    apply_in(&o.a, remote_ops(4, o.vtep_b)).unwrap();
    assert!(pings(o.sandbox(2), ip(4)), "path back with neighbour");
}

#[test]
fn forged_frames_from_a_sandbox_change_no_remote_entry() {
    if !root_or_skip("forged_frames_from_a_sandbox_change_no_remote_entry") {
        return;
    }
    let o = Overlay::new(3, true);
    for (from, to) in [(2, 4), (3, 5), (4, 2), (5, 3), (3, 2), (5, 4)] {
        assert!(pings(o.sandbox(from), ip(to)), "{from} -> {to}");
    }
    let before_a = observe(&o.a).unwrap();
    let before_b = observe(&o.b).unwrap();
    // Only the entries written: the device has no IPv6 address of its own, so it never
    // sent an MLD report or a solicitation (which would leave multicast entries).
    assert_eq!(before_a.neighbours.len(), 2, "{:?}", before_a.neighbours);
    assert!(before_a.neighbours.iter().all(|n| n.permanent()));
    let v6 = o.a.ip(&["-6", "addr", "show", "dev", VXLAN]);
    assert!(
        v6.trim().is_empty(),
        "IPv6 address on the VXLAN device: {v6}"
    );
    let bridge_a = |o: &Overlay| {
        ok(Command::new("bridge").args(["-n", &o.a.name, "fdb", "show", "br", BRIDGE]))
    };
    let port_of = |fdb: &str, m: &str| -> Option<String> {
        fdb.lines()
            .find(|l| l.starts_with(m) && !l.contains("self"))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
    };
    assert_eq!(
        port_of(&bridge_a(&o), "02:42:0c:0c:0c:02").as_deref(),
        Some("vt2")
    );

    // Sandbox 4 on host B (root in its namespace: CAP_NET_RAW) claims sandbox 2's address
    // (on A) with an ARP reply, broadcast and to sandbox 3, and a gratuitous ARP; then sends
    // a frame carrying sandbox 2's MAC to sandbox 3 (on A).
    let spoof = o.sandbox(4);
    let udp = udp4(ip(2), ip(3), 9999, 9999, b"weft-forged-source");
    let frames = [
        arp_reply(BROADCAST, mac(4), mac(4), ip(2), BROADCAST, ip(3)),
        arp_reply(mac(3), mac(4), mac(4), ip(2), mac(3), ip(3)),
        gratuitous_arp(mac(4), mac(4), ip(2)),
        eth(mac(3), mac(2), 0x0800, &ipv4(ip(2), ip(3), 17, &udp)),
        eth(BROADCAST, mac(2), 0x0800, &ipv4(ip(2), ip(3), 17, &udp)),
    ];
    let cap = Capture::start(&o.underlay, "ub", 3);
    let hexes: Vec<String> = frames.iter().map(|f| hex(f)).collect();
    let mut args = vec!["tool", "frame", "eth0", "--count", "3"];
    args.extend(hexes.iter().map(String::as_str));
    ok(&mut spoof.cmd(weft_bin(), &args));
    let recs = cap.records();

    // No ARP left host B: its VXLAN device's proxy drops what is not a request and answers
    // the gratuitous one itself (from its permanent entry for sandbox 2).
    assert!(
        !recs.iter().any(|r| r.get("inner_arp").is_some()),
        "ARP tunnelled: {recs:?}"
    );
    // The forged-source frames did cross (only a port guard at the sender can stop them)...
    assert!(
        recs.iter().any(|r| r["inner"] == 0x0800),
        "forged frame not tunnelled: {recs:?}"
    );
    // ...and changed nothing on host A: the tunnel's entries, and its bridge still sends
    // sandbox 2's MAC to sandbox 2 (the VXLAN port does not learn).
    assert_eq!(observe(&o.a).unwrap(), before_a);
    assert_eq!(
        port_of(&bridge_a(&o), "02:42:0c:0c:0c:02").as_deref(),
        Some("vt2")
    );
    assert!(pings(o.sandbox(3), ip(2)), "3 -> 2 on A after the forgery");
    // Host B's entries are unchanged too, and its bridge still sends sandbox 2's MAC into
    // the tunnel (a sticky entry: sandbox 4's frame could not move it to its own port).
    assert_eq!(observe(&o.b).unwrap(), before_b);
    let bridge_b = ok(Command::new("bridge").args(["-n", &o.b.name, "fdb", "show", "br", BRIDGE]));
    assert_eq!(
        port_of(&bridge_b, "02:42:0c:0c:0c:02").as_deref(),
        Some(VXLAN),
        "{bridge_b}"
    );
    assert!(pings(o.sandbox(5), ip(2)), "5 -> 2 after the forgery");
    // The sandboxes' own caches were not poisoned with sandbox 4's MAC for sandbox 2.
    for n in [3, 5] {
        let neigh = o.sandbox(n).ip(&["neigh", "show", &ip(2).to_string()]);
        assert!(!neigh.contains("02:42:0c:0c:0c:04"), "sandbox {n}: {neigh}");
    }

    // Control: had the VXLAN port kept a bridge port's default learning, the same frame
    // would have moved sandbox 2's MAC on host A to the tunnel.
    o.a.ip(&[
        "link",
        "set",
        VXLAN,
        "type",
        "bridge_slave",
        "learning",
        "on",
    ]);
    // The frame crosses the tunnel asynchronously, and sandbox 2's own traffic may move its
    // MAC back meanwhile: sent again until seen, for a few seconds at most.
    let mut port = None;
    for _ in 0..50 {
        ok(&mut spoof.cmd(weft_bin(), &args));
        std::thread::sleep(std::time::Duration::from_millis(50));
        port = port_of(&bridge_a(&o), "02:42:0c:0c:0c:02");
        if port.as_deref() == Some(VXLAN) {
            break;
        }
    }
    assert_eq!(
        port.as_deref(),
        Some(VXLAN),
        "expected the hijack with learning on"
    );
}

#[test]
fn ipv6_sandboxes_reach_each_other_through_the_tunnel() {
    if !root_or_skip("ipv6_sandboxes_reach_each_other_through_the_tunnel") {
        return;
    }
    let o = Overlay::new(4, true);
    let ip6 = |n: u8| -> IpAddr { format!("fd00:12::{n}").parse().unwrap() };
    for n in 2..=5 {
        let a = format!("{}/64", ip6(n));
        o.sandbox(n)
            .ip(&["addr", "add", &a, "dev", "eth0", "nodad"]);
    }
    // The remote sandboxes' IPv6 neighbour entries on each host's VXLAN device: its proxy
    // answers neighbour solicitations from them (the device itself has no IPv6).
    let entry = |n: u8| Op::AddNeighbour {
        ns: Ns::Host,
        ifname: VXLAN.into(),
        ip: ip6(n),
        mac: mac(n),
    };
    apply_in(&o.a, vec![entry(4), entry(5)]).unwrap();
    apply_in(&o.b, vec![entry(2), entry(3)]).unwrap();
    assert!(observe(&o.a).unwrap().has_neighbour(ip6(4), mac(4)));
    let ping6 = |from: u8, to: u8| {
        common::run(&mut o.sandbox(from).cmd(
            weft_bin(),
            &["tool", "ping", "-c", "10", &ip6(to).to_string()],
        ))
        .status
        .success()
    };
    assert!(ping6(2, 4), "A:2 -> B:4 over IPv6");
    assert!(ping6(5, 3), "B:5 -> A:3 over IPv6");
}

/// What a repair does, as the engine's: observe the namespaces `desired` touches, apply
/// what it lacks; returns the operations applied.
fn repair(host: &Netns, desired: Vec<Op>, sandboxes: Vec<String>) -> Vec<String> {
    netns::run_in(Path::new(&host.path()), move || {
        let mut k = KernelExecutor::new().unwrap();
        let keys = sysctl_keys(&desired);
        let mut views = Views::new();
        let namespaces = std::iter::once(Ns::Host).chain(sandboxes.into_iter().map(Ns::Sandbox));
        for ns in namespaces {
            let wanted: Vec<String> = keys
                .iter()
                .filter(|(n, _)| *n == ns)
                .map(|(_, k)| k.clone())
                .collect();
            let v = k.observe(&ns, &wanted).unwrap();
            views.insert(ns, v);
        }
        let ops = unmet(&desired, &views).unwrap();
        apply_all(&mut k, &ops).unwrap();
        ops.iter().map(Op::to_string).collect()
    })
    .unwrap()
}

#[test]
fn repair_remakes_the_vxlan_device_with_its_entries() {
    if !root_or_skip("repair_remakes_the_vxlan_device_with_its_entries") {
        return;
    }
    let o = Overlay::new(5, true);
    let mut desired = network_ops(o.vtep_a);
    desired.extend(sandbox_ops(o.sandbox(2), 2));
    desired.extend(sandbox_ops(o.sandbox(3), 3));
    desired.push(flood_op(o.vtep_b));
    for n in [4, 5] {
        desired.extend(remote_ops(n, o.vtep_b));
    }
    let sandboxes = vec![o.sandbox(2).path(), o.sandbox(3).path()];
    assert!(pings(o.sandbox(2), ip(4)));
    assert_eq!(
        repair(&o.a, desired.clone(), sandboxes.clone()),
        Vec::<String>::new(),
        "nothing to repair"
    );

    // The device deleted behind weft's back: made again, with its entries.
    o.a.ip(&["link", "del", VXLAN]);
    assert_ne!(ping(o.sandbox(2), ip(4), 56, false, 3), 0);
    let applied = repair(&o.a, desired.clone(), sandboxes.clone());
    assert!(
        applied.iter().any(|a| a.starts_with("create vxlan wv-t")),
        "{applied:?}"
    );
    let obs = observe(&o.a).unwrap();
    assert!(obs.has_fdb(mac(4), o.vtep_b) && obs.has_fdb(FLOOD_MAC, o.vtep_b));
    assert!(obs.has_neighbour(IpAddr::V4(ip(5)), mac(5)));
    assert!(
        pings(o.sandbox(2), ip(4)),
        "after the device was made again"
    );

    // Taken off its bridge and down: made again too (entries included).
    o.a.ip(&["link", "set", VXLAN, "nomaster", "down"]);
    let applied = repair(&o.a, desired.clone(), sandboxes.clone());
    assert!(
        applied.iter().any(|a| a.starts_with("create vxlan wv-t")),
        "{applied:?}"
    );
    assert_eq!(
        observe(&o.a).unwrap().config.master.as_deref(),
        Some(BRIDGE)
    );
    assert!(pings(o.sandbox(3), ip(5)), "after the port was restored");

    // The bridge deleted: bridge, ports and device come back.
    o.a.ip(&["link", "del", BRIDGE]);
    repair(&o.a, desired, sandboxes);
    assert!(
        pings(o.sandbox(2), ip(4)),
        "after the bridge was made again"
    );
    assert!(pings(o.sandbox(2), ip(3)));
}

#[test]
fn tunnel_over_an_ipv6_underlay() {
    if !root_or_skip("tunnel_over_an_ipv6_underlay") {
        return;
    }
    let (a, b): (IpAddr, IpAddr) = ("fd99:6::1".parse().unwrap(), "fd99:6::2".parse().unwrap());
    let o = Overlay::with_underlay(a, b, 64, true);
    let c = observe(&o.a).unwrap().config;
    assert_eq!(c.local, Some(a));
    let obs = observe(&o.a).unwrap();
    assert!(
        obs.has_fdb(mac(4), b) && obs.has_fdb(FLOOD_MAC, b),
        "{:?}",
        obs.fdb
    );
    assert!(
        pings(o.sandbox(2), ip(4)),
        "A:2 -> B:4 over an IPv6 underlay"
    );
    assert!(
        pings(o.sandbox(5), ip(3)),
        "B:5 -> A:3 over an IPv6 underlay"
    );
    let u = underlay_of(&o.b, b).unwrap();
    assert_eq!((u.name.as_str(), u.mtu), ("eth1", 1500));
    assert_eq!(u.overlay_mtu(None), Ok(1430), "a 40-byte IPv6 header");
}
