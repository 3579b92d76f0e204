//! The sandbox commands as a Docker user types them: flags before the command, Docker's exit
//! codes, `create` + `start`, `restart`, `--restart` policies, `logs`, Docker's spellings of
//! the sandbox options, and published ports freed while a sandbox is stopped.

mod common;

use std::time::{Duration, Instant};

use common::{inspect, stderr, stdout, wait_for, weft_bin, Host};

fn host(prefix: &str, subnet: &str) -> Host {
    let h = Host::new(prefix);
    h.weft_ok(&["network", "create", "n", "--subnet", subnet]);
    h
}

#[test]
fn options_end_at_the_command_and_unknown_ones_are_usage_errors() {
    let h = host("flags", "10.180.0.0/24");
    let err = h.weft_err(2, &["run", "--bogus", "--", "true"]);
    assert!(err.contains("unexpected argument '--bogus'"), "{err}");
    let err = h.weft_err(2, &["run"]);
    assert!(err.contains("weft run needs a command"), "{err}");
    let err = h.weft_err(2, &["run", "--network", "n"]);
    assert!(err.contains("weft run needs a command"), "{err}");
    let err = h.weft_err(2, &["exec", "--bogus", "x", "true"]);
    assert!(err.contains("unexpected argument '--bogus'"), "{err}");
    // Options before the command, with or without `--`; none after its first word.
    let out = h.weft_ok(&[
        "run",
        "--network",
        "n",
        "-e",
        "X=1",
        "--dns",
        "1.1.1.1",
        "sh",
        "-c",
        "echo $X; grep nameserver /etc/resolv.conf",
    ]);
    // (On a network with DNS the gateway is the name server; weft forwards to --dns.)
    assert_eq!(out, "1\nnameserver 10.180.0.1\n");
    let out = h.weft_ok(&["run", "--network", "n", "echo", "--bogus", "-e", "X=1"]);
    assert_eq!(out, "--bogus -e X=1\n");
    let out = h.weft_ok(&["run", "-it", "--network", "n", "--", "echo", "ok"]);
    assert_eq!(out, "ok\n");
    // --init: weft's init is PID 1 anyway; the command is its child.
    let out = h.weft_ok(&["run", "--init", "--network", "n", "sh", "-c", "echo $PPID"]);
    assert_eq!(out, "1\n");
    // An option given twice: the last value counts, as with Docker's flags; lists add up.
    h.weft_ok(&[
        "run",
        "-d",
        "-d",
        "--name",
        "first",
        "--name",
        "last",
        "-h",
        "a",
        "-h",
        "b",
        "-e",
        "X=1",
        "-e",
        "Y=2",
        "--network",
        "n",
        "sleep",
        "600",
    ]);
    assert_eq!(
        h.weft_ok(&["exec", "last", "sh", "-c", "hostname; echo $X$Y"]),
        "b\n12\n"
    );
    assert!(h.weft_ok(&["ps", "-aq", "-f", "name=first"]).is_empty());
    // rm -fv, as Docker's (no volumes to remove).
    assert_eq!(h.weft_ok(&["rm", "-fv", "last"]), "last\n");
    let err = h.weft_err(1, &["stop", "-t", "5", "-t", "0", "--", "nosuch"]);
    assert!(err.contains("no such sandbox \"nosuch\""), "{err}");
    // -i: stdin reaches the command.
    let mut child = h
        .weft_cmd(&["run", "-i", "--network", "n", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"typed\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "typed\n");
    // -h is the hostname, as on `docker run`; help is --help.
    let out = h.weft_ok(&[
        "run",
        "-h",
        "box",
        "--network",
        "n",
        "cat",
        "/proc/sys/kernel/hostname",
    ]);
    assert_eq!(out, "box\n");
    let help = h.weft_ok(&["run", "--help"]);
    let own = help.find("--detach").unwrap();
    let global = help.find("Global options").unwrap();
    assert!(own < global, "own options first: {help}");
    assert!(
        help.contains("Examples:") && help.contains("Exit codes"),
        "{help}"
    );
    // exec: options before the sandbox, the command's own after it.
    h.weft_ok(&["create", "--name", "idle", "--network", "n"]);
    let out = h.weft_ok(&[
        "exec",
        "-e",
        "Y=2",
        "-w",
        "/proc",
        "idle",
        "sh",
        "-c",
        "echo $Y; pwd",
    ]);
    assert_eq!(out, "2\n/proc\n");
    let out = h.weft_ok(&["exec", "-it", "idle", "echo", "-n", "--x"]);
    assert_eq!(out, "--x");
}

#[test]
fn exit_codes_are_docker_run_s() {
    let h = host("codes", "10.180.1.0/24");
    let err = h.weft_err(127, &["run", "--network", "n", "--", "nosuchcmd"]);
    assert_eq!(
        err,
        "error: cannot run \"nosuchcmd\": executable file not found in $PATH\n"
    );
    let err = h.weft_err(127, &["run", "-d", "--network", "n", "--", "nosuchcmd"]);
    assert_eq!(
        err,
        "error: cannot run \"nosuchcmd\": executable file not found in $PATH\n"
    );
    let err = h.weft_err(126, &["run", "--network", "n", "--", "/etc/passwd"]);
    assert_eq!(
        err,
        "error: cannot run \"/etc/passwd\": permission denied\n"
    );
    let err = h.weft_err(126, &["run", "-d", "--network", "n", "--", "/etc/passwd"]);
    assert_eq!(
        err,
        "error: cannot run \"/etc/passwd\": permission denied\n"
    );
    let out = h.weft(&["run", "--network", "n", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137));
    let out = h.weft(&["run", "--network", "n", "--", "sh", "-c", "exit 125"]);
    assert_eq!(out.status.code(), Some(125), "the command's own 125");
    // weft itself fails: 125.
    let err = h.weft_err(125, &["run", "--network", "nosuch", "--", "true"]);
    assert!(err.starts_with("error: no such network"), "{err}");
    let err = h.weft_err(
        125,
        &["run", "--network", "n", "-w", "/nonexistent", "--", "true"],
    );
    assert_eq!(
        err,
        "error: cannot run \"true\": working directory \"/nonexistent\" does not exist or is not a directory\n"
    );
    let err = h.weft_err(125, &["run", "--network", "n", "-w", "rel", "--", "true"]);
    assert!(err.contains("must be an absolute path"), "{err}");
    // exec: the same codes.
    h.weft_ok(&["create", "--name", "idle", "--network", "n"]);
    let err = h.weft_err(127, &["exec", "idle", "nosuchcmd"]);
    assert_eq!(
        err,
        "error: cannot run \"nosuchcmd\": executable file not found in $PATH\n"
    );
    h.weft_err(126, &["exec", "idle", "/etc/passwd"]);
    assert_eq!(
        h.weft(&["exec", "idle", "sh", "-c", "exit 9"])
            .status
            .code(),
        Some(9)
    );
    let err = h.weft_err(125, &["exec", "nosuch", "true"]);
    assert!(err.contains("no such sandbox"), "{err}");
    // Nothing is left of the failed runs.
    assert_eq!(h.json(&["ps", "-a"]).as_array().unwrap().len(), 1);
}

#[test]
fn create_then_start_runs_the_stored_command_and_logs_keep_its_output() {
    let h = host("start", "10.180.2.0/24");
    let script = "echo out; echo err >&2; exit 3";
    h.weft_ok(&[
        "create",
        "--name",
        "c1",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(inspect(&h, "c1")["status"], "created");
    assert_eq!(h.weft_ok(&["logs", "c1"]), "");
    assert_eq!(h.weft_ok(&["start", "c1"]), "c1\n");
    assert!(wait_for(10, || inspect(&h, "c1")["status"] == "exited"));
    assert_eq!(inspect(&h, "c1")["exit_code"], 3);
    assert_eq!(h.weft_ok(&["logs", "c1"]), "out\nerr\n");
    // start -a: the new output, and the command's exit code.
    let out = h.weft(&["start", "-a", "c1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\nerr\n");
    assert_eq!(h.weft_ok(&["logs", "c1"]), "out\nerr\nout\nerr\n");
    // --tail.
    assert_eq!(h.weft_ok(&["logs", "--tail", "0", "c1"]), "");
    assert_eq!(h.weft_ok(&["logs", "--tail", "1", "c1"]), "err\n");
    assert_eq!(h.weft_ok(&["logs", "-n", "3", "c1"]), "err\nout\nerr\n");
    assert_eq!(
        h.weft_ok(&["logs", "--tail", "18446744073709551615", "c1"]),
        "out\nerr\nout\nerr\n"
    );
    let err = h.weft_err(2, &["logs", "--tail", "18446744073709551616", "c1"]);
    assert!(err.contains("expected a number of lines or `all`"), "{err}");
    h.weft_err(2, &["logs", "--tail", "-1", "c1"]);
    // Docker's form without a name or `--`: the command follows the options.
    let id = h.weft_ok(&["create", "--network", "n", "echo", "hi"]);
    let id = id.trim();
    h.weft_ok(&["start", "-a", id]);
    assert_eq!(h.weft_ok(&["logs", id]), "hi\n");
    // Nothing to start.
    h.weft_ok(&["create", "--name", "idle", "--network", "n"]);
    let err = h.weft_err(125, &["start", "idle"]);
    assert!(err.contains("has no command to start"), "{err}");
    // A command not on PATH is refused at create, with the usual cause: Docker's habit of
    // naming the sandbox first, which would store the name as the command.
    let err = h.weft_err(125, &["create", "bad", "--", "true"]);
    assert!(
        err.starts_with(
            "error: cannot create a sandbox to run \"bad\": executable file not found in $PATH"
        ) && err.contains("weft create --name NAME"),
        "{err}"
    );
    assert!(h.weft_ok(&["ps", "-a", "-q", "-f", "name=bad"]).is_empty());
    // A stored command that cannot run at start: 127, and the sandbox stays, exited with it.
    h.weft_ok(&["create", "--name", "bad", "--network", "n", "/no/such/cmd"]);
    let err = h.weft_err(127, &["start", "bad"]);
    assert_eq!(
        err,
        "error: cannot run \"/no/such/cmd\": no such file or directory\n"
    );
    let v = inspect(&h, "bad");
    assert_eq!(
        (v["status"].clone(), v["exit_code"].clone()),
        ("exited".into(), 127.into()),
        "{v}"
    );
    let err = h.weft_err(125, &["start", "nosuch"]);
    assert!(err.contains("no such sandbox"), "{err}");
}

#[test]
fn logs_follow_until_the_command_exits() {
    let h = host("follow", "10.180.3.0/24");
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "f",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "echo a; sleep 1; echo b",
    ]);
    let t = Instant::now();
    let out = h.weft_ok(&["logs", "-f", "f"]);
    assert_eq!(out, "a\nb\n");
    assert!(t.elapsed() < Duration::from_secs(8));
    // Following an exited sandbox returns at once.
    let t = Instant::now();
    assert_eq!(h.weft_ok(&["logs", "-f", "--tail", "1", "f"]), "b\n");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn restart_policies_are_parsed_like_docker_s() {
    let h = host("rpol", "10.180.4.0/24");
    for (policy, _) in [
        ("on-failure:-1", 0),
        ("on-failure:99999999999", 0),
        ("sometimes", 0),
        ("always:3", 0),
    ] {
        let err = h.weft_err(
            125,
            &[
                "run",
                "-d",
                "--restart",
                policy,
                "--network",
                "n",
                "--",
                "true",
            ],
        );
        assert_eq!(
            err,
            format!("error: invalid --restart {policy:?}: use no, on-failure[:MAX-RETRIES], always or unless-stopped\n")
        );
    }
    let err = h.weft_err(
        125,
        &[
            "run",
            "-d",
            "--rm",
            "--restart",
            "always",
            "--network",
            "n",
            "--",
            "true",
        ],
    );
    assert_eq!(err, "error: conflicting options: --restart and --rm\n");
    let err = h.weft_err(
        125,
        &["run", "--restart", "always", "--network", "n", "--", "true"],
    );
    assert!(err.contains("--restart needs -d"), "{err}");
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
    // on-failure:0 is Docker's "no limit".
    h.weft_ok(&[
        "create",
        "--name",
        "z",
        "--restart",
        "on-failure:0",
        "--network",
        "n",
        "true",
    ]);
}

#[test]
fn on_failure_restarts_up_to_its_limit_and_not_after_success() {
    let h = host("onfail", "10.180.5.0/24");
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
        "echo run; exit 4",
    ]);
    assert!(wait_for(15, || {
        let v = inspect(&h, "f");
        v["status"] == "exited" && v["restart_count"] == 2 && v["pid"].is_null()
    }));
    std::thread::sleep(Duration::from_millis(700));
    let v = inspect(&h, "f");
    assert_eq!(
        (v["restart_count"].clone(), v["exit_code"].clone()),
        (2.into(), 4.into()),
        "{v}"
    );
    assert_eq!(h.weft_ok(&["logs", "f"]), "run\nrun\nrun\n");
    assert_eq!(v["restart_policy"], "on-failure:2");
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "ok",
        "--restart",
        "on-failure",
        "--network",
        "n",
        "--",
        "true",
    ]);
    assert!(wait_for(10, || inspect(&h, "ok")["status"] == "exited"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect(&h, "ok")["restart_count"], 0);
}

#[test]
fn a_crash_loop_is_stopped_by_stop_and_removed_by_rm() {
    let h = host("loop", "10.180.6.0/24");
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
        "sh",
        "-c",
        "echo x; exit 1",
    ]);
    assert!(wait_for(15, || inspect(&h, "l")["restart_count"].as_u64() >= Some(3)));
    let t = Instant::now();
    h.weft_ok(&["stop", "-t", "1", "l"]);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "stop took {:?}",
        t.elapsed()
    );
    let count = inspect(&h, "l")["restart_count"].clone();
    std::thread::sleep(Duration::from_secs(1));
    let v = inspect(&h, "l");
    assert_eq!(v["restart_count"], count, "restarted after stop: {v}");
    assert_eq!(v["status"], "exited");
    // Started again, it loops again (count from 0); rm refuses it while it restarts, as
    // Docker does; rm -f ends it all.
    h.weft_ok(&["start", "l"]);
    assert!(wait_for(10, || inspect(&h, "l")["restart_count"].as_u64() >= Some(2)));
    let refused = wait_for(10, || {
        let out = h.weft(&["rm", "l"]);
        let err = stderr(&out);
        assert!(
            out.status.success() || err.contains("is running") || err.contains("is restarting"),
            "{err}"
        );
        err.contains("is restarting (--restart always)")
    });
    assert!(refused);
    h.weft_ok(&["rm", "-f", "l"]);
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        h.json(&["ps", "-a"]).as_array().unwrap().is_empty(),
        "the monitor brought it back"
    );
    let left: Vec<_> = std::fs::read_dir(h.run_dir().join("netns"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_sandbox_waiting_to_be_restarted_is_restarting() {
    let h = host("rsting", "10.180.13.0/24");
    let run = |name: &str| {
        h.weft_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            "always",
            "--network",
            "n",
            "--",
            "sh",
            "-c",
            "exit 3",
        ]);
    };
    run("r");
    // From the 6th restart on the back-off is 6.4 s or more: long enough to look at.
    assert!(wait_for(20, || inspect(&h, "r")["restart_count"].as_u64() >= Some(6)));
    assert!(wait_for(5, || inspect(&h, "r")["status"] == "restarting"));
    let v = inspect(&h, "r");
    assert_eq!(
        (v["exit_code"].clone(), v["pid"].clone()),
        (3.into(), serde_json::Value::Null),
        "{v}"
    );
    // Listed without -a, as `docker ps` does; STATUS in Docker's words; no ports column.
    let table = h.weft_ok(&["ps"]);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("Restarting (3) ") && row.contains(" ago ") && row.ends_with(" r"),
        "{table}"
    );
    let id = h.weft_ok(&["ps", "-q", "--no-trunc", "-f", "status=restarting"]);
    assert_eq!(id.trim(), v["id"].as_str().unwrap());
    assert_eq!(h.weft_ok(&["ps", "-q", "-f", "status=exited"]), "");
    assert_eq!(h.weft_ok(&["ps", "-q", "-f", "status=running"]), "");
    assert_eq!(h.json(&["ps"])[0]["status"], "restarting");
    // stop during the back-off: at once, and it stays exited with its last code.
    let t = Instant::now();
    assert_eq!(h.weft_ok(&["stop", "r"]), "r\n");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let v = inspect(&h, "r");
    assert_eq!(
        (v["status"].clone(), v["exit_code"].clone()),
        ("exited".into(), 3.into()),
        "{v}"
    );
    assert!(h.weft_ok(&["ps", "-q"]).is_empty());
    // rm during the back-off: refused as Docker refuses it, --force at once.
    run("r2");
    assert!(wait_for(20, || inspect(&h, "r2")["restart_count"].as_u64()
        >= Some(6)));
    assert!(wait_for(5, || inspect(&h, "r2")["status"] == "restarting"));
    let err = h.weft_err(1, &["rm", "r2"]);
    assert!(err.contains("is restarting (--restart always)"), "{err}");
    let t = Instant::now();
    assert_eq!(h.weft_ok(&["rm", "-f", "r2"]), "r2\n");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    assert!(h.weft_ok(&["ps", "-a", "-q", "-f", "name=r2"]).is_empty());
}

#[test]
fn restart_stops_and_starts_the_command_again() {
    let h = host("rst", "10.180.7.0/24");
    h.sleeper("s", &["--network", "n"]);
    let pid = inspect(&h, "s")["pid"].clone();
    assert_eq!(h.weft_ok(&["restart", "-t", "0", "s"]), "s\n");
    let v = inspect(&h, "s");
    assert_eq!(v["status"], "running");
    assert_ne!(v["pid"], pid);
    // A stopped sandbox with --restart always stays stopped.
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--restart",
        "always",
        "--network",
        "n",
        "--",
        "sleep",
        "600",
    ]);
    h.weft_ok(&["stop", "-t", "0", "a"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect(&h, "a")["status"], "exited");
}

#[test]
fn a_monitor_killed_while_restarting_leaves_nothing_after_gc() {
    let h = host("mkill", "10.180.8.0/24");
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
        "sh",
        "-c",
        "sleep 0.2; exit 1",
    ]);
    assert!(wait_for(15, || inspect(&h, "l")["restart_count"].as_u64() >= Some(2)));
    let monitor = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("__monitor") && c.contains(&h.state_dir().display().to_string())
            })
        })
        .expect("the monitor runs");
    // SAFETY: a plain kill of the monitor this test started.
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(600));
    h.weft_ok(&["gc"]);
    let v = inspect(&h, "l");
    assert_eq!(v["status"], "exited", "{v}");
    assert!(v["pid"].is_null(), "{v}");
    let count = v["restart_count"].clone();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        inspect(&h, "l")["restart_count"],
        count,
        "restarted without a monitor"
    );
    h.weft_ok(&["rm", "l"]);
    h.weft_ok(&["gc"]);
    let left: Vec<_> = std::fs::read_dir(h.run_dir().join("netns"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let links = h.ns.ip(&["-o", "link", "show"]);
    assert!(
        wait_for(5, || !h.ns.ip(&["-o", "link", "show"]).contains(": wv")),
        "{links}"
    );
}

#[test]
fn docker_spellings_of_the_sandbox_options() {
    let h = Host::new("spell");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.180.9.0/24",
        "--ipv6",
        "--subnet",
        "fd00:180:9::/64",
    ]);
    h.weft_ok(&[
        "create",
        "--name",
        "s",
        "--network",
        "n",
        "--ip6",
        "fd00:180:9::99",
        "--network-alias",
        "db",
        "--mac-address",
        "02:42:0a:b4:09:99",
        "-h",
        "box",
        "--add-host",
        "api:10.0.0.5",
        "--add-host",
        "gw:host-gateway",
        "--add-host",
        "v6:[fd00::1]",
        "--label",
        "solo",
    ]);
    let v = inspect(&h, "s");
    assert_eq!(v["hostname"], "box");
    // A label without a value, as Docker's `--label KEY`.
    assert_eq!(v["labels"], serde_json::json!({"solo": ""}));
    assert_eq!(
        h.weft_ok(&["ps", "-aq", "-f", "label=solo"])
            .lines()
            .count(),
        1
    );
    assert_eq!(v["networks"][0]["ipv6"], "fd00:180:9::99/64");
    assert_eq!(v["networks"][0]["aliases"][0], "db");
    assert_eq!(v["networks"][0]["mac"], "02:42:0a:b4:09:99");
    let mac = h.weft_ok(&["exec", "s", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac, "02:42:0a:b4:09:99\n");
    let hosts = h.weft_ok(&["exec", "s", "cat", "/etc/hosts"]);
    assert!(hosts.contains("10.0.0.5\tapi\n"), "{hosts}");
    assert!(hosts.contains("10.180.9.1\tgw\n"), "{hosts}");
    assert!(hosts.contains("fd00::1\tv6\n"), "{hosts}");
    // DNS settings replace the host's lines of their kind.
    let conf = h.weft_ok(&[
        "run",
        "--network",
        "n",
        "--dns",
        "1.1.1.1",
        "--dns",
        "9.9.9.9",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:2",
        "cat",
        "/etc/resolv.conf",
    ]);
    let lines: Vec<&str> = conf
        .lines()
        .filter(|l| {
            ["nameserver", "search", "domain", "options"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect();
    // On a network with DNS the gateway is the only name server (weft's resolver forwards
    // to the --dns servers); search and options replace the host's.
    assert_eq!(
        lines,
        [
            "nameserver 10.180.9.1",
            "search corp.example",
            "options ndots:2"
        ]
    );
    // The environment: files first, -e wins; NAME alone passes weft's own.
    let env_file = h.dir.join("env");
    std::fs::write(&env_file, "# comment\n\nA=from-file\nB=x=y\n").unwrap();
    let out = h
        .weft_cmd(&[
            "run",
            "--network",
            "n",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "A=given",
            "-e",
            "PASSED",
            "-w",
            "/proc",
            "sh",
            "-c",
            "echo $A $B $PASSED; pwd",
        ])
        .env("PASSED", "through")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "given x=y through\n/proc\n",
        "{}",
        stderr(&out)
    );
    std::fs::write(&env_file, "OK=1\n=bad\n").unwrap();
    let err = h.weft_err(
        125,
        &[
            "run",
            "--network",
            "n",
            "--env-file",
            env_file.to_str().unwrap(),
            "true",
        ],
    );
    assert!(err.contains(", line 2: \"=bad\""), "{err}");
    let err = h.weft_err(
        125,
        &["run", "--network", "n", "--env-file", "/dev/zero", "true"],
    );
    assert_eq!(
        err,
        "error: --env-file /dev/zero is larger than 1048576 bytes; is it an environment file?\n"
    );
    // A MAC already on the network is refused, naming its sandbox.
    let err = h.weft_err(
        125,
        &[
            "create",
            "--network",
            "n",
            "--mac-address",
            "02:42:0a:b4:09:99",
        ],
    );
    assert_eq!(
        err,
        "error: --mac-address 02:42:0a:b4:09:99: already the MAC of sandbox \"s\" on network \"n\"\n"
    );
    // An exec sees the sandbox's environment.
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "e",
        "--network",
        "n",
        "-e",
        "K=v",
        "sleep",
        "600",
    ]);
    assert_eq!(h.weft_ok(&["exec", "e", "sh", "-c", "echo $K"]), "v\n");
}

#[test]
fn hostile_values_of_the_docker_options_are_refused() {
    let h = host("hostile", "10.180.10.0/24");
    let refused = |args: &[&str], msg: &str| {
        let mut full = vec!["run", "--network", "n"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--", "true"]);
        let err = h.weft_err(125, &full);
        assert_eq!(err, format!("error: {msg}\n"), "{args:?}");
    };
    refused(
        &["--add-host", "db\n1.2.3.4 evil:10.0.0.5"],
        "invalid --add-host \"db\\n1.2.3.4 evil:10.0.0.5\": expected NAME:IP (IP may be host-gateway), e.g. db:10.0.0.5",
    );
    refused(
        &["--add-host", "db:10.0.0.5\nevil"],
        "invalid --add-host \"db:10.0.0.5\\nevil\": expected NAME:IP (IP may be host-gateway), e.g. db:10.0.0.5",
    );
    refused(
        &["--add-host", "db:999.1.1.1"],
        "invalid --add-host \"db:999.1.1.1\": expected NAME:IP (IP may be host-gateway), e.g. db:10.0.0.5",
    );
    for mac in [
        "01:00:5e:00:00:01",
        "00:00:00:00:00:00",
        "ff:ff:ff:ff:ff:ff",
        "02:42:ac:11:00",
    ] {
        refused(
            &["--mac-address", mac],
            &format!("invalid --mac-address {mac:?}: expected a unicast MAC like 02:42:ac:11:00:02 (first byte even, not all zeroes)"),
        );
    }
    refused(
        &["--dns", "one.one"],
        "invalid --dns \"one.one\": expected an IP address like 1.1.1.1",
    );
    refused(
        &["--dns-search", "a\nnameserver 6.6.6.6"],
        "invalid --dns-search \"a\\nnameserver 6.6.6.6\": one word, no spaces",
    );
    refused(
        &["--dns-option", "x y"],
        "invalid --dns-option \"x y\": one word, no spaces",
    );
    refused(
        &["--ip6", "10.0.0.1"],
        "invalid --ip6 \"10.0.0.1\": expected an IPv6 address like fd00::5",
    );
    refused(
        &["-e", "=x"],
        "invalid -e \"=x\": expected NAME=VALUE or NAME (taken from weft's environment)",
    );
    // What Docker refuses with --network host.
    let host_refused = |args: &[&str], what: &str| {
        let mut full = vec!["run", "--network", "host"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--", "true"]);
        let err = h.weft_err(125, &full);
        assert_eq!(
            err,
            format!("error: conflicting options: {what} and the network mode (--network host)\n")
        );
    };
    host_refused(&["--hostname", "x"], "hostname");
    host_refused(&["--alias", "x"], "network-scoped aliases (--alias)");
    host_refused(
        &["--network-alias", "x"],
        "network-scoped aliases (--alias)",
    );
    host_refused(&["--mac-address", "02:00:00:00:00:01"], "mac-address");
    host_refused(
        &["--add-host", "a:1.2.3.4"],
        "custom host-to-IP mapping (--add-host)",
    );
    host_refused(&["--dns", "1.1.1.1"], "dns");
    let err = h.weft_err(
        125,
        &["run", "--network", "host", "--ip", "10.0.0.1", "--", "true"],
    );
    assert!(err.contains("--ip needs a bridge network"), "{err}");
    // -p with the host's network: discarded with Docker's warning.
    let out = h.weft(&["run", "--network", "host", "-p", "8080:80", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stderr(&out),
        "WARNING: Published ports are discarded when using host network mode\n"
    );
    let err = h.weft_err(
        125,
        &["run", "--network", "none", "--alias", "x", "--", "true"],
    );
    assert!(
        err.contains("only supported for user-defined networks"),
        "{err}"
    );
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
}

/// Whether a TCP socket can be bound to `port` on all addresses in the host namespace now.
fn bindable(h: &Host, port: u16) -> bool {
    let out =
        h.ns.cmd(
            "python3",
            &[
                "-c",
                &format!("import socket; s=socket.socket(); s.bind(('0.0.0.0', {port}))"),
            ],
        )
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn a_stopped_sandbox_holds_no_host_port() {
    let h = Host::new("pstop");
    h.config("agent = true\n");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.180.11.0/24"]);
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "p",
        "--network",
        "n",
        "-p",
        "18411:80",
        "--",
        "sleep",
        "600",
    ]);
    assert!(!bindable(&h, 18411), "the agent holds the published port");
    let nft = || h.sh("nft list ruleset");
    assert!(nft().contains("18411"), "{}", nft());
    h.weft_ok(&["stop", "-t", "0", "p"]);
    assert!(wait_for(5, || bindable(&h, 18411)), "freed at stop");
    assert!(!nft().contains("18411"), "{}", nft());
    assert_eq!(inspect(&h, "p")["ports"], serde_json::json!([]));
    // Claimed again at start.
    h.weft_ok(&["start", "p"]);
    assert!(!bindable(&h, 18411));
    assert!(nft().contains("18411"));
    // Another sandbox takes it while p is stopped: p's start fails, naming it.
    h.weft_ok(&["stop", "-t", "0", "p"]);
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "q",
        "--network",
        "n",
        "-p",
        "18411:80",
        "--",
        "sleep",
        "600",
    ]);
    let err = h.weft_err(125, &["start", "p"]);
    assert_eq!(
        err,
        "error: cannot start sandbox \"p\": port 18411/tcp on 0.0.0.0 is published by sandbox \"q\" since it stopped\n"
    );
    assert_eq!(inspect(&h, "p")["status"], "exited");
    h.weft_ok(&["rm", "-f", "q"]);
    // A host process takes it: named too.
    let mut holder =
        h.ns.cmd(
            weft_bin(),
            &["tool", "serve", "0.0.0.0:18411", "--timeout", "20"],
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(5, || !bindable(&h, 18411)));
    let err = h.weft_err(125, &["start", "p"]);
    assert!(
        err.starts_with("error: cannot start sandbox \"p\": port 18411/tcp is in use on the host since it stopped: 0.0.0.0:18411 is held by weft (pid "),
        "{err}"
    );
    let _ = holder.kill();
    let _ = holder.wait();
    h.weft_ok(&["start", "p"]);
    assert_eq!(inspect(&h, "p")["status"], "running");
    assert!(!bindable(&h, 18411));
}

#[test]
fn user_runs_the_command_as_another_user() {
    let h = host("user", "10.180.12.0/24");
    let out = h.weft_ok(&[
        "run",
        "--network",
        "n",
        "-u",
        "nobody",
        "sh",
        "-c",
        "id -u; id -g; echo $HOME",
    ]);
    assert_eq!(out, "65534\n65534\n/nonexistent\n");
    let out = h.weft_ok(&[
        "run",
        "--network",
        "n",
        "-u",
        "4242:7",
        "-e",
        "HOME=/h",
        "sh",
        "-c",
        "id -u; id -g; id -G; echo $HOME",
    ]);
    assert_eq!(out, "4242\n7\n7\n/h\n");
    // Not root any more: no capabilities left.
    let caps = h.weft_ok(&[
        "run",
        "--network",
        "n",
        "-u",
        "nobody",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(caps, "CapEff:\t0000000000000000\n");
    let err = h.weft_err(125, &["run", "--network", "n", "-u", "nosuchuser", "true"]);
    assert_eq!(
        err,
        "error: unable to find user nosuchuser: no matching entries in /etc/passwd\n"
    );
    let err = h.weft_err(
        125,
        &["run", "--network", "n", "-u", "nobody:nosuchgroup", "true"],
    );
    assert_eq!(
        err,
        "error: unable to find group nosuchgroup: no matching entries in /etc/group\n"
    );
    let err = h.weft_err(125, &["run", "--network", "n", "-u", "a:b:c", "true"]);
    assert_eq!(
        err,
        "error: invalid --user \"a:b:c\": expected USER[:GROUP] (names or numeric ids)\n"
    );
    // exec: the sandbox's user, or its own -u.
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "n",
        "-u",
        "nobody",
        "sleep",
        "600",
    ]);
    assert_eq!(h.weft_ok(&["exec", "s", "id", "-u"]), "65534\n");
    assert_eq!(h.weft_ok(&["exec", "-u", "0", "s", "id", "-u"]), "0\n");
}

#[test]
fn a_log_path_planted_by_someone_else_is_never_written_through() {
    let h = host("logpath", "10.180.14.0/24");
    let id = h.weft_ok(&[
        "create",
        "--name",
        "l",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "echo out",
    ]);
    let log = h
        .state_dir()
        .join("logs")
        .join(format!("{}.log", id.trim()));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let victim = h.dir.join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    let refused = |why: &str| {
        let out = weft_within(&h, 5, &["start", "l"]);
        assert_eq!(out.status.code(), Some(125));
        assert_eq!(
            stderr(&out),
            format!("error: opening the log file {}: {why}\n", log.display())
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        assert_eq!(inspect(&h, "l")["status"], "created");
    };
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    refused("it is a symbolic link; weft does not follow one there");
    std::fs::remove_file(&log).unwrap();
    std::fs::hard_link(&victim, &log).unwrap();
    refused("it has other hard links; weft does not write to a file shared with another name");
    std::fs::remove_file(&log).unwrap();
    // A FIFO: opening it would wait for a reader; `logs` would wait for a writer.
    nix_mkfifo(&log);
    refused("it is not a regular file");
    let out = weft_within(&h, 5, &["logs", "l"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: reading {}: it is not a regular file\n",
            log.display()
        )
    );
    std::fs::remove_file(&log).unwrap();
    // What weft made itself is used.
    h.weft_ok(&["start", "l"]);
    assert!(wait_for(10, || inspect(&h, "l")["status"] == "exited"));
    assert_eq!(h.weft_ok(&["logs", "l"]), "out\n");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::symlink_metadata(&log).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

/// Runs weft, failing the test (and killing weft) if it takes longer than `secs`: what is
/// tested here could otherwise hang the test instead of failing it.
fn weft_within(h: &Host, secs: u64, args: &[&str]) -> std::process::Output {
    let mut child = h
        .weft_cmd(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let done = wait_for(secs, || child.try_wait().unwrap().is_some());
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        panic!("weft {args:?} still ran after {secs} s");
    }
    child.wait_with_output().unwrap()
}

fn nix_mkfifo(p: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn hostile_files_and_edge_values_of_the_run_options() {
    let h = host("hostile2", "10.180.15.0/24");
    // --env-file: a FIFO nobody writes to reads as empty at once; a pipe works.
    let fifo = h.dir.join("env.fifo");
    nix_mkfifo(&fifo);
    let out = weft_within(
        &h,
        10,
        &[
            "run",
            "--network",
            "n",
            "--env-file",
            fifo.to_str().unwrap(),
            "sh",
            "-c",
            "echo \"[$A]\"",
        ],
    );
    assert_eq!(stdout(&out), "[]\n", "{}", stderr(&out));
    let out = h
        .weft_cmd(&[
            "run",
            "--network",
            "n",
            "--env-file",
            "/dev/stdin",
            "sh",
            "-c",
            "echo \"[$A]\"",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b"A=piped\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(stdout(&out), "[piped]\n", "{}", stderr(&out));
    let err = h.weft_err(
        125,
        &[
            "run",
            "--network",
            "n",
            "--env-file",
            "/nonexistent",
            "true",
        ],
    );
    assert!(
        err.starts_with("error: reading --env-file /nonexistent: "),
        "{err}"
    );
    // --restart on-failure:N at the edges of its range.
    h.weft_ok(&[
        "create",
        "--name",
        "max",
        "--restart",
        "on-failure:4294967295",
        "--network",
        "n",
        "true",
    ]);
    assert_eq!(
        inspect(&h, "max")["restart_policy"],
        "on-failure:4294967295"
    );
    for bad in [
        "on-failure:4294967296",
        "on-failure:-0",
        "on-failure:",
        "on-failure:1.5",
    ] {
        let err = h.weft_err(125, &["create", "--restart", bad, "--network", "n", "true"]);
        assert!(
            err.starts_with(&format!("error: invalid --restart {bad:?}")),
            "{err}"
        );
    }
    // -w relative, or not a directory, on run and exec.
    let err = h.weft_err(125, &["run", "--network", "n", "-w", "tmp", "true"]);
    assert_eq!(
        err,
        "error: invalid --workdir \"tmp\": the working directory must be an absolute path\n"
    );
    let err = h.weft_err(125, &["run", "--network", "n", "-w", "", "true"]);
    assert!(err.contains("must be an absolute path"), "{err}");
    h.weft_ok(&["create", "--name", "idle", "--network", "n"]);
    let err = h.weft_err(125, &["exec", "-w", "../etc", "idle", "pwd"]);
    assert!(err.contains("must be an absolute path"), "{err}");
    let err = h.weft_err(125, &["exec", "-w", "/etc/passwd", "idle", "pwd"]);
    assert!(err.contains("is not a directory"), "{err}");
    // --add-host: more bad forms, all refused before anything is made.
    for bad in [
        "",
        ":",
        "db:10.0.0.5:80",
        "db:[10.0.0.5",
        "db:fe80::1%eth0",
        "d b:10.0.0.5",
        "db:10.0.0.5 evil",
        "db\t:10.0.0.5",
    ] {
        let err = h.weft_err(125, &["run", "--network", "n", "--add-host", bad, "true"]);
        assert!(
            err.starts_with("error: invalid --add-host"),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        h.json(&["ps", "-a", "-f", "name=max"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.json(&["ps", "-a"]).as_array().unwrap().len(), 2);
}

#[test]
fn the_last_port_is_published_freed_at_stop_and_claimed_again_at_start() {
    let h = host("plast", "10.180.16.0/24");
    h.weft_ok(&[
        "create",
        "--name",
        "p",
        "--network",
        "n",
        "-p",
        "65535:65535",
        "-p",
        "65534-65535:65534-65535/udp",
        "--",
        "sleep",
        "600",
    ]);
    let nft = || h.sh("nft list ruleset");
    let published = || {
        let r = nft();
        r.contains("tcp . 65535 : ") && r.contains("udp . 65534 : ") && r.contains("udp . 65535 : ")
    };
    h.weft_ok(&["start", "p"]);
    assert_eq!(
        h.weft_ok(&["port", "p"]),
        "65535/tcp -> 0.0.0.0:65535\n65534/udp -> 0.0.0.0:65534\n65535/udp -> 0.0.0.0:65535\n"
    );
    assert!(published(), "{}", nft());
    // Docker's `port SANDBOX PORT[/PROTO]`: where that one port is published.
    assert_eq!(h.weft_ok(&["port", "p", "65535"]), "0.0.0.0:65535\n");
    assert_eq!(h.weft_ok(&["port", "p", "65534/udp"]), "0.0.0.0:65534\n");
    assert_eq!(h.json(&["port", "p", "65535/udp"])[0]["protocol"], "udp");
    let err = h.weft_err(1, &["port", "p", "65534"]);
    assert_eq!(
        err,
        "error: no public port '65534/tcp' published for \"p\"\n"
    );
    for bad in ["0", "65536", "80/icmp", "x"] {
        let err = h.weft_err(2, &["port", "p", bad]);
        assert!(err.contains("expected PORT[/tcp|udp|sctp]"), "{bad}: {err}");
    }
    h.weft_ok(&["stop", "-t", "0", "p"]);
    assert!(!nft().contains(" . 6553"), "{}", nft());
    assert_eq!(h.weft_ok(&["port", "p"]), "");
    h.weft_ok(&["start", "p"]);
    assert!(published(), "{}", nft());
    // Another sandbox takes 65535/tcp while p is stopped: p's start names it, exit 125.
    h.weft_ok(&["stop", "-t", "0", "p"]);
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "q",
        "--network",
        "n",
        "-p",
        "65535:80",
        "--",
        "sleep",
        "600",
    ]);
    let err = h.weft_err(125, &["start", "p"]);
    assert_eq!(
        err,
        "error: cannot start sandbox \"p\": port 65535/tcp on 0.0.0.0 is published by sandbox \"q\" since it stopped\n"
    );
    assert_eq!(inspect(&h, "p")["status"], "exited");
    assert_eq!(h.weft_ok(&["port", "p"]), "");
    // Beyond the last port: refused.
    let err = h.weft_err(
        125,
        &[
            "create",
            "--network",
            "n",
            "-p",
            "65535-65536:80-81",
            "true",
        ],
    );
    assert!(err.contains("port 65536 is out of range"), "{err}");
    h.weft_ok(&["rm", "-f", "q"]);
    h.weft_ok(&["start", "p"]);
    assert!(published());
    // Host port 0, as Docker's `-p 0:80`: a free one.
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "z",
        "--network",
        "n",
        "-p",
        "0:80",
        "--",
        "sleep",
        "600",
    ]);
    let port = h.json(&["port", "z"])[0]["host_port"].as_u64().unwrap();
    assert!((1024..=65535).contains(&port), "{port}");
}

#[test]
fn a_command_that_exited_holds_no_host_port() {
    let h = host("pexit", "10.180.17.0/24");
    let nft = || h.sh("nft list map inet weft dnat4any");
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "e",
        "--network",
        "n",
        "-p",
        "18417:80",
        "--",
        "sh",
        "-c",
        "sleep 0.3; exit 2",
    ]);
    assert!(nft().contains("tcp . 18417 : "), "{}", nft());
    assert!(wait_for(10, || inspect(&h, "e")["status"] == "exited"));
    // As Docker: an exited container's ports are free for others at once.
    assert!(wait_for(5, || !nft().contains("18417")), "{}", nft());
    assert_eq!(h.weft_ok(&["port", "e"]), "");
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "n",
        "-p",
        "18417:80",
        "--",
        "sleep",
        "600",
    ]);
    let err = h.weft_err(125, &["start", "e"]);
    assert_eq!(
        err,
        "error: cannot start sandbox \"e\": port 18417/tcp on 0.0.0.0 is published by sandbox \"other\" since it stopped\n"
    );
    h.weft_ok(&["rm", "-f", "other"]);
    h.weft_ok(&["start", "e"]);
    assert_eq!(h.weft_ok(&["port", "e"]), "80/tcp -> 0.0.0.0:18417\n");
    assert!(nft().contains("tcp . 18417 : "), "{}", nft());
    // Out of restarts (on-failure:1): freed too.
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "f",
        "--network",
        "n",
        "--restart",
        "on-failure:1",
        "-p",
        "18418:80",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    assert!(wait_for(10, || {
        let v = inspect(&h, "f");
        v["status"] == "exited" && v["restart_count"] == 1
    }));
    assert!(wait_for(5, || !nft().contains("18418")), "{}", nft());
}

#[test]
fn create_rm_is_removed_after_its_command_and_start_a_still_gets_its_code() {
    let h = host("crm", "10.180.18.0/24");
    h.weft_ok(&[
        "create",
        "--rm",
        "--name",
        "once",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "echo bye; exit 5",
    ]);
    assert_eq!(inspect(&h, "once")["status"], "created");
    let out = weft_within(&h, 20, &["start", "-a", "once"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out), "bye\n");
    assert!(h.weft_ok(&["ps", "-aq", "-f", "name=once"]).is_empty());
    // Detached start: removed too.
    h.weft_ok(&["create", "--rm", "--name", "bg", "--network", "n", "true"]);
    h.weft_ok(&["start", "bg"]);
    assert!(wait_for(10, || h
        .weft_ok(&["ps", "-aq", "-f", "name=bg"])
        .is_empty()));
    let err = h.weft_err(
        125,
        &[
            "create",
            "--rm",
            "--restart",
            "always",
            "--network",
            "n",
            "true",
        ],
    );
    assert_eq!(err, "error: conflicting options: --restart and --rm\n");
    // start -a of a command restarted by its policy: the code of its last run.
    h.weft_ok(&[
        "create",
        "--name",
        "r",
        "--restart",
        "on-failure:2",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "exit 4",
    ]);
    let out = weft_within(&h, 20, &["start", "-a", "r"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(inspect(&h, "r")["restart_count"], 2);
}
