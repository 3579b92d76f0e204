//! The agent's DNS server task: answers sandboxes' names on their networks and forwards the
//! rest (the decisions are `core::dns`'s, the sockets `adapters::dns`'s).
//!
//! It runs on its own thread with its own event loop, so that repairs never delay an answer
//! and a query flood never delays a repair. Records come from the state store through the
//! task's own connection: after receiving a batch of queries and before answering them, it
//! reads SQLite's `data_version` (about a microsecond) and rebuilds its table when another
//! process committed, so a change is visible as soon as the command that made it returns,
//! without any notification. Sandboxes of other hosts (overlay networks) come from the
//! agent's cluster task instead, as [`NameChange`]s sent when its watch sees them change:
//! the task wakes on them and applies each to its table in place (only that sandbox's names).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use std::os::fd::AsRawFd as _;

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::adapters::dns::batch::{self, Datagram, Inbox, Outbox};
use crate::adapters::dns::socket::{self, Bound};
use crate::adapters::dns::upstream::{self, Answer};
use crate::adapters::dns_port;
use crate::adapters::store::{Mode, SqliteStore, Store as _};
use crate::core::agent::DnsStatus;
use crate::core::dns::answer::{decide, refuse, Decision, Forward};
use crate::core::dns::cache::{Cache, CacheKey};
use crate::core::dns::fast::local_reply;
use crate::core::dns::ratelimit::{InFlight, RateLimiter};
use crate::core::dns::remote::NameChange;
use crate::core::dns::reply;
use crate::core::dns::stranger::{may_refuse, Ingress};
use crate::core::dns::table::{AskerIdx, NetIdx, Table};
use crate::core::dns::upstream::host_upstreams;
use hickory_proto::op::ResponseCode;

/// Sandboxes' TCP connections served at once, and per sandbox address: one sandbox holding
/// connections open leaves room for the others.
const MAX_TCP: u32 = 128;
const TCP_PER_SOURCE: u32 = 16;
/// Strangers' TCP connections (host processes, other hosts: all answered REFUSED), apart, so
/// that they cannot take the sandboxes' room.
const TCP_STRANGERS: u32 = 8;
const TCP_PER_STRANGER: u32 = 2;
/// How long a client TCP connection may sit idle.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Forwarded queries in flight per source, and in all.
const IN_FLIGHT_PER_SOURCE: u32 = 100;
const IN_FLIGHT_TOTAL: u32 = 4096;
/// How often the host's resolver files are read again (they change with DHCP, VPNs).
const HOST_RESOLVERS_EVERY: Duration = Duration::from_secs(1);
/// How often an interface index that did not match is looked up again (a bridge the agent
/// made again has a new one, and the store does not change).
const IFINDEX_RETRY: Duration = Duration::from_millis(100);
/// How many errors the status lists.
const KEEP_ERRORS: usize = 10;

/// The server's counters, shared with `weft daemon status`.
#[derive(Debug, Default)]
pub struct Stats {
    port: AtomicU64,
    records: AtomicU64,
    answered: AtomicU64,
    forwarded: AtomicU64,
    cached: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    rate_limited: AtomicU64,
    errors: AtomicU64,
    recent: Mutex<VecDeque<String>>,
}

impl Stats {
    /// What `weft daemon status` shows.
    pub fn view(&self) -> DnsStatus {
        DnsStatus {
            port: u16::try_from(self.port.load(Relaxed)).unwrap_or(0),
            records: self.records.load(Relaxed),
            answered: self.answered.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            cached: self.cached.load(Relaxed),
            failed: self.failed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            errors: self.errors.load(Relaxed),
            recent_errors: self
                .recent
                .lock()
                .map(|r| r.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    fn error(&self, what: String) {
        tracing::warn!("DNS: {what}");
        self.errors.fetch_add(1, Relaxed);
        if let Ok(mut r) = self.recent.lock() {
            if r.len() >= KEEP_ERRORS {
                r.pop_front();
            }
            r.push_back(what);
        }
    }
}

/// The running server.
pub struct Handle {
    /// Its counters.
    pub stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    run_dir: PathBuf,
}

impl Handle {
    /// Stops the server and forgets its port.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        dns_port::remove(&self.run_dir);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the server reads its configuration from.
pub struct Setup {
    /// The state directory (its own store connection).
    pub state_dir: PathBuf,
    /// The run directory (`dns.port`).
    pub run_dir: PathBuf,
    /// The host's `resolv.conf`.
    pub resolv_conf: PathBuf,
    /// systemd-resolved's upstream list.
    pub resolved_conf: PathBuf,
    /// Queries per second per source (0: no limit).
    pub rate_limit: u32,
    /// Called after the port was recorded again (the file had been removed or replaced):
    /// the firewall's redirect elements follow the file, so it is to be checked.
    pub port_recorded_again: Box<dyn Fn() + Send>,
    /// Other hosts' sandboxes, from the cluster task (`None`: no cluster).
    pub remote_names: Option<mpsc::UnboundedReceiver<NameChange>>,
}

/// Binds the sockets (the previous agent's port when it is free), records the port in
/// `RUN_DIR/dns.port`, and starts the server's thread. Returns once the port is recorded, so
/// that the firewall the agent repairs next redirects to it.
pub fn start(setup: Setup) -> Result<Handle> {
    let bound = socket::bind_all(dns_port::read(&setup.run_dir))
        .context("binding the DNS server's sockets")?;
    let store = SqliteStore::open(&setup.state_dir)?;
    dns_port::write(&setup.run_dir, bound.port).context("recording the DNS server's port")?;
    let stats = Arc::new(Stats::default());
    stats.port.store(u64::from(bound.port), Relaxed);
    let (stop_tx, stop_rx) = oneshot::channel();
    let run_dir = setup.run_dir.clone();
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name("weft-dns".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    thread_stats.error(format!("starting its event loop: {e}"));
                    return;
                }
            };
            let stats = thread_stats.clone();
            if let Err(e) = rt.block_on(serve(bound, store, setup, thread_stats, stop_rx)) {
                stats.error(format!("stopped: {e:#}"));
            }
        })
        .context("starting the DNS server's thread")?;
    tracing::info!(port = stats.port.load(Relaxed), "DNS server listening");
    Ok(Handle {
        stats,
        stop: Some(stop_tx),
        thread: Some(thread),
        run_dir,
    })
}

/// Where a reply goes.
enum ReplyTo {
    /// A datagram, from the address the query was sent to.
    Udp {
        v6: bool,
        to: SocketAddr,
        from: IpAddr,
    },
    /// A TCP connection's task.
    Tcp(oneshot::Sender<Option<Vec<u8>>>),
}

/// A query read from a TCP connection.
struct TcpQuery {
    packet: Vec<u8>,
    peer: SocketAddr,
    local: IpAddr,
    reply: oneshot::Sender<Option<Vec<u8>>>,
}

/// A forwarded query's outcome.
struct Done {
    forward: Forward,
    key: CacheKey,
    src: IpAddr,
    tcp: bool,
    to: ReplyTo,
    answer: Option<Answer>,
}

struct Server {
    store: SqliteStore,
    version: Option<i64>,
    /// The table; other hosts' sandboxes, as the cluster task last said, are kept in it
    /// across rebuilds.
    table: Table,
    /// Each network's bridge's interface index, and when it was last looked up.
    bridges: Vec<(Option<u32>, Option<Instant>)>,
    cache: Cache,
    limiter: RateLimiter,
    in_flight: InFlight,
    host: Arc<[SocketAddr]>,
    host_read: Option<Instant>,
    setup: Setup,
    stats: Arc<Stats>,
    epoch: Instant,
    done: mpsc::UnboundedSender<Done>,
    udp4: Arc<Udp>,
    udp6: Option<Arc<Udp>>,
    /// The loopback interface's index (datagrams from host processes arrive on it).
    loopback: Option<u32>,
    /// Client TCP connections open, shared with their tasks.
    tcp: Arc<Mutex<TcpSlots>>,
}

/// Open client TCP connections: sandboxes' and strangers' apart.
struct TcpSlots {
    sandboxes: InFlight,
    strangers: InFlight,
}

/// One open client TCP connection's slot, given back when its task ends.
struct TcpSlot {
    slots: Arc<Mutex<TcpSlots>>,
    peer: IpAddr,
    sandbox: bool,
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slots.lock() {
            if self.sandbox {
                s.sandboxes.finish(self.peer);
            } else {
                s.strangers.finish(self.peer);
            }
        }
    }
}

/// A UDP socket registered with the event loop.
type Udp = AsyncFd<std::net::UdpSocket>;

/// Registers a UDP socket with the event loop, for reading (replies are sent without waiting).
fn register(sock: std::net::UdpSocket) -> std::io::Result<Udp> {
    // SAFETY: the socket owns its descriptor, which stays open and the same for as long as
    // the AsyncFd, which owns the socket, lives.
    unsafe { AsyncFd::register_with_interest(sock, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

/// Why a query gets no answer from the table.
enum Turned {
    /// Nothing at all (a source that may be forged, or over its rate).
    Silent,
    /// REFUSED (a stranger whose source the kernel vouches for, or over TCP).
    Refused,
}

async fn serve(
    bound: Bound,
    store: SqliteStore,
    mut setup: Setup,
    stats: Arc<Stats>,
    mut stop: oneshot::Receiver<()>,
) -> Result<()> {
    let udp4 = Arc::new(register(bound.udp4)?);
    let udp6 = bound.udp6.map(register).transpose()?.map(Arc::new);
    let tcp4 = TcpListener::from_std(bound.tcp4)?;
    let tcp6 = bound.tcp6.map(TcpListener::from_std).transpose()?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpQuery>(1024);
    let mut remote_rx = setup.remote_names.take();
    let mut s = Server {
        store,
        version: None,
        table: Table::default(),
        bridges: vec![],
        cache: Cache::default(),
        limiter: RateLimiter::new(setup.rate_limit),
        in_flight: InFlight::new(IN_FLIGHT_PER_SOURCE, IN_FLIGHT_TOTAL),
        host: Arc::from(Vec::new()),
        host_read: None,
        setup,
        stats,
        epoch: Instant::now(),
        done: done_tx,
        udp4: udp4.clone(),
        udp6: udp6.clone(),
        loopback: socket::if_index("lo"),
        tcp: Arc::new(Mutex::new(TcpSlots {
            sandboxes: InFlight::new(TCP_PER_SOURCE, MAX_TCP),
            strangers: InFlight::new(TCP_PER_STRANGER, TCP_STRANGERS),
        })),
    };
    s.refresh();
    // Records are kept current also without queries, for `weft daemon status`.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inbox = Inbox::new();
    let mut outbox = Outbox::new();
    loop {
        tokio::select! {
            r = udp4.readable() => {
                s.udp_batch(r, false, &mut inbox, &mut outbox);
            }
            r = async {
                match &udp6 {
                    Some(u) => u.readable().await,
                    None => std::future::pending().await,
                }
            } => {
                s.udp_batch(r, true, &mut inbox, &mut outbox);
            }
            _ = tick.tick() => {
                s.refresh();
                s.keep_port();
            }
            c = tcp4.accept() => s.accept(c, &tcp_tx).await,
            c = async {
                match &tcp6 {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => s.accept(c, &tcp_tx).await,
            Some(q) = tcp_rx.recv() => {
                let to = ReplyTo::Tcp(q.reply);
                s.refresh();
                if let Some(r) = s.query(&q.packet, q.peer, q.local, None, true, to) {
                    r.send(&s);
                }
            }
            Some(d) = done_rx.recv() => s.finish(d),
            change = async {
                match &mut remote_rx {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match change {
                Some(c) => {
                    // Applied to the table in place, with every change queued meanwhile: a
                    // rebuild (which also reads the store) would cost as much as the cluster
                    // is large, on every host, for every sandbox that comes or goes anywhere.
                    s.apply_remote(c);
                    if let Some(rx) = &mut remote_rx {
                        while let Ok(c) = rx.try_recv() {
                            s.apply_remote(c);
                        }
                    }
                }
                // The cluster task stopped: its last word stands.
                None => remote_rx = None,
            },
            _ = &mut stop => return Ok(()),
        }
    }
}

impl ReplyTo {
    fn send(self, server: &Server, data: Option<Vec<u8>>) {
        match self {
            ReplyTo::Tcp(tx) => {
                let _ = tx.send(data);
            }
            ReplyTo::Udp { v6, to, from } => {
                let Some(data) = data else { return };
                let sock = if v6 {
                    server.udp6.as_ref()
                } else {
                    Some(&server.udp4)
                };
                if let Some(sock) = sock {
                    if let Err(e) = socket::send_from(sock, &data, to, from) {
                        if e.kind() != std::io::ErrorKind::WouldBlock {
                            server.stats.error(format!("replying to {to}: {e}"));
                        }
                    }
                }
            }
        }
    }
}

/// A reply to send at once, with its destination.
struct Immediate(ReplyTo, Option<Vec<u8>>);

impl Immediate {
    fn send(self, server: &Server) {
        self.0.send(server, self.1)
    }
}

impl Server {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Applies a change of other hosts' sandboxes to the table and to what later rebuilds
    /// start from.
    fn apply_remote(&mut self, c: NameChange) {
        self.table.apply_remote(&c);
        self.stats.records.store(
            u64::try_from(self.table.records()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// Rebuilds the table when the store changed since it was built.
    fn refresh(&mut self) {
        let v = match self.store.data_version() {
            Ok(v) => v,
            Err(e) => {
                self.stats
                    .error(format!("reading the store's version: {e}"));
                return;
            }
        };
        if self.version == Some(v) {
            return;
        }
        let read = self.store.begin(Mode::Read).and_then(|t| {
            let nets = t.networks()?;
            let sbs = t.sandboxes()?;
            Ok((nets, sbs))
        });
        match read {
            Ok((nets, sbs)) => {
                // The local part only: other hosts' sandboxes stay as they are (a local
                // change costs as much as this host has, not as the cluster has).
                self.table.rebuild_local(&nets, &sbs);
                self.bridges = self
                    .table
                    .networks()
                    .iter()
                    .map(|n| (socket::if_index(&n.bridge), Some(Instant::now())))
                    .collect();
                self.stats.records.store(
                    u64::try_from(self.table.records()).unwrap_or(u64::MAX),
                    Relaxed,
                );
                self.version = Some(v);
            }
            Err(e) => self.stats.error(format!("reading the store: {e}")),
        }
    }

    /// Records the port again when `RUN_DIR/dns.port` no longer says it (removed, or
    /// replaced by garbage, a link or a FIFO: the firewall would redirect nowhere). The
    /// write replaces whatever is there, never writing through it.
    fn keep_port(&self) {
        let Ok(port) = u16::try_from(self.stats.port.load(Relaxed)) else {
            return;
        };
        if dns_port::read(&self.setup.run_dir) != Some(port) {
            match dns_port::write(&self.setup.run_dir, port) {
                Ok(()) => (self.setup.port_recorded_again)(),
                Err(e) => self.stats.error(format!("recording the port again: {e}")),
            }
        }
    }

    /// Whether `ifindex` is network `net`'s bridge (looked up again, now and then, when not).
    fn on_bridge(&mut self, net: NetIdx, ifindex: u32) -> bool {
        let Some(slot) = self.bridges.get_mut(net as usize) else {
            return false;
        };
        if slot.0 == Some(ifindex) {
            return true;
        }
        if slot.1.is_some_and(|t| t.elapsed() < IFINDEX_RETRY) {
            return false;
        }
        let Some(info) = self.table.networks().get(net as usize) else {
            return false;
        };
        *slot = (socket::if_index(&info.bridge), Some(Instant::now()));
        slot.0 == Some(ifindex)
    }

    /// The sandbox asking from `src` to `dst` (arriving on `ifindex` for UDP).
    fn asker(&mut self, src: IpAddr, dst: IpAddr, ifindex: Option<u32>) -> Option<AskerIdx> {
        let net = self.table.network_of(dst)?;
        if let Some(i) = ifindex {
            if !self.on_bridge(net, i) {
                return None;
            }
        }
        self.table.asker(net, src)
    }

    /// Where a stranger's datagram to `dst` arrived from ([`may_refuse`]).
    fn ingress(&mut self, dst: IpAddr, ifindex: u32) -> Ingress {
        if self.loopback == Some(ifindex) {
            return Ingress::Loopback;
        }
        match self.table.network_of(dst) {
            Some(net) if self.on_bridge(net, ifindex) => Ingress::OwnBridge,
            _ => Ingress::Other,
        }
    }

    /// Receives what is queued on a ready socket, up to a batch, in one call, then checks
    /// the store once, answers them all and sends the replies in one call. Every datagram of
    /// the batch was queued before that check, so a change committed before any of them was
    /// sent is seen: one check per batch instead of per query, as strict.
    fn udp_batch(
        &mut self,
        ready: std::io::Result<AsyncFdReadyGuard<'_, std::net::UdpSocket>>,
        v6: bool,
        inbox: &mut Inbox,
        outbox: &mut Outbox,
    ) {
        let mut guard = match ready {
            Ok(g) => g,
            Err(e) => {
                self.stats.error(format!("waiting for queries: {e}"));
                return;
            }
        };
        let fd = guard.get_inner().as_raw_fd();
        match inbox.recv(fd) {
            // A short batch emptied the queue: wait for the next datagram's wake-up
            // (one that arrived since is not lost: tokio keeps newer readiness).
            Ok(n) if n < batch::BATCH => guard.clear_ready(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                guard.clear_ready();
                return;
            }
            // ICMP errors for earlier replies surface here; none concerns a query.
            Err(e) => {
                if e.kind() != std::io::ErrorKind::ConnectionRefused {
                    self.stats.error(format!("receiving: {e}"));
                }
                return;
            }
        }
        self.refresh();
        for (packet, d) in inbox.datagrams() {
            self.udp_query(packet, d, v6, outbox);
        }
        let stats = &self.stats;
        outbox.flush(fd, |to, e| stats.error(format!("replying to {to}: {e}")));
    }

    /// Handles one datagram: a local answer is written straight into `outbox`, anything else
    /// goes the general way ([`Server::query`]).
    fn udp_query(&mut self, packet: &[u8], d: &Datagram, v6: bool, outbox: &mut Outbox) {
        let now = self.now();
        let asker = match self.admit(d.src, d.dst, Some(d.ifindex), now) {
            Ok(a) => a,
            Err(Turned::Silent) => return,
            Err(Turned::Refused) => {
                if let Some(r) = refuse(packet) {
                    self.udp_reply(outbox, &r, d);
                }
                return;
            }
        };
        if let Some(slot) = outbox.slot() {
            if let Some(n) = local_reply(&self.table, asker, packet, slot) {
                self.stats.answered.fetch_add(1, Relaxed);
                outbox.commit(n, d.src, d.dst);
                return;
            }
        }
        let to = ReplyTo::Udp {
            v6,
            to: d.src,
            from: d.dst,
        };
        if let Some(Immediate(_, Some(r))) = self.decided(asker, packet, d.src, false, to, now) {
            self.udp_reply(outbox, &r, d);
        }
    }

    /// Queues `data` as the reply to `d` (sent at once when the outbox has no room).
    fn udp_reply(&self, outbox: &mut Outbox, data: &[u8], d: &Datagram) {
        if !outbox.push(data, d.src, d.dst) {
            let sock = if d.src.is_ipv6() {
                self.udp6.as_deref()
            } else {
                Some(&*self.udp4)
            };
            if let Some(sock) = sock {
                if let Err(e) = socket::send_from(sock, data, d.src, d.dst) {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        self.stats.error(format!("replying to {}: {e}", d.src));
                    }
                }
            }
        }
    }

    /// Who asks from `src` to `dst`, and whether it may ask now: the asker, or how to turn
    /// the query away. Who asks first (two hash lookups), then the asker's bucket, before the
    /// packet is read: buckets are kept for sandboxes' addresses only, so sources forged by
    /// the thousand cannot grow the limiter.
    fn admit(
        &mut self,
        src: SocketAddr,
        dst: IpAddr,
        ifindex: Option<u32>,
        now: Duration,
    ) -> Result<AskerIdx, Turned> {
        let Some(asker) = self.asker(src.ip(), dst, ifindex) else {
            // UDP from a source that may be forged: no reply at all (no reflection).
            if let Some(i) = ifindex {
                if !may_refuse(src.ip(), self.ingress(dst, i)) {
                    self.stats.refused.fetch_add(1, Relaxed);
                    return Err(Turned::Silent);
                }
            }
            // Strangers also share one bucket: refusing costs little, but not nothing.
            if !self.limiter.allow(IpAddr::V4(Ipv4Addr::UNSPECIFIED), now) {
                self.stats.rate_limited.fetch_add(1, Relaxed);
                return Err(Turned::Silent);
            }
            self.stats.refused.fetch_add(1, Relaxed);
            return Err(Turned::Refused);
        };
        if !self.limiter.allow(src.ip(), now) {
            self.stats.rate_limited.fetch_add(1, Relaxed);
            return Err(Turned::Silent);
        }
        Ok(asker)
    }

    /// Handles one query (the store checked since it arrived); returns the reply to send now,
    /// if any (a forward replies later).
    fn query(
        &mut self,
        packet: &[u8],
        src: SocketAddr,
        dst: IpAddr,
        ifindex: Option<u32>,
        tcp: bool,
        to: ReplyTo,
    ) -> Option<Immediate> {
        let now = self.now();
        match self.admit(src, dst, ifindex, now) {
            Ok(asker) => self.decided(asker, packet, src, tcp, to, now),
            Err(Turned::Silent) => None,
            Err(Turned::Refused) => Some(Immediate(to, refuse(packet))),
        }
    }

    /// Handles an admitted sandbox's query.
    fn decided(
        &mut self,
        asker: AskerIdx,
        packet: &[u8],
        src: SocketAddr,
        tcp: bool,
        to: ReplyTo,
        now: Duration,
    ) -> Option<Immediate> {
        match decide(&self.table, asker, packet, tcp) {
            Decision::Reply(r) => {
                self.stats.answered.fetch_add(1, Relaxed);
                Some(Immediate(to, Some(r)))
            }
            Decision::Drop => None,
            Decision::Forward(f) => self.forward(f, asker, src.ip(), packet, tcp, to, now),
        }
    }

    /// The host's resolvers, read again at most once a second.
    fn host_upstreams(&mut self) -> Arc<[SocketAddr]> {
        if self
            .host_read
            .is_none_or(|t| t.elapsed() >= HOST_RESOLVERS_EVERY)
        {
            let read = |p: &Path| std::fs::read_to_string(p).ok();
            let conf = read(&self.setup.resolv_conf).unwrap_or_default();
            let resolved = read(&self.setup.resolved_conf);
            let list = host_upstreams(&conf, resolved.as_deref());
            if *list != *self.host {
                self.host = list.into();
            }
            self.host_read = Some(Instant::now());
        }
        self.host.clone()
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        f: Forward,
        asker: AskerIdx,
        src: IpAddr,
        packet: &[u8],
        tcp: bool,
        to: ReplyTo,
        now: Duration,
    ) -> Option<Immediate> {
        let own = self
            .table
            .asker_info(asker)
            .map(|a| a.servers.clone())
            .filter(|s| !s.is_empty());
        let ups = match own {
            Some(s) => s,
            None => self.host_upstreams(),
        };
        let max = if tcp { u16::MAX } else { f.question.udp_size() };
        if ups.is_empty() {
            self.stats.failed.fetch_add(1, Relaxed);
            let r = reply::answer(&f.question, ResponseCode::ServFail, vec![], max);
            return Some(Immediate(to, Some(r)));
        }
        let key = CacheKey::new(ups.clone(), &f);
        if let Some(hit) = self.cache.get(&key, now, f.question.id) {
            self.stats.forwarded.fetch_add(1, Relaxed);
            self.stats.cached.fetch_add(1, Relaxed);
            return Some(Immediate(to, Some(reply::fit(hit, &f.question, max))));
        }
        if !self.in_flight.start(src) {
            self.stats.rate_limited.fetch_add(1, Relaxed);
            return None;
        }
        let done = self.done.clone();
        let packet = packet.to_vec();
        tokio::spawn(async move {
            let answer = upstream::exchange(&ups, &packet, &f.question.query).await;
            let _ = done.send(Done {
                forward: f,
                key,
                src,
                tcp,
                to,
                answer,
            });
        });
        None
    }

    fn finish(&mut self, d: Done) {
        self.in_flight.finish(d.src);
        let q = &d.forward.question;
        let max = if d.tcp { u16::MAX } else { q.udp_size() };
        let reply = match d.answer {
            Some((bytes, parsed)) => {
                self.stats.forwarded.fetch_add(1, Relaxed);
                let now = self.now();
                self.cache.put(d.key, &bytes, &parsed, now);
                reply::fit(bytes, q, max)
            }
            None => {
                self.stats.failed.fetch_add(1, Relaxed);
                reply::answer(q, ResponseCode::ServFail, vec![], max)
            }
        };
        d.to.send(self, Some(reply));
    }

    async fn accept(
        &mut self,
        c: std::io::Result<(TcpStream, SocketAddr)>,
        queries: &mpsc::Sender<TcpQuery>,
    ) {
        let (stream, peer) = match c {
            Ok(c) => c,
            Err(e) => {
                self.stats.error(format!("accepting: {e}"));
                // Out of descriptors, most likely: give them time to come back.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        };
        let Ok(local) = stream.local_addr() else {
            return;
        };
        // A sandbox's connection takes a sandbox slot, anyone else's a stranger's; none free:
        // closed at once.
        let sandbox = self.asker(peer.ip(), local.ip(), None).is_some();
        let taken = self.tcp.lock().is_ok_and(|mut s| {
            if sandbox {
                s.sandboxes.start(peer.ip())
            } else {
                s.strangers.start(peer.ip())
            }
        });
        if !taken {
            return;
        }
        let slot = TcpSlot {
            slots: self.tcp.clone(),
            peer: peer.ip(),
            sandbox,
        };
        let queries = queries.clone();
        tokio::spawn(async move {
            let _ = converse(stream, peer, local.ip(), queries).await;
            drop(slot);
        });
    }
}

/// Serves one client TCP connection: length-prefixed queries, answered in order.
async fn converse(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: IpAddr,
    queries: mpsc::Sender<TcpQuery>,
) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(n)) => n,
            _ => return Ok(()),
        };
        let mut packet = vec![0u8; usize::from(len)];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let (tx, rx) = oneshot::channel();
        let q = TcpQuery {
            packet,
            peer,
            local,
            reply: tx,
        };
        if queries.send(q).await.is_err() {
            return Ok(());
        }
        let Ok(Some(answer)) = rx.await else {
            // Dropped (rate limit, garbage): close, the client retries elsewhere or later.
            return Ok(());
        };
        let Ok(n) = u16::try_from(answer.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(answer.len().saturating_add(2));
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&answer);
        stream.write_all(&framed).await?;
    }
}
