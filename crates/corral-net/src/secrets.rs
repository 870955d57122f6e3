//! The secret store: credentials the egress broker injects at the boundary, so a
//! sandbox only ever holds a placeholder.
//!
//! Each secret belongs to a tenant and has a name, a value ([`SecretValue`]: never
//! printed, wiped from memory when dropped), the hosts it may go to (allowlist rule
//! syntax: `api.example.com`, `*.example.com`, either with `:PORT`), how it is applied
//! (a header and a template such as `Authorization: Bearer {value}`), a random
//! placeholder (`corral-secret-NAME-<32 hex>`, kept across updates so running
//! sandboxes keep working) and timestamps.
//!
//! Stored in DIR/secrets.db (SQLite, mode 0600; values in clear on disk, like the
//! daemon's other keys: protect the data directory) and mirrored in memory, so the
//! broker's per-connection lookup takes no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Mutex, RwLock};

use rusqlite::{params, Connection};
use zeroize::Zeroize;

/// The header a secret goes into when none is given.
pub const DEFAULT_HEADER: &str = "Authorization: Bearer {value}";
/// Every placeholder starts with this.
pub const PLACEHOLDER_PREFIX: &str = "corral-secret-";
/// The longest secret value accepted, bytes.
const VALUE_MAX: usize = 16 * 1024;
/// The most hosts one secret may name.
const HOSTS_MAX: usize = 64;

/// Why a secret operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The request is unusable (a bad name, value, host or header template).
    #[error("{0}")]
    Invalid(String),
    /// No such secret.
    #[error("no secret named {0:?}; list them with `corral secret ls`")]
    NotFound(String),
    /// The database failed.
    #[error("the secret store (DIR/secrets.db) failed while {what}; check the data directory's disk and permissions")]
    Db {
        /// What corral was doing.
        what: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The store's file could not be created with mode 0600.
    #[error("creating {path} failed; check the data directory's permissions")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The system's random source failed.
    #[error("the system random source failed: {0}")]
    Random(String),
    /// A lock was poisoned by a panic elsewhere.
    #[error("the secret store is unusable after an internal error; restart the daemon")]
    Poisoned,
}

/// A secret's value. Its `Debug` and `Display` print `[redacted]`, it has no
/// `Serialize`, and its memory is zeroed when dropped. Read it with [`Self::expose`],
/// only where it leaves for a bound host.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Checks a value: 1 to 16 KiB of printable text (it goes into an HTTP header:
    /// no control characters such as CR or LF).
    pub fn new(value: String) -> Result<SecretValue, SecretError> {
        let v = SecretValue(value);
        if v.0.is_empty() {
            return Err(SecretError::Invalid("the secret's value is empty".into()));
        }
        if v.0.len() > VALUE_MAX {
            return Err(SecretError::Invalid(format!(
                "the secret's value is longer than {VALUE_MAX} bytes"
            )));
        }
        if v.0.chars().any(|c| c.is_control()) {
            return Err(SecretError::Invalid(
                "the secret's value contains a control character (a newline?); it goes into an \
                 HTTP header, so give it without one (strip the trailing newline of a file)"
                    .into(),
            ));
        }
        Ok(v)
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One host rule: `name`, `*.name` (any subdomain, not `name` itself), either with
/// `:PORT` (without one, any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    wildcard: bool,
    name: String,
    port: Option<u16>,
}

impl HostRule {
    /// Parses a rule.
    pub fn parse(rule: &str) -> Result<HostRule, SecretError> {
        let bad = |why: &str| {
            SecretError::Invalid(format!(
                "host {rule:?} {why}; write api.example.com, *.example.com or either with :PORT"
            ))
        };
        let (host, port) = match rule.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p.parse().map_err(|_| bad("has a bad port"))?;
                if port == 0 {
                    return Err(bad("has port 0"));
                }
                (h, Some(port))
            }
            None => (rule, None),
        };
        let host = host.to_ascii_lowercase();
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, host),
        };
        let name = name.trim_end_matches('.').to_string();
        if name.is_empty() || name.len() > 253 {
            return Err(bad("is empty or too long"));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name.split('.').all(label_ok) {
            return Err(bad("is not a host name"));
        }
        Ok(HostRule {
            wildcard,
            name,
            port,
        })
    }

    /// Whether `host:port` matches (host compared case-insensitively, a trailing dot
    /// ignored).
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.wildcard {
            host.len() > self.name.len() + 1
                && host.ends_with(&self.name)
                && host.as_bytes()[host.len() - self.name.len() - 1] == b'.'
        } else {
            host == self.name
        }
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// How a secret is applied: the header it goes into and the header's value, with
/// `{value}` where the secret goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    /// The header's name, lowercase.
    pub name: String,
    /// Its value, holding `{value}` once.
    pub template: String,
}

impl HeaderTemplate {
    /// Parses `Name: template` (e.g. `Authorization: Bearer {value}`).
    pub fn parse(s: &str) -> Result<HeaderTemplate, SecretError> {
        let bad = |why: &str| {
            SecretError::Invalid(format!(
                "header {s:?} {why}; write e.g. 'Authorization: Bearer {{value}}' or 'x-api-key: {{value}}'"
            ))
        };
        let (name, template) = s.split_once(':').ok_or_else(|| bad("has no ':'"))?;
        let name = name.trim().to_ascii_lowercase();
        let template = template.trim().to_string();
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(bad("has no valid header name"));
        }
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding"
        ) {
            return Err(bad("names a header corral cannot replace"));
        }
        if template.matches("{value}").count() != 1 {
            return Err(bad("must hold {value} exactly once"));
        }
        if template.chars().any(|c| c.is_control()) {
            return Err(bad("holds a control character"));
        }
        Ok(HeaderTemplate { name, template })
    }

    /// The header's value with the secret in it.
    pub fn render(&self, value: &SecretValue) -> SecretValue {
        SecretValue(self.template.replace("{value}", value.expose()))
    }
}

impl fmt::Display for HeaderTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.template)
    }
}

/// A secret as anyone may see it: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    /// Owning tenant.
    pub tenant: String,
    /// Name (also the sandbox's environment variable).
    pub name: String,
    /// Where it may go.
    pub hosts: Vec<HostRule>,
    /// How it is applied.
    pub header: HeaderTemplate,
    /// What sandboxes hold instead of the value.
    pub placeholder: String,
    /// When it was first stored (Unix ms).
    pub created_at_ms: u64,
    /// When it was last changed (Unix ms).
    pub updated_at_ms: u64,
}

#[derive(Clone)]
struct Stored {
    meta: SecretMeta,
    value: SecretValue,
}

/// One of a sandbox's secrets as the broker sees it on one connection.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The secret's name.
    pub name: String,
    /// What the sandbox holds.
    pub placeholder: String,
    /// Whether the connection's host and port are among the secret's hosts.
    pub bound: bool,
    /// How it is applied.
    pub header: HeaderTemplate,
    /// The value (only handed out for bound hosts; empty-checked at creation).
    value: Option<SecretValue>,
}

impl Binding {
    /// The header value to send, with the secret in it; None unless bound.
    pub fn header_value(&self) -> Option<SecretValue> {
        self.value.as_ref().map(|v| self.header.render(v))
    }

    /// The value itself; None unless bound.
    pub fn value(&self) -> Option<&SecretValue> {
        self.value.as_ref()
    }
}

/// What [`SecretStore::put`] stores.
#[derive(Debug)]
pub struct SecretPut {
    /// The value.
    pub value: SecretValue,
    /// Where it may go (at least one rule).
    pub hosts: Vec<String>,
    /// `Name: template`; None: [`DEFAULT_HEADER`].
    pub header: Option<String>,
}

/// The daemon's secrets.
pub struct SecretStore {
    db: Mutex<Connection>,
    /// (tenant, name) -> secret.
    cache: RwLock<BTreeMap<(String, String), Stored>>,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore").finish_non_exhaustive()
    }
}

/// Checks a secret's name: 1 to 64 of `[A-Za-z0-9_]`, not starting with a digit (it is
/// also the sandbox's environment variable).
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SecretError::Invalid(format!(
            "secret name {name:?} must be 1 to 64 letters, digits or '_', not starting with a \
             digit (it becomes the sandbox's environment variable)"
        )))
    }
}

fn db_err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> SecretError {
    move |source| SecretError::Db { what, source }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> Result<String, SecretError> {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

impl SecretStore {
    /// Opens (or creates, mode 0600) `dir/secrets.db` and loads every secret.
    pub fn open(dir: &Path) -> Result<SecretStore, SecretError> {
        let path = dir.join("secrets.db");
        let file_err = |source| SecretError::File {
            path: path.display().to_string(),
            source,
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(file_err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(file_err)?;
        let conn = Connection::open(&path).map_err(db_err("opening"))?;
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS secrets (
               tenant TEXT NOT NULL,
               name TEXT NOT NULL,
               value TEXT NOT NULL,
               hosts TEXT NOT NULL,
               header TEXT NOT NULL,
               placeholder TEXT NOT NULL UNIQUE,
               created_at_ms INTEGER NOT NULL,
               updated_at_ms INTEGER NOT NULL,
               PRIMARY KEY (tenant, name));",
        )
        .map_err(db_err("creating its table"))?;
        let mut cache = BTreeMap::new();
        {
            let mut stmt = conn
                .prepare(
                    "SELECT tenant, name, value, hosts, header, placeholder, created_at_ms, \
                     updated_at_ms FROM secrets",
                )
                .map_err(db_err("loading secrets"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })
                .map_err(db_err("loading secrets"))?;
            for row in rows {
                let (tenant, name, value, hosts, header, placeholder, c, u) =
                    row.map_err(db_err("loading secrets"))?;
                let hosts = hosts
                    .lines()
                    .map(HostRule::parse)
                    .collect::<Result<Vec<_>, _>>()?;
                let stored = Stored {
                    meta: SecretMeta {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        hosts,
                        header: HeaderTemplate::parse(&header)?,
                        placeholder,
                        created_at_ms: c as u64,
                        updated_at_ms: u as u64,
                    },
                    value: SecretValue(value),
                };
                cache.insert((tenant, name), stored);
            }
        }
        Ok(SecretStore {
            db: Mutex::new(conn),
            cache: RwLock::new(cache),
        })
    }

    /// Stores (or replaces) a tenant's secret; the placeholder of an existing one is
    /// kept. Returns its metadata and whether it is new.
    pub fn put(
        &self,
        tenant: &str,
        name: &str,
        put: SecretPut,
    ) -> Result<(SecretMeta, bool), SecretError> {
        check_name(name)?;
        if put.hosts.is_empty() {
            return Err(SecretError::Invalid(
                "name at least one host the secret may go to".into(),
            ));
        }
        if put.hosts.len() > HOSTS_MAX {
            return Err(SecretError::Invalid(format!(
                "at most {HOSTS_MAX} hosts per secret"
            )));
        }
        let hosts = put
            .hosts
            .iter()
            .map(|h| HostRule::parse(h.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let header = HeaderTemplate::parse(put.header.as_deref().unwrap_or(DEFAULT_HEADER))?;
        let db = self.db.lock().map_err(|_| SecretError::Poisoned)?;
        let mut cache = self.cache.write().map_err(|_| SecretError::Poisoned)?;
        let key = (tenant.to_string(), name.to_string());
        let now = now_ms();
        let (placeholder, created_at_ms, new) = match cache.get(&key) {
            Some(s) => (s.meta.placeholder.clone(), s.meta.created_at_ms, false),
            None => (
                format!("{PLACEHOLDER_PREFIX}{name}-{}", random_hex(16)?),
                now,
                true,
            ),
        };
        let meta = SecretMeta {
            tenant: tenant.to_string(),
            name: name.to_string(),
            hosts,
            header,
            placeholder,
            created_at_ms,
            updated_at_ms: now,
        };
        let hosts_text: Vec<String> = meta.hosts.iter().map(|h| h.to_string()).collect();
        db.execute(
            "INSERT INTO secrets (tenant, name, value, hosts, header, placeholder, \
             created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (tenant, name) DO UPDATE SET value = ?3, hosts = ?4, header = ?5, \
             updated_at_ms = ?8",
            params![
                tenant,
                name,
                put.value.expose(),
                hosts_text.join("\n"),
                meta.header.to_string(),
                meta.placeholder,
                created_at_ms as i64,
                now as i64
            ],
        )
        .map_err(db_err("storing a secret"))?;
        cache.insert(
            key,
            Stored {
                meta: meta.clone(),
                value: put.value,
            },
        );
        Ok((meta, new))
    }

    /// A tenant's secret's metadata.
    pub fn get(&self, tenant: &str, name: &str) -> Result<SecretMeta, SecretError> {
        let cache = self.cache.read().map_err(|_| SecretError::Poisoned)?;
        cache
            .get(&(tenant.to_string(), name.to_string()))
            .map(|s| s.meta.clone())
            .ok_or_else(|| SecretError::NotFound(name.to_string()))
    }

    /// A tenant's secrets' metadata, by name.
    pub fn list(&self, tenant: &str) -> Result<Vec<SecretMeta>, SecretError> {
        let cache = self.cache.read().map_err(|_| SecretError::Poisoned)?;
        Ok(cache
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, s)| s.meta.clone())
            .collect())
    }

    /// Removes a tenant's secret. Sandboxes holding its placeholder can no longer use
    /// it (their requests carrying it are blocked).
    pub fn delete(&self, tenant: &str, name: &str) -> Result<(), SecretError> {
        let db = self.db.lock().map_err(|_| SecretError::Poisoned)?;
        let mut cache = self.cache.write().map_err(|_| SecretError::Poisoned)?;
        let n = db
            .execute(
                "DELETE FROM secrets WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )
            .map_err(db_err("removing a secret"))?;
        cache.remove(&(tenant.to_string(), name.to_string()));
        if n == 0 {
            return Err(SecretError::NotFound(name.to_string()));
        }
        Ok(())
    }

    /// The placeholders of a tenant's secrets `names` (for a new sandbox's
    /// environment); an unknown name is an error.
    pub fn placeholders(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<Vec<(String, String)>, SecretError> {
        let cache = self.cache.read().map_err(|_| SecretError::Poisoned)?;
        names
            .iter()
            .map(|n| {
                cache
                    .get(&(tenant.to_string(), n.clone()))
                    .map(|s| (n.clone(), s.meta.placeholder.clone()))
                    .ok_or_else(|| SecretError::NotFound(n.clone()))
            })
            .collect()
    }

    /// A sandbox's secrets on a connection to `host:port`: each with whether it is
    /// bound there (and then its value). Secrets deleted since the sandbox was created
    /// are absent (their placeholders are then plain text nobody swaps).
    pub fn bindings(&self, tenant: &str, names: &[String], host: &str, port: u16) -> Vec<Binding> {
        let Ok(cache) = self.cache.read() else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|n| cache.get(&(tenant.to_string(), n.clone())))
            .map(|s| {
                let bound = s.meta.hosts.iter().any(|r| r.matches(host, port));
                Binding {
                    name: s.meta.name.clone(),
                    placeholder: s.meta.placeholder.clone(),
                    bound,
                    header: s.meta.header.clone(),
                    value: bound.then(|| s.value.clone()),
                }
            })
            .collect()
    }

    /// The value of a tenant's secret for use toward `host` (any port), if the secret
    /// exists and may go there. For governance's capability calls.
    pub fn value_for(&self, tenant: &str, name: &str, host: &str) -> Option<SecretValue> {
        let cache = self.cache.read().ok()?;
        let s = cache.get(&(tenant.to_string(), name.to_string()))?;
        s.meta
            .hosts
            .iter()
            .any(|r| r.name_matches(host))
            .then(|| s.value.clone())
    }
}

impl HostRule {
    fn name_matches(&self, host: &str) -> bool {
        HostRule {
            port: None,
            ..self.clone()
        }
        .matches(host, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(hosts: &[&str], header: Option<&str>, value: &str) -> SecretPut {
        SecretPut {
            value: SecretValue::new(value.into()).unwrap(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            header: header.map(String::from),
        }
    }

    #[test]
    fn secret_value_is_never_printed() {
        let v = SecretValue::new("sk-live-123".into()).unwrap();
        assert_eq!(format!("{v:?}"), "[redacted]");
        assert_eq!(format!("{v}"), "[redacted]");
        assert_eq!(v.expose(), "sk-live-123");
        assert!(SecretValue::new("a\nb".into()).is_err());
        assert!(SecretValue::new(String::new()).is_err());
        assert!(SecretValue::new("x".repeat(VALUE_MAX + 1)).is_err());
    }

    #[test]
    fn host_rules_match_names_wildcards_and_ports() {
        let r = HostRule::parse("API.example.com").unwrap();
        assert!(r.matches("api.example.com", 443));
        assert!(r.matches("api.example.com.", 8443));
        assert!(!r.matches("x.api.example.com", 443));
        let w = HostRule::parse("*.example.com:443").unwrap();
        assert!(w.matches("a.b.example.com", 443));
        assert!(!w.matches("example.com", 443));
        assert!(!w.matches("evilexample.com", 443));
        assert!(!w.matches("a.example.com", 80));
        assert_eq!(w.to_string(), "*.example.com:443");
        for bad in ["", "a b", "x:0", "x:99999", "*.", "a..b", "http://x"] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_templates_render_and_are_checked() {
        let t = HeaderTemplate::parse("Authorization: Bearer {value}").unwrap();
        assert_eq!(t.name, "authorization");
        let v = SecretValue::new("s3cr3t".into()).unwrap();
        assert_eq!(t.render(&v).expose(), "Bearer s3cr3t");
        assert!(HeaderTemplate::parse("x-api-key: {value}").is_ok());
        for bad in [
            "Authorization Bearer {value}",
            "Authorization: Bearer",
            "Authorization: {value}{value}",
            "Host: {value}",
            "bad header: {value}",
        ] {
            assert!(HeaderTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_round_trips_keeps_placeholders_and_scopes_by_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let s = SecretStore::open(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("secrets.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (m, new) = s
            .put("t1", "OPENAI", put(&["api.openai.com"], None, "sk-1"))
            .unwrap();
        assert!(new);
        assert!(m.placeholder.starts_with("corral-secret-OPENAI-"));
        assert_eq!(m.placeholder.len(), "corral-secret-OPENAI-".len() + 32);
        let (m2, new) = s
            .put(
                "t1",
                "OPENAI",
                put(&["*.openai.com:443"], Some("x-api-key: {value}"), "sk-2"),
            )
            .unwrap();
        assert!(!new);
        assert_eq!(m2.placeholder, m.placeholder);
        assert_eq!(m2.header.name, "x-api-key");
        assert!(s.get("t2", "OPENAI").is_err());
        assert!(s.list("t2").unwrap().is_empty());
        assert!(s.placeholders("t2", &["OPENAI".into()]).is_err());
        drop(s);

        let s = SecretStore::open(dir.path()).unwrap();
        assert_eq!(s.list("t1").unwrap(), vec![m2.clone()]);
        let b = s.bindings("t1", &["OPENAI".into()], "api.openai.com", 443);
        assert!(b[0].bound);
        assert_eq!(b[0].header_value().unwrap().expose(), "sk-2");
        let b = s.bindings("t1", &["OPENAI".into()], "evil.com", 443);
        assert!(!b[0].bound && b[0].header_value().is_none());
        assert_eq!(
            s.value_for("t1", "OPENAI", "api.openai.com")
                .unwrap()
                .expose(),
            "sk-2"
        );
        assert!(s.value_for("t1", "OPENAI", "evil.com").is_none());
        s.delete("t1", "OPENAI").unwrap();
        assert!(matches!(
            s.delete("t1", "OPENAI"),
            Err(SecretError::NotFound(_))
        ));
        assert!(s
            .bindings("t1", &["OPENAI".into()], "api.openai.com", 443)
            .is_empty());
    }

    #[test]
    fn bad_puts_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = SecretStore::open(dir.path()).unwrap();
        for name in ["", "1ABC", "A-B", &"X".repeat(65)] {
            assert!(s.put("t", name, put(&["a.com"], None, "v")).is_err());
        }
        let e = s.put("t", "A", put(&[], None, "v")).unwrap_err();
        assert!(e.to_string().contains("at least one host"));
        assert!(s.put("t", "A", put(&["a b"], None, "v")).is_err());
        assert!(s.list("t").unwrap().is_empty());
    }
}
