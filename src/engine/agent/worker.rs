//! The agent's worker thread: every repair, gc pass and port reservation runs here, one at a
//! time, with its own store connection and a fresh kernel executor per job (interface indexes
//! change when objects are made again). The event loop only decides what to ask for.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::sync::oneshot;

use crate::adapters::netlink::KernelExecutor;
use crate::adapters::port_reservation;
use crate::adapters::store::Mode;
use crate::adapters::store::Store as _;
use crate::core::agent::{AgentStatus, RepairRecord, ReservationView, Response};
use crate::core::model::Status;
use crate::engine::reconcile::{self, Repaired};
use crate::engine::{firewall, gc, now, Ctx};

/// How many repairs `weft daemon status` lists (all are counted).
const KEEP_REPAIRS: usize = 50;
/// How many errors it lists.
const KEEP_ERRORS: usize = 20;

/// Work for the worker.
pub(super) enum Job {
    /// The first pass: gc, then every reservation; answered when done.
    Startup(oneshot::Sender<()>),
    /// Repair the networks or sandboxes that own changed kernel objects: (owner id, cause).
    Owners(Vec<(String, String)>),
    /// The firewall changed behind weft's back.
    Firewall(String),
    /// Check every network's sysctls (the kernel announces no sysctl change).
    Sysctls,
    /// A full gc pass and a resync of the reservations, with the cause.
    Gc(String),
    /// Hold the sandbox's published ports.
    Reserve(String, oneshot::Sender<Response>),
    /// Let go of the sandbox's published ports.
    Release(String, oneshot::Sender<Response>),
    /// Repair everything now.
    RepairAll(oneshot::Sender<Response>),
    /// Whether anything weft-made still exists (else the agent leaves).
    Alive(oneshot::Sender<bool>),
}

/// One held reservation.
struct Held {
    view: ReservationView,
    // Held only to keep the port bound; closed when dropped.
    _socket: OwnedFd,
}

struct Worker {
    ctx: Ctx,
    status: Arc<Mutex<AgentStatus>>,
    held: HashMap<String, Vec<Held>>,
}

/// Runs jobs until the sending side goes away.
pub(super) fn run(ctx: Ctx, status: Arc<Mutex<AgentStatus>>, jobs: Receiver<Job>) {
    let mut w = Worker {
        ctx,
        status,
        held: HashMap::new(),
    };
    while let Ok(job) = jobs.recv() {
        w.handle(job);
        // A job may read every record and dump the kernel's tables: give that memory back,
        // or the agent keeps the high-water mark of its largest pass (tens of MiB with a
        // thousand sandboxes). Cheap when there is nothing to give back.
        crate::adapters::memory::trim();
    }
}

impl Worker {
    fn handle(&mut self, job: Job) {
        match job {
            Job::Startup(done) => {
                self.gc("agent started");
                let _ = done.send(());
            }
            Job::Owners(mut owners) => {
                // Networks first: a sandbox's ports need their bridge back.
                owners.sort_by_key(|(id, _)| !reconcile::is_network(&self.ctx, id));
                for (id, cause) in owners {
                    let r = self
                        .exec()
                        .and_then(|mut exec| reconcile::owner(&self.ctx, &mut exec, &id));
                    self.record(&cause, r);
                }
            }
            Job::Firewall(cause) => {
                // Checked first: only what drifted is reported (and rebuilt, in one batch).
                let r = firewall::reconcile(&self.ctx).map(|drifts| Repaired {
                    applied: drifts
                        .iter()
                        .map(|d| format!("rebuilt weft's nftables tables: {d}"))
                        .collect(),
                    errors: vec![],
                });
                self.record(&cause, r);
            }
            Job::Sysctls => {
                let r = self
                    .exec()
                    .and_then(|mut exec| reconcile::sysctls(&self.ctx, &mut exec));
                self.record("a sysctl weft sets was changed", r);
            }
            Job::Gc(cause) => self.gc(&cause),
            Job::Reserve(id, reply) => {
                let resp = match self.reserve(&id) {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::failed(format!("{e:#}")),
                };
                let _ = reply.send(resp);
            }
            Job::Release(id, reply) => {
                // Only the ports of a removed sandbox, or of a stopped one (which has none on
                // record): nobody may take a live sandbox's reservation.
                let live = self
                    .ctx
                    .store
                    .begin(Mode::Read)
                    .and_then(|tx| tx.sandbox(&id))
                    .map(|s| {
                        s.filter(|s| {
                            s.id == id && s.status != Status::Removing && !s.ports.is_empty()
                        })
                    });
                let resp = match live {
                    Ok(None) => {
                        self.held.remove(&id);
                        self.publish_reservations();
                        Response::ok()
                    }
                    Ok(Some(sb)) => Response::failed(format!(
                        "sandbox {:?} still exists; its ports stay reserved",
                        sb.name
                    )),
                    Err(e) => Response::failed(e.to_string()),
                };
                let _ = reply.send(resp);
            }
            Job::RepairAll(reply) => {
                self.gc("requested with `weft daemon repair`");
                let _ = reply.send(Response::ok());
            }
            Job::Alive(reply) => {
                let _ = reply.send(self.alive());
            }
        }
    }

    fn exec(&self) -> Result<KernelExecutor> {
        Ok(KernelExecutor::new()?)
    }

    /// A gc pass (debris, drift, firewall) and a resync of the reservations with the records.
    fn gc(&mut self, cause: &str) {
        match gc::run(&self.ctx) {
            Ok(report) => {
                let mut applied = report.repairs.clone();
                for (what, list) in [
                    ("removed sandbox", &report.sandboxes_removed),
                    ("marked exited", &report.sandboxes_exited),
                    ("removed half-made network", &report.networks_removed),
                    ("settled interrupted endpoint", &report.endpoints_settled),
                    ("deleted orphan", &report.orphans_deleted),
                ] {
                    applied.extend(list.iter().map(|x| format!("{what} {x}")));
                }
                self.record(
                    cause,
                    Ok(Repaired {
                        applied,
                        errors: report.errors,
                    }),
                );
            }
            Err(e) => self.error(format!("gc: {e:#}")),
        }
        if let Err(e) = self.sync_reservations() {
            self.error(format!("reserving published ports: {e:#}"));
        }
    }

    /// Reservations for exactly the published ports on record.
    fn sync_reservations(&mut self) -> Result<()> {
        let ids: Vec<String> = {
            let tx = self.ctx.store.begin(Mode::Read)?;
            tx.sandboxes()?
                .into_iter()
                .filter(|s| s.status != Status::Removing && !s.ports.is_empty())
                .map(|s| s.id)
                .collect()
        };
        self.held.retain(|id, _| ids.contains(id));
        for id in ids {
            if let Err(e) = self.reserve(&id) {
                self.error(format!("{e:#}"));
            }
        }
        self.publish_reservations();
        Ok(())
    }

    /// Binds every published port of the sandbox not held yet. A port some host process took
    /// meanwhile is reported (the others are still held).
    fn reserve(&mut self, id: &str) -> Result<()> {
        let sb = {
            let tx = self.ctx.store.begin(Mode::Read)?;
            tx.sandbox(id)?
        };
        let Some(sb) = sb.filter(|s| s.id == id) else {
            self.held.remove(id);
            self.publish_reservations();
            return Ok(());
        };
        let held = self.held.entry(sb.id.clone()).or_default();
        let mut failed = Vec::new();
        for m in &sb.ports {
            let view = ReservationView {
                sandbox: sb.name.clone(),
                protocol: m.protocol.name().to_string(),
                host_ip: m.host_ip.to_string(),
                host_port: m.host_port,
            };
            if held.iter().any(|h| h.view == view) {
                continue;
            }
            match port_reservation::reserve(m.protocol, m.host_ip, m.host_port) {
                Ok(socket) => held.push(Held {
                    view,
                    _socket: socket,
                }),
                Err(e) => failed.push(format!("{m}: {e}")),
            }
        }
        self.publish_reservations();
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "cannot reserve published ports of sandbox {:?}: {}",
                sb.name,
                failed.join("; ")
            )
        }
    }

    fn publish_reservations(&self) {
        let mut views: Vec<ReservationView> = self
            .held
            .values()
            .flat_map(|v| v.iter().map(|h| h.view.clone()))
            .collect();
        views.sort_by(|a, b| (&a.sandbox, a.host_port).cmp(&(&b.sandbox, b.host_port)));
        if let Ok(mut s) = self.status.lock() {
            s.reservations = views;
        }
    }

    fn alive(&self) -> bool {
        if !self.ctx.state_dir.exists() {
            return false;
        }
        let Ok(tx) = self.ctx.store.begin(Mode::Read) else {
            return false;
        };
        let nets = tx.networks().map(|n| !n.is_empty()).unwrap_or(false);
        let sbs = tx.sandboxes().map(|s| !s.is_empty()).unwrap_or(false);
        nets || sbs
    }

    /// Keeps a repair in the status (and the log) when it changed or failed anything.
    fn record(&self, cause: &str, r: Result<Repaired>) {
        let r = match r {
            Ok(r) => r,
            Err(e) => Repaired {
                applied: vec![],
                errors: vec![format!("{e:#}")],
            },
        };
        if r.is_empty() {
            return;
        }
        tracing::warn!(cause, applied = ?r.applied, errors = ?r.errors, "repaired drift");
        if let Ok(mut s) = self.status.lock() {
            s.repairs_total = s.repairs_total.saturating_add(1);
            s.repairs.push(RepairRecord {
                at: now(),
                cause: cause.to_string(),
                applied: r.applied,
                errors: r.errors,
            });
            let excess = s.repairs.len().saturating_sub(KEEP_REPAIRS);
            s.repairs.drain(..excess);
        }
    }

    fn error(&self, e: String) {
        tracing::error!("{e}");
        if let Ok(mut s) = self.status.lock() {
            s.errors.push(e);
            let excess = s.errors.len().saturating_sub(KEEP_ERRORS);
            s.errors.drain(..excess);
        }
    }
}
