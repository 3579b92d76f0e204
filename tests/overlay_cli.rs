//! Overlay networks on the command line: `network create --driver overlay` refuses with the
//! error naming the flags when no agent with a cluster runs, checks its VNI and MTU (with the
//! arithmetic against the underlay); `weft daemon` checks its cluster flags and `[cluster]`
//! keys, refuses an `--advertise` no interface holds, and shows the cluster in `daemon
//! status`. With etcd (in a namespace of its own, linked to the host's): networks, addresses
//! and endpoints live in etcd, and a failed attach or connect leaves nothing there (also one
//! killed half-way, once gc ran). Each test runs in namespaces it makes itself.

mod common;

use std::process::Child;

use common::etcd::{etcd_or_skip, Etcd};
use common::Host;
use serde_json::json;

const NEEDS_CLUSTER: &str = "error: overlay networks need a cluster: start the agent with weft daemon --etcd URL --advertise IP\n";

/// A host with an underlay interface `ul0` holding 192.0.2.10/24 (TEST-NET-1, inside the
/// namespace only) with MTU `mtu`.
fn host_with_underlay(prefix: &str, mtu: &str) -> Host {
    host_at(prefix, mtu, "192.0.2.10/24")
}

/// A host with an underlay interface `ul0` holding `addr` (CIDR) with MTU `mtu`.
fn host_at(prefix: &str, mtu: &str, addr: &str) -> Host {
    let h = Host::new(prefix);
    // A veth pair within the namespace (the machine may lack the dummy driver).
    h.ns.ip(&[
        "link", "add", "ul0", "mtu", mtu, "type", "veth", "peer", "name", "ul0p", "mtu", mtu,
    ]);
    h.ns.ip(&["link", "set", "ul0p", "up"]);
    h.ns.ip(&["addr", "add", addr, "dev", "ul0"]);
    h.ns.ip(&["link", "set", "ul0", "up"]);
    h
}

/// Runs `weft daemon --stay ARGS` in the background and waits until it answers.
fn agent(h: &Host, args: &[&str]) -> Child {
    let mut full = vec!["--stay"];
    full.extend_from_slice(args);
    daemon_spawned(h, &full)
}

/// Runs `weft daemon ARGS` in the background and waits until it answers.
fn daemon_spawned(h: &Host, args: &[&str]) -> Child {
    let mut full = vec!["daemon"];
    full.extend_from_slice(args);
    let mut child = h.spawn(&full);
    let up = common::wait_for(10, || {
        h.weft(&["daemon", "status"]).status.success() || child.try_wait().ok().flatten().is_some()
    });
    if !(up && h.weft(&["daemon", "status"]).status.success()) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the agent did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child
}

/// Stops the agent started by [`agent`] and reaps it.
fn stop(h: &Host, mut child: Child) {
    h.weft_ok(&["daemon", "stop"]);
    let done = common::wait_for(10, || child.try_wait().ok().flatten().is_some());
    if !done {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// `network create --driver overlay EXTRA...`.
fn overlay_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["network", "create", "--driver", "overlay"];
    args.extend_from_slice(extra);
    args
}

fn cluster_of(h: &Host) -> serde_json::Value {
    h.json(&["daemon", "status"])["status"]["cluster"].clone()
}

/// The configuration part of `daemon status`'s cluster (the cluster task adds its own
/// state next to it).
fn cluster_config_of(h: &Host) -> serde_json::Value {
    let mut c = cluster_of(h);
    let keys = [
        "configured",
        "etcd",
        "tls",
        "node",
        "advertise",
        "vxlan_port",
        "lease_ttl",
    ];
    c.as_object_mut()
        .unwrap()
        .retain(|k, _| keys.contains(&k.as_str()));
    c
}

fn network_names(h: &Host) -> Vec<String> {
    h.json(&["network", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn overlay_without_a_cluster_names_the_flags_and_bad_requests_name_the_fix() {
    if !common::root_or_skip(
        "overlay_without_a_cluster_names_the_flags_and_bad_requests_name_the_fix",
    ) {
        return;
    }
    let h = Host::new("ovn");
    let create = overlay_args;
    // No agent at all.
    let err = h.weft_err(1, &create(&["--subnet", "12.12.12.0/24", "ovl"]));
    assert_eq!(err, NEEDS_CLUSTER);
    let err = h.weft_err(
        1,
        &create(&[
            "--subnet",
            "12.12.12.0/24",
            "--vni",
            "42",
            "--mtu",
            "1400",
            "ovl",
        ]),
    );
    assert_eq!(err, NEEDS_CLUSTER);
    // A VNI out of range is refused before the cluster is asked for.
    for vni in ["0", "16777216", "99999999999"] {
        let err = h.weft_err(
            1,
            &create(&["--subnet", "12.12.12.0/24", "--vni", vni, "ovl"]),
        );
        assert_eq!(
            err,
            format!("error: invalid --vni {vni}: a VXLAN network identifier is between 1 and 16777215; give one in that range or leave --vni out\n")
        );
    }
    let err = h.weft_err(
        1,
        &create(&["--subnet", "12.12.12.0/24", "--mtu", "70000", "ovl"]),
    );
    assert_eq!(
        err,
        "error: invalid --mtu 70000: must be between 68 and 65535\n"
    );
    // Docker's spelling of the VNI is the same setting, checked the same way.
    let err = h.weft_err(
        1,
        &create(&[
            "--subnet",
            "12.12.12.0/24",
            "--opt",
            "com.docker.network.driver.overlay.vxlanid_list=16777216",
            "ovl",
        ]),
    );
    assert!(err.starts_with("error: invalid --vni 16777216: "), "{err}");
    let err = h.weft_err(
        1,
        &create(&[
            "--subnet",
            "12.12.12.0/24",
            "--vni",
            "7",
            "--opt",
            "com.docker.network.driver.overlay.vxlanid_list=8",
            "ovl",
        ]),
    );
    assert_eq!(err, "error: conflicting values for the VNI: --vni 7 and --opt com.docker.network.driver.overlay.vxlanid_list=8; give it once\n");
    // What makes no sense for an overlay.
    let err = h.weft_err(
        1,
        &create(&["--subnet", "12.12.12.0/24", "--bridge-name", "br7", "ovl"]),
    );
    assert_eq!(
        err,
        "error: --bridge-name (or --opt com.docker.network.bridge.name) does not apply to overlay networks: weft names an overlay's bridge wo-<id>, the same on every host; leave it out\n"
    );
    let err = h.weft_err(
        1,
        &create(&[
            "--opt",
            "com.docker.network.bridge.name=br7",
            "--subnet",
            "12.12.12.0/24",
            "ovl",
        ]),
    );
    assert!(
        err.starts_with(
            "error: --bridge-name (or --opt com.docker.network.bridge.name) does not apply"
        ),
        "{err}"
    );
    // No --subnet is no error of its own (the cluster chooses one): the cluster is missing.
    let err = h.weft_err(1, &create(&["ovl"]));
    assert_eq!(err, NEEDS_CLUSTER);
    let err = h.weft_err(1, &["network", "create", "--vni", "42", "br"]);
    assert_eq!(
        err,
        "error: --vni (or --opt com.docker.network.driver.overlay.vxlanid_list) does not apply to bridge networks: a VXLAN network identifier is for --driver overlay\n"
    );
    // An unknown driver is a usage error listing the known ones.
    let err = h.weft_err(2, &["network", "create", "--driver", "nosuch", "x"]);
    assert_eq!(
        err,
        "error: unknown driver \"nosuch\": known drivers are bridge, overlay\n"
    );
    // An agent without a cluster is no cluster either.
    let child = agent(&h, &[]);
    assert_eq!(cluster_config_of(&h), json!({"configured": false}));
    let text = h.weft_ok(&["daemon", "status"]);
    assert!(text.contains("\ncluster: not configured\n"), "{text}");
    let err = h.weft_err(1, &create(&["--subnet", "12.12.12.0/24", "ovl"]));
    assert_eq!(err, NEEDS_CLUSTER);
    stop(&h, child);
    // Nothing was recorded or built, and bridge networks are as they were.
    assert!(network_names(&h).is_empty());
    h.weft_ok(&["network", "create", "--subnet", "10.171.0.0/24", "plain"]);
    let n = &h.json(&["network", "inspect", "plain"])[0];
    assert_eq!(n["driver"], "bridge");
    assert!(n.get("driver_data").is_none(), "{n}");
}

#[test]
fn with_a_cluster_the_mtu_is_checked_against_the_underlay_and_an_unreachable_etcd_is_named() {
    if !common::root_or_skip(
        "with_a_cluster_the_mtu_is_checked_against_the_underlay_and_an_unreachable_etcd_is_named",
    ) {
        return;
    }
    let h = host_with_underlay("ovc", "1500");
    let child = agent(
        &h,
        &[
            "--etcd",
            "http://127.0.0.1:2379,http://[::1]:2379",
            "--advertise",
            "192.0.2.10",
            "--node",
            "h1",
            "--lease-ttl",
            "7",
        ],
    );
    assert_eq!(
        cluster_config_of(&h),
        json!({
            "configured": true,
            "etcd": ["http://127.0.0.1:2379", "http://[::1]:2379"],
            "node": "h1",
            "advertise": "192.0.2.10",
            "vxlan_port": 4789,
            "lease_ttl": 7
        })
    );
    let text = h.weft_ok(&["daemon", "status"]);
    assert!(
        text.contains("\ncluster: node h1, advertise 192.0.2.10, vxlan port 4789, lease 7 s, etcd http://127.0.0.1:2379,http://[::1]:2379"),
        "{text}"
    );
    let create = |extra: &[&str]| {
        let mut args = vec![
            "network",
            "create",
            "--driver",
            "overlay",
            "--subnet",
            "12.12.12.0/24",
        ];
        args.extend_from_slice(extra);
        args.push("ovl");
        h.weft_err(1, &args)
    };
    assert_eq!(
        create(&["--mtu", "1500"]),
        "error: --mtu 1500 is too large for overlay ovl: the underlay ul0 has MTU 1500 and VXLAN needs 50 bytes, so at most 1450\n"
    );
    assert!(create(&["--mtu", "1451"]).contains("so at most 1450\n"));
    // The underlay's MTU is read, not assumed.
    h.ns.ip(&["link", "set", "ul0p", "mtu", "9000"]);
    h.ns.ip(&["link", "set", "ul0", "mtu", "9000"]);
    // No etcd listens here: the request reaches the agent, which names where it looked.
    let unreachable =
        "error: cluster store http://127.0.0.1:2379,http://[::1]:2379 is unreachable: ";
    let err = create(&["--mtu", "8950"]);
    assert!(err.starts_with(unreachable), "{err}");
    assert!(create(&["--mtu", "8951"])
        .contains("the underlay ul0 has MTU 9000 and VXLAN needs 50 bytes, so at most 8950\n"));
    assert!(create(&["--vni", "42"]).starts_with(unreachable));
    assert!(network_names(&h).is_empty(), "nothing pretends to exist");
    stop(&h, child);
}

#[test]
fn daemon_refuses_cluster_settings_it_cannot_use() {
    if !common::root_or_skip("daemon_refuses_cluster_settings_it_cannot_use") {
        return;
    }
    let h = host_with_underlay("ovd", "1500");
    let daemon = |extra: &[&str]| {
        let mut args = vec!["daemon", "--stay"];
        args.extend_from_slice(extra);
        h.weft_err(1, &args)
    };
    let etcd = ["--etcd", "http://127.0.0.1:2379"];
    let with = |extra: &[&str]| {
        let mut a = etcd.to_vec();
        a.extend_from_slice(extra);
        daemon(&a)
    };
    assert_eq!(
        with(&["--advertise", "192.0.2.99"]),
        "error: --advertise 192.0.2.99 is not an address of this host: no interface has it; give the address this host has on the network the other hosts share\n"
    );
    assert_eq!(
        daemon(&["--advertise", "192.0.2.10"]),
        "error: --advertise given without --etcd: give the etcd endpoints too (--etcd URL, or etcd = [\"URL\"] under [cluster])\n"
    );
    assert!(with(&[]).starts_with("error: --etcd needs --advertise IP"));
    assert_eq!(
        daemon(&["--etcd", "etcd:2379", "--advertise", "192.0.2.10"]),
        "error: invalid --etcd endpoint \"etcd:2379\": expected http://HOST:PORT or https://HOST:PORT, e.g. http://10.0.0.5:2379\n"
    );
    assert_eq!(
        with(&["--advertise", "192.0.2.10", "--lease-ttl", "1"]),
        "error: invalid --lease-ttl 1: must be between 2 and 3600 seconds\n"
    );
    assert_eq!(
        with(&["--advertise", "192.0.2.10", "--vxlan-port", "0"]),
        "error: invalid --vxlan-port 0: must be between 1 and 65535 (VXLAN's own is 4789)\n"
    );
    assert_eq!(
        with(&["--advertise", "192.0.2.10", "--etcd-key", "/k.pem"]),
        "error: --etcd-cert and --etcd-key go together: give both or neither\n"
    );
    assert!(
        with(&["--advertise", "not-an-ip"]).starts_with("error: invalid --advertise \"not-an-ip\"")
    );
    // Cluster flags belong to the agent, not to its subcommands.
    let err = h.weft_err(2, &["daemon", "--etcd", "http://127.0.0.1:2379", "status"]);
    assert!(
        err.contains("give them to `weft daemon` without a subcommand"),
        "{err}"
    );
    // No agent was left running by any of these.
    assert_eq!(h.weft(&["daemon", "status"]).status.code(), Some(3));

    // The same keys under [cluster]; flags override them one by one.
    h.config("[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nadvertise = \"192.0.2.99\"\nnode = \"from-file\"\nvxlan_port = 8472\n");
    let err = daemon(&[]);
    assert!(
        err.starts_with("error: --advertise 192.0.2.99 is not an address of this host"),
        "{err}"
    );
    let child = agent(&h, &["--advertise", "192.0.2.10"]);
    let c = cluster_of(&h);
    assert_eq!(
        (
            &c["node"],
            &c["advertise"],
            &c["vxlan_port"],
            &c["lease_ttl"]
        ),
        (
            &json!("from-file"),
            &json!("192.0.2.10"),
            &json!(8472),
            &json!(10)
        ),
        "{c}"
    );
    stop(&h, child);
    h.config("[cluster]\netcd = \"http://127.0.0.1:2379\"\n");
    let err = daemon(&[]);
    assert!(err.starts_with("error: invalid config file"), "{err}");
}

#[test]
fn a_cluster_member_stays_with_nothing_weft_made_on_its_host() {
    if !common::root_or_skip("a_cluster_member_stays_with_nothing_weft_made_on_its_host") {
        return;
    }
    let h = host_with_underlay("ovs", "1500");
    // Without a cluster (and without --stay) an agent with nothing to look after leaves...
    let mut plain = h.spawn(&["daemon"]);
    assert!(
        common::wait_for(20, || plain.try_wait().ok().flatten().is_some()),
        "an agent without a cluster stayed with nothing to look after"
    );
    let _ = plain.wait();
    // ...a cluster member stays: its host is in the cluster whether or not it has networks.
    let mut member = daemon_spawned(
        &h,
        &[
            "--etcd",
            "http://127.0.0.1:2379",
            "--advertise",
            "192.0.2.10",
        ],
    );
    std::thread::sleep(std::time::Duration::from_secs(12));
    assert!(
        member.try_wait().unwrap().is_none(),
        "the cluster member left"
    );
    assert_eq!(cluster_of(&h)["configured"], true);
    stop(&h, member);
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

fn keys_under(store: &dyn weft::adapters::cluster::ClusterStore, prefix: &str) -> Vec<String> {
    store
        .snapshot(prefix)
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect()
}

#[test]
fn overlay_networks_addresses_and_endpoints_live_in_etcd() {
    let test = "overlay_networks_addresses_and_endpoints_live_in_etcd";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let h = host_with_underlay("ove", "1500");
    // etcd in its own namespace, on a link to the host's.
    let mut etcd = Etcd::start_on("ovee", "10.213.7.1:2379", |ns| {
        common::link(ns, "etc0", "10.213.7.1/24", &h.ns, "etc1", "10.213.7.2/24")
    });
    let store = etcd.store();
    let url = etcd.url();
    let child = agent(
        &h,
        &["--etcd", &url, "--advertise", "192.0.2.10", "--node", "h1"],
    );
    assert!(
        common::wait_for(10, || kv_json(&store, "/weft/v1/hosts/h1").is_some()),
        "the agent did not join"
    );

    // Create: the record is in etcd, with a VNI from 4096 and the cluster's port.
    h.weft_ok(&overlay_args(&["--subnet", "12.12.12.0/24", "ovl"]));
    assert!(network_names(&h).contains(&"ovl".to_string()));
    let rec = kv_json(&store, "/weft/v1/networks/ovl").expect("the network in etcd");
    assert_eq!(rec["driver"], "overlay");
    let vni = rec["driver_data"]["overlay"]["vni"].as_u64().unwrap();
    assert!(vni >= 4096, "{rec}");
    assert_eq!(rec["driver_data"]["overlay"]["port"], 4789);
    let id = rec["id"].as_str().unwrap().to_string();
    assert_eq!(rec["bridge"], format!("wo-{}", &id[..12]));
    assert_eq!(rec["mtu"], 1450);
    assert_eq!(
        kv_json(&store, &format!("/weft/v1/network-ids/{id}")),
        Some(json!("ovl"))
    );
    assert_eq!(
        kv_json(&store, &format!("/weft/v1/vnis/{vni}")),
        Some(json!(id))
    );
    let local = &h.json(&["network", "inspect", "ovl"])[0];
    assert_eq!(local["id"], json!(id));

    // A given VNI, then the same again: the exact error naming the holder.
    let made = h.json(&overlay_args(&[
        "--format",
        "json",
        "--subnet",
        "12.12.13.0/24",
        "--vni",
        "42",
        "ovl42",
    ]));
    assert_eq!(made["name"], "ovl42", "{made}");
    assert_eq!(
        (&made["driver"], &made["vni"], &made["vxlan_port"]),
        (&json!("overlay"), &json!(42), &json!(4789)),
        "{made}"
    );
    assert_eq!(h.json(&["network", "inspect", "ovl"])[0]["vni"], json!(vni));
    let err = h.weft_err(
        1,
        &overlay_args(&["--subnet", "12.12.14.0/24", "--vni", "42", "other"]),
    );
    assert_eq!(err, "error: VNI 42 is already used by overlay network ovl42: choose another --vni, or leave it out to get a free one\n");
    let err = h.weft_err(1, &overlay_args(&["--subnet", "12.12.14.0/24", "ovl"]));
    assert_eq!(err, "error: network \"ovl\" already exists; choose another name or remove it with `weft network rm ovl`\n");
    h.weft_ok(&["network", "rm", "ovl42"]);
    assert_eq!(kv_json(&store, "/weft/v1/networks/ovl42"), None);
    assert_eq!(kv_json(&store, "/weft/v1/vnis/42"), None);

    // The data plane is the agent's cluster task (built separately): without it, the bridge
    // it makes is made here by hand.
    let bridge = format!("wo-{}", &id[..12]);
    let built = common::wait_for(5, || {
        h.ns.cmd("ip", &["link", "show", &bridge])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !built {
        h.ns.ip(&["link", "add", &bridge, "type", "bridge"]);
        h.ns.ip(&["addr", "add", "12.12.12.1/24", "dev", &bridge]);
        h.ns.ip(&["link", "set", &bridge, "up"]);
    }
    // Sandboxes' host veths on the bridge (the VXLAN device, wv-<id>, is not one).
    let veths = || {
        h.ns.ip(&["-o", "link", "show", "master", &bridge])
            .lines()
            .filter(|l| !l.contains(": wv-"))
            .count()
    };

    // A sandbox gets its address from the cluster, and its endpoint is registered.
    h.sleeper("pink", &["--network", "ovl"]);
    let ip = h.ip_of("pink", 0);
    assert_eq!(ip, "12.12.12.2");
    let sb = &h.json(&["inspect", "pink"])[0];
    let sb_id = sb["id"].as_str().unwrap().to_string();
    let mac = sb["networks"][0]["mac"].as_str().unwrap().to_string();
    let ep = kv_json(&store, &format!("/weft/v1/endpoints/{id}/h1/{sb_id}"))
        .expect("the endpoint in etcd");
    assert_eq!(
        (&ep["ipv4"], &ep["mac"], &ep["name"]),
        (&json!(ip), &json!(mac), &json!("pink")),
        "{ep}"
    );
    assert_eq!(
        kv_json(&store, &format!("/weft/v1/addresses/{id}/{ip}")),
        Some(json!({"sandbox": sb_id, "node": "h1"}))
    );
    // The sandbox's interface is on the overlay's bridge.
    assert_eq!(veths(), 1);

    let hosts = h.json(&["cluster", "hosts"]);
    assert_eq!(hosts[0]["node"], "h1");
    assert_eq!(hosts[0]["vtep"], "192.0.2.10");
    assert_eq!(hosts[0]["vxlan_port"], 4789);
    assert_eq!(hosts[0]["alive"], true);
    assert_eq!(hosts[0]["endpoints"], 1);
    let table = h.weft_ok(&["cluster", "hosts"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["h1", "192.0.2.10", "4789", "yes", "1"], "{table}");

    let err = h.weft_err(1, &["network", "rm", "ovl"]);
    assert_eq!(err, "error: network \"ovl\" has sandboxes attached on h1 (1); remove or disconnect them first\n");

    // A static address: refused when taken (naming the holder), given when free.
    let err = h.weft_err(
        125,
        &[
            "run",
            "-d",
            "--network",
            "ovl",
            "--ip",
            "12.12.12.2",
            "--",
            "sleep",
            "600",
        ],
    );
    assert!(
        err.starts_with("error: network \"ovl\": ") && err.contains(&sb_id),
        "{err}"
    );
    h.sleeper("fixed", &["--network", "ovl", "--ip", "12.12.12.77"]);
    assert_eq!(h.ip_of("fixed", 0), "12.12.12.77");
    // A failure after the cluster's claim (a MAC another sandbox of the network has) gives
    // the claim and the endpoint back.
    let err = h.weft_err(
        125,
        &[
            "run",
            "-d",
            "--name",
            "twin",
            "--network",
            "ovl",
            "--mac-address",
            &mac,
            "--",
            "sleep",
            "600",
        ],
    );
    assert!(err.contains("already the MAC of sandbox \"pink\""), "{err}");
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).len(),
        2
    );
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/addresses/{id}/")).len(),
        2
    );
    // Many at once: every one a different address, each registered.
    let runs: Vec<Vec<String>> = (0..6)
        .map(|i| {
            [
                "run",
                "-d",
                "--name",
                &format!("many{i}"),
                "--network",
                "ovl",
                "--",
                "sleep",
                "600",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        })
        .collect();
    h.weft_parallel(&runs);
    let ips: std::collections::BTreeSet<String> =
        (0..6).map(|i| h.ip_of(&format!("many{i}"), 0)).collect();
    assert_eq!(ips.len(), 6, "{ips:?}");
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).len(),
        8
    );
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/addresses/{id}/")).len(),
        8
    );
    let mut names: Vec<String> = (0..6).map(|i| format!("many{i}")).collect();
    names.push("fixed".into());
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    h.weft_ok(&rm);

    // `run --rm`: gone from the cluster with the sandbox.
    h.weft_ok(&["run", "--rm", "--network", "ovl", "--", "true"]);
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).len(),
        1
    );
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/addresses/{id}/")).len(),
        1
    );
    // Disconnected: its endpoint and address leave the cluster, its interface the bridge.
    h.sleeper("solo", &["--network", "ovl"]);
    let solo_id = h.json(&["inspect", "solo"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).len(),
        2
    );
    h.weft_ok(&["network", "disconnect", "ovl", "solo"]);
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).len(),
        1
    );
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/addresses/{id}/")).len(),
        1
    );
    assert_eq!(h.interfaces("solo"), ["lo"]);
    assert!(common::wait_for(10, || veths() == 1), "solo's veth stayed");
    // Connected again while it runs: the address is the cluster's (a static one too), the
    // endpoint is registered with its alias, the interface is on the overlay's bridge.
    h.weft_ok(&[
        "network",
        "connect",
        "--ip",
        "12.12.12.99",
        "--alias",
        "lone",
        "ovl",
        "solo",
    ]);
    assert_eq!(h.ip_of("solo", 0), "12.12.12.99");
    assert_eq!(
        kv_json(&store, &format!("/weft/v1/addresses/{id}/12.12.12.99")),
        Some(json!({"sandbox": solo_id, "node": "h1"}))
    );
    let ep = kv_json(&store, &format!("/weft/v1/endpoints/{id}/h1/{solo_id}"))
        .expect("solo's endpoint in etcd");
    assert_eq!(
        (&ep["ipv4"], &ep["name"], &ep["aliases"]),
        (&json!("12.12.12.99"), &json!("solo"), &json!(["lone"])),
        "{ep}"
    );
    assert_eq!(veths(), 2);
    assert!(
        h.pings("solo", &ip),
        "solo reaches pink over the overlay's bridge"
    );
    // Connected twice: refused before the cluster is asked.
    let err = h.weft_err(1, &["network", "connect", "ovl", "solo"]);
    assert_eq!(
        err,
        "error: sandbox \"solo\" is already connected to network \"ovl\"\n"
    );
    // A connect that fails after the cluster's claim (the sandbox already has an eth1,
    // made behind weft's back): no claim, no endpoint, no interface stays.
    h.sleeper("busy", &[]);
    let netns = h.json(&["inspect", "busy"])[0]["netns"]
        .as_str()
        .unwrap()
        .to_string();
    common::ok(std::process::Command::new("nsenter").args([
        &format!("--net={netns}"),
        "ip",
        "link",
        "add",
        "eth1",
        "type",
        "veth",
        "peer",
        "name",
        "x1",
    ]));
    let out = h.weft(&["network", "connect", "ovl", "busy"]);
    let err = common::stderr(&out);
    assert!(!out.status.success(), "connect succeeded over an eth1");
    assert!(
        err.starts_with("error: connecting sandbox \"busy\" to network \"ovl\""),
        "{err}"
    );
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).len(),
        2
    );
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/addresses/{id}/")).len(),
        2
    );
    let busy = &h.json(&["inspect", "busy"])[0];
    assert_eq!(busy["networks"].as_array().unwrap().len(), 1, "{busy}");
    assert!(
        common::wait_for(10, || veths() == 2),
        "a veth stayed on {bridge}"
    );
    // etcd unreachable is the other failure, before any local change: tested below.
    h.weft_ok(&["rm", "-f", "solo", "busy"]);
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).len(),
        1
    );
    assert_eq!(
        keys_under(&store, &format!("/weft/v1/addresses/{id}/")).len(),
        1
    );

    h.weft_ok(&["rm", "-f", "pink"]);
    assert!(keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).is_empty());
    assert!(keys_under(&store, &format!("/weft/v1/addresses/{id}/")).is_empty());

    // etcd gone: an attach fails naming the endpoint, and leaves nothing behind.
    h.sleeper("green", &[]);
    etcd.kill();
    let err = h.weft_err(1, &["network", "connect", "ovl", "green"]);
    assert!(
        err.starts_with(&format!("error: cluster store {url} is unreachable")),
        "{err}"
    );
    let green = &h.json(&["inspect", "green"])[0];
    assert_eq!(green["networks"].as_array().unwrap().len(), 1, "{green}");
    assert_eq!(h.interfaces("green"), ["lo", "eth0"]);
    h.weft_ok(&["rm", "-f", "green"]);
    // (125: `run` failed before the command ran, as Docker's.)
    let err = h.weft_err(
        125,
        &["run", "--name", "blue", "--network", "ovl", "--", "true"],
    );
    assert!(
        err.starts_with(&format!("error: cluster store {url} is unreachable")),
        "{err}"
    );
    assert_eq!(h.json(&["ps", "-a"]), json!([]));
    // (The kernel takes the removed sandboxes' veths with their namespaces a moment later.)
    assert!(
        common::wait_for(10, || veths() == 0),
        "a veth was left on {bridge}"
    );
    etcd.start_again();
    let store = etcd.store();
    assert!(keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).is_empty());
    assert!(keys_under(&store, &format!("/weft/v1/addresses/{id}/")).is_empty());

    // Removed everywhere: etcd and this host.
    assert!(
        common::wait_for(20, || h.weft(&["network", "rm", "ovl"]).status.success()),
        "network rm after etcd came back"
    );
    assert_eq!(kv_json(&store, "/weft/v1/networks/ovl"), None);
    assert!(keys_under(&store, "/weft/v1/vnis/").is_empty());
    assert!(!network_names(&h).contains(&"ovl".to_string()));
    stop(&h, child);
}

#[test]
fn two_hosts_share_names_and_vnis_and_a_dead_host_leaves_the_list() {
    let test = "two_hosts_share_names_and_vnis_and_a_dead_host_leaves_the_list";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let h1 = host_at("ot1", "1500", "192.0.2.10/24");
    let h2 = host_at("ot2", "1500", "192.0.2.11/24");
    // etcd on a link to each host (h2 routes to etcd's address on h1's link).
    let etcd = Etcd::start_on("ote", "10.213.7.1:2379", |ns| {
        common::link(ns, "etc0", "10.213.7.1/24", &h1.ns, "etc1", "10.213.7.2/24");
        common::link(ns, "etc2", "10.213.8.1/24", &h2.ns, "etc3", "10.213.8.2/24");
        h2.ns
            .ip(&["route", "add", "10.213.7.0/24", "via", "10.213.8.1"]);
    });
    let url = etcd.url();
    let a1 = agent(
        &h1,
        &[
            "--etcd",
            &url,
            "--advertise",
            "192.0.2.10",
            "--node",
            "h1",
            "--lease-ttl",
            "2",
        ],
    );
    let mut a2 = agent(
        &h2,
        &[
            "--etcd",
            &url,
            "--advertise",
            "192.0.2.11",
            "--node",
            "h2",
            "--lease-ttl",
            "2",
        ],
    );
    let listed = |h: &Host| -> Vec<(String, String, bool)> {
        h.json(&["cluster", "hosts"])
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["node"].as_str().unwrap().to_string(),
                    x["vtep"].as_str().unwrap_or("-").to_string(),
                    x["alive"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let both = vec![
        ("h1".to_string(), "192.0.2.10".to_string(), true),
        ("h2".to_string(), "192.0.2.11".to_string(), true),
    ];
    assert!(
        common::wait_for(10, || listed(&h1) == both && listed(&h2) == both),
        "{:?}",
        listed(&h1)
    );
    // A name and a VNI taken on one host are taken on the other (whose own store has
    // neither: the cluster refuses).
    h1.weft_ok(&overlay_args(&[
        "--subnet",
        "12.12.12.0/24",
        "--vni",
        "77",
        "ovl",
    ]));
    let err = h2.weft_err(1, &overlay_args(&["--subnet", "12.12.13.0/24", "ovl"]));
    assert_eq!(err, "error: network \"ovl\" already exists; choose another name or remove it with `weft network rm ovl`\n");
    let err = h2.weft_err(
        1,
        &overlay_args(&["--subnet", "12.12.13.0/24", "--vni", "77", "ovm"]),
    );
    assert_eq!(err, "error: VNI 77 is already used by overlay network ovl: choose another --vni, or leave it out to get a free one\n");
    // Refused by h2's own check (the one bridge networks get) once h2's agent has built ovl
    // from the cluster, which it does within milliseconds; else by the cluster-wide check.
    let err = h2.weft_err(1, &overlay_args(&["--subnet", "12.12.12.128/25", "ovm"]));
    let local = err.starts_with("error: subnet 12.12.12.128/25 would break traffic: ")
        && err.contains("overlaps weft network \"ovl\" (12.12.12.0/24)");
    let cluster = err == "error: --subnet 12.12.12.128/25 overlaps 12.12.12.0/24 of overlay network \"ovl\"; choose a subnet no other overlay network uses\n";
    assert!(local || cluster, "{err}");
    // h2's agent killed outright: its lease expires, and it leaves the list.
    let _ = a2.kill();
    let _ = a2.wait();
    let only_h1 = vec![("h1".to_string(), "192.0.2.10".to_string(), true)];
    assert!(
        common::wait_for(10, || listed(&h1) == only_h1),
        "{:?}",
        listed(&h1)
    );
    h1.weft_ok(&["network", "rm", "ovl"]);
    stop(&h1, a1);
}

#[test]
fn an_overlay_connect_killed_at_any_netlink_request_leaves_no_claim_after_gc() {
    let test = "an_overlay_connect_killed_at_any_netlink_request_leaves_no_claim_after_gc";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let h = host_with_underlay("ovk", "1500");
    let etcd = Etcd::start_on("ovke", "10.213.9.1:2379", |ns| {
        common::link(ns, "etc0", "10.213.9.1/24", &h.ns, "etc1", "10.213.9.2/24")
    });
    let store = etcd.store();
    let url = etcd.url();
    let child = agent(
        &h,
        &["--etcd", &url, "--advertise", "192.0.2.10", "--node", "h1"],
    );
    assert!(
        common::wait_for(10, || kv_json(&store, "/weft/v1/hosts/h1").is_some()),
        "the agent did not join"
    );
    h.weft_ok(&overlay_args(&["--subnet", "12.12.12.0/24", "ovl"]));
    let id = kv_json(&store, "/weft/v1/networks/ovl").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.sleeper("a", &[]);
    let networks = |h: &Host| -> Vec<String> {
        h.json(&["inspect", "a"])[0]["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["network"].as_str().unwrap().to_string())
            .collect()
    };
    let first = networks(&h);
    for n in 1..200 {
        let done = h.killed_at_sendto(n, &["network", "connect", "ovl", "a"]);
        let gc = h.weft_ok(&["gc"]);
        let endpoints = keys_under(&store, &format!("/weft/v1/endpoints/{id}/"));
        let addresses = keys_under(&store, &format!("/weft/v1/addresses/{id}/"));
        if done {
            assert!(n > 1, "strace never killed weft: is strace working?");
            assert_eq!(networks(&h)[1], "ovl");
            assert_eq!((endpoints.len(), addresses.len()), (1, 1));
            h.weft_ok(&["rm", "-f", "a"]);
            assert!(keys_under(&store, &format!("/weft/v1/endpoints/{id}/")).is_empty());
            h.weft_ok(&["network", "rm", "ovl"]);
            break;
        }
        // Undone: not connected here, nothing claimed or registered in the cluster.
        assert_eq!(networks(&h), first, "after kill at sendto {n}: {gc}");
        assert_eq!(
            (endpoints.len(), addresses.len()),
            (0, 0),
            "after kill at sendto {n}: {gc}: {endpoints:?} {addresses:?}"
        );
        assert!(n < 199, "connect never completed");
    }
    stop(&h, child);
}
