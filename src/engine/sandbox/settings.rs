//! What a sandbox's command runs with besides its network (`-e`, `--env-file`, `-w`,
//! `--add-host`, `--dns*`), read from the request, and the options Docker refuses with
//! `--network host` or `none`.

use anyhow::{Context as _, Result};

use crate::core::model::{NetMode, Network};
use crate::core::run::{self, DnsSettings, ExtraHost, HostTarget, RunSettings};
use crate::user_err;

use super::SandboxRequest;

/// Refuses what has no meaning with the sandbox's network mode, in Docker's words.
pub(super) fn check_network_mode(req: &SandboxRequest, mode: NetMode) -> Result<()> {
    let dns_given =
        !(req.dns.is_empty() && req.dns_search.is_empty() && req.dns_options.is_empty());
    if mode == NetMode::Host {
        // The sandbox shares the host's name, interfaces and files: these would be ignored.
        let conflict = if req.hostname.is_some() {
            Some("hostname")
        } else if !req.aliases.is_empty() {
            Some("network-scoped aliases (--alias)")
        } else if req.mac_address.is_some() {
            Some("mac-address")
        } else if !req.add_hosts.is_empty() {
            Some("custom host-to-IP mapping (--add-host)")
        } else if dns_given {
            Some("dns")
        } else if !req.ip6.is_empty() {
            Some("--ip6")
        } else {
            None
        };
        if let Some(what) = conflict {
            return Err(user_err!(
                "conflicting options: {what} and the network mode (--network host)"
            ));
        }
    }
    if mode == NetMode::None {
        if !req.aliases.is_empty() {
            return Err(user_err!(
                "network-scoped aliases are only supported for user-defined networks, not --network none"
            ));
        }
        if req.mac_address.is_some() {
            return Err(user_err!(
                "conflicting options: mac-address and the network mode (--network none has no interface to give it)"
            ));
        }
    }
    Ok(())
}

/// Parses the environment (files first, then `-e`, later settings winning), the working
/// directory and the DNS settings. `--add-host` entries are resolved by [`resolve_hosts`].
pub(super) fn parse(req: &SandboxRequest) -> Result<RunSettings> {
    let lookup = |name: &str| std::env::var(name).ok();
    let mut from_files = Vec::new();
    for f in &req.env_files {
        let text = read_env_file(f)?;
        from_files.extend(run::env_file(f, &text, &lookup)?);
    }
    let mut given = Vec::new();
    for item in &req.env {
        given.extend(run::env_item(item, &lookup)?);
    }
    if let Some(w) = &req.workdir {
        run::workdir(w)?;
    }
    if let Some(u) = &req.user {
        check_user(u)?;
    }
    let dns = DnsSettings::parse(&req.dns, &req.dns_search, &req.dns_options)?;
    Ok(RunSettings {
        env: run::merge_env(&from_files, &given),
        workdir: req.workdir.clone(),
        user: req.user.clone(),
        extra_hosts: vec![],
        dns,
    })
}

/// Parses the `--add-host` entries into `run`; `host-gateway` is the host's address on the
/// sandbox's first network (its gateway).
pub(super) fn resolve_hosts(
    run: &mut RunSettings,
    req: &SandboxRequest,
    nets: &[Network],
) -> Result<()> {
    for item in &req.add_hosts {
        let (name, target) = run::add_host(item)?;
        let ip = match target {
            HostTarget::Ip(ip) => ip,
            HostTarget::HostGateway => nets
                .first()
                .and_then(|n| n.v4().or(n.v6()))
                .map(|c| c.gateway)
                .ok_or_else(|| {
                    user_err!(
                        "--add-host {item}: host-gateway needs a bridge network (the host's address there)"
                    )
                })?,
        };
        run.extra_hosts.push(ExtraHost { name, ip });
    }
    Ok(())
}

/// Checks `-u` against the host's user and group files now, so that a name that does not
/// exist is refused before anything is made (the init resolves it again at each start).
pub(super) fn check_user(spec: &str) -> Result<()> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    run::resolve_user(spec, &passwd, &group)?;
    Ok(())
}

/// The search path the init's `execvp` uses when neither the sandbox's environment nor
/// weft's own sets PATH (glibc's `_CS_PATH`).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Checks that a stored command names an executable: a bare name must be found on the PATH
/// the command will run with (the sandbox shares the host's files). Paths with a `/` are left
/// to the init, as they may depend on `-w`.
pub(super) fn check_command(command: &[String], env: &[String]) -> Result<()> {
    let Some(prog) = command.first() else {
        return Ok(());
    };
    if prog.contains('/') {
        return Ok(());
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .map(str::to_string)
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let found = !prog.is_empty()
        && path
            .split(':')
            .filter(|d| !d.is_empty())
            .any(|d| std::path::Path::new(d).join(prog).is_file());
    if found {
        return Ok(());
    }
    Err(user_err!(
        "cannot create a sandbox to run {prog:?}: executable file not found in $PATH \
         (the command follows the options; the name is given with --name: \
         weft create --name NAME [OPTIONS] [--] CMD)"
    ))
}

/// The most an `--env-file` may hold: environments are small, and `/dev/zero` must not fill
/// memory.
const ENV_FILE_MAX: u64 = 1 << 20;

/// Reads an `--env-file`, refusing one larger than [`ENV_FILE_MAX`] or not UTF-8. A pipe
/// works (`--env-file <(...)`); a named FIFO nobody writes to reads as empty instead of
/// waiting for a writer forever.
fn read_env_file(f: &str) -> Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        // Opening a FIFO without a writer would wait for one.
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(f)
        .with_context(|| format!("reading --env-file {f}"))?;
    // Blocking reads again: a writer that is there may still be writing. (A FIFO without
    // writers reads as at its end.)
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(std::io::Error::from)
        .with_context(|| format!("reading --env-file {f}"))?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))
        .map_err(std::io::Error::from)
        .with_context(|| format!("reading --env-file {f}"))?;
    let mut bytes = Vec::new();
    file.take(ENV_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading --env-file {f}"))?;
    if bytes.len() as u64 > ENV_FILE_MAX {
        return Err(user_err!(
            "--env-file {f} is larger than {ENV_FILE_MAX} bytes; is it an environment file?"
        ));
    }
    String::from_utf8(bytes).map_err(|_| user_err!("--env-file {f} is not UTF-8 text"))
}
