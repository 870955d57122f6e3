//! Approval requests (table `approvals` of DIR/govern.db).
//!
//! A call whose decision is permit-with-approval creates a request bound to the exact
//! arguments (the SHA-256 of their canonical JSON). Operators approve or deny it; an
//! undecided request past `expires_at` becomes `expired`, which is a denial (checked
//! lazily on every read and by the daemon's sweep). An approved request is consumed
//! once, by a call with the same tenant, capability and arguments hash; it is `used`
//! afterwards and never again.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_types::api::{Approval, ApprovalStatus, SideEffect};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use tokio::sync::Notify;

/// Failures and refusals of approvals.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The database failed.
    #[error("approvals database {path}: {source}; check the data directory")]
    Db {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// No such request (in the caller's tenant).
    #[error("no approval request {0}; list them with `corral approvals ls`")]
    NotFound(String),
    /// Only pending requests can be decided.
    #[error("approval request {id} is already {status}; only pending requests can be decided")]
    NotPending {
        /// Request id.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// The request is for another call.
    #[error("approval request {id} was granted for {what}; ask for a new approval for this call")]
    Mismatch {
        /// Request id.
        id: String,
        /// What differs.
        what: &'static str,
    },
    /// The request cannot be used (used, denied, expired or still pending).
    #[error("approval request {id} is {} and cannot be used for a call", status.as_str())]
    Unusable {
        /// Request id.
        id: String,
        /// Its status.
        status: ApprovalStatus,
    },
    /// No randomness for an id.
    #[error("cannot get random bytes for an approval id: {0}")]
    Random(String),
}

/// What a new request carries (the store adds id, status and times).
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// Task.
    pub task_id: Option<String>,
    /// Capability.
    pub capability: String,
    /// Its side effect.
    pub side_effect: SideEffect,
    /// Arguments, redacted (shown to operators).
    pub args_redacted: Value,
    /// SHA-256 hex of the exact canonical arguments.
    pub args_sha256: String,
    /// The call's idempotency key.
    pub idempotency_key: Option<String>,
    /// Policies that asked for approval.
    pub policies: Vec<String>,
}

/// The approval store.
#[derive(Debug)]
pub struct Approvals {
    db: Mutex<Connection>,
    path: String,
    ttl: Duration,
    /// Woken on every decision, for calls waiting for one.
    decided: Notify,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS approvals (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        agent TEXT NOT NULL,
        task_id TEXT,
        capability TEXT NOT NULL,
        side_effect TEXT NOT NULL,
        args TEXT NOT NULL,
        args_sha256 TEXT NOT NULL,
        idempotency_key TEXT,
        policies TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_at TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        decided_at TEXT,
        decided_by TEXT,
        reason TEXT
    );
    CREATE INDEX IF NOT EXISTS approvals_status ON approvals(status, expires_ms);
    CREATE INDEX IF NOT EXISTS approvals_call
        ON approvals(tenant, capability, args_sha256, created_ms);
";

const COLUMNS: &str = "id, tenant, agent, task_id, capability, side_effect, args, args_sha256, \
     idempotency_key, policies, status, created_at, expires_at, decided_at, decided_by, reason";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn side_effect_from(s: &str) -> SideEffect {
    match s {
        "read_only" => SideEffect::ReadOnly,
        "write_limited" => SideEffect::WriteLimited,
        // Unknown text reads as the strictest class.
        _ => SideEffect::Privileged,
    }
}

fn row_to_approval(r: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
    let args: String = r.get(6)?;
    let policies: String = r.get(9)?;
    let status: String = r.get(10)?;
    Ok(Approval {
        id: r.get(0)?,
        tenant: r.get(1)?,
        agent: r.get(2)?,
        task_id: r.get(3)?,
        capability: r.get(4)?,
        side_effect: side_effect_from(&r.get::<_, String>(5)?),
        args: serde_json::from_str(&args).unwrap_or(Value::Null),
        args_sha256: r.get(7)?,
        idempotency_key: r.get(8)?,
        policies: serde_json::from_str(&policies).unwrap_or_default(),
        // Unknown text reads as denied: fail closed.
        status: ApprovalStatus::parse(&status).unwrap_or(ApprovalStatus::Denied),
        created_at: r.get(11)?,
        expires_at: r.get(12)?,
        decided_at: r.get(13)?,
        decided_by: r.get(14)?,
        reason: r.get(15)?,
    })
}

pub(crate) fn random_id(prefix: &str) -> Result<String, String> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| e.to_string())?;
    Ok(format!("{prefix}{}", crate::audit::hex(&b)))
}

impl Approvals {
    /// Opens (creating) the `approvals` table in the database at `path`; requests live
    /// `ttl` undecided.
    pub fn open(path: &Path, ttl: Duration) -> Result<Approvals, ApprovalError> {
        let p = path.display().to_string();
        let db = |source| ApprovalError::Db {
            path: p.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        // Checkpoints run in the audit log's checkpoint thread; this is the fallback.
        conn.pragma_update(None, "wal_autocheckpoint", 20_000)
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Approvals {
            db: Mutex::new(conn),
            path: p,
            ttl,
            decided: Notify::new(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db_err(&self, source: rusqlite::Error) -> ApprovalError {
        ApprovalError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates a pending request.
    pub fn create(&self, new: NewApproval) -> Result<Approval, ApprovalError> {
        let id = random_id("apr-").map_err(ApprovalError::Random)?;
        let now = now_ms();
        let expires = now + self.ttl.as_millis() as u64;
        self.conn()
            .execute(
                "INSERT INTO approvals (id, tenant, agent, task_id, capability, side_effect,
                    args, args_sha256, idempotency_key, policies, status, created_at,
                    created_ms, expires_at, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?12, ?13, ?14)",
                params![
                    id,
                    new.tenant,
                    new.agent,
                    new.task_id,
                    new.capability,
                    new.side_effect.as_str(),
                    new.args_redacted.to_string(),
                    new.args_sha256,
                    new.idempotency_key,
                    serde_json::to_string(&new.policies).unwrap_or_else(|_| "[]".into()),
                    corral_types::rfc3339_ms(now),
                    now as i64,
                    corral_types::rfc3339_ms(expires),
                    expires as i64,
                ],
            )
            .map_err(|e| self.db_err(e))?;
        self.get(Some(&new.tenant), &id)
    }

    /// Marks pending requests past their expiry `expired`; those it changed (the
    /// caller records them in the audit log).
    pub fn expire_due(&self) -> Result<Vec<Approval>, ApprovalError> {
        let now = now_ms();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "UPDATE approvals SET status = 'expired', decided_at = ?1
                 WHERE status = 'pending' AND expires_ms <= ?2 RETURNING {COLUMNS}"
            ))
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(
                params![corral_types::rfc3339_ms(now), now as i64],
                row_to_approval,
            )
            .map_err(|e| self.db_err(e))?;
        let expired = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db_err(e))?;
        if !expired.is_empty() {
            self.decided.notify_waiters();
        }
        Ok(expired)
    }

    /// One request; `tenant` None sees every tenant (admin).
    pub fn get(&self, tenant: Option<&str>, id: &str) -> Result<Approval, ApprovalError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM approvals WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
                ),
                params![id, tenant],
                row_to_approval,
            )
            .optional()
            .map_err(|e| self.db_err(e))?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))
    }

    /// Requests of `tenant` (None: all), with `status` if given, oldest first, at most
    /// `limit`.
    pub fn list(
        &self,
        tenant: Option<&str>,
        status: Option<ApprovalStatus>,
        limit: u32,
    ) -> Result<Vec<Approval>, ApprovalError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM approvals
                 WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY created_ms, id LIMIT ?3"
            ))
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(
                params![tenant, status.map(ApprovalStatus::as_str), limit],
                row_to_approval,
            )
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db_err(e))
    }

    /// Approves or denies a pending request of `tenant` (None: any).
    pub fn decide(
        &self,
        tenant: Option<&str>,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Approval, ApprovalError> {
        let now = now_ms();
        let changed = self
            .conn()
            .execute(
                "UPDATE approvals SET status = ?1, decided_at = ?2, decided_by = ?3, reason = ?4
                 WHERE id = ?5 AND (?6 IS NULL OR tenant = ?6) AND status = 'pending'
                   AND expires_ms > ?7",
                params![
                    if approve { "approved" } else { "denied" },
                    corral_types::rfc3339_ms(now),
                    by,
                    reason,
                    id,
                    tenant,
                    now as i64
                ],
            )
            .map_err(|e| self.db_err(e))?;
        let a = self.get(tenant, id)?;
        if changed == 0 {
            return Err(ApprovalError::NotPending {
                id: id.to_string(),
                status: if a.status == ApprovalStatus::Pending {
                    // Past its expiry; the sweep has not marked it yet.
                    "expired"
                } else {
                    a.status.as_str()
                },
            });
        }
        self.decided.notify_waiters();
        Ok(a)
    }

    /// The newest request of this exact call (tenant, agent, capability, arguments
    /// hash, idempotency key) that is not used, if any.
    pub fn find_for_call(
        &self,
        tenant: &str,
        agent: &str,
        capability: &str,
        args_sha256: &str,
        key: Option<&str>,
    ) -> Result<Option<Approval>, ApprovalError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM approvals
                     WHERE tenant = ?1 AND agent = ?2 AND capability = ?3 AND args_sha256 = ?4
                       AND idempotency_key IS ?5 AND status != 'used'
                     ORDER BY created_ms DESC, id DESC LIMIT 1"
                ),
                params![tenant, agent, capability, args_sha256, key],
                row_to_approval,
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Uses an approved request for a call: it must be this tenant's, for this
    /// capability and these exact arguments, and approved (not yet used). Atomic: two
    /// calls racing for one approval, one wins.
    pub fn consume(
        &self,
        tenant: &str,
        id: &str,
        capability: &str,
        args_sha256: &str,
    ) -> Result<Approval, ApprovalError> {
        let a = self.get(Some(tenant), id)?;
        if a.capability != capability {
            return Err(ApprovalError::Mismatch {
                id: id.into(),
                what: "another capability",
            });
        }
        if a.args_sha256 != args_sha256 {
            return Err(ApprovalError::Mismatch {
                id: id.into(),
                what: "other arguments",
            });
        }
        let changed = self
            .conn()
            .execute(
                "UPDATE approvals SET status = 'used' WHERE id = ?1 AND status = 'approved'",
                params![id],
            )
            .map_err(|e| self.db_err(e))?;
        if changed == 0 {
            let now = self.get(Some(tenant), id)?;
            return Err(ApprovalError::Unusable {
                id: id.into(),
                status: now.status,
            });
        }
        self.get(Some(tenant), id)
    }

    /// Waits until request `id` is no longer pending or `timeout` passes; the request
    /// as it is then (expiry applied).
    pub async fn wait_decided(
        &self,
        tenant: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<Approval, ApprovalError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before reading, so a decision in between is not missed.
            let notified = self.decided.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let a = self.get(Some(tenant), id)?;
            let now = tokio::time::Instant::now();
            if a.status != ApprovalStatus::Pending || now >= deadline {
                return Ok(a);
            }
            // Wake at the request's own expiry at the latest, to mark it.
            let _ = tokio::time::timeout_at(deadline, notified).await;
            self.expire_due()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store(ttl: Duration) -> (tempfile::TempDir, Approvals) {
        let dir = tempfile::tempdir().unwrap();
        let a = Approvals::open(&dir.path().join("govern.db"), ttl).unwrap();
        (dir, a)
    }

    fn new(args_hash: &str) -> NewApproval {
        NewApproval {
            tenant: "acme".into(),
            agent: "bot".into(),
            task_id: Some("t1".into()),
            capability: "payments.refund".into(),
            side_effect: SideEffect::Privileged,
            args_redacted: json!({"amount": 5}),
            args_sha256: args_hash.into(),
            idempotency_key: Some("k1".into()),
            policies: vec!["refund-needs-approval".into()],
        }
    }

    #[test]
    fn approve_then_consume_once_for_the_same_args() {
        let (_d, s) = store(Duration::from_secs(60));
        let a = s.create(new("h1")).unwrap();
        assert_eq!(a.status, ApprovalStatus::Pending);
        assert!(a.id.starts_with("apr-") && a.id.len() == 28);
        // Not usable before approval.
        assert!(matches!(
            s.consume("acme", &a.id, "payments.refund", "h1"),
            Err(ApprovalError::Unusable {
                status: ApprovalStatus::Pending,
                ..
            })
        ));
        // Another tenant's operator cannot see or decide it.
        assert!(matches!(
            s.decide(Some("other"), &a.id, true, "op", None),
            Err(ApprovalError::NotFound(_))
        ));
        let d = s
            .decide(Some("acme"), &a.id, true, "op", Some("ok"))
            .unwrap();
        assert_eq!(d.status, ApprovalStatus::Approved);
        assert_eq!(d.decided_by.as_deref(), Some("op"));
        // Other args or another capability: refused, and the approval stays usable.
        assert!(matches!(
            s.consume("acme", &a.id, "payments.refund", "h2"),
            Err(ApprovalError::Mismatch { .. })
        ));
        assert!(matches!(
            s.consume("acme", &a.id, "other.cap", "h1"),
            Err(ApprovalError::Mismatch { .. })
        ));
        let u = s.consume("acme", &a.id, "payments.refund", "h1").unwrap();
        assert_eq!(u.status, ApprovalStatus::Used);
        // Used once.
        assert!(matches!(
            s.consume("acme", &a.id, "payments.refund", "h1"),
            Err(ApprovalError::Unusable {
                status: ApprovalStatus::Used,
                ..
            })
        ));
        // A decided request cannot be decided again.
        assert!(matches!(
            s.decide(Some("acme"), &a.id, false, "op", None),
            Err(ApprovalError::NotPending { .. })
        ));
    }

    #[test]
    fn denied_is_not_usable_and_find_skips_used() {
        let (_d, s) = store(Duration::from_secs(60));
        let a = s.create(new("h1")).unwrap();
        s.decide(None, &a.id, false, "op", Some("no")).unwrap();
        assert!(matches!(
            s.consume("acme", &a.id, "payments.refund", "h1"),
            Err(ApprovalError::Unusable {
                status: ApprovalStatus::Denied,
                ..
            })
        ));
        let found = s
            .find_for_call("acme", "bot", "payments.refund", "h1", Some("k1"))
            .unwrap()
            .unwrap();
        assert_eq!(found.id, a.id);
        assert!(s
            .find_for_call("acme", "bot", "payments.refund", "h1", Some("k2"))
            .unwrap()
            .is_none());
        assert_eq!(
            s.list(Some("acme"), Some(ApprovalStatus::Denied), 10)
                .unwrap()
                .len(),
            1
        );
        assert!(s
            .list(Some("acme"), Some(ApprovalStatus::Pending), 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn expiry_is_a_denial() {
        let (_d, s) = store(Duration::from_millis(0));
        let a = s.create(new("h1")).unwrap();
        // Past expiry but not swept: deciding is refused as expired.
        assert!(matches!(
            s.decide(Some("acme"), &a.id, true, "op", None),
            Err(ApprovalError::NotPending {
                status: "expired",
                ..
            })
        ));
        let expired = s.expire_due().unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].status, ApprovalStatus::Expired);
        assert!(s.expire_due().unwrap().is_empty());
        assert_eq!(s.get(None, &a.id).unwrap().status, ApprovalStatus::Expired);
    }

    #[tokio::test]
    async fn a_waiting_call_wakes_on_the_decision() {
        let (_d, s) = store(Duration::from_secs(60));
        let s = std::sync::Arc::new(s);
        let a = s.create(new("h1")).unwrap();
        let s2 = s.clone();
        let id = a.id.clone();
        let waiter =
            tokio::spawn(
                async move { s2.wait_decided("acme", &id, Duration::from_secs(10)).await },
            );
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.decide(Some("acme"), &a.id, true, "op", None).unwrap();
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.status, ApprovalStatus::Approved);
        // A short wait on an undecided request returns it pending.
        let b = s.create(new("h2")).unwrap();
        let got = s
            .wait_decided("acme", &b.id, Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(got.status, ApprovalStatus::Pending);
    }
}
