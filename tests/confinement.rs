//! Root in a sandbox is not root on the host: every process started in a sandbox (`run`,
//! `run -d`, `exec`, `--network host` too) has exactly Docker's default capabilities, so it
//! cannot enter another namespace, change its own or the host's routes, or regain more
//! through a setuid binary; and weft's own state (records, logs, namespace handles, the
//! agent's socket) is hidden from it. Each test plays the hostile code inside.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::{weft_bin, Host};

/// Docker's default capabilities (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP) as
/// `/proc/PID/status` shows them.
const DOCKER_DEFAULT: &str = "00000000a80425fb";

/// The capability lines of a `/proc/PID/status`: (CapInh, CapPrm, CapEff, CapBnd, CapAmb).
fn caps(status: &str) -> [String; 5] {
    let get = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_else(|| panic!("no {k} in {status}"))
            .trim()
            .to_string()
    };
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].map(get)
}

fn assert_docker_caps(how: &str, status: &str) {
    let d = DOCKER_DEFAULT.to_string();
    assert_eq!(
        caps(status),
        [
            d.clone(),
            d.clone(),
            d.clone(),
            d,
            "0000000000000000".into()
        ],
        "{how}: [inh, prm, eff, bnd, amb]"
    );
}

#[test]
fn every_sandbox_process_has_exactly_dockers_default_capabilities() {
    if !common::root_or_skip("every_sandbox_process_has_exactly_dockers_default_capabilities") {
        return;
    }
    let h = Host::new("ccaps");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.162.0.0/24"]);
    let status = ["cat", "/proc/self/status"];
    let mut fg = vec!["run", "--network", "n", "--"];
    fg.extend(status);
    assert_docker_caps("run", &h.weft_ok(&fg));
    let mut host = vec!["run", "--network", "host", "--"];
    host.extend(status);
    assert_docker_caps("run --network host", &h.weft_ok(&host));
    let mut none = vec!["run", "--network", "none", "--"];
    none.extend(status);
    assert_docker_caps("run --network none", &h.weft_ok(&none));
    // A detached command (its log) and an exec into it.
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "d",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "cat /proc/self/status; exec sleep 600",
    ]);
    let id = h.json(&["inspect", "d"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Read through `weft logs`: the log file's lines carry their times.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !h.weft_ok(&["logs", "d"]).contains("CapAmb") {
        assert!(std::time::Instant::now() < deadline, "no output from {id}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_docker_caps("run -d", &h.weft_ok(&["logs", "d"]));
    let mut exec = vec!["exec", "d", "--"];
    exec.extend(status);
    assert_docker_caps("exec", &h.weft_ok(&exec));
    // The init the command runs under has no more than its command.
    let pid = h.json(&["inspect", "d"])[0]["pid"].as_u64().unwrap();
    let init = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_docker_caps("the init", &init);
}

#[test]
fn a_sandbox_cannot_enter_another_namespace() {
    if !common::root_or_skip("a_sandbox_cannot_enter_another_namespace") {
        return;
    }
    let h = Host::new("cnsenter");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.162.1.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let b_init = h.json(&["inspect", "b"])[0]["pid"].as_u64().unwrap();
    // The test host's namespace (where weft runs) and another sandbox's: a route added
    // there would show. The sandbox's /proc has neither process in it; and setns into any
    // namespace, its own included, needs CAP_SYS_ADMIN.
    let mut host_proc = h.ns.cmd("sleep", &["60"]).spawn().unwrap();
    let host_pid = host_proc.id();
    for (target, eperm) in [
        (format!("/proc/{host_pid}/ns/net"), false),
        (format!("/proc/{b_init}/ns/net"), false),
        ("/proc/1/ns/net".to_string(), true),
        ("/proc/self/ns/net".to_string(), true),
    ] {
        let net = format!("--net={target}");
        let out = h.weft(&[
            "exec",
            "a",
            "--",
            "nsenter",
            &net,
            "ip",
            "route",
            "add",
            "10.99.99.0/24",
            "dev",
            "lo",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "entered {target}: {err}");
        if eperm {
            assert!(err.contains("Operation not permitted"), "{target}: {err}");
        }
    }
    let _ = host_proc.kill();
    let _ = host_proc.wait();
    // Nor a new mount or user-less namespace of its own.
    let out = h.weft(&["exec", "a", "--", "unshare", "--mount", "--net", "true"]);
    assert!(!out.status.success(), "unshare worked");
    assert!(!h.ns.ip(&["route", "show"]).contains("10.99.99.0"));
    for s in ["a", "b"] {
        let routes = h.weft_ok(&["exec", s, "--", "ip", "route", "show"]);
        assert!(!routes.contains("10.99.99.0"), "{s}: {routes}");
    }
}

#[test]
fn a_sandbox_cannot_change_its_own_routes_or_addresses() {
    if !common::root_or_skip("a_sandbox_cannot_change_its_own_routes_or_addresses") {
        return;
    }
    let h = Host::new("croute");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.162.2.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    for change in [
        vec!["ip", "route", "add", "10.99.98.0/24", "via", "10.162.2.1"],
        vec!["ip", "route", "del", "default"],
        vec!["ip", "addr", "add", "10.162.2.200/24", "dev", "eth0"],
        vec!["ip", "link", "set", "eth0", "address", "02:42:00:00:00:01"],
    ] {
        let mut args = vec!["exec", "a", "--"];
        args.extend(&change);
        let out = h.weft(&args);
        assert!(
            !out.status.success(),
            "{change:?} worked: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let routes = h.weft_ok(&["exec", "a", "--", "ip", "route", "show"]);
    assert!(routes.contains("default via 10.162.2.1"), "{routes}");
    assert!(!routes.contains("10.99.98.0"), "{routes}");
    let addrs = h.weft_ok(&["exec", "a", "--", "ip", "addr", "show", "eth0"]);
    assert!(!addrs.contains("10.162.2.200"), "{addrs}");
    // CAP_NET_RAW is kept: raw sockets (ping) work.
    assert!(h.pings("a", &h.ip_of("b", 0)));
}

#[test]
fn a_setuid_binary_cannot_regain_capabilities() {
    if !common::root_or_skip("a_setuid_binary_cannot_regain_capabilities") {
        return;
    }
    let h = Host::new("csuid");
    // A setuid-root `cat` a user in the sandbox runs: what it gets is all it could get.
    let suid = h.dir.join("suid-cat");
    let cat = common::ok(std::process::Command::new("sh").args(["-c", "command -v cat"]));
    std::fs::copy(cat.trim(), &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(&h.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let suid = suid.display().to_string();
    let out = h.weft_ok(&[
        "run",
        "--network",
        "none",
        "--",
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
        &suid,
        "/proc/self/status",
    ]);
    assert!(out.contains("Uid:\t65534\t0\t0\t0"), "not setuid: {out}");
    assert_docker_caps("a setuid binary", &out);
}

/// Lists a directory inside sandbox `s`: its entries, or why it could not.
fn ls_in(h: &Host, sandbox: &str, dir: &Path) -> String {
    let out = h.weft(&[
        "exec",
        sandbox,
        "--",
        "ls",
        "-A",
        &dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "ls {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn weft_state_is_hidden_from_sandboxes() {
    if !common::root_or_skip("weft_state_is_hidden_from_sandboxes") {
        return;
    }
    let h = Host::new("chide");
    h.config("agent = true\n");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.162.3.0/24"]);
    h.sleeper("a", &["--network", "n", "--hostname", "alpha"]);
    h.sleeper("b", &["--network", "n"]);
    h.sleeper("hostmode", &["--network", "host"]);
    let sock = h.run_dir().join("agent.sock");
    assert!(sock.exists(), "the agent is not running");
    assert!(
        std::fs::read_dir("/run/netns").unwrap().count() > 0,
        "the test's own namespace has no handle under /run/netns"
    );
    for s in ["a", "hostmode"] {
        for dir in [h.state_dir(), h.run_dir(), "/run/netns".into()] {
            assert_eq!(ls_in(&h, s, &dir), "", "{s} sees {}", dir.display());
        }
        // Read-only: nothing can be planted there for weft either.
        let planted = h.run_dir().join("sandboxes").join("x");
        let out = h.weft(&["exec", s, "--", "mkdir", &planted.display().to_string()]);
        assert!(!out.status.success(), "{s} made {}", planted.display());
        assert!(!planted.exists());
        let connect = format!(
            "import socket; socket.socket(socket.AF_UNIX).connect({:?})",
            sock.display().to_string()
        );
        let out = h.weft(&["exec", s, "--", "python3", "-c", &connect]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{s} connected to the agent");
        assert!(err.contains("FileNotFoundError"), "{err}");
    }
    // The files weft mounts into a sandbox are still there, and its network works.
    let hosts = h.weft_ok(&["exec", "a", "--", "cat", "/etc/hosts"]);
    let line = format!("{}\talpha a\n", h.ip_of("a", 0));
    assert!(hosts.contains(&line), "{hosts}");
    assert!(h.pings("a", &h.ip_of("b", 0)));
    // weft inside a sandbox finds no state to act on either.
    let out = h.weft(&[
        "exec",
        "a",
        "--",
        weft_bin(),
        "--state-dir",
        &h.state_dir().display().to_string(),
        "--run-dir",
        &h.run_dir().display().to_string(),
        "rm",
        "-f",
        "b",
    ]);
    assert!(!out.status.success());
    assert_eq!(h.json(&["inspect", "b"])[0]["status"], "running");
}

#[test]
fn a_sandbox_sees_and_reaches_only_its_own_processes() {
    if !common::root_or_skip("a_sandbox_sees_and_reaches_only_its_own_processes") {
        return;
    }
    let h = Host::new("cproc");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.162.4.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    // b's command: the child of its init.
    let b_init = h.json(&["inspect", "b"])[0]["pid"].as_u64().unwrap();
    let children = std::fs::read_to_string(format!("/proc/{b_init}/task/{b_init}/children"))
        .unwrap_or_default();
    let b_cmd = children
        .split_whitespace()
        .next()
        .expect("b's command")
        .to_string();
    let me = std::process::id().to_string();
    for (s, network) in [("a", "n"), ("h", "host")] {
        if s == "h" {
            h.sleeper("h", &["--network", network]);
        }
        // Another sandbox's command, and the host's processes: not there to read, to write
        // the memory of (and so act as them), or to enter the namespaces of.
        for pid in [&b_cmd, &me] {
            let poke = format!("open('/proc/{pid}/mem', 'r+b')");
            let out = h.weft(&["exec", s, "--", "python3", "-c", &poke]);
            assert!(!out.status.success(), "{s} opened /proc/{pid}/mem");
            let out = h.weft(&["exec", s, "--", "cat", &format!("/proc/{pid}/cmdline")]);
            assert!(!out.status.success(), "{s} read /proc/{pid}/cmdline");
        }
        // Its own processes are: the exec's init is its PID 1.
        let out = h.weft_ok(&["exec", s, "--", "sh", "-c", "ls /proc | grep -c '^[0-9]'"]);
        let n: usize = out.trim().parse().unwrap();
        assert!(n <= 4, "{s} sees {n} processes");
    }
}

#[test]
fn kernel_settings_are_read_only_in_a_sandbox() {
    if !common::root_or_skip("kernel_settings_are_read_only_in_a_sandbox") {
        return;
    }
    let h = Host::new("csysctl");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.162.5.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("h", &["--network", "host"]);
    // Each written back with the value it has: a sandbox that could write it changes nothing
    // here (the machine's own core_pattern included), and the test shows it could.
    for (s, file) in [
        ("h", "/proc/sys/net/ipv4/ip_forward"),
        ("h", "/proc/sys/net/ipv4/conf/all/accept_redirects"),
        ("a", "/proc/sys/net/ipv6/conf/all/accept_ra"),
        ("a", "/proc/sys/kernel/core_pattern"),
        ("h", "/proc/sys/kernel/core_pattern"),
    ] {
        let script = format!("v=$(cat {file}) && printf '%s\\n' \"$v\" > {file}");
        let out = h.weft(&["exec", s, "--", "sh", "-c", &script]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{s} wrote {file}");
        assert!(err.contains("Read-only file system"), "{s}: {file}: {err}");
    }
    // sysfs too; in a sandbox it shows the sandbox's interfaces.
    let mounts = h.weft_ok(&["exec", "a", "--", "cat", "/proc/self/mounts"]);
    // The last one is on top.
    let sys = mounts
        .lines()
        .rev()
        .find(|l| l.split_whitespace().nth(1) == Some("/sys"))
        .unwrap_or_else(|| panic!("no /sys in {mounts}"));
    assert!(
        sys.split_whitespace().nth(3).unwrap().starts_with("ro"),
        "{sys}"
    );
    let net = h.weft_ok(&["exec", "a", "--", "ls", "/sys/class/net"]);
    assert_eq!(net.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
}
