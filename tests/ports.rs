//! Published ports against the real kernel: DNAT through nftables maps from outside, from the
//! host, from sandboxes (hairpin), on loopback only, on one host address only, IPv6, ranges,
//! conflicts, the user chain, and cleanup after a crash. The "internet" namespace plays the
//! external clients.

mod common;

use std::time::Duration;

use common::{link, weft_bin, Host, Netns, WithInternet};

/// A sandbox running a TCP (and optionally UDP) answering server on `port`.
fn server(h: &Host, name: &str, port: u16, extra: &[&str]) {
    let script = format!(
        "{w} tool serve 0.0.0.0:{port} --count 50 --timeout 120 & {w} tool serve 0.0.0.0:{port} --udp --count 50 --timeout 120 & wait",
        w = weft_bin()
    );
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", &script]);
    h.weft_ok(&args);
    // Wait until it listens (from inside the sandbox itself).
    for _ in 0..100 {
        let out = h.weft(&[
            "exec",
            name,
            "--",
            weft_bin(),
            "tool",
            "connect",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "1",
        ]);
        if out.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server in {name} never listened on {port}");
}

/// `weft tool connect` from a namespace; the server's answer or None.
fn connect_from(ns: &Netns, addr: &str, udp: bool) -> Option<String> {
    let mut args = vec!["connect", addr, "--timeout", "2"];
    if udp {
        args.push("--udp");
    }
    let out = ns.tool(&args);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn outside_clients_reach_tcp_and_udp_and_are_seen_as_themselves() {
    let w = WithInternet::new("pout");
    let h = &w.host;
    h.weft_ok(&["network", "create", "n"]);
    server(
        h,
        "web",
        80,
        &["--network", "n", "-p", "8080:80", "-p", "5353:80/udp"],
    );
    let tcp =
        connect_from(&w.inet, "198.51.100.1:8080", false).expect("tcp through the published port");
    assert!(
        tcp.starts_with("peer=198.51.100.2:"),
        "the server must see the real client: {tcp}"
    );
    let udp =
        connect_from(&w.inet, "198.51.100.1:5353", true).expect("udp through the published port");
    assert!(udp.starts_with("peer=198.51.100.2:"), "{udp}");
    // The host reaches it through its own address too.
    let own = connect_from(&h.ns, "198.51.100.1:8080", false).expect("host to its own address");
    assert!(own.starts_with("peer="), "{own}");
    // inspect and `weft port` show the mappings.
    let ports = h.json(&["inspect", "web"])[0]["ports"].clone();
    assert_eq!(ports.as_array().unwrap().len(), 2, "{ports}");
    assert_eq!(ports[0]["host_port"], 8080);
    assert_eq!(ports[0]["container_port"], 80);
    assert_eq!(ports[0]["protocol"], "tcp");
    assert_eq!(ports[0]["host_ip"], "0.0.0.0");
    let listing = h.weft_ok(&["port", "web"]);
    assert!(listing.contains("80/tcp -> 0.0.0.0:8080"), "{listing}");
    assert!(listing.contains("80/udp -> 0.0.0.0:5353"), "{listing}");
}

#[test]
fn loopback_ports_serve_the_host_only() {
    let w = WithInternet::new("plo");
    let h = &w.host;
    h.weft_ok(&["network", "create", "n"]);
    server(
        h,
        "local",
        80,
        &["--network", "n", "-p", "127.0.0.1:8081:80"],
    );
    let got = connect_from(&h.ns, "127.0.0.1:8081", false).expect("host to 127.0.0.1");
    assert!(got.starts_with("peer="), "{got}");
    // An outside client that routes 127.0.0.1 at the host gets nothing.
    w.inet.ip(&["addr", "del", "127.0.0.1/8", "dev", "lo"]);
    common::ok(&mut w.inet.cmd(
        "sh",
        &["-c", "echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet"],
    ));
    w.inet
        .ip(&["route", "add", "127.0.0.1/32", "via", "198.51.100.1"]);
    assert_eq!(
        connect_from(&w.inet, "127.0.0.1:8081", false),
        None,
        "a loopback port was reachable from outside"
    );
    // Nor through the host's real address.
    assert_eq!(connect_from(&w.inet, "198.51.100.1:8081", false), None);
}

#[test]
fn a_port_on_one_host_address_is_not_on_the_others() {
    let w = WithInternet::new("pip");
    let h = &w.host;
    h.ns.ip(&["addr", "add", "198.51.100.3/24", "dev", "uplink"]);
    h.weft_ok(&["network", "create", "n"]);
    server(
        h,
        "one",
        80,
        &["--network", "n", "-p", "198.51.100.3:8082:80"],
    );
    assert!(connect_from(&w.inet, "198.51.100.3:8082", false).is_some());
    assert_eq!(connect_from(&w.inet, "198.51.100.1:8082", false), None);
}

#[test]
fn the_user_chain_filters_published_traffic_and_survives_gc() {
    let w = WithInternet::new("pusr");
    let h = &w.host;
    let other = Netns::new("pusro");
    link(
        &h.ns,
        "uplink2",
        "203.0.113.1/24",
        &other,
        "eth0",
        "203.0.113.2/24",
    );
    other.ip(&["route", "add", "default", "via", "203.0.113.1"]);
    h.weft_ok(&["network", "create", "n"]);
    server(h, "web", 80, &["--network", "n", "-p", "8090:80"]);
    assert!(connect_from(&other, "203.0.113.1:8090", false).is_some());
    // The README's example: keep one client subnet away from published ports.
    h.sh("nft add rule inet weft user ip saddr 203.0.113.0/24 ct status dnat drop");
    assert_eq!(connect_from(&other, "203.0.113.1:8090", false), None);
    assert!(
        connect_from(&w.inet, "198.51.100.1:8090", false).is_some(),
        "other clients still pass"
    );
    h.weft_ok(&["gc"]);
    h.weft_ok(&["network", "create", "m"]);
    assert!(
        h.sh("nft list chain inet weft user")
            .contains("203.0.113.0/24"),
        "weft touched the user chain"
    );
    assert_eq!(connect_from(&other, "203.0.113.1:8090", false), None);
}

#[test]
fn sandboxes_reach_published_ports_through_the_host_address_hairpin() {
    let w = WithInternet::new("phair");
    let h = &w.host;
    h.weft_ok(&["network", "create", "n"]);
    h.weft_ok(&["network", "create", "m"]);
    server(h, "web", 80, &["--network", "n", "-p", "8083:80"]);
    h.sleeper("sib", &["--network", "n"]);
    h.sleeper("far", &["--network", "m"]);
    assert!(
        h.connect_from_sandbox("web", "198.51.100.1:8083").is_some(),
        "a sandbox reaching its own published port"
    );
    assert!(
        h.connect_from_sandbox("sib", "198.51.100.1:8083").is_some(),
        "a sibling through the host address"
    );
    assert!(
        h.connect_from_sandbox("far", "198.51.100.1:8083").is_some(),
        "a sandbox of another network through the host address"
    );
}

#[test]
fn port_ranges_and_free_host_ports() {
    let w = WithInternet::new("prng");
    let h = &w.host;
    h.weft_ok(&["network", "create", "n"]);
    server(
        h,
        "r",
        9001,
        &["--network", "n", "-p", "9000-9002:9000-9002", "-p", "9001"],
    );
    assert!(connect_from(&w.inet, "198.51.100.1:9001", false).is_some());
    let ports = h.json(&["port", "r"]);
    assert_eq!(ports.as_array().unwrap().len(), 4, "{ports}");
    let free = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["host_port"].as_u64().unwrap() >= 32768)
        .unwrap_or_else(|| panic!("no ephemeral port chosen: {ports}"))["host_port"]
        .as_u64()
        .unwrap();
    assert!(connect_from(&w.inet, &format!("198.51.100.1:{free}"), false).is_some());
}

#[test]
fn ipv6_published_port() {
    let w = WithInternet::new("pv6");
    let h = &w.host;
    h.ns.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:1::1/64",
        "dev",
        "uplink",
        "nodad",
    ]);
    w.inet
        .ip(&["-6", "addr", "add", "fd00:1::2/64", "dev", "eth0", "nodad"]);
    h.weft_ok(&[
        "network",
        "create",
        "n6",
        "--ipv6",
        "--subnet",
        "10.160.0.0/24",
        "--subnet",
        "fd00:160::/64",
    ]);
    let script = format!("{} tool serve [::]:443 --count 5 --timeout 60", weft_bin());
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "s6",
        "--network",
        "n6",
        "-p",
        "8443:443",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let mut got = None;
    for _ in 0..50 {
        got = connect_from(&w.inet, "[fd00:1::1]:8443", false);
        if got.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = got.expect("IPv6 client through the published port");
    assert!(got.starts_with("peer=[fd00:1::2]:"), "{got}");
    let ports = h.json(&["port", "s6"]);
    assert_eq!(
        ports.as_array().unwrap().len(),
        2,
        "0.0.0.0 and :: : {ports}"
    );
}

#[test]
fn conflicts_are_refused_naming_the_holder() {
    let h = Host::new("pcon");
    h.weft_ok(&["network", "create", "n"]);
    h.sleeper("a", &["--network", "n", "-p", "8084:80"]);
    let err = h.weft_err(
        125,
        &[
            "run",
            "-d",
            "--name",
            "b",
            "--network",
            "n",
            "-p",
            "8084:81",
            "--",
            "sleep",
            "1",
        ],
    );
    assert!(err.contains("already published by sandbox \"a\""), "{err}");
    // A host process listening on the port.
    let mut listener =
        h.ns.cmd(
            weft_bin(),
            &["tool", "serve", "0.0.0.0:8085", "--timeout", "30"],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(listener.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let err = h.weft_err(
        125,
        &[
            "run",
            "-d",
            "--name",
            "c",
            "--network",
            "n",
            "-p",
            "8085:80",
            "--",
            "sleep",
            "1",
        ],
    );
    assert!(err.contains("in use on the host"), "{err}");
    assert!(err.contains(&format!("pid {}", listener.id())), "{err}");
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(
        h.json(&["ps", "-a"]).as_array().unwrap().len(),
        1,
        "refused runs leave nothing"
    );
}

#[test]
fn bad_port_specs_are_refused() {
    let h = Host::new("pbad");
    h.weft_ok(&["network", "create", "n"]);
    h.weft_ok(&["network", "create", "closed", "--internal"]);
    let err = h.weft_err(
        125,
        &[
            "create",
            "--name",
            "x",
            "--network",
            "closed",
            "-p",
            "8080:80",
        ],
    );
    assert!(err.contains("is internal"), "{err}");
    for (spec, needle) in [
        ("80:0", "out of range"),
        ("8080:70000", "70000"),
        ("90-80:90-80", "reversed"),
        ("9000-9001:80", "must be equal"),
        ("80/icmp", "unknown protocol"),
        ("192.0.2.77:8080:80", "not an address of this host"),
        ("[fd00::1]:8080:80", "no IPv6 address"),
        ("[::1]:8080:80", "::1 is not supported"),
    ] {
        let err = h.weft_err(
            125,
            &["create", "--name", "x", "--network", "n", "-p", spec],
        );
        assert!(err.contains(needle), "{spec}: {err}");
    }
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
}

/// Rules and sets of weft's table (every object with a handle), not counting elements.
fn rule_count(h: &Host) -> usize {
    h.sh("nft -a list table inet weft")
        .matches("# handle")
        .count()
}

#[test]
fn the_rule_set_does_not_grow_with_published_ports() {
    let h = Host::new("pcnt");
    h.weft_ok(&["network", "create", "n"]);
    h.weft_ok(&["create", "--name", "one", "--network", "n", "-p", "7000:80"]);
    let with_one = rule_count(&h);
    h.weft_ok(&[
        "create",
        "--name",
        "many",
        "--network",
        "n",
        "-p",
        "20000-20499:20000-20499",
    ]);
    assert_eq!(h.json(&["port", "many"]).as_array().unwrap().len(), 500);
    assert_eq!(
        rule_count(&h),
        with_one,
        "rules grew with 500 more published ports"
    );
    let map = h.sh("nft list map inet weft dnat4any");
    assert!(map.contains("tcp . 20499"), "{map}");
    h.weft_ok(&["rm", "many"]);
    let map = h.sh("nft list map inet weft dnat4any");
    assert!(!map.contains("20499") && map.contains("7000"), "{map}");
}

#[test]
fn kill_9_then_gc_leaves_no_mapping_and_frees_the_port() {
    let h = Host::new("pcrash");
    h.weft_ok(&["network", "create", "n"]);
    let mut step = 0;
    loop {
        let args = ["create", "--name", "c", "--network", "n", "-p", "8086:80"];
        if h.run_crash(step, &args) {
            break;
        }
        h.weft_ok(&["gc"]);
        let map = h.sh("nft list map inet weft dnat4any 2>/dev/null || true");
        assert!(
            !map.contains("8086"),
            "mapping left after crash at op {step}: {map}"
        );
        step += 1;
        assert!(step < 30);
    }
    // The finished one works; after a kill -9 of everything and gc its port is free again.
    assert!(h.sh("nft list map inet weft dnat4any").contains("8086"));
    h.weft_ok(&["rm", "c"]);
    h.weft_ok(&["create", "--name", "d", "--network", "n", "-p", "8086:80"]);
}

/// Starts `weft tool serve ADDR` in the host namespace (a host process holding a port);
/// returns the child once it listens.
fn host_listener(h: &Host, addr: &str) -> std::process::Child {
    common::serve_in(&h.ns, addr, 1)
}

#[test]
fn the_last_port_65535_publishes_and_is_reachable() {
    let w = WithInternet::new("ptop");
    let h = &w.host;
    h.weft_ok(&["network", "create", "n"]);
    server(h, "top", 80, &["--network", "n", "-p", "65535:80"]);
    let got = connect_from(&w.inet, "198.51.100.1:65535", false).expect("port 65535");
    assert!(got.starts_with("peer=198.51.100.2:"), "{got}");
    let ports = h.json(&["port", "top"]);
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
    assert_eq!(ports[0]["host_port"], 65535);
}

#[test]
fn a_range_up_to_65535_is_checked_against_host_listeners() {
    let h = Host::new("ptopl");
    h.weft_ok(&["network", "create", "n"]);
    let mut listener = host_listener(&h, "0.0.0.0:65100");
    let err = h.weft_err(
        125,
        &[
            "create",
            "--name",
            "wide",
            "--network",
            "n",
            "-p",
            "65000-65535:65000-65535",
        ],
    );
    let _ = listener.kill();
    let _ = listener.wait();
    assert!(
        err.contains("port 65100/tcp is in use on the host"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", listener.id())), "{err}");
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
    let map = h.sh("nft list map inet weft dnat4any 2>/dev/null || true");
    assert!(!map.contains("65000"), "{map}");
}

#[test]
fn overlapping_ranges_at_the_top_are_refused_naming_the_holder() {
    let h = Host::new("ptopo");
    h.weft_ok(&["network", "create", "n"]);
    h.weft_ok(&[
        "create",
        "--name",
        "a",
        "--network",
        "n",
        "-p",
        "65500-65535:65500-65535",
    ]);
    for (spec, port) in [
        ("65535:80", 65535),
        ("65400-65500:7000-7100", 65500),
        ("65530-65535:65530-65535/tcp", 65530),
    ] {
        let err = h.weft_err(
            125,
            &["create", "--name", "b", "--network", "n", "-p", spec],
        );
        assert!(
            err.contains(&format!(
                "port {port}/tcp on 0.0.0.0 is already published by sandbox \"a\""
            )),
            "{spec}: {err}"
        );
        assert!(!err.contains("UNIQUE"), "{spec}: {err}");
    }
    // UDP is another port space.
    h.weft_ok(&[
        "create",
        "--name",
        "c",
        "--network",
        "n",
        "-p",
        "65535:80/udp",
    ]);
    assert_eq!(h.json(&["ps", "-a"]).as_array().unwrap().len(), 2);
}

/// Elements of one of weft's published-port maps, as `nft` reads them back.
fn map_elements(h: &Host, map: &str, proto: &str) -> usize {
    h.sh(&format!("nft list map inet weft {map}"))
        .matches(&format!("{proto} . "))
        .count()
}

#[test]
fn ten_thousand_ports_publish_in_one_transaction_and_unpublish() {
    let h = Host::new("p10k");
    h.weft_ok(&["network", "create", "n"]);
    h.weft_ok(&[
        "create",
        "--name",
        "keep",
        "--network",
        "n",
        "-p",
        "7000:80",
    ]);
    h.weft_ok(&[
        "create",
        "--name",
        "many",
        "--network",
        "n",
        "-p",
        "20000-29999:20000-29999",
    ]);
    assert_eq!(h.json(&["port", "many"]).as_array().unwrap().len(), 10_000);
    assert_eq!(map_elements(&h, "dnat4any", "tcp"), 10_001);
    let map = h.sh("nft list map inet weft dnat4any");
    for port in [20000, 21820, 29999] {
        assert!(map.contains(&format!("tcp . {port} : ")), "{port} missing");
    }
    h.weft_ok(&["rm", "many"]);
    assert_eq!(
        map_elements(&h, "dnat4any", "tcp"),
        1,
        "only keep's port is left"
    );
    // The ports are free again.
    h.weft_ok(&[
        "create",
        "--name",
        "again",
        "--network",
        "n",
        "-p",
        "29990-29999:29990-29999",
    ]);
}
