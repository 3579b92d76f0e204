//! Integration test of the nftables adapter and weft's rule set against the running kernel.
//!
//! Needs root and the `nft` binary (used only to read back what weft installed). Everything
//! happens in a fresh network namespace; the root namespace is never touched.

use std::fs::File;
use std::process::Command;

use nix::sched::{setns, CloneFlags};
use weft::adapters::nftables::{self, Elem, Expr, MetaKey, NftError, Reg, Verdict};
use weft::core::firewall::{self, FwNetwork, FwOptions, Owner};

/// weft's base rule set with default options, owned by a test instance.
fn ensure_base(b: &mut nftables::Batch) {
    let owner = Owner {
        instance: "7e570000".into(),
        state_dir: "/tmp/weft-test".into(),
    };
    firewall::ensure_base(b, &FwOptions::default(), &owner);
}

/// A named network namespace, deleted on drop (also when the test panics).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("wt-nft-{}-{nanos:x}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(st.success(), "ip netns add {name} failed");
        Netns { name }
    }

    /// Runs `f` on a thread that has entered the namespace (setns affects only that thread).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns handle");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// Runs `nft ARGS` inside the namespace and returns its stdout.
    fn nft(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .output()
            .expect("run nft (apt-get install nftables)");
        assert!(
            out.status.success(),
            "nft {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ruleset(&self) -> String {
        self.nft(&["list", "ruleset"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn net_a() -> FwNetwork {
    FwNetwork {
        bridge: "wbr-a".into(),
        internal: false,
        icc: true,
        masq_v4: Some("10.88.0.0/24".parse().unwrap()),
        masq_v6: Some("fd00:88::/64".parse().unwrap()),
        subnet_v4: None,
        subnet_v6: None,
        gateways: vec!["10.88.0.1".parse().unwrap(), "fd00:88::1".parse().unwrap()],
        dns_port: Some(40053),
    }
}

/// Internal, and its IPv4 subnet is adjacent to `net_a`'s: the end element of one interval
/// and the start element of the other have the same key.
fn net_b() -> FwNetwork {
    FwNetwork {
        bridge: "wbr-b".into(),
        internal: true,
        icc: true,
        masq_v4: Some("10.88.1.0/24".parse().unwrap()),
        masq_v6: None,
        subnet_v4: None,
        subnet_v6: None,
        gateways: vec![],
        dns_port: None,
    }
}

fn apply(
    ns: &Netns,
    build: impl FnOnce(&mut nftables::Batch) + Send + 'static,
) -> Result<(), NftError> {
    ns.run(move || {
        let mut b = nftables::Batch::new();
        build(&mut b);
        nftables::send(&b)
    })
}

/// The text of one set's (or map's) `elements = { ... }` block (empty if it has none).
fn elements_of(ruleset: &str, set: &str) -> String {
    let start = ruleset
        .find(&format!("set {set} {{"))
        .or_else(|| ruleset.find(&format!("map {set} {{")))
        .unwrap_or_else(|| panic!("no set {set}"));
    let block = &ruleset[start..];
    let end = block.find('}').unwrap_or(block.len());
    block[..end].to_string()
}

#[test]
fn weft_ruleset_round_trip() {
    let ns = Netns::new();
    assert!(!ns
        .run(|| nftables::table_exists(firewall::FAMILY, firewall::TABLE))
        .unwrap());
    let missing = ns.run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "bridges"));
    assert!(
        missing.as_ref().is_err_and(NftError::is_not_found),
        "{missing:?}"
    );

    apply(&ns, |b| {
        ensure_base(b);
        firewall::add_network(b, &net_a());
        firewall::add_network(b, &net_b());
    })
    .expect("ensure_base + add_network");
    assert!(ns
        .run(|| nftables::table_exists(firewall::FAMILY, firewall::TABLE))
        .unwrap());

    let text = ns.ruleset();
    println!("{text}");
    assert!(text.contains("table inet weft {"), "{text}");
    for want in [
        "set bridges {\n\t\ttype ifname\n",
        "set pairs {\n\t\ttype ifname . ifname\n",
        "set internal {\n\t\ttype ifname\n",
        "set masq4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n",
        "set masq6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n",
        "chain user {\n\t}",
        "type filter hook forward priority filter; policy accept;",
        "type nat hook postrouting priority srcnat; policy accept;",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // Every rule, in order.
    let forward = [
        "jump user",
        "iifname . oifname @pairs accept",
        "iifname @internal drop",
        "oifname @internal drop",
        "iifname @bridges oifname @bridges drop",
        "oifname @bridges ct state established,related accept",
        "oifname @bridges drop",
        "oifname @bridges return",
        "ip saddr @masq4 masquerade",
        "ip6 saddr @masq6 masquerade",
    ];
    let mut pos = 0;
    for rule in forward {
        let line = format!("\t\t{rule}\n");
        let at = text[pos..]
            .find(&line)
            .unwrap_or_else(|| panic!("rule {rule:?} missing or out of order in\n{text}"));
        pos += at + line.len();
    }
    // nft reads the DNS redirects back as the rules they were written as, first after the
    // loopback returns.
    let pre = [
        "ip6 daddr ::1 return",
        "iifname @bridges dnat ip to ip daddr . meta l4proto . th dport map @dns4",
        "iifname @bridges dnat ip6 to ip6 daddr . meta l4proto . th dport map @dns6",
        "dnat ip to ip daddr . meta l4proto . th dport map @dnat4",
    ];
    let mut pos = text.find("chain prerouting").expect("prerouting");
    for rule in pre {
        let line = format!("\t\t{rule}\n");
        let at = text[pos..]
            .find(&line)
            .unwrap_or_else(|| panic!("rule {rule:?} missing or out of order in\n{text}"));
        pos += at + line.len();
    }
    let dns4 = elements_of(&text, "dns4");
    for want in [
        "10.88.0.1 . udp . 53 : 10.88.0.1 . 40053",
        "10.88.0.1 . tcp . 53 : 10.88.0.1 . 40053",
    ] {
        assert!(dns4.contains(want), "{want:?} missing in {dns4}");
    }
    assert!(
        elements_of(&text, "dns6").contains("fd00:88::1 . udp . 53 : fd00:88::1 . 40053"),
        "{text}"
    );
    // Elements.
    let bridges = elements_of(&text, "bridges");
    assert!(
        bridges.contains("\"wbr-a\"") && bridges.contains("\"wbr-b\""),
        "{bridges}"
    );
    let pairs = elements_of(&text, "pairs");
    assert!(
        pairs.contains("\"wbr-a\" . \"wbr-a\"") && pairs.contains("\"wbr-b\" . \"wbr-b\""),
        "{pairs}"
    );
    let internal = elements_of(&text, "internal");
    assert!(
        internal.contains("\"wbr-b\"") && !internal.contains("\"wbr-a\""),
        "{internal}"
    );
    let masq4 = elements_of(&text, "masq4");
    assert!(
        masq4.contains("10.88.0.0/24") && masq4.contains("10.88.1.0/24"),
        "{masq4}"
    );
    assert!(
        elements_of(&text, "masq6").contains("fd00:88::/64"),
        "{text}"
    );

    // The read helper sees raw keys.
    let keys = ns
        .run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "bridges"))
        .unwrap();
    let mut names: Vec<String> = keys
        .iter()
        .map(|k| {
            String::from_utf8_lossy(k)
                .trim_end_matches('\0')
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["wbr-a", "wbr-b"]);
    let masq = ns
        .run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "masq4"))
        .unwrap();
    assert!(
        masq.contains(&vec![10, 88, 0, 0]) && masq.contains(&vec![10, 88, 1, 0]),
        "{masq:?}"
    );

    // A rule of the user's own survives ensure_base, which is otherwise idempotent.
    ns.nft(&[
        "add", "rule", "inet", "weft", "user", "iifname", "\"eth9\"", "counter", "accept",
    ]);
    let before = ns.ruleset();
    apply(&ns, ensure_base).expect("ensure_base again");
    let after = ns.ruleset();
    assert_eq!(before, after, "ensure_base is not idempotent");
    assert!(
        after.contains("iifname \"eth9\" counter packets 0 bytes 0 accept"),
        "{after}"
    );
    // Re-adding a network's elements is no error either.
    apply(&ns, |b| firewall::add_network(b, &net_a())).expect("add_network again");
    assert_eq!(ns.ruleset(), after);

    // remove_network takes exactly that network's elements away, and twice is fine.
    apply(&ns, |b| firewall::remove_network(b, &net_a())).expect("remove_network");
    let text = ns.ruleset();
    assert!(!text.contains("wbr-a"), "{text}");
    assert!(!text.contains("10.88.0.0"), "{text}");
    assert!(!text.contains("fd00:88::"), "{text}");
    assert!(
        elements_of(&text, "bridges").contains("\"wbr-b\""),
        "{text}"
    );
    assert!(
        elements_of(&text, "masq4").contains("10.88.1.0/24"),
        "{text}"
    );
    apply(&ns, |b| firewall::remove_network(b, &net_a())).expect("remove_network twice");
    apply(&ns, |b| firewall::remove_network(b, &net_b())).expect("remove_network b");
    let text = ns.ruleset();
    assert!(
        !text.contains("wbr-b") && !text.contains("10.88."),
        "{text}"
    );
    // ...and the rules and the user's rule are still there.
    assert!(
        text.contains("ip6 saddr @masq6 masquerade") && text.contains("eth9"),
        "{text}"
    );

    // flush_elements + add_network (what gc does) leaves exactly the networks given.
    apply(&ns, |b| {
        firewall::add_network(b, &net_a());
        firewall::add_network(b, &net_b());
    })
    .unwrap();
    apply(&ns, |b| {
        ensure_base(b);
        firewall::flush_elements(b);
        firewall::add_network(b, &net_b());
    })
    .expect("gc-style rebuild");
    let text = ns.ruleset();
    assert!(!text.contains("wbr-a") && text.contains("wbr-b"), "{text}");
}

#[test]
fn rejected_batch_names_the_op_and_changes_nothing() {
    let ns = Netns::new();
    apply(&ns, ensure_base).expect("ensure_base");
    let before = ns.ruleset();
    let err = apply(&ns, |b| {
        firewall::add_network(b, &net_a());
        b.add_rule(
            firewall::FAMILY,
            firewall::TABLE,
            firewall::CHAIN_FORWARD,
            vec![
                Expr::meta(MetaKey::Iifname, Reg::R0),
                Expr::lookup("nosuchset", Reg::R0),
                Expr::Verdict(Verdict::Drop),
            ],
        );
        firewall::add_network(b, &net_b());
    })
    .expect_err("a rule on a missing set must be refused");
    match &err {
        NftError::Rejected { op, errno, .. } => {
            assert_eq!(op, "add rule to inet weft forward");
            assert_eq!(*errno, libc::ENOENT);
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    println!("{err}");
    // Atomic: the elements before the bad rule were not applied either.
    assert_eq!(ns.ruleset(), before);

    // A batch on a table that does not exist names the first op that needs it.
    let err = apply(&ns, |b| {
        b.add_elements(
            nftables::Family::Ip,
            "nosuchtable",
            "s",
            vec![Elem::ifname("x")],
        );
    })
    .expect_err("missing table");
    assert!(err.is_not_found(), "{err:?}");
    assert!(
        err.to_string().contains("add elements to ip nosuchtable s"),
        "{err}"
    );

    // destroy_table is idempotent.
    apply(&ns, |b| b.destroy_table(firewall::FAMILY, firewall::TABLE)).expect("destroy");
    apply(&ns, |b| b.destroy_table(firewall::FAMILY, firewall::TABLE)).expect("destroy twice");
    assert!(!ns.ruleset().contains("table inet weft"));
}

/// Observes weft's two tables in the namespace, elements included.
fn observe(ns: &Netns) -> Vec<weft::core::nft::ObservedTable> {
    ns.run(|| {
        let tables = nftables::list_tables().unwrap();
        let chains = nftables::list_chains().unwrap();
        [nftables::Family::Inet, nftables::Family::Bridge]
            .iter()
            .map(|f| nftables::observe_table(*f, "weft", &tables, &chains, true, true).unwrap())
            .collect()
    })
}

/// The level-triggered check against the real kernel: a rebuilt rule set reads back as
/// exactly the desired one (set definitions, rule fingerprints, elements of every kind), and
/// each kind of damage is seen and repaired without touching the user chain.
#[test]
fn drift_check_and_repair_against_the_kernel() {
    use weft::core::firewall::drift::{self, Depth, Desired, Drift};
    use weft::core::firewall::{FwEndpoint, FwPort};
    let ns = Netns::new();
    let owner = Owner {
        instance: "7e570001".into(),
        state_dir: "/tmp/weft-test".into(),
    };
    let mut a = net_a();
    a.subnet_v4 = Some("10.88.0.0/24".parse().unwrap());
    a.subnet_v6 = Some("fd00:88::/64".parse().unwrap());
    a.gateways = vec!["10.88.0.1".parse().unwrap(), "fd00:88::1".parse().unwrap()];
    let mut b = net_b();
    b.icc = false;
    let eps = vec![FwEndpoint {
        port: "wv0123456789a0".into(),
        mac: [2, 0x42, 10, 88, 0, 2],
        ipv4: Some("10.88.0.2".parse().unwrap()),
        ipv6: Some("fd00:88::2".parse().unwrap()),
    }];
    let ports = vec![
        FwPort {
            proto: 6,
            host_ip: None,
            host_port: 8080,
            target: "10.88.0.2".parse().unwrap(),
            target_port: 80,
        },
        FwPort {
            proto: 17,
            host_ip: Some("fd00:1::1".parse().unwrap()),
            host_port: 53,
            target: "fd00:88::2".parse().unwrap(),
            target_port: 53,
        },
    ];
    let desired = Desired::new(&FwOptions::default(), owner, &[a, b], &eps, &ports);
    let empty = observe(&ns);
    assert_eq!(
        drift::check(&desired, &empty, Depth::Elements)
            .unwrap()
            .len(),
        2,
        "both tables missing"
    );
    let d = desired.clone();
    apply(&ns, move |batch| {
        batch.extend(drift::repair(&d, &empty).unwrap());
    })
    .expect("build from nothing");
    for depth in [Depth::Chains, Depth::Rules, Depth::Elements] {
        assert_eq!(
            drift::check(&desired, &observe(&ns), depth).unwrap(),
            vec![],
            "{depth:?}: {}",
            ns.ruleset()
        );
    }
    println!("{}", ns.ruleset());
    ns.nft(&[
        "add", "rule", "inet", "weft", "user", "iifname", "\"eth9\"", "accept",
    ]);

    let damage: [(&[&str], &str); 5] = [
        (&["flush", "chain", "inet", "weft", "forward"], "forward"),
        (&["flush", "set", "inet", "weft", "bridges"], "bridges"),
        (&["flush", "set", "bridge", "weft", "src4"], "src4"),
        (
            &["delete", "table", "bridge", "weft"],
            "bridge weft is missing",
        ),
        (&["flush", "map", "inet", "weft", "dnat6"], "dnat6"),
    ];
    for (cmd, what) in damage {
        ns.nft(cmd);
        let observed = observe(&ns);
        let drifts = drift::check(&desired, &observed, Depth::Elements).unwrap();
        assert!(
            drifts.iter().any(|d| d.to_string().contains(what)),
            "{cmd:?}: {drifts:?}"
        );
        let d = desired.clone();
        apply(&ns, move |batch| {
            batch.extend(drift::repair(&d, &observed).unwrap())
        })
        .unwrap_or_else(|e| panic!("repair after {cmd:?}: {e}"));
        assert_eq!(
            drift::check(&desired, &observe(&ns), Depth::Elements).unwrap(),
            vec![],
            "after {cmd:?}"
        );
        assert!(ns.ruleset().contains("iifname \"eth9\" accept"));
    }
    // One rule deleted by handle.
    let listing = ns.nft(&["-a", "list", "chain", "inet", "weft", "forward"]);
    let handle = listing
        .lines()
        .find(|l| l.contains("@internal drop"))
        .and_then(|l| l.rsplit("handle ").next())
        .unwrap()
        .trim()
        .to_string();
    ns.nft(&[
        "delete", "rule", "inet", "weft", "forward", "handle", &handle,
    ]);
    let drifts = drift::check(&desired, &observe(&ns), Depth::Rules).unwrap();
    assert!(
        matches!(&drifts[..], [Drift::Rules { chain, .. }] if chain == "forward"),
        "{drifts:?}"
    );
}

/// A batch of thousands of messages: every one must be acknowledged (the receive buffer is
/// sized for it) and the result must be complete.
#[test]
fn large_batch_is_fully_acknowledged() {
    let ns = Netns::new();
    let nets: Vec<FwNetwork> = (0..800u32)
        .map(|i| FwNetwork {
            bridge: format!("wbr{i}"),
            internal: i % 2 == 0,
            icc: true,
            masq_v4: Some(
                format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
                    .parse()
                    .unwrap(),
            ),
            masq_v6: None,
            subnet_v4: None,
            subnet_v6: None,
            gateways: vec![],
            dns_port: None,
        })
        .collect();
    let all = nets.clone();
    apply(&ns, move |b| {
        ensure_base(b);
        for n in &all {
            firewall::add_network(b, n);
        }
    })
    .expect("large batch");
    let keys = ns
        .run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "bridges"))
        .unwrap();
    assert_eq!(keys.len(), nets.len());
    let masq = ns
        .run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "masq4"))
        .unwrap();
    assert_eq!(masq.len(), nets.len());
    apply(&ns, move |b| {
        for n in &nets {
            firewall::remove_network(b, n);
        }
    })
    .expect("large removal");
    let keys = ns
        .run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "pairs"))
        .unwrap();
    assert!(keys.is_empty(), "{} left", keys.len());
}

#[test]
fn element_lists_past_one_attribute_are_split_within_one_transaction() {
    let ns = Netns::new();
    apply(&ns, ensure_base).expect("base");
    // 20,000 interface names: about 560 KB of elements, where one netlink attribute holds
    // at most 64 KiB.
    let names: Vec<String> = (0..20_000).map(|i| format!("big{i}")).collect();
    let elems: Vec<Elem> = names.iter().map(|n| Elem::ifname(n)).collect();

    // All or nothing: a failing message after the split list undoes all of it.
    let all = elems.clone();
    let err = apply(&ns, move |b| {
        b.add_elements(firewall::FAMILY, "weft", "bridges", all);
        b.add_elements(
            firewall::FAMILY,
            "weft",
            "nosuchset",
            vec![Elem::ifname("x")],
        );
    })
    .expect_err("a missing set must fail the batch");
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("nosuchset"), "{err}");
    let keys = ns
        .run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "bridges"))
        .unwrap();
    assert!(
        keys.is_empty(),
        "{} elements of a failed batch applied",
        keys.len()
    );

    let all = elems.clone();
    apply(&ns, move |b| {
        b.add_elements(firewall::FAMILY, "weft", "bridges", all);
    })
    .expect("20,000 elements in one batch");
    let keys = ns
        .run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "bridges"))
        .unwrap();
    assert_eq!(keys.len(), 20_000);
    assert!(ns
        .nft(&["list", "set", "inet", "weft", "bridges"])
        .contains("\"big19999\""));

    apply(&ns, move |b| {
        b.destroy_elements(firewall::FAMILY, "weft", "bridges", elems);
    })
    .expect("removing them in one batch");
    let keys = ns
        .run(|| nftables::list_set_elements(firewall::FAMILY, "weft", "bridges"))
        .unwrap();
    assert!(keys.is_empty(), "{} left", keys.len());
}
