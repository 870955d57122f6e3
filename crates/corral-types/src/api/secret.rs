//! Secrets: credentials the daemon injects at the egress boundary (see docs/secrets.md).
//! No response ever carries a value.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `PUT /v1/secrets/{name}` (operator or admin): creates or replaces a secret of the
/// caller's tenant. Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretPutRequest {
    /// The value (at most 16 KiB, no control characters).
    pub value: String,
    /// Where it may go: `api.example.com`, `*.example.com` (subdomains only), either
    /// with `:PORT` (without one, any port). At least one.
    pub hosts: Vec<String>,
    /// How it is applied: a header and its value with `{value}` where the secret goes;
    /// default `Authorization: Bearer {value}`.
    #[serde(default)]
    pub header: Option<String>,
}

impl std::fmt::Debug for SecretPutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretPutRequest")
            .field("value", &"[redacted]")
            .field("hosts", &self.hosts)
            .field("header", &self.header)
            .finish()
    }
}

/// A secret as the API shows it: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// Its name (also the environment variable sandboxes get).
    pub name: String,
    /// Where it may go.
    pub hosts: Vec<String>,
    /// How it is applied (`name: template`).
    pub header: String,
    /// What a sandbox created with it holds instead of the value.
    pub placeholder: String,
    /// When it was first stored (RFC 3339).
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    pub updated_at: String,
}

/// `GET /v1/secrets`: the caller's tenant's secrets, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretList {
    /// The secrets.
    pub secrets: Vec<Secret>,
}
