//! A Linux bridge holds at most 1,023 ports. The attach that would be a network's 1,024th
//! port is refused with a message that says so — by weft's own count before anything is
//! allocated or made, and by the kernel (`EXFULL`) when ports weft does not know fill the
//! bridge first — and leaves nothing behind: no record, namespace, link, firewall element,
//! address or moved address cursor.

mod common;

use common::{root_or_skip, Host};

/// The kernel's limit on a bridge's ports.
const MAX_PORTS: usize = 1023;

/// The host's links that are neither `lo` nor the test's own (`keep`), by name.
fn links_besides(h: &Host, keep: &[&str]) -> Vec<String> {
    h.ns.ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != "lo" && !keep.contains(&n.as_str()))
        .filter(|n| !is_filler(n))
        .collect()
}

/// Whether `name` is one of the veth pairs [`fill`] made (`fN` on the bridge, `gN` its peer).
fn is_filler(name: &str) -> bool {
    name.strip_prefix('f')
        .or_else(|| name.strip_prefix('g'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Makes `bridge` hold `ports` ports in all, adding veth pairs `fN`/`gN` made by the test
/// itself (ports weft knows nothing of), in one `ip -batch`.
fn fill(h: &Host, bridge: &str, ports: usize) {
    let have = ports_of(h, bridge);
    let mut batch = String::new();
    for i in have..ports {
        batch.push_str(&format!(
            "link add f{i} type veth peer name g{i}\nlink set f{i} master {bridge}\n"
        ));
    }
    let file = h.dir.join("fill.batch");
    std::fs::write(&file, batch).unwrap();
    h.ns.ip(&["-batch", &file.display().to_string()]);
    assert_eq!(ports_of(h, bridge), ports);
}

/// Number of ports of `bridge`.
fn ports_of(h: &Host, bridge: &str) -> usize {
    h.ns.ip(&["-o", "link", "show", "master", bridge])
        .lines()
        .count()
}

/// The host's whole nftables ruleset (sets with their elements).
fn ruleset(h: &Host) -> String {
    common::ok(&mut h.ns.cmd("nft", &["list", "ruleset"]))
}

/// Sandbox names in `weft ps -a`.
fn sandboxes(h: &Host) -> Vec<String> {
    h.json(&["ps", "-a"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Files under the run directory's `netns/`.
fn netns_files(h: &Host) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(h.run_dir().join("netns"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The kernel's refusal, as weft says it (after the operation that met it).
const KERNEL_FULL: &str = "on plbr <-> eth0: bridge plbr has no free port (the kernel's limit is 1023 ports); remove ports from it that are not weft's, or create another network and connect the sandbox to it\n";

#[test]
fn a_bridge_filled_by_others_refuses_create_run_and_connect_and_keeps_nothing() {
    if !root_or_skip("a_bridge_filled_by_others_refuses_create_run_and_connect_and_keeps_nothing") {
        return;
    }
    let h = Host::new("plk");
    let net = |name: &str, subnet: &str, bridge: &str| {
        h.weft_ok(&[
            "network",
            "create",
            name,
            "--subnet",
            subnet,
            "--bridge-name",
            bridge,
        ]);
    };
    net("n", "10.152.0.0/24", "plbr");
    net("m", "10.153.0.0/24", "plbr2");
    h.weft_ok(&["create", "--name", "x", "--network", "m"]);
    fill(&h, "plbr", MAX_PORTS);
    let before = ruleset(&h);

    let err = h.weft_err(125, &["create", "--name", "c", "--network", "n"]);
    assert!(
        err.starts_with("error: creating sandbox \"c\": create veth ")
            && err.ends_with(KERNEL_FULL),
        "{err}"
    );
    let err = h.weft_err(
        125,
        &[
            "run",
            "-d",
            "--name",
            "r",
            "--network",
            "n",
            "--",
            "sleep",
            "60",
        ],
    );
    assert!(
        err.starts_with("error: creating sandbox \"r\": create veth ")
            && err.ends_with(KERNEL_FULL),
        "{err}"
    );
    let err = h.weft_err(1, &["network", "connect", "n", "x"]);
    assert!(
        err.starts_with("error: connecting sandbox \"x\" to network \"n\": create veth ")
            && err.ends_with(&KERNEL_FULL.replace("eth0", "eth1")),
        "{err}"
    );

    // Nothing of the three is left: records, namespaces, links, firewall elements.
    assert_eq!(sandboxes(&h), ["x"]);
    assert_eq!(
        h.json(&["inspect", "x"])[0]["networks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let files = netns_files(&h);
    assert_eq!(files.len(), 1, "only x's namespace: {files:?}");
    let inside = common::ok(
        std::process::Command::new("nsenter")
            .arg(format!("--net={}", files[0].display()))
            .args(["ip", "-o", "link", "show"]),
    );
    assert_eq!(
        inside.lines().count(),
        2,
        "x has lo and eth0 only: {inside}"
    );
    let x_veth = h.json(&["inspect", "x"])[0]["networks"][0]["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(links_besides(&h, &["plbr", "plbr2"]), [x_veth]);
    assert_eq!(ports_of(&h, "plbr"), MAX_PORTS);
    assert_eq!(ruleset(&h), before, "firewall elements changed");

    // With one port free again, the next sandbox gets the address the failed ones were
    // given: none of them kept it, nor moved the allocation on.
    h.ns.ip(&["link", "del", "f0"]);
    h.weft_ok(&["create", "--name", "c", "--network", "n"]);
    assert_eq!(h.ip_of("c", 0), "10.152.0.2");
    assert_eq!(ports_of(&h, "plbr"), MAX_PORTS);
    // And the bridge is full again.
    let err = h.weft_err(1, &["network", "connect", "n", "x"]);
    assert!(err.ends_with(&KERNEL_FULL.replace("eth0", "eth1")), "{err}");
    h.weft_ok(&["rm", "c"]);
    // (c's address is the cursor now: the next one goes on from it.)
    h.weft_ok(&["network", "connect", "n", "x"]);
    assert_eq!(h.ip_of("x", 1), "10.152.0.3");
}

/// Claims `count` addresses of network `net` for sandboxes that exist only in the store:
/// what weft knows of a network with that many endpoints, without making them.
fn claim_in_store(h: &Host, net: &str, count: usize) {
    let id = h.json(&["network", "inspect", net])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut db = rusqlite::Connection::open(h.state_dir().join("state.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    let tx = db.transaction().unwrap();
    for i in 0..count {
        // From 10.154.100.0 up, away from the addresses real sandboxes get first.
        let ip = std::net::Ipv4Addr::from(
            u32::from(std::net::Ipv4Addr::new(10, 154, 100, 0)) + u32::try_from(i).unwrap(),
        );
        tx.execute(
            "INSERT INTO addresses (network_id, ip, sandbox_id) VALUES (?1, ?2, ?3)",
            rusqlite::params![id, ip.to_string(), format!("{i:064x}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn the_1024th_sandbox_weft_knows_of_is_refused_before_anything_is_made() {
    if !root_or_skip("the_1024th_sandbox_weft_knows_of_is_refused_before_anything_is_made") {
        return;
    }
    let h = Host::new("plw");
    h.weft_ok(&[
        "network",
        "create",
        "bench",
        "--subnet",
        "10.154.0.0/16",
        "--bridge-name",
        "plwbr",
    ]);
    h.weft_ok(&["network", "create", "m", "--subnet", "10.155.0.0/24"]);
    h.weft_ok(&["create", "--name", "x", "--network", "m"]);
    claim_in_store(&h, "bench", MAX_PORTS - 1);
    // The 1,023rd port is still there.
    h.weft_ok(&["create", "--name", "last", "--network", "bench"]);
    assert_eq!(h.ip_of("last", 0), "10.154.0.2");
    let before = ruleset(&h);
    let links = links_besides(&h, &[]);

    let full = "network \"bench\" is full: a Linux bridge holds at most 1023 ports (1023 in use); create another network and connect the sandbox to it\n";
    let err = h.weft_err(125, &["create", "--name", "c", "--network", "bench"]);
    assert_eq!(err, format!("error: {full}"));
    let err = h.weft_err(
        125,
        &[
            "run",
            "--rm",
            "--name",
            "r",
            "--network",
            "bench",
            "--",
            "true",
        ],
    );
    assert_eq!(err, format!("error: {full}"));
    let err = h.weft_err(1, &["network", "connect", "bench", "x"]);
    assert_eq!(err, format!("error: {full}"));

    assert_eq!(sandboxes(&h), ["last", "x"]);
    assert_eq!(netns_files(&h).len(), 2);
    assert_eq!(links_besides(&h, &[]), links);
    assert_eq!(ruleset(&h), before);
    assert_eq!(ports_of(&h, "plwbr"), 1, "only last's port is real");
    // No address was taken: the next sandbox (one endpoint gone) gets .3.
    h.weft_ok(&["rm", "last"]);
    h.weft_ok(&["network", "connect", "bench", "x"]);
    assert_eq!(h.ip_of("x", 1), "10.154.0.3");
}
