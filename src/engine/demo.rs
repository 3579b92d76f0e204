//! `weft demo`: weft's main job, shown end to end inside a throwaway network namespace that
//! plays the host, so the machine's own network is never touched.
//!
//! ```text
//!  sandboxes web, api ── bridge "blue" ─┐
//!  sandbox  db ───────── bridge "red"  ─┤ demo host ns ── uplink 198.51.100.1 ── "internet" ns
//!                                       ┘                                         198.51.100.2
//! ```
//!
//! Every step runs the real `weft` binary inside the demo host namespace, prints the command
//! and what it showed, and checks the outcome. Everything is removed at the end, also on error.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::adapters::netlink::KernelExecutor;
use crate::adapters::netns;
use crate::adapters::process::{self, SandboxExec};
use crate::core::plan::{apply_all, Ns, Op};

struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    host_ns: PathBuf,
    inet_ns: PathBuf,
}

impl Demo {
    fn weft_cmd(&self, args: &[&str]) -> Result<Command> {
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
        println!("$ weft {}", args.join(" "));
        let out = self
            .weft_cmd(args)?
            .stdin(Stdio::null())
            .output()
            .context("running weft")?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {l}");
        }
        for l in String::from_utf8_lossy(&out.stderr).lines() {
            println!("  {l}");
        }
        Ok(out)
    }

    fn weft_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.weft(args)?;
        if !out.status.success() {
            bail!("`weft {}` failed", args.join(" "));
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

    fn cleanup(&self) {
        // The host agent the demo's commands started, first (it would repair what goes);
        // then remove through weft (it owns namespaces under its run dir), then the demo's own
        // namespaces; the kernel takes every interface inside them along.
        let _ = self.weft_cmd(&["daemon", "stop"]).map(|mut c| c.output());
        let _ = self
            .weft_cmd(&["rm", "--force", "web", "api", "db", "site"])
            .map(|mut c| c.output());
        let _ = self
            .weft_cmd(&["network", "prune", "-f"])
            .map(|mut c| c.output());
        let _ = self.weft_cmd(&["gc"]).map(|mut c| c.output());
        let _ = netns::delete(&self.inet_ns);
        let _ = netns::delete(&self.host_ns);
        let run_netns = self.dir.join("run").join("netns");
        for _ in 0..3 {
            let _ = nix::mount::umount2(&run_netns, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the demo; returns 0 when every check held.
pub fn run() -> Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        bail!(super::UserError(
            "weft demo must run as root (try sudo)".into()
        ));
    }
    // Unpredictable and new (0700): a predictable name lets another user plant symlinks
    // there beforehand for root to write through.
    let dir = crate::adapters::fs::private_temp_dir("weft-demo-")
        .context("creating the demo's temporary directory")?;
    let demo = Demo {
        exe: std::env::current_exe()?,
        host_ns: dir.join("host.ns"),
        inet_ns: dir.join("internet.ns"),
        dir,
    };
    let res = steps(&demo);
    println!("\n# cleaning up: sandboxes, networks and the demo namespaces");
    demo.cleanup();
    match res {
        Ok(()) => {
            println!("demo finished: every check held, nothing left behind");
            Ok(0)
        }
        Err(e) => {
            println!("demo failed: {e:#}");
            Ok(1)
        }
    }
}

fn setup_namespaces(demo: &Demo) -> Result<()> {
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

fn steps(demo: &Demo) -> Result<()> {
    println!(
        "# weft demo: a throwaway namespace plays the host; an 'internet' namespace sits behind it"
    );
    setup_namespaces(demo)?;
    let exe = demo.exe.display().to_string();

    println!("\n# two networks; weft picks subnets that collide with nothing the host uses");
    demo.weft_ok(&["network", "create", "blue"])?;
    demo.weft_ok(&["network", "create", "red"])?;
    demo.weft_ok(&["network", "ls"])?;

    println!("\n# three sandboxes: web and api on blue, db on red");
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

    println!("\n# same network: web reaches api");
    let ok = demo.weft(&["exec", "web", "--", &exe, "tool", "ping", "-c", "10", &api])?;
    if !ok.status.success() {
        bail!("web could not reach api on the same network");
    }

    println!("\n# isolation: web cannot reach db on another network");
    let no = demo.weft(&["exec", "web", "--", &exe, "tool", "ping", "-c", "3", &db])?;
    if no.status.success() {
        bail!("web reached db across networks: isolation is broken");
    }

    println!("\n# outbound NAT: a server in the 'internet' namespace sees the host's address");
    let server = process::command(&SandboxExec {
        netns: Some(demo.inet_ns.clone()),
        argv: vec![
            exe.clone(),
            "tool".into(),
            "serve".into(),
            "198.51.100.2:8080".into(),
            "--timeout".into(),
            "20".into(),
        ],
        ..Default::default()
    })?
    .stdout(Stdio::piped())
    .spawn()?;
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
    println!("  (the server saw 198.51.100.1, the host, not web's private address)");

    println!("\n# a published port: the 'internet' reaches a server in a sandbox through the host");
    let serve = format!("{exe} tool serve 0.0.0.0:80 --count 5 --timeout 60");
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
        let out = process::command(&SandboxExec {
            netns: Some(demo.inet_ns.clone()),
            argv: vec![
                exe.clone(),
                "tool".into(),
                "connect".into(),
                "198.51.100.1:8080".into(),
            ],
            ..Default::default()
        })?
        .stdin(Stdio::null())
        .output()?;
        if out.status.success() {
            answer = Some(String::from_utf8_lossy(&out.stdout).to_string());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let answer = answer.context("the published port did not answer")?;
    println!(
        "$ (in the internet namespace) weft tool connect 198.51.100.1:8080\n  {}",
        answer.trim()
    );
    if !answer.contains("peer=198.51.100.2:") {
        bail!("the server in the sandbox did not see the real client: {answer}");
    }
    println!("  (kernel DNAT through one nftables map element; the server saw the real client)");

    println!(
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
    println!("$ ip link del {bridge}     (done by the demo over netlink)");
    let gone = bridge.clone();
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

    println!("\n# why blue got its subnet");
    demo.weft_ok(&["network", "inspect", "blue"])?;
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
    use std::io::BufRead;
    let out = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    if !line.starts_with("listening") {
        bail!("the demo server did not start");
    }
    Ok(())
}
