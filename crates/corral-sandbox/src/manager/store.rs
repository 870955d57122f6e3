//! The Manager's persistent state: DIR/state.db (SQLite, WAL). Each lifecycle
//! transition is one statement or one transaction, so a crash leaves every row in a
//! state the next start can repair.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use corral_types::api::{Resources, SandboxState};
use rusqlite::{params, Connection, OptionalExtension};

use super::SandboxError;

/// Schema versions, applied in order; the index + 1 is the version number.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sandboxes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT,
    pooled INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    template TEXT NOT NULL,
    snapshot_id TEXT,
    memory_bytes INTEGER NOT NULL,
    cpu_millis INTEGER NOT NULL,
    pids INTEGER NOT NULL,
    disk_bytes INTEGER NOT NULL,
    env TEXT NOT NULL,
    metadata TEXT NOT NULL,
    init_pid INTEGER,
    init_start INTEGER,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    stopped_at_ms INTEGER,
    stop_reason TEXT
);
CREATE INDEX sandboxes_tenant ON sandboxes (tenant, state);
CREATE TABLE snapshots (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    source_sandbox_id TEXT NOT NULL,
    template TEXT NOT NULL,
    layer TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (tenant, id)
);
"#,
    // Version 2: the slot of corral-net's address pool a sandbox in mode `open` holds
    // (NULL: mode `none`).
    "ALTER TABLE sandboxes ADD COLUMN net_slot INTEGER;",
    // Version 3: the egress rules of a sandbox in mode `allow`, comma-separated (NULL:
    // mode `open` when net_slot is set).
    "ALTER TABLE sandboxes ADD COLUMN net_allow TEXT;",
];

/// One sandbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxRow {
    pub seq: i64,
    pub id: String,
    /// None while it waits in the warm pool.
    pub tenant: Option<String>,
    pub pooled: bool,
    pub state: SandboxState,
    pub template: String,
    pub snapshot_id: Option<String>,
    pub resources: Resources,
    pub env: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
    pub init_pid: Option<i32>,
    pub init_start: Option<u64>,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub stopped_at_ms: Option<u64>,
    pub stop_reason: Option<String>,
    /// The network slot of a sandbox in mode `open` or `allow` (None: mode `none`).
    pub net_slot: Option<u32>,
    /// Mode `allow`: its egress rules, comma-separated (None: mode `open` or `none`).
    pub net_allow: Option<String>,
}

/// One snapshot row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotRow {
    pub seq: i64,
    pub id: String,
    pub tenant: String,
    pub source_sandbox_id: String,
    pub template: String,
    /// Directory name of the layer under DIR/snapshots (the content hash).
    pub layer: String,
    pub size_bytes: u64,
    pub created_at_ms: u64,
}

/// The database. Statements are short; they run inline under a mutex.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Mutex<Connection>,
}

fn db_err(e: rusqlite::Error) -> SandboxError {
    SandboxError::Internal(format!("the state database failed: {e}"))
}

const COLUMNS: &str = "seq, id, tenant, pooled, state, template, snapshot_id, memory_bytes, \
    cpu_millis, pids, disk_bytes, env, metadata, init_pid, init_start, created_at_ms, \
    expires_at_ms, stopped_at_ms, stop_reason, net_slot, net_allow";

fn row_to_sandbox(r: &rusqlite::Row<'_>) -> rusqlite::Result<SandboxRow> {
    let state: String = r.get(4)?;
    let env: String = r.get(11)?;
    let metadata: String = r.get(12)?;
    Ok(SandboxRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        tenant: r.get(2)?,
        pooled: r.get::<_, i64>(3)? != 0,
        state: SandboxState::parse(&state).unwrap_or(SandboxState::Stopped),
        template: r.get(5)?,
        snapshot_id: r.get(6)?,
        resources: Resources {
            memory_bytes: r.get::<_, i64>(7)? as u64,
            cpu_millis: r.get::<_, i64>(8)? as u64,
            pids: r.get::<_, i64>(9)? as u64,
            disk_bytes: r.get::<_, i64>(10)? as u64,
        },
        env: serde_json::from_str(&env).unwrap_or_default(),
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        init_pid: r.get(13)?,
        init_start: r.get::<_, Option<i64>>(14)?.map(|v| v as u64),
        created_at_ms: r.get::<_, i64>(15)? as u64,
        expires_at_ms: r.get::<_, i64>(16)? as u64,
        stopped_at_ms: r.get::<_, Option<i64>>(17)?.map(|v| v as u64),
        stop_reason: r.get(18)?,
        net_slot: r.get::<_, Option<i64>>(19)?.map(|v| v as u32),
        net_allow: r.get(20)?,
    })
}

fn row_to_snapshot(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotRow> {
    Ok(SnapshotRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        tenant: r.get(2)?,
        source_sandbox_id: r.get(3)?,
        template: r.get(4)?,
        layer: r.get(5)?,
        size_bytes: r.get::<_, i64>(6)? as u64,
        created_at_ms: r.get::<_, i64>(7)? as u64,
    })
}

const SNAP_COLUMNS: &str =
    "seq, id, tenant, source_sandbox_id, template, layer, size_bytes, created_at_ms";

/// Filters of [`Store::list`].
#[derive(Debug)]
pub(crate) struct ListFilter<'a> {
    pub tenant: &'a str,
    pub state: Option<SandboxState>,
    pub metadata: &'a BTreeMap<String, String>,
    pub after_seq: i64,
    pub limit: u32,
}

impl Store {
    /// Opens DIR/state.db, creating and migrating it as needed.
    pub(crate) fn open(path: &Path) -> Result<Store, SandboxError> {
        let conn = Connection::open(path).map_err(|e| {
            SandboxError::Internal(format!(
                "opening the state database {} failed: {e}; check that the data directory is writable",
                path.display()
            ))
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db_err)?;
        if version as usize > MIGRATIONS.len() {
            return Err(SandboxError::Internal(format!(
                "the state database {} has schema version {version}, newer than this corral knows ({}); run the newer corral or move the data directory away",
                path.display(),
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction().map_err(db_err)?;
            tx.execute_batch(sql).map_err(db_err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SandboxError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| SandboxError::Internal("the state database lock is poisoned".into()))?;
        f(&conn).map_err(db_err)
    }

    /// Inserts a new sandbox (state `creating`); returns its seq.
    pub(crate) fn insert(&self, row: &SandboxRow) -> Result<i64, SandboxError> {
        let env = serde_json::to_string(&row.env).unwrap_or_else(|_| "{}".into());
        let metadata = serde_json::to_string(&row.metadata).unwrap_or_else(|_| "{}".into());
        self.with(|c| {
            c.execute(
                "INSERT INTO sandboxes (id, tenant, pooled, state, template, snapshot_id, \
                 memory_bytes, cpu_millis, pids, disk_bytes, env, metadata, created_at_ms, \
                 expires_at_ms, net_slot, net_allow) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    row.id,
                    row.tenant,
                    row.pooled as i64,
                    row.state.as_str(),
                    row.template,
                    row.snapshot_id,
                    row.resources.memory_bytes as i64,
                    row.resources.cpu_millis as i64,
                    row.resources.pids as i64,
                    row.resources.disk_bytes as i64,
                    env,
                    metadata,
                    row.created_at_ms as i64,
                    row.expires_at_ms as i64,
                    row.net_slot.map(i64::from),
                    row.net_allow,
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records a started sandbox: its init and the running state.
    pub(crate) fn set_started(&self, id: &str, pid: i32, start: u64) -> Result<(), SandboxError> {
        self.with(|c| {
            c.execute(
                "UPDATE sandboxes SET state = 'running', init_pid = ?2, init_start = ?3 WHERE id = ?1",
                params![id, pid, start as i64],
            )
            .map(|_| ())
        })
    }

    /// Hands a pooled sandbox to a tenant.
    pub(crate) fn assign(&self, row: &SandboxRow) -> Result<(), SandboxError> {
        let env = serde_json::to_string(&row.env).unwrap_or_else(|_| "{}".into());
        let metadata = serde_json::to_string(&row.metadata).unwrap_or_else(|_| "{}".into());
        self.with(|c| {
            c.execute(
                "UPDATE sandboxes SET tenant = ?2, pooled = 0, memory_bytes = ?3, cpu_millis = ?4, \
                 pids = ?5, env = ?6, metadata = ?7, created_at_ms = ?8, expires_at_ms = ?9 \
                 WHERE id = ?1",
                params![
                    row.id,
                    row.tenant,
                    row.resources.memory_bytes as i64,
                    row.resources.cpu_millis as i64,
                    row.resources.pids as i64,
                    env,
                    metadata,
                    row.created_at_ms as i64,
                    row.expires_at_ms as i64,
                ],
            )
            .map(|_| ())
        })
    }

    /// Sets the state.
    pub(crate) fn set_state(&self, id: &str, state: SandboxState) -> Result<(), SandboxError> {
        self.with(|c| {
            c.execute(
                "UPDATE sandboxes SET state = ?2 WHERE id = ?1",
                params![id, state.as_str()],
            )
            .map(|_| ())
        })
    }

    /// Marks a sandbox stopped, with why.
    pub(crate) fn set_stopped(
        &self,
        id: &str,
        reason: &str,
        at_ms: u64,
    ) -> Result<(), SandboxError> {
        self.with(|c| {
            c.execute(
                "UPDATE sandboxes SET state = 'stopped', stop_reason = ?2, stopped_at_ms = ?3, \
                 init_pid = NULL, init_start = NULL WHERE id = ?1",
                params![id, reason, at_ms as i64],
            )
            .map(|_| ())
        })
    }

    /// Sets the expiry.
    pub(crate) fn set_expiry(&self, id: &str, expires_at_ms: u64) -> Result<(), SandboxError> {
        self.with(|c| {
            c.execute(
                "UPDATE sandboxes SET expires_at_ms = ?2 WHERE id = ?1",
                params![id, expires_at_ms as i64],
            )
            .map(|_| ())
        })
    }

    /// Removes a row (a create that failed leaves nothing, not even a record).
    pub(crate) fn delete(&self, id: &str) -> Result<(), SandboxError> {
        self.with(|c| {
            c.execute("DELETE FROM sandboxes WHERE id = ?1", params![id])
                .map(|_| ())
        })
    }

    /// One sandbox by id (any tenant; the caller checks ownership).
    pub(crate) fn get(&self, id: &str) -> Result<Option<SandboxRow>, SandboxError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1"),
                params![id],
                row_to_sandbox,
            )
            .optional()
        })
    }

    /// Every sandbox not yet stopped (for recovery at start).
    pub(crate) fn unfinished(&self) -> Result<Vec<SandboxRow>, SandboxError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM sandboxes WHERE state != 'stopped' ORDER BY seq"
            ))?;
            let rows = st.query_map([], row_to_sandbox)?;
            rows.collect()
        })
    }

    /// Sandboxes not yet stopped, and snapshots, whose template is one of `pinned`.
    pub(crate) fn template_users(&self, pinned: &[String]) -> Result<Vec<String>, SandboxError> {
        self.with(|c| {
            let mut out = Vec::new();
            let mut st = c.prepare(
                "SELECT id FROM sandboxes WHERE state != 'stopped' AND template = ?1 ORDER BY seq",
            )?;
            let mut snaps =
                c.prepare("SELECT id FROM snapshots WHERE template = ?1 ORDER BY seq")?;
            for p in pinned {
                for id in st.query_map(params![p], |r| r.get::<_, String>(0))? {
                    out.push(id?);
                }
                for id in snaps.query_map(params![p], |r| r.get::<_, String>(0))? {
                    out.push(id?);
                }
            }
            Ok(out)
        })
    }

    /// A page of a tenant's sandboxes.
    pub(crate) fn list(&self, f: &ListFilter<'_>) -> Result<Vec<SandboxRow>, SandboxError> {
        let mut sql = format!(
            "SELECT {COLUMNS} FROM sandboxes WHERE tenant = ?1 AND pooled = 0 AND seq > ?2"
        );
        let mut args: Vec<rusqlite::types::Value> =
            vec![f.tenant.to_string().into(), f.after_seq.into()];
        match f.state {
            Some(s) => {
                args.push(s.as_str().to_string().into());
                sql.push_str(&format!(" AND state = ?{}", args.len()));
            }
            None => sql.push_str(" AND state != 'stopped'"),
        }
        for (k, v) in f.metadata {
            args.push(format!("$.\"{}\"", k.replace('"', "")).into());
            let kp = args.len();
            args.push(v.clone().into());
            sql.push_str(&format!(
                " AND json_extract(metadata, ?{kp}) = ?{}",
                args.len()
            ));
        }
        args.push((f.limit as i64).into());
        sql.push_str(&format!(" ORDER BY seq LIMIT ?{}", args.len()));
        self.with(|c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), row_to_sandbox)?;
            rows.collect()
        })
    }

    /// Forgets stopped sandboxes that stopped before `before_ms`.
    pub(crate) fn prune_stopped(&self, before_ms: u64) -> Result<usize, SandboxError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sandboxes WHERE state = 'stopped' AND stopped_at_ms < ?1",
                params![before_ms as i64],
            )
        })
    }

    /// Records a snapshot.
    pub(crate) fn insert_snapshot(&self, s: &SnapshotRow) -> Result<i64, SandboxError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO snapshots (id, tenant, source_sandbox_id, template, layer, \
                 size_bytes, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    s.tenant,
                    s.source_sandbox_id,
                    s.template,
                    s.layer,
                    s.size_bytes as i64,
                    s.created_at_ms as i64
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// One snapshot of a tenant.
    pub(crate) fn get_snapshot(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<SnapshotRow>, SandboxError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {SNAP_COLUMNS} FROM snapshots WHERE tenant = ?1 AND id = ?2"),
                params![tenant, id],
                row_to_snapshot,
            )
            .optional()
        })
    }

    /// A page of a tenant's snapshots.
    pub(crate) fn list_snapshots(
        &self,
        tenant: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<SnapshotRow>, SandboxError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {SNAP_COLUMNS} FROM snapshots WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = st.query_map(params![tenant, after_seq, limit as i64], row_to_snapshot)?;
            rows.collect()
        })
    }

    /// Deletes a snapshot record; returns whether any other record (any tenant) still
    /// refers to the same layer, or any unstopped sandbox was created from it.
    pub(crate) fn delete_snapshot(
        &self,
        tenant: &str,
        id: &str,
        layer: &str,
    ) -> Result<bool, SandboxError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM snapshots WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )?;
            let refs: i64 = c.query_row(
                "SELECT (SELECT COUNT(*) FROM snapshots WHERE layer = ?1) + \
                 (SELECT COUNT(*) FROM sandboxes WHERE snapshot_id = ?2 AND state != 'stopped')",
                params![layer, id],
                |r| r.get(0),
            )?;
            Ok(refs > 0)
        })
    }

    /// Every snapshot layer some record refers to.
    pub(crate) fn snapshot_layers(
        &self,
    ) -> Result<std::collections::HashSet<String>, SandboxError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT DISTINCT layer FROM snapshots")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, tenant: &str, seq_meta: &[(&str, &str)]) -> SandboxRow {
        SandboxRow {
            seq: 0,
            id: id.into(),
            tenant: Some(tenant.into()),
            pooled: false,
            state: SandboxState::Creating,
            template: "host".into(),
            snapshot_id: None,
            resources: Resources {
                memory_bytes: 1,
                cpu_millis: 2,
                pids: 3,
                disk_bytes: 4,
            },
            env: BTreeMap::new(),
            metadata: seq_meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            init_pid: None,
            init_start: None,
            created_at_ms: 10,
            expires_at_ms: 20,
            stopped_at_ms: None,
            stop_reason: None,
            net_slot: None,
            net_allow: None,
        }
    }

    #[test]
    fn rows_round_trip_and_list_filters_by_tenant_state_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        s.insert(&row("a", "t1", &[("app", "x")])).unwrap();
        s.insert(&row("b", "t1", &[("app", "y")])).unwrap();
        s.insert(&row("c", "t2", &[("app", "x")])).unwrap();
        s.set_started("a", 42, 7).unwrap();
        let a = s.get("a").unwrap().unwrap();
        assert_eq!(a.state, SandboxState::Running);
        assert_eq!(a.init_pid, Some(42));
        assert_eq!(a.init_start, Some(7));
        assert_eq!(a.metadata["app"], "x");
        let meta: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
        let f = ListFilter {
            tenant: "t1",
            state: None,
            metadata: &meta,
            after_seq: 0,
            limit: 10,
        };
        let ids: Vec<_> = s.list(&f).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a"]);
        let none = BTreeMap::new();
        let f = ListFilter {
            tenant: "t1",
            state: None,
            metadata: &none,
            after_seq: 0,
            limit: 1,
        };
        let page = s.list(&f).unwrap();
        assert_eq!(page.len(), 1);
        let f2 = ListFilter {
            after_seq: page[0].seq,
            ..f
        };
        assert_eq!(s.list(&f2).unwrap()[0].id, "b");
        s.set_stopped("b", "deleted", 99).unwrap();
        assert!(
            s.list(&f2).unwrap().is_empty(),
            "stopped rows are hidden by default"
        );
        assert_eq!(s.unfinished().unwrap().len(), 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        drop(Store::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let err = Store::open(&p).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }
}
