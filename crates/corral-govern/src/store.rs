//! SQLite storage of the policy half of governance (DIR/policy.db): published
//! capabilities, policy versions and the activation stack, kill switches, budget
//! limits and usage. WAL mode; one connection behind a mutex (writes are small).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

/// Why the store failed. Every caller fails closed on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("policy store {path}: {source}; check the data directory (disk full? permissions?)")]
    Db {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row does not decode.
    #[error("policy store {path}: a stored {what} is corrupt: {message}")]
    Corrupt {
        /// The database file.
        path: String,
        /// Which record.
        what: &'static str,
        /// Why.
        message: String,
    },
}

const MIGRATIONS: &[&str] = &["CREATE TABLE capabilities (
        name TEXT PRIMARY KEY,
        json TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE policy_versions (
        version INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        published_by TEXT NOT NULL,
        note TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE policy_activations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        version INTEGER NOT NULL REFERENCES policy_versions(version),
        rolled_back INTEGER NOT NULL DEFAULT 0,
        at TEXT NOT NULL
    );
    CREATE TABLE policy_shadow (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL REFERENCES policy_versions(version)
    );
    CREATE TABLE kill_switches (
        scope TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        set_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (scope, target)
    );
    CREATE TABLE budget_limits (
        tenant TEXT PRIMARY KEY,
        json TEXT NOT NULL
    );
    CREATE TABLE tenant_usage (
        tenant TEXT NOT NULL,
        day TEXT NOT NULL,
        calls INTEGER NOT NULL,
        PRIMARY KEY (tenant, day)
    );
    CREATE TABLE task_usage (
        tenant TEXT NOT NULL,
        task TEXT NOT NULL,
        calls INTEGER NOT NULL DEFAULT 0,
        cpu_ms INTEGER NOT NULL DEFAULT 0,
        tokens INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, task)
    );"];

/// The database.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Mutex<Connection>,
    pub(crate) path: String,
}

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Store, StoreError> {
        let path_s = path.display().to_string();
        let err = |source| StoreError::Db {
            path: path_s.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY);",
        )
        .map_err(err)?;
        let tx = conn.transaction().map_err(err)?;
        let done: i64 = tx
            .query_row("SELECT COUNT(*) FROM migrations", [], |r| r.get(0))
            .map_err(err)?;
        for (i, m) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(done).unwrap_or(0))
        {
            tx.execute_batch(m).map_err(err)?;
            tx.execute(
                "INSERT INTO migrations (version) VALUES (?1)",
                [i as i64 + 1],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path_s,
        })
    }

    /// Runs `f` on the connection; SQLite errors carry the path.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        f(&mut conn).map_err(|source| StoreError::Db {
            path: self.path.clone(),
            source,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (every write
        // is a statement or a transaction), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn corrupt(&self, what: &'static str, message: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            message: message.into(),
        }
    }
}
