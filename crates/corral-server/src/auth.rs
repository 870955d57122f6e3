//! API keys and tenants: the store (DIR/auth.db), key checks with a short cache, and
//! the middleware that turns `Authorization: Bearer KEY` into a [`Caller`].
//!
//! Secrets are `crl_` and 64 hex digits (32 random bytes); only their SHA-256 is
//! stored. A key's id is `key-` and the first 16 hex digits of its secret, so a secret
//! shows which key it is without revealing the rest.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use corral_types::api::{KeyCreateResponse, KeyInfo, Role, Tenant, TenantQuota};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::time::now_rfc3339;
use crate::AppState;

/// Sandboxes alive at once, when a tenant is created without a quota.
const DEFAULT_MAX_SANDBOXES: u64 = 100;
/// Sum of memory limits, when a tenant is created without a quota (64 GiB).
const DEFAULT_MAX_MEMORY_BYTES: u64 = 64 << 30;
/// How long a checked key is trusted without asking the database again. Revocation
/// through this daemon drops the entry at once; the window only matters for a database
/// edited behind the daemon's back.
const CACHE_TTL: Duration = Duration::from_secs(10);

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) key_id: String,
    /// The agent this key speaks for (the governance principal): the key's name, or
    /// its id when it has none.
    pub(crate) agent: String,
    pub(crate) tenant: String,
    pub(crate) role: Role,
    pub(crate) quota: TenantQuota,
}

impl Caller {
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this route needs an admin key; create one with `corral key create --role admin`",
            ))
        }
    }
}

/// Failures of the key store.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The database could not be opened, migrated or queried.
    #[error("auth database {path}: {source}")]
    Db {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The admin key could not be written.
    #[error(
        "cannot write the admin key to {path}: {source}; check the data directory's permissions"
    )]
    AdminKey {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No randomness from the kernel.
    #[error("cannot get random bytes for a key: {0}")]
    Random(String),
}

/// DIR/auth.db and a cache of checked keys.
#[derive(Debug)]
pub(crate) struct AuthStore {
    db: Mutex<Connection>,
    path: String,
    cache: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

/// Schema versions, applied in order; each runs once (recorded in `migrations`).
const MIGRATIONS: &[&str] = &["CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        max_sandboxes INTEGER,
        max_memory_bytes INTEGER,
        created_at TEXT NOT NULL
    );
    CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        secret_sha256 BLOB NOT NULL UNIQUE,
        tenant TEXT NOT NULL REFERENCES tenants(name),
        role TEXT NOT NULL,
        name TEXT,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );"];

impl AuthStore {
    /// Opens (creating and migrating) DIR/auth.db. On a fresh database: tenant
    /// `default` and an admin key, whose secret is printed once and written to
    /// DIR/admin-key (0600).
    pub(crate) fn open(data_dir: &Path) -> Result<AuthStore, AuthError> {
        let path = data_dir.join("auth.db");
        let path_s = path.display().to_string();
        let db_err = |source| AuthError::Db {
            path: path_s.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
        migrate(&mut conn).map_err(db_err)?;
        let store = AuthStore {
            db: Mutex::new(conn),
            path: path_s.clone(),
            cache: Mutex::new(HashMap::new()),
        };
        if store.tenants()?.is_empty() {
            store.bootstrap(data_dir)?;
        }
        Ok(store)
    }

    fn db_err(&self, source: rusqlite::Error) -> AuthError {
        AuthError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bootstrap(&self, data_dir: &Path) -> Result<(), AuthError> {
        self.insert_tenant("default", &TenantQuota::default())?;
        let created = self.insert_key("default", Role::Admin, Some("admin (first start)"))?;
        let file = data_dir.join("admin-key");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                // The admin secret: readable by the daemon's user only.
                .mode(0o600)
                .open(&file)?;
            f.write_all(format!("{}\n", created.secret).as_bytes())?;
            f.sync_all()
        };
        write().map_err(|source| AuthError::AdminKey {
            path: file.display().to_string(),
            source,
        })?;
        eprintln!(
            "corral: admin key (shown once, also in {}): {}",
            file.display(),
            created.secret
        );
        Ok(())
    }

    /// The caller a bearer secret stands for, if it is a live key.
    pub(crate) fn check(&self, secret: &str) -> Result<Option<Caller>, AuthError> {
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&hash) {
                Some((caller, at)) if at.elapsed() < CACHE_TTL => return Ok(Some(caller.clone())),
                Some(_) => {
                    cache.remove(&hash);
                }
                None => {}
            }
        }
        let Some(caller) = self.live_caller("k.secret_sha256", &&hash[..])? else {
            return Ok(None);
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, (caller.clone(), Instant::now()));
        Ok(Some(caller))
    }

    /// The caller a key id stands for, if that key is live (not revoked). Used for
    /// tokens issued to a key (the E2B endpoint's sandbox tokens), never for bearer
    /// authentication.
    pub(crate) fn caller_by_key_id(&self, key_id: &str) -> Result<Option<Caller>, AuthError> {
        self.live_caller("k.id", &key_id)
    }

    /// The caller of the live key whose `column` equals `value`.
    fn live_caller(
        &self,
        column: &'static str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<Caller>, AuthError> {
        let sql = format!(
            "SELECT k.id, k.tenant, k.role, t.max_sandboxes, t.max_memory_bytes, k.name
             FROM keys k JOIN tenants t ON t.name = k.tenant
             WHERE {column} = ?1 AND k.revoked_at IS NULL"
        );
        let row = self
            .conn()
            .query_row(&sql, [value], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .optional()
            .map_err(|e| self.db_err(e))?;
        Ok(
            row.and_then(|(key_id, tenant, role, max_sb, max_mem, name)| {
                Some(Caller {
                    agent: name.unwrap_or_else(|| key_id.clone()),
                    key_id,
                    tenant,
                    role: parse_role(&role)?,
                    quota: TenantQuota {
                        max_sandboxes: max_sb.map(|v| v as u64),
                        max_memory_bytes: max_mem.map(|v| v as u64),
                    },
                })
            }),
        )
    }

    /// Creates a tenant; quotas absent from the request get the defaults.
    pub(crate) fn create_tenant(
        &self,
        name: &str,
        quota: &TenantQuota,
    ) -> Result<Result<Tenant, ApiError>, AuthError> {
        if let Err(why) = validate_tenant_name(name) {
            return Ok(Err(ApiError::bad_request(why)));
        }
        if self.tenant(name)?.is_some() {
            return Ok(Err(ApiError::conflict(format!(
                "tenant {name} exists already"
            ))));
        }
        self.insert_tenant(name, quota)?;
        match self.tenant(name)? {
            Some(t) => Ok(Ok(t)),
            None => Ok(Err(ApiError::internal("tenant vanished after insert"))),
        }
    }

    fn insert_tenant(&self, name: &str, quota: &TenantQuota) -> Result<(), AuthError> {
        let max_sb = quota.max_sandboxes.unwrap_or(DEFAULT_MAX_SANDBOXES);
        let max_mem = quota.max_memory_bytes.unwrap_or(DEFAULT_MAX_MEMORY_BYTES);
        self.conn()
            .execute(
                "INSERT INTO tenants (name, max_sandboxes, max_memory_bytes, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    name,
                    i64::try_from(max_sb).unwrap_or(i64::MAX),
                    i64::try_from(max_mem).unwrap_or(i64::MAX),
                    now_rfc3339()
                ],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    fn tenant(&self, name: &str) -> Result<Option<Tenant>, AuthError> {
        self.conn()
            .query_row(
                "SELECT name, max_sandboxes, max_memory_bytes, created_at FROM tenants
                 WHERE name = ?1",
                params![name],
                tenant_row,
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Every tenant, by name.
    pub(crate) fn tenants(&self) -> Result<Vec<Tenant>, AuthError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, max_sandboxes, max_memory_bytes, created_at FROM tenants
                 ORDER BY name",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], tenant_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.db_err(e));
        rows
    }

    /// Creates a key for an existing tenant.
    pub(crate) fn create_key(
        &self,
        tenant: &str,
        role: Role,
        name: Option<&str>,
    ) -> Result<Result<KeyCreateResponse, ApiError>, AuthError> {
        if self.tenant(tenant)?.is_none() {
            return Ok(Err(ApiError::not_found(format!(
                "no tenant {tenant}; create it first with `corral tenant create {tenant}`"
            ))));
        }
        if name.is_some_and(|n| n.len() > 256) {
            return Ok(Err(ApiError::bad_request(
                "a key's name is at most 256 bytes",
            )));
        }
        self.insert_key(tenant, role, name).map(Ok)
    }

    fn insert_key(
        &self,
        tenant: &str,
        role: Role,
        name: Option<&str>,
    ) -> Result<KeyCreateResponse, AuthError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| AuthError::Random(e.to_string()))?;
        let hex = hex(&raw);
        let secret = format!("crl_{hex}");
        let id = format!("key-{}", &hex[..16]);
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let created_at = now_rfc3339();
        self.conn()
            .execute(
                "INSERT INTO keys (id, secret_sha256, tenant, role, name, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, &hash[..], tenant, role_str(role), name, created_at],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(KeyCreateResponse {
            key: KeyInfo {
                id,
                tenant: tenant.to_string(),
                role,
                name: name.map(str::to_string),
                created_at,
                revoked_at: None,
            },
            secret,
        })
    }

    /// Every key (never a secret), oldest first.
    pub(crate) fn keys(&self) -> Result<Vec<KeyInfo>, AuthError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, tenant, role, name, created_at, revoked_at FROM keys
                 ORDER BY created_at, id",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(KeyInfo {
                    id: r.get(0)?,
                    tenant: r.get(1)?,
                    role: parse_role(&r.get::<_, String>(2)?).unwrap_or(Role::Agent),
                    name: r.get(3)?,
                    created_at: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.db_err(e));
        rows
    }

    /// Revokes a key; effective at once (the cache entry goes too). False when there
    /// is no such key.
    pub(crate) fn revoke_key(&self, id: &str) -> Result<bool, AuthError> {
        let exists = self
            .conn()
            .query_row("SELECT 1 FROM keys WHERE id = ?1", params![id], |_| Ok(()))
            .optional()
            .map_err(|e| self.db_err(e))?
            .is_some();
        if !exists {
            return Ok(false);
        }
        self.conn()
            .execute(
                "UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now_rfc3339()],
            )
            .map_err(|e| self.db_err(e))?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (c, _)| c.key_id != id);
        Ok(true)
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let done: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM migrations",
        [],
        |r| r.get(0),
    )?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= done {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now_rfc3339()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

fn tenant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        name: r.get(0)?,
        quota: TenantQuota {
            max_sandboxes: r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
            max_memory_bytes: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
        },
        created_at: r.get(3)?,
    })
}

fn validate_tenant_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tenant name {name:?}: use 1-64 of a-z, 0-9 and -, starting with a letter"
        ))
    }
}

fn role_str(role: Role) -> &'static str {
    match role {
        Role::Agent => "agent",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

fn parse_role(s: &str) -> Option<Role> {
    match s {
        "agent" => Some(Role::Agent),
        "operator" => Some(Role::Operator),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Middleware: a valid bearer key or 401. The [`Caller`] goes into the request's
/// extensions for the handlers.
pub(crate) async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    use axum::response::IntoResponse;
    let secret = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = secret else {
        return ApiError::unauthenticated(
            "missing API key: send Authorization: Bearer KEY (the admin key is in DATA_DIR/admin-key)",
        )
        .into_response();
    };
    match state.auth.check(secret) {
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Ok(None) => ApiError::unauthenticated("invalid or revoked API key").into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_open_creates_an_admin_key_and_reopen_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::open(dir.path()).unwrap();
        let secret = std::fs::read_to_string(dir.path().join("admin-key")).unwrap();
        let secret = secret.trim();
        assert!(secret.starts_with("crl_") && secret.len() == 68, "{secret}");
        let meta = std::fs::metadata(dir.path().join("admin-key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let caller = store.check(secret).unwrap().unwrap();
        assert_eq!(caller.role, Role::Admin);
        assert_eq!(caller.tenant, "default");
        assert_eq!(caller.key_id, format!("key-{}", &secret[4..20]));
        drop(store);
        std::fs::remove_file(dir.path().join("admin-key")).unwrap();
        let store = AuthStore::open(dir.path()).unwrap();
        assert!(
            !dir.path().join("admin-key").exists(),
            "no second admin key"
        );
        assert!(store.check(secret).unwrap().is_some());
    }

    #[test]
    fn revoke_takes_effect_at_once_despite_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::open(dir.path()).unwrap();
        let k = store
            .create_key("default", Role::Agent, Some("a"))
            .unwrap()
            .unwrap();
        assert!(store.check(&k.secret).unwrap().is_some());
        assert!(store.revoke_key(&k.key.id).unwrap());
        assert!(store.check(&k.secret).unwrap().is_none());
        assert!(!store.revoke_key("key-0000000000000000").unwrap());
        assert!(store.check("crl_nope").unwrap().is_none());
    }

    #[test]
    fn tenant_names_are_checked_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::open(dir.path()).unwrap();
        let q = TenantQuota::default();
        let t = store.create_tenant("team-a", &q).unwrap().unwrap();
        assert_eq!(t.quota.max_sandboxes, Some(DEFAULT_MAX_SANDBOXES));
        assert_eq!(
            store.create_tenant("team-a", &q).unwrap().unwrap_err().code,
            "conflict"
        );
        for bad in ["", "A", "1a", "a_b", &"a".repeat(65)] {
            assert!(store.create_tenant(bad, &q).unwrap().is_err(), "{bad}");
        }
        assert!(store
            .create_key("nope", Role::Agent, None)
            .unwrap()
            .is_err());
    }
}
