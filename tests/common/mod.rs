//! Test harness: every test gets its own network namespace playing "the host", its own
//! state and run directories, and removes all of it when dropped — also when the test fails.
//! Extra namespaces (clients, routers, an "internet") are made the same way. The machine's own
//! namespace is never changed; traffic only flows between namespaces made here.

#![allow(dead_code)]

pub mod attack;
pub mod etcd;
pub mod frames;
pub mod overlay;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Reports a test as skipped where people see it: the harness captures `eprintln!` of passing
/// tests, so this writes to the process's stderr directly, and `scripts/test.sh` lists every
/// `SKIPPED` line. Use it only for preconditions the suite cannot provide (root).
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// Path of the weft binary under test.
pub fn weft_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique, short namespace name (`ip netns` names have no length limit, but keep them
/// readable in `ip netns list` if a run is interrupted).
pub fn unique(prefix: &str) -> String {
    format!(
        "wt-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Whether the test can run: it needs root (namespaces). Otherwise says it is skipped.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("skipped {test}: needs root (it creates namespaces)");
    }
    root
}

/// Runs a command, panicking with its output if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command and asserts success.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns {
    /// Name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates the namespace with `lo` up.
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Path of the namespace file.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME ARGS`, asserting success.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ok(Command::new("ip").args(&full))
    }

    /// A command run inside this namespace (network namespace only).
    pub fn cmd(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path())).arg(prog).args(args);
        c
    }

    /// `weft tool ...` inside this namespace.
    pub fn tool(&self, args: &[&str]) -> Output {
        let mut full = vec!["tool"];
        full.extend_from_slice(args);
        run(&mut self.cmd(weft_bin(), &full))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Connects two namespaces with a veth pair and addresses `a_addr` / `b_addr` (CIDR).
pub fn link(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// A namespace playing the host weft runs on, with its own state and run directories.
pub struct Host {
    /// The namespace weft runs in.
    pub ns: Netns,
    /// Temporary directory holding state/, run/ and weft.toml.
    pub dir: PathBuf,
}

impl Host {
    /// A fresh host namespace and empty directories; the config names this host's own
    /// resolver files (see [`Host::config`]).
    pub fn new(prefix: &str) -> Self {
        let ns = Netns::new(prefix);
        let dir = std::env::temp_dir().join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        // weft refuses state and run directories under one its group or others may write
        // to, whatever the umask of whoever runs the tests.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host = Host { ns, dir };
        host.config("");
        host
    }

    /// Writes the host's config file. Unless `toml` sets them, `resolv_conf` and
    /// `resolved_conf` name files in this host's directory (absent until
    /// [`Host::resolv_conf`] / [`Host::resolved_conf`] write them), so that no test depends
    /// on the machine's own resolvers.
    pub fn config(&self, toml: &str) {
        let mut text = String::new();
        for (key, file) in [
            ("resolv_conf", "resolv.conf"),
            ("resolved_conf", "resolved.conf"),
        ] {
            if !toml.contains(key) {
                text.push_str(&format!("{key} = \"{}\"\n", self.dir.join(file).display()));
            }
        }
        // Tests are deterministic without a host agent repairing behind their backs; the
        // agent's own tests turn it on.
        if !toml.contains("agent") {
            text.push_str("agent = false\n");
        }
        text.push_str(toml);
        std::fs::write(self.dir.join("weft.toml"), text).unwrap();
    }

    /// Writes this host's `resolv.conf` (what weft reads as `/etc/resolv.conf`); returns its
    /// path as weft names it.
    pub fn resolv_conf(&self, text: &str) -> String {
        let path = self.dir.join("resolv.conf");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// Writes this host's systemd-resolved upstream list (what weft reads as
    /// `/run/systemd/resolve/resolv.conf`); returns its path.
    pub fn resolved_conf(&self, text: &str) -> String {
        let path = self.dir.join("resolved.conf");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// State directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Run directory.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// `weft ARGS` inside the host namespace with this host's directories.
    pub fn weft_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.ns.cmd(weft_bin(), &[]);
        c.arg("--state-dir")
            .arg(self.state_dir())
            .arg("--run-dir")
            .arg(self.run_dir())
            .arg("--config")
            .arg(self.dir.join("weft.toml"))
            .args(args);
        c
    }

    /// `WRAPPER... weft ARGS` inside the host namespace with this host's directories (e.g.
    /// under `strace` to kill it at a chosen system call).
    pub fn weft_cmd_wrapped(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let (prog, rest) = wrapper.split_first().expect("a wrapper program");
        let mut c = self.ns.cmd(prog, rest);
        c.arg(weft_bin())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--run-dir")
            .arg(self.run_dir())
            .arg("--config")
            .arg(self.dir.join("weft.toml"))
            .args(args);
        c
    }

    /// Runs `weft ARGS` SIGKILLed by strace at its `n`-th `sendto` (every netlink request is
    /// one): returns whether it completed instead (asserting it succeeded then).
    pub fn killed_at_sendto(&self, n: usize, args: &[&str]) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let inject = format!("inject=sendto:signal=SIGKILL:when={n}");
        let out =
            run(&mut self
                .weft_cmd_wrapped(&["strace", "-qq", "-o", "/dev/null", "-e", &inject], args));
        if out.status.signal() == Some(9) || out.status.code() == Some(137) {
            return false;
        }
        assert!(
            out.status.success(),
            "weft {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    }

    /// Runs weft and returns its output, whatever the exit code.
    pub fn weft(&self, args: &[&str]) -> Output {
        run(&mut self.weft_cmd(args))
    }

    /// Runs weft, asserting success, and returns stdout.
    pub fn weft_ok(&self, args: &[&str]) -> String {
        ok(&mut self.weft_cmd(args))
    }

    /// Runs weft, asserting failure with exit code `code`, and returns stderr.
    pub fn weft_err(&self, code: i32, args: &[&str]) -> String {
        let out = self.weft(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "weft {args:?} should exit {code}; stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// `weft --format json ARGS` parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--format", "json"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.weft_ok(&full)).unwrap()
    }

    /// The IPv4 address (without prefix) of a sandbox on its `n`-th network.
    pub fn ip_of(&self, sandbox: &str, n: usize) -> String {
        let v = self.json(&["inspect", sandbox]);
        let cidr = v[0]["networks"][n]["ipv4"]
            .as_str()
            .unwrap_or_else(|| panic!("{sandbox} has no IPv4 on network {n}: {v}"))
            .to_string();
        cidr.split('/').next().unwrap().to_string()
    }

    /// The interfaces inside a sandbox, in kernel order.
    pub fn interfaces(&self, sandbox: &str) -> Vec<String> {
        let dev = self.weft_ok(&["exec", sandbox, "--", "cat", "/proc/net/dev"]);
        dev.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|s| s.trim().to_string())
            .collect()
    }

    /// Whether `sandbox` gets an ICMP echo answer from `addr` (a few tries).
    pub fn pings(&self, sandbox: &str, addr: &str) -> bool {
        self.weft(&[
            "exec",
            sandbox,
            "--",
            weft_bin(),
            "tool",
            "ping",
            "-c",
            "5",
            addr,
        ])
        .status
        .success()
    }

    /// Starts `weft run -d` of a long sleep in a sandbox and returns its name.
    pub fn sleeper(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sleep", "600"]);
        self.weft_ok(&args);
        name.to_string()
    }

    /// Runs weft with the crash hook killing it before kernel step `step`; returns true if
    /// it got past its last step and completed instead (asserting it succeeded).
    pub fn run_crash(&self, step: usize, args: &[&str]) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let out = run(self
            .weft_cmd(args)
            .env("WEFT_TEST_CRASH_AFTER_OPS", step.to_string()));
        if out.status.signal() == Some(9) {
            return false;
        }
        assert!(
            out.status.success(),
            "weft {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    }

    /// Starts `weft ARGS` in the background: stdout discarded, stderr kept for the caller.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.weft_cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `weft tool connect ADDR` from inside a sandbox: the server's answer, or `None` if
    /// nothing answered within 2 s.
    pub fn connect_from_sandbox(&self, sandbox: &str, addr: &str) -> Option<String> {
        let out = self.weft(&[
            "exec",
            sandbox,
            "--",
            weft_bin(),
            "tool",
            "connect",
            addr,
            "--timeout",
            "2",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Starts weft once per argument list, all at once, and asserts every one succeeded.
    pub fn weft_parallel(&self, runs: &[Vec<String>]) {
        let children: Vec<_> = runs
            .iter()
            .map(|args| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.spawn(&args)
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Output of a command inside the host namespace.
    pub fn sh(&self, script: &str) -> String {
        ok(&mut self.ns.cmd("sh", &["-c", script]))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // weft's own teardown first: it kills the sandboxes' processes (by the pids it
        // started) and removes their namespaces; then the host namespace takes the bridges
        // and nftables tables with it.
        if let Ok(out) = self.weft_cmd(&["--format", "json", "ps", "-a"]).output() {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                for sb in v.as_array().into_iter().flatten() {
                    if let Some(n) = sb["name"].as_str() {
                        let _ = self.weft_cmd(&["rm", "--force", n]).output();
                    }
                }
            }
        }
        let _ = self.weft_cmd(&["gc"]).output();
        // The agent last (if a test started it, gc may have started it again), before its
        // namespace goes.
        let _ = self.weft_cmd(&["daemon", "stop"]).output();
        let netns_dir = self.run_dir().join("netns");
        if let Ok(rd) = std::fs::read_dir(&netns_dir) {
            for e in rd.flatten() {
                let _ = nix_umount(&e.path());
            }
        }
        for _ in 0..3 {
            let _ = nix_umount(&netns_dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nix_umount(p: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain umount2 with a valid C string.
    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A host with an "internet" namespace behind it: host uplink 198.51.100.1/24 ↔ internet
/// 198.51.100.2/24 (TEST-NET-2, inside namespaces only).
pub struct WithInternet {
    /// The host.
    pub host: Host,
    /// The namespace behind the host.
    pub inet: Netns,
}

impl WithInternet {
    /// Builds both and links them.
    pub fn new(prefix: &str) -> Self {
        let host = Host::new(prefix);
        let inet = Netns::new(&format!("{prefix}i"));
        link(
            &host.ns,
            "uplink",
            "198.51.100.1/24",
            &inet,
            "eth0",
            "198.51.100.2/24",
        );
        WithInternet { host, inet }
    }

    /// Starts `weft tool serve` in the internet namespace; returns the child once listening.
    pub fn serve(&self, addr: &str, count: u32) -> std::process::Child {
        serve_in(&self.inet, addr, count)
    }
}

/// Starts `weft tool serve ADDR` in a namespace; returns the child once it listens.
pub fn serve_in(ns: &Netns, addr: &str, count: u32) -> std::process::Child {
    use std::io::BufRead;
    let mut child = ns
        .cmd(
            weft_bin(),
            &[
                "tool",
                "serve",
                addr,
                "--count",
                &count.to_string(),
                "--timeout",
                "20",
            ],
        )
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    assert!(
        line.starts_with("listening"),
        "server did not start: {line:?}"
    );
    child
}

/// Polls `cond` every 50 ms for up to `secs` seconds; whether it came to hold.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}

/// A command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `weft inspect NAME`'s one record.
pub fn inspect(h: &Host, name: &str) -> serde_json::Value {
    h.json(&["inspect", name])[0].clone()
}
