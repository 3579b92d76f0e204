//! The cluster store on etcd (v3 API over gRPC, through the `etcd-client` crate).
//!
//! The store owns a tokio runtime with one worker thread, made when the store is made (so
//! nothing of it exists in a process that never connects: the CLI never does). Calls are
//! blocking: each runs as a task on that runtime and the caller waits for its answer, at most
//! the request timeout, so an unreachable etcd fails fast with [`StoreError::Unavailable`]
//! naming the endpoints. The connection is made lazily and re-made by the gRPC channel after
//! a failure: a store made while etcd is down works once etcd is back.
//!
//! Background tasks on that runtime: one per [`Lease`] (keep-alives, stopped by dropping
//! it) and one per [`Watch`] (stopped by dropping it). Both outlive a broken connection and
//! carry on when it comes back, as described on [`LeaseLost`] and [`WatchEvent`]. They stop
//! with the store: keep the store alive as long as its leases and watches.
//!
//! TLS: `https://` endpoints with a CA file to trust and, for client authentication, a
//! certificate and its key (rustls with ring).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use etcd_client as ec;
use tokio::time::Instant;

use super::{
    check_branch, ttl_seconds, ClusterStore, Compare, KeyValue, Lease, LeaseId, LeaseLost,
    LeaseState, Revision, Snapshot, StoreError, Txn, TxnOp, TxnOutcome, Watch, WatchEvent,
};

/// How a broken watch or keep-alive stream retries: from this pause, doubling up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two attempts to re-establish a watch.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Files for TLS to etcd (all PEM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed etcd's server certificate (`--etcd-ca`).
    pub ca: Option<PathBuf>,
    /// This host's client certificate (`--etcd-cert`), with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (`--etcd-key`).
    pub key: Option<PathBuf>,
}

/// Where and how to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Endpoint URLs (`http://IP:2379`, `https://...` with TLS).
    pub endpoints: Vec<String>,
    /// TLS files, for `https://` endpoints.
    pub tls: Option<TlsFiles>,
    /// How long a TCP (and TLS) connection attempt may take.
    pub connect_timeout: Duration,
    /// How long any one request may take, connecting included.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// Plain endpoints with the default timeouts: 2 s to connect, 3 s per request. Short, so
    /// that a command needing the cluster fails within seconds when etcd is unreachable;
    /// etcd answers a healthy request in milliseconds.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            tls: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
        }
    }
}

/// The cluster store on etcd.
pub struct EtcdStore {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    client: ec::Client,
    endpoints: Arc<str>,
    request_timeout: Duration,
    /// The leases this store keeps alive, so that revoking one tells its handle.
    leases: Mutex<HashMap<i64, Weak<LeaseState>>>,
}

/// What an etcd error means for the port.
enum Failure {
    Unavailable(String),
    LeaseNotFound,
    Compacted,
    Invalid(String),
    Other(String),
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    with_sources(e.to_string(), e.source())
}

/// `text` followed by what `source` and its sources say that `text` does not already.
fn with_sources(mut text: String, mut source: Option<&dyn std::error::Error>) -> String {
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// gRPC status codes (tonic's `Code` discriminants, which are the gRPC numbers).
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_NOT_FOUND: i32 = 5;
const GRPC_OUT_OF_RANGE: i32 = 11;
const GRPC_UNAVAILABLE: i32 = 14;

fn classify(e: &ec::Error) -> Failure {
    match e {
        ec::Error::TransportError(t) => Failure::Unavailable(chain(t)),
        ec::Error::IoError(io) => Failure::Unavailable(io.to_string()),
        ec::Error::GRpcStatus(status) => {
            // The status's own Display lists metadata; its message and the underlying
            // causes (connection refused, timed out) are what a user needs.
            let message = with_sources(
                status.message().to_string(),
                std::error::Error::source(status),
            );
            match status.code() as i32 {
                GRPC_NOT_FOUND if message.contains("lease not found") => Failure::LeaseNotFound,
                GRPC_OUT_OF_RANGE if message.contains("compacted") => Failure::Compacted,
                GRPC_OUT_OF_RANGE | GRPC_INVALID_ARGUMENT => Failure::Invalid(message),
                GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED | GRPC_CANCELLED => {
                    Failure::Unavailable(message)
                }
                // A connection that breaks mid-request surfaces as Unknown from the transport.
                GRPC_UNKNOWN if message.contains("transport") || message.contains("connect") => {
                    Failure::Unavailable(message)
                }
                _ => Failure::Other(message),
            }
        }
        ec::Error::LeaseKeepAliveError(m) if m.contains("not found") => Failure::LeaseNotFound,
        other => Failure::Other(chain(other)),
    }
}

/// Aborts a background task when dropped (with its [`Lease`] or [`Watch`]).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl EtcdStore {
    /// Sets up the store: reads the TLS files, starts the runtime, prepares the connection
    /// (made at the first request). Fails only on a bad configuration, not on an unreachable
    /// etcd.
    pub fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Config("no etcd endpoint given".into()));
        }
        let endpoints: Arc<str> = config.endpoints.join(",").into();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weft-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("cannot start the etcd client: {e}")))?;
        let mut options = ec::ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            // HTTP/2 pings find a dead connection under an idle watch or keep-alive stream
            // (an unplugged host sends no reset).
            .with_keep_alive(config.connect_timeout, config.connect_timeout);
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let eps = config.endpoints.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(ec::Client::connect(eps, Some(options)).await);
        });
        let client = rx
            .recv()
            .map_err(|_| StoreError::Config("the etcd client's runtime stopped".into()))?
            .map_err(|e| {
                StoreError::Config(format!("etcd endpoints {endpoints}: {}", chain(&e)))
            })?;
        Ok(EtcdStore {
            runtime: Some(runtime),
            client,
            endpoints,
            request_timeout: config.request_timeout,
            leases: Mutex::new(HashMap::new()),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.runtime {
            Some(rt) => rt.handle(),
            // Only `drop` takes the runtime, and nothing runs after it.
            None => unreachable!("the etcd store's runtime is gone"),
        }
    }

    fn unavailable(&self, reason: String) -> StoreError {
        StoreError::Unavailable {
            endpoints: self.endpoints.to_string(),
            reason,
        }
    }

    /// Maps an etcd error; `lease` and `revision` are what the request named, for the errors
    /// about them.
    fn error(&self, e: &ec::Error, lease: Option<LeaseId>, revision: Revision) -> StoreError {
        match classify(e) {
            Failure::Unavailable(reason) => self.unavailable(reason),
            Failure::LeaseNotFound => StoreError::LeaseNotFound(lease.unwrap_or(LeaseId(0))),
            Failure::Compacted => StoreError::Compacted(revision),
            Failure::Invalid(reason) => StoreError::Invalid(reason),
            Failure::Other(reason) => StoreError::Rejected {
                endpoints: self.endpoints.to_string(),
                reason,
            },
        }
    }

    /// Runs `fut` on the runtime and waits for it, at most the request timeout.
    fn request<T, F>(&self, fut: F) -> Result<Result<T, ec::Error>, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ec::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let limit = self.request_timeout;
        self.handle().spawn(async move {
            let _ = tx.send(tokio::time::timeout(limit, fut).await);
        });
        match rx.recv() {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => {
                Err(self.unavailable(format!("no answer within {} ms", limit.as_millis())))
            }
            Err(_) => Err(self.unavailable("the etcd client's runtime stopped".into())),
        }
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Never blocks (a store may be dropped anywhere); the tasks just stop.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn tls_options(files: &TlsFiles) -> Result<ec::TlsOptions, StoreError> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).map_err(|e| {
            StoreError::Config(format!("cannot read the etcd {what} {}: {e}", p.display()))
        })
    };
    let mut tls = ec::TlsOptions::new();
    if let Some(ca) = &files.ca {
        tls = tls.ca_certificate(ec::Certificate::from_pem(read(ca, "CA")?));
    }
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(ec::Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Config(
                "an etcd client certificate needs its key, and a key its certificate".into(),
            ))
        }
    }
    Ok(tls)
}

fn key_value(kv: &ec::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    }
}

fn txn_op(op: &TxnOp) -> ec::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => ec::TxnOp::put(
            key.as_bytes(),
            value.as_slice(),
            lease.map(|l| ec::PutOptions::new().with_lease(l.0)),
        ),
        TxnOp::Delete(key) => ec::TxnOp::delete(key.as_bytes(), None),
        TxnOp::DeletePrefix(prefix) => ec::TxnOp::delete(
            prefix.as_bytes(),
            Some(ec::DeleteOptions::new().with_prefix()),
        ),
    }
}

fn compare(c: &Compare) -> ec::Compare {
    use ec::CompareOp::Equal;
    match c {
        // etcd's way to say "absent": never created (create revision 0).
        Compare::Absent(key) => ec::Compare::create_revision(key.as_bytes(), Equal, 0),
        Compare::ModRevision(key, rev) => ec::Compare::mod_revision(key.as_bytes(), Equal, *rev),
        Compare::Value(key, value) => ec::Compare::value(key.as_bytes(), Equal, value.as_slice()),
    }
}

/// Opens a watch stream and waits until etcd confirms it.
async fn open_watch(
    mut client: ec::Client,
    prefix: String,
    from: Revision,
) -> Result<ec::WatchStream, ec::Error> {
    let options = ec::WatchOptions::new()
        .with_prefix()
        .with_start_revision(from);
    let mut stream = client.watch(prefix.as_bytes(), Some(options)).await?;
    match stream.message().await? {
        Some(resp) if resp.created() && !resp.canceled() => Ok(stream),
        Some(resp) => Err(ec::Error::WatchError(format!(
            "etcd refused the watch: {}",
            resp.cancel_reason()
        ))),
        None => Err(ec::Error::WatchError(
            "the watch stream closed before etcd confirmed it".into(),
        )),
    }
}

/// Forwards a watch's events to `events`, re-establishing it from the next revision after a
/// broken connection (signalled), until the compaction makes that impossible or the
/// receiver is gone.
async fn follow(
    client: ec::Client,
    prefix: String,
    mut next: Revision,
    mut stream: ec::WatchStream,
    events: std::sync::mpsc::Sender<WatchEvent>,
    request_timeout: Duration,
) {
    loop {
        while let Ok(Some(resp)) = stream.message().await {
            if resp.compact_revision() > 0 {
                let _ = events.send(WatchEvent::Compacted {
                    compact_revision: resp.compact_revision(),
                });
                return;
            }
            if resp.canceled() {
                break;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let event = match ev.event_type() {
                    ec::EventType::Put => WatchEvent::Put(key_value(kv)),
                    ec::EventType::Delete => WatchEvent::Delete {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        revision: kv.mod_revision(),
                    },
                };
                next = next.max(kv.mod_revision().saturating_add(1));
                if events.send(event).is_err() {
                    return;
                }
            }
        }
        if events.send(WatchEvent::Disconnected).is_err() {
            return;
        }
        let mut pause = FIRST_RETRY_PAUSE;
        stream = loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
            let attempt = open_watch(client.clone(), prefix.clone(), next);
            if let Ok(Ok(s)) = tokio::time::timeout(request_timeout, attempt).await {
                break s;
            }
        };
        if events
            .send(WatchEvent::Resumed {
                from_revision: next,
            })
            .is_err()
        {
            return;
        }
    }
}

/// The outcome of one keep-alive exchange.
enum Renewal {
    /// The store renewed the lease for this long.
    Renewed(Duration),
    /// The store does not have the lease any more.
    Gone,
    /// No answer: the connection is broken or the store is down.
    Failed,
}

/// One keep-alive exchange, opening the keep-alive stream first if needed.
async fn renew(
    client: &mut ec::Client,
    conn: &mut Option<(ec::LeaseKeeper, ec::LeaseKeepAliveStream)>,
    id: i64,
    ttl: Duration,
) -> Renewal {
    let Some((keeper, stream)) = conn else {
        // Opening the stream is itself a keep-alive exchange.
        return match client.lease_keep_alive(id).await {
            Ok(c) => {
                *conn = Some(c);
                Renewal::Renewed(ttl)
            }
            Err(e) => match classify(&e) {
                Failure::LeaseNotFound => Renewal::Gone,
                _ => Renewal::Failed,
            },
        };
    };
    if keeper.keep_alive().await.is_err() {
        return Renewal::Failed;
    }
    match stream.message().await {
        Ok(Some(resp)) if resp.ttl() > 0 => {
            Renewal::Renewed(Duration::from_secs(resp.ttl().unsigned_abs()))
        }
        Ok(Some(_)) => Renewal::Gone,
        _ => Renewal::Failed,
    }
}

/// Keeps a lease alive: renews it every third of its TTL. The lease is lost when the store
/// says it is gone, or when no renewal got through for a whole TTL counted from the last
/// successful one's request (then the store, or the rest of the cluster, may have expired it:
/// it is revoked as soon as the store answers, so that its keys go in every case).
async fn keep_alive(
    mut client: ec::Client,
    id: i64,
    ttl: Duration,
    granted_at: Instant,
    state: Arc<LeaseState>,
    request_timeout: Duration,
) {
    let mut deadline = granted_at + ttl;
    let mut conn = None;
    loop {
        if state.get().is_some() {
            // Revoked by this process meanwhile.
            return;
        }
        let sent = Instant::now();
        let limit = (sent + request_timeout).min(deadline);
        let outcome = tokio::time::timeout_at(limit, renew(&mut client, &mut conn, id, ttl)).await;
        match outcome {
            Ok(Renewal::Renewed(granted)) => {
                deadline = sent + granted;
                tokio::time::sleep((granted / 3).max(Duration::from_millis(100))).await;
            }
            Ok(Renewal::Gone) => {
                state.lose(LeaseLost::Expired);
                return;
            }
            Ok(Renewal::Failed) | Err(_) => {
                conn = None;
                if Instant::now() >= deadline {
                    break;
                }
                let retry = (Instant::now() + FIRST_RETRY_PAUSE * 3).min(deadline);
                tokio::time::sleep_until(retry).await;
            }
        }
    }
    state.lose(LeaseLost::NotRenewed);
    loop {
        match tokio::time::timeout(request_timeout, client.lease_revoke(id)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) if matches!(classify(&e), Failure::LeaseNotFound) => return,
            _ => tokio::time::sleep(MAX_RETRY_PAUSE).await,
        }
    }
}

impl ClusterStore for EtcdStore {
    fn endpoints(&self) -> String {
        self.endpoints.to_string()
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let mut client = self.client.clone();
        let key = key.to_string();
        let resp = self
            .request(async move { client.get(key.as_bytes(), None).await })?
            .map_err(|e| self.error(&e, None, 0))?;
        Ok(resp.kvs().first().map(key_value))
    }

    fn snapshot(&self, prefix: &str) -> Result<Snapshot, StoreError> {
        let mut client = self.client.clone();
        let prefix = prefix.to_string();
        let resp = self
            .request(async move {
                client
                    .get(prefix.as_bytes(), Some(ec::GetOptions::new().with_prefix()))
                    .await
            })?
            .map_err(|e| self.error(&e, None, 0))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut kvs: Vec<KeyValue> = resp.kvs().iter().map(key_value).collect();
        // etcd sorts by key bytes already; lossy conversion cannot reorder weft's keys.
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Snapshot { revision, kvs })
    }

    fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        check_branch(&txn.then)?;
        check_branch(&txn.otherwise)?;
        let lease = txn
            .then
            .iter()
            .chain(&txn.otherwise)
            .find_map(|op| match op {
                TxnOp::Put { lease, .. } => *lease,
                _ => None,
            });
        let request = ec::Txn::new()
            .when(txn.compares.iter().map(compare).collect::<Vec<_>>())
            .and_then(txn.then.iter().map(txn_op).collect::<Vec<_>>())
            .or_else(txn.otherwise.iter().map(txn_op).collect::<Vec<_>>());
        let mut client = self.client.clone();
        let resp = self
            .request(async move { client.txn(request).await })?
            .map_err(|e| self.error(&e, lease, 0))?;
        Ok(TxnOutcome {
            succeeded: resp.succeeded(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let secs = ttl_seconds(ttl)?;
        let mut client = self.client.clone();
        let granted_at = Instant::now();
        let resp = self
            .request(async move { client.lease_grant(secs, None).await })?
            .map_err(|e| self.error(&e, None, 0))?;
        let id = resp.id();
        let ttl = Duration::from_secs(resp.ttl().max(secs).unsigned_abs());
        let state = Arc::new(LeaseState::default());
        let task = self.handle().spawn(keep_alive(
            self.client.clone(),
            id,
            ttl,
            granted_at,
            state.clone(),
            self.request_timeout,
        ));
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|_, s| s.strong_count() > 0);
        leases.insert(id, Arc::downgrade(&state));
        Ok(Lease::new(
            LeaseId(id),
            ttl,
            state,
            Box::new(AbortOnDrop(task.abort_handle())),
        ))
    }

    fn revoke_lease(&self, id: LeaseId) -> Result<(), StoreError> {
        // The handle learns it first, so that its keeper stops renewing even if the request
        // fails: the lease then expires on its own.
        let local = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id.0)
            .and_then(|s| s.upgrade());
        if let Some(state) = local {
            state.lose(LeaseLost::Revoked);
        }
        let mut client = self.client.clone();
        match self.request(async move { client.lease_revoke(id.0).await })? {
            Ok(_) => Ok(()),
            Err(e) => match self.error(&e, Some(id), 0) {
                StoreError::LeaseNotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        if from < 1 {
            return Err(StoreError::Invalid(format!(
                "a watch starts at revision 1 or later, not {from}"
            )));
        }
        let stream = self
            .request(open_watch(self.client.clone(), prefix.to_string(), from))?
            .map_err(|e| self.error(&e, None, from))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let task = self.handle().spawn(follow(
            self.client.clone(),
            prefix.to_string(),
            from,
            stream,
            tx,
            self.request_timeout,
        ));
        Ok(Watch::new(rx, Box::new(AbortOnDrop(task.abort_handle()))))
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        self.request(async move { client.compact(revision, None).await })?
            .map_err(|e| self.error(&e, None, revision))?;
        Ok(())
    }
}
