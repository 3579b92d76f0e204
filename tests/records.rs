//! A record whose stored document cannot be read (a bug, a disk error, an incompatible weft)
//! must not block the others: listings skip it and name it on stderr, `rm` / `network rm`
//! remove it by name, and `gc` removes it with what it owns in the kernel.

mod common;

use std::time::{Duration, Instant};

use common::Host;

/// What a truncated write would leave.
const GARBAGE: &str = "{\"name\": \"trunc";

/// Overwrites the stored document of the record `name` in `table` with garbage.
fn corrupt(h: &Host, table: &str, name: &str) {
    let db = rusqlite::Connection::open(h.state_dir().join("state.db")).unwrap();
    db.busy_timeout(Duration::from_secs(30)).unwrap();
    let n = db
        .execute(
            &format!("UPDATE {table} SET body = ?1 WHERE name = ?2"),
            rusqlite::params![GARBAGE, name],
        )
        .unwrap();
    assert_eq!(n, 1, "no {table} record {name}");
}

fn id_of(h: &Host, what: &[&str]) -> String {
    h.json(what)[0]["id"].as_str().unwrap().to_string()
}

/// Runs weft, asserting success, and returns (stdout, stderr).
fn ok_with_stderr(h: &Host, args: &[&str]) -> (String, String) {
    let out = h.weft(args);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "weft {args:?} failed: {e}");
    (o, e)
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

/// (pid, start time) of a running sandbox's init.
fn init_of(h: &Host, sandbox: &str) -> (u32, String) {
    let pid = u32::try_from(h.json(&["inspect", sandbox])[0]["pid"].as_u64().unwrap()).unwrap();
    (pid, start_time(pid).unwrap())
}

fn start_time(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
    (f.first() != Some(&"Z")).then(|| f.get(19).map(|s| s.to_string()))?
}

fn link_exists(h: &Host, name: &str) -> bool {
    h.ns.ip(&["-o", "link", "show"])
        .lines()
        .any(|l| l.split(": ").nth(1).and_then(|n| n.split('@').next()) == Some(name))
}

fn wait_bridge_ports(h: &Host, bridge: &str, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count =
            h.ns.ip(&["-o", "link", "show", "master", bridge])
                .lines()
                .count();
        if count == n || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unreadable_sandbox_record_is_skipped_by_listings_and_removed_by_rm_and_gc() {
    if !common::root_or_skip(
        "an_unreadable_sandbox_record_is_skipped_by_listings_and_removed_by_rm_and_gc",
    ) {
        return;
    }
    let h = Host::new("rcs");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.162.0.0/24",
        "--bridge-name",
        "rcsbr",
    ]);
    h.sleeper(
        "bad1",
        &["--network", "n", "--ip", "10.162.0.5", "-p", "8080:80"],
    );
    h.sleeper("bad2", &["--network", "n", "--ip", "10.162.0.6"]);
    h.weft_ok(&["create", "--name", "good", "--network", "n"]);
    let (id1, id2) = (
        id_of(&h, &["inspect", "bad1"]),
        id_of(&h, &["inspect", "bad2"]),
    );
    let (init1, init2) = (init_of(&h, "bad1"), init_of(&h, "bad2"));
    let netns1 = h.json(&["inspect", "bad1"])[0]["netns"]
        .as_str()
        .unwrap()
        .to_string();
    corrupt(&h, "sandboxes", "bad1");
    corrupt(&h, "sandboxes", "bad2");

    // Listings show the rest and name what they skip: table, id, name, the decoding error.
    let (out, err) = ok_with_stderr(&h, &["--format", "json", "ps", "-a"]);
    assert_eq!(names(&serde_json::from_str(&out).unwrap()), vec!["good"]);
    for (id, name) in [(&id1, "bad1"), (&id2, "bad2")] {
        let line = err
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("ps does not name {name}: {err}"));
        assert!(line.contains("sandboxes"), "{line}");
        assert!(line.contains(&format!("\"{name}\"")), "{line}");
        assert!(line.contains("EOF while parsing"), "{line}");
    }
    let (out, _) = ok_with_stderr(&h, &["--format", "json", "network", "ls"]);
    assert_eq!(names(&serde_json::from_str(&out).unwrap()), vec!["n"]);

    // rm by name: refused while its processes run, then forced.
    let err = h.weft_err(1, &["rm", "bad1"]);
    assert!(err.contains("running processes"), "{err}");
    assert_eq!(h.weft_ok(&["rm", "-f", "bad1"]), "bad1\n");
    assert_eq!(start_time(init1.0), None, "bad1's processes survived rm");
    assert!(
        !std::path::Path::new(&netns1).exists(),
        "namespace handle left"
    );
    let err = h.weft_err(1, &["rm", "bad1"]);
    assert!(err.contains("no such sandbox"), "{err}");
    assert_eq!(wait_bridge_ports(&h, "rcsbr", 2), 2, "bad1's veth stayed");
    // Its address and published port are free again, and the port leads to the new owner.
    h.weft_ok(&[
        "create",
        "--name",
        "a1",
        "--network",
        "n",
        "--ip",
        "10.162.0.5",
    ]);
    h.weft_ok(&[
        "create",
        "--name",
        "p1",
        "--network",
        "n",
        "--ip",
        "10.162.0.9",
        "-p",
        "8080:80",
    ]);
    let map = h.sh("nft list map inet weft dnat4any");
    assert!(map.contains("10.162.0.9"), "{map}");
    assert!(!map.contains("10.162.0.5"), "stale published port: {map}");

    // gc removes the other with its processes, namespace and veth.
    let report = h.json(&["gc"]);
    let removed = report["unreadable_removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{report}");
    assert!(removed[0].as_str().unwrap().contains(&id2), "{report}");
    assert_eq!(start_time(init2.0), None, "bad2's processes survived gc");
    let left: Vec<_> = std::fs::read_dir(h.run_dir().join("netns"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() == id2)
        .collect();
    assert!(left.is_empty(), "bad2's namespace handle left");
    assert_eq!(wait_bridge_ports(&h, "rcsbr", 3), 3, "bad2's veth stayed");
    h.weft_ok(&[
        "create",
        "--name",
        "a2",
        "--network",
        "n",
        "--ip",
        "10.162.0.6",
    ]);
    let (_, err) = ok_with_stderr(&h, &["ps", "-a"]);
    assert!(err.is_empty(), "{err}");
}

#[test]
fn an_unreadable_network_record_is_skipped_by_listings_and_removed_by_rm_and_gc() {
    if !common::root_or_skip(
        "an_unreadable_network_record_is_skipped_by_listings_and_removed_by_rm_and_gc",
    ) {
        return;
    }
    let h = Host::new("rcn");
    h.weft_ok(&["network", "create", "good", "--subnet", "10.163.0.0/24"]);
    h.weft_ok(&[
        "network",
        "create",
        "bad1",
        "--subnet",
        "10.163.1.0/24",
        "--bridge-name",
        "rcnbr1",
    ]);
    h.weft_ok(&[
        "network",
        "create",
        "bad2",
        "--subnet",
        "10.163.2.0/24",
        "--bridge-name",
        "rcnbr2",
    ]);
    h.weft_ok(&[
        "create",
        "--name",
        "s1",
        "--network",
        "good",
        "--network",
        "bad1",
    ]);
    let (id1, id2) = (
        id_of(&h, &["network", "inspect", "bad1"]),
        id_of(&h, &["network", "inspect", "bad2"]),
    );
    corrupt(&h, "networks", "bad1");
    corrupt(&h, "networks", "bad2");

    let (out, err) = ok_with_stderr(&h, &["--format", "json", "network", "ls"]);
    assert_eq!(names(&serde_json::from_str(&out).unwrap()), vec!["good"]);
    for (id, name) in [(&id1, "bad1"), (&id2, "bad2")] {
        let line = err
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("network ls does not name {name}: {err}"));
        assert!(line.contains("networks"), "{line}");
        assert!(line.contains(&format!("\"{name}\"")), "{line}");
        assert!(line.contains("EOF while parsing"), "{line}");
    }
    let (out, _) = ok_with_stderr(&h, &["--format", "json", "ps", "-a"]);
    assert_eq!(names(&serde_json::from_str(&out).unwrap()), vec!["s1"]);

    // network rm by name: refused while a sandbox is attached, then forced (which detaches it).
    let err = h.weft_err(1, &["network", "rm", "bad1"]);
    assert!(err.contains("s1"), "{err}");
    assert_eq!(h.weft_ok(&["network", "rm", "--force", "bad1"]), "bad1\n");
    assert!(!link_exists(&h, "rcnbr1"), "bad1's bridge left");
    let s1 = h.json(&["inspect", "s1"]);
    assert_eq!(s1[0]["networks"].as_array().unwrap().len(), 1, "{s1}");
    assert_eq!(s1[0]["networks"][0]["network"], "good");
    let err = h.weft_err(1, &["network", "rm", "bad1"]);
    assert!(err.contains("no such network"), "{err}");
    // Its subnet can be used again.
    h.weft_ok(&["network", "create", "again1", "--subnet", "10.163.1.0/24"]);

    let report = h.json(&["gc"]);
    let removed = report["unreadable_removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{report}");
    assert!(removed[0].as_str().unwrap().contains(&id2), "{report}");
    assert!(!link_exists(&h, "rcnbr2"), "bad2's bridge left");
    let bridges = h.sh("nft list set inet weft bridges");
    assert!(!bridges.contains("rcnbr"), "stale elements: {bridges}");
    h.weft_ok(&["network", "create", "again2", "--subnet", "10.163.2.0/24"]);
    let (_, err) = ok_with_stderr(&h, &["network", "ls"]);
    assert!(err.is_empty(), "{err}");
}
