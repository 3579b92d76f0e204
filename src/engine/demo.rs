//! `weft demo`: weft's main job, shown end to end inside throwaway network namespaces, one of
//! which plays the host, so the machine's own network is never touched.
//!
//! ```text
//!  sandboxes web, api ── bridge "blue" ─┐
//!  sandbox  db ───────── bridge "red"  ─┤ demo host ns ── uplink 198.51.100.1 ── "internet" ns
//!                                       │                                         198.51.100.2
//!                                       └ eno1 192.0.2.10, default route via 192.0.2.1
//!                                                 │
//!  "office router" ns: 192.0.2.1 | 172.17.0.1 ── "office PC" ns 172.17.0.10/16, a TCP
//!                                                 session open to the host's port 22
//! ```
//!
//! The office LAN is 172.17.0.0/16, the first subnet Docker (and weft's default pools) would
//! hand out, and the host reaches it only through its default route: no route or address on
//! the host names it, only the live connection from the PC does. weft skips it, and
//! `network inspect` says why.
//!
//! Every step runs the real `weft` binary inside the demo host namespace, prints the command
//! (as `weft ...`, quoted as a shell would need it, its temporary directory as `$DEMO`) and
//! what it showed, and checks the outcome. Everything is removed at the end, also on error
//! and when interrupted (Ctrl-C, SIGTERM, SIGHUP): the demo then stops before its next step,
//! cleans up and exits with 128 + the signal's number, as a shell reports a killed command.

use std::io::BufRead as _;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::adapters::netlink::KernelExecutor;
use crate::adapters::netns;
use crate::adapters::process::{self, SandboxExec};
use crate::core::plan::{apply_all, Ns, Op};

struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    host_ns: PathBuf,
    inet_ns: PathBuf,
    router_ns: PathBuf,
    pc_ns: PathBuf,
}

/// The office LAN: the first candidate of the default pools.
const OFFICE_LAN: &str = "172.17.0.0/16";
/// The office PC, in the office LAN.
const OFFICE_PC: &str = "172.17.0.10";
/// The demo host's address on its link to the office router.
const HOST_ADDR: &str = "192.0.2.10";
/// The service on the demo host the PC keeps a session with (an SSH server, say).
const HOST_SERVICE: &str = "192.0.2.10:22";

/// `println!` that carries on when stdout is gone (`weft demo | head`): a panic there would
/// skip the cleanup and leave the demo's namespaces and processes behind.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The signal that interrupted the demo, 0 while none did.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread — and so in every thread started after
/// it (children get an empty mask from `Command`) — and records them from a thread of their
/// own. Killed outright, the demo would leave its namespaces, mounts, agent and sandboxes
/// behind; this way the step under way finishes (or fails, when a Ctrl-C killed its
/// process too) and the cleanup runs.
fn catch_interrupts() -> Result<()> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .context("blocking the interrupt signals")?;
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || loop {
            if let Ok(sig) = set.wait() {
                if INTERRUPTED.swap(sig as i32, Ordering::SeqCst) == 0 {
                    say!("\n# {sig}: stopping after this step, then cleaning up");
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Fails once a signal interrupted the demo: called before each step starts a process.
fn not_interrupted() -> Result<()> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => Ok(()),
        n => bail!(
            "interrupted by {}",
            Signal::try_from(n).map_or_else(|_| n.to_string(), |s| s.to_string())
        ),
    }
}

/// `arg` as a POSIX shell would need it typed: unchanged when it holds only characters no
/// shell treats specially, else in single quotes (a single quote inside as `'\''`).
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

impl Demo {
    /// `weft ARGS` as the demo prints it: its own binary shown as `weft` (no build path),
    /// every argument quoted as a shell would need it.
    fn shown(&self, args: &[&str]) -> String {
        let exe = self.exe.display().to_string();
        let mut line = String::from("weft");
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(&a.replace(&exe, "weft")));
        }
        line
    }

    /// A line weft printed, with the demo's binary shown as `weft` and its temporary
    /// directory as `$DEMO`: the same on every machine and every run.
    fn tidy(&self, line: &str) -> String {
        line.replace(&self.exe.display().to_string(), "weft")
            .replace(&self.dir.display().to_string(), "$DEMO")
    }

    fn weft_cmd(&self, args: &[&str]) -> Result<Command> {
        not_interrupted()?;
        self.weft_cmd_always(args)
    }

    /// `weft ARGS` in the demo host, also after an interrupt (the cleanup's commands).
    fn weft_cmd_always(&self, args: &[&str]) -> Result<Command> {
        let mut argv = vec![self.exe.display().to_string()];
        argv.extend(
            [
                "--state-dir",
                &self.dir.join("state").display().to_string(),
                "--run-dir",
                &self.dir.join("run").display().to_string(),
                "--config",
                &self.dir.join("weft.toml").display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        argv.extend(args.iter().map(|s| s.to_string()));
        let spec = SandboxExec {
            netns: Some(self.host_ns.clone()),
            argv,
            ..Default::default()
        };
        Ok(process::command(&spec)?)
    }

    /// Runs `weft ARGS` in the demo host, echoing the command and its output.
    fn weft(&self, args: &[&str]) -> Result<Output> {
        say!("$ {}", self.shown(args));
        let out = self
            .weft_cmd(args)?
            .stdin(Stdio::null())
            .output()
            .context("running weft")?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            say!("  {}", self.tidy(l));
        }
        for l in String::from_utf8_lossy(&out.stderr).lines() {
            say!("  {}", self.tidy(l));
        }
        Ok(out)
    }

    fn weft_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.weft(args)?;
        if !out.status.success() {
            bail!("`{}` failed", self.shown(args));
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    fn ip_of(&self, sandbox: &str) -> Result<String> {
        let out = self
            .weft_cmd(&["--format", "json", "inspect", sandbox])?
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let cidr = v[0]["networks"][0]["ipv4"]
            .as_str()
            .context("sandbox has no IPv4 address")?;
        Ok(cidr.split('/').next().unwrap_or(cidr).to_string())
    }

    /// Removes everything; fails when the demo's directory could not be removed (a mount
    /// still in it, say), so that "nothing left behind" is only said when it is true.
    fn cleanup(&self) -> Result<()> {
        // The host agent the demo's commands started, first (it would repair what goes);
        // then remove through weft (it owns namespaces under its run dir), then the demo's own
        // namespaces; the kernel takes every interface inside them along. The networks by
        // name, not with `network prune`: nothing to confirm, and nothing else is touched.
        // Each command in a process group of its own: a second Ctrl-C at the terminal reaches
        // the demo (which goes on cleaning up), not a removal half done.
        let quietly = |args: &[&str]| {
            let _ = self
                .weft_cmd_always(args)
                .map(|mut c| c.process_group(0).stdin(Stdio::null()).output());
        };
        quietly(&["daemon", "stop"]);
        quietly(&["rm", "--force", "web", "api", "db", "site"]);
        quietly(&["network", "rm", "blue", "red"]);
        quietly(&["gc"]);
        for ns in [&self.pc_ns, &self.router_ns, &self.inet_ns, &self.host_ns] {
            let _ = netns::delete(ns);
        }
        let run_netns = self.dir.join("run").join("netns");
        for _ in 0..3 {
            let _ = nix::mount::umount2(&run_netns, nix::mount::MntFlags::MNT_DETACH);
        }
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("{} is left: removing it", self.dir.display()))
    }
}

/// Runs the demo; returns 0 when every check held.
pub fn run() -> Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        bail!(super::UserError(
            "weft demo must run as root (try sudo)".into()
        ));
    }
    catch_interrupts()?;
    // main sets SIGPIPE to its default for commands that print and end (`weft ps | head`);
    // the demo must outlive its reader to clean up, and `say!` drops what cannot be written.
    // SAFETY: ignoring a signal has no preconditions; the demo installs no handler for it.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }
        .context("ignoring SIGPIPE")?;
    // Unpredictable and new (0700): a predictable name lets another user plant symlinks
    // there beforehand for root to write through.
    let dir = crate::adapters::fs::private_temp_dir("weft-demo-")
        .context("creating the demo's temporary directory")?;
    let demo = Demo {
        exe: std::env::current_exe()?,
        host_ns: dir.join("host.ns"),
        inet_ns: dir.join("internet.ns"),
        router_ns: dir.join("router.ns"),
        pc_ns: dir.join("pc.ns"),
        dir,
    };
    // A panic in a step must not skip the cleanup either.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| steps(&demo)))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the demo panicked")));
    say!("\n# cleaning up: sandboxes, networks and the demo namespaces");
    let cleaned = demo.cleanup();
    if let Err(e) = &cleaned {
        say!("cleanup incomplete: {e:#}");
    }
    let signal = INTERRUPTED.load(Ordering::SeqCst);
    if signal != 0 {
        if cleaned.is_ok() {
            say!("demo interrupted: cleaned up, nothing left behind");
        }
        return Ok(128_i32.saturating_add(signal));
    }
    match res.and(cleaned) {
        Ok(()) => {
            say!("demo finished: every check held, nothing left behind");
            Ok(0)
        }
        Err(e) => {
            say!("demo failed: {e:#}");
            Ok(1)
        }
    }
}

fn setup_namespaces(demo: &Demo) -> Result<()> {
    not_interrupted()?;
    netns::create(&demo.host_ns, true)?;
    netns::create(&demo.inet_ns, true)?;
    let inet = demo.inet_ns.display().to_string();
    let inet_ns = Ns::Sandbox(inet.clone());
    let ops = vec![
        Op::CreateBridge {
            name: "uplink".into(),
            mtu: 1500,
            mac: [0x02, 0, 0xc6, 0x33, 0x64, 0x01],
            alias: "demo".into(),
            ipv6: false,
        },
        Op::AddAddress {
            ns: Ns::Host,
            ifname: "uplink".into(),
            addr: "198.51.100.1/24".parse()?,
        },
        Op::LinkUp {
            ns: Ns::Host,
            ifname: "uplink".into(),
        },
        Op::CreateVeth {
            host_ifname: "uplink-p".into(),
            bridge: "uplink".into(),
            mtu: 1500,
            isolated: false,
            alias: "demo".into(),
            peer_ns: inet.clone(),
            peer_ifname: "eth0".into(),
            peer_mac: [0x02, 0, 0xc6, 0x33, 0x64, 0x02],
            peer_ipv6: false,
        },
        Op::AddAddress {
            ns: inet_ns.clone(),
            ifname: "eth0".into(),
            addr: "198.51.100.2/24".parse()?,
        },
        Op::LinkUp {
            ns: inet_ns.clone(),
            ifname: "eth0".into(),
        },
        Op::LinkUp {
            ns: inet_ns,
            ifname: "lo".into(),
        },
    ];
    // Run the executor from inside the demo host, where "Host" means that namespace.
    netns::run_in(&demo.host_ns, move || -> Result<()> {
        let mut exec = KernelExecutor::new()?;
        apply_all(&mut exec, &ops)?;
        Ok(())
    })??;
    Ok(())
}

/// The office: a router namespace with the LAN bridge (172.17.0.1/16, the PC behind it) and a
/// link to the demo host (192.0.2.1 | 192.0.2.10 on the host's `eno1`), which routes
/// everything it has no closer route for — the office LAN included — through it.
fn setup_office(demo: &Demo) -> Result<()> {
    not_interrupted()?;
    netns::create(&demo.router_ns, false)?;
    netns::create(&demo.pc_ns, false)?;
    let pc = demo.pc_ns.display().to_string();
    let host = demo.host_ns.display().to_string();
    let pc_ns = Ns::Sandbox(pc.clone());
    let host_ns = Ns::Sandbox(host.clone());
    let bridge = |name: &str, mac_last: u8, addr: &str| -> Result<Vec<Op>> {
        Ok(vec![
            Op::CreateBridge {
                name: name.into(),
                mtu: 1500,
                mac: [0x02, 0, 0xc0, 0, 0x02, mac_last],
                alias: "demo".into(),
                ipv6: false,
            },
            Op::AddAddress {
                ns: Ns::Host,
                ifname: name.into(),
                addr: addr.parse()?,
            },
            Op::LinkUp {
                ns: Ns::Host,
                ifname: name.into(),
            },
        ])
    };
    let mut ops = bridge("lan", 1, "172.17.0.1/16")?;
    ops.extend(bridge("wan", 2, "192.0.2.1/24")?);
    ops.extend([
        Op::Sysctl {
            ns: Ns::Host,
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        },
        Op::CreateVeth {
            host_ifname: "lan-pc".into(),
            bridge: "lan".into(),
            mtu: 1500,
            isolated: false,
            alias: "demo".into(),
            peer_ns: pc.clone(),
            peer_ifname: "eth0".into(),
            peer_mac: [0x02, 0, 0xac, 0x11, 0, 0x0a],
            peer_ipv6: false,
        },
        Op::AddAddress {
            ns: pc_ns.clone(),
            ifname: "eth0".into(),
            addr: format!("{OFFICE_PC}/16").parse()?,
        },
        Op::LinkUp {
            ns: pc_ns.clone(),
            ifname: "eth0".into(),
        },
        Op::LinkUp {
            ns: pc_ns.clone(),
            ifname: "lo".into(),
        },
        Op::AddDefaultRoute {
            ns: pc_ns,
            gateway: "172.17.0.1".parse()?,
        },
        Op::CreateVeth {
            host_ifname: "wan-host".into(),
            bridge: "wan".into(),
            mtu: 1500,
            isolated: false,
            alias: "demo".into(),
            peer_ns: host,
            peer_ifname: "eno1".into(),
            peer_mac: [0x02, 0, 0xc0, 0, 0x02, 0x0a],
            peer_ipv6: false,
        },
        Op::AddAddress {
            ns: host_ns.clone(),
            ifname: "eno1".into(),
            addr: format!("{HOST_ADDR}/24").parse()?,
        },
        Op::LinkUp {
            ns: host_ns.clone(),
            ifname: "eno1".into(),
        },
        Op::AddDefaultRoute {
            ns: host_ns,
            gateway: "192.0.2.1".parse()?,
        },
    ]);
    // The executor runs inside the router: there "Host" means the router's namespace.
    netns::run_in(&demo.router_ns, move || -> Result<()> {
        let mut exec = KernelExecutor::new()?;
        apply_all(&mut exec, &ops)?;
        Ok(())
    })??;
    Ok(())
}

/// Opens a TCP connection from the office PC to the host's service and returns it with the
/// service's answer; the socket stays in the PC's namespace for as long as it is open.
fn open_session(demo: &Demo) -> Result<(TcpStream, String)> {
    not_interrupted()?;
    let to: SocketAddr = HOST_SERVICE.parse()?;
    let stream = netns::run_in(&demo.pc_ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(5))
    })?
    .with_context(|| format!("connecting from the office PC to {to}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut answer = String::new();
    std::io::BufReader::new(&stream)
        .read_line(&mut answer)
        .context("reading the host service's answer")?;
    Ok((stream, answer.trim().to_string()))
}

/// Whether a connection is still open: nothing to read yet, neither closed nor reset.
fn still_open(stream: &TcpStream) -> Result<bool> {
    stream.set_nonblocking(true)?;
    let mut byte = [0u8; 1];
    Ok(match stream.peek(&mut byte) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(n) => n > 0,
    })
}

/// Runs `weft ARGS` (the demo's own binary) in namespace `ns` outside weft, as a plain
/// process there: the demo's servers and clients.
fn tool_in(demo: &Demo, ns: &std::path::Path, args: &[&str]) -> Result<Command> {
    not_interrupted()?;
    let mut argv = vec![demo.exe.display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    Ok(process::command(&SandboxExec {
        netns: Some(ns.to_path_buf()),
        argv,
        ..Default::default()
    })?)
}

fn steps(demo: &Demo) -> Result<()> {
    say!(
        "# weft demo: a throwaway namespace plays the host; an 'internet' namespace sits behind it,\n\
         # and an office network behind a router (nothing here touches this machine's network).\n\
         # Each `weft` below runs in the demo host with state of its own: `--state-dir $DEMO/state\n\
         # --run-dir $DEMO/run --config $DEMO/weft.toml`, $DEMO a new temporary directory"
    );
    setup_namespaces(demo)?;
    setup_office(demo)?;
    let exe = demo.exe.display().to_string();

    say!(
        "\n# the office: a PC at {OFFICE_PC} in the office LAN {OFFICE_LAN}, behind a router.\n\
         # The host (eno1 {HOST_ADDR}/24) reaches it through its default route via 192.0.2.1:\n\
         # no route or address on the host names {OFFICE_LAN}. The PC keeps a TCP session open\n\
         # to the host's port 22, like a developer's SSH session."
    );
    say!("$ (on the host) weft tool serve {HOST_SERVICE} --count 2 --hold 120 --timeout 120");
    let mut ssh = KillOnDrop(
        tool_in(
            demo,
            &demo.host_ns,
            &[
                "tool",
                "serve",
                HOST_SERVICE,
                "--count",
                "2",
                "--hold",
                "120",
                "--timeout",
                "120",
            ],
        )?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?,
    );
    wait_listening(&mut ssh.0)?;
    say!("$ (on the office PC) a TCP connection to {HOST_SERVICE}, kept open by the demo");
    let (session, answer) = open_session(demo)?;
    say!("  {answer}");
    if !answer.starts_with(&format!("peer={OFFICE_PC}:")) {
        bail!("the host's service did not see the office PC: {answer}");
    }

    say!(
        "\n# two networks; weft picks subnets that collide with nothing the host uses or talks to.\n\
         # {OFFICE_LAN} is the first subnet of Docker's default pools: a bridge there would\n\
         # take the host's replies to the PC, and the session would hang."
    );
    demo.weft_ok(&["network", "create", "blue"])?;
    demo.weft_ok(&["network", "create", "red"])?;
    demo.weft_ok(&["network", "ls"])?;

    say!("\n# why blue got its subnet: the first candidate, {OFFICE_LAN}, was skipped");
    let inspect = demo.weft_ok(&["network", "inspect", "blue"])?;
    // Checked on the JSON contract; the text above is for people and may change its layout.
    let out = demo
        .weft_cmd(&["--format", "json", "network", "inspect", "blue"])?
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let reason = v[0]["allocation"]["skipped"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["candidate"] == OFFICE_LAN))
        .and_then(|s| s["reason"].as_str())
        .with_context(|| format!("network inspect does not list {OFFICE_LAN} as skipped"))?;
    if !reason.contains(&format!("contains {OFFICE_PC}, a peer")) {
        bail!("{OFFICE_LAN} was skipped, but not for the office PC: {reason}");
    }
    if !inspect.contains(reason) {
        bail!("network inspect does not show why {OFFICE_LAN} was skipped");
    }
    if v[0]["subnets"][0]["subnet"] == OFFICE_LAN {
        bail!("blue got the office LAN {OFFICE_LAN}");
    }

    say!("\n# the office is untouched: the PC's session is still open, and it still reaches the host");
    if !still_open(&session)? {
        bail!("the office PC's session to the host was closed");
    }
    say!("  (the session opened before is still open)");
    let out = tool_in(demo, &demo.pc_ns, &["tool", "connect", HOST_SERVICE])?
        .stdin(Stdio::null())
        .output()?;
    let answer = String::from_utf8_lossy(&out.stdout);
    say!(
        "$ (on the office PC) weft tool connect {HOST_SERVICE}\n  {}",
        answer.trim()
    );
    if !out.status.success() || !answer.contains(&format!("peer={OFFICE_PC}:")) {
        bail!(
            "the office PC no longer reaches the host: {}",
            answer.trim()
        );
    }
    drop(session);
    drop(ssh);

    say!("\n# three sandboxes: web and api on blue, db on red");
    for (name, net) in [("web", "blue"), ("api", "blue"), ("db", "red")] {
        demo.weft_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            "--",
            "sleep",
            "600",
        ])?;
    }
    demo.weft_ok(&["ps"])?;
    let api = demo.ip_of("api")?;
    let db = demo.ip_of("db")?;

    say!("\n# same network: web reaches api");
    let ok = demo.weft(&["exec", "web", "--", &exe, "tool", "ping", "-c", "10", &api])?;
    if !ok.status.success() {
        bail!("web could not reach api on the same network");
    }

    say!("\n# isolation: web cannot reach db on another network");
    let no = demo.weft(&["exec", "web", "--", &exe, "tool", "ping", "-c", "3", &db])?;
    if no.status.success() {
        bail!("web reached db across networks: isolation is broken");
    }

    say!("\n# outbound NAT: a server in the 'internet' namespace sees the host's address");
    let mut server = tool_in(
        demo,
        &demo.inet_ns,
        &["tool", "serve", "198.51.100.2:8080", "--timeout", "20"],
    )?;
    say!("$ (in the internet namespace) weft tool serve 198.51.100.2:8080 --timeout 20");
    let server = server.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
    let mut server = KillOnDrop(server);
    wait_listening(&mut server.0)?;
    let out = demo.weft_ok(&[
        "exec",
        "web",
        "--",
        &exe,
        "tool",
        "connect",
        "198.51.100.2:8080",
    ])?;
    if !out.contains("peer=198.51.100.1:") {
        bail!("the server did not see the host's address: {out}");
    }
    say!("  (the server saw 198.51.100.1, the host, not web's private address)");

    say!("\n# a published port: the 'internet' reaches a server in a sandbox through the host");
    let serve = format!(
        "{} tool serve 0.0.0.0:80 --count 5 --timeout 60",
        shell_quote(&exe)
    );
    demo.weft_ok(&[
        "run",
        "-d",
        "--name",
        "site",
        "--network",
        "blue",
        "-p",
        "8080:80",
        "--",
        "sh",
        "-c",
        &serve,
    ])?;
    demo.weft_ok(&["port", "site"])?;
    let mut answer = None;
    for _ in 0..50 {
        let out = tool_in(
            demo,
            &demo.inet_ns,
            &["tool", "connect", "198.51.100.1:8080"],
        )?
        .stdin(Stdio::null())
        .output()?;
        if out.status.success() {
            answer = Some(String::from_utf8_lossy(&out.stdout).to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = answer.context("the published port did not answer")?;
    say!(
        "$ (in the internet namespace) weft tool connect 198.51.100.1:8080\n  {}",
        answer.trim()
    );
    if !answer.contains("peer=198.51.100.2:") {
        bail!("the server in the sandbox did not see the real client: {answer}");
    }
    say!("  (kernel DNAT through one nftables map element; the server saw the real client)");

    say!(
        "\n# self-healing: someone deletes blue's bridge; the host agent (started by the first\n\
         # command) rebuilds it with its ports within a second, no weft command needed"
    );
    let out = demo
        .weft_cmd(&["--format", "json", "network", "inspect", "blue"])?
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let bridge = v[0]["bridge"]
        .as_str()
        .context("network blue has no bridge")?
        .to_string();
    say!("$ ip link del {bridge}     (done by the demo over netlink)");
    let gone = bridge.clone();
    not_interrupted()?;
    netns::run_in(&demo.host_ns, move || -> Result<()> {
        let mut exec = KernelExecutor::new()?;
        apply_all(
            &mut exec,
            &[Op::DeleteLink {
                ns: Ns::Host,
                ifname: gone,
            }],
        )?;
        Ok(())
    })??;
    let ok = demo.weft(&["exec", "web", "--", &exe, "tool", "ping", "-c", "15", &api])?;
    if !ok.status.success() {
        bail!("blue was not repaired: web cannot reach api");
    }
    demo.weft_ok(&["daemon", "status"])?;
    Ok(())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(child: &mut std::process::Child) -> Result<()> {
    let out = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    if !line.starts_with("listening") {
        bail!("the demo server did not start");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn arguments_are_shown_as_a_shell_needs_them() {
        assert_eq!(shell_quote("172.17.0.0/16"), "172.17.0.0/16");
        assert_eq!(shell_quote("--name=web"), "--name=web");
        assert_eq!(shell_quote("weft tool serve"), "'weft tool serve'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("a*"), "'a*'");
    }
}
