//! Idempotency records (table `idempotency` of DIR/govern.db): (tenant, capability,
//! key) → (arguments hash, state, result).
//!
//! The first call with a key claims it (`running`) before its target runs and stores
//! the result when done. A repeat with the same key and arguments gets the stored
//! result without running again (or "in progress" while the first still runs); the
//! same key with other arguments is refused. A claim whose call failed before reaching
//! its target is released so the call can be retried. A claim left `running` by a
//! crash stays: whether the target ran is unknown, so the key cannot be reused (use a
//! new one after checking the target).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::approvals::now_ms;

/// Failures and refusals of the idempotency store.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The database failed.
    #[error("idempotency database {path}: {source}; check the data directory")]
    Db {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key is new: it is now claimed by this call, which must [`finish`] or
    /// [`release`] it.
    ///
    /// [`finish`]: IdempotencyStore::finish
    /// [`release`]: IdempotencyStore::release
    Claimed,
    /// The key's call finished; its stored result.
    Done(Value),
    /// The key's call is still running.
    Running,
    /// The key was used with other arguments (their hash).
    Conflict(String),
}

/// The idempotency store.
#[derive(Debug)]
pub struct IdempotencyStore {
    db: Mutex<Connection>,
    path: String,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS idempotency (
        tenant TEXT NOT NULL,
        capability TEXT NOT NULL,
        key TEXT NOT NULL,
        args_sha256 TEXT NOT NULL,
        state TEXT NOT NULL,
        result TEXT,
        created_ms INTEGER NOT NULL,
        done_ms INTEGER,
        PRIMARY KEY (tenant, capability, key)
    );
    CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency(created_ms);
";

impl IdempotencyStore {
    /// Opens (creating) the `idempotency` table in the database at `path`.
    pub fn open(path: &Path) -> Result<IdempotencyStore, IdempotencyError> {
        let p = path.display().to_string();
        let db = |source| IdempotencyError::Db {
            path: p.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        // Checkpoints run in the audit log's checkpoint thread; this is the fallback.
        conn.pragma_update(None, "wal_autocheckpoint", 20_000)
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(IdempotencyStore {
            db: Mutex::new(conn),
            path: p,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db_err(&self, source: rusqlite::Error) -> IdempotencyError {
        IdempotencyError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Claims `key` for a call with arguments hash `args_sha256`, or says what holds
    /// it. Atomic: of two calls racing with one key, one claims it.
    pub fn claim(
        &self,
        tenant: &str,
        capability: &str,
        key: &str,
        args_sha256: &str,
    ) -> Result<Claim, IdempotencyError> {
        let conn = self.conn();
        let inserted = conn
            .execute(
                "INSERT INTO idempotency (tenant, capability, key, args_sha256, state, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5) ON CONFLICT DO NOTHING",
                params![tenant, capability, key, args_sha256, now_ms() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        if inserted == 1 {
            return Ok(Claim::Claimed);
        }
        let row: Option<(String, String, Option<String>)> = conn
            .query_row(
                "SELECT args_sha256, state, result FROM idempotency
                 WHERE tenant = ?1 AND capability = ?2 AND key = ?3",
                params![tenant, capability, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        Ok(match row {
            // Released between the insert and the read: the caller may try again.
            None => Claim::Running,
            Some((hash, _, _)) if hash != args_sha256 => Claim::Conflict(hash),
            Some((_, state, Some(result))) if state == "done" => {
                Claim::Done(serde_json::from_str(&result).unwrap_or(Value::Null))
            }
            Some(_) => Claim::Running,
        })
    }

    /// What holds `key` without claiming it: `None` when the key is free.
    pub fn peek(
        &self,
        tenant: &str,
        capability: &str,
        key: &str,
        args_sha256: &str,
    ) -> Result<Option<Claim>, IdempotencyError> {
        let row: Option<(String, String, Option<String>)> = self
            .conn()
            .query_row(
                "SELECT args_sha256, state, result FROM idempotency
                 WHERE tenant = ?1 AND capability = ?2 AND key = ?3",
                params![tenant, capability, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        Ok(row.map(
            |(hash, state, result)| match (hash == args_sha256, state.as_str(), result) {
                (false, _, _) => Claim::Conflict(hash),
                (true, "done", Some(r)) => {
                    Claim::Done(serde_json::from_str(&r).unwrap_or(Value::Null))
                }
                _ => Claim::Running,
            },
        ))
    }

    /// Stores the claimed call's result.
    pub fn finish(
        &self,
        tenant: &str,
        capability: &str,
        key: &str,
        result: &Value,
    ) -> Result<(), IdempotencyError> {
        self.conn()
            .execute(
                "UPDATE idempotency SET state = 'done', result = ?4, done_ms = ?5
                 WHERE tenant = ?1 AND capability = ?2 AND key = ?3",
                params![tenant, capability, key, result.to_string(), now_ms() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Gives a claim back: the call stopped before its target ran.
    pub fn release(
        &self,
        tenant: &str,
        capability: &str,
        key: &str,
    ) -> Result<(), IdempotencyError> {
        self.conn()
            .execute(
                "DELETE FROM idempotency WHERE tenant = ?1 AND capability = ?2 AND key = ?3
                   AND state = 'running'",
                params![tenant, capability, key],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The stored result of a finished key, if any.
    pub fn result(
        &self,
        tenant: &str,
        capability: &str,
        key: &str,
    ) -> Result<Option<Value>, IdempotencyError> {
        let r: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT result FROM idempotency WHERE tenant = ?1 AND capability = ?2
                   AND key = ?3 AND state = 'done'",
                params![tenant, capability, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        Ok(r.flatten().and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Forgets finished records older than `age` (their keys may be reused); how many.
    pub fn prune(&self, age: Duration) -> Result<usize, IdempotencyError> {
        let cutoff = now_ms().saturating_sub(age.as_millis() as u64);
        self.conn()
            .execute(
                "DELETE FROM idempotency WHERE state = 'done' AND done_ms <= ?1",
                params![cutoff as i64],
            )
            .map_err(|e| self.db_err(e))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn first_result_is_replayed_and_other_args_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let s = IdempotencyStore::open(&dir.path().join("govern.db")).unwrap();
        assert_eq!(s.peek("acme", "cap", "k", "h1").unwrap(), None);
        assert_eq!(s.claim("acme", "cap", "k", "h1").unwrap(), Claim::Claimed);
        assert_eq!(
            s.peek("acme", "cap", "k", "h1").unwrap(),
            Some(Claim::Running)
        );
        assert_eq!(
            s.peek("acme", "cap", "k", "h9").unwrap(),
            Some(Claim::Conflict("h1".into()))
        );
        // While the first runs.
        assert_eq!(s.claim("acme", "cap", "k", "h1").unwrap(), Claim::Running);
        assert_eq!(
            s.claim("acme", "cap", "k", "h2").unwrap(),
            Claim::Conflict("h1".into())
        );
        s.finish("acme", "cap", "k", &json!({"n": 1})).unwrap();
        assert_eq!(
            s.claim("acme", "cap", "k", "h1").unwrap(),
            Claim::Done(json!({"n": 1}))
        );
        assert_eq!(s.result("acme", "cap", "k").unwrap(), Some(json!({"n": 1})));
        // Keys are per tenant and capability.
        assert_eq!(s.claim("other", "cap", "k", "h2").unwrap(), Claim::Claimed);
        assert_eq!(s.claim("acme", "cap2", "k", "h2").unwrap(), Claim::Claimed);
        // A released claim can be taken again; a finished one is not released.
        s.release("other", "cap", "k").unwrap();
        assert_eq!(s.claim("other", "cap", "k", "h3").unwrap(), Claim::Claimed);
        s.release("acme", "cap", "k").unwrap();
        assert!(matches!(
            s.claim("acme", "cap", "k", "h1").unwrap(),
            Claim::Done(_)
        ));
        assert_eq!(s.prune(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(s.prune(Duration::ZERO).unwrap(), 1);
    }
}
