//! Tenants and API keys.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a key may do. `agent`: its tenant's sandboxes. `operator`: that too, and (later)
/// approvals. `admin`: everything, including tenants and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Uses sandboxes of its tenant.
    Agent,
    /// Operates its tenant.
    Operator,
    /// Administers the daemon.
    Admin,
}

/// Per-tenant quotas; null means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    /// Sandboxes alive at once (default 100).
    pub max_sandboxes: Option<u64>,
    /// Sum of their memory limits, bytes (default 64 GiB).
    pub max_memory_bytes: Option<u64>,
}

/// `POST /v1/tenants` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantCreateRequest {
    /// Name: 1-64 of [a-z0-9-], starting with a letter.
    pub name: String,
    /// Quotas; defaults apply to absent fields.
    #[serde(default)]
    pub quota: TenantQuota,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Its name (also its id).
    pub name: String,
    /// Effective quotas.
    pub quota: TenantQuota,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// `GET /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantList {
    /// All tenants.
    pub tenants: Vec<Tenant>,
}

/// `POST /v1/keys` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyCreateRequest {
    /// The tenant the key acts for (must exist).
    pub tenant: String,
    /// Its role.
    pub role: Role,
    /// A label for humans.
    pub name: Option<String>,
}

/// A key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    /// Its id, `key-` and 16 hex digits (also the secret's visible prefix).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Role.
    pub role: Role,
    /// Label.
    pub name: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// `POST /v1/keys` response: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyCreateResponse {
    /// The key.
    pub key: KeyInfo,
    /// The bearer secret; store it now, it cannot be shown again.
    pub secret: String,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyList {
    /// Keys.
    pub keys: Vec<KeyInfo>,
}
