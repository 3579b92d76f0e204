//! What a process in a sandbox sees besides the network: `/etc/hosts`, `/etc/resolv.conf`,
//! its hostname, and where a detached command's output goes.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::adapters::process::SandboxExec;
use crate::core::model::Sandbox;
use crate::engine::Ctx;

/// Where a detached sandbox's output goes.
pub(super) fn log_path(ctx: &Ctx, id: &str) -> PathBuf {
    ctx.state_dir.join("logs").join(format!("{id}.log"))
}

/// `/etc/hosts` and `/etc/resolv.conf` for the sandbox.
pub(super) fn write_files(ctx: &Ctx, sb: &Sandbox) -> Result<()> {
    let dir = ctx.sandbox_dir(&sb.id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for ep in &sb.endpoints {
        for a in [ep.ipv4, ep.ipv6].into_iter().flatten() {
            hosts.push_str(&format!("{}\t{} {}\n", a.addr(), sb.hostname, sb.name));
        }
    }
    std::fs::write(dir.join("hosts"), hosts)?;
    // The host's resolvers, minus loopback ones, which mean nothing inside the sandbox
    // (Docker does the same).
    let host_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let conf: String = host_conf
        .lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            !(w.next() == Some("nameserver")
                && w.next()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .is_some_and(|a| a.is_loopback()))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("resolv.conf"), conf)?;
    Ok(())
}

/// What a process in this sandbox gets.
pub fn exec_spec(ctx: &Ctx, sb: &Sandbox, argv: &[String]) -> SandboxExec {
    let dir = ctx.sandbox_dir(&sb.id);
    let private = sb.netns.is_some();
    SandboxExec {
        netns: sb.netns.as_ref().map(PathBuf::from),
        hosts: private.then(|| dir.join("hosts")),
        resolv_conf: private.then(|| dir.join("resolv.conf")),
        hostname: private.then(|| sb.hostname.clone()),
        argv: argv.to_vec(),
        hide: private.then(|| ctx.run_dir.join("netns")),
    }
}
