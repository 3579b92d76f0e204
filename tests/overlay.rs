//! The overlay control plane run by the host agents: three "hosts" (namespaces) on an
//! underlay (a bridge in its own namespace), etcd in a fourth namespace on the same underlay,
//! one `weft daemon --etcd ... --advertise ... --node hN` per host. The overlay network's
//! record and the endpoint records are written straight into etcd by the test (as the overlay
//! use cases will), and "sandboxes" are namespaces attached by hand to the network's bridge;
//! everything else — the bridge and VXLAN device on every host, the neighbour and FDB
//! entries, their removal and repair — is the agents' doing. Root only; namespaces only.

mod common;

use std::time::{Duration, Instant};

use common::etcd::{etcd_or_skip, Etcd};
use common::overlay::{has_link, Agent, Underlay};
use common::{Host, Netns};
use weft::adapters::cluster::ClusterStore as _;

const NET_ID: &str = "0a0b0c0d0e0f1a1b1c1d1e1f2a2b2c2d2e2f3a3b3c3d3e3f4a4b4c4d4e4f5a5b";
const TTL: u64 = 2;

fn bridge() -> String {
    format!("wo-{}", &NET_ID[..12])
}

fn vxlan() -> String {
    format!("wv-{}", &NET_ID[..12])
}

/// A "sandbox": a namespace with `eth0` (address 12.12.12.N/24, MAC 02:42:0c:0c:0c:N)
/// attached to the overlay's bridge on `h`.
struct Sandbox {
    ns: Netns,
    n: u8,
}

impl Sandbox {
    fn attach(h: &Host, n: u8) -> Sandbox {
        let ns = Netns::new("wt-osb");
        let port = format!("hs{n}");
        h.ns.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        h.ns.ip(&["link", "set", &port, "master", &bridge(), "up"]);
        ns.ip(&["link", "set", "eth0", "address", &mac_text(n)]);
        ns.ip(&["link", "set", "eth0", "mtu", "1450"]);
        ns.ip(&["addr", "add", &format!("{}/24", ip(n)), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        Sandbox { ns, n }
    }

    fn pings(&self, other: u8) -> bool {
        common::run(
            &mut self
                .ns
                .cmd(common::weft_bin(), &["tool", "ping", "-c", "2", &ip(other)]),
        )
        .status
        .success()
    }
}

fn ip(n: u8) -> String {
    format!("12.12.12.{n}")
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0x42, 12, 12, 12, n]
}

fn mac_text(n: u8) -> String {
    mac(n)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn network_record() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": "ovl",
        "id": NET_ID,
        "driver": "overlay",
        "driver_data": {"overlay": {"vni": 42, "port": 4789}},
        "internal": false,
        "ipv6": false,
        "mtu": 1450,
        "bridge": bridge(),
        "subnets": [{"subnet": "12.12.12.0/24", "gateway": "12.12.12.1", "ip_range": null}],
        "options": {},
        "labels": {},
        "aux_addresses": {},
        "allocation": null,
        "status": "created",
        "owner_pid": null,
        "created": 0
    }))
    .unwrap()
}

fn endpoint_key(node: &str, n: u8) -> String {
    format!("/weft/v1/endpoints/{NET_ID}/{node}/sb{n}")
}

fn endpoint_record(node: &str, n: u8) -> Vec<u8> {
    weft::core::cluster::records::EndpointRecord::new(
        node,
        NET_ID,
        &format!("sb{n}"),
        &format!("sb{n}"),
        Some(ip(n).parse().unwrap()),
        None,
        mac(n),
    )
    .encode()
}

/// Whether host `h`'s VXLAN device has the neighbour entry of sandbox `n` and an FDB entry
/// for its MAC.
fn has_entries_for(h: &Host, n: u8) -> bool {
    let neigh = common::run(&mut h.ns.cmd("ip", &["neigh", "show", "dev", &vxlan()]));
    let fdb = common::run(&mut h.ns.cmd("bridge", &["fdb", "show", "dev", &vxlan()]));
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_string();
    let fdb = String::from_utf8_lossy(&fdb.stdout).to_string();
    neigh.contains(&format!("{} lladdr {}", ip(n), mac_text(n)))
        && fdb.contains(&format!("{} dst", mac_text(n)))
}

/// Whether `h`'s VXLAN device floods to `vtep`.
fn floods_to(h: &Host, vtep: &str) -> bool {
    let fdb = common::run(&mut h.ns.cmd("bridge", &["fdb", "show", "dev", &vxlan()]));
    String::from_utf8_lossy(&fdb.stdout).contains(&format!("00:00:00:00:00:00 dst {vtep} "))
}

/// The VXLAN device's entries and the bridge's ports on `h`, for failure messages.
fn dump(h: &Host) -> String {
    let mut out = String::new();
    for (prog, args) in [
        ("ip", vec!["-d", "link", "show", "dev", "wv-0a0b0c0d0e0f"]),
        ("ip", vec!["neigh", "show", "dev", "wv-0a0b0c0d0e0f"]),
        ("bridge", vec!["fdb", "show", "br", "wo-0a0b0c0d0e0f"]),
        ("bridge", vec!["fdb", "show", "dev", "wv-0a0b0c0d0e0f"]),
        ("bridge", vec!["-d", "fdb", "show"]),
        ("nft", vec!["list", "table", "bridge", "weft"]),
    ] {
        let o = common::run(&mut h.ns.cmd(prog, &args));
        out.push_str(&String::from_utf8_lossy(&o.stdout));
        out.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    out
}

#[test]
fn agents_build_overlay_networks_and_keep_their_entries_right() {
    if !common::root_or_skip("agents_build_overlay_networks_and_keep_their_entries_right")
        || !etcd_or_skip("agents_build_overlay_networks_and_keep_their_entries_right")
    {
        return;
    }
    let ul = Underlay::new("wt-oul");
    let mut etcd = Etcd::start_on("wt-oet", "10.77.0.2:2379", |ns| ul.plug(ns, "10.77.0.2/24"));
    let url = etcd.url();
    let store = etcd.store();
    let hosts: Vec<Host> = (1..=3).map(|_| Host::new("wt-oh")).collect();
    let vteps: Vec<String> = (1..=3).map(|i| format!("10.77.0.1{i}")).collect();
    for (h, v) in hosts.iter().zip(&vteps) {
        ul.plug(&h.ns, &format!("{v}/24"));
    }
    let mut agents: Vec<Agent> = hosts
        .iter()
        .zip(&vteps)
        .enumerate()
        .map(|(i, (h, v))| Agent::start(h, &url, v, &format!("h{}", i + 1), TTL))
        .collect();
    let logs = |agents: &[Agent]| {
        agents
            .iter()
            .map(|a| a.log())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // The network, written once: its bridge and VXLAN device appear on every host.
    store
        .put("/weft/v1/networks/ovl", &network_record(), None)
        .unwrap();
    let built = common::wait_for(15, || {
        hosts
            .iter()
            .all(|h| has_link(h, &bridge()) && has_link(h, &vxlan()))
    });
    assert!(
        built,
        "the network was not built everywhere:\n{}",
        logs(&agents)
    );
    for h in &hosts {
        let ls = h.weft_ok(&["network", "ls"]);
        assert!(
            ls.contains("ovl"),
            "network ls on every host shows it: {ls}"
        );
    }

    // One sandbox per host; their endpoints written to the cluster.
    let sbs: Vec<Sandbox> = hosts
        .iter()
        .zip(11u8..)
        .map(|(h, n)| Sandbox::attach(h, n))
        .collect();
    for (i, sb) in sbs.iter().enumerate() {
        let node = format!("h{}", i + 1);
        store
            .put(
                &endpoint_key(&node, sb.n),
                &endpoint_record(&node, sb.n),
                None,
            )
            .unwrap();
    }
    let all_ping = |sbs: &[Sandbox]| {
        sbs.iter()
            .all(|a| sbs.iter().filter(|b| b.n != a.n).all(|b| a.pings(b.n)))
    };
    let pinged = common::wait_for(10, || all_ping(&sbs));
    assert!(
        pinged,
        "sandboxes on different hosts reach each other with no manual entry:\n{}\n{}",
        logs(&agents),
        dump(&hosts[0])
    );

    // An endpoint record deleted: its entries vanish on the other hosts; written again, back.
    store.delete(&endpoint_key("h3", 13)).unwrap();
    assert!(
        common::wait_for(5, || !has_entries_for(&hosts[0], 13)
            && !has_entries_for(&hosts[1], 13)),
        "sb13's entries are gone elsewhere"
    );
    // The agents' own removals came back as notifications: told from drift by the entry
    // each names, none written back (nor any device read back for them). Looked at before
    // the record is back: a removal handled after that is wanted again, and rewritten.
    std::thread::sleep(Duration::from_millis(300));
    const WRITTEN_BACK: &str = "deleted behind the agent's back: writing them back";
    for a in &agents[..2] {
        let log = a.log();
        assert!(
            !log.contains(WRITTEN_BACK),
            "an agent's own removals taken for drift:\n{log}"
        );
    }
    store
        .put(&endpoint_key("h3", 13), &endpoint_record("h3", 13), None)
        .unwrap();
    assert!(common::wait_for(5, || has_entries_for(&hosts[0], 13)
        && has_entries_for(&hosts[1], 13)));

    // Entries deleted behind the agent's back: restored within about a second, each written
    // back by itself.
    let h1 = &hosts[0];
    common::ok(&mut h1.ns.cmd("ip", &["neigh", "flush", "dev", &vxlan()]));
    common::ok(&mut h1.ns.cmd(
        "bridge",
        &[
            "fdb",
            "del",
            &mac_text(12),
            "dev",
            &vxlan(),
            "dst",
            &vteps[1],
        ],
    ));
    let t = Instant::now();
    assert!(common::wait_for(3, || has_entries_for(h1, 12) && has_entries_for(h1, 13)));
    let restored = t.elapsed();
    eprintln!("entries deleted behind h1's agent restored in {restored:?}");
    assert!(
        restored < Duration::from_millis(1500),
        "restored in {restored:?}"
    );
    assert!(
        common::wait_for(2, || agents[0].log().contains(WRITTEN_BACK)),
        "the removals were not written back one by one:\n{}",
        agents[0].log()
    );
    // Entries changed behind the agent's back (sb12's MAC tunnelled to a rogue VTEP, its
    // address answered with another MAC): put right at once, not by the periodic repair
    // (every 30 s): each addition the kernel announces is looked up in the agent's view (its
    // own writes, one per entry of every join, agree with it), and a device holding one that
    // does not is read back.
    let rogue_mac = "02:42:0c:0c:0c:ee";
    common::ok(&mut h1.ns.cmd(
        "bridge",
        &[
            "fdb",
            "replace",
            &mac_text(12),
            "dev",
            &vxlan(),
            "self",
            "permanent",
            "dst",
            "10.77.0.99",
        ],
    ));
    common::ok(&mut h1.ns.cmd(
        "ip",
        &[
            "neigh",
            "replace",
            &ip(12),
            "lladdr",
            rogue_mac,
            "dev",
            &vxlan(),
            "nud",
            "permanent",
        ],
    ));
    let right = |h: &Host| {
        let fdb = common::run(&mut h.ns.cmd("bridge", &["fdb", "show", "dev", &vxlan()]));
        let fdb = String::from_utf8_lossy(&fdb.stdout).to_string();
        let neigh = common::run(&mut h.ns.cmd("ip", &["neigh", "show", "dev", &vxlan()]));
        let neigh = String::from_utf8_lossy(&neigh.stdout).to_string();
        fdb.contains(&format!("{} dst {} ", mac_text(12), vteps[1]))
            && !fdb.contains("dst 10.77.0.99 ")
            && neigh.contains(&format!("{} lladdr {}", ip(12), mac_text(12)))
            && !neigh.contains(rogue_mac)
    };
    let t = Instant::now();
    assert!(
        common::wait_for(5, || right(h1)),
        "changed entries not put right:\n{}",
        dump(h1)
    );
    let restored = t.elapsed();
    eprintln!("entries changed behind h1's agent put right in {restored:?}");
    assert!(
        restored < Duration::from_secs(3),
        "put right in {restored:?}"
    );
    assert!(sbs[0].pings(12), "sb12 reached again after the repair");
    // The VXLAN device deleted: built again, with its entries.
    common::ok(&mut h1.ns.cmd("ip", &["link", "del", &vxlan()]));
    assert!(
        common::wait_for(5, || has_link(h1, &vxlan())
            && has_entries_for(h1, 12)
            && sbs[0].pings(12)),
        "the device and its entries came back:\n{}",
        logs(&agents)
    );
    // The VXLAN device set down and up (the kernel drops its neighbour entries with no
    // notification for each): its entries are back at once, not at the periodic repair
    // (every 30 s).
    common::ok(&mut h1.ns.cmd("ip", &["link", "set", &vxlan(), "down"]));
    common::ok(&mut h1.ns.cmd("ip", &["link", "set", &vxlan(), "up"]));
    let t = Instant::now();
    assert!(
        common::wait_for(5, || has_entries_for(h1, 12) && sbs[0].pings(12)),
        "entries back after down/up:\n{}",
        logs(&agents)
    );
    eprintln!(
        "entries back {:?} after the device was set down and up",
        t.elapsed()
    );

    // A fourth host started with a node name a live host holds: refused, nothing built.
    let intruder = Host::new("wt-oh");
    ul.plug(&intruder.ns, "10.77.0.14/24");
    let mut impostor = Agent::start(&intruder, &url, "10.77.0.14", "h2", TTL);
    let refused = common::wait_for(5, || {
        let c = intruder.json(&["daemon", "status"])["status"]["cluster"].clone();
        c["errors"].as_array().is_some_and(|e| {
            e.iter().any(|m| {
                m.as_str() == Some("node name \"h2\" is taken: a live host registered it with VTEP 10.77.0.12 (this host advertises 10.77.0.14); give this host another --node")
            })
        }) && c["lease"].is_null()
    });
    assert!(refused, "{}", impostor.log());
    assert!(!has_link(&intruder, &bridge()));
    assert!(has_entries_for(&hosts[0], 12), "h2's entries stay on h1");
    impostor.kill9();
    drop(intruder);

    // etcd stopped: existing traffic keeps flowing, also past the lease TTL.
    etcd.kill();
    std::thread::sleep(Duration::from_secs(TTL * 2 + 1));
    assert!(all_ping(&sbs), "pings keep working while etcd is down");

    // etcd back: every agent joins again; a new endpoint written afterwards reaches all.
    etcd.start_again();
    let store = etcd.store();
    let sb14 = Sandbox::attach(&hosts[1], 14);
    store
        .put(&endpoint_key("h2", 14), &endpoint_record("h2", 14), None)
        .unwrap();
    assert!(
        common::wait_for(20, || has_entries_for(&hosts[0], 14)
            && has_entries_for(&hosts[2], 14)),
        "a new endpoint after etcd's return reaches every host:\n{}",
        logs(&agents)
    );
    assert!(common::wait_for(5, || sbs[0].pings(14) && sbs[2].pings(14)));
    assert!(common::wait_for(10, || all_ping(&sbs)));
    // Every agent holds a lease again and sees all three nodes.
    let rejoined = common::wait_for(10, || {
        hosts.iter().all(|h| {
            let c = h.json(&["daemon", "status"])["status"]["cluster"].clone();
            c["lease"].is_string() && c["hosts"].as_array().is_some_and(|a| a.len() == 3)
        })
    });
    assert!(rejoined, "every agent joined again:\n{}", logs(&agents));

    // kill -9 of h3's agent: its entries vanish elsewhere within the TTL and a margin.
    assert!(floods_to(&hosts[0], &vteps[2]));
    agents[2].kill9();
    let t = Instant::now();
    let gone = common::wait_for(TTL + 4, || {
        [&hosts[0], &hosts[1]]
            .iter()
            .all(|h| !has_entries_for(h, 13) && !floods_to(h, &vteps[2]))
    });
    assert!(gone, "h3's entries are gone:\n{}", logs(&agents));
    eprintln!(
        "kill -9 to entries gone on both other hosts: {:?}",
        t.elapsed()
    );
    let ok = common::wait_for(5, || sbs[0].pings(12) && sbs[1].pings(11));
    assert!(
        ok,
        "the others keep reaching each other:\n{}\n{}",
        logs(&agents),
        dump(&hosts[0])
    );

    // daemon status shows the cluster.
    let status = hosts[0].json(&["daemon", "status"]);
    let c = &status["status"]["cluster"];
    assert_eq!(c["connected"], true, "{c}");
    assert_eq!(c["networks"], serde_json::json!(["ovl"]));
    let nodes: Vec<&str> = c["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["h1", "h2"]);
    // The network deleted from the cluster: its bridge and device go from the live hosts,
    // and `network ls` no longer shows it.
    drop(sb14);
    drop(sbs);
    store.delete("/weft/v1/networks/ovl").unwrap();
    let removed = common::wait_for(10, || {
        hosts[..2]
            .iter()
            .all(|h| !has_link(h, &bridge()) && !has_link(h, &vxlan()))
    });
    assert!(removed, "the network is gone:\n{}", logs(&agents));
    // The local record goes after the kernel objects (the agent tears down, then forgets).
    let forgotten = common::wait_for(10, || {
        hosts[..2]
            .iter()
            .all(|h| !h.weft_ok(&["network", "ls"]).contains("ovl"))
    });
    assert!(forgotten, "network ls still shows ovl:\n{}", logs(&agents));
    drop(agents);
}
