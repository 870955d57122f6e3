//! corral-govern: what an agent may do, and the record of what it did.
//!
//! Pure logic and storage (SQLite); no HTTP. corral-server and the MCP endpoint turn
//! requests into calls on this crate.
#![forbid(unsafe_code)]

// Owned by the audit/approvals work: hash-chained audit log, approvals,
// idempotency records, redaction.
mod approvals;
mod audit;
mod gateway;
mod idempotency;
mod redact;
mod render;

pub use approvals::{ApprovalError, Approvals, NewApproval};
pub use audit::{
    canonical_json, sha256_hex, verify_file, AuditError, AuditEvent, AuditLog, AuditQuery,
    AuditSink,
};
pub use gateway::{
    BoxFuture, BuiltinAuth, CallContext, GovernConfig, GovernError, Governance, NoSecrets,
    PolicyPoint, Secret, SecretSource, TargetOutput, TargetRequest, TargetRunner,
};
pub use idempotency::{Claim, IdempotencyError, IdempotencyStore};
pub use redact::{is_sensitive_name, redact_args, scrub, sensitive_values, REDACTED};

// Owned by the policy work: capability catalog, Cedar policy bundles and decisions,
// kill switches, budgets, plan review (one handle: PolicyCore).
mod budget;
mod catalog;
mod core;
mod killswitch;
mod plan;
mod policy;
mod store;
mod versions;

pub use budget::{BudgetError, DEFAULT_DEGRADE_AT_PERCENT, DEFAULT_TENANT};
pub use catalog::{
    builtin_tools, ArgsRejection, Catalog, CatalogEntry, CatalogError, BUILTIN_CATEGORY,
};
pub use killswitch::KillSwitchError;
pub use plan::MAX_PLAN_STEPS;
pub use policy::{CompiledBundle, PolicyError, APPROVAL_ANNOTATION};
pub use store::StoreError;

pub use crate::core::{
    CallCheck, Evaluation, PolicyAuditHook, PolicyConfig, PolicyCore, PolicyCoreError, PolicyEvent,
    CATALOG_POLL, DEFAULT_POLICY,
};

/// Policy compilation for the fuzz targets in fuzz/ (built only by `cargo fuzz`, which
/// sets `--cfg fuzzing`; not part of the public API).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use crate::{Catalog, CompiledBundle, PolicyError};

    /// Compiles a Cedar policy bundle against the schema generated from `catalog`, as
    /// publishing a bundle does.
    pub fn compile_policy(catalog: &Catalog, text: &str) -> Result<CompiledBundle, PolicyError> {
        let engine = crate::policy::Engine::new(catalog)?;
        CompiledBundle::compile(1, text, &engine.schema)
    }
}
