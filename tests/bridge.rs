//! The bridge driver against the real kernel: reachability, isolation, internal networks,
//! icc=false and outbound NAT. Each test runs in namespaces it makes itself.

mod common;

use common::{Host, WithInternet};

#[test]
fn same_network_reaches_peer_and_gateway_other_network_reaches_neither() {
    let h = Host::new("br");
    h.weft_ok(&["network", "create", "blue"]);
    h.weft_ok(&["network", "create", "red"]);
    h.sleeper("a", &["--network", "blue"]);
    h.sleeper("b", &["--network", "blue"]);
    h.sleeper("c", &["--network", "red"]);
    let (a, b) = (h.ip_of("a", 0), h.ip_of("b", 0));
    let blue = h.json(&["network", "inspect", "blue"]);
    let gw = blue[0]["subnets"][0]["gateway"]
        .as_str()
        .unwrap()
        .to_string();

    assert!(h.pings("a", &b), "a cannot reach b on the same network");
    assert!(h.pings("b", &a), "b cannot reach a on the same network");
    assert!(h.pings("a", &gw), "a cannot reach its gateway");
    assert!(!h.pings("c", &a), "c on another network reached a");
    assert!(!h.pings("c", &b), "c on another network reached b");
    assert!(
        !h.pings("a", &h.ip_of("c", 0)),
        "a reached c on another network"
    );
}

#[test]
fn icc_false_blocks_sandbox_to_sandbox_but_not_the_gateway() {
    let h = Host::new("icc");
    h.weft_ok(&["network", "create", "quiet", "--opt", "icc=false"]);
    h.sleeper("a", &["--network", "quiet"]);
    h.sleeper("b", &["--network", "quiet"]);
    let gw = h.json(&["network", "inspect", "quiet"])[0]["subnets"][0]["gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(h.pings("a", &gw));
    assert!(!h.pings("a", &h.ip_of("b", 0)));
}

#[test]
fn masquerade_shows_the_host_address_to_the_outside() {
    let w = WithInternet::new("nat");
    let h = &w.host;
    h.weft_ok(&["network", "create", "out"]);
    h.sleeper("a", &["--network", "out"]);
    let mut server = w.serve("198.51.100.2:8080", 1);
    let reply = h
        .connect_from_sandbox("a", "198.51.100.2:8080")
        .expect("the server answers through NAT");
    assert!(
        reply.starts_with("peer=198.51.100.1:"),
        "server should see the host's address, saw {reply:?}"
    );
    let _ = server.wait();
}

#[test]
fn without_masquerade_the_outside_cannot_answer() {
    let w = WithInternet::new("nonat");
    let h = &w.host;
    h.weft_ok(&["network", "create", "plain", "--opt", "masquerade=false"]);
    h.sleeper("a", &["--network", "plain"]);
    let mut server = w.serve("198.51.100.2:8081", 1);
    let out = h.connect_from_sandbox("a", "198.51.100.2:8081");
    assert!(out.is_none(), "no NAT and no route back: connect must fail");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn internal_network_reaches_nothing_outside() {
    let w = WithInternet::new("int");
    let h = &w.host;
    h.weft_ok(&["network", "create", "closed", "--internal"]);
    h.weft_ok(&["network", "create", "open"]);
    h.sleeper("a", &["--network", "closed"]);
    h.sleeper("b", &["--network", "closed"]);
    h.sleeper("o", &["--network", "open"]);
    assert!(
        h.pings("a", &h.ip_of("b", 0)),
        "internal sandboxes still reach each other"
    );
    assert!(
        !h.pings("a", "198.51.100.2"),
        "internal network reached the outside"
    );
    assert!(
        !h.pings("a", &h.ip_of("o", 0)),
        "internal network reached another network"
    );
    assert!(
        h.pings("o", "198.51.100.2"),
        "the open network does reach the outside"
    );
}

#[test]
fn bridge_addresses_and_firewall_are_in_the_kernel() {
    let h = Host::new("kern");
    let id = h.weft_ok(&[
        "network",
        "create",
        "k",
        "--subnet",
        "10.123.0.0/24",
        "--bridge-name",
        "kbr0",
        "--mtu",
        "1400",
    ]);
    assert_eq!(id.trim().len(), 64);
    let link = h.ns.ip(&["-d", "link", "show", "kbr0"]);
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(link.contains("bridge"), "{link}");
    let addr = h.ns.ip(&["addr", "show", "kbr0"]);
    assert!(addr.contains("10.123.0.1/24"), "{addr}");
    assert_eq!(h.sh("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    let rules = h.sh("nft list table inet weft");
    assert!(rules.contains("kbr0"), "{rules}");
    assert!(rules.contains("10.123.0.0/24"), "{rules}");
    h.weft_ok(&["network", "rm", "k"]);
    let links = h.ns.ip(&["link", "show"]);
    assert!(!links.contains("kbr0"), "{links}");
    let rules = h.sh("nft list table inet weft");
    assert!(!rules.contains("kbr0"), "{rules}");
}

#[test]
fn gratuitous_arp_replaces_a_stale_neighbour_entry() {
    let h = Host::new("garp");
    h.weft_ok(&[
        "network",
        "create",
        "g",
        "--subnet",
        "10.124.0.0/24",
        "--bridge-name",
        "gbr0",
    ]);
    // A neighbour entry for .5 pointing at an old MAC, as left by a previous sandbox.
    h.ns.ip(&[
        "neigh",
        "replace",
        "10.124.0.5",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "gbr0",
        "nud",
        "stale",
    ]);
    h.sleeper("a", &["--network", "g", "--ip", "10.124.0.5"]);
    let mut seen = String::new();
    for _ in 0..200 {
        seen = h.ns.ip(&["neigh", "show", "10.124.0.5", "dev", "gbr0"]);
        if seen.contains("02:42:0a:7c:00:05") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        seen.contains("02:42:0a:7c:00:05"),
        "neighbour still stale: {seen}"
    );
}

/// What made every attach cost O(ports) is off: the bridge does no multicast snooping (which
/// re-armed query timers on every port whenever one started forwarding) and its ports have
/// no IPv6 of their own (no route per port in the host's table for every port change to
/// walk). Sandboxes still find each other over IPv6, whose neighbour discovery is multicast.
#[test]
fn ports_have_no_ipv6_and_the_bridge_does_not_snoop_yet_ipv6_neighbours_resolve() {
    let h = Host::new("brcost");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.166.0.0/24",
        "--subnet",
        "fd00:166::/64",
    ]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let br = h.json(&["network", "inspect", "n"])[0]["bridge"]
        .as_str()
        .unwrap()
        .to_string();
    let details = h.ns.ip(&["-d", "link", "show", &br]);
    assert!(details.contains("mcast_snooping 0"), "{details}");
    for sb in ["a", "b"] {
        let port = h.json(&["inspect", sb])[0]["networks"][0]["host_interface"]
            .as_str()
            .unwrap()
            .to_string();
        // One queue each way on both ends, as the kernel would cut a veth down to anyway,
        // but said at creation (cutting it waits for an RCU grace period per end).
        let port_link = h.ns.ip(&["-d", "link", "show", &port]);
        assert!(
            port_link.contains("numtxqueues 1 numrxqueues 1"),
            "{port_link}"
        );
        let inner = h.weft_ok(&["exec", sb, "--", "ip", "-d", "link", "show", "eth0"]);
        assert!(inner.contains("numtxqueues 1 numrxqueues 1"), "{inner}");
        let disabled = h.sh(&format!("cat /proc/sys/net/ipv6/conf/{port}/disable_ipv6"));
        assert_eq!(disabled.trim(), "1", "IPv6 on port {port}");
        let routes =
            h.ns.ip(&["-6", "route", "show", "table", "all", "dev", &port]);
        assert!(routes.trim().is_empty(), "routes of port {port}: {routes}");
    }
    let b6 = h.json(&["inspect", "b"])[0]["networks"][0]["ipv6"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(h.pings("a", &b6), "a cannot reach b over IPv6");
}

/// Host and sandbox learn each other's MAC from weft, not from ARP/ND (a broadcast the bridge
/// floods to every port, whose reply is lost beyond ~1,000 ports): each end holds a permanent
/// entry for the other, so they reach each other with neither answering ARP. Deleted, an
/// entry is written again by the repair; detach and rm take the host's entry away.
#[test]
fn host_and_sandbox_hold_permanent_entries_for_each_other_and_need_no_arp() {
    let h = Host::new("neigh");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.125.0.0/24",
        "--subnet",
        "fd00:125::/64",
        "--bridge-name",
        "nbr0",
    ]);
    h.sleeper("a", &["--network", "n", "--ip", "10.125.0.5"]);
    let (a_mac, br_mac) = ("02:42:0a:7d:00:05", "02:42:0a:7d:00:01");
    let v = h.json(&["inspect", "a"]);
    let a6 = v[0]["networks"][0]["ipv6"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let netns = v[0]["netns"].as_str().unwrap().to_string();
    let in_sandbox = |prog: &str, args: &[&str]| {
        let mut c = std::process::Command::new("nsenter");
        c.arg(format!("--net={netns}")).arg(prog).args(args);
        common::ok(&mut c)
    };
    let host_entry = |ip: &str| h.ns.ip(&["neigh", "show", ip, "dev", "nbr0"]);
    let gw_entry = |ip: &str| in_sandbox("ip", &["neigh", "show", ip, "dev", "eth0"]);
    let permanent = |seen: &str, mac: &str| seen.contains(mac) && seen.contains("PERMANENT");
    for (ip, mac) in [("10.125.0.5", a_mac), (a6.as_str(), a_mac)] {
        let seen = host_entry(ip);
        assert!(permanent(&seen, mac), "host entry for {ip}: {seen:?}");
    }
    for ip in ["10.125.0.1", "fd00:125::1"] {
        let seen = gw_entry(ip);
        assert!(permanent(&seen, br_mac), "sandbox entry for {ip}: {seen:?}");
    }
    // The sandbox cannot change its gateway's entry (no CAP_NET_ADMIN).
    let forged = h.weft(&[
        "exec",
        "a",
        "--",
        "ip",
        "neigh",
        "replace",
        "10.125.0.1",
        "lladdr",
        "02:00:00:00:00:66",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    assert!(
        !forged.status.success(),
        "the sandbox rewrote its gateway entry"
    );
    assert!(permanent(&gw_entry("10.125.0.1"), br_mac));

    // Neither end answers an ARP request any more: only the written entries carry traffic.
    h.sh("sysctl -qw net.ipv4.conf.nbr0.arp_ignore=8");
    in_sandbox("sysctl", &["-qw", "net.ipv4.conf.eth0.arp_ignore=8"]);
    assert!(
        h.pings("a", "10.125.0.1"),
        "no ping with the entries in place"
    );
    // Each entry is needed (the test would pass vacuously otherwise), and the repair writes
    // it again.
    h.ns.ip(&["neigh", "del", "10.125.0.5", "dev", "nbr0"]);
    assert!(
        !h.pings("a", "10.125.0.1"),
        "the host answered without its entry"
    );
    h.weft_ok(&["gc"]);
    assert!(permanent(&host_entry("10.125.0.5"), a_mac));
    assert!(
        h.pings("a", "10.125.0.1"),
        "no ping after the host entry's repair"
    );
    in_sandbox("ip", &["neigh", "del", "10.125.0.1", "dev", "eth0"]);
    assert!(
        !h.pings("a", "10.125.0.1"),
        "the sandbox reached its gateway without its entry"
    );
    h.weft_ok(&["gc"]);
    assert!(permanent(&gw_entry("10.125.0.1"), br_mac));
    assert!(
        h.pings("a", "10.125.0.1"),
        "no ping after the sandbox entry's repair"
    );

    // An entry someone else made is left as it is: gc only writes weft's own.
    h.ns.ip(&[
        "neigh",
        "replace",
        "10.125.0.77",
        "lladdr",
        "02:00:00:00:00:77",
        "dev",
        "nbr0",
        "nud",
        "permanent",
    ]);

    // Detach and rm take the host's entries away, and nothing else.
    h.weft_ok(&["network", "disconnect", "n", "a"]);
    assert_eq!(
        host_entry("10.125.0.5").trim(),
        "",
        "entry left after disconnect"
    );
    assert_eq!(host_entry(&a6).trim(), "", "entry left after disconnect");
    h.sleeper("b", &["--network", "n", "--ip", "10.125.0.6"]);
    assert!(permanent(&host_entry("10.125.0.6"), "02:42:0a:7d:00:06"));
    h.weft_ok(&["rm", "-f", "b"]);
    assert_eq!(host_entry("10.125.0.6").trim(), "", "entry left after rm");
    h.weft_ok(&["gc"]);
    assert!(permanent(&host_entry("10.125.0.77"), "02:00:00:00:00:77"));
}
