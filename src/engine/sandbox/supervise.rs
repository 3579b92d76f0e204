//! Running commands in sandboxes: foreground runs, detached runs and their monitor, `exec`
//! and `stop`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::adapters::process::{self, PendingInit};
use crate::adapters::store::Mode;
use crate::adapters::store::Store as _;
use crate::adapters::{fs, netns};
use crate::core::model::{Sandbox, Status};
use crate::engine::Ctx;
use crate::user_err;

use super::files::{exec_spec, log_path, recorded_inits, InitRecord};
use super::{
    check_settled, create_to_run, find, monitor_alive, remove_one, update, SandboxRequest,
};

/// How long SIGKILLed processes may take to go: they cannot refuse, but one stuck in the
/// kernel finishes its system call first.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(10);

/// `weft run` in the foreground: create, run CMD with our stdio, forward signals, tear down,
/// return CMD's exit code.
pub fn run_foreground(ctx: &Ctx, req: &SandboxRequest) -> Result<i32> {
    let mut req = req.clone();
    req.auto_remove = true;
    process::install_forwarding();
    let sb = create_to_run(ctx, &req)?;
    crate::engine::crash_point("run-before-start");
    let spec = exec_spec(ctx, &sb, &req.command);
    let started = process::spawn_init(&spec, None)
        .map_err(anyhow::Error::from)
        .and_then(|init| {
            // Signals sent meanwhile wait in the init until the command exists.
            process::forward_signals_to(init.pid());
            start_command(ctx, &sb, init)
        });
    let (mut child, record) = match started {
        Ok(c) => c,
        Err(e) => {
            process::stop_forwarding();
            remove_one(ctx, &sb.id)?;
            return Err(start_failed(&req.command, &e));
        }
    };
    // No store connection (and none of its locks) while the command runs.
    ctx.store.release();
    let status = child.wait().context("waiting for the command");
    process::stop_forwarding();
    // Reaped: the pid is no longer ours to signal.
    record.remove();
    // Whatever `exec`s are left die with the sandbox.
    remove_one(ctx, &sb.id)?;
    Ok(process::exit_code(status?))
}

/// The error of a command that did not start: `cannot run "CMD": why`, keeping the exit code
/// (126, 127) the init gave for it, 125 when weft failed before.
fn start_failed(argv: &[String], e: &anyhow::Error) -> anyhow::Error {
    let prog = argv.first().cloned().unwrap_or_default();
    let code = e
        .chain()
        .find_map(|c| {
            c.downcast_ref::<process::StartError>()
                .map(|s| s.code)
                .or_else(|| {
                    c.downcast_ref::<std::io::Error>()
                        .and_then(process::start_error)
                        .map(|s| s.code)
                })
        })
        .unwrap_or(125);
    anyhow::Error::new(process::StartError {
        code,
        message: format!("cannot run {prog:?}: {e:#}"),
    })
}

/// Records a sandbox's freshly spawned init as its command (in its record and in its run
/// directory), then lets it start the command: the command never runs unrecorded. On
/// failure the init is gone when this returns; the error is why.
fn start_command(ctx: &Ctx, sb: &Sandbox, init: PendingInit) -> Result<(Child, InitRecord)> {
    let pid = init.pid();
    let Some(start) = init.start_time() else {
        init.abandon();
        anyhow::bail!("the sandbox's init exited at once");
    };
    let record = match InitRecord::create(ctx, &sb.id, pid, start) {
        Ok(r) => r,
        Err(e) => {
            init.abandon();
            return Err(removed_meanwhile(sb, e));
        }
    };
    match mark_running(ctx, &sb.id, pid, start) {
        Ok(true) => {}
        Ok(false) => {
            init.abandon();
            record.remove();
            return Err(user_err!(
                "sandbox {:?} was stopped or removed before its command started",
                sb.name
            ));
        }
        Err(e) => {
            init.abandon();
            record.remove();
            return Err(e);
        }
    }
    match init.start() {
        Ok(child) => Ok((child, record)),
        Err(e) => {
            record.remove();
            Err(e.into())
        }
    }
}

/// The error for an init record that could not be made: the sandbox's directory is gone
/// when another weft process removed the sandbox.
fn removed_meanwhile(sb: &Sandbox, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        user_err!("sandbox {:?} is being removed", sb.name)
    } else {
        anyhow::Error::new(e).context(format!("recording a process of sandbox {:?}", sb.name))
    }
}

/// Records that the sandbox's command runs under the init `pid`, watched by this process:
/// `stop` and `gc` leave the record to its monitor while the monitor lives. Returns false
/// (and records nothing) if the sandbox is gone, being removed, or stopped by `weft stop`
/// meanwhile (a restart must not undo it).
fn mark_running(ctx: &Ctx, id: &str, pid: u32, start: u64) -> Result<bool> {
    let me = std::process::id();
    let tx = ctx.store.begin(Mode::Write)?;
    let Some(mut s) = tx
        .sandbox(id)?
        .filter(|s| s.status != Status::Removing && !s.stopped)
    else {
        return Ok(false);
    };
    s.pid = Some(pid);
    s.pid_start = Some(start);
    s.monitor_pid = Some(me);
    s.monitor_start = process::start_time(me);
    s.status = Status::Running;
    s.started = Some(crate::engine::now());
    s.finished = None;
    // `run`'s intent ends here: the sandbox is made and its command runs.
    s.owner_pid = None;
    s.owner_start = None;
    s.exit_code = None;
    tx.put_sandbox(&s)?;
    tx.commit()?;
    Ok(true)
}

/// `weft run -d`: create, then hand CMD to a detached monitor that outlives this process.
pub fn run_detached(ctx: &Ctx, req: &SandboxRequest) -> Result<Sandbox> {
    let sb = create_to_run(ctx, req)?;
    crate::engine::crash_point("run-before-start");
    match spawn_monitor(ctx, &sb) {
        Ok(_) => {
            let tx = ctx.store.begin(Mode::Read)?;
            Ok(find(tx.as_ref(), &sb.id)?)
        }
        Err(e) => {
            remove_one(ctx, &sb.id)?;
            Err(e)
        }
    }
}

/// The rest of a monitor's report after `ok`: `exit CODE` once the command has ended for
/// good (nothing if the monitor died).
pub type ExitReport = BufReader<std::process::ChildStdout>;

/// Starts `weft __monitor ID` in its own session and waits until it reports that CMD runs
/// (`ok`), or why it does not (`failed CODE why`).
fn spawn_monitor(ctx: &Ctx, sb: &Sandbox) -> Result<ExitReport> {
    let log = log_path(ctx, &sb.id);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The log of an earlier start is kept and appended to (as Docker's).
    let log = match fs::create_new(&log, 0o600) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => fs::open_append(&log),
        other => other,
    }
    .with_context(|| format!("opening the log file {}", log.display()))?;
    let mut cmd = ctx.detached_weft(&["__monitor", &sb.id])?;
    cmd.stdout(Stdio::piped()).stderr(log);
    use std::os::unix::process::CommandExt;
    let umask = process::original_umask();
    // SAFETY: umask is async-signal-safe; it is the one the sandbox's command must get from
    // the monitor.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::stat::umask(umask);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the sandbox monitor")?;
    let out = child.stdout.take().context("monitor stdout")?;
    let mut line = String::new();
    let mut out = BufReader::new(out);
    out.read_line(&mut line)?;
    let line = line.trim_end();
    if line == "ok" {
        // The monitor lives on; dropping `child` does not kill it.
        return Ok(out);
    }
    let _ = child.wait();
    let (code, why) = line
        .strip_prefix("failed ")
        .and_then(|r| r.split_once(' '))
        .and_then(|(c, w)| Some((c.parse().ok()?, w.to_string())))
        .unwrap_or_else(|| {
            // The monitor died before it could say: its last words are in the log.
            let log = std::fs::read_to_string(log_path(ctx, &sb.id)).unwrap_or_default();
            let last = log
                .lines()
                .last()
                .unwrap_or("the sandbox monitor failed")
                .trim();
            (
                125,
                last.strip_prefix("error: ").unwrap_or(last).to_string(),
            )
        });
    Err(anyhow::Error::new(process::StartError {
        code,
        message: why,
    }))
}

/// The detached monitor: starts CMD, reports "ok" on stdout (or "failed CODE why"), waits;
/// starts it again as its restart policy says, with Docker's back-off, unless `weft stop`
/// stopped it; then records the exit or removes the sandbox (`--rm`).
pub fn monitor(ctx: &Ctx, id: &str) -> Result<()> {
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), id)?
    };
    let path = log_path(ctx, &sb.id);
    let log = fs::open_append(&path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    let mut first = true;
    let mut report: Option<std::fs::File> = None;
    let mut delay = None;
    let mut sb = sb;
    loop {
        let began = Instant::now();
        super::logs::end_partial_line(&path, &log);
        let mut spec = exec_spec(ctx, &sb, &sb.command);
        // Each line of the log carries its time (`weft logs -t`, `--since`, `--until`).
        spec.timestamps = true;
        let started = process::spawn_init(&spec, Some(&log))
            .map_err(anyhow::Error::from)
            .and_then(|init| start_command(ctx, &sb, init));
        let code = match started {
            Ok((mut child, record)) => {
                if first {
                    println!("ok");
                    // The pipe stays ours, apart, to tell a `start -a` still reading it the
                    // final exit code (also of an `--rm` sandbox, whose record is gone by
                    // then); close-on-exec: no command holds it open.
                    report = nix::fcntl::fcntl(
                        std::io::stdout(),
                        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3),
                    )
                    .ok()
                    .map(|fd| {
                        // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor nothing else owns.
                        std::fs::File::from(unsafe {
                            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
                        })
                    });
                    // Our stdout is the pipe to `weft run -d`, which exits now: point it at
                    // the log instead.
                    // SAFETY: dup2 on fds we own.
                    unsafe {
                        use std::os::fd::AsRawFd;
                        libc::dup2(log.as_raw_fd(), 1);
                    }
                    first = false;
                }
                // Each open connection's locks slow every other store user down (the
                // kernel walks them all): none held while the command runs.
                ctx.store.release();
                let status = child.wait()?;
                record.remove();
                process::exit_code(status)
            }
            Err(e) => {
                let e = start_failed(&sb.command, &e);
                let code = e
                    .downcast_ref::<process::StartError>()
                    .map_or(125, |s| s.code);
                if first {
                    println!("failed {code} {e:#}");
                    // Nothing runs: the sandbox stays, to be started again.
                    clear_monitor(ctx, &sb.id, code)?;
                    return Ok(());
                }
                let settled = {
                    let tx = ctx.store.begin(Mode::Read)?;
                    tx.sandbox(&sb.id)?
                        .is_none_or(|s| s.status == Status::Removing || s.stopped)
                };
                if settled {
                    // Stopped or removed while it was being started again: nothing failed.
                    clear_monitor(ctx, &sb.id, code)?;
                    report_exit(report, code);
                    return Ok(());
                }
                eprintln!("error: {e:#}");
                code
            }
        };
        let ran = began.elapsed();
        let Some(again) = finish_or_restart(ctx, &sb.id, code)? else {
            report_exit(report, code);
            return Ok(());
        };
        sb = again;
        let wait = crate::core::run::restart_delay(delay, ran);
        delay = Some(wait);
        if !sleep_unless_stopped(ctx, &sb.id, wait)? {
            clear_monitor(ctx, &sb.id, code)?;
            report_exit(report, code);
            return Ok(());
        }
    }
}

/// Tells whoever still reads the monitor's first stdout (`start -a`) the final exit code,
/// as `exit CODE`; nobody reading is no error.
fn report_exit(report: Option<std::fs::File>, code: i32) {
    use std::io::Write as _;
    if let Some(mut f) = report {
        let _ = writeln!(f, "exit {code}");
    }
}

/// Records that CMD exited with `code`; returns the record if its policy starts it again
/// (the restart counted), or, having recorded the end (or removed an `--rm` sandbox), `None`.
fn finish_or_restart(ctx: &Ctx, id: &str, code: i32) -> Result<Option<Sandbox>> {
    let tx = ctx.store.begin(Mode::Write)?;
    let Some(mut sb) = tx.sandbox(id)?.filter(|s| s.status != Status::Removing) else {
        return Ok(None);
    };
    sb.command_exited(code, crate::engine::now());
    let again = !sb.stopped && sb.restart.restarts(code, sb.restart_count);
    // A command that ended for good holds no host port, as with Docker (`start` claims them
    // again); freed in this transaction, so that a `start` right after it claims them.
    let freed = if again || sb.auto_remove {
        None
    } else {
        super::publish::release_in(tx.as_ref(), &mut sb)?
    };
    if again {
        // The monitor stays, recorded, through the back-off: `stop` and `rm` find it, and
        // `ps` shows `Restarting (CODE)` meanwhile, as Docker does.
        sb.status = Status::Restarting;
        sb.restart_count = sb.restart_count.saturating_add(1);
    } else {
        sb.monitor_pid = None;
        sb.monitor_start = None;
    }
    tx.put_sandbox(&sb)?;
    tx.commit()?;
    if again {
        return Ok(Some(sb));
    }
    if let Some(was) = freed {
        super::publish::detach(ctx, &was)?;
    }
    if sb.auto_remove {
        remove_one(ctx, &sb.id)?;
    }
    Ok(None)
}

/// Waits `wait` before a restart; false (at once) if the sandbox was stopped, is being
/// removed or is gone meanwhile. A back-off lasts up to a minute: the store is read (and its
/// connection opened) only when a write to it shows in its files, and once a second in
/// case a write hid from them; no connection is held in between.
fn sleep_unless_stopped(ctx: &Ctx, id: &str, wait: Duration) -> Result<bool> {
    const REREAD: Duration = Duration::from_secs(1);
    let until = Instant::now() + wait;
    let mut read: Option<(crate::adapters::store::WriteStamp, Instant)> = None;
    loop {
        let stamp = ctx.store.write_stamp();
        if read.is_none_or(|(s, at)| s != stamp || at.elapsed() >= REREAD) {
            // Stamped before the read: a write after the stamp shows as a change.
            let cur = {
                let tx = ctx.store.begin(Mode::Read)?;
                tx.sandbox(id)?
            };
            ctx.store.release();
            if !cur.is_some_and(|s| s.status != Status::Removing && !s.stopped) {
                return Ok(false);
            }
            read = Some((stamp, Instant::now()));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(true);
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Forgets this monitor in the record (it is leaving, nothing runs); a command recorded as
/// running whose init is gone (it could not start) is recorded as exited with `code`, and
/// one waiting to be restarted (stopped during the back-off) as exited with its last code.
fn clear_monitor(ctx: &Ctx, id: &str, code: i32) -> Result<()> {
    let me = std::process::id();
    update(ctx, id, |s| {
        if s.monitor_pid == Some(me) {
            s.monitor_pid = None;
            s.monitor_start = None;
        }
        if s.status == Status::Restarting {
            s.status = Status::Exited;
        }
        if s.status == Status::Running && !super::is_running(s) {
            s.command_exited(code, crate::engine::now());
        }
    })?;
    Ok(())
}

/// `weft start`: starts a created or stopped sandbox's stored command under a monitor, as
/// `run -d` does (restart count back to 0). A running sandbox is left as it is.
pub fn start(ctx: &Ctx, name: &str) -> Result<Sandbox> {
    start_reporting(ctx, name).map(|(sb, _)| sb)
}

/// [`start`], with the monitor's [`ExitReport`] when this call started the command.
pub fn start_reporting(ctx: &Ctx, name: &str) -> Result<(Sandbox, Option<ExitReport>)> {
    let sb = {
        let tx = ctx.store.begin(Mode::Write)?;
        let mut sb = find(tx.as_ref(), name)?;
        check_settled(&sb)?;
        if sb.status == Status::Creating {
            return Err(user_err!("sandbox {name:?} is still being created"));
        }
        if super::is_running(&sb) || monitor_alive(&sb) {
            return Ok((sb, None));
        }
        if sb.command.is_empty() {
            return Err(user_err!(
                "sandbox {:?} has no command to start; create it with one: weft create --name {} [OPTIONS] -- CMD [ARG...]",
                sb.name,
                sb.name
            ));
        }
        // Its status and exit code stay until the command runs (`mark_running`): a start
        // that fails leaves the sandbox as it was.
        sb.stopped = false;
        sb.restart_count = 0;
        tx.put_sandbox(&sb)?;
        tx.commit()?;
        sb
    };
    super::publish::reclaim(ctx, &sb)?;
    let report = match spawn_monitor(ctx, &sb) {
        Ok(r) => r,
        Err(e) => {
            let _ = super::publish::free(ctx, &sb.id);
            return Err(e);
        }
    };
    let tx = ctx.store.begin(Mode::Read)?;
    Ok((find(tx.as_ref(), &sb.id)?, Some(report)))
}

/// Records that CMD exited; removes the sandbox if it was started with `--rm`.
fn finish(ctx: &Ctx, id: &str, code: i32) -> Result<()> {
    let Some(sb) = update(ctx, id, |s| {
        s.monitor_pid = None;
        s.monitor_start = None;
        s.command_exited(code, crate::engine::now());
    })?
    else {
        return Ok(());
    };
    if sb.auto_remove {
        remove_one(ctx, &sb.id)?;
    }
    Ok(())
}

/// `weft exec -e -w`: more environment, another working directory.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// `-e` items (NAME=VALUE or NAME).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-d`: return once the command runs; its output is discarded (as Docker's).
    pub detach: bool,
}

/// `weft exec`: runs a command in an existing sandbox in the foreground, under an init of its
/// own that is recorded in the sandbox's run directory while it runs, so that removing or
/// stopping the sandbox ends it too.
pub fn exec(ctx: &Ctx, name: &str, argv: &[String], opts: &ExecOptions) -> Result<i32> {
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)?
    };
    if sb.status == Status::Creating {
        return Err(user_err!("sandbox {name:?} is still being created"));
    }
    check_settled(&sb)?;
    let lookup = |n: &str| std::env::var(n).ok();
    let mut env = Vec::new();
    for item in &opts.env {
        env.extend(crate::core::run::env_item(item, &lookup)?);
    }
    if let Some(w) = &opts.workdir {
        crate::core::run::workdir(w)?;
    }
    if let Some(u) = &opts.user {
        super::settings::check_user(u)?;
    }
    let spec = super::files::exec_spec_with(
        ctx,
        &sb,
        argv,
        &env,
        opts.workdir.as_deref(),
        opts.user.as_deref(),
    );
    if opts.detach {
        return exec_detached(ctx, &sb, argv, &spec);
    }
    process::install_forwarding();
    let init = process::spawn_init(&spec, None)
        .map_err(|e| start_failed(argv, &anyhow::Error::from(e)))?;
    process::forward_signals_to(init.pid());
    let record = match record_exec(ctx, &sb, &init) {
        Ok(r) => r,
        Err(e) => {
            process::stop_forwarding();
            init.abandon();
            return Err(e);
        }
    };
    let mut child = match init.start() {
        Ok(c) => c,
        Err(e) => {
            process::stop_forwarding();
            record.remove();
            return Err(start_failed(argv, &anyhow::Error::from(e)));
        }
    };
    // No store connection (and none of its locks) while the command runs.
    ctx.store.release();
    let status = child.wait();
    process::stop_forwarding();
    record.remove();
    Ok(process::exit_code(status?))
}

/// `weft exec -d`: starts the command under an init of its own, recorded as `exec`'s are,
/// with stdin from /dev/null and its output to /dev/null (as Docker discards it), and
/// returns once it runs. Nobody waits for it here: the init, orphaned when this process
/// exits, is reaped by the host's init; its record stays until a later `exec` finds it dead
/// ([`super::files::prune_dead_inits`]) or the sandbox is removed. `stop`, `kill` (SIGKILL)
/// and `rm -f` end it as they end a foreground `exec`.
fn exec_detached(
    ctx: &Ctx,
    sb: &Sandbox,
    argv: &[String],
    spec: &process::SandboxExec,
) -> Result<i32> {
    super::files::prune_dead_inits(ctx, &sb.id);
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    let init = process::spawn_init(spec, Some(&null))
        .map_err(|e| start_failed(argv, &anyhow::Error::from(e)))?;
    let record = match record_exec(ctx, sb, &init) {
        Ok(r) => r,
        Err(e) => {
            init.abandon();
            return Err(e);
        }
    };
    match init.start() {
        Ok(_running) => {
            // The record stays: it is how `stop` and `rm` find this command.
            record.keep();
            Ok(0)
        }
        Err(e) => {
            record.remove();
            Err(start_failed(argv, &anyhow::Error::from(e)))
        }
    }
}

/// Records an `exec`'s init, unless the sandbox is being removed: `rm` claims the removal
/// before it reads the records, so either it sees this one or this sees its claim.
fn record_exec(ctx: &Ctx, sb: &Sandbox, init: &PendingInit) -> Result<InitRecord> {
    let start = init
        .start_time()
        .context("the sandbox's init exited at once")?;
    let record =
        InitRecord::create(ctx, &sb.id, init.pid(), start).map_err(|e| removed_meanwhile(sb, e))?;
    let cur = {
        let tx = ctx.store.begin(Mode::Read)?;
        tx.sandbox(&sb.id)?
    };
    match cur {
        Some(cur) if cur.status != Status::Removing => Ok(record),
        _ => {
            record.remove();
            Err(user_err!("sandbox {:?} is being removed", sb.name))
        }
    }
}

/// `weft stop`: marks the sandbox stopped (its restart policy leaves it so), then SIGTERM to
/// every process's init (the command's and each `exec`'s, which pass it on), SIGKILL after
/// `timeout`; waits until they are all gone and its monitor has recorded the end. Its
/// published host ports are freed (claimed again by `weft start`).
pub fn stop(ctx: &Ctx, name: &str, timeout: Duration) -> Result<Sandbox> {
    let sb = {
        let tx = ctx.store.begin(Mode::Write)?;
        let mut sb = find(tx.as_ref(), name)?;
        check_settled(&sb)?;
        // Before the inits are read: a restart after this reading is refused
        // (`mark_running`), one before it is among them.
        if !sb.stopped {
            sb.stopped = true;
            tx.put_sandbox(&sb)?;
            tx.commit()?;
        }
        sb
    };
    let check = InitCheck::of(ctx, &sb.id, Some(&sb));
    let inits = inits_of(ctx, &sb.id, Some(&sb), check);
    signal_all(&inits, libc::SIGTERM, check);
    // The processes may take `timeout` to go: no connection held meanwhile.
    ctx.store.release();
    if !wait_all_gone(&inits, timeout) {
        signal_all(&inits, libc::SIGKILL, check);
        if !wait_all_gone(&inits, KILL_WAIT) {
            return Err(user_err!(
                "processes of sandbox {:?} are still there after SIGKILL; try again",
                sb.name
            ));
        }
    }
    // The monitor (or foreground weft) records the exit and leaves; wait for it briefly,
    // then record it ourselves if nobody did (its owner died).
    let deadline = Instant::now() + Duration::from_secs(5);
    let done = loop {
        let cur = {
            let tx = ctx.store.begin(Mode::Read)?;
            tx.sandbox(&sb.id)?
        };
        match cur {
            None => return Ok(sb),
            Some(s)
                if !matches!(s.status, Status::Running | Status::Restarting)
                    && !monitor_alive(&s) =>
            {
                break s
            }
            Some(s) if Instant::now() > deadline || !monitor_alive(&s) => {
                let code = s.exit_code.unwrap_or(137);
                finish(ctx, &s.id, code)?;
                let tx = ctx.store.begin(Mode::Read)?;
                break tx.sandbox(&s.id)?.unwrap_or(s);
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    super::publish::free(ctx, &done.id)?;
    Ok(done)
}

/// How to tell the init of one of a sandbox's processes from any other process: it is PID 1
/// of a PID namespace of its own and, when the sandbox has a network namespace whose handle
/// is still there, it is in that namespace. A record in the sandbox's run directory names a
/// pid and a start time; only a process passing this check is ever signalled for it, so a
/// record planted there (a host process's pid and start time) makes weft kill nothing.
#[derive(Debug, Clone, Copy)]
pub(super) enum InitCheck {
    /// In the sandbox's network namespace (and a PID namespace's init).
    Netns(process::NsId),
    /// A PID namespace's init (`--network host`, or a namespace whose handle is gone).
    PidNsInit,
}

impl InitCheck {
    /// The check for sandbox `id` (`sb`: its record, if readable; without it, its handle is
    /// looked for where weft makes it).
    pub(super) fn of(ctx: &Ctx, id: &str, sb: Option<&Sandbox>) -> Self {
        let handle = match sb {
            Some(s) => s.netns.as_ref().map(std::path::PathBuf::from),
            None => Some(ctx.run_dir.join("netns").join(id)),
        };
        match handle.as_deref().and_then(netns::id) {
            Some(ns) => Self::Netns(ns),
            None => Self::PidNsInit,
        }
    }

    /// Whether `pid` may be one of the sandbox's inits.
    pub(super) fn holds(self, pid: u32) -> bool {
        process::is_pid_ns_init(pid)
            && match self {
                Self::Netns(ns) => process::netns_of(pid) == Some(ns),
                Self::PidNsInit => true,
            }
    }
}

/// The live init of every process of the sandbox `id`, with its start time: its command's
/// (from `sb`, its record, when there is one) and those recorded in its run directory. A pid
/// without a start time could belong to anyone by now: it is left alone; so is one that is not
/// the sandbox's init ([`InitCheck`]), with a warning.
pub(super) fn inits_of(
    ctx: &Ctx,
    id: &str,
    sb: Option<&Sandbox>,
    check: InitCheck,
) -> Vec<(u32, u64)> {
    let mut out = recorded_inits(ctx, id);
    if let Some((pid, start)) = sb.and_then(|s| s.pid.zip(s.pid_start)) {
        if !out.contains(&(pid, start)) {
            out.push((pid, start));
        }
    }
    out.retain(|&(pid, start)| {
        if !process::alive_since(pid, Some(start)) {
            return false;
        }
        let ours = check.holds(pid);
        if !ours {
            eprintln!(
                "warning: sandbox {id}: process {pid} is recorded as one of its inits but is not; left alone"
            );
        }
        ours
    });
    out
}

/// Sends `sig` to each init still the process recorded and still the sandbox's (never to a
/// reused pid, never to another process).
pub(super) fn signal_all(inits: &[(u32, u64)], sig: i32, check: InitCheck) {
    for (pid, start) in inits {
        let _ = process::signal_verified(*pid, Some(*start), sig, |p| check.holds(p));
    }
}

/// Waits until none of the inits runs any more. An init's exit ends every process of its
/// PID namespace first, so then none of theirs runs either.
pub(super) fn wait_all_gone(inits: &[(u32, u64)], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if inits
            .iter()
            .all(|(p, s)| !process::alive_since(*p, Some(*s)))
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs every process of the sandbox `id` (`sb`: its record, if readable) and waits until
/// they are all gone: only then may its namespace go and its addresses be handed out again.
pub(super) fn kill_all(ctx: &Ctx, id: &str, sb: Option<&Sandbox>, name: &str) -> Result<()> {
    let check = InitCheck::of(ctx, id, sb);
    let inits = inits_of(ctx, id, sb, check);
    signal_all(&inits, libc::SIGKILL, check);
    if wait_all_gone(&inits, KILL_WAIT) {
        Ok(())
    } else {
        Err(user_err!(
            "processes of sandbox {name:?} are still there after SIGKILL; try again"
        ))
    }
}
