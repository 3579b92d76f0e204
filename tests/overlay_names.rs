//! The overlay as a user sees it, with weft commands only: three "hosts" (namespaces) on an
//! underlay (a bridge in its own namespace), etcd in a fourth namespace on it, one
//! `weft daemon --etcd ... --advertise ... --node hN` per host with its own directories.
//! An overlay network made on one host; a sandbox run on a second is reached from the first
//! by its name and by `NAME.NETWORK`, resolved by the first host's DNS server from the
//! cluster; a sandbox of a third host on another overlay network gets NXDOMAIN for it; once
//! removed, its name no longer resolves and its neighbour and FDB entries are gone. Root
//! only; namespaces only.
//!
//! The machine has no `ping` program: sandboxes resolve with `getent` (their `resolv.conf`,
//! the gateway) and ping the address with `weft tool ping`.

mod common;

use std::time::Instant;

use common::etcd::{etcd_or_skip, Etcd};
use common::overlay::{Agent, Underlay};
use common::Host;
use serde_json::Value;

const DNSQ: &str = include_str!("common/dnsq.py");
const NXDOMAIN: u64 = 3;

/// The script a sandbox runs to ping `name`: resolved through its `resolv.conf`.
fn ping_by_name(name: &str) -> String {
    format!(
        "a=$(getent ahostsv4 {name}) || exit 2; {} tool ping -c 1 ${{a%% *}}",
        common::weft_bin()
    )
}

/// One A query for `name` from inside `sandbox` to its resolver (the gateway, port 53).
fn ask(h: &Host, sandbox: &str, gateway: &str, name: &str) -> Value {
    let out = h.weft_ok(&[
        "exec", sandbox, "--", "python3", "-c", DNSQ, "q", gateway, "53", name, "A",
    ]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn answers(r: &Value) -> Vec<String> {
    r["answers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `ip neigh` and `bridge fdb` of `h`'s VXLAN device `dev`.
fn entries(h: &Host, dev: &str) -> String {
    let neigh = common::run(&mut h.ns.cmd("ip", &["neigh", "show", "dev", dev]));
    let fdb = common::run(&mut h.ns.cmd("bridge", &["fdb", "show", "dev", dev]));
    format!(
        "{}{}",
        String::from_utf8_lossy(&neigh.stdout),
        String::from_utf8_lossy(&fdb.stdout)
    )
}

#[test]
fn three_hosts_reach_each_other_by_name_with_weft_commands_only() {
    let test = "three_hosts_reach_each_other_by_name_with_weft_commands_only";
    if !common::root_or_skip(test) || !etcd_or_skip(test) {
        return;
    }
    let ul = Underlay::new("onu");
    let etcd = Etcd::start_on("one", "10.78.0.2:2379", |ns| ul.plug(ns, "10.78.0.2/24"));
    let url = etcd.url();
    let hosts: Vec<Host> = (1..=3).map(|_| Host::new("onh")).collect();
    let vteps: Vec<String> = (1..=3).map(|i| format!("10.78.0.1{i}")).collect();
    for (h, v) in hosts.iter().zip(&vteps) {
        ul.plug(&h.ns, &format!("{v}/24"));
    }
    let mut agents: Vec<Agent> = hosts
        .iter()
        .zip(&vteps)
        .enumerate()
        .map(|(i, (h, v))| Agent::start(h, &url, v, &format!("h{}", i + 1), 3))
        .collect();
    let logs = |agents: &[Agent]| {
        agents
            .iter()
            .map(Agent::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let joined = common::wait_for(15, || {
        hosts
            .iter()
            .all(|h| h.json(&["cluster", "hosts"]).as_array().map(Vec::len) == Some(3))
    });
    assert!(joined, "the hosts did not all join:\n{}", logs(&agents));
    let (h1, h2, h3) = (&hosts[0], &hosts[1], &hosts[2]);

    // An overlay network made on host 1, another on host 3: both exist everywhere.
    h1.weft_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "12.12.12.0/24",
        "ovl",
    ]);
    h3.weft_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "12.12.13.0/24",
        "other",
    ]);
    let everywhere = common::wait_for(10, || {
        hosts.iter().all(|h| {
            let ls = h.weft_ok(&["network", "ls"]);
            ls.contains("ovl") && ls.contains("other")
        })
    });
    assert!(
        everywhere,
        "network ls shows both everywhere:\n{}",
        logs(&agents)
    );
    let id = h1.json(&["network", "inspect", "ovl"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let vxlan = format!("wv-{}", &id[..12]);

    // pink2 on host 2; pink on host 1 pings it by name, then by NAME.NETWORK.
    h2.sleeper("pink2", &["--network", "ovl"]);
    let ran = Instant::now();
    let pink2_ip = h2.ip_of("pink2", 0);
    let pink2_mac = h2.json(&["inspect", "pink2"])[0]["networks"][0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    // Host 1's agent has applied pink2's record (its watch event also went to its DNS
    // server): milliseconds, unless the machine is very busy.
    let seen = common::wait_for(10, || {
        h1.json(&["daemon", "status"])["status"]["cluster"]["endpoints"] == 1
    });
    assert!(seen, "h1 never saw pink2's endpoint:\n{}", logs(&agents));
    let out = h1.weft(&[
        "run",
        "--name",
        "pink",
        "--network",
        "ovl",
        "--",
        "sh",
        "-c",
        &ping_by_name("pink2"),
    ]);
    assert!(
        out.status.success(),
        "pink pings pink2 by name: {}\n{}\n{}",
        common::stderr(&out),
        logs(&agents),
        entries(h1, &vxlan)
    );
    eprintln!(
        "pink2 run on h2 to pink on h1 pinging it by name: {:?}",
        ran.elapsed()
    );
    // (`run` in the foreground removes its sandbox when the command ends.)
    let out = h1.weft(&[
        "run",
        "--name",
        "pink",
        "--network",
        "ovl",
        "--",
        "sh",
        "-c",
        &ping_by_name("pink2.ovl"),
    ]);
    assert!(
        out.status.success(),
        "pink pings pink2.ovl: {}",
        common::stderr(&out)
    );
    // The exact answers, from a sandbox that stays.
    h1.sleeper("pink", &["--network", "ovl"]);
    let gw = "12.12.12.1";
    let r = ask(h1, "pink", gw, "pink2");
    assert_eq!(answers(&r), std::slice::from_ref(&pink2_ip), "{r}");
    // Its hostname (its short id, not given) too, as on its own host.
    let pink2_id = h2.json(&["inspect", "pink2"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ask(h1, "pink", gw, &pink2_id[..12]);
    assert_eq!(answers(&r), std::slice::from_ref(&pink2_ip), "{r}");
    // And the reverse: its address's name is pink2.ovl.
    let rev: Vec<&str> = pink2_ip.split('.').rev().collect();
    let out = h1.weft_ok(&[
        "exec",
        "pink",
        "--",
        "python3",
        "-c",
        DNSQ,
        "q",
        gw,
        "53",
        &format!("{}.in-addr.arpa", rev.join(".")),
        "PTR",
    ]);
    assert!(out.contains("pink2.ovl"), "{out}");

    // Host 1's agent restarted: its DNS server knows pink2 again from the cluster.
    agents[0] = {
        drop(std::mem::replace(&mut agents[0], Agent::none()));
        Agent::start(h1, &url, &vteps[0], "h1", 3)
    };
    let back = common::wait_for(10, || {
        answers(&ask(h1, "pink", gw, "pink2")) == [pink2_ip.as_str()]
    });
    assert!(back, "pink2 after h1's agent restarted: {}", logs(&agents));

    // A sandbox of host 3 on the other overlay network: pink2 does not exist for it.
    h3.sleeper("blue", &["--network", "other"]);
    let r = ask(h3, "blue", "12.12.13.1", "pink2");
    assert_eq!(r["rcode"], NXDOMAIN, "{r}");
    let r = ask(h3, "blue", "12.12.13.1", "pink2.ovl");
    assert_eq!(r["rcode"], NXDOMAIN, "{r}");
    let out = h3.weft(&["exec", "blue", "--", "sh", "-c", &ping_by_name("pink2")]);
    assert_eq!(out.status.code(), Some(2), "blue resolved pink2");

    // pink2 removed on host 2: its name no longer resolves on host 1, and host 1's VXLAN
    // device has neither its neighbour nor its FDB entry.
    assert!(entries(h1, &vxlan).contains(&pink2_mac));
    h2.weft_ok(&["rm", "-f", "pink2"]);
    let gone = common::wait_for(5, || {
        let r = ask(h1, "pink", gw, "pink2");
        r["rcode"] == NXDOMAIN || (r["rcode"] != 0 && answers(&r).is_empty())
    });
    assert!(
        gone,
        "pink2 still resolves on h1: {}",
        ask(h1, "pink", gw, "pink2")
    );
    // (No sandbox has the name any more: it is forwarded, and this host has no resolver.)
    let r = ask(h1, "pink", gw, "pink2.ovl");
    assert!(r["rcode"] != 0 && answers(&r).is_empty(), "{r}");
    let cleared = common::wait_for(5, || {
        let e = entries(h1, &vxlan);
        !e.contains(&pink2_mac) && !e.contains(&format!("{pink2_ip} "))
    });
    assert!(
        cleared,
        "pink2's entries stay on h1:\n{}",
        entries(h1, &vxlan)
    );
    // Its host has no sandbox on ovl left: no flood entry to it either.
    assert!(
        !entries(h1, &vxlan).contains(&format!("dst {} ", vteps[1])),
        "{}",
        entries(h1, &vxlan)
    );

    h1.weft_ok(&["rm", "-f", "pink"]);
    h3.weft_ok(&["rm", "-f", "blue"]);
    h1.weft_ok(&["network", "rm", "ovl"]);
    h3.weft_ok(&["network", "rm", "other"]);
    drop(agents);
}
