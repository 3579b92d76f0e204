//! Long-lived weft processes (each sandbox's monitor, a foreground `run`, `exec`, `wait`,
//! `logs -f`) hold no state-store connection while they wait: an open SQLite connection in
//! WAL mode keeps POSIX locks on state.db and state.db-shm, and the kernel walks every lock
//! on a file in each lock call of every transaction, so with one per sandbox every weft
//! command would get slower as sandboxes are added.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A file as /proc/locks names it: `MAJ:MIN:INODE` (hex device numbers, glibc's split).
fn lock_key(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let dev = m.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    Some(format!("{major:02x}:{minor:02x}:{}", m.ino()))
}

/// The lines of /proc/locks on the host's store files held by one of `pids`.
fn locks_held_by(h: &Host, pids: &[u32]) -> Vec<String> {
    let keys: Vec<String> = ["state.db", "state.db-shm", "state.db-wal"]
        .iter()
        .filter_map(|f| lock_key(&h.state_dir().join(f)))
        .collect();
    assert!(
        !keys.is_empty(),
        "no store under {}",
        h.state_dir().display()
    );
    let text = std::fs::read_to_string("/proc/locks").unwrap();
    text.lines()
        .filter(|line| {
            // "N: POSIX ADVISORY READ PID MAJ:MIN:INODE START END" (a blocked request has
            // "->" after "N:"): the pid is the field before the file's.
            let f: Vec<&str> = line.split_whitespace().collect();
            f.iter().enumerate().skip(1).any(|(i, field)| {
                keys.iter().any(|k| k == field)
                    && f[i - 1].parse::<u32>().is_ok_and(|pid| pids.contains(&pid))
            })
        })
        .map(str::to_string)
        .collect()
}

/// The pids of the host's sandbox monitors (`weft --state-dir DIR ... __monitor ID`).
fn monitors_of(h: &Host) -> Vec<u32> {
    let dir = h.state_dir().display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.contains(&b"__monitor".as_slice())
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--state-dir" && w[1] == dir.as_bytes())
        })
        .collect()
}

/// Background weft processes of this test, killed (by pid) and reaped when dropped.
struct Spawned(Vec<std::process::Child>);

impl Drop for Spawned {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn waiting_weft_processes_hold_no_store_lock_and_still_record_exits() {
    if !root_or_skip("waiting_weft_processes_hold_no_store_lock_and_still_record_exits") {
        return;
    }
    let h = Host::new("locks");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.181.0.0/24"]);
    let names: Vec<String> = (0..20)
        .map(|i| h.sleeper(&format!("s{i}"), &["--network", "n"]))
        .collect();
    // Theirs only: the ones started next write to the store as their commands end.
    let monitors = monitors_of(&h);
    assert_eq!(monitors.len(), names.len(), "{monitors:?}");
    // Exits to record while the others wait: a failing command restarted twice, an `--rm`
    // sandbox removed when its command ends.
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "f",
        "--restart",
        "on-failure:2",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "sleep 0.3; exit 3",
    ]);
    h.weft_ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "gone",
        "--network",
        "n",
        "--",
        "sleep",
        "1",
    ]);
    // The other waiters: a foreground run, a foreground exec, `wait`, `logs -f`.
    let spawned = Spawned(vec![
        h.spawn(&["run", "--network", "n", "--", "sleep", "600"]),
        h.spawn(&["exec", "s0", "--", "sleep", "600"]),
        h.spawn(&["wait", "s1"]),
        h.spawn(&["logs", "-f", "s2"]),
    ]);
    let mut pids: Vec<u32> = spawned.0.iter().map(std::process::Child::id).collect();
    pids.extend(&monitors);
    // Each has done its last write before it waits (the foreground run its create, the
    // monitors their record of the running command) within moments of starting.
    assert!(
        wait_for(10, || {
            h.json(&["ps", "-a"])
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["status"] == "running")
                .count()
                > names.len()
        }),
        "the foreground run did not start"
    );
    assert!(
        wait_for(5, || locks_held_by(&h, &pids).is_empty()),
        "waiting weft processes hold store locks:\n{}",
        locks_held_by(&h, &pids).join("\n")
    );
    // The store is used meanwhile (commands of ours, exits recorded): still none held.
    assert!(
        wait_for(15, || {
            let v = h.json(&["inspect", "f"]);
            v[0]["status"] == "exited" && v[0]["restart_count"] == 2
        }),
        "the restarts of f were not recorded: {}",
        h.json(&["inspect", "f"])
    );
    let f = h.json(&["inspect", "f"]);
    assert_eq!(f[0]["exit_code"], 3, "{f}");
    assert!(f[0]["monitor_pid"].is_null(), "{f}");
    assert!(
        wait_for(10, || !h
            .json(&["ps", "-a"])
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "gone")),
        "the --rm sandbox was not removed"
    );
    let held = locks_held_by(&h, &pids);
    assert!(held.is_empty(), "store locks held:\n{}", held.join("\n"));
    for p in &pids {
        assert!(
            Path::new(&format!("/proc/{p}")).exists(),
            "waiting process {p} is gone"
        );
    }
    // And they still do their work: `wait` gives the exit code, `logs -f` ends with the
    // command, the monitor records the exit of a stopped sandbox.
    h.weft_ok(&["stop", "-t", "1", "s1", "s2", "s3"]);
    let mut spawned = spawned;
    let wait = spawned.0.remove(2);
    let out = wait.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut logs = spawned.0.remove(2);
    assert!(
        wait_for(10, || logs.try_wait().unwrap().is_some()),
        "logs -f did not end with its sandbox's command"
    );
    let s3 = h.json(&["inspect", "s3"]);
    assert_eq!(s3[0]["status"], "exited", "{s3}");
    assert!(s3[0]["monitor_pid"].is_null(), "{s3}");
}

#[test]
fn a_monitor_in_its_restart_back_off_holds_no_lock_and_sees_a_stop_at_once() {
    if !root_or_skip("a_monitor_in_its_restart_back_off_holds_no_lock_and_sees_a_stop_at_once") {
        return;
    }
    let h = Host::new("backoff");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.181.1.0/24"]);
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "l",
        "--restart",
        "always",
        "--network",
        "n",
        "--",
        "false",
    ]);
    // 100 ms, 200, 400, 800, 1.6 s: after four restarts each back-off is over a second.
    assert!(wait_for(15, || h.json(&["inspect", "l"])[0]
        ["restart_count"]
        .as_u64()
        .is_some_and(|c| c >= 5)));
    let monitors = monitors_of(&h);
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    // It reads the store once a second (a moment with its connection open): most samples
    // find no lock of its.
    let free = (0..20)
        .filter(|_| {
            std::thread::sleep(Duration::from_millis(50));
            locks_held_by(&h, &monitors).is_empty()
        })
        .count();
    assert!(
        free >= 15,
        "the monitor held store locks in {} of 20 samples",
        20 - free
    );
    // `stop` during the back-off: the monitor sees the write and records the end itself
    // (`stop` would after 5 s).
    let began = Instant::now();
    h.weft_ok(&["stop", "l"]);
    let took = began.elapsed();
    let v = h.json(&["inspect", "l"]);
    assert_eq!(v[0]["status"], "exited", "{v}");
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    assert!(
        wait_for(5, || monitors
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())),
        "the monitor stayed"
    );
    let count = h.json(&["inspect", "l"])[0]["restart_count"].clone();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(h.json(&["inspect", "l"])[0]["restart_count"], count);
}

#[test]
fn commands_opening_a_new_state_directory_at_once_all_succeed() {
    if !root_or_skip("commands_opening_a_new_state_directory_at_once_all_succeed") {
        return;
    }
    // Each round a fresh state directory, six commands making its schema at once (as the
    // agent starting and `daemon status` polling for it do): none may fail with "database
    // is locked". Before the schema creation waited, about one round in five did.
    for _ in 0..15 {
        let h = Host::new("sln");
        let runs: Vec<Vec<String>> = (0..6)
            .map(|_| vec!["network".to_string(), "ls".to_string()])
            .collect();
        h.weft_parallel(&runs);
    }
}
