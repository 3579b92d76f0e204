//! The overlay's robustness, with real agents and etcd (in namespaces only): a network's
//! MTU fits every live host's underlay, and a host whose underlay is smaller than an
//! existing network's refuses to build it and says why; creations
//! from two hosts at once never store overlapping subnets (given or chosen); a sandbox
//! removed while etcd is down gives its address claim and endpoint record back once etcd
//! returns; a watch whose history was compacted while it was cut off reads the cluster
//! again and converges. Root only; each test makes its own namespaces and etcd.

mod common;

use std::time::Duration;

use common::etcd::{etcd_or_skip, Etcd};
use common::overlay::{has_link, Agent};
use common::{Host, Netns};
use weft::adapters::cluster::ClusterStore as _;

/// A host with an underlay interface `ul0` holding `addr` (CIDR) with MTU `mtu` (a veth pair
/// inside the namespace: these tests need no traffic between the hosts).
fn host_at(prefix: &str, mtu: &str, addr: &str) -> Host {
    let h = Host::new(prefix);
    h.ns.ip(&[
        "link", "add", "ul0", "mtu", mtu, "type", "veth", "peer", "name", "ul0p", "mtu", mtu,
    ]);
    h.ns.ip(&["link", "set", "ul0p", "up"]);
    h.ns.ip(&["addr", "add", addr, "dev", "ul0"]);
    h.ns.ip(&["link", "set", "ul0", "up"]);
    h
}

/// etcd started in a namespace `name` of its own, wired to `hosts` in order (`wire`, 1..).
fn etcd_for(name: &str, hosts: &[&Host]) -> Etcd {
    Etcd::start_on(name, ETCD_ADDR, |ns| {
        for (n, h) in (1u8..).zip(hosts) {
            wire(ns, h, n);
        }
    })
}

/// Links etcd's namespace to host `h` on 10.214.`n`.0/24 and routes `h` to etcd's address
/// (10.214.1.1, on the first link).
fn wire(etcd: &Netns, h: &Host, n: u8) {
    common::link(
        etcd,
        &format!("etc{n}"),
        &format!("10.214.{n}.1/24"),
        &h.ns,
        "etcd0",
        &format!("10.214.{n}.2/24"),
    );
    if n != 1 {
        h.ns.ip(&[
            "route",
            "add",
            "10.214.1.0/24",
            "via",
            &format!("10.214.{n}.1"),
        ]);
    }
}

const ETCD_ADDR: &str = "10.214.1.1:2379";

fn overlay_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["network", "create", "--driver", "overlay"];
    args.extend_from_slice(extra);
    args
}

fn hosts_alive(h: &Host) -> usize {
    h.json(&["cluster", "hosts"])
        .as_array()
        .map(|a| a.iter().filter(|x| x["alive"] == true).count())
        .unwrap_or(0)
}

fn cluster_errors(h: &Host) -> Vec<String> {
    h.json(&["daemon", "status"])["status"]["cluster"]["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn network_names(h: &Host) -> Vec<String> {
    h.json(&["network", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

fn kv_json(
    store: &dyn weft::adapters::cluster::ClusterStore,
    key: &str,
) -> Option<serde_json::Value> {
    store
        .get(key)
        .unwrap()
        .map(|kv| serde_json::from_slice(&kv.value).unwrap())
}

fn count_under(store: &dyn weft::adapters::cluster::ClusterStore, prefix: &str) -> usize {
    store.snapshot(prefix).unwrap().kvs.len()
}

#[test]
fn a_host_whose_underlay_is_too_small_refuses_the_network_and_says_why() {
    let test = "a_host_whose_underlay_is_too_small_refuses_the_network_and_says_why";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let h1 = host_at("orm1", "1500", "192.0.2.10/24");
    let h2 = host_at("orm2", "1500", "192.0.2.11/24");
    let h3 = host_at("orm3", "1400", "192.0.2.12/24");
    let etcd = etcd_for("orme", &[&h1, &h2, &h3]);
    let url = etcd.url();
    let _a1 = Agent::start(&h1, &url, "192.0.2.10", "h1", 5);
    let _a2 = Agent::start(&h2, &url, "192.0.2.11", "h2", 5);
    let a3 = Agent::start(&h3, &url, "192.0.2.12", "h3", 5);
    assert!(
        common::wait_for(10, || hosts_alive(&h1) == 3),
        "{}",
        a3.log()
    );
    let vxlan_of = |name: &str| {
        let id = h1.json(&["network", "inspect", name])[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        format!("wv-{}", &id[..12])
    };
    let mtu_of = |h: &Host, link: &str| {
        let text = h.ns.ip(&["-o", "link", "show", link]);
        text.split(" mtu ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or_default()
            .to_string()
    };

    // Created on h1 (underlay 1500) without --mtu (nor --subnet: the cluster chose one):
    // its MTU fits every live host, h3's 1400 underlay included, and it is built everywhere.
    h1.weft_ok(&overlay_args(&["ovl"]));
    let net = &h1.json(&["network", "inspect", "ovl"])[0];
    assert_eq!(net["mtu"], 1350, "{net}");
    let subnet = net["subnets"][0]["subnet"].as_str().unwrap_or_default();
    assert!(subnet.parse::<ipnet::Ipv4Net>().is_ok(), "{net}");
    let ovl = vxlan_of("ovl");
    assert!(
        common::wait_for(10, || [&h1, &h2, &h3].iter().all(|h| has_link(h, &ovl))),
        "{}",
        a3.log()
    );
    assert_eq!(mtu_of(&h3, &ovl), "1350");
    assert_eq!(mtu_of(&h1, &ovl), "1350");
    // An --mtu h3 cannot carry is refused at once, naming h3 and the arithmetic.
    let err = h1.weft_err(
        1,
        &overlay_args(&["--mtu", "1450", "--subnet", "12.13.0.0/24", "big"]),
    );
    assert_eq!(err, "error: --mtu 1450 is too large for overlay big: host h3's underlay ul0 has MTU 1400 and VXLAN needs 50 bytes, so at most 1350\n");

    // While h3 is away a network gets h1's MTU (1450); h3 back refuses to build it, and its
    // status says which host, underlay and numbers, rather than black-hole large packets.
    drop(a3);
    assert!(common::wait_for(15, || hosts_alive(&h1) == 2));
    h1.weft_ok(&overlay_args(&["--subnet", "12.14.0.0/24", "late"]));
    assert_eq!(h1.json(&["network", "inspect", "late"])[0]["mtu"], 1450);
    let late = vxlan_of("late");
    let a3 = Agent::start(&h3, &url, "192.0.2.12", "h3", 5);
    let want = "building overlay network \"late\": overlay network late is not built on host h3: its MTU is 1450, but here the underlay ul0 has MTU 1400 and VXLAN needs 50 bytes, so at most 1350; raise ul0's MTU to 1500, or recreate the network with --mtu 1350";
    assert!(
        common::wait_for(10, || cluster_errors(&h3).iter().any(|e| e == want)),
        "{:?}\n{}",
        cluster_errors(&h3),
        a3.log()
    );
    assert!(common::wait_for(10, || has_link(&h2, &late)));
    assert!(!has_link(&h3, &late));
    assert!(!network_names(&h3).contains(&"late".to_string()));
    // Asked to run a sandbox on it there, h3 says why it has no such network.
    let err = h3.weft_err(125, &["run", "--network", "late", "--", "true"]);
    assert_eq!(
        err,
        "error: network \"late\" is not on this host: overlay network late is not built on host h3: its MTU is 1450, but here the underlay ul0 has MTU 1400 and VXLAN needs 50 bytes, so at most 1350; raise ul0's MTU to 1500, or recreate the network with --mtu 1350\n"
    );
    // A name the cluster does not have either is still plainly unknown.
    let err = h3.weft_err(125, &["run", "--network", "nosuch", "--", "true"]);
    assert!(err.contains("no such network \"nosuch\""), "{err}");
    // Still refused a while later (the periodic repair does not build it behind the error),
    // and the network that fits is still there.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!has_link(&h3, &late));
    assert!(has_link(&h3, &ovl));
}

#[test]
fn creations_from_two_hosts_at_once_never_store_overlapping_subnets() {
    let test = "creations_from_two_hosts_at_once_never_store_overlapping_subnets";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let h1 = host_at("orc1", "1500", "192.0.2.10/24");
    let h2 = host_at("orc2", "1500", "192.0.2.11/24");
    let etcd = etcd_for("orce", &[&h1, &h2]);
    let url = etcd.url();
    let store = etcd.store();
    let _a1 = Agent::start(&h1, &url, "192.0.2.10", "h1", 5);
    let _a2 = Agent::start(&h2, &url, "192.0.2.11", "h2", 5);
    assert!(common::wait_for(10, || hosts_alive(&h1) == 2));
    let both = |a: Vec<String>, b: Vec<String>| -> (std::process::Output, std::process::Output) {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        let ca = h1.spawn(&overlay_args(&a));
        let cb = h2.spawn(&overlay_args(&b));
        (
            ca.wait_with_output().unwrap(),
            cb.wait_with_output().unwrap(),
        )
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // A /16 on one host and a /24 inside it on the other, at once: one gets in.
    for round in 0..8u8 {
        let (oa, ob) = both(
            s(&[
                "--subnet",
                &format!("10.{}.0.0/16", 60 + round),
                &format!("a{round}"),
            ]),
            s(&[
                "--subnet",
                &format!("10.{}.7.0/24", 60 + round),
                &format!("b{round}"),
            ]),
        );
        let won = [&oa, &ob].iter().filter(|o| o.status.success()).count();
        assert_eq!(
            won,
            1,
            "round {round}: {} / {}",
            common::stderr(&oa),
            common::stderr(&ob)
        );
        let lost = if oa.status.success() { &ob } else { &oa };
        let err = common::stderr(lost);
        assert!(
            err.contains("overlaps") || err.contains("would break traffic"),
            "round {round}: {err}"
        );
    }
    // Without --subnet, at once: both get in, with subnets that do not overlap.
    for round in 0..4u8 {
        let (oa, ob) = both(s(&[&format!("c{round}")]), s(&[&format!("d{round}")]));
        assert!(oa.status.success(), "{}", common::stderr(&oa));
        assert!(ob.status.success(), "{}", common::stderr(&ob));
    }
    let nets: Vec<(String, ipnet::IpNet)> = store
        .snapshot("/weft/v1/networks/")
        .unwrap()
        .kvs
        .iter()
        .flat_map(|kv| {
            let n: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
            let name = n["name"].as_str().unwrap().to_string();
            n["subnets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (name.clone(), s["subnet"].as_str().unwrap().parse().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(nets.len(), 8 + 8, "{nets:?}");
    for (i, (na, a)) in nets.iter().enumerate() {
        for (nb, b) in &nets[i + 1..] {
            assert!(
                !(a.contains(&b.network()) || b.contains(&a.network())),
                "{na} {a} overlaps {nb} {b}"
            );
        }
    }
}

#[test]
fn a_sandbox_removed_while_etcd_is_down_gives_its_claims_back_when_it_returns() {
    let test = "a_sandbox_removed_while_etcd_is_down_gives_its_claims_back_when_it_returns";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let h = host_at("ord", "1500", "192.0.2.10/24");
    let mut etcd = etcd_for("orde", &[&h]);
    let url = etcd.url();
    let store = etcd.store();
    let agent = Agent::start(&h, &url, "192.0.2.10", "h1", 5);
    assert!(common::wait_for(10, || hosts_alive(&h) == 1));
    h.weft_ok(&overlay_args(&["--subnet", "12.12.12.0/24", "ovl"]));
    let id = kv_json(&store, "/weft/v1/networks/ovl").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bridge = format!("wo-{}", &id[..12]);
    assert!(common::wait_for(10, || has_link(&h, &bridge)));
    h.sleeper("pink", &["--network", "ovl"]);
    h.sleeper("blue", &["--network", "ovl"]);
    let id_of = |name: &str| {
        h.json(&["inspect", name])[0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (pink, blue) = (id_of("pink"), id_of("blue"));
    let (pink_ip, blue_ip) = (h.ip_of("pink", 0), h.ip_of("blue", 0));
    let claim = |ip: &str| format!("/weft/v1/addresses/{id}/{ip}");
    let endpoint = |sb: &str| format!("/weft/v1/endpoints/{id}/h1/{sb}");
    for key in [
        claim(&pink_ip),
        claim(&blue_ip),
        endpoint(&pink),
        endpoint(&blue),
    ] {
        assert!(kv_json(&store, &key).is_some(), "{key}");
    }

    // blue is on a second overlay too, and will be disconnected from it while etcd is down.
    h.weft_ok(&overlay_args(&["--subnet", "12.12.13.0/24", "ovl2"]));
    let id2 = kv_json(&store, "/weft/v1/networks/ovl2").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(common::wait_for(10, || has_link(
        &h,
        &format!("wo-{}", &id2[..12])
    )));
    h.weft_ok(&["network", "connect", "ovl2", "blue"]);
    let blue_ip2 = h.ip_of("blue", 1);
    let claim2 = format!("/weft/v1/addresses/{id2}/{blue_ip2}");
    let endpoint2 = format!("/weft/v1/endpoints/{id2}/h1/{blue}");
    assert!(kv_json(&store, &claim2).is_some(), "{claim2}");
    assert!(kv_json(&store, &endpoint2).is_some(), "{endpoint2}");

    // etcd down: removing pink cannot release anything in the cluster (a warning says so).
    etcd.kill();
    let out = h.weft(&["rm", "-f", "pink"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("releasing its overlay endpoint"),
        "{}",
        common::stderr(&out)
    );
    // Nor can disconnecting blue from ovl2: its interface goes, its records stay (it says so).
    let out = h.weft(&["network", "disconnect", "ovl2", "blue"]);
    assert!(
        common::stderr(&out).contains("released by the agent once it reaches etcd again"),
        "{}",
        common::stderr(&out)
    );
    // Back: the agent finds pink's claim and endpoint without a sandbox here, and deletes
    // them after the grace; blue's stay.
    etcd.start_again();
    let store = etcd.store();
    assert!(
        common::wait_for(40, || {
            store.get(&claim(&pink_ip)).unwrap().is_none()
                && store.get(&endpoint(&pink)).unwrap().is_none()
        }),
        "{}",
        agent.log()
    );
    // blue runs, but is no longer on ovl2: those records go too.
    assert!(
        common::wait_for(40, || {
            store.get(&claim2).unwrap().is_none() && store.get(&endpoint2).unwrap().is_none()
        }),
        "{}",
        agent.log()
    );
    assert!(kv_json(&store, &claim(&blue_ip)).is_some());
    assert!(common::wait_for(10, || kv_json(&store, &endpoint(&blue)).is_some()));
    assert_eq!(count_under(&store, &format!("/weft/v1/addresses/{id}/")), 1);
    // The address is handed out again.
    h.sleeper("pink2", &["--network", "ovl"]);
    assert_eq!(h.ip_of("pink2", 0), pink_ip);
}

#[test]
fn a_watch_compacted_while_cut_off_reads_the_cluster_again_and_converges() {
    let test = "a_watch_compacted_while_cut_off_reads_the_cluster_again_and_converges";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let h = host_at("orw", "1500", "192.0.2.10/24");
    let etcd = etcd_for("orwe", &[&h]);
    let url = etcd.url();
    let store = etcd.store();
    // A long TTL: the cut below must not cost the lease (a new join would read the cluster
    // again anyway, and hide what this test is about).
    let agent = Agent::start(&h, &url, "192.0.2.10", "h1", 60);
    assert!(common::wait_for(10, || hosts_alive(&h) == 1));
    h.weft_ok(&overlay_args(&["--subnet", "12.12.12.0/24", "ovl"]));
    let id = kv_json(&store, "/weft/v1/networks/ovl").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let vxlan = format!("wv-{}", &id[..12]);
    // A remote node "hx", written by the test as its agent would.
    let lease = store.grant_lease(Duration::from_secs(120)).unwrap();
    let host = weft::core::cluster::records::HostRecord {
        node: "hx".into(),
        vtep: "192.0.2.99".parse().unwrap(),
        vxlan_port: 4789,
        started: 0,
    };
    store
        .put("/weft/v1/hosts/hx", &host.encode(), Some(lease.id()))
        .unwrap();
    let ep = |n: u8| {
        weft::core::cluster::records::EndpointRecord::new(
            "hx",
            &id,
            &format!("sb{n}"),
            &format!("sb{n}"),
            Some(format!("12.12.12.{n}").parse().unwrap()),
            None,
            [2, 0x42, 12, 12, 12, n],
        )
    };
    let ep_key = |n: u8| format!("/weft/v1/endpoints/{id}/hx/sb{n}");
    store
        .put(&ep_key(50), &ep(50).encode(), Some(lease.id()))
        .unwrap();
    // Empty while the agent has not built the device yet (it does so from its watch, a
    // moment after the command).
    let neighbours = || {
        common::stdout(&common::run(
            &mut h.ns.cmd("ip", &["neigh", "show", "dev", &vxlan]),
        ))
    };
    assert!(
        common::wait_for(10, || neighbours().contains("12.12.12.50 ")),
        "{}",
        agent.log()
    );

    // Cut off (long enough for the client to notice), the cluster changes and compacts the
    // history the agent's watch would resume from.
    h.ns.ip(&["link", "set", "etcd0", "down"]);
    std::thread::sleep(Duration::from_secs(8));
    store.delete(&ep_key(50)).unwrap();
    let rev = store
        .put(&ep_key(51), &ep(51).encode(), Some(lease.id()))
        .unwrap();
    store.compact(rev).unwrap();
    h.ns.ip(&["link", "set", "etcd0", "up"]);
    assert!(
        common::wait_for(20, || {
            let n = neighbours();
            n.contains("12.12.12.51 ") && !n.contains("12.12.12.50 ")
        }),
        "{}\n{}",
        neighbours(),
        agent.log()
    );
    assert!(
        agent.log().contains("history was compacted"),
        "{}",
        agent.log()
    );
}

/// Connects `h` to the underlay bridge in `ul` with an `eth0` holding `addr` (CIDR, IPv6:
/// no duplicate address detection, so it is usable at once).
fn plug_v6(ul: &Netns, port: &str, h: &Host, addr: &str) {
    ul.ip(&[
        "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &h.ns.name,
    ]);
    ul.ip(&["link", "set", port, "master", "br0", "up"]);
    h.ns.ip(&["addr", "add", addr, "dev", "eth0", "nodad"]);
    h.ns.ip(&["link", "set", "eth0", "up"]);
}

#[test]
fn sandboxes_on_two_hosts_reach_each_other_over_an_ipv6_underlay() {
    let test = "sandboxes_on_two_hosts_reach_each_other_over_an_ipv6_underlay";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    // The underlay: a bridge in its own namespace, IPv6 only.
    let ul = Netns::new("wt-or6u");
    ul.ip(&["link", "add", "br0", "type", "bridge"]);
    ul.ip(&["link", "set", "br0", "up"]);
    let h1 = Host::new("or61");
    let h2 = Host::new("or62");
    plug_v6(&ul, "p1", &h1, "fd00:77::11/64");
    plug_v6(&ul, "p2", &h2, "fd00:77::12/64");
    let etcd = etcd_for("or6e", &[&h1, &h2]);
    let url = etcd.url();
    let a1 = Agent::start(&h1, &url, "fd00:77::11", "h1", 5);
    let a2 = Agent::start(&h2, &url, "fd00:77::12", "h2", 5);
    assert!(common::wait_for(10, || hosts_alive(&h1) == 2));
    let hosts = h1.json(&["cluster", "hosts"]);
    assert!(
        hosts
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["vtep"] == "fd00:77::12"),
        "{hosts}"
    );
    // The underlay's 1500 minus 70 bytes (the outer header is IPv6).
    h1.weft_ok(&overlay_args(&["--subnet", "12.12.12.0/24", "ovl"]));
    assert_eq!(h1.json(&["network", "inspect", "ovl"])[0]["mtu"], 1430);
    let err = h1.weft_err(
        1,
        &overlay_args(&["--mtu", "1431", "--subnet", "12.12.13.0/24", "big"]),
    );
    assert_eq!(err, "error: --mtu 1431 is too large for overlay big: the underlay eth0 has MTU 1500 and VXLAN needs 70 bytes, so at most 1430\n");
    let id = h1.json(&["network", "inspect", "ovl"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let vxlan = format!("wv-{}", &id[..12]);
    assert!(common::wait_for(10, || has_link(&h1, &vxlan) && has_link(&h2, &vxlan)));
    let details = h2.ns.ip(&["-d", "link", "show", &vxlan]);
    assert!(details.contains("local fd00:77::12"), "{details}");
    // Sandboxes on each host reach each other, with no entry typed anywhere.
    h1.sleeper("pink", &["--network", "ovl"]);
    h2.sleeper("blue", &["--network", "ovl"]);
    let (pink, blue) = (h1.ip_of("pink", 0), h2.ip_of("blue", 0));
    assert!(
        common::wait_for(10, || h1.pings("pink", &blue) && h2.pings("blue", &pink)),
        "{}\n{}\n{}",
        h1.ns.ip(&["neigh", "show", "dev", &vxlan]),
        a1.log(),
        a2.log()
    );
    // The FDB entries point at the IPv6 VTEPs.
    let fdb = h1
        .ns
        .cmd("bridge", &["fdb", "show", "dev", &vxlan])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(fdb.contains("dst fd00:77::12"), "{fdb}");
}

#[test]
fn the_underlay_s_mtu_is_followed_as_the_admin_changes_it() {
    let test = "the_underlay_s_mtu_is_followed_as_the_admin_changes_it";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let h1 = host_at("omt1", "1500", "192.0.2.20/24");
    let h2 = host_at("omt2", "1400", "192.0.2.21/24");
    let etcd = etcd_for("omte", &[&h1, &h2]);
    let url = etcd.url();
    let a1 = Agent::start(&h1, &url, "192.0.2.20", "h1", 5);
    assert!(
        common::wait_for(10, || hosts_alive(&h1) == 1),
        "{}",
        a1.log()
    );
    // Made while h2 is away: h1's MTU (1450), which h2's 1400 underlay cannot carry.
    h1.weft_ok(&overlay_args(&["--subnet", "12.15.0.0/24", "late"]));
    assert_eq!(h1.json(&["network", "inspect", "late"])[0]["mtu"], 1450);
    let id = h1.json(&["network", "inspect", "late"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let late = format!("wv-{}", &id[..12]);
    let a2 = Agent::start(&h2, &url, "192.0.2.21", "h2", 5);
    let refused = |h: &Host| {
        cluster_errors(h)
            .iter()
            .any(|e| e.starts_with("building overlay network \"late\": "))
    };
    assert!(
        common::wait_for(10, || hosts_alive(&h1) == 2 && refused(&h2)),
        "{:?}\n{}",
        cluster_errors(&h2),
        a2.log()
    );
    assert!(!has_link(&h2, &late));
    let err = h1.weft_err(
        1,
        &overlay_args(&["--mtu", "1450", "--subnet", "12.16.0.0/24", "big"]),
    );
    assert!(err.contains("host h2's underlay ul0 has MTU 1400"), "{err}");

    // The admin raises h2's underlay: the network is built there at once, the refusal is
    // gone from the status, and the record the creations read says 1500.
    h2.ns.ip(&["link", "set", "ul0", "mtu", "1500"]);
    let t = std::time::Instant::now();
    assert!(
        common::wait_for(5, || has_link(&h2, &late)),
        "{:?}\n{}",
        cluster_errors(&h2),
        a2.log()
    );
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "built after {took:?}");
    eprintln!("h2's underlay raised to 1500: late built there in {took:?}");
    assert!(network_names(&h2).contains(&"late".to_string()));
    assert!(!refused(&h2), "{:?}", cluster_errors(&h2));
    assert!(
        common::wait_for(3, || h1
            .weft(&overlay_args(&[
                "--mtu",
                "1450",
                "--subnet",
                "12.16.0.0/24",
                "big"
            ]))
            .status
            .success()),
        "--mtu 1450 still refused after h2's underlay grew"
    );

    // And lowers it again: `late` and `big` keep running on h2 (tearing them down would cut
    // their sandboxes off altogether), the status says they no longer fit and what to do,
    // and a new network gets the smaller MTU again.
    h2.ns.ip(&["link", "set", "ul0", "mtu", "1400"]);
    let want = "overlay network \"late\" no longer fits host h2's underlay: its MTU is 1450, but ul0 has MTU 1400 now and VXLAN needs 50 bytes, so at most 1350; it keeps running here and drops larger packets; raise ul0's MTU to 1500, or recreate the network with --mtu 1350";
    assert!(
        common::wait_for(3, || cluster_errors(&h2).iter().any(|e| e == want)),
        "{:?}\n{}",
        cluster_errors(&h2),
        a2.log()
    );
    assert!(has_link(&h2, &late));
    assert!(
        common::wait_for(3, || {
            let out = h1.weft(&overlay_args(&["--subnet", "12.17.0.0/24", "small"]));
            let ok =
                out.status.success() && h1.json(&["network", "inspect", "small"])[0]["mtu"] == 1350;
            if out.status.success() && !ok {
                h1.weft_ok(&["network", "rm", "small"]);
            }
            ok
        }),
        "a new network's default MTU did not follow h2's underlay back to 1400"
    );
    for n in ["small", "big", "late"] {
        h1.weft_ok(&["network", "rm", n]);
    }
}
