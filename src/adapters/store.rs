//! The state store: networks, sandboxes, address allocations and avoid ranges.
//!
//! [`Store`] is the seam for a distributed implementation (etcd, for multi-host overlays);
//! [`SqliteStore`] is the embedded default. SQLite in WAL mode was chosen over redb because
//! many weft processes (parallel CLI calls, detached monitors, later a DNS server) must read
//! and write the same file at once: WAL lets readers run beside one writer and SQLite's busy
//! handler queues writers, where redb takes an exclusive lock on the whole file per process.
//! Records are stored as JSON documents keyed by id with a unique name, so the schema stays
//! small and the JSON printed by `inspect` is the stored document.

use std::cell::{Ref, RefCell};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

use crate::core::model::{Network, Sandbox, Status};

/// Failures of the state store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("state store {path}: {source}")]
    Sqlite {
        /// Database file.
        path: String,
        /// Underlying error.
        source: rusqlite::Error,
    },
    /// A stored record could not be decoded (written by an incompatible weft?).
    #[error("state store record {table}/{key} (name {name:?}) is unreadable: {source}")]
    Corrupt {
        /// `sandboxes` or `networks`.
        table: &'static str,
        /// Record id.
        key: String,
        /// Record name.
        name: String,
        /// Decoding error.
        source: serde_json::Error,
    },
    /// A unique name is taken.
    #[error("{what} name {name:?} is already in use")]
    NameTaken {
        /// "network" or "sandbox".
        what: &'static str,
        /// The name.
        name: String,
    },
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A stored record whose body cannot be decoded. Listings skip it; it is removed by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// `sandboxes` or `networks`.
    pub table: &'static str,
    /// Record id.
    pub id: String,
    /// Record name.
    pub name: String,
    /// Why it cannot be decoded.
    pub error: String,
}

impl std::fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} record {} (name {:?}): {}",
            self.table, self.id, self.name, self.error
        )
    }
}

/// Whether a transaction may write. Write transactions are serialised across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A consistent snapshot.
    Read,
    /// Exclusive against other writers from the start, so read-then-write decisions (IPAM)
    /// cannot race.
    Write,
}

/// A backend holding weft's state.
pub trait Store {
    /// Starts a transaction; it rolls back when dropped without [`Txn::commit`].
    fn begin(&self, mode: Mode) -> StoreResult<Box<dyn Txn + '_>>;
}

/// The operations of one transaction.
pub trait Txn {
    /// A network by exact name, or by id or unique id prefix.
    fn network(&self, name_or_id: &str) -> StoreResult<Option<Network>>;
    /// All networks, by name (unreadable ones are skipped: see [`Txn::corrupt_records`]).
    fn networks(&self) -> StoreResult<Vec<Network>>;
    /// Inserts or replaces a network (by id); fails with `NameTaken` on a name clash.
    fn put_network(&self, net: &Network) -> StoreResult<()>;
    /// Deletes a network with its cursors.
    fn delete_network(&self, id: &str) -> StoreResult<()>;
    /// A sandbox by exact name, or by id or unique id prefix.
    fn sandbox(&self, name_or_id: &str) -> StoreResult<Option<Sandbox>>;
    /// All sandboxes, by name (unreadable ones are skipped: see [`Txn::corrupt_records`]).
    fn sandboxes(&self) -> StoreResult<Vec<Sandbox>>;
    /// Network and sandbox records whose body cannot be decoded.
    fn corrupt_records(&self) -> StoreResult<Vec<CorruptRecord>>;
    /// Inserts or replaces a sandbox (by id); fails with `NameTaken` on a name clash.
    fn put_sandbox(&self, sb: &Sandbox) -> StoreResult<()>;
    /// Replaces a sandbox's record (by id, same name) only if the stored one still has
    /// `status` and is owned by process `owner_pid`; returns whether it did. One statement:
    /// what finishes a `create` must not bring back a record someone removed meanwhile.
    fn replace_sandbox_if(&self, sb: &Sandbox, status: Status, owner_pid: u32)
        -> StoreResult<bool>;
    /// Deletes a sandbox record (its addresses are released separately).
    fn delete_sandbox(&self, id: &str) -> StoreResult<()>;
    /// The sandbox id holding `ip` on a network, if any.
    fn address_owner(&self, network_id: &str, ip: IpAddr) -> StoreResult<Option<String>>;
    /// Records `ip` as held by `sandbox_id` and moves the network's cursor for that family.
    /// Returns whether `ip` is above every address ever handed out on the network (so no
    /// neighbour can remember it with another MAC).
    fn claim_address(&self, network_id: &str, ip: IpAddr, sandbox_id: &str) -> StoreResult<bool>;
    /// Releases every address `sandbox_id` holds on `network_id` (all networks if `None`).
    fn release_addresses(&self, sandbox_id: &str, network_id: Option<&str>) -> StoreResult<()>;
    /// Number of addresses allocated on a network.
    fn address_count(&self, network_id: &str) -> StoreResult<usize>;
    /// Every (network id, address, sandbox id) allocation.
    fn allocations(&self) -> StoreResult<Vec<(String, IpAddr, String)>>;
    /// The last address handed out on a network for one family (`v6`).
    fn cursor(&self, network_id: &str, v6: bool) -> StoreResult<Option<IpAddr>>;
    /// Puts a network's cursor back to `before` (none: as if nothing was ever handed out) if
    /// it still stands at `claimed`, the address a failed attach was given: the next attach
    /// gets that address again. A cursor moved on by another attach meanwhile stays.
    fn restore_cursor(
        &self,
        network_id: &str,
        claimed: IpAddr,
        before: Option<IpAddr>,
    ) -> StoreResult<()>;
    /// Published ports on `(protocol, host_port)`: (host address, sandbox id) for each.
    fn port_holders(&self, protocol: &str, host_port: u16) -> StoreResult<Vec<(IpAddr, String)>>;
    /// Records a published port as held by a sandbox.
    fn claim_port(
        &self,
        protocol: &str,
        host_ip: IpAddr,
        host_port: u16,
        sandbox_id: &str,
    ) -> StoreResult<()>;
    /// Releases every port a sandbox holds.
    fn release_ports(&self, sandbox_id: &str) -> StoreResult<()>;
    /// Every sandbox id holding a port.
    fn port_owners(&self) -> StoreResult<Vec<String>>;
    /// Ranges weft must never allocate, added with `weft ipam avoid add`.
    fn avoid_ranges(&self) -> StoreResult<Vec<IpNet>>;
    /// Adds an avoid range; returns false if it was already there.
    fn add_avoid(&self, cidr: IpNet) -> StoreResult<bool>;
    /// Removes an avoid range; returns false if it was not there.
    fn remove_avoid(&self, cidr: IpNet) -> StoreResult<bool>;
    /// A host-wide setting weft keeps (e.g. what a sysctl was before weft changed it).
    fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Records a setting, replacing its value.
    fn put_setting(&self, key: &str, value: &str) -> StoreResult<()>;
    /// Makes the transaction's writes durable.
    fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// The embedded store: one SQLite database in WAL mode under the state directory.
///
/// Its connection can be released ([`SqliteStore::release`]) and is then opened again by the
/// next transaction: an open connection in WAL mode holds POSIX locks on the database and
/// its `-shm` file, and the kernel walks every lock on a file in each `fcntl` lock call on
/// it, which every transaction of every weft process makes. A process that waits long
/// (a sandbox's monitor, a foreground run, `logs -f`) must not add to them while it waits.
pub struct SqliteStore {
    /// `None` once released, until the next [`Store::begin`].
    conn: RefCell<Option<Connection>>,
    file: PathBuf,
    path: String,
}

/// What [`SqliteStore::write_stamp`] returns: the identity, size and modification time of
/// the database file and of its WAL, where they exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStamp([Option<(u64, u64, i64, i64)>; 2]);

/// Bumped whenever `SCHEMA` changes (its statements are all `IF NOT EXISTS`).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandboxes (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS addresses (network_id TEXT NOT NULL, ip TEXT NOT NULL, sandbox_id TEXT NOT NULL,
    PRIMARY KEY (network_id, ip));
CREATE INDEX IF NOT EXISTS addresses_by_sandbox ON addresses (sandbox_id);
CREATE TABLE IF NOT EXISTS cursors (network_id TEXT NOT NULL, v6 INTEGER NOT NULL, ip TEXT NOT NULL,
    PRIMARY KEY (network_id, v6));
CREATE TABLE IF NOT EXISTS avoid (cidr TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS high_water (network_id TEXT NOT NULL, v6 INTEGER NOT NULL, ip TEXT NOT NULL,
    PRIMARY KEY (network_id, v6));
CREATE TABLE IF NOT EXISTS ports (protocol TEXT NOT NULL, host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
    sandbox_id TEXT NOT NULL, PRIMARY KEY (protocol, host_port, host_ip));
CREATE INDEX IF NOT EXISTS ports_by_sandbox ON ports (sandbox_id);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO settings (key, value) VALUES ('instance', lower(hex(randomblob(4))));
";

impl SqliteStore {
    /// Opens (creating if needed) `DIR/state.db`.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let file = dir.join("state.db");
        let store = Self {
            conn: RefCell::new(None),
            path: file.display().to_string(),
            file,
        };
        store.connection()?;
        Ok(store)
    }

    /// Closes the connection, releasing its locks, unless a transaction is open; the next
    /// transaction opens it again (a few hundred microseconds: the schema is read again).
    /// For a process about to wait long. A [`SqliteStore::data_version`] read after it
    /// comes from a new connection and is not comparable with one read before. If this was
    /// the database's last connection, SQLite checkpoints the WAL into it now (as at the
    /// end of any weft command).
    pub fn release(&self) {
        // A borrow is held only by an open transaction: then the connection stays.
        if let Ok(mut slot) = self.conn.try_borrow_mut() {
            if let Some(conn) = slot.take() {
                // A failed close has still freed what it could; the next `begin` opens a
                // new connection either way.
                let _ = conn.close();
            }
        }
    }

    /// A token that changes whenever a transaction commits to the database, read from the
    /// files' metadata without a connection (so without its locks): for a process that
    /// released its connection and waits for a change. Every commit appends to the WAL
    /// (or starts it again), which moves its size or modification time; a checkpoint
    /// moves the database file's. Coarse file times can hide a commit in the same tick as
    /// an unchanged size, so a waiter reads the store now and then anyway.
    pub fn write_stamp(&self) -> WriteStamp {
        let of = |f: &Path| {
            std::fs::metadata(f).ok().map(|m| {
                use std::os::unix::fs::MetadataExt as _;
                (m.ino(), m.len(), m.mtime(), m.mtime_nsec())
            })
        };
        let mut wal = self.file.clone().into_os_string();
        wal.push("-wal");
        WriteStamp([of(&self.file), of(Path::new(&wal))])
    }

    /// The open connection, opened first if released.
    fn connection(&self) -> StoreResult<Ref<'_, Connection>> {
        loop {
            match Ref::filter_map(self.conn.borrow(), Option::as_ref) {
                Ok(conn) => return Ok(conn),
                Err(none) => {
                    // No borrow is left (only an open connection is ever lent out), so
                    // the slot can be filled.
                    drop(none);
                    let conn = connect(&self.file).map_err(|e| self.err(e))?;
                    *self.conn.borrow_mut() = Some(conn);
                }
            }
        }
    }

    /// This state directory's instance id: 8 random hex digits made with the schema. Kernel
    /// objects carry it, so that two state directories in one network namespace never take
    /// each other's objects for their own.
    pub fn instance(&self) -> StoreResult<String> {
        self.connection()?
            .query_row(
                "SELECT value FROM settings WHERE key = 'instance'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

/// Opens a connection to `file`, creating the schema if it is not there yet.
fn connect(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    // Parallel `weft run` calls queue for the write lock instead of failing.
    conn.busy_timeout(Duration::from_secs(60))?;
    // Every statement of a command stays prepared for the command's life (an attach uses
    // about twenty, some twice: intent and result).
    conn.set_prepared_statement_cache_capacity(64);
    // NORMAL in WAL mode is crash-safe (a power loss may drop the last commit, never
    // corrupt), and saves an fsync per transaction.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The schema is created once; later opens only read its version (an open is on every
    // command's path).
    // Two processes opening a new state directory at once (the agent starting and a
    // command asking for its status) both create the schema: switching to WAL answers
    // SQLITE_BUSY at once, without the busy handler, while the other holds the file. The
    // loser waits a moment and looks again (by then the schema is there, or it makes it).
    let mut tries = 0u32;
    loop {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version >= SCHEMA_VERSION {
            return Ok(conn);
        }
        let made = conn
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| {
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
            });
        match made {
            Ok(()) => return Ok(conn),
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && tries < 500 =>
            {
                // A failed batch may have left its transaction open.
                let _ = conn.execute_batch("ROLLBACK");
                tries = tries.saturating_add(1);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

impl SqliteStore {
    /// A number that changes whenever another connection commits to the database (SQLite's
    /// `PRAGMA data_version`): one cheap read tells a long-lived reader (the agent's DNS
    /// server) whether its copy of the records is still current.
    pub fn data_version(&self) -> StoreResult<i64> {
        self.connection()?
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))
    }
}

impl Store for SqliteStore {
    fn begin(&self, mode: Mode) -> StoreResult<Box<dyn Txn + '_>> {
        let sql = match mode {
            Mode::Read => "BEGIN DEFERRED",
            Mode::Write => "BEGIN IMMEDIATE",
        };
        let conn = self.connection()?;
        conn.prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map_err(|e| self.err(e))?;
        Ok(Box::new(SqliteTxn {
            store: self,
            conn,
            done: false,
        }))
    }
}

impl SqliteStore {
    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

struct SqliteTxn<'a> {
    store: &'a SqliteStore,
    /// Held for the transaction's life: the connection cannot be released under it.
    conn: Ref<'a, Connection>,
    done: bool,
}

impl Drop for SqliteTxn<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Nothing useful can be done if the rollback itself fails; SQLite rolls back
            // an unfinished transaction when the connection closes anyway.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    (key, name, body): &(String, String, String),
) -> StoreResult<T> {
    serde_json::from_str(body).map_err(|source| StoreError::Corrupt {
        table,
        key: key.clone(),
        name: name.clone(),
        source,
    })
}

fn encode<T: serde::Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_string(value).unwrap_or_default()
}

impl SqliteTxn<'_> {
    fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Every row of a query, each turned into a value by `row`.
    fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let mut stmt = self
            .conn()
            .prepare_cached(sql)
            .map_err(|e| self.store.err(e))?;
        let rows = stmt
            .query_map(params, row)
            .map_err(|e| self.store.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.store.err(e));
        rows
    }

    fn lookup<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
    ) -> StoreResult<Option<T>> {
        let by_name = format!("SELECT id, name, body FROM {table} WHERE name = ?1");
        let row: Option<(String, String, String)> = self
            .conn()
            .prepare_cached(&by_name)
            .and_then(|mut st| {
                st.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            })
            .optional()
            .map_err(|e| self.store.err(e))?;
        if let Some(row) = row {
            return decode(table, &row).map(Some);
        }
        // Docker accepts any unique id prefix. Both lookups use the primary key's index (a
        // LIKE would scan the table on every command).
        if key.len() >= 3 && key.chars().all(|c| c.is_ascii_hexdigit()) {
            let key = key.to_ascii_lowercase();
            let by_id = format!(
                "SELECT id, name, body FROM {table} WHERE id >= ?1 AND id < ?1 || 'g' ORDER BY id LIMIT 2"
            );
            let rows = self.raw_rows(&by_id, params![key])?;
            if rows.len() == 1 {
                return decode(table, &rows[0]).map(Some);
            }
        }
        Ok(None)
    }

    fn raw_rows(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> StoreResult<Vec<(String, String, String)>> {
        self.rows(sql, params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    }

    /// Every readable record of a table; one that cannot be decoded must not hide the others.
    fn list<T: serde::de::DeserializeOwned>(&self, table: &'static str) -> StoreResult<Vec<T>> {
        let sql = format!("SELECT id, name, body FROM {table} ORDER BY name");
        let rows = self.raw_rows(&sql, [])?;
        Ok(rows.iter().filter_map(|r| decode(table, r).ok()).collect())
    }

    fn corrupt_in<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
    ) -> StoreResult<Vec<CorruptRecord>> {
        let sql = format!("SELECT id, name, body FROM {table} ORDER BY name");
        let rows = self.raw_rows(&sql, [])?;
        Ok(rows
            .iter()
            .filter_map(|r| match decode::<T>(table, r) {
                Ok(_) => None,
                Err(e) => Some(CorruptRecord {
                    table,
                    id: r.0.clone(),
                    name: r.1.clone(),
                    error: match e {
                        StoreError::Corrupt { source, .. } => source.to_string(),
                        other => other.to_string(),
                    },
                }),
            })
            .collect())
    }

    fn put(
        &self,
        table: &str,
        what: &'static str,
        id: &str,
        name: &str,
        body: String,
    ) -> StoreResult<()> {
        // An update in place (not INSERT OR REPLACE, a delete and an insert that rewrite every
        // index), and no separate look-up for a name clash: the UNIQUE index on `name` refuses
        // it. A command writes its record two or three times, each a page or two less.
        let sql = format!(
            "INSERT INTO {table} (id, name, body) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, body = excluded.body"
        );
        match self.exec(&sql, params![id, name, body]) {
            Ok(_) => Ok(()),
            Err(StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            }) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
                Err(StoreError::NameTaken {
                    what,
                    name: name.to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> StoreResult<usize> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut st| st.execute(p))
            .map_err(|e| self.store.err(e))
    }
}

impl Txn for SqliteTxn<'_> {
    fn network(&self, name_or_id: &str) -> StoreResult<Option<Network>> {
        self.lookup("networks", name_or_id)
    }

    fn networks(&self) -> StoreResult<Vec<Network>> {
        self.list("networks")
    }

    fn put_network(&self, net: &Network) -> StoreResult<()> {
        self.put("networks", "network", &net.id, &net.name, encode(net))
    }

    fn delete_network(&self, id: &str) -> StoreResult<()> {
        self.exec("DELETE FROM networks WHERE id = ?1", params![id])?;
        self.exec("DELETE FROM cursors WHERE network_id = ?1", params![id])?;
        self.exec("DELETE FROM high_water WHERE network_id = ?1", params![id])?;
        self.exec("DELETE FROM addresses WHERE network_id = ?1", params![id])?;
        Ok(())
    }

    fn sandbox(&self, name_or_id: &str) -> StoreResult<Option<Sandbox>> {
        self.lookup("sandboxes", name_or_id)
    }

    fn sandboxes(&self) -> StoreResult<Vec<Sandbox>> {
        self.list("sandboxes")
    }

    fn corrupt_records(&self) -> StoreResult<Vec<CorruptRecord>> {
        let mut out = self.corrupt_in::<Network>("networks")?;
        out.extend(self.corrupt_in::<Sandbox>("sandboxes")?);
        Ok(out)
    }

    fn put_sandbox(&self, sb: &Sandbox) -> StoreResult<()> {
        self.put("sandboxes", "sandbox", &sb.id, &sb.name, encode(sb))
    }

    fn replace_sandbox_if(
        &self,
        sb: &Sandbox,
        status: Status,
        owner_pid: u32,
    ) -> StoreResult<bool> {
        // The status as the record stores it (`"creating"`).
        let status = serde_json::to_value(status).unwrap_or_default();
        let n = self.exec(
            "UPDATE sandboxes SET body = ?1 WHERE id = ?2 AND name = ?3 \
             AND json_extract(body, '$.status') = ?4 AND json_extract(body, '$.owner_pid') = ?5",
            params![encode(sb), sb.id, sb.name, status.as_str(), owner_pid],
        )?;
        Ok(n == 1)
    }

    fn delete_sandbox(&self, id: &str) -> StoreResult<()> {
        self.exec("DELETE FROM sandboxes WHERE id = ?1", params![id])?;
        Ok(())
    }

    fn address_owner(&self, network_id: &str, ip: IpAddr) -> StoreResult<Option<String>> {
        // Cached: IPAM may ask for several candidates in one transaction.
        self.conn()
            .prepare_cached("SELECT sandbox_id FROM addresses WHERE network_id = ?1 AND ip = ?2")
            .and_then(|mut st| st.query_row(params![network_id, ip.to_string()], |r| r.get(0)))
            .optional()
            .map_err(|e| self.store.err(e))
    }

    fn claim_address(&self, network_id: &str, ip: IpAddr, sandbox_id: &str) -> StoreResult<bool> {
        self.exec(
            "INSERT INTO addresses (network_id, ip, sandbox_id) VALUES (?1, ?2, ?3)",
            params![network_id, ip.to_string(), sandbox_id],
        )?;
        self.exec(
            "INSERT OR REPLACE INTO cursors (network_id, v6, ip) VALUES (?1, ?2, ?3)",
            params![network_id, ip.is_ipv6(), ip.to_string()],
        )?;
        let high: Option<String> = self
            .conn()
            .prepare_cached("SELECT ip FROM high_water WHERE network_id = ?1 AND v6 = ?2")
            .and_then(|mut st| st.query_row(params![network_id, ip.is_ipv6()], |r| r.get(0)))
            .optional()
            .map_err(|e| self.store.err(e))?;
        let as_num = |a: IpAddr| match a {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let fresh = high
            .and_then(|h| h.parse::<IpAddr>().ok())
            .is_none_or(|h| as_num(ip) > as_num(h));
        if fresh {
            self.exec(
                "INSERT OR REPLACE INTO high_water (network_id, v6, ip) VALUES (?1, ?2, ?3)",
                params![network_id, ip.is_ipv6(), ip.to_string()],
            )?;
        }
        Ok(fresh)
    }

    fn release_addresses(&self, sandbox_id: &str, network_id: Option<&str>) -> StoreResult<()> {
        match network_id {
            Some(n) => self.exec(
                "DELETE FROM addresses WHERE sandbox_id = ?1 AND network_id = ?2",
                params![sandbox_id, n],
            )?,
            None => self.exec(
                "DELETE FROM addresses WHERE sandbox_id = ?1",
                params![sandbox_id],
            )?,
        };
        Ok(())
    }

    fn address_count(&self, network_id: &str) -> StoreResult<usize> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM addresses WHERE network_id = ?1",
                params![network_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| self.store.err(e))
    }

    fn allocations(&self) -> StoreResult<Vec<(String, IpAddr, String)>> {
        let rows: Vec<(String, String, String)> = self.rows(
            "SELECT network_id, ip, sandbox_id FROM addresses",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(n, ip, s)| ip.parse().ok().map(|ip| (n, ip, s)))
            .collect())
    }

    fn cursor(&self, network_id: &str, v6: bool) -> StoreResult<Option<IpAddr>> {
        let ip: Option<String> = self
            .conn()
            .prepare_cached("SELECT ip FROM cursors WHERE network_id = ?1 AND v6 = ?2")
            .and_then(|mut st| st.query_row(params![network_id, v6], |r| r.get(0)))
            .optional()
            .map_err(|e| self.store.err(e))?;
        Ok(ip.and_then(|s| s.parse().ok()))
    }

    fn restore_cursor(
        &self,
        network_id: &str,
        claimed: IpAddr,
        before: Option<IpAddr>,
    ) -> StoreResult<()> {
        let (v6, at) = (claimed.is_ipv6(), claimed.to_string());
        match before {
            Some(b) => self.exec(
                "UPDATE cursors SET ip = ?4 WHERE network_id = ?1 AND v6 = ?2 AND ip = ?3",
                params![network_id, v6, at, b.to_string()],
            )?,
            None => self.exec(
                "DELETE FROM cursors WHERE network_id = ?1 AND v6 = ?2 AND ip = ?3",
                params![network_id, v6, at],
            )?,
        };
        Ok(())
    }

    fn port_holders(&self, protocol: &str, host_port: u16) -> StoreResult<Vec<(IpAddr, String)>> {
        let rows: Vec<(String, String)> = self.rows(
            "SELECT host_ip, sandbox_id FROM ports WHERE protocol = ?1 AND host_port = ?2",
            params![protocol, host_port],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(ip, s)| ip.parse().ok().map(|ip| (ip, s)))
            .collect())
    }

    fn claim_port(
        &self,
        protocol: &str,
        host_ip: IpAddr,
        host_port: u16,
        sandbox_id: &str,
    ) -> StoreResult<()> {
        self.exec(
            "INSERT INTO ports (protocol, host_ip, host_port, sandbox_id) VALUES (?1, ?2, ?3, ?4)",
            params![protocol, host_ip.to_string(), host_port, sandbox_id],
        )?;
        Ok(())
    }

    fn release_ports(&self, sandbox_id: &str) -> StoreResult<()> {
        self.exec(
            "DELETE FROM ports WHERE sandbox_id = ?1",
            params![sandbox_id],
        )?;
        Ok(())
    }

    fn port_owners(&self) -> StoreResult<Vec<String>> {
        let rows: Vec<String> =
            self.rows("SELECT DISTINCT sandbox_id FROM ports", [], |r| r.get(0))?;
        Ok(rows)
    }

    fn avoid_ranges(&self) -> StoreResult<Vec<IpNet>> {
        let rows: Vec<String> =
            self.rows("SELECT cidr FROM avoid ORDER BY cidr", [], |r| r.get(0))?;
        Ok(rows.iter().filter_map(|s| s.parse().ok()).collect())
    }

    fn add_avoid(&self, cidr: IpNet) -> StoreResult<bool> {
        let n = self.exec(
            "INSERT OR IGNORE INTO avoid (cidr) VALUES (?1)",
            params![cidr.to_string()],
        )?;
        Ok(n > 0)
    }

    fn remove_avoid(&self, cidr: IpNet) -> StoreResult<bool> {
        let n = self.exec(
            "DELETE FROM avoid WHERE cidr = ?1",
            params![cidr.to_string()],
        )?;
        Ok(n > 0)
    }

    fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        self.conn()
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")
            .and_then(|mut st| st.query_row(params![key], |r| r.get(0)))
            .optional()
            .map_err(|e| self.store.err(e))
    }

    fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        self.exec(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.conn
            .prepare_cached("COMMIT")
            .and_then(|mut st| st.execute([]).map(|_| ()))
            .map_err(|e| self.store.err(e))?;
        // Only now: a failed COMMIT leaves the transaction open, and dropping us rolls it back.
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_version_moves_when_another_connection_commits() {
        let dir = tempfile::tempdir().unwrap();
        let reader = SqliteStore::open(dir.path()).unwrap();
        let writer = SqliteStore::open(dir.path()).unwrap();
        let v0 = reader.data_version().unwrap();
        assert_eq!(reader.data_version().unwrap(), v0, "nothing committed");
        let t = writer.begin(Mode::Write).unwrap();
        t.put_network(&net("n", "id1")).unwrap();
        assert_eq!(reader.data_version().unwrap(), v0, "not yet committed");
        t.commit().unwrap();
        let v1 = reader.data_version().unwrap();
        assert_ne!(v1, v0);
        assert_eq!(reader.data_version().unwrap(), v1);
    }

    /// The lines of /proc/locks on `files` held by this process.
    fn my_locks(files: &[std::path::PathBuf]) -> Vec<String> {
        use std::os::unix::fs::MetadataExt as _;
        let inodes: Vec<String> = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| format!(":{}", m.ino()))
            .collect();
        let me = std::process::id().to_string();
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.windows(2)
                    .any(|w| w[0] == me && inodes.iter().any(|i| w[1].ends_with(i.as_str())))
            })
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_released_store_holds_no_lock_and_reopens_on_the_next_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let files = ["state.db", "state.db-shm"].map(|f| dir.path().join(f));
        let store = SqliteStore::open(dir.path()).unwrap();
        let t = store.begin(Mode::Write).unwrap();
        t.put_network(&net("n", "id1")).unwrap();
        t.commit().unwrap();
        assert!(
            !my_locks(&files).is_empty(),
            "an open connection holds locks"
        );
        store.release();
        assert_eq!(my_locks(&files), Vec::<String>::new());
        store.release();
        let t = store.begin(Mode::Read).unwrap();
        assert_eq!(t.networks().unwrap(), vec![net("n", "id1")]);
        // Under an open transaction it does nothing: the transaction goes on, and ends as
        // it would have.
        store.release();
        t.put_network(&net("m", "id2")).unwrap();
        drop(t);
        let t = store.begin(Mode::Write).unwrap();
        assert_eq!(t.networks().unwrap(), vec![net("n", "id1")], "rolled back");
        t.put_network(&net("m", "id2")).unwrap();
        store.release();
        t.commit().unwrap();
        store.release();
        assert_eq!(my_locks(&files), Vec::<String>::new());
        let other = SqliteStore::open(dir.path()).unwrap();
        let names: Vec<String> = other
            .begin(Mode::Read)
            .unwrap()
            .networks()
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["m", "n"]);
        assert_eq!(store.instance().unwrap(), other.instance().unwrap());
    }

    #[test]
    fn the_write_stamp_moves_with_each_commit_and_not_with_reads() {
        let dir = tempfile::tempdir().unwrap();
        let waiter = SqliteStore::open(dir.path()).unwrap();
        let writer = SqliteStore::open(dir.path()).unwrap();
        waiter.release();
        let mut prev = waiter.write_stamp();
        for i in 0..20 {
            let t = writer.begin(Mode::Write).unwrap();
            t.put_network(&net(&format!("n{i}"), &format!("id{i}")))
                .unwrap();
            t.commit().unwrap();
            let s1 = waiter.write_stamp();
            assert_ne!(s1, prev, "commit {i}");
            let t = writer.begin(Mode::Read).unwrap();
            t.networks().unwrap();
            drop(t);
            assert_eq!(waiter.write_stamp(), s1, "a read after commit {i}");
            prev = s1;
        }
    }

    fn net(name: &str, id: &str) -> Network {
        Network {
            name: name.into(),
            id: id.into(),
            bridge: "br".into(),
            subnets: vec![],
            ..Network::example()
        }
    }

    #[test]
    fn names_are_unique_and_prefixes_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let tx = store.begin(Mode::Write).unwrap();
        tx.put_network(&net("a", "abcdef01")).unwrap();
        assert!(matches!(
            tx.put_network(&net("a", "12345678")),
            Err(StoreError::NameTaken { .. })
        ));
        tx.commit().unwrap();
        let tx = store.begin(Mode::Read).unwrap();
        assert_eq!(tx.network("abc").unwrap().unwrap().name, "a");
        assert!(tx.network("zzz").unwrap().is_none());
    }

    #[test]
    fn an_unreadable_record_is_skipped_by_listings_and_named_by_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let tx = store.begin(Mode::Write).unwrap();
        tx.put_network(&net("a", "aaaa0001")).unwrap();
        tx.put_network(&net("b", "bbbb0001")).unwrap();
        tx.commit().unwrap();
        store
            .connection()
            .unwrap()
            .execute("UPDATE networks SET body = 'garbage' WHERE name = 'b'", [])
            .unwrap();
        let tx = store.begin(Mode::Read).unwrap();
        let names: Vec<String> = tx.networks().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, vec!["a"]);
        let bad = tx.corrupt_records().unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (bad[0].table, bad[0].id.as_str(), bad[0].name.as_str()),
            ("networks", "bbbb0001", "b")
        );
        match tx.network("b") {
            Err(StoreError::Corrupt {
                table, key, name, ..
            }) => {
                assert_eq!(
                    (table, key.as_str(), name.as_str()),
                    ("networks", "bbbb0001", "b")
                )
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(
            tx.network("bbbb"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    fn sandbox(name: &str, id: &str, status: Status, owner_pid: Option<u32>) -> Sandbox {
        Sandbox {
            owner_pid,
            ..Sandbox::example(name, id, status)
        }
    }

    #[test]
    fn a_record_is_updated_in_place_and_a_name_clash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let tx = store.begin(Mode::Write).unwrap();
        tx.put_sandbox(&sandbox("a", "aaaa0001", Status::Created, None))
            .unwrap();
        tx.put_sandbox(&sandbox("b", "bbbb0001", Status::Created, None))
            .unwrap();
        // Renaming onto another record's name: refused, both records unchanged.
        match tx.put_sandbox(&sandbox("a", "bbbb0001", Status::Exited, None)) {
            Err(StoreError::NameTaken { what, name }) => {
                assert_eq!((what, name.as_str()), ("sandbox", "a"))
            }
            other => panic!("expected NameTaken, got {other:?}"),
        }
        assert_eq!(tx.sandbox("b").unwrap().unwrap().status, Status::Created);
        // Same id, new name and body: replaced, the old name is free.
        tx.put_sandbox(&sandbox("c", "bbbb0001", Status::Exited, None))
            .unwrap();
        assert!(tx.sandbox("b").unwrap().is_none());
        assert_eq!(tx.sandbox("c").unwrap().unwrap().status, Status::Exited);
        tx.commit().unwrap();
    }

    #[test]
    fn a_create_finishes_only_its_own_intent() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let tx = store.begin(Mode::Write).unwrap();
        tx.put_sandbox(&sandbox("a", "aaaa0001", Status::Creating, Some(7)))
            .unwrap();
        let done = sandbox("a", "aaaa0001", Status::Created, None);
        // Another owner, another status, or a record gone: nothing is written.
        assert!(!tx.replace_sandbox_if(&done, Status::Creating, 8).unwrap());
        assert!(!tx.replace_sandbox_if(&done, Status::Removing, 7).unwrap());
        assert_eq!(tx.sandbox("a").unwrap().unwrap().status, Status::Creating);
        assert!(tx.replace_sandbox_if(&done, Status::Creating, 7).unwrap());
        assert_eq!(tx.sandbox("a").unwrap().unwrap(), done);
        // Done once: the record is no longer an intent.
        assert!(!tx.replace_sandbox_if(&done, Status::Creating, 7).unwrap());
        tx.delete_sandbox("aaaa0001").unwrap();
        assert!(!tx.replace_sandbox_if(&done, Status::Created, 7).unwrap());
        assert!(tx.sandbox("a").unwrap().is_none());
        tx.commit().unwrap();
    }

    #[test]
    fn dropped_transaction_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        {
            let tx = store.begin(Mode::Write).unwrap();
            tx.put_network(&net("a", "abcdef01")).unwrap();
        }
        let tx = store.begin(Mode::Read).unwrap();
        assert!(tx.networks().unwrap().is_empty());
    }

    #[test]
    fn addresses_claim_release_and_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let tx = store.begin(Mode::Write).unwrap();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            tx.claim_address("n1", ip, "s1").unwrap(),
            "first address is fresh"
        );
        assert!(tx.claim_address("n1", ip, "s2").is_err());
        assert_eq!(tx.address_owner("n1", ip).unwrap().as_deref(), Some("s1"));
        assert_eq!(tx.cursor("n1", false).unwrap(), Some(ip));
        tx.release_addresses("s1", None).unwrap();
        assert_eq!(tx.address_owner("n1", ip).unwrap(), None);
        // The cursor stays, so the freed address is not handed out next.
        assert_eq!(tx.cursor("n1", false).unwrap(), Some(ip));
        // Handed out again, it is no longer fresh: it gets announced.
        assert!(!tx.claim_address("n1", ip, "s3").unwrap());
        assert!(tx
            .claim_address("n1", "10.0.0.3".parse().unwrap(), "s3")
            .unwrap());
        tx.commit().unwrap();
    }

    #[test]
    fn a_cursor_is_put_back_only_while_it_stands_at_the_failed_claim() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let tx = store.begin(Mode::Write).unwrap();
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        tx.claim_address("n1", ip("10.0.0.2"), "s1").unwrap();
        tx.claim_address("n1", ip("10.0.0.3"), "s2").unwrap();
        tx.release_addresses("s2", None).unwrap();
        tx.restore_cursor("n1", ip("10.0.0.3"), Some(ip("10.0.0.2")))
            .unwrap();
        assert_eq!(tx.cursor("n1", false).unwrap(), Some(ip("10.0.0.2")));
        // Moved on by another claim: it stays where that one put it.
        tx.claim_address("n1", ip("10.0.0.3"), "s3").unwrap();
        tx.claim_address("n1", ip("10.0.0.4"), "s4").unwrap();
        tx.restore_cursor("n1", ip("10.0.0.3"), Some(ip("10.0.0.2")))
            .unwrap();
        assert_eq!(tx.cursor("n1", false).unwrap(), Some(ip("10.0.0.4")));
        // Back to nothing handed out; the other family's cursor is another row.
        tx.claim_address("n2", ip("fd00::2"), "s5").unwrap();
        tx.restore_cursor("n2", ip("fd00::2"), None).unwrap();
        assert_eq!(tx.cursor("n2", true).unwrap(), None);
        assert_eq!(tx.cursor("n1", false).unwrap(), Some(ip("10.0.0.4")));
    }
}
