//! The host agent, `weft daemon`: the one long-lived weft process per state directory, home of
//! everything that must keep running (DNS and the overlay control plane will be tasks here).
//!
//! Nothing in the kernel depends on it: commands work without it and `weft gc` repairs. What
//! it adds:
//! - repairs within a second, without any command, of drift weft did not cause: it watches
//!   rtnetlink link/address/route notifications and nf_tables notifications, and checks the
//!   sysctls weft sets on a short timer (the kernel announces no sysctl change);
//! - port reservations: a bound socket per published host port, so no host process can take
//!   one while it is published;
//! - a gc pass at start and every minute.
//!
//! One tokio event loop decides; a worker thread ([`worker`]) does the work, one job at a
//! time. Started on demand by the first command that creates a network or sandbox
//! ([`client::ensure_running`]), it leaves once nothing weft-made exists, or its state
//! directory is gone; started by systemd (`Type=notify`, `weft daemon --stay`) it stays.

pub mod client;
pub mod cluster;
mod cluster_requests;
mod dns;
mod watch;
mod worker;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::sync::oneshot;
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};

use crate::adapters::agent_ipc::{self, AgentLock, ControlListener, Conversation};
use crate::adapters::kernel_events::{NftEvent, NftWatch, RtWatch};
use crate::adapters::netlink::KernelExecutor;
use crate::core::agent::{AgentStatus, ClusterStatus, Request, Response};
use crate::core::cluster_config::ClusterSettings;
use crate::core::plan::Ns;
use crate::engine::{now, Ctx};
use crate::user_err;
use watch::{Classifier, Pending};
use worker::Job;

/// How long notifications are gathered before repairing: a deleted bridge also deletes its
/// addresses and routes, one repair covers them all.
const SETTLE: Duration = Duration::from_millis(100);
/// How often the sysctls weft sets are checked.
const SYSCTL_EVERY: Duration = Duration::from_millis(300);
/// How often the agent checks that it still has something to look after.
const ALIVE_EVERY: Duration = Duration::from_secs(5);
/// How often a full gc pass runs.
const GC_EVERY: Duration = Duration::from_secs(60);

/// How long no socket must have been parked before the parked ones are closed: by then the
/// RCU grace periods their transactions started are over, and closing them costs nothing
/// (see [`crate::adapters::fd_park`]).
const PARK_QUIET: Duration = Duration::from_millis(500);
/// At most this many parked sockets are held (fewer if the descriptor limit is low). When
/// the lot is full the agent stops taking more: the queue of `agent.park` fills and commands
/// close their sockets themselves. It never closes a parked socket while commands keep
/// parking: that close would wait for their grace period holding nf_tables' commit lock, and
/// stall every one of them.
const PARK_MAX: usize = 16_384;

/// Raises the soft descriptor limit to the hard one (the agent holds a socket per published
/// port and per parked socket) and returns how many sockets it may park.
fn park_capacity() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from `raised`, a live local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // Half the descriptors at most: the rest are the agent's own and its port reservations'.
    usize::try_from(lim.rlim_cur / 2)
        .unwrap_or(PARK_MAX)
        .clamp(16, PARK_MAX)
}

/// How many clients the agent talks to at once (the others are turned away).
const MAX_CONVERSATIONS: usize = 64;
/// How long a client may take to send its request.
const REQUEST_WAIT: Duration = Duration::from_secs(2);

/// What the agent watches, for `weft daemon status`.
const WATCHING: [&str; 6] = [
    "rtnetlink link notifications",
    "rtnetlink address notifications",
    "rtnetlink route notifications",
    "rtnetlink neighbour notifications (with a cluster: its VXLAN devices)",
    "nf_tables notifications",
    "sysctls weft sets (every 300 ms)",
];

/// Runs the agent until it is stopped (SIGTERM, SIGINT, `weft daemon stop`) or has nothing
/// left to look after. Returns the exit code.
pub fn run(
    state_dir: &Path,
    run_dir: &Path,
    config_path: &Path,
    stay: bool,
    cluster_flags: ClusterSettings,
) -> Result<i32> {
    crate::adapters::memory::limit_arenas();
    let ctx = Ctx::open(state_dir, run_dir, config_path)?;
    // A cluster configuration the agent cannot use stops it before it takes anything over.
    // Kept in the status; the cluster task (etcd, the overlay control plane) will take it.
    let cluster = ctx.config.cluster(cluster_flags)?;
    if let Some(c) = &cluster {
        crate::engine::underlay::find(c.advertise)?;
    }
    // A cluster member stays while nothing weft-made is here: the cluster, not this host's
    // records, is what it looks after.
    let stay = stay || cluster.is_some();
    let Some(lock) = AgentLock::acquire(run_dir).context("taking the agent lock")? else {
        return Err(user_err!(
            "a weft agent already runs for {} (pid {}); `weft daemon status` shows it",
            run_dir.display(),
            agent_ipc::pid(run_dir)
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into())
        ));
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    tracing::info!(
        pid = std::process::id(),
        state_dir = %state_dir.display(),
        "weft agent starting"
    );

    let status = Arc::new(Mutex::new(AgentStatus {
        pid: std::process::id(),
        started: now(),
        state_dir: state_dir.display().to_string(),
        watching: WATCHING.iter().map(|s| s.to_string()).collect(),
        cluster: ClusterStatus::from(cluster.as_ref()),
        ..AgentStatus::default()
    }));
    let links = KernelExecutor::new()?
        .observe(&Ns::Host, &[])
        .map_err(anyhow::Error::msg)?
        .links;
    let mut classifier =
        Classifier::new(&ctx.instance, &links).with_own_name(crate::adapters::process::own_name());
    // The underlay's MTU bounds the overlay networks': followed from the link notifications.
    if let Some(u) = cluster
        .as_ref()
        .and_then(|c| crate::engine::underlay::find(c.advertise).ok())
    {
        classifier = classifier.with_underlay(u.ifname, Some(u.mtu));
    }

    let (jobs, inbox) = mpsc::channel::<Job>();
    let worker_ctx = Ctx::open(state_dir, run_dir, config_path)?;
    let worker_status = status.clone();
    let worker = std::thread::Builder::new()
        // Named "weft" like every weft process: the kernel reports the sending thread's name with
        // each nf_tables transaction, and weft's own are never drift.
        .name("weft".into())
        .spawn(move || worker::run(worker_ctx, worker_status, inbox))
        .context("starting the agent's worker thread")?;

    // The DNS server's port is recorded before the first gc pass, which puts it into the
    // firewall's redirect. Without it the agent still repairs; the status says why.
    // Other hosts' sandboxes' names, from the cluster task to the DNS task, as its watch
    // sees them change.
    let (names_tx, names_rx) = match &cluster {
        Some(_) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let dns = match dns::start(dns::Setup {
        state_dir: state_dir.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
        resolv_conf: ctx.config.resolv_conf(),
        resolved_conf: ctx.config.resolved_conf(),
        rate_limit: ctx.config.dns_rate_limit(),
        remote_names: names_rx,
        port_recorded_again: {
            let jobs = jobs.clone();
            Box::new(move || {
                let _ = jobs.send(Job::Firewall(
                    "the DNS server's port was recorded again".into(),
                ));
            })
        },
    }) {
        Ok(h) => Some(h),
        Err(e) => {
            // A port recorded by an earlier agent may be anyone's now: the firewall must not
            // send sandboxes' queries there.
            crate::adapters::dns_port::remove(run_dir);
            tracing::error!("DNS server: {e:#}");
            if let Ok(mut s) = status.lock() {
                s.errors.push(format!("DNS server not started: {e:#}"));
            }
            None
        }
    };
    let dns_stats = dns.as_ref().map(|d| d.stats.clone());
    // The overlay control plane. Its membership is what the request handlers use to reach
    // the cluster (`None`: no cluster configured).
    let cluster_task = match cluster {
        Some(config) => Some(cluster::start(cluster::Setup {
            config,
            state_dir: state_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            config_path: config_path.to_path_buf(),
            status: status.clone(),
            names: names_tx,
        })?),
        None => None,
    };
    let cluster_shared = cluster_task.as_ref().map(|t| t.shared.clone());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the agent's event loop")?;
    let result = rt.block_on(event_loop(
        &ctx,
        classifier,
        status,
        dns_stats,
        cluster_shared,
        jobs,
        stay,
    ));
    if let Some(d) = dns {
        d.stop();
    }
    if let Some(t) = cluster_task {
        t.stop();
    }
    // The worker finishes its job in hand, then sees the channel closed.
    let _ = worker.join();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    drop(lock);
    tracing::info!("weft agent stopped");
    result.map(|()| 0)
}

async fn event_loop(
    ctx: &Ctx,
    mut classifier: Classifier,
    status: Arc<Mutex<AgentStatus>>,
    dns: Option<Arc<dns::Stats>>,
    cluster: Option<cluster::Shared>,
    jobs: mpsc::Sender<Job>,
    stay: bool,
) -> Result<()> {
    // Watch first, then repair what happened before: nothing falls between the two. The
    // neighbour notifications only for the overlay's control plane.
    let mut rt_watch = RtWatch::open(cluster.is_some()).context("watching rtnetlink")?;
    let mut nft_watch = NftWatch::open().context("watching nf_tables")?;
    let listener = ControlListener::bind(&ctx.run_dir).context("binding the control socket")?;
    let parking = crate::adapters::fd_park::ParkingLot::bind(&ctx.run_dir)
        .context("binding the parking socket")?;
    let mut parked: Vec<std::os::fd::OwnedFd> = Default::default();
    let mut parked_at: Option<Instant> = None;
    let park_max = park_capacity();
    let (started, ready) = oneshot::channel();
    send(&jobs, Job::Startup(started))?;
    let _ = ready.await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!("weft agent ready");

    let mut sysctl_tick = interval(SYSCTL_EVERY);
    let mut alive_tick = interval(ALIVE_EVERY);
    let mut gc_tick = interval(GC_EVERY);
    for t in [&mut sysctl_tick, &mut alive_tick, &mut gc_tick] {
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    // The first tick of an interval is immediate: gc just ran.
    gc_tick.tick().await;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut pending = Pending::default();
    let mut due: Option<Instant> = None;
    let conversations = Arc::new(tokio::sync::Semaphore::new(MAX_CONVERSATIONS));
    let mut last_accept_error: Option<Instant> = None;

    loop {
        tokio::select! {
            ev = rt_watch.next() => {
                let Some(ev) = ev else { anyhow::bail!("the rtnetlink watch closed") };
                classifier.rt(&ev, &mut pending);
            }
            ev = nft_watch.next() => match ev {
                Ok(NftEvent::Batch(b)) => classifier.nft(&b, &mut pending),
                Ok(NftEvent::Lost) => classifier.nft_lost(&mut pending),
                // The watch is gone: the periodic gc still repairs, within a minute.
                Err(e) => {
                    tracing::error!("nf_tables notifications: {e}; checking every minute instead");
                    nft_watch = NftWatch::open().context("watching nf_tables again")?;
                }
            },
            () = async { sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {
                due = None;
                let work = std::mem::take(&mut pending);
                if let Some(cause) = work.everything {
                    send(&jobs, Job::Gc(cause))?;
                }
                if let Some(cause) = work.firewall {
                    send(&jobs, Job::Firewall(cause))?;
                    // The cluster's member VTEPs are the cluster task's to read back.
                    if let Some(c) = &cluster {
                        c.drift.repair_all();
                    }
                }
                if !work.owners.is_empty() {
                    send(&jobs, Job::Owners(work.owners.into_iter().collect()))?;
                }
                if let Some(c) = &cluster {
                    if work.members {
                        c.drift.members();
                    }
                    if work.underlay {
                        c.drift.underlay();
                    }
                    if work.overlay_entries {
                        c.drift.repair_all();
                    } else {
                        if !work.overlay_removed.is_empty() {
                            c.drift.removed(work.overlay_removed);
                        }
                        if !work.overlay_changed.is_empty() {
                            c.drift.changed(work.overlay_changed);
                        }
                    }
                }
            }
            fds = parking.next(), if parked.len() < park_max => {
                parked.extend(fds);
                parked_at = Some(Instant::now());
            }
            () = async { sleep_until(parked_at.unwrap_or_else(Instant::now) + PARK_QUIET).await }, if parked_at.is_some() => {
                parked_at = None;
                close_parked(std::mem::take(&mut parked));
            }
            _ = sysctl_tick.tick() => send(&jobs, Job::Sysctls)?,
            _ = gc_tick.tick() => send(&jobs, Job::Gc("periodic check".into()))?,
            _ = alive_tick.tick(), if !stay => {
                let (tx, rx) = oneshot::channel();
                send(&jobs, Job::Alive(tx))?;
                if !rx.await.unwrap_or(true) {
                    tracing::info!("nothing weft-made is left: leaving");
                    return Ok(());
                }
            }
            conv = listener.accept() => {
                match conv {
                    Ok(c) => {
                        // A bounded number of conversations, each bounded in time: no client
                        // can pin the agent's descriptors or its attention.
                        let Ok(permit) = conversations.clone().try_acquire_owned() else {
                            continue;
                        };
                        let (jobs, status, stop) = (jobs.clone(), status.clone(), stop_tx.clone());
                        let dns = dns.clone();
                        let membership = cluster.as_ref().map(|c| c.membership.clone());
                        tokio::spawn(async move {
                            converse(c, jobs, status, dns, membership, stop).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // Out of descriptors, most likely: say so once a second at most, and
                        // give the clients time to go instead of spinning.
                        if last_accept_error.is_none_or(|t: Instant| t.elapsed() > Duration::from_secs(1)) {
                            tracing::warn!("control socket: {e}");
                            last_accept_error = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = stop_rx.recv() => return Ok(()),
        }
        if due.is_none() && !pending.is_empty() {
            due = Some(Instant::now() + SETTLE);
        }
    }
}

/// Closes parked sockets off the event loop: a close can still wait for a grace period when
/// another process deleted something a moment ago.
fn close_parked(fds: Vec<std::os::fd::OwnedFd>) {
    if fds.is_empty() {
        return;
    }
    // Without a thread (out of resources) they are dropped here, with the failed closure.
    let _ = std::thread::Builder::new()
        .name("weft".into())
        .spawn(move || drop(fds));
}

fn send(jobs: &mpsc::Sender<Job>, job: Job) -> Result<()> {
    jobs.send(job)
        .map_err(|_| anyhow::anyhow!("the agent's worker stopped"))
}

/// Answers one client.
async fn converse(
    mut c: Conversation,
    jobs: mpsc::Sender<Job>,
    status: Arc<Mutex<AgentStatus>>,
    dns: Option<Arc<dns::Stats>>,
    // This host's cluster membership, for the overlay requests (`None`: no cluster).
    membership: Option<Arc<crate::engine::cluster::Membership>>,
    stop: tokio::sync::mpsc::Sender<()>,
) {
    let request = match tokio::time::timeout(REQUEST_WAIT, c.request()).await {
        Ok(r) => r,
        Err(_) => return,
    };
    // Only weft's own commands: processes of this host's network and PID namespaces (a
    // sandbox's processes live in others; the socket's mode already keeps other users out).
    if !c.peer_is_local() {
        let _ = c
            .reply(&Response::failed("refused: not a process of this host"))
            .await;
        return;
    }
    let resp = match request {
        Err(e) => Response::failed(format!("bad request: {e}")),
        Ok(Request::Status) => {
            let mut s = status.lock().map(|s| s.clone()).unwrap_or_default();
            s.uptime_secs = now().saturating_sub(s.started);
            s.dns = dns.map(|d| d.view());
            Response {
                status: Some(s),
                ..Response::ok()
            }
        }
        Ok(Request::Stop) => {
            let _ = stop.send(()).await;
            Response::ok()
        }
        // The cluster store blocks: off the event loop.
        Ok(req) if cluster_requests::is_cluster_request(&req) => {
            tokio::task::spawn_blocking(move || cluster_requests::handle(membership, req))
                .await
                .unwrap_or_else(|_| Response::failed("the agent's cluster request failed"))
        }
        Ok(req) => {
            let (tx, rx) = oneshot::channel();
            let job = match req {
                Request::Reserve { sandbox } => Job::Reserve(sandbox, tx),
                Request::Release { sandbox } => Job::Release(sandbox, tx),
                _ => Job::RepairAll(tx),
            };
            match jobs.send(job) {
                Ok(()) => rx
                    .await
                    .unwrap_or_else(|_| Response::failed("the agent's worker stopped")),
                Err(_) => Response::failed("the agent's worker stopped"),
            }
        }
    };
    let _ = c.reply(&resp).await;
}
