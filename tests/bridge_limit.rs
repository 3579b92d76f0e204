//! A Linux bridge holds at most 1,023 ports. The attach that would be a network's 1,024th
//! port is refused by the kernel (`EXFULL`) with a message that says so, and leaves nothing
//! behind: no record, namespace, link, firewall element, address or moved address cursor.

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
const KERNEL_FULL: &str = "on plbr <-> eth0: bridge plbr has no free port (a Linux bridge holds at most 1023); remove a sandbox or another port from it, or create another network and connect the sandbox to it\n";

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
