//! weft's firewall as a level-triggered whole: repaired after `nft flush ruleset` and finer
//! damage by the next command that needs it or by `weft gc`; owned by one state directory;
//! no router for others when weft turned forwarding on; other tables' forward drops
//! reported with the fix.

mod common;

use std::time::Duration;

use common::frames::{self, mac};
use common::{link, serve_in, weft_bin, Host, Netns, WithInternet};

/// The sandboxes and expectations every repair scenario checks.
struct Scene {
    w: WithInternet,
    host_udp: std::process::Child,
}

impl Scene {
    /// Networks a (a1, a2, web with port 8090) and b (b1), and a UDP service on the host's
    /// 127.0.0.1 that no sandbox may reach.
    fn new(prefix: &str) -> Scene {
        let w = WithInternet::new(prefix);
        let h = &w.host;
        h.weft_ok(&["network", "create", "a", "--subnet", "10.150.0.0/24"]);
        h.weft_ok(&["network", "create", "b", "--subnet", "10.151.0.0/24"]);
        h.sleeper("a1", &["--network", "a"]);
        h.sleeper("a2", &["--network", "a"]);
        h.sleeper("b1", &["--network", "b"]);
        let script = format!(
            "{} tool serve 0.0.0.0:80 --count 50 --timeout 120",
            weft_bin()
        );
        h.weft_ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "a",
            "-p",
            "8090:80",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        let host_udp =
            h.ns.cmd(
                weft_bin(),
                &[
                    "tool",
                    "serve",
                    "127.0.0.1:9999",
                    "--udp",
                    "--count",
                    "50",
                    "--timeout",
                    "120",
                ],
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Scene { w, host_udp }
    }

    fn host(&self) -> &Host {
        &self.w.host
    }

    /// Isolation between the networks, masquerade, the published port, the port guard and
    /// the host's loopback services, all as before the damage.
    fn assert_intact(&self, when: &str) {
        let h = self.host();
        let (a1, a2) = (h.ip_of("a1", 0), h.ip_of("a2", 0));
        assert!(h.pings("a1", &a2), "{when}: a1 cannot reach a2");
        assert!(
            !h.pings("b1", &a1),
            "{when}: b1 reached a1 on another network"
        );
        let mut server = self.w.serve("198.51.100.2:7000", 1);
        let got = h.connect_from_sandbox("a1", "198.51.100.2:7000");
        let _ = server.kill();
        let _ = server.wait();
        assert!(
            got.as_deref()
                .is_some_and(|g| g.starts_with("peer=198.51.100.1:")),
            "{when}: no masquerade: {got:?}"
        );
        let mut published = None;
        for _ in 0..30 {
            let out = self
                .w
                .inet
                .tool(&["connect", "198.51.100.1:8090", "--timeout", "1"]);
            if out.status.success() {
                published = Some(String::from_utf8_lossy(&out.stdout).to_string());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            published.is_some(),
            "{when}: the published port is unreachable"
        );
        // The guard: a1 may not send as a2; and nothing reaches the host's 127.0.0.1 through
        // the bridge (route_localnet=1 is on for the host's own published ports).
        let (a1mac, a2mac) = (mac(&h.mac_of("a1", 0)), mac(&h.mac_of("a2", 0)));
        let brmac = mac(&gateway_mac(h, "a"));
        let sniff_a2 = h.sniff("a2", "eth0", &[b"weft-own", b"weft-as-peer"], 2);
        let sniff_a1 = h.sniff("a1", "eth0", &[b"peer=10.150.0."], 2);
        h.send_frames(
            "a1",
            "eth0",
            &[
                frames::eth(
                    a2mac,
                    a1mac,
                    0x0800,
                    &frames::udp4(a1.parse().unwrap(), a2.parse().unwrap(), 1, 2, b"weft-own"),
                ),
                frames::eth(
                    a2mac,
                    a1mac,
                    0x0800,
                    &frames::udp4(
                        h.ip_of("web", 0).parse().unwrap(),
                        a2.parse().unwrap(),
                        1,
                        2,
                        b"weft-as-peer",
                    ),
                ),
                frames::eth(
                    brmac,
                    a1mac,
                    0x0800,
                    &frames::udp4(
                        a1.parse().unwrap(),
                        "127.0.0.1".parse().unwrap(),
                        5555,
                        9999,
                        b"hello",
                    ),
                ),
            ],
        );
        let guard = sniff_a2.counts();
        assert!(
            guard[0] > 0 && guard[1] == 0,
            "{when}: port guard: {guard:?}"
        );
        assert_eq!(
            sniff_a1.counts(),
            [0],
            "{when}: a sandbox reached the host's 127.0.0.1"
        );
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = self.host_udp.kill();
        let _ = self.host_udp.wait();
    }
}

fn gateway_mac(h: &Host, net: &str) -> String {
    let br = h.json(&["network", "inspect", net])[0]["bridge"]
        .as_str()
        .unwrap()
        .to_string();
    let link = h.ns.ip(&["link", "show", &br]);
    link.split("link/ether ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// What `weft gc` repaired in the firewall.
fn gc_repairs(h: &Host) -> Vec<String> {
    let v = h.json(&["gc"]);
    v["firewall_repaired"]
        .as_array()
        .unwrap_or_else(|| panic!("no firewall report in {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn network_create_after_a_ruleset_flush_restores_everything() {
    let s = Scene::new("fwnc");
    s.assert_intact("before");
    s.host().sh("nft flush ruleset");
    s.host()
        .weft_ok(&["network", "create", "c", "--subnet", "10.152.0.0/24"]);
    s.assert_intact("after network create");
    assert_eq!(gc_repairs(s.host()), Vec::<String>::new());
}

#[test]
fn run_with_ports_after_a_ruleset_flush_works_and_restores_everything() {
    let s = Scene::new("fwrun");
    s.host().sh("nft flush ruleset");
    let script = format!(
        "{} tool serve 0.0.0.0:80 --count 5 --timeout 60",
        weft_bin()
    );
    s.host().weft_ok(&[
        "run",
        "-d",
        "--name",
        "x",
        "--network",
        "a",
        "-p",
        "8091:80",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let mut got = None;
    for _ in 0..30 {
        let out =
            s.w.inet
                .tool(&["connect", "198.51.100.1:8091", "--timeout", "1"]);
        if out.status.success() {
            got = Some(());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(got.is_some(), "the new published port does not work");
    s.assert_intact("after run -p");
    assert_eq!(gc_repairs(s.host()), Vec::<String>::new());
}

#[test]
fn gc_after_a_ruleset_flush_restores_everything_and_says_so() {
    let s = Scene::new("fwgc");
    s.host().sh("nft flush ruleset");
    let repaired = gc_repairs(s.host());
    assert!(
        repaired.iter().any(|r| r == "table inet weft is missing")
            && repaired.iter().any(|r| r == "table bridge weft is missing"),
        "{repaired:?}"
    );
    s.assert_intact("after gc");
    assert_eq!(gc_repairs(s.host()), Vec::<String>::new());
}

#[test]
fn finer_damage_is_detected_and_repaired_by_gc() {
    let s = Scene::new("fwdmg");
    let h = s.host();
    h.sh("nft add rule inet weft user iifname \"eth9\" accept");
    let handle = |chain: &str, needle: &str| {
        let listing = h.sh(&format!("nft -a list chain inet weft {chain}"));
        listing
            .lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.rsplit("handle ").next())
            .unwrap_or_else(|| panic!("no {needle:?} in {listing}"))
            .trim()
            .to_string()
    };
    // 9 rules, 11 when weft turned forwarding on (as in a fresh test namespace).
    let n = h
        .sh("nft -a list chain inet weft forward")
        .lines()
        .filter(|l| l.contains("# handle") && !l.contains("chain forward"))
        .count();
    let (all, one_gone, one_more) = (
        format!("chain inet weft forward: 0 of {n}"),
        format!("chain inet weft forward: {} of {n}", n - 1),
        format!(
            "chain inet weft forward: {n} of {n} rules in place, {} found",
            n + 1
        ),
    );
    let cases: Vec<(String, &str)> = vec![
        ("nft flush chain inet weft forward".into(), &all),
        (
            // (the handle is looked up when it is this case's turn)
            "nft delete rule inet weft forward handle {internal}".into(),
            &one_gone,
        ),
        ("nft insert rule inet weft forward accept".into(), &one_more),
        (
            "nft flush set inet weft bridges".into(),
            "set inet weft bridges: 2 elements missing",
        ),
        (
            "nft flush set bridge weft src4".into(),
            "set bridge weft src4: 4 elements missing",
        ),
        (
            "nft flush chain bridge weft prerouting".into(),
            "chain bridge weft prerouting",
        ),
        (
            "nft delete element inet weft dnat4any { tcp . 8090 }".into(),
            "set inet weft dnat4any: 1 elements missing",
        ),
        (
            "nft add element inet weft bridges { \"evil0\" }".into(),
            "set inet weft bridges: 0 elements missing, 1 unexpected",
        ),
    ];
    for (cmd, want) in cases {
        let cmd = cmd.replace("{internal}", &handle("forward", "@internal drop"));
        h.sh(&cmd);
        let repaired = gc_repairs(h);
        assert!(
            repaired.iter().any(|r| r.contains(want)),
            "{cmd}: wanted {want:?}, got {repaired:?}"
        );
        assert_eq!(gc_repairs(h), Vec::<String>::new(), "{cmd}: not repaired");
    }
    assert!(
        h.sh("nft list chain inet weft user").contains("eth9"),
        "the user chain was touched"
    );
    s.assert_intact("after the repairs");
}

#[test]
fn a_second_state_directory_is_refused_and_the_first_keeps_working() {
    let h = Host::new("owner");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.153.0.0/24"]);
    h.weft_ok(&["network", "create", "m", "--subnet", "10.154.0.0/24"]);
    h.sleeper("a1", &["--network", "n"]);
    h.sleeper("a2", &["--network", "n"]);
    h.sleeper("b1", &["--network", "m"]);
    let other = h.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("weft.toml"), "agent = false\n").unwrap();
    let second = |args: &[&str]| {
        let mut c = h.ns.cmd(weft_bin(), &[]);
        c.arg("--state-dir")
            .arg(other.join("state"))
            .arg("--run-dir")
            .arg(other.join("run"))
            .arg("--config")
            .arg(other.join("weft.toml"))
            .args(args);
        common::run(&mut c)
    };
    let out = second(&["network", "create", "x", "--subnet", "10.155.0.0/24"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let first = h.state_dir().display().to_string();
    assert!(
        err.contains("belongs to another weft instance") && err.contains(&first),
        "{err}"
    );
    // Nothing of it was made, and its gc (it has no networks) leaves the first's alone.
    assert!(!h.ns.ip(&["link", "show"]).contains("10.155"));
    let out = second(&["gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = h.sh("nft list table inet weft");
    assert!(
        table.contains("comment \"weft:") && table.contains(&first),
        "{table}"
    );
    assert!(h.pings("a1", &h.ip_of("a2", 0)));
    assert!(!h.pings("b1", &h.ip_of("a1", 0)));
    assert_eq!(gc_repairs(&h), Vec::<String>::new());
}

/// A client on a LAN behind the host, and a server on the "internet", IPv4 and IPv6; the
/// host's firewall is weft's alone.
struct Router {
    w: WithInternet,
    lan: Netns,
}

impl Router {
    fn new(prefix: &str) -> Router {
        let w = WithInternet::new(prefix);
        let lan = Netns::new(&format!("{prefix}l"));
        link(
            &w.host.ns,
            "lan0",
            "10.99.0.1/24",
            &lan,
            "eth0",
            "10.99.0.2/24",
        );
        lan.ip(&["route", "add", "default", "via", "10.99.0.1"]);
        w.inet
            .ip(&["route", "add", "10.99.0.0/24", "via", "198.51.100.1"]);
        w.host
            .ns
            .ip(&["-6", "addr", "add", "fd00:99::1/64", "dev", "lan0", "nodad"]);
        lan.ip(&["-6", "addr", "add", "fd00:99::2/64", "dev", "eth0", "nodad"]);
        lan.ip(&["-6", "route", "add", "default", "via", "fd00:99::1"]);
        w.host.ns.ip(&[
            "-6",
            "addr",
            "add",
            "fd00:51::1/64",
            "dev",
            "uplink",
            "nodad",
        ]);
        w.inet
            .ip(&["-6", "addr", "add", "fd00:51::2/64", "dev", "eth0", "nodad"]);
        w.inet
            .ip(&["-6", "route", "add", "fd00:99::/64", "via", "fd00:51::1"]);
        Router { w, lan }
    }

    /// Whether the LAN client reaches the internet server, per family.
    fn forwards(&self) -> (bool, bool) {
        let mut server = serve_in(&self.w.inet, "[::]:9000", 2);
        let ok = |addr: &str| {
            self.lan
                .tool(&["connect", addr, "--timeout", "2"])
                .status
                .success()
        };
        let got = (ok("198.51.100.2:9000"), ok("[fd00:51::2]:9000"));
        let _ = server.kill();
        let _ = server.wait();
        got
    }

    fn forwarding(&self) -> (String, String) {
        let h = &self.w.host;
        (
            h.sh("cat /proc/sys/net/ipv4/ip_forward").trim().to_string(),
            h.sh("cat /proc/sys/net/ipv6/conf/all/forwarding")
                .trim()
                .to_string(),
        )
    }
}

#[test]
fn weft_turning_forwarding_on_does_not_make_the_host_a_router() {
    let r = Router::new("fwd");
    let h = &r.w.host;
    // A new namespace inherits IPv4 forwarding from the machine's: start from a host that
    // does not route, whatever the machine running the tests does.
    h.sh("echo 0 > /proc/sys/net/ipv4/ip_forward; echo 0 > /proc/sys/net/ipv6/conf/all/forwarding");
    assert_eq!(r.forwarding(), ("0".into(), "0".into()));
    assert_eq!(r.forwards(), (false, false), "the host routes before weft");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.156.0.0/24",
        "--subnet",
        "fd00:156::/64",
    ]);
    assert_eq!(r.forwarding(), ("1".into(), "1".into()));
    assert_eq!(r.forwards(), (false, false), "weft made the host a router");
    // Sandboxes still reach out, and the LAN reaches published ports.
    h.sleeper("s", &["--network", "n"]);
    let mut server = serve_in(&r.w.inet, "[::]:9001", 2);
    assert!(h.connect_from_sandbox("s", "198.51.100.2:9001").is_some());
    let _ = server.kill();
    let _ = server.wait();
    // Hosts that route on purpose say so.
    h.config("ip_forward_no_drop = true\n");
    assert!(!gc_repairs(h).is_empty());
    assert_eq!(r.forwards(), (true, true));
}

#[test]
fn forwarding_that_was_already_on_gets_no_drop() {
    let r = Router::new("fwdon");
    let h = &r.w.host;
    h.sh("echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding");
    // IPv6 forwarding takes a moment to carry its first packets once turned on.
    let mut before = (false, false);
    for _ in 0..5 {
        before = r.forwards();
        if before == (true, true) {
            break;
        }
    }
    assert_eq!(before, (true, true), "the host does not route before weft");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.157.0.0/24",
        "--subnet",
        "fd00:157::/64",
    ]);
    assert_eq!(r.forwards(), (true, true), "weft broke the host's routing");
    let chain = h.sh("nft list chain inet weft forward");
    assert!(!chain.contains("meta nfproto ipv4 drop"), "{chain}");
}

#[test]
fn a_foreign_forward_drop_is_reported_with_the_fix() {
    let h = Host::new("fdrop");
    h.sh("nft add table inet fw; nft add chain inet fw forward '{ type filter hook forward priority 0; policy drop; }'");
    let out = h.weft(&["network", "create", "n", "--subnet", "10.158.0.0/24"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let br = h.json(&["network", "inspect", "n"])[0]["bridge"]
        .as_str()
        .unwrap()
        .to_string();
    let fixes = [
        format!("nft insert rule inet fw forward iifname \"{br}\" accept"),
        format!("nft insert rule inet fw forward oifname \"{br}\" accept"),
    ];
    assert!(err.contains("`inet fw forward`"), "{err}");
    for f in &fixes {
        assert!(err.contains(f.as_str()), "{f} missing in {err}");
    }
    let out = h.weft(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "n",
        "--",
        "sleep",
        "600",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("`inet fw forward`") && err.contains(&fixes[0]),
        "{err}"
    );
    // The drop is real: sandboxes do not reach each other.
    let out = h.weft(&[
        "run",
        "-d",
        "--name",
        "t",
        "--network",
        "n",
        "--",
        "sleep",
        "600",
    ]);
    assert!(out.status.success());
    assert!(!h.pings("s", &h.ip_of("t", 0)));
    // Following the advice silences it, and the sandboxes talk.
    for f in &fixes {
        h.sh(f);
    }
    let out = h.weft(&["create", "--name", "u", "--network", "n"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(h.pings("s", &h.ip_of("t", 0)));
}

#[test]
fn without_a_foreign_forward_drop_nothing_is_reported() {
    let h = Host::new("nodrop");
    h.sh("nft add table inet fw; nft add chain inet fw forward '{ type filter hook forward priority 0; policy accept; }'");
    let out = h.weft(&["network", "create", "n", "--subnet", "10.159.0.0/24"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let out = h.weft(&["create", "--name", "s", "--network", "n"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn removing_a_sandbox_unpublishes_even_when_the_guard_table_is_gone() {
    let h = Host::new("fwrm");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.160.0.0/24"]);
    h.weft_ok(&["create", "--name", "s", "--network", "n", "-p", "8092:80"]);
    assert!(h.sh("nft list map inet weft dnat4any").contains("8092"));
    h.sh("nft delete table bridge weft");
    h.weft_ok(&["rm", "s"]);
    let map = h.sh("nft list map inet weft dnat4any");
    assert!(!map.contains("8092"), "{map}");
}

/// Waits (up to 20 s) until `cond` holds, polling every 20 ms.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting until {what}");
}

#[test]
fn a_repair_during_a_disconnect_brings_none_of_its_elements_back() {
    let h = Host::new("fwdisc");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.166.0.0/24"]);
    h.weft_ok(&["network", "create", "m", "--subnet", "10.167.0.0/24"]);
    h.sleeper("s", &["--network", "n", "--network", "m"]);
    let addr = h.ip_of("s", 0);
    let port = h.json(&["inspect", "s"])[0]["networks"][0]["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    let holds = |set: &str, what: &str| h.sh(&format!("nft list set {set}")).contains(what);
    // The disconnect pauses right after taking its elements away, before it forgets the
    // endpoint: gc's repair runs in between.
    let mut disconnect = h
        .weft_cmd(&["network", "disconnect", "n", "s"])
        .env("WEFT_TEST_SLOW_OP", "remove nftables elements")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the disconnect removed its elements", || {
        !holds("bridge weft src4", &addr)
    });
    let repaired = gc_repairs(&h);
    assert!(
        disconnect.try_wait().unwrap().is_none(),
        "the disconnect finished before gc ran: the test did not test anything"
    );
    let out = disconnect.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for set in ["bridge weft src4", "bridge weft ports", "inet weft ports"] {
        assert!(
            !holds(set, &addr) && !holds(set, &port),
            "{set}: stale element"
        );
    }
    assert_eq!(gc_repairs(&h), Vec::<String>::new());
    assert!(h.pings("s", "10.167.0.1"));
    // (The elements of the endpoint being disconnected were no drift to gc either.)
    assert_eq!(repaired, Vec::<String>::new());
}

#[test]
fn a_repair_during_a_failed_create_leaves_nothing_and_the_port_can_be_published_again() {
    let h = Host::new("fwfail");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.168.0.0/24"]);
    let published = || h.sh("nft list map inet weft dnat4any").contains("8095");
    // The create fails after its elements are in (making its veth; it pauses there), and
    // pauses again once its rollback took them away, before it forgets the record: gc's
    // repair runs in between.
    let mut create = h
        .weft_cmd(&["create", "--name", "x", "--network", "n", "-p", "8095:80"])
        .env("WEFT_TEST_FAIL_OP", "create veth")
        .env("WEFT_TEST_SLOW_OP", "create veth|remove nftables elements")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the create published its port", published);
    wait_until("the rollback took it away", || !published());
    let repaired = gc_repairs(&h);
    assert!(
        create.try_wait().unwrap().is_none(),
        "the create finished before gc ran: the test did not test anything"
    );
    let out = create.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("failed on purpose"),
        "{err}"
    );
    assert!(!published(), "a stale published port");
    assert_eq!(
        h.sh("nft list set bridge weft src4")
            .matches("10.168.0.")
            .count(),
        0
    );
    assert_eq!(gc_repairs(&h), Vec::<String>::new());
    h.weft_ok(&["create", "--name", "y", "--network", "n", "-p", "8095:80"]);
    assert!(published());
    // (The elements of the create being rolled back were no drift to gc either.)
    assert_eq!(repaired, Vec::<String>::new());
}

/// `weft ARGS` of a second state directory (in `h`'s directory, agent off) in `h`'s namespace.
fn second_instance(h: &Host, args: &[&str]) -> std::process::Output {
    let other = h.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("weft.toml"), "agent = false\n").unwrap();
    let mut c = h.ns.cmd(weft_bin(), &[]);
    c.arg("--state-dir")
        .arg(other.join("state"))
        .arg("--run-dir")
        .arg(other.join("run"))
        .arg("--config")
        .arg(other.join("weft.toml"))
        .args(args);
    common::run(&mut c)
}

#[test]
fn after_a_ruleset_flush_only_the_instance_whose_interfaces_are_here_rebuilds() {
    let h = Host::new("fwown2");
    let first = |args: &[&str]| h.weft(args);
    let second = |args: &[&str]| second_instance(&h, args);
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let refused = |out: std::process::Output, names: &[&str]| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("interfaces of another weft instance"), "{err}");
        for n in names {
            assert!(err.contains(n), "{n} not named: {err}");
        }
    };
    let bridge = |inspect: serde_json::Value| inspect[0]["bridge"].as_str().unwrap().to_string();
    // The first instance's network and sandbox; the rule set flushed.
    ok(first(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.169.0.0/24",
    ]));
    h.sleeper("a1", &["--network", "n"]);
    h.sleeper("a2", &["--network", "n"]);
    let br = bridge(h.json(&["network", "inspect", "n"]));
    h.sh("nft flush ruleset");
    // The second cannot take the tables: it is refused, naming the first's interfaces.
    refused(
        second(&["network", "create", "x", "--subnet", "10.170.0.0/24"]),
        &[&br],
    );
    assert!(
        !h.sh("nft list tables").contains("weft"),
        "tables were made"
    );
    // The first rebuilds, and its sandboxes talk.
    assert!(!gc_repairs(&h).is_empty());
    assert!(h
        .sh("nft list table inet weft")
        .contains(&h.state_dir().display().to_string()));
    assert!(h.pings("a1", &h.ip_of("a2", 0)));
    // The other way round: the first gone, the second's network and sandbox, a flush.
    for s in ["a1", "a2"] {
        ok(first(&["rm", "-f", s]));
    }
    ok(first(&["network", "rm", "n"]));
    h.sh("nft flush ruleset");
    ok(second(&[
        "network",
        "create",
        "x",
        "--subnet",
        "10.170.0.0/24",
    ]));
    let out = second(&["--format", "json", "network", "inspect", "x"]);
    let br2 = bridge(serde_json::from_slice(&out.stdout).unwrap());
    h.sh("nft flush ruleset");
    refused(
        first(&["network", "create", "n", "--subnet", "10.169.0.0/24"]),
        &[&br2],
    );
    assert!(
        !h.sh("nft list tables").contains("weft"),
        "tables were made"
    );
    ok(second(&["gc"]));
    assert!(h.sh("nft list table inet weft").contains("other"));
    ok(second(&["network", "rm", "x"]));
}
