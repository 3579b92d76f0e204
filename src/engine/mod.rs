//! The use cases behind the CLI: each ties the pure core (decisions) to the adapters (state
//! store, kernel). Every command that changes the kernel follows one discipline:
//!
//! 1. decide inside a short write transaction and record the intent (`status: creating`,
//!    with the owning pid) together with any allocation;
//! 2. apply the planned operations, undoing them all if one fails;
//! 3. record the result, or delete the intent if step 2 failed.
//!
//! A process killed between 1 and 3 leaves a `creating` record whose owner is dead, which
//! `weft gc` undoes: no leaks and no lost allocations.

pub mod agent;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod firewall;
pub mod gc;
pub mod network;
pub mod reconcile;
pub mod sandbox;
pub mod tools;
pub mod underlay;
pub mod view;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use thiserror::Error;

use crate::adapters::store::SqliteStore;
use crate::adapters::{fs, netns};
use crate::timing;
use config::Config;

/// An error caused by the user's input: printed as is, exit code 1.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Returns a [`UserError`] built like `format!`.
#[macro_export]
macro_rules! user_err {
    ($($t:tt)*) => { anyhow::Error::new($crate::engine::UserError(format!($($t)*))) };
}

/// Everything a command needs: directories, configuration and the state store.
pub struct Ctx {
    /// Persistent state (`/var/lib/weft`).
    pub state_dir: PathBuf,
    /// Runtime state (`/run/weft`): namespace handles, per-sandbox files.
    pub run_dir: PathBuf,
    /// The config file's path (handed on to detached monitors).
    pub config_path: PathBuf,
    /// Parsed configuration.
    pub config: Config,
    /// The state store.
    pub store: SqliteStore,
    /// This state directory's instance id (see [`SqliteStore::instance`]).
    pub instance: String,
}

impl Ctx {
    /// Checks for root, creates the directories and opens the store.
    pub fn open(state_dir: &Path, run_dir: &Path, config_path: &Path) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            bail!(UserError(
                "weft must run as root (it creates namespaces, interfaces and firewall rules); try sudo".into()
            ));
        }
        let config = timing::time("config", || Config::load(config_path))?;
        // Both checked before either is made: a refused command leaves nothing behind.
        for dir in [state_dir, run_dir] {
            fs::check_private_dir(dir).with_context(|| format!("preparing {}", dir.display()))?;
        }
        // State and logs hold secrets (labels, a sandbox's output): private to root, also
        // when an older weft made them readable.
        for dir in [
            state_dir.to_path_buf(),
            state_dir.join("logs"),
            run_dir.to_path_buf(),
            run_dir.join("sandboxes"),
        ] {
            fs::private_dir(&dir).with_context(|| format!("preparing {}", dir.display()))?;
        }
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let path = state_dir.join(f);
            fs::make_private(&path).with_context(|| format!("protecting {}", path.display()))?;
        }
        let store = timing::time("store-open", || SqliteStore::open(state_dir))?;
        let instance = store.instance()?;
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            config_path: config_path.to_path_buf(),
            config,
            store,
            instance,
        })
    }

    /// Directory of namespace handles; made a shared mount on first use.
    pub fn netns_dir(&self) -> Result<PathBuf> {
        let dir = self.run_dir.join("netns");
        timing::time("netns-dir", || netns::prepare_dir(&dir))?;
        Ok(dir)
    }

    /// `weft --state-dir … --run-dir … --config … ARGS`: this very binary with this context's
    /// directories, for the weft processes a command leaves behind (a sandbox's monitor, the
    /// host agent). It starts in a session of its own, detached from the caller's terminal.
    pub fn detached_weft(&self, args: &[&str]) -> Result<std::process::Command> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().context("finding the weft binary")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .stdin(std::process::Stdio::null());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// Directory of a sandbox's files (`hosts`, `resolv.conf`).
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.run_dir.join("sandboxes").join(id)
    }
}

/// Test hook (debug builds only): with `WEFT_TEST_CRASH_AT=NAME` in the environment, the
/// process SIGKILLs itself at the crash point `NAME`, to prove that `weft gc` finishes or undoes
/// whatever it was doing. Release builds ignore the variable.
pub fn crash_point(name: &str) {
    if cfg!(debug_assertions) && std::env::var("WEFT_TEST_CRASH_AT").is_ok_and(|v| v == name) {
        // SAFETY: raising SIGKILL on ourselves; this is the hook's whole point.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// This process as the owner of an intent: its pid and start time (read once).
pub fn me() -> (u32, Option<u64>) {
    static START: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let pid = std::process::id();
    (
        pid,
        *START.get_or_init(|| crate::adapters::process::start_time(pid)),
    )
}

/// Whether the owner of an intent still runs: the same pid started at the same time (a pid
/// alone may have been reused by an unrelated process, which would keep the intent from ever
/// being undone).
pub fn owner_alive(pid: Option<u32>, start: Option<u64>) -> bool {
    pid.is_some_and(|p| crate::adapters::process::alive_since(p, start))
}

/// 64 random hex digits.
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| anyhow::anyhow!("reading random bytes: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses `--label` items into a map, naming the bad one: `K=V`, or `K` alone for an empty
/// value (as Docker's `--label foo`).
pub fn parse_kv(
    what: &str,
    items: &[String],
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for it in items {
        let (k, v) = it.split_once('=').unwrap_or((it.as_str(), ""));
        if k.is_empty() || k.contains('\0') || v.contains('\0') {
            bail!(UserError(format!(
                "invalid {what} {it:?}: expected KEY=VALUE or KEY"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_key_value_or_a_key_alone() {
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = super::parse_kv("--label", &items(&["a=1", "b", "c=x=y", "d="])).unwrap();
        let got: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, [("a", "1"), ("b", ""), ("c", "x=y"), ("d", "")]);
        for bad in ["", "=v", "=", "a\0=1"] {
            let e = super::parse_kv("--label", &items(&[bad])).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid --label {bad:?}: expected KEY=VALUE or KEY")
            );
        }
    }
}
