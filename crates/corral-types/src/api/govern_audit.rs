//! Governance evidence and the call pipeline: audit records, approvals, capability
//! calls (`/v1/audit`, `/v1/approvals`, `/v1/calls`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SideEffect;

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A capability or builtin tool was called (its arguments, redacted).
    ToolCall,
    /// The gateway decided on a call (permit, forbid, needs approval; policies, shadow).
    Decision,
    /// A call's outcome (output, redacted; or the error).
    Outcome,
    /// An approval was requested.
    ApprovalRequested,
    /// An operator approved.
    ApprovalApproved,
    /// An operator denied.
    ApprovalDenied,
    /// A request expired undecided (an expiry is a denial).
    ApprovalExpired,
    /// A budget event (usage recorded, threshold crossed, exhausted, limits changed).
    Budget,
    /// A kill switch was set or cleared.
    KillSwitch,
    /// A policy bundle was published or activated, or the shadow changed.
    PolicyPublish,
    /// The active policy bundle was rolled back.
    PolicyRollback,
    /// A capability was published to the catalog.
    CatalogPublish,
    /// A sandbox was created, deleted, paused, resumed or killed (or that failed).
    SandboxLifecycle,
    /// An egress decision of a sandbox network.
    Egress,
}

impl AuditKind {
    /// Every kind, in the order above.
    pub const ALL: [AuditKind; 14] = [
        AuditKind::ToolCall,
        AuditKind::Decision,
        AuditKind::Outcome,
        AuditKind::ApprovalRequested,
        AuditKind::ApprovalApproved,
        AuditKind::ApprovalDenied,
        AuditKind::ApprovalExpired,
        AuditKind::Budget,
        AuditKind::KillSwitch,
        AuditKind::PolicyPublish,
        AuditKind::PolicyRollback,
        AuditKind::CatalogPublish,
        AuditKind::SandboxLifecycle,
        AuditKind::Egress,
    ];

    /// Its snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::ToolCall => "tool_call",
            AuditKind::Decision => "decision",
            AuditKind::Outcome => "outcome",
            AuditKind::ApprovalRequested => "approval_requested",
            AuditKind::ApprovalApproved => "approval_approved",
            AuditKind::ApprovalDenied => "approval_denied",
            AuditKind::ApprovalExpired => "approval_expired",
            AuditKind::Budget => "budget",
            AuditKind::KillSwitch => "kill_switch",
            AuditKind::PolicyPublish => "policy_publish",
            AuditKind::PolicyRollback => "policy_rollback",
            AuditKind::CatalogPublish => "catalog_publish",
            AuditKind::SandboxLifecycle => "sandbox_lifecycle",
            AuditKind::Egress => "egress",
        }
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<AuditKind> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One audit record as stored and exported: the hashed fields, then the chain.
/// `hash` = SHA-256(prev_hash bytes || canonical JSON of the other fields but
/// `prev_hash`); see docs/governance.md for the canonical form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Format version (1).
    pub v: u32,
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When it was appended (RFC 3339, milliseconds, UTC).
    pub time: String,
    /// What it is about.
    pub kind: AuditKind,
    /// Ties the records of one call (or one request) together.
    pub correlation_id: Option<String>,
    /// The caller's trace id (W3C traceparent's trace id), when it sent one.
    pub trace_id: Option<String>,
    /// The tenant acted for.
    pub tenant: String,
    /// The agent (API key name or id) that acted, or `operator:NAME`, or `corral`.
    pub agent: Option<String>,
    /// The task the harness declared.
    pub task_id: Option<String>,
    /// Kind-specific details; arguments and outputs are redacted.
    pub payload: Value,
    /// The previous record's hash (hex; 64 zeros before the first).
    pub prev_hash: String,
    /// This record's hash (hex).
    pub hash: String,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditList {
    /// Records, oldest first.
    pub records: Vec<AuditRecord>,
    /// Next page cursor.
    pub next_cursor: Option<String>,
}

/// What `verify` found wrong with the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditFaultKind {
    /// A record's content (or an indexed column) no longer matches its hash.
    Edited,
    /// Records are missing: seq jumps.
    Deleted,
    /// A record sits at another position than the one it was written at.
    Reordered,
    /// A record's prev_hash is not the previous record's hash.
    BadLink,
    /// A record is not readable JSON of the expected shape.
    Malformed,
}

/// The first fault `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditFault {
    /// The first bad position.
    pub seq: u64,
    /// What kind of fault.
    pub kind: AuditFaultKind,
    /// In words.
    pub message: String,
}

/// `GET /v1/audit/verify` and `corral audit verify --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditVerifyResponse {
    /// True when every record checked out.
    pub ok: bool,
    /// Records read.
    pub records: u64,
    /// The last good record's seq (0 when none).
    pub head_seq: u64,
    /// The last good record's hash (hex): keep it elsewhere to detect a truncated tail
    /// or a rewritten chain later.
    pub head_hash: String,
    /// The first fault, when not ok.
    pub fault: Option<AuditFault>,
    /// How long it took, milliseconds.
    pub elapsed_ms: u64,
}

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for an operator.
    Pending,
    /// Approved, not used yet: the next call with the same arguments uses it.
    Approved,
    /// Denied by an operator.
    Denied,
    /// Not decided before expires_at (a denial).
    Expired,
    /// Approved and consumed by a call (an approval is used once).
    Used,
}

impl ApprovalStatus {
    /// Its snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }

    /// The status named `s`, if any.
    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::Expired,
            ApprovalStatus::Used,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// An approval request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// `apr-` and 24 hex digits.
    pub id: String,
    /// Tenant of the call.
    pub tenant: String,
    /// Agent that called.
    pub agent: String,
    /// Task the call belongs to.
    pub task_id: Option<String>,
    /// Capability called.
    pub capability: String,
    /// Its side-effect class.
    pub side_effect: SideEffect,
    /// The arguments, canonical JSON, sensitive fields redacted.
    pub args: Value,
    /// SHA-256 (hex) of the exact canonical arguments: the approval binds to them.
    pub args_sha256: String,
    /// The call's idempotency key.
    pub idempotency_key: Option<String>,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    /// Status.
    pub status: ApprovalStatus,
    /// When it was requested (RFC 3339).
    pub created_at: String,
    /// When an undecided request becomes a denial (RFC 3339).
    pub expires_at: String,
    /// When an operator decided.
    pub decided_at: Option<String>,
    /// Who decided (API key name or id).
    pub decided_by: Option<String>,
    /// The operator's reason.
    pub reason: Option<String>,
}

/// `GET /v1/approvals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalList {
    /// Requests, oldest first.
    pub approvals: Vec<Approval>,
}

/// `POST /v1/approvals/{id}/approve` and `/deny`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecisionRequest {
    /// Why (recorded in the audit log and shown to the agent).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/calls`: call a capability through the gateway (the same pipeline as MCP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    /// Capability name from the catalog.
    pub capability: String,
    /// Arguments, validated against the capability's input schema.
    #[serde(default)]
    pub args: Value,
    /// The harness's task id (budgets, audit export).
    #[serde(default)]
    pub task_id: Option<String>,
    /// Required for capabilities that are not read_only: a repeat with the same key and
    /// arguments returns the first result without running again.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// An approved request to use (optional: an approved request for the same
    /// capability, arguments and key is found without it).
    #[serde(default)]
    pub approval_id: Option<String>,
    /// Wait up to this many seconds for an operator's decision before answering
    /// pending (capped by the daemon's setting; default 0).
    #[serde(default)]
    pub wait_s: Option<u64>,
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// The target ran; `output` is its result.
    Completed,
    /// An operator must approve first; poll `GET /v1/calls/{approval id}`, then repeat
    /// the call (same arguments and key) once approved.
    PendingApproval,
    /// Approved and not used yet: repeat the call to run it.
    Approved,
    /// Refused; `error` says why.
    Denied,
    /// The same idempotency key is still running; ask again.
    InProgress,
    /// Permitted, but the target failed; `error` says how.
    Failed,
}

/// Why a call did not complete: a short machine-readable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallError {
    /// E.g. `unknown_capability`, `invalid_arguments`, `kill_switch`, `budget_exhausted`,
    /// `policy_denied`, `approval_denied`, `approval_expired`, `approval_mismatch`,
    /// `approval_used`, `idempotency_key_required`, `idempotency_conflict`,
    /// `target_failed`.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// Where in the arguments, for schema violations (a JSON pointer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

/// The answer to a call (`POST /v1/calls`, `GET /v1/calls/{id}`, MCP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallResponse {
    /// The call's id (its audit correlation id), or the approval's id when polled.
    pub call_id: String,
    /// Where it stands.
    pub status: CallStatus,
    /// The target's result (secrets scrubbed), when completed.
    #[serde(default)]
    pub output: Option<Value>,
    /// True when this is the stored result of an earlier call with the same key.
    #[serde(default)]
    pub replayed: bool,
    /// The approval request, when one is involved.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// Why it was denied or failed.
    #[serde(default)]
    pub error: Option<CallError>,
    /// The policies that decided.
    #[serde(default)]
    pub policies: Vec<String>,
}
