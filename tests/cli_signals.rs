//! A Docker user's `kill`, `wait` and `exec -d`: the signal the command sees, the exit codes
//! printed, the restart policy after a kill, and detached commands that end with the sandbox.

mod common;

use std::time::{Duration, Instant};

use common::{inspect, stderr, stdout, wait_for, Host};

fn host(prefix: &str, subnet: &str) -> Host {
    let h = Host::new(prefix);
    h.weft_ok(&["network", "create", "n", "--subnet", subnet]);
    h
}

/// A detached sandbox whose shell reports each signal of `traps` it gets in its log
/// (`got HUP`), exits 7 on SIGTERM, and says `ready` once its traps are set.
fn trapper(h: &Host, name: &str, extra: &[&str]) {
    let script = "for s in HUP USR1 INT WINCH PIPE; do trap \"echo got $s\" $s; done; \
                  trap 'echo got TERM; exit 7' TERM; echo ready; \
                  while :; do sleep 0.05; done";
    let mut args = vec!["run", "-d", "--name", name, "--network", "n"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    h.weft_ok(&args);
    assert!(
        wait_for(10, || h.weft_ok(&["logs", name]).contains("ready")),
        "{name} never got ready: {}",
        h.weft_ok(&["logs", name])
    );
}

/// Processes of the machine running `sleep MARKER`.
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            // `sleep MARKER` itself, not the init that started it (`weft __init -- sleep …`).
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c == format!("sleep\0{marker}\0").as_bytes())
        })
        .count()
}

#[test]
fn kill_sends_the_signal_named_to_the_command_and_wait_prints_its_code() {
    if !common::root_or_skip("kill_sends_the_signal") {
        return;
    }
    let h = host("kill", "10.181.0.0/24");
    trapper(&h, "t", &[]);
    // By name without SIG, with it, any case, by number: the command sees each.
    assert_eq!(h.weft_ok(&["kill", "-s", "HUP", "t"]), "t\n");
    assert_eq!(h.weft_ok(&["kill", "--signal", "sigusr1", "t"]), "t\n");
    assert_eq!(h.weft_ok(&["kill", "-s", "28", "t"]), "t\n");
    assert_eq!(h.weft_ok(&["kill", "-s", "SIGPIPE", "t"]), "t\n");
    assert!(
        wait_for(10, || {
            let l = h.weft_ok(&["logs", "t"]);
            ["got HUP", "got USR1", "got WINCH", "got PIPE"]
                .iter()
                .all(|s| l.contains(s))
        }),
        "{}",
        h.weft_ok(&["logs", "t"])
    );
    assert_eq!(inspect(&h, "t")["status"], "running");
    // SIGTERM: the command exits 7; `wait` prints it, and at once once it has exited.
    let v = h.json(&["kill", "-s", "TERM", "t"]);
    assert_eq!(v, serde_json::json!({"killed": ["t"], "errors": []}));
    assert_eq!(h.weft_ok(&["wait", "t"]), "7\n");
    let t = Instant::now();
    assert_eq!(h.weft_ok(&["wait", "t"]), "7\n");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(h.weft_ok(&["logs", "t"]).contains("got TERM"));
    // Signals the init does not pass on are refused, naming them, before anything is sent.
    trapper(&h, "u", &[]);
    let err = h.weft_err(1, &["kill", "-s", "STOP", "u"]);
    assert!(
        err.contains("signal SIGSTOP cannot reach a sandbox's command"),
        "{err}"
    );
    for bad in ["BOGUS", "0", "65", "99999999999999999999", "-9", ""] {
        let err = h.weft_err(2, &["kill", &format!("--signal={bad}"), "u"]);
        assert!(err.contains(&format!("invalid signal {bad:?}")), "{err}");
    }
    assert_eq!(inspect(&h, "u")["status"], "running");
}

#[test]
fn kill_defaults_to_sigkill_and_goes_through_every_name() {
    if !common::root_or_skip("kill_defaults_to_sigkill") {
        return;
    }
    let h = host("killall", "10.181.1.0/24");
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    h.weft_ok(&["create", "--name", "c", "--network", "n", "--", "true"]);
    // An `exec` of `a` dies with it, as a container's processes die with its PID 1.
    h.weft_ok(&["exec", "-d", "a", "--", "sleep", "601.17"]);
    assert!(wait_for(5, || processes_with("601.17") == 1));
    // Unknown and not running: errors naming each, exit 1; the others are killed.
    let out = h.weft(&["kill", "a", "nosuch", "c", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a\nb\n");
    let err = stderr(&out);
    assert!(
        err.contains("no such sandbox") && err.contains("nosuch"),
        "{err}"
    );
    assert!(
        err.contains("cannot kill sandbox \"c\": it is not running"),
        "{err}"
    );
    // Recorded by the time `kill` returns: exited with 128+9.
    for n in ["a", "b"] {
        let v = inspect(&h, n);
        assert_eq!(
            (v["status"].clone(), v["exit_code"].clone()),
            ("exited".into(), 137.into()),
            "{v}"
        );
    }
    assert_eq!(processes_with("601.17"), 0);
    assert_eq!(h.weft_ok(&["wait", "a", "b"]), "137\n137\n");
    // Killing it again: not running.
    let v = h.weft(&["--format", "json", "kill", "a"]);
    assert_eq!(v.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["killed"], serde_json::json!([]));
    assert!(v["errors"][0].as_str().unwrap().contains("\"a\""), "{v}");
    // `--format table` is not a kill's.
    h.weft_err(2, &["--format", "table", "kill", "a"]);
    // A foreground `run`: the signal reaches its command, and `run` exits as it did.
    let mut fg = h
        .weft_cmd(&[
            "run",
            "--name",
            "fg",
            "--network",
            "n",
            "--",
            "sleep",
            "604.17",
        ])
        .spawn()
        .unwrap();
    assert!(wait_for(10, || processes_with("604.17") == 1));
    assert_eq!(h.weft_ok(&["kill", "-s", "INT", "fg"]), "fg\n");
    assert_eq!(fg.wait().unwrap().code(), Some(130));
    let mut fg = h
        .weft_cmd(&[
            "run",
            "--name",
            "fg",
            "--network",
            "n",
            "--",
            "sleep",
            "605.17",
        ])
        .spawn()
        .unwrap();
    assert!(wait_for(10, || processes_with("605.17") == 1));
    h.weft_ok(&["kill", "fg"]);
    assert_eq!(fg.wait().unwrap().code(), Some(137));
}

#[test]
fn a_killed_sandbox_is_restarted_by_its_policy_a_stopped_one_is_not() {
    if !common::root_or_skip("a_killed_sandbox_is_restarted") {
        return;
    }
    let h = host("killrst", "10.181.2.0/24");
    trapper(&h, "r", &["--restart", "always"]);
    let pid = inspect(&h, "r")["pid"].clone();
    h.weft_ok(&["kill", "r"]);
    assert!(
        wait_for(10, || {
            let v = inspect(&h, "r");
            v["status"] == "running" && v["pid"] != pid && v["restart_count"] == 1
        }),
        "{}",
        inspect(&h, "r")
    );
    // A `wait` begun before a kill returns that run's code (the policy runs it again).
    let waiter = h
        .weft_cmd(&["wait", "r"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(wait_for(10, || h
        .weft_ok(&["logs", "r"])
        .matches("ready")
        .count()
        == 2));
    h.weft_ok(&["kill", "-s", "TERM", "r"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "7\n");
    // `stop` is final.
    assert!(wait_for(10, || inspect(&h, "r")["status"] == "running"));
    h.weft_ok(&["stop", "-t", "5", "r"]);
    std::thread::sleep(Duration::from_millis(1500));
    let v = inspect(&h, "r");
    assert_eq!(v["status"], "exited", "{v}");
    assert_eq!(h.weft_ok(&["wait", "r"]), "7\n");
}

#[test]
fn wait_blocks_without_spinning_and_prints_codes_in_order() {
    if !common::root_or_skip("wait_blocks_without_spinning") {
        return;
    }
    let h = host("wait", "10.181.3.0/24");
    for (name, script) in [("slow", "sleep 2; exit 3"), ("fast", "exit 0")] {
        h.weft_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "n",
            "--",
            "sh",
            "-c",
            script,
        ]);
    }
    let t = Instant::now();
    let child = h
        .weft_cmd(&["wait", "slow", "nosuch", "fast"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, into valid out-pointers (`child` is not waited for
    // again: dropping it does not).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    // The CPU weft spent blocked for about two seconds (plus its start and the store):
    // a poll every few milliseconds would show.
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap() * 1_000_000 + u64::try_from(t.tv_usec).unwrap()
    };
    let cpu = Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime));
    eprintln!("weft wait blocked {took:?} using {cpu:?} of CPU");
    assert!(cpu < Duration::from_millis(150), "wait used {cpu:?} of CPU");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1);
    drop(child);
    // The same, read through its output this time.
    let out = h.weft(&["wait", "slow", "nosuch", "fast"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "3\n0\n");
    assert!(stderr(&out).contains("no such sandbox"), "{}", stderr(&out));
    let v = h.json(&["wait", "fast", "slow"]);
    assert_eq!(
        v,
        serde_json::json!({
            "exited": [{"name": "fast", "exit_code": 0}, {"name": "slow", "exit_code": 3}],
            "errors": []
        })
    );
    // Created, not started: waited for until it has run.
    h.weft_ok(&[
        "create",
        "--name",
        "later",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "exit 4",
    ]);
    let waiter = h
        .weft_cmd(&["wait", "later"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    h.weft_ok(&["start", "later"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "4\n");
    // A foreground run removes its sandbox when its command exits: its code is the run's.
    let mut fg = h
        .weft_cmd(&[
            "run",
            "--name",
            "fgw",
            "--network",
            "n",
            "--",
            "sh",
            "-c",
            "sleep 1; exit 3",
        ])
        .spawn()
        .unwrap();
    assert!(wait_for(10, || h
        .weft(&["inspect", "fgw"])
        .status
        .success()));
    let err = h.weft_err(1, &["wait", "fgw"]);
    assert!(
        err.contains("was removed when its command exited (--rm, or a foreground run)"),
        "{err}"
    );
    assert_eq!(fg.wait().unwrap().code(), Some(3));
    // A sandbox with no command has nothing to wait for.
    h.weft_ok(&["create", "--name", "idle", "--network", "n"]);
    let err = h.weft_err(1, &["wait", "idle"]);
    assert!(err.contains("has no command"), "{err}");
}

#[test]
fn exec_detached_returns_at_once_and_ends_with_the_sandbox() {
    if !common::root_or_skip("exec_detached_returns_at_once") {
        return;
    }
    let h = host("execd", "10.181.4.0/24");
    h.sleeper("s", &["--network", "n"]);
    let t = Instant::now();
    let out = h.weft(&[
        "exec",
        "-d",
        "s",
        "--",
        "sh",
        "-c",
        "echo noisy; echo loud >&2; exec sleep 602.17",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(t.elapsed() < Duration::from_secs(5));
    // Its output is discarded, as Docker's: nothing printed, nothing in the sandbox's log.
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
    assert!(wait_for(5, || processes_with("602.17") == 1));
    assert!(!h.weft_ok(&["logs", "s"]).contains("noisy"));
    // It runs in the sandbox: its network namespace.
    let flag = h.dir.join("execd-flag").display().to_string();
    h.weft_ok(&[
        "exec",
        "-d",
        "s",
        "--",
        "sh",
        "-c",
        &format!("ip -o -4 addr show > {flag}.tmp; mv {flag}.tmp {flag}"),
    ]);
    assert!(wait_for(5, || std::path::Path::new(&flag).exists()));
    let seen = std::fs::read_to_string(&flag).unwrap();
    assert!(seen.contains("10.181.4."), "{seen}");
    // A command that cannot start: Docker's codes, as for `exec`.
    h.weft_err(127, &["exec", "-d", "s", "--", "/no/such/cmd"]);
    h.weft_err(127, &["exec", "-d", "s", "nosuchcmd"]);
    // A command that fails after starting: -d returned before, with 0.
    h.weft_ok(&["exec", "-d", "s", "sh", "-c", "exit 5"]);
    // Not running: refused.
    h.weft_err(125, &["exec", "-d", "nosuch", "true"]);
    // `stop` ends the detached command with the sandbox's own.
    h.weft_ok(&["stop", "-t", "1", "s"]);
    assert_eq!(processes_with("602.17"), 0);
    // The records of the ones that ended are pruned at the next `exec -d`.
    h.weft_ok(&["start", "s"]);
    h.weft_ok(&["exec", "-d", "s", "--", "sleep", "603.17"]);
    let id = inspect(&h, "s")["id"].as_str().unwrap().to_string();
    let inits = std::fs::read_dir(h.run_dir().join("sandboxes").join(&id).join("inits"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(inits, 2, "the command's init and one live exec's recorded");
    h.weft_ok(&["rm", "-f", "s"]);
    assert_eq!(processes_with("603.17"), 0);
}

/// The lines of `weft logs -t`: (time, text).
fn timed_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let (t, text) = l.split_once(' ').unwrap_or((l, ""));
            (t.to_string(), text.to_string())
        })
        .collect()
}

#[test]
fn logs_show_times_and_filter_by_since_and_until() {
    if !common::root_or_skip("logs_show_times_and_filter") {
        return;
    }
    let h = host("logtime", "10.181.5.0/24");
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "l",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "echo first; echo err >&2; sleep 2; printf 'second\\nno newline'",
    ]);
    assert_eq!(h.weft_ok(&["wait", "l"]), "0\n");
    // Without -t: the command's bytes as it wrote them.
    assert_eq!(h.weft_ok(&["logs", "l"]), "first\nerr\nsecond\nno newline");
    let out = h.weft_ok(&["logs", "-t", "l"]);
    let lines = timed_lines(&out);
    assert_eq!(
        lines.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        ["first", "err", "second", "no newline"],
        "{out}"
    );
    // RFC 3339 in UTC with nanoseconds, in order, the sleep between the two groups.
    for (t, _) in &lines {
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
    assert!(lines[0].0 <= lines[1].0 && lines[1].0 < lines[2].0, "{out}");
    let (t1, t2) = (lines[0].0.clone(), lines[2].0.clone());
    // --since: from that time on (inclusive); --until: before it.
    assert_eq!(
        h.weft_ok(&["logs", "--since", &t2, "l"]),
        "second\nno newline"
    );
    assert_eq!(h.weft_ok(&["logs", "--until", &t2, "l"]), "first\nerr\n");
    assert_eq!(
        h.weft_ok(&["logs", "--since", &t1, "--until", &t2, "-t", "l"]),
        // (Lines read in one chunk carry the same time: `first` too.)
        format!("{} first\n{} err\n", lines[0].0, lines[1].0)
    );
    // Durations back from now; the same with an offset zone; Unix seconds.
    assert_eq!(
        h.weft_ok(&["logs", "--since", "1h30m", "l"])
            .lines()
            .count(),
        4
    );
    assert_eq!(h.weft_ok(&["logs", "--until", "10m", "l"]), "");
    assert_eq!(h.weft_ok(&["logs", "--since", "0s", "l"]), "");
    assert_eq!(h.weft_ok(&["logs", "--since", "1", "l"]).lines().count(), 4);
    assert_eq!(
        h.weft_ok(&[
            "logs",
            "--since",
            "2000-01-01T01:00:00+01:00",
            "--tail",
            "1",
            "l"
        ]),
        "no newline"
    );
    // Bad values: usage errors naming the value and the forms.
    for bad in [
        "yesterday",
        "-5m",
        "99999999999999999999h",
        "2026-02-30T00:00:00Z",
    ] {
        let err = h.weft_err(2, &["logs", &format!("--since={bad}"), "l"]);
        assert!(err.contains(&format!("invalid --since {bad:?}")), "{err}");
    }
    // Started again: the new run's first line is a line of its own, with its time, even
    // though the last run's output ended in the middle of one.
    assert_eq!(
        h.weft_ok(&["start", "-a", "l"]),
        "first\nerr\nsecond\nno newline"
    );
    let out = h.weft_ok(&["logs", "-t", "l"]);
    let again = timed_lines(&out);
    assert_eq!(
        again.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        [
            "first",
            "err",
            "second",
            "no newline",
            "first",
            "err",
            "second",
            "no newline"
        ],
        "{out}"
    );
    assert!(again[4].0 > again[3].0, "{out}");
    assert_eq!(
        h.weft_ok(&["logs", "--since", &again[4].0, "l"]),
        "first\nerr\nsecond\nno newline"
    );
    let err = h.weft_err(2, &["logs", "--until", "1h-", "l"]);
    assert!(
        err.contains("invalid --until \"1h-\": use an RFC 3339 time"),
        "{err}"
    );
}

#[test]
fn logs_survive_hostile_output() {
    if !common::root_or_skip("logs_survive_hostile_output") {
        return;
    }
    let h = host("loghostile", "10.181.6.0/24");
    // 10 MB on one line with no newline, then binary and invalid UTF-8, then a line
    // pretending to carry a time.
    let script = "head -c 10000000 /dev/zero | tr '\\0' x; printf '\\n\\377\\376\\000bin\\r\\n'; \
                  printf '2000-01-01T00:00:00.000000000Z fake\\n'";
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "x",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let t = Instant::now();
    assert_eq!(h.weft_ok(&["wait", "x"]), "0\n");
    let out = h.weft(&["logs", "x"]);
    assert!(out.status.success());
    assert!(t.elapsed() < Duration::from_secs(30));
    let mut want = vec![b'x'; 10_000_000];
    want.extend_from_slice(b"\n\xff\xfe\x00bin\r\n2000-01-01T00:00:00.000000000Z fake\n");
    assert!(out.stdout == want, "{} bytes", out.stdout.len());
    // -t: three lines, each with weft's time; the planted one is text.
    let out = h.weft(&["logs", "-t", "x"]);
    let lines: Vec<&[u8]> = out.stdout.split(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), 4);
    for l in &lines[..3] {
        assert_eq!(l.get(30), Some(&b' '));
        // This century's time, not the planted year 2000.
        assert!(l.starts_with(b"20") && !l.starts_with(b"2000"));
    }
    assert!(lines[2].ends_with(b" 2000-01-01T00:00:00.000000000Z fake"));
    // --since a time: the planted one's text does not make it old.
    let out = h.weft_ok(&["logs", "--since", "1h", "x"]);
    assert!(out.ends_with("2000-01-01T00:00:00.000000000Z fake\n"));
    // --tail 1 of it and -f of an exited sandbox: at once.
    assert_eq!(
        h.weft_ok(&["logs", "-f", "--tail", "1", "x"]),
        "2000-01-01T00:00:00.000000000Z fake\n"
    );
}
