//! Concurrency, crashes and bad input: 50 parallel runs, `kill -9` at every step of `run`
//! and `network create` followed by `weft gc`, and every bad input refused with a one-line
//! error that changes nothing.

mod common;

use std::collections::BTreeSet;

use common::Host;

#[test]
fn fifty_parallel_runs_get_fifty_distinct_addresses() {
    let h = Host::new("par");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.140.0.0/24"]);
    let runs: Vec<Vec<String>> = (0..50)
        .map(|i| {
            [
                "run",
                "-d",
                "--name",
                &format!("p{i}"),
                "--network",
                "n",
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
    let ps = h.json(&["ps"]);
    let ips: BTreeSet<String> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["networks"][0]["ipv4"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ps.as_array().unwrap().len(), 50);
    assert_eq!(ips.len(), 50, "addresses collide: {ips:?}");
    // And they are all really there: every host-side veth on the bridge.
    let bridge = h.json(&["network", "inspect", "n"])[0]["bridge"]
        .as_str()
        .unwrap()
        .to_string();
    let ports = h.ns.ip(&["-o", "link", "show", "master", &bridge]);
    assert_eq!(ports.lines().count(), 50, "{ports}");
}

/// Everything weft could leak in the host namespace and its directories.
fn leftovers(h: &Host) -> Vec<String> {
    let mut out = Vec::new();
    for l in h.ns.ip(&["-o", "link", "show"]).lines() {
        let name = l
            .split(": ")
            .nth(1)
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("");
        if name != "lo" {
            out.push(format!("link {name}"));
        }
    }
    if let Ok(rd) = std::fs::read_dir(h.run_dir().join("netns")) {
        out.extend(
            rd.flatten()
                .map(|e| format!("netns {}", e.path().display())),
        );
    }
    if let Ok(rd) = std::fs::read_dir(h.run_dir().join("sandboxes")) {
        out.extend(
            rd.flatten()
                .map(|e| format!("files {}", e.path().display())),
        );
    }
    out
}

fn wait_no_leftovers(h: &Host, allowed: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    for _ in 0..100 {
        left = leftovers(h)
            .into_iter()
            .filter(|l| !allowed.iter().any(|a| l.contains(a)))
            .collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    left
}

#[test]
fn kill_9_at_every_step_of_run_then_gc_leaks_nothing() {
    let h = Host::new("crr");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.141.0.0/24",
        "--bridge-name",
        "crbr",
    ]);
    let mut step = 0;
    loop {
        let out = h.run_crash(
            step,
            &[
                "run",
                "-d",
                "--name",
                "c",
                "--network",
                "n",
                "--",
                "sleep",
                "600",
            ],
        );
        if out {
            // The command got past its last kernel operation: nothing left to interrupt.
            h.weft_ok(&["rm", "--force", "c"]);
            break;
        }
        let gc = h.weft(&["gc"]);
        assert!(
            gc.status.success(),
            "gc after crash at op {step}: {}",
            String::from_utf8_lossy(&gc.stderr)
        );
        assert!(
            h.json(&["ps", "-a"]).as_array().unwrap().is_empty(),
            "sandbox record left after crash at op {step}"
        );
        let left = wait_no_leftovers(&h, &["crbr"]);
        assert!(left.is_empty(), "crash at op {step} leaked {left:?}");
        // gc's undo takes the host's permanent entry for the sandbox away too.
        let neigh =
            h.ns.ip(&["neigh", "show", "dev", "crbr", "nud", "permanent"]);
        assert_eq!(
            neigh.trim(),
            "",
            "crash at op {step} left a neighbour entry"
        );
        // No lost allocation: the whole /24 minus nothing is still free, and the same name works.
        h.weft_ok(&[
            "create",
            "--name",
            "c",
            "--network",
            "n",
            "--ip",
            "10.141.0.2",
        ]);
        h.weft_ok(&["rm", "c"]);
        step += 1;
        assert!(step < 30, "run never completed");
    }
    assert!(step >= 4, "expected several kernel steps, got {step}");
}

/// A create whose kernel operations fail, each in turn (the firewall batch that now comes
/// before the namespace, the namespace made ahead on a thread of its own, the veth...), is
/// rolled back by the command itself: no namespace handle, mount, link, file or record is
/// left, without gc.
#[test]
fn a_create_failing_at_each_operation_leaves_nothing_without_gc() {
    let h = Host::new("crf");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.142.0.0/24",
        "--bridge-name",
        "crfbr",
    ]);
    for op in [
        "add nftables elements",
        "create network namespace",
        "set lo up",
        "create veth",
    ] {
        let out = common::run(
            h.weft_cmd(&["create", "--name", "c", "--network", "n"])
                .env("WEFT_TEST_FAIL_OP", op),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("failed on purpose"),
            "{op}: {err}"
        );
        assert!(
            h.json(&["ps", "-a"]).as_array().unwrap().is_empty(),
            "{op}: a record is left"
        );
        let left = wait_no_leftovers(&h, &["crfbr"]);
        assert!(left.is_empty(), "{op}: leaked {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let netns_dir = h.run_dir().join("netns").display().to_string();
        assert!(
            !mounts.lines().any(|l| l.contains(&format!("{netns_dir}/"))),
            "{op}: a namespace is still mounted under {netns_dir}"
        );
    }
    h.weft_ok(&["create", "--name", "c", "--network", "n"]);
    h.weft_ok(&["rm", "c"]);
}

/// A run killed just after writing the host's permanent neighbour entry for its sandbox:
/// gc's undo of the half-made sandbox deletes that entry with the rest.
#[test]
fn a_run_killed_after_its_host_neighbour_entry_leaves_none_after_gc() {
    let h = Host::new("crn");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.142.0.0/24",
        "--bridge-name",
        "cnbr",
    ]);
    let mut run = h.weft_cmd(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "n",
        "--ip",
        "10.142.0.2",
        "--",
        "sleep",
        "600",
    ]);
    run.env("WEFT_TEST_SLOW_OP", "add neighbour 10.142.0.2 ");
    let mut child = run.spawn().unwrap();
    let entry = || h.ns.ip(&["neigh", "show", "10.142.0.2", "dev", "cnbr"]);
    let mut seen = String::new();
    for _ in 0..200 {
        seen = entry();
        if seen.contains("PERMANENT") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(
        seen.contains("PERMANENT"),
        "no host entry written: {seen:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    h.weft_ok(&["gc"]);
    assert!(
        h.json(&["ps", "-a"]).as_array().unwrap().is_empty(),
        "sandbox record left"
    );
    assert_eq!(entry().trim(), "", "gc left the host's entry");
}

#[test]
fn a_run_killed_before_its_command_starts_leaves_nothing_after_gc() {
    use std::os::unix::process::ExitStatusExt;
    let h = Host::new("crs");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.142.0.0/24",
        "--bridge-name",
        "crsbr",
    ]);
    // Foreground, detached with --rm, and detached: killed once the sandbox is made and before
    // its command runs. None was asked for as a sandbox of its own: gc takes each away.
    for args in [
        &["run", "--name", "f", "--network", "n", "--", "sleep", "1"][..],
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            "r",
            "--network",
            "n",
            "--",
            "sleep",
            "1",
        ],
        &[
            "run",
            "-d",
            "--name",
            "d",
            "--network",
            "n",
            "--",
            "sleep",
            "600",
        ],
    ] {
        let out = common::run(
            h.weft_cmd(args)
                .env("WEFT_TEST_CRASH_AT", "run-before-start"),
        );
        assert_eq!(out.status.signal(), Some(9), "{args:?} was not killed");
        let gc = h.weft_ok(&["gc"]);
        assert!(
            h.json(&["ps", "-a"]).as_array().unwrap().is_empty(),
            "{args:?}: a sandbox is left after gc: {gc}"
        );
        let left = wait_no_leftovers(&h, &["crsbr"]);
        assert!(left.is_empty(), "{args:?} leaked {left:?}");
        // Its address is free again.
        h.weft_ok(&[
            "create",
            "--name",
            "x",
            "--network",
            "n",
            "--ip",
            "10.142.0.2",
        ]);
        h.weft_ok(&["rm", "x"]);
    }
}

#[test]
fn kill_9_at_every_step_of_network_create_then_gc_leaks_nothing() {
    let h = Host::new("crn");
    let mut step = 0;
    loop {
        if h.run_crash(
            step,
            &["network", "create", "n", "--subnet", "10.142.0.0/24"],
        ) {
            break;
        }
        let gc = h.weft(&["gc"]);
        assert!(
            gc.status.success(),
            "{}",
            String::from_utf8_lossy(&gc.stderr)
        );
        assert!(
            h.json(&["network", "ls"]).as_array().unwrap().is_empty(),
            "network record left after crash at op {step}"
        );
        let left = wait_no_leftovers(&h, &[]);
        assert!(left.is_empty(), "crash at op {step} leaked {left:?}");
        let rules = h.sh("nft list table inet weft 2>/dev/null || true");
        assert!(
            !rules.contains("10.142.0.0"),
            "nftables elements left after crash at op {step}: {rules}"
        );
        step += 1;
        assert!(step < 30, "network create never completed");
    }
    assert!(step >= 3, "expected several kernel steps, got {step}");
    // The completed network works, and the subnet was not lost to a dead record.
    h.weft_ok(&["network", "rm", "n"]);
    h.weft_ok(&["network", "create", "again", "--subnet", "10.142.0.0/24"]);
}

#[test]
fn gc_finds_sandboxes_whose_process_or_namespace_vanished() {
    let h = Host::new("gcv");
    h.weft_ok(&["network", "create", "n"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    // a's monitor and command die without telling anyone.
    let v = h.json(&["inspect", "a"]);
    let pid = i32::try_from(v[0]["pid"].as_u64().unwrap()).unwrap();
    let monitor = monitor_of(pid);
    // SAFETY: kill(2) on the pids this test started (through weft).
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    // b's namespace handle disappears behind weft's back.
    let netns = h.json(&["inspect", "b"])[0]["netns"]
        .as_str()
        .unwrap()
        .to_string();
    common::ok(std::process::Command::new("umount").arg(&netns));
    std::fs::remove_file(&netns).unwrap();
    let report = h.json(&["gc"]);
    assert_eq!(
        report["sandboxes_exited"],
        serde_json::json!(["a"]),
        "{report}"
    );
    assert_eq!(
        report["sandboxes_removed"],
        serde_json::json!(["b"]),
        "{report}"
    );
    let ps = h.json(&["ps", "-a"]);
    assert_eq!(ps.as_array().unwrap().len(), 1);
    assert_eq!(ps[0]["status"], "exited");
}

/// The monitor is the parent of the command (`weft __monitor`).
fn monitor_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs a failing command and checks: exit code, one line on stderr containing `needle`,
/// and no change to networks or sandboxes.
fn refused(h: &Host, code: i32, args: &[&str], needle: &str) {
    let before = (
        h.weft_ok(&["--format", "json", "network", "ls"]),
        h.weft_ok(&["--format", "json", "ps", "-a"]),
    );
    let err = h.weft_err(code, args);
    assert!(
        err.contains(needle),
        "weft {args:?}: expected {needle:?} in {err:?}"
    );
    if code == 1 || code == 125 {
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one line expected: {err:?}"
        );
        assert!(err.starts_with("error: "), "{err:?}");
    }
    let after = (
        h.weft_ok(&["--format", "json", "network", "ls"]),
        h.weft_ok(&["--format", "json", "ps", "-a"]),
    );
    assert_eq!(before, after, "weft {args:?} changed state");
}

#[test]
fn bad_input_is_refused_with_a_named_value_and_changes_nothing() {
    let h = Host::new("bad");
    h.weft_ok(&["network", "create", "ok", "--subnet", "10.143.0.0/24"]);
    h.weft_ok(&[
        "create",
        "--name",
        "s1",
        "--network",
        "ok",
        "--ip",
        "10.143.0.10",
    ]);
    refused(
        &h,
        1,
        &["network", "create", "x", "--subnet", "10.1.2.300/24"],
        "\"10.1.2.300/24\"",
    );
    refused(
        &h,
        1,
        &[
            "network",
            "create",
            "x",
            "--subnet",
            "10.150.0.0/16",
            "--gateway",
            "10.151.0.1",
        ],
        "10.151.0.1",
    );
    refused(
        &h,
        1,
        &[
            "network",
            "create",
            "x",
            "--subnet",
            "10.150.0.0/16",
            "--ip-range",
            "10.151.0.0/24",
        ],
        "10.151.0.0/24",
    );
    refused(
        &h,
        1,
        &["network", "create", "x", "--subnet", "10.150.0.0/31"],
        "10.150.0.0/31",
    );
    refused(
        &h,
        1,
        &["network", "create", "x", "--subnet", "10.150.0.4/32"],
        "10.150.0.4/32",
    );
    refused(
        &h,
        1,
        &["network", "create", "x", "--subnet", "10.150.0.5/16"],
        "10.150.0.0/16",
    );
    refused(&h, 1, &["network", "create", "ok"], "already exists");
    refused(&h, 1, &["network", "create", "_bad"], "\"_bad\"");
    refused(&h, 1, &["network", "create", "bad/name"], "\"bad/name\"");
    refused(
        &h,
        1,
        &[
            "network",
            "create",
            "x",
            "--bridge-name",
            "a-very-long-bridge",
        ],
        "15",
    );
    refused(
        &h,
        1,
        &["network", "create", "x", "--subnet", "10.143.0.0/25"],
        "\"ok\"",
    );
    refused(
        &h,
        1,
        &["network", "create", "x", "--opt", "nosuch=1"],
        "nosuch",
    );
    refused(
        &h,
        1,
        &["network", "create", "x", "--opt", "icc=maybe"],
        "icc=maybe",
    );
    refused(
        &h,
        125,
        &[
            "create",
            "--name",
            "s2",
            "--network",
            "ok",
            "--ip",
            "10.143.0.10",
        ],
        "in use by sandbox \"s1\"",
    );
    refused(
        &h,
        125,
        &[
            "create",
            "--name",
            "s2",
            "--network",
            "ok",
            "--ip",
            "10.99.0.1",
        ],
        "10.99.0.1",
    );
    refused(
        &h,
        125,
        &[
            "create",
            "--name",
            "s2",
            "--network",
            "ok",
            "--ip",
            "10.143.0.1",
        ],
        "10.143.0.1",
    );
    refused(
        &h,
        125,
        &[
            "create",
            "--name",
            "s2",
            "--network",
            "ok",
            "--ip",
            "nonsense",
        ],
        "\"nonsense\"",
    );
    refused(
        &h,
        125,
        &["create", "--name", "s1", "--network", "ok"],
        "already exists",
    );
    refused(
        &h,
        125,
        &["create", "--name", "s2", "--network", "nosuch"],
        "\"nosuch\"",
    );
    refused(&h, 1, &["rm", "nosuch"], "\"nosuch\"");
    refused(&h, 1, &["network", "rm", "nosuch"], "\"nosuch\"");
    refused(&h, 125, &["exec", "nosuch", "--", "true"], "\"nosuch\"");
    refused(
        &h,
        1,
        &["ipam", "avoid", "add", "10.0.0.0/33"],
        "10.0.0.0/33",
    );
    refused(&h, 2, &["network", "create"], "Usage");
    refused(&h, 2, &["no-such-command"], "no-such-command");

    // The subnet is exhausted cleanly: /29 has 5 usable addresses besides the gateway.
    h.weft_ok(&["network", "create", "tiny", "--subnet", "10.144.0.0/29"]);
    for i in 0..5 {
        h.weft_ok(&["create", "--name", &format!("t{i}"), "--network", "tiny"]);
    }
    refused(
        &h,
        125,
        &["create", "--name", "t5", "--network", "tiny"],
        "10.144.0.0/29",
    );

    // Not root.
    let out = common::run(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::weft_bin())
            .args(["--state-dir", "/nonexistent", "network", "ls"]),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("root"),
        "{out:?}"
    );
}

#[test]
fn freed_addresses_are_reused_only_after_the_others() {
    let h = Host::new("reuse");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.145.0.0/24"]);
    h.weft_ok(&["create", "--name", "a", "--network", "n"]);
    assert_eq!(h.ip_of("a", 0), "10.145.0.2");
    h.weft_ok(&["rm", "a"]);
    h.weft_ok(&["create", "--name", "b", "--network", "n"]);
    assert_eq!(
        h.ip_of("b", 0),
        "10.145.0.3",
        "the freed .2 must not come back at once"
    );
}

#[test]
fn gc_running_beside_creates_removes_nothing_alive() {
    let h = Host::new("gcrace");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.146.0.0/24"]);
    let creates: Vec<_> = (0..30)
        .map(|i| h.spawn(&["create", "--name", &format!("r{i}"), "--network", "n"]))
        .collect();
    let gcs: Vec<_> = (0..5).map(|_| h.spawn(&["gc"])).collect();
    for c in creates {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for mut g in gcs {
        g.wait().unwrap();
    }
    h.weft_ok(&["gc"]);
    let ps = h.json(&["ps", "-a"]);
    assert_eq!(
        ps.as_array().unwrap().len(),
        30,
        "gc removed live sandboxes: {ps}"
    );
    for sb in ps.as_array().unwrap() {
        let netns = sb["netns"].as_str().unwrap();
        assert!(
            std::path::Path::new(netns).exists(),
            "{netns} deleted under a live sandbox"
        );
    }
    let bridge = h.json(&["network", "inspect", "n"])[0]["bridge"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h.ns.ip(&["-o", "link", "show", "master", &bridge])
            .lines()
            .count(),
        30
    );
    assert!(
        h.sh("nft list set inet weft bridges").contains(&bridge),
        "gc dropped a live network's elements"
    );
}

#[test]
fn network_rm_racing_attaches_leaves_no_sandbox_on_a_removed_network() {
    let h = Host::new("nrace");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.147.0.0/24"]);
    let creates: Vec<_> = (0..20)
        .map(|i| h.spawn(&["create", "--name", &format!("q{i}"), "--network", "n"]))
        .collect();
    let rm = h
        .weft_cmd(&["network", "rm", "--force", "n"])
        .output()
        .unwrap();
    for mut c in creates {
        c.wait().unwrap();
    }
    let nets = h.json(&["network", "ls"]);
    let ps = h.json(&["ps", "-a"]);
    if nets.as_array().unwrap().is_empty() {
        // The network went: no sandbox may still claim an endpoint on it.
        for sb in ps.as_array().unwrap() {
            assert!(
                sb["networks"].as_array().unwrap().is_empty(),
                "endpoint on a removed network: {sb}"
            );
        }
    } else {
        // rm lost the race to attaches and said so.
        assert!(!rm.status.success());
    }
}

#[test]
fn special_ranges_are_refused_up_front_with_the_reason_and_change_nothing() {
    let h = Host::new("spec");
    h.weft_ok(&["network", "create", "ok", "--subnet", "10.145.0.0/24"]);
    h.weft_ok(&["create", "--name", "s1", "--network", "ok"]);
    let links_before = leftovers(&h);
    let net = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["network", "create", "x"].map(String::from).to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let private = "choose a private range such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16";
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            net(&["--subnet", "127.0.0.0/24"]),
            format!("--subnet 127.0.0.0/24 is loopback (127.0.0.0/8): {private}"),
        ),
        (
            net(&["--subnet", "0.0.0.0/16"]),
            "--subnet 0.0.0.0/16 is unspecified (\"this network\") (0.0.0.0/8)".into(),
        ),
        (
            net(&["--subnet", "169.254.0.0/24"]),
            "--subnet 169.254.0.0/24 is link-local (169.254.0.0/16)".into(),
        ),
        (
            net(&["--subnet", "224.1.0.0/24"]),
            "--subnet 224.1.0.0/24 is multicast (224.0.0.0/4)".into(),
        ),
        (
            net(&["--subnet", "255.255.255.0/24"]),
            "--subnet 255.255.255.0/24 contains the limited broadcast address (255.255.255.255/32)"
                .into(),
        ),
        (
            net(&["--ipv6", "--subnet", "10.146.0.0/24", "--subnet", "fe80::/64"]),
            "--subnet fe80::/64 is link-local (fe80::/10): choose a unique local range".into(),
        ),
        (
            net(&["--ipv6", "--subnet", "10.146.0.0/24", "--subnet", "ff05::/64"]),
            "--subnet ff05::/64 is multicast (ff00::/8)".into(),
        ),
        (
            net(&["--ipv6", "--subnet", "10.146.0.0/24", "--subnet", "::/64"]),
            "--subnet ::/64 contains the unspecified address (::/128)".into(),
        ),
        (
            net(&["--subnet", "10.146.0.0/24", "--gateway", "127.0.0.1"]),
            "--gateway 127.0.0.1 is loopback (127.0.0.0/8)".into(),
        ),
        (
            net(&["--subnet", "10.146.0.0/24", "--ip-range", "169.254.1.0/24"]),
            "--ip-range 169.254.1.0/24 is link-local (169.254.0.0/16)".into(),
        ),
        (
            net(&["--subnet", "10.146.0.0/24", "--aux-address", "m=224.0.0.5"]),
            "--aux-address m=224.0.0.5 is multicast (224.0.0.0/4)".into(),
        ),
        (
            net(&["--subnet", "10.146.0.0/24", "--aux-address", "r=10.146.0.1"]),
            "aux address \"r\" 10.146.0.1 is the gateway of 10.146.0.0/24; pick another address, e.g. 10.146.0.2".into(),
        ),
        (
            net(&[
                "--subnet",
                "10.146.0.0/24",
                "--gateway",
                "10.146.0.9",
                "--aux-address",
                "r=10.146.0.9",
            ]),
            "aux address \"r\" 10.146.0.9 is the gateway of 10.146.0.0/24".into(),
        ),
    ];
    let sandbox = |ip: &str| -> Vec<String> {
        ["create", "--name", "s2", "--network", "ok", "--ip", ip]
            .map(String::from)
            .to_vec()
    };
    let mut cases = cases;
    for (ip, what) in [
        ("127.0.0.5", "is loopback (127.0.0.0/8)"),
        ("0.0.0.0", "is unspecified (\"this network\") (0.0.0.0/8)"),
        ("169.254.9.9", "is link-local (169.254.0.0/16)"),
        ("239.0.0.1", "is multicast (224.0.0.0/4)"),
        ("255.255.255.255", "is the limited broadcast address"),
        ("::", "is the unspecified address (::/128)"),
        ("::1", "is the loopback address (::1/128)"),
        ("fe80::1", "is link-local (fe80::/10)"),
        ("ff02::1", "is multicast (ff00::/8)"),
    ] {
        cases.push((sandbox(ip), format!("--ip {ip} {what}")));
    }
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // `create` fails as `docker create` does (125), network commands with 1.
        let code = if args[0] == "create" { 125 } else { 1 };
        refused(&h, code, &args, needle);
    }
    assert_eq!(
        leftovers(&h),
        links_before,
        "a refused input left something"
    );
    assert!(
        !h.sh("nft list table inet weft").contains("10.146."),
        "firewall elements of a refused network"
    );

    // A configured pool in a special range is refused, naming the config file.
    let p = Host::new("specp");
    p.config("default_address_pools = [{ base = \"127.0.0.0/16\", size = 24 }]\n");
    let err = p.weft_err(1, &["network", "create", "a"]);
    let file = p.dir.join("weft.toml").display().to_string();
    assert!(
        err.contains(&format!(
            "invalid config file {file}: address pool 127.0.0.0/16 is loopback (127.0.0.0/8): {private}"
        )),
        "{err}"
    );
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
}
