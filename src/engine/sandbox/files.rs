//! What a process in a sandbox sees besides the network: `/etc/hosts`, `/etc/resolv.conf`,
//! its hostname, and where a detached command's output goes; and the records of the inits
//! its processes run under.

use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::adapters::fs;
use crate::adapters::process::SandboxExec;
use crate::adapters::store::{Mode, Store as _};
use crate::core::model::{Network, Sandbox};
use crate::core::resolv;
use crate::engine::Ctx;

/// The sandbox's log: where its command's output goes when it runs detached (`run -d`,
/// `start`), read by `weft logs`.
pub(super) fn log_path(ctx: &Ctx, id: &str) -> PathBuf {
    ctx.state_dir.join("logs").join(format!("{id}.log"))
}

/// [`write_files`] after a connect or disconnect: the networks are read from the records.
pub(super) fn rewrite_files(ctx: &Ctx, sb: &Sandbox) -> Result<()> {
    let nets = {
        let tx = ctx.store.begin(Mode::Read)?;
        let mut nets = Vec::with_capacity(sb.endpoints.len());
        for ep in &sb.endpoints {
            nets.extend(tx.network(&ep.network_id)?);
        }
        nets
    };
    write_files(ctx, sb, &nets)
}

/// `/etc/hosts` and `/etc/resolv.conf` for the sandbox, whose networks are among `nets`.
pub(super) fn write_files(ctx: &Ctx, sb: &Sandbox, nets: &[Network]) -> Result<()> {
    let dir = ctx.sandbox_dir(&sb.id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    // The hostname and the name once each (they are often the same word).
    let names = if sb.hostname == sb.name {
        sb.name.clone()
    } else {
        format!("{} {}", sb.hostname, sb.name)
    };
    for ep in &sb.endpoints {
        for a in [ep.ipv4, ep.ipv6].into_iter().flatten() {
            hosts.push_str(&format!("{}\t{names}\n", a.addr()));
        }
    }
    for h in &sb.run.extra_hosts {
        // Names and addresses were checked (`core::run::add_host`): no line breaks.
        hosts.push_str(&format!("{}\t{}\n", h.ip, h.name));
    }
    // Read by any user inside the sandbox (bind-mounted over /etc/hosts), so 0644 inside the
    // private run directory; never written through whatever is at the path.
    put(&dir.join("hosts"), hosts.as_bytes())?;
    // The host's resolvers, minus loopback ones, which mean nothing inside the sandbox
    // (Docker does the same); `--dns*` replace the host's lines of their kind. Behind
    // systemd-resolved's stub (127.0.0.53, unreachable from the sandbox) the host's real
    // resolvers are resolved's upstream list, as Docker reads them too.
    let host_conf = std::fs::read_to_string(ctx.config.resolv_conf()).unwrap_or_default();
    let host_conf = if resolv::only_resolved_stub(&host_conf) {
        std::fs::read_to_string(ctx.config.resolved_conf()).unwrap_or(host_conf)
    } else {
        host_conf
    };
    // On a network with DNS the agent answers at the gateway (and forwards to `--dns`);
    // endpoints being connected or disconnected do not count yet.
    let on = sb
        .endpoints
        .iter()
        .filter(|ep| ep.pending.is_none())
        .filter_map(|ep| nets.iter().find(|n| n.id == ep.network_id));
    let conf = sb
        .run
        .dns
        .resolv_conf(&host_conf, resolv::nameserver(sb.mode, on));
    put(&dir.join("resolv.conf"), conf.as_bytes())?;
    Ok(())
}

/// Writes a file the sandbox's processes have bind-mounted: in place once it exists, so that
/// running commands see a connect's or disconnect's change (a file renamed over it would leave
/// their mounts on the old one); made fresh and renamed into place the first time, or when
/// what is there is no regular file of its own (a planted symlink is replaced, not followed).
fn put(path: &Path, contents: &[u8]) -> io::Result<()> {
    fs::overwrite(path, contents).or_else(|_| fs::replace(path, contents, 0o644))
}

/// Where the inits of a sandbox's processes are recorded, one empty file `PID-START` each
/// (start: the init's start time, so a reused pid is never taken for it). The command's init
/// is also in the sandbox's record; `exec`s are only here. Kept beside the sandbox's files
/// rather than in its record so that they are found even when the record is unreadable.
fn inits_dir(ctx: &Ctx, id: &str) -> PathBuf {
    ctx.sandbox_dir(id).join("inits")
}

/// One init recorded in the sandbox's run directory while it runs.
pub(super) struct InitRecord {
    path: PathBuf,
}

impl InitRecord {
    /// Records an init. Fails if the sandbox's directory is gone: the sandbox is being
    /// removed.
    pub(super) fn create(ctx: &Ctx, id: &str, pid: u32, start: u64) -> io::Result<Self> {
        let dir = inits_dir(ctx, id);
        // Not recursive: a removed sandbox's directory must not come back.
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let path = dir.join(format!("{pid}-{start}"));
        fs::create_new(&path, 0o600)?;
        Ok(Self { path })
    }

    /// Forgets the init (it has been reaped).
    pub(super) fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Leaves the record for an init nobody here waits for (`exec -d`).
    pub(super) fn keep(self) {}
}

/// Removes the records of the sandbox `id`'s inits that are gone (`exec -d`s that ended:
/// nobody waited for them to remove their records).
pub(super) fn prune_dead_inits(ctx: &Ctx, id: &str) {
    let dir = inits_dir(ctx, id);
    for (pid, start) in recorded_inits(ctx, id) {
        if !crate::adapters::process::alive_since(pid, Some(start)) {
            let _ = std::fs::remove_file(dir.join(format!("{pid}-{start}")));
        }
    }
}

/// Every init recorded for the sandbox `id`: (pid, start time).
pub(super) fn recorded_inits(ctx: &Ctx, id: &str) -> Vec<(u32, u64)> {
    let Ok(rd) = std::fs::read_dir(inits_dir(ctx, id)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let (pid, start) = name.to_str()?.split_once('-')?;
            Some((pid.parse().ok()?, start.parse().ok()?))
        })
        .collect()
}

/// The namespace-handle directory of `ip netns` (and other tools): hidden from sandboxes too.
const IP_NETNS_DIR: &str = "/run/netns";

/// What a process in this sandbox gets. In every mode, `--network host` included, weft's
/// state and run directories and `/run/netns` are hidden from it.
pub fn exec_spec(ctx: &Ctx, sb: &Sandbox, argv: &[String]) -> SandboxExec {
    exec_spec_with(ctx, sb, argv, &[], None, None)
}

/// [`exec_spec`] with more environment items (after the sandbox's own, winning), another
/// working directory and another user (`weft exec -e -w -u`).
pub fn exec_spec_with(
    ctx: &Ctx,
    sb: &Sandbox,
    argv: &[String],
    env: &[String],
    workdir: Option<&str>,
    user: Option<&str>,
) -> SandboxExec {
    let dir = ctx.sandbox_dir(&sb.id);
    let private = sb.netns.is_some();
    // Mount targets are resolved against the init's working directory: absolute ones only.
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    SandboxExec {
        netns: sb.netns.as_ref().map(PathBuf::from),
        hosts: private.then(|| dir.join("hosts")),
        resolv_conf: private.then(|| dir.join("resolv.conf")),
        hostname: private.then(|| sb.hostname.clone()),
        argv: argv.to_vec(),
        env: crate::core::run::merge_env(&sb.run.env, env),
        workdir: workdir
            .map(str::to_string)
            .or_else(|| sb.run.workdir.clone()),
        user: user.map(str::to_string).or_else(|| sb.run.user.clone()),
        unmount: vec![abs(&ctx.run_dir.join("netns")), PathBuf::from(IP_NETNS_DIR)],
        hide: vec![
            abs(&ctx.state_dir),
            abs(&ctx.run_dir),
            PathBuf::from(IP_NETNS_DIR),
        ],
        // Only a detached command's log carries times (`supervise::monitor` sets it).
        timestamps: false,
    }
}
