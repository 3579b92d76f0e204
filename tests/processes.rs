//! Every process of a sandbox ends with it, by any path: `rm -f`, `stop`, `gc` after a crash,
//! `--rm`, a foreground run ending. The commands here leave background jobs and daemons that
//! double-forked away from them; the test finds them all by the sandbox's network namespace
//! and checks, by pid and start time, that none survives, that the namespace is released
//! and that its address can be handed out again without a duplicate on the bridge.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Host;

/// A command leaving a background job and a daemon (double fork, own session) behind it.
const FAMILY: &str = "sleep 600 & (setsid sleep 600 &); exec sleep 600";

/// A process: pid and start time (so a reused pid is never taken for it).
type Proc = (u32, u64);

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit(')').next()?;
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Whether the process still runs (a zombie does not).
fn alive(p: Proc) -> bool {
    stat_fields(p.0).is_some_and(|f| {
        f.first().is_some_and(|s| s != "Z" && s != "X")
            && f.get(19).and_then(|t| t.parse().ok()) == Some(p.1)
    })
}

/// A network namespace's identity: its inode, and its cookie. A namespace's inode is reused
/// once it is freed (another test's new namespace may get it while this one is checked); its
/// cookie never is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NsId {
    inode: u64,
    cookie: u64,
}

/// The cookie of the network namespace `path` refers to (a handle or `/proc/PID/ns/net`), read
/// with `SO_NETNS_COOKIE` from a socket made inside it on a short-lived thread.
fn netns_cookie(path: &str) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).ok()?;
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor we own; it changes only this short-lived thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        // SAFETY: socket(2) with constant arguments.
        let s = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return None;
        }
        let mut cookie: u64 = 0;
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<u64>()).ok()?;
        // SAFETY: getsockopt writes at most `len` bytes into `cookie`, a live local.
        let r = unsafe {
            libc::getsockopt(
                s,
                libc::SOL_SOCKET,
                libc::SO_NETNS_COOKIE,
                std::ptr::addr_of_mut!(cookie).cast(),
                &mut len,
            )
        };
        // SAFETY: closes the socket made above.
        unsafe { libc::close(s) };
        (r == 0).then_some(cookie)
    })
    .join()
    .ok()
    .flatten()
}

/// The identity of a namespace handle (a bind mount of the namespace itself).
fn netns_id(path: &str) -> NsId {
    use std::os::unix::fs::MetadataExt;
    NsId {
        inode: std::fs::metadata(path).unwrap().ino(),
        cookie: netns_cookie(path).expect("SO_NETNS_COOKIE on the sandbox's namespace"),
    }
}

/// Every process in the network namespace `id`, with its command line.
fn procs_in(id: NsId) -> Vec<(Proc, Vec<String>)> {
    let want = format!("net:[{}]", id.inode);
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let link = format!("/proc/{pid}/ns/net");
        let ns = std::fs::read_link(&link);
        if !ns.map(|l| l.to_string_lossy() == want).unwrap_or(false) {
            continue;
        }
        // Same inode, another namespace: the sandbox's was freed and the number reused.
        if netns_cookie(&link) != Some(id.cookie) {
            continue;
        }
        let Some(start) = stat_fields(pid).and_then(|f| f.get(19)?.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        out.push(((pid, start), argv));
    }
    out
}

/// Waits until `n` processes `sleep 600` run in the namespace; returns all its processes.
fn wait_for_sleepers(inode: NsId, n: usize) -> Vec<Proc> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let procs = procs_in(inode);
        let sleepers = procs.iter().filter(|(_, a)| *a == ["sleep", "600"]).count();
        if sleepers >= n {
            return procs.into_iter().map(|(p, _)| p).collect();
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} sleepers in the sandbox, found {procs:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn netns_of(h: &Host, sandbox: &str) -> String {
    h.json(&["inspect", sandbox])[0]["netns"]
        .as_str()
        .unwrap()
        .to_string()
}

fn bridge_of(h: &Host, network: &str) -> String {
    h.json(&["network", "inspect", network])[0]["bridge"]
        .as_str()
        .unwrap()
        .to_string()
}

fn bridge_ports(h: &Host, bridge: &str) -> Vec<String> {
    h.ns.ip(&["-o", "link", "show", "master", bridge])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asserts that none of `procs` runs, that no process is left in the namespace, that its
/// veth leaves the bridge (the kernel destroys a released namespace asynchronously), and that
/// a new sandbox given the same address is the only one on the bridge.
fn assert_all_gone(h: &Host, procs: &[Proc], inode: NsId, network: &str, ip: &str) {
    let left: Vec<&Proc> = procs.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "processes survived the sandbox: {left:?}");
    let in_ns = procs_in(inode);
    assert!(
        in_ns.is_empty(),
        "processes left in its namespace: {in_ns:?}"
    );
    let bridge = bridge_of(h, network);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bridge_ports(h, &bridge).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ports = bridge_ports(h, &bridge);
    assert!(
        ports.is_empty(),
        "the old veth stayed on the bridge: {ports:?}"
    );
    h.weft_ok(&[
        "create",
        "--name",
        "again",
        "--network",
        network,
        "--ip",
        ip,
    ]);
    let ports = bridge_ports(h, &bridge);
    assert_eq!(ports.len(), 1, "duplicate on the bridge: {ports:?}");
    h.weft_ok(&["rm", "again"]);
}

/// A running sandbox `s` whose command left a background job and a daemon, with a second
/// process started by `weft exec`; returns its namespace inode, its processes and the exec.
fn family(h: &Host, ip: &str) -> (NsId, Vec<Proc>, std::process::Child) {
    h.weft_ok(&["network", "create", "n", "--subnet", "10.160.0.0/24"]);
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "n",
        "--ip",
        ip,
        "--",
        "sh",
        "-c",
        FAMILY,
    ]);
    let inode = netns_id(&netns_of(h, "s"));
    wait_for_sleepers(inode, 3);
    let exec = h.spawn(&["exec", "s", "--", "sleep", "600"]);
    let procs = wait_for_sleepers(inode, 4);
    (inode, procs, exec)
}

#[test]
fn rm_force_ends_every_process_of_the_sandbox() {
    if !common::root_or_skip("rm_force_ends_every_process_of_the_sandbox") {
        return;
    }
    let h = Host::new("prm");
    let (inode, procs, exec) = family(&h, "10.160.0.5");
    h.weft_ok(&["rm", "-f", "s"]);
    assert_all_gone(&h, &procs, inode, "n", "10.160.0.5");
    let out = exec.wait_with_output().unwrap();
    assert!(!out.status.success(), "the exec'd process was not ended");
}

#[test]
fn stop_ends_every_process_of_the_sandbox() {
    if !common::root_or_skip("stop_ends_every_process_of_the_sandbox") {
        return;
    }
    let h = Host::new("pstop");
    let (inode, procs, exec) = family(&h, "10.160.0.6");
    h.weft_ok(&["stop", "s"]);
    let left: Vec<&Proc> = procs.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "processes survived stop: {left:?}");
    assert_eq!(h.json(&["inspect", "s"])[0]["status"], "exited");
    // SIGTERM reached the exec'd command through its init.
    let out = exec.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    h.weft_ok(&["rm", "s"]);
    assert_all_gone(&h, &procs, inode, "n", "10.160.0.6");
}

#[test]
fn gc_after_a_crash_at_rms_kill_step_ends_every_process() {
    if !common::root_or_skip("gc_after_a_crash_at_rms_kill_step_ends_every_process") {
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let h = Host::new("pcrash");
    let (inode, procs, exec) = family(&h, "10.160.0.7");
    let out = common::run(
        h.weft_cmd(&["rm", "-f", "s"])
            .env("WEFT_TEST_CRASH_BEFORE_KILL", "1"),
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "rm should have been killed by the test hook: {out:?}"
    );
    assert!(
        procs.iter().all(|p| alive(*p)),
        "the crash came before the kill step"
    );
    h.weft_ok(&["gc"]);
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
    assert_all_gone(&h, &procs, inode, "n", "10.160.0.7");
    let _ = exec.wait_with_output().unwrap();
}

/// A command that leaves a background job and a daemon, then ends once `go` exists.
fn family_until(go: &std::path::Path) -> String {
    format!(
        "sleep 600 & (setsid sleep 600 &); while [ ! -e {} ]; do sleep 0.05; done",
        go.display()
    )
}

#[test]
fn auto_remove_and_foreground_runs_end_every_process() {
    if !common::root_or_skip("auto_remove_and_foreground_runs_end_every_process") {
        return;
    }
    let h = Host::new("pauto");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.160.1.0/24"]);

    // Detached with --rm: the command ends by itself, the sandbox goes with all it started.
    let go = h.dir.join("go-detached");
    h.weft_ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "d",
        "--network",
        "n",
        "--ip",
        "10.160.1.5",
        "--",
        "sh",
        "-c",
        &family_until(&go),
    ]);
    let inode = netns_id(&netns_of(&h, "d"));
    let procs = wait_for_sleepers(inode, 2);
    std::fs::write(&go, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !h.json(&["ps", "-a"]).as_array().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the --rm sandbox was not removed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_all_gone(&h, &procs, inode, "n", "10.160.1.5");

    // In the foreground: the run ends with its command, and so does everything it started.
    let go = h.dir.join("go-foreground");
    let run = h.spawn(&[
        "run",
        "--name",
        "f",
        "--network",
        "n",
        "--ip",
        "10.160.1.6",
        "--",
        "sh",
        "-c",
        &family_until(&go),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let netns = loop {
        let ps = h.json(&["ps"]);
        if let Some(ns) = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "f")
            .and_then(|s| s["netns"].as_str())
        {
            break ns.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the foreground run did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let inode = netns_id(&netns);
    let procs = wait_for_sleepers(inode, 2);
    std::fs::write(&go, "").unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
    assert_all_gone(&h, &procs, inode, "n", "10.160.1.6");
}

#[test]
fn a_command_runs_as_pid_1s_child_and_keeps_its_exit_code_and_umask() {
    if !common::root_or_skip("a_command_runs_as_pid_1s_child_and_keeps_its_exit_code_and_umask") {
        return;
    }
    let h = Host::new("pinit");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.160.2.0/24"]);
    // The command is PID 2 of its own PID namespace, under weft's init.
    let out = h.weft_ok(&["run", "--network", "n", "--", "sh", "-c", "echo $$; umask"]);
    assert_eq!(out.lines().next(), Some("2"), "{out}");
    // weft keeps its own files private, but the command gets the caller's umask.
    // SAFETY: reading the umask means setting it; it is set back at once.
    let mine = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    assert_eq!(out.lines().nth(1), Some(format!("{mine:04o}").as_str()));
    let code = h.weft(&["run", "--network", "n", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(code.status.code(), Some(128 + libc::SIGTERM));
    let missing = h.weft_err(127, &["run", "--network", "n", "--", "/nonexistent/cmd"]);
    assert!(
        missing.contains("cannot run \"/nonexistent/cmd\""),
        "{missing}"
    );
    let missing = h.weft_err(
        127,
        &["run", "-d", "--network", "n", "--", "/nonexistent/cmd"],
    );
    assert!(
        missing.contains("cannot run \"/nonexistent/cmd\""),
        "{missing}"
    );
    assert!(
        h.json(&["ps", "-a"]).as_array().unwrap().is_empty(),
        "failed runs leave no sandbox"
    );
}

#[test]
fn concurrent_rm_force_has_exactly_one_winner() {
    if !common::root_or_skip("concurrent_rm_force_has_exactly_one_winner") {
        return;
    }
    let h = Host::new("prace");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.160.3.0/24"]);
    h.sleeper("g1", &["--network", "n"]);
    let children: Vec<_> = (0..10).map(|_| h.spawn(&["rm", "-f", "g1"])).collect();
    let mut winners = 0;
    let mut errors = BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            winners += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(
                err.contains("no such sandbox \"g1\"")
                    || err.contains("is being removed by process"),
                "unclear error: {err}"
            );
            errors.insert(err);
        }
    }
    assert_eq!(
        winners, 1,
        "exactly one rm may succeed; the others said {errors:?}"
    );
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
}

#[test]
fn concurrent_network_rm_has_exactly_one_winner() {
    if !common::root_or_skip("concurrent_network_rm_has_exactly_one_winner") {
        return;
    }
    let h = Host::new("pnrace");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.160.4.0/24"]);
    let children: Vec<_> = (0..10).map(|_| h.spawn(&["network", "rm", "n"])).collect();
    let mut winners = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            winners += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(
                err.contains("no such network \"n\"")
                    || err.contains("is being removed by process"),
                "unclear error: {err}"
            );
        }
    }
    assert_eq!(winners, 1, "exactly one network rm may succeed");
    assert!(h.json(&["network", "ls"]).as_array().unwrap().is_empty());
}

/// Every process in the PID namespace of the init `init` (the init included).
fn procs_in_pidns(init: u32) -> Vec<Proc> {
    let Ok(want) = std::fs::read_link(format!("/proc/{init}/ns/pid")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .as_ref()
            == Some(&want)
        {
            if let Some(start) = stat_fields(pid).and_then(|f| f.get(19)?.parse().ok()) {
                out.push((pid, start));
            }
        }
    }
    out
}

#[test]
fn rm_never_signals_a_process_planted_among_a_sandboxs_inits() {
    if !common::root_or_skip("rm_never_signals_a_process_planted_among_a_sandboxs_inits") {
        return;
    }
    let h = Host::new("pplant");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.160.5.0/24"]);
    h.sleeper("other", &["--network", "n"]);
    let other = u32::try_from(h.json(&["inspect", "other"])[0]["pid"].as_u64().unwrap()).unwrap();
    let other_init = (
        other,
        stat_fields(other).unwrap()[19].parse::<u64>().unwrap(),
    );
    for (name, network) in [("bridged", "n"), ("hosted", "host")] {
        h.weft_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--",
            "sh",
            "-c",
            FAMILY,
        ]);
        let v = h.json(&["inspect", name]);
        let id = v[0]["id"].as_str().unwrap().to_string();
        let init = u32::try_from(v[0]["pid"].as_u64().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let procs = loop {
            let procs = procs_in_pidns(init);
            // The init, sh's background job, the daemon and sh itself (now a sleep).
            if procs.len() >= 4 {
                break procs;
            }
            assert!(Instant::now() < deadline, "{name}: only {procs:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        // A host process, recorded as if it were one of the sandbox's inits.
        let mut victim = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let vpid = victim.id();
        let vstart = stat_fields(vpid).unwrap()[19].parse::<u64>().unwrap();
        let inits = h.run_dir().join("sandboxes").join(&id).join("inits");
        std::fs::write(inits.join(format!("{vpid}-{vstart}")), "").unwrap();
        if network != "host" {
            // Another sandbox's init, in another network namespace. (A host-mode sandbox's
            // inits are told apart from host processes only by being PID namespace inits.)
            let (pid, start) = other_init;
            std::fs::write(inits.join(format!("{pid}-{start}")), "").unwrap();
        }
        h.weft_ok(&["rm", "-f", name]);
        let survived = alive((vpid, vstart));
        let _ = victim.kill();
        let _ = victim.wait();
        assert!(
            survived,
            "{name}: rm -f killed a host process planted in inits/"
        );
        let left: Vec<&Proc> = procs.iter().filter(|p| alive(**p)).collect();
        assert!(
            left.is_empty(),
            "{name}: its own processes survived: {left:?}"
        );
    }
}
