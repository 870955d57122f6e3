//! The hash-chained, append-only audit log (DIR/audit.db, SQLite in WAL mode).
//!
//! Each record is canonical JSON ([`canonical_json`]) of its fields; its hash is
//! SHA-256(previous hash, 32 raw bytes || canonical JSON bytes), the first record's
//! previous hash being 32 zero bytes. One writer (a mutex around the connection, the
//! next seq and the head hash) keeps seq and the chain consistent; each append is one
//! transaction. [`verify_file`] streams every record, recomputes the chain and names the
//! first bad seq and why.
//!
//! Why SQLite and not a flat file: appends are atomic (a crash never leaves half a
//! record), export by task and listing by tenant use indexes instead of a full scan,
//! and the database is already how corral stores state. Why its own file: verify opens
//! it read-only and streams it without touching policy or approval state, and operators
//! can copy or ship it on its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_types::api::{
    AuditFault, AuditFaultKind, AuditKind, AuditList, AuditRecord, AuditVerifyResponse,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The record format version written in `v`.
const FORMAT_VERSION: u32 = 1;

/// Failures of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be opened, migrated, written or read.
    #[error("audit log {path}: {source}; check the data directory (disk space, permissions)")]
    Db {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// An export could not be written.
    #[error("cannot write the export: {0}")]
    Write(#[source] std::io::Error),
    /// A stored record could not be read back.
    #[error("audit record {seq} is unreadable: {message}; run `corral audit verify`")]
    Corrupt {
        /// Its seq.
        seq: u64,
        /// Why.
        message: String,
    },
}

/// Something to record: [`AuditLog::append`] adds seq, time and the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// What it is about.
    pub kind: AuditKind,
    /// Tenant acted for.
    pub tenant: String,
    /// Agent, `operator:NAME` or `corral`.
    pub agent: Option<String>,
    /// Task id.
    pub task_id: Option<String>,
    /// Ties the records of one call together.
    pub correlation_id: Option<String>,
    /// The caller's trace id.
    pub trace_id: Option<String>,
    /// Kind-specific details; redact arguments and outputs before (see `redact`).
    pub payload: Value,
}

impl AuditEvent {
    /// An event of `kind` for `tenant` with `payload`; the rest empty.
    pub fn new(kind: AuditKind, tenant: impl Into<String>, payload: Value) -> AuditEvent {
        AuditEvent {
            kind,
            tenant: tenant.into(),
            agent: None,
            task_id: None,
            correlation_id: None,
            trace_id: None,
            payload,
        }
    }

    /// With the acting agent.
    pub fn agent(mut self, agent: impl Into<String>) -> AuditEvent {
        self.agent = Some(agent.into());
        self
    }

    /// With a task id.
    pub fn task(mut self, task_id: Option<String>) -> AuditEvent {
        self.task_id = task_id;
        self
    }

    /// With a correlation id.
    pub fn correlation(mut self, id: impl Into<String>) -> AuditEvent {
        self.correlation_id = Some(id.into());
        self
    }
}

/// Copies committed WAL pages of each database in `paths` into the database every
/// 250 ms from a thread of its own (SQLite PASSIVE checkpoints: they never block a
/// writer), so appends never pay for a checkpoint's fsyncs. Stops when `alive` is
/// dropped.
pub(crate) fn spawn_checkpointer(alive: std::sync::Weak<AuditLog>, paths: Vec<PathBuf>) {
    let spawned = std::thread::Builder::new()
        // A vital thread: a panic on it stops the process (crates/corral/src/panics.rs).
        .name("corral-wal".into())
        .spawn(move || {
            let conns: Vec<Connection> = paths
                .iter()
                .filter_map(|p| Connection::open(p).ok())
                .collect();
            loop {
                std::thread::sleep(Duration::from_millis(250));
                if alive.upgrade().is_none() {
                    return;
                }
                for c in &conns {
                    // Busy or failed: the next round (or SQLite's fallback) does it.
                    let _ = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("corral: no WAL checkpoint thread ({e}); SQLite checkpoints inline instead");
    }
}

/// Where other parts of corral send what must be recorded.
pub trait AuditSink: Send + Sync {
    /// Appends one record; its seq.
    fn append(&self, event: AuditEvent) -> Result<u64, AuditError>;
}

/// What to list ([`AuditLog::list`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this task.
    pub task_id: Option<String>,
    /// Only records at or after this time (RFC 3339, compared as text: use the
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` form).
    pub since: Option<String>,
    /// Records after this seq (the previous page's cursor).
    pub after_seq: Option<u64>,
    /// Page size.
    pub limit: u32,
}

struct Writer {
    conn: Connection,
    next_seq: u64,
    head: [u8; 32],
}

/// The audit log of a daemon.
pub struct AuditLog {
    writer: Mutex<Writer>,
    /// Readers use their own connection so a long export never blocks an append.
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        task_id TEXT,
        record TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_task ON audit(task_id, seq) WHERE task_id IS NOT NULL;
    CREATE INDEX IF NOT EXISTS audit_tenant ON audit(tenant, seq);
    CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
    -- Append-only for corral's own code; anyone who drops these is caught by verify.
    CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

impl AuditLog {
    /// Opens (creating) the log at `path`. `fsync_each`: make every append durable
    /// against power loss (SQLite `synchronous=FULL`, one fsync per record); without
    /// it (`NORMAL`) an append survives a crash of corral but the last records before
    /// a power cut may be lost, never half-written.
    pub fn open(path: &Path, fsync_each: bool) -> Result<AuditLog, AuditError> {
        let db = |source| AuditError::Db {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(
            None,
            "synchronous",
            if fsync_each { "FULL" } else { "NORMAL" },
        )
        .map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        // Checkpoints run off the append path (see `spawn_checkpointer`); this is only
        // the fallback if that thread is gone.
        conn.pragma_update(None, "wal_autocheckpoint", 20_000)
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        let last: Option<(u64, Vec<u8>)> = conn
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let (next_seq, head) = match last {
            Some((seq, hash)) => (seq + 1, hash_array(&hash)),
            None => (1, [0u8; 32]),
        };
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        reader.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        Ok(AuditLog {
            writer: Mutex::new(Writer {
                conn,
                next_seq,
                head,
            }),
            reader: Mutex::new(reader),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, source: rusqlite::Error) -> AuditError {
        AuditError::Db {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Appends events in order, in one transaction; the seq of each.
    pub fn append_all(&self, events: &[AuditEvent]) -> Result<Vec<u64>, AuditError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let time = corral_types::rfc3339_ms(now_ms());
        let tx = w.conn.unchecked_transaction().map_err(|e| self.db_err(e))?;
        let mut seqs = Vec::with_capacity(events.len());
        let (mut seq, mut head) = (w.next_seq, w.head);
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO audit (seq, time, kind, tenant, task_id, record, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.db_err(e))?;
            for ev in events {
                let record = record_json(seq, &time, ev);
                let hash = chain_hash(&head, record.as_bytes());
                stmt.execute(params![
                    seq as i64,
                    time,
                    ev.kind.as_str(),
                    ev.tenant,
                    ev.task_id,
                    record,
                    &head[..],
                    &hash[..],
                ])
                .map_err(|e| self.db_err(e))?;
                seqs.push(seq);
                seq += 1;
                head = hash;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))?;
        // Only a committed batch moves the head: a failed one leaves no trace.
        w.next_seq = seq;
        w.head = head;
        Ok(seqs)
    }

    /// The last record's seq and hash (0 and zeros when empty).
    pub fn head(&self) -> (u64, String) {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        (w.next_seq - 1, hex(&w.head))
    }

    /// A page of records matching `q`, oldest first.
    pub fn list(&self, q: &AuditQuery) -> Result<AuditList, AuditError> {
        let limit = q.limit.clamp(1, 10_000);
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, record, prev_hash, hash FROM audit
                 WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR task_id = ?2)
                   AND (?3 IS NULL OR time >= ?3) AND seq > ?4
                 ORDER BY seq LIMIT ?5",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(
                params![
                    q.tenant,
                    q.task_id,
                    q.since,
                    q.after_seq.unwrap_or(0) as i64,
                    i64::from(limit) + 1
                ],
                raw_row,
            )
            .map_err(|e| self.db_err(e))?;
        let mut records = Vec::new();
        for row in rows {
            records.push(to_record(row.map_err(|e| self.db_err(e))?)?);
        }
        let next_cursor = if records.len() > limit as usize {
            records.truncate(limit as usize);
            records.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        Ok(AuditList {
            records,
            next_cursor,
        })
    }

    /// Writes every record of `task_id` (of `tenant`, when given), in order, as JSON
    /// lines (the [`AuditRecord`] form, chain hashes included); how many.
    pub fn export_task(
        &self,
        tenant: Option<&str>,
        task_id: &str,
        out: &mut dyn Write,
    ) -> Result<u64, AuditError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, record, prev_hash, hash FROM audit
                 WHERE task_id = ?1 AND (?2 IS NULL OR tenant = ?2) ORDER BY seq",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![task_id, tenant], raw_row)
            .map_err(|e| self.db_err(e))?;
        let mut n = 0;
        for row in rows {
            let rec = to_record(row.map_err(|e| self.db_err(e))?)?;
            let line = serde_json::to_string(&rec).map_err(|e| AuditError::Corrupt {
                seq: rec.seq,
                message: e.to_string(),
            })?;
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(AuditError::Write)?;
            n += 1;
        }
        Ok(n)
    }
}

impl AuditSink for AuditLog {
    fn append(&self, event: AuditEvent) -> Result<u64, AuditError> {
        let seqs = self.append_all(std::slice::from_ref(&event))?;
        Ok(seqs.first().copied().unwrap_or(0))
    }
}

type RawRow = (u64, String, Vec<u8>, Vec<u8>);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_record((seq, record, prev, hash): RawRow) -> Result<AuditRecord, AuditError> {
    let mut v: serde_json::Map<String, Value> =
        serde_json::from_str(&record).map_err(|e| AuditError::Corrupt {
            seq,
            message: e.to_string(),
        })?;
    v.insert("prev_hash".into(), Value::String(hex(&prev)));
    v.insert("hash".into(), Value::String(hex(&hash)));
    serde_json::from_value(Value::Object(v)).map_err(|e| AuditError::Corrupt {
        seq,
        message: e.to_string(),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The canonical JSON of a record: the hashed bytes.
fn record_json(seq: u64, time: &str, ev: &AuditEvent) -> String {
    let opt = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
    let mut m = serde_json::Map::new();
    m.insert("v".into(), Value::from(FORMAT_VERSION));
    m.insert("seq".into(), Value::from(seq));
    m.insert("time".into(), Value::String(time.to_string()));
    m.insert("kind".into(), Value::String(ev.kind.as_str().to_string()));
    m.insert("correlation_id".into(), opt(&ev.correlation_id));
    m.insert("trace_id".into(), opt(&ev.trace_id));
    m.insert("tenant".into(), Value::String(ev.tenant.clone()));
    m.insert("agent".into(), opt(&ev.agent));
    m.insert("task_id".into(), opt(&ev.task_id));
    m.insert("payload".into(), ev.payload.clone());
    canonical_json(&Value::Object(m))
}

/// Canonical JSON: object members sorted by key (byte order of the UTF-8 keys, which is
/// Unicode code point order), no whitespace, strings escaped as serde_json does (`"`,
/// `\`, and control characters; `\b \f \n \r \t` short, the rest `\u00xx`; everything
/// else literal UTF-8), integers in plain decimal, other numbers in serde_json's
/// shortest round-trip form.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            // Scalars: serde_json's compact form is already canonical.
            out.push_str(&v.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here: the map's own order depends on serde_json's features.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// SHA-256 of the canonical JSON of `v`, hex: what approvals bind arguments to.
pub fn sha256_hex(v: &Value) -> String {
    hex(&Sha256::digest(canonical_json(v).as_bytes()))
}

fn chain_hash(prev: &[u8; 32], record: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(record);
    h.finalize().into()
}

fn hash_array(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    if b.len() == 32 {
        a.copy_from_slice(b);
    }
    a
}

pub(crate) fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// The fields verify compares with the indexed columns.
#[derive(Deserialize)]
struct Head<'a> {
    seq: u64,
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    tenant: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    task_id: Option<std::borrow::Cow<'a, str>>,
}

/// Verifies the whole chain of the log at `path` (opened read-only): every seq from 1
/// without gaps, each record at the position it was written at, each link equal to the
/// previous hash, each hash equal to SHA-256(link || record), and the indexed columns
/// equal to the hashed record. Stops at the first fault.
pub fn verify_file(path: &Path) -> Result<AuditVerifyResponse, AuditError> {
    let started = Instant::now();
    let db = |source| AuditError::Db {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        return Err(db(rusqlite::Error::InvalidPath(path.to_path_buf())));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
    let mut stmt = conn
        .prepare(
            "SELECT seq, time, kind, tenant, task_id, record, prev_hash, hash
             FROM audit ORDER BY seq",
        )
        .map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    let mut expected = 1u64;
    let mut head = [0u8; 32];
    let mut count = 0u64;
    let mut fault = None;
    while let Some(r) = rows.next().map_err(db)? {
        count += 1;
        let seq = r.get::<_, i64>(0).map_err(db)? as u64;
        let found = check_row(r, seq, expected, &head).map_err(db)?;
        match found {
            Ok(hash) => {
                head = hash;
                expected = seq + 1;
            }
            Err(f) => {
                fault = Some(f);
                break;
            }
        }
    }
    Ok(AuditVerifyResponse {
        ok: fault.is_none(),
        records: count,
        head_seq: expected - 1,
        head_hash: hex(&head),
        fault,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// One row: its hash when good, else the fault.
fn check_row(
    r: &rusqlite::Row<'_>,
    seq: u64,
    expected: u64,
    prev: &[u8; 32],
) -> rusqlite::Result<Result<[u8; 32], AuditFault>> {
    let fault = |kind, message: String| Ok(Err(AuditFault { seq, kind, message }));
    if seq != expected {
        return fault(
            AuditFaultKind::Deleted,
            format!(
                "records {expected}..{} are missing: seq jumps from {} to {seq}",
                seq - 1,
                expected - 1
            ),
        );
    }
    let record = r.get_ref(5)?.as_str()?;
    let head: Head<'_> = match serde_json::from_str(record) {
        Ok(h) => h,
        Err(e) => {
            return fault(
                AuditFaultKind::Malformed,
                format!("record {seq} is not a readable record: {e}"),
            )
        }
    };
    if head.seq != seq {
        return fault(
            AuditFaultKind::Reordered,
            format!(
                "position {seq} holds the record written as seq {}",
                head.seq
            ),
        );
    }
    let link = r.get_ref(6)?.as_blob()?;
    if link != prev {
        return fault(
            AuditFaultKind::BadLink,
            format!(
                "record {seq}'s prev_hash is not record {}'s hash (a record before it was \
                 rewritten, or the chain was spliced)",
                seq - 1
            ),
        );
    }
    let hash = chain_hash(prev, record.as_bytes());
    if r.get_ref(7)?.as_blob()? != hash {
        return fault(
            AuditFaultKind::Edited,
            format!("record {seq} was edited: its content no longer matches its hash"),
        );
    }
    let task = r.get_ref(4)?.as_str_or_null()?;
    let columns = [
        ("time", r.get_ref(1)?.as_str()? == head.time),
        ("kind", r.get_ref(2)?.as_str()? == head.kind),
        ("tenant", r.get_ref(3)?.as_str()? == head.tenant),
        ("task_id", task == head.task_id.as_deref()),
    ];
    if let Some((col, _)) = columns.iter().find(|(_, same)| !same) {
        return fault(
            AuditFaultKind::Edited,
            format!("record {seq} was edited: its {col} column differs from the hashed record"),
        );
    }
    Ok(Ok(hash))
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
