//! Repair: `network connect`/`disconnect` killed at every netlink request and settled by
//! `weft gc`, and drift weft did not cause — a deleted bridge or veth, a detached port, a lost
//! address or route, a sysctl turned back — repaired by gc and by the next command that
//! depends on it. A second state directory in the same namespace never takes the first one's
//! interfaces for its own.

mod common;

use common::{weft_bin, Host};

fn bridge_of(h: &Host, net: &str) -> String {
    h.json(&["network", "inspect", net])[0]["bridge"]
        .as_str()
        .unwrap()
        .to_string()
}

fn host_veth_of(h: &Host, sandbox: &str, n: usize) -> String {
    h.json(&["inspect", sandbox])[0]["networks"][n]["host_interface"]
        .as_str()
        .unwrap()
        .to_string()
}

fn networks_of(h: &Host, sandbox: &str) -> Vec<String> {
    h.json(&["inspect", sandbox])[0]["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["network"].as_str().unwrap().to_string())
        .collect()
}

/// Host-side interfaces tagged as owned by `id_prefix`'s sandbox.
fn ports_of(h: &Host, bridge: &str) -> Vec<String> {
    h.ns.ip(&["-o", "link", "show", "master", bridge])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

#[test]
fn connect_killed_at_every_netlink_request_is_undone_by_gc() {
    let h = Host::new("rcon");
    h.weft_ok(&["network", "create", "one", "--subnet", "10.150.0.0/24"]);
    h.weft_ok(&["network", "create", "two", "--subnet", "10.151.0.0/24"]);
    h.sleeper("a", &["--network", "one"]);
    h.sleeper("b", &["--network", "two"]);
    let b_ip = h.ip_of("b", 0);
    for n in 1..200 {
        let done = h.killed_at_sendto(n, &["network", "connect", "two", "a"]);
        let gc = h.weft_ok(&["gc"]);
        if done {
            assert!(n > 1, "strace never killed weft: is strace working?");
            assert_eq!(networks_of(&h, "a"), ["one", "two"]);
            assert!(h.pings("a", &b_ip), "the finished connect works");
            return;
        }
        // Undone: no endpoint on record, no eth1 inside, no port of a on two's bridge, and
        // `network rm` of the network is not refused because of a.
        assert_eq!(
            networks_of(&h, "a"),
            ["one"],
            "after kill at sendto {n}: {gc}"
        );
        assert_eq!(
            h.interfaces("a"),
            ["lo", "eth0"],
            "after kill at sendto {n}"
        );
        let a_id = h.json(&["inspect", "a"])[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let leftovers: Vec<String> =
            h.ns.ip(&["-o", "link", "show"])
                .lines()
                .filter(|l| l.contains(&a_id[..8]) || l.contains("eth1"))
                .map(str::to_string)
                .collect();
        assert!(
            leftovers.len() <= 1,
            "only a's eth0 veth may remain after kill at sendto {n}: {leftovers:?}"
        );
        assert!(h.pings("a", &h.ip_of("a", 0).replace(".2", ".1")));
    }
    panic!("connect never completed");
}

#[test]
fn disconnect_killed_at_every_netlink_request_is_finished_by_gc() {
    let h = Host::new("rdis");
    h.weft_ok(&["network", "create", "one", "--subnet", "10.152.0.0/24"]);
    h.weft_ok(&["network", "create", "two", "--subnet", "10.153.0.0/24"]);
    h.sleeper("a", &["--network", "one"]);
    for n in 1..200 {
        h.weft_ok(&["network", "connect", "two", "a"]);
        let done = h.killed_at_sendto(n, &["network", "disconnect", "two", "a"]);
        let gc = h.weft_ok(&["gc"]);
        assert_eq!(
            networks_of(&h, "a"),
            ["one"],
            "after kill at sendto {n}: {gc}"
        );
        assert_eq!(
            h.interfaces("a"),
            ["lo", "eth0"],
            "after kill at sendto {n}"
        );
        assert!(ports_of(&h, &bridge_of(&h, "two")).is_empty());
        // The network is free again.
        h.weft_ok(&["network", "rm", "two"]);
        h.weft_ok(&["network", "create", "two", "--subnet", "10.153.0.0/24"]);
        if done {
            assert!(n > 1, "strace never killed weft: is strace working?");
            return;
        }
    }
    panic!("disconnect never completed");
}

#[test]
fn a_deleted_bridge_is_made_again_with_its_ports_by_gc_and_by_the_next_run() {
    let h = Host::new("rbr");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.154.0.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let (a_ip, b_ip) = (h.ip_of("a", 0), h.ip_of("b", 0));
    let br = bridge_of(&h, "n");
    h.ns.ip(&["link", "del", &br]);
    assert!(!h.pings("a", "10.154.0.1"));
    let gc = h.weft_ok(&["gc"]);
    assert!(gc.contains("repaired network: n"), "{gc}");
    assert_eq!(ports_of(&h, &br).len(), 2, "both ports back on the bridge");
    assert!(h.pings("a", &b_ip), "sandbox to sandbox after gc");
    assert!(h.pings("a", "10.154.0.1"), "sandbox to gateway after gc");

    // Again; this time the next command on the network repairs it.
    h.ns.ip(&["link", "del", &br]);
    h.sleeper("c", &["--network", "n"]);
    assert_eq!(ports_of(&h, &br).len(), 3);
    assert!(h.pings("c", &a_ip), "new sandbox to an old one");
    assert!(h.pings("b", &a_ip), "old sandboxes to each other");
}

#[test]
fn a_deleted_veth_is_made_again_with_its_address_and_route() {
    let h = Host::new("rveth");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.155.0.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let b_ip = h.ip_of("b", 0);
    h.ns.ip(&["link", "del", &host_veth_of(&h, "a", 0)]);
    assert_eq!(h.interfaces("a"), ["lo"]);
    let gc = h.weft_ok(&["gc"]);
    assert!(gc.contains("repaired sandbox: a"), "{gc}");
    assert_eq!(h.interfaces("a"), ["lo", "eth0"]);
    assert!(h.pings("a", &b_ip));
    let routes = h.weft_ok(&["exec", "a", "--", "cat", "/proc/net/route"]);
    assert!(
        routes.lines().any(|l| l.starts_with("eth0\t00000000\t")),
        "default route back: {routes}"
    );
}

#[test]
fn a_detached_port_a_lost_address_and_a_lost_route_are_restored() {
    let h = Host::new("rport");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.156.0.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let b_ip = h.ip_of("b", 0);
    let br = bridge_of(&h, "n");
    h.ns.ip(&["link", "set", &host_veth_of(&h, "a", 0), "nomaster"]);
    assert!(!h.pings("a", &b_ip));
    h.weft_ok(&["gc"]);
    assert!(h.pings("a", &b_ip), "port attached again");

    h.ns.ip(&["addr", "flush", "dev", &br]);
    assert!(!h.pings("a", "10.156.0.1"));
    h.weft_ok(&["gc"]);
    assert!(h.pings("a", "10.156.0.1"), "gateway address back");

    h.ns.ip(&["route", "del", "10.156.0.0/24", "dev", &br]);
    assert!(!h.pings("a", "10.156.0.1"));
    h.weft_ok(&["gc"]);
    assert!(h.pings("a", "10.156.0.1"), "prefix route back");
    let routes = h.ns.ip(&["route", "show", "10.156.0.0/24"]);
    assert!(routes.contains(&br), "{routes}");
}

#[test]
fn sysctls_turned_back_are_set_again() {
    let h = Host::new("rsys");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.157.0.0/24"]);
    let br = bridge_of(&h, "n");
    let localnet = format!("/proc/sys/net/ipv4/conf/{br}/route_localnet");
    h.sh(&format!(
        "echo 0 > {localnet}; echo 0 > /proc/sys/net/ipv4/ip_forward"
    ));
    assert_eq!(h.sh(&format!("cat {localnet}")).trim(), "0");
    let gc = h.weft_ok(&["gc"]);
    assert!(gc.contains("repaired network: n"), "{gc}");
    assert_eq!(h.sh(&format!("cat {localnet}")).trim(), "1");
    assert_eq!(h.sh("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    // And by the next attach.
    h.sh("echo 0 > /proc/sys/net/ipv4/ip_forward");
    h.weft_ok(&["create", "--name", "x", "--network", "n"]);
    assert_eq!(h.sh("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    // The bridge's own settings, which an attach reads from the link's netlink message
    // rather than from their files: each one changed alone is seen and set back.
    for (i, (key, bad, good)) in [
        (localnet.clone(), "0", "1"),
        (
            format!("/proc/sys/net/ipv4/conf/{br}/send_redirects"),
            "1",
            "0",
        ),
        (
            format!("/proc/sys/net/ipv4/conf/{br}/accept_redirects"),
            "1",
            "0",
        ),
        (format!("/proc/sys/net/ipv6/conf/{br}/accept_ra"), "1", "0"),
        (format!("/proc/sys/net/ipv6/conf/{br}/autoconf"), "1", "0"),
        (
            format!("/proc/sys/net/ipv6/conf/{br}/accept_redirects"),
            "1",
            "0",
        ),
    ]
    .iter()
    .enumerate()
    {
        h.sh(&format!("echo {bad} > {key}"));
        assert_eq!(h.sh(&format!("cat {key}")).trim(), *bad);
        h.weft_ok(&["create", "--name", &format!("y{i}"), "--network", "n"]);
        assert_eq!(h.sh(&format!("cat {key}")).trim(), *good, "{key}");
    }
}

#[test]
fn a_second_state_dir_never_takes_the_first_ones_interfaces() {
    let h = Host::new("rinst");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.158.0.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let b_ip = h.ip_of("b", 0);
    let br = bridge_of(&h, "n");
    let other = h.dir.join("other");
    let out = common::run(h.ns.cmd(weft_bin(), &[]).args([
        "--state-dir",
        &other.join("state").display().to_string(),
        "--run-dir",
        &other.join("run").display().to_string(),
        "gc",
    ]));
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("deleted orphan"), "{said}");
    assert!(h.ns.ip(&["-o", "link", "show"]).contains(&br));
    assert_eq!(ports_of(&h, &br).len(), 2, "{said}");
    assert!(h.pings("a", &b_ip));
}
