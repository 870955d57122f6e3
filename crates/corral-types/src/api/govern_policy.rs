//! Governance policy: the capability catalog, Cedar policy bundles, kill switches,
//! budgets and plan review (`/v1/capabilities`, `/v1/policies`, `/v1/kill-switches`,
//! `/v1/budgets`, `/v1/plans`). See docs/governance.md.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What calling a capability can change. Decides idempotency, degrade mode and the
/// default policy's treatment.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SideEffect {
    /// Reads only; safe to repeat.
    ReadOnly,
    /// Writes with a bounded, recoverable effect.
    WriteLimited,
    /// Anything else: money, people, production, credentials.
    Privileged,
}

impl SideEffect {
    /// The snake_case name, as in JSON and Cedar's `context.side_effect`.
    pub fn as_str(self) -> &'static str {
        match self {
            SideEffect::ReadOnly => "read_only",
            SideEffect::WriteLimited => "write_limited",
            SideEffect::Privileged => "privileged",
        }
    }
}

/// How to undo a capability's effect, and who does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Compensation {
    /// The rollback path (a capability, a runbook, a URL).
    pub rollback: String,
    /// Who owns the rollback (a team or person).
    pub owner: String,
}

/// What a capability runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CapabilityTarget {
    /// An HTTP request made by corral. Templates substitute `{{arg}}` with the
    /// (validated) argument `arg`; the secret is injected by corral and never shown to
    /// the agent.
    Http {
        /// HTTP method (GET, POST, PUT, PATCH, DELETE).
        method: String,
        /// URL template (`http://` or `https://`).
        url: String,
        /// Header templates.
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
        /// Body template (sent as is after substitution).
        #[serde(default)]
        body: Option<String>,
        /// Name of a secret in corral's secret store, sent as `Authorization: Bearer`.
        #[serde(default)]
        secret: Option<String>,
    },
    /// A command run in a fresh sandbox from a template, removed afterwards.
    Sandbox {
        /// Template name (`name` or `name:version`).
        template: String,
        /// argv templates (`{{arg}}` substituted into each element, never a shell).
        command: Vec<String>,
    },
}

/// One capability of the catalog: an action an agent may ask corral to perform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    /// Name (lowercase letters, digits, `_`, `.`, `-`; at most 64), as agents see it.
    pub name: String,
    /// What it does, for agents and operators.
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    pub input_schema: serde_json::Value,
    /// Side-effect class.
    pub side_effect: SideEffect,
    /// Category (a Cedar `Category` entity; kill switches may target it).
    pub category: String,
    /// Whether calls must carry an idempotency key. Always true unless read_only.
    #[serde(default)]
    pub idempotency_key_required: bool,
    /// How to undo it; required unless read_only.
    #[serde(default)]
    pub compensation: Option<Compensation>,
    /// What it runs. Absent for corral's builtin sandbox tools.
    #[serde(default)]
    pub target: Option<CapabilityTarget>,
}

/// `GET /v1/capabilities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapabilityList {
    /// Every capability, by name (builtin sandbox tools included, category `sandbox`).
    pub capabilities: Vec<Capability>,
    /// Where the catalog comes from (`file:PATH`, `api`, `builtin`).
    pub source: String,
}

/// A policy bundle version (immutable once published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyVersion {
    /// Version number, 1, 2, ... in publication order.
    pub version: u64,
    /// Policy ids in the bundle (the `@id` annotation, else `policyN`).
    pub policy_ids: Vec<String>,
    /// SHA-256 of the bundle text, hex.
    pub sha256: String,
    /// Who published it (key id), or `corral` for the shipped default.
    pub published_by: String,
    /// A note given at publication.
    #[serde(default)]
    pub note: Option<String>,
    /// When (RFC 3339).
    pub created_at: String,
    /// The bundle's Cedar text (only in `GET /v1/policies/{version}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `POST /v1/policies`: publish a bundle (Cedar text). It is validated strictly
/// against the schema generated from the catalog; an invalid one is refused (400) and
/// nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPublishRequest {
    /// Cedar policies.
    pub text: String,
    /// Make it the active version at once (default true); false stores it only.
    #[serde(default)]
    pub activate: Option<bool>,
    /// A note kept with the version.
    #[serde(default)]
    pub note: Option<String>,
}

/// `GET /v1/policies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyList {
    /// Every version, oldest first (without text).
    pub versions: Vec<PolicyVersion>,
    /// The enforced version.
    pub active: Option<u64>,
    /// The version evaluated in shadow (logged and returned, not enforced).
    pub shadow: Option<u64>,
}

/// `GET /v1/policies/diff?from=A&to=B`: policies by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDiff {
    /// The older version.
    pub from: u64,
    /// The newer version.
    pub to: u64,
    /// Policies only in `to`.
    pub added: Vec<PolicyText>,
    /// Policies only in `from`.
    pub removed: Vec<PolicyText>,
    /// Policies whose text changed.
    pub changed: Vec<PolicyChange>,
}

/// One policy's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    /// Policy id.
    pub id: String,
    /// Its Cedar text.
    pub text: String,
}

/// A policy present in both versions with different text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    /// Policy id.
    pub id: String,
    /// Text in `from`.
    pub before: String,
    /// Text in `to`.
    pub after: String,
}

/// `PUT /v1/policies/shadow`: evaluate this stored version next to the active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// A published version.
    pub version: u64,
}

/// What a kill switch stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KillSwitchScope {
    /// One capability (by name).
    Capability,
    /// Every capability of a category.
    Category,
    /// Everything one agent calls (`TENANT/AGENT`).
    Agent,
    /// Everything in a tenant; its running sandboxes are paused too.
    Tenant,
}

impl KillSwitchScope {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            KillSwitchScope::Capability => "capability",
            KillSwitchScope::Category => "category",
            KillSwitchScope::Agent => "agent",
            KillSwitchScope::Tenant => "tenant",
        }
    }
}

/// An engaged kill switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitch {
    /// What it stops.
    pub scope: KillSwitchScope,
    /// The capability, category, `TENANT/AGENT` or tenant.
    pub target: String,
    /// Why (shown to agents whose calls it stops).
    pub reason: String,
    /// Who engaged it (key id).
    pub set_by: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// `PUT /v1/kill-switches`: engage (or update) one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchRequest {
    /// What it stops.
    pub scope: KillSwitchScope,
    /// The capability, category, `TENANT/AGENT` or tenant.
    pub target: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `DELETE /v1/kill-switches?scope=S&target=T`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchClearQuery {
    /// Its scope.
    pub scope: KillSwitchScope,
    /// Its target.
    pub target: String,
}

/// `PUT /v1/kill-switches` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchSetResponse {
    /// The switch as stored.
    pub kill_switch: KillSwitch,
    /// Sandboxes paused by a tenant switch (ids).
    pub paused_sandboxes: Vec<String>,
}

/// `GET /v1/kill-switches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchList {
    /// Every engaged switch.
    pub kill_switches: Vec<KillSwitch>,
}

/// Budget limits of a tenant (or the default `*` for tenants without their own).
/// An absent limit is no limit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetLimits {
    /// Capability calls per tenant per UTC day.
    #[serde(default)]
    pub tenant_calls_per_day: Option<u64>,
    /// Capability calls per task.
    #[serde(default)]
    pub task_calls: Option<u64>,
    /// Sandbox CPU-seconds per task.
    #[serde(default)]
    pub task_cpu_seconds: Option<u64>,
    /// Tokens per task (reported by the harness).
    #[serde(default)]
    pub task_tokens: Option<u64>,
    /// Burn percentage of the tenant's daily calls past which it degrades to
    /// read_only capabilities (default 80).
    #[serde(default)]
    pub degrade_at_percent: Option<u8>,
}

/// `PUT /v1/budgets/{tenant}` (admin; `*` sets the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetLimitsRequest {
    /// The limits (replacing the previous ones).
    pub limits: BudgetLimits,
}

/// A tenant's budget today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBudget {
    /// Tenant.
    pub tenant: String,
    /// Its effective limits.
    pub limits: BudgetLimits,
    /// The UTC day counted (YYYY-MM-DD).
    pub day: String,
    /// Calls made today.
    pub calls_today: u64,
    /// Whether it is degraded to read_only capabilities.
    pub degraded: bool,
    /// Whether its daily calls are exhausted.
    pub exhausted: bool,
}

/// `GET /v1/budgets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetList {
    /// The default limits (`*`).
    pub default_limits: BudgetLimits,
    /// Tenants the caller can see that have limits or usage.
    pub tenants: Vec<TenantBudget>,
}

/// A task's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskUsage {
    /// Tenant.
    pub tenant: String,
    /// Task id.
    pub task_id: String,
    /// Capability calls.
    pub calls: u64,
    /// Sandbox CPU-milliseconds.
    pub cpu_ms: u64,
    /// Tokens reported.
    pub tokens: u64,
}

/// `POST /v1/tasks/{task}/usage`: what the harness consumed (added to the task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskUsageRequest {
    /// Tokens consumed since the last report.
    #[serde(default)]
    pub tokens: u64,
}

/// A decision's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionEffect {
    /// Go ahead.
    Permit,
    /// Refused.
    Forbid,
    /// Permitted once a human approves.
    NeedsApproval,
}

/// A policy decision, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// The outcome.
    pub effect: DecisionEffect,
    /// Which stage decided: `catalog`, `arguments`, `kill_switch`, `budget`,
    /// `policy`, `error`.
    pub stage: String,
    /// Human-readable reasons.
    pub reasons: Vec<String>,
    /// Ids of the policies that decided (Cedar's determining policies).
    pub policies: Vec<String>,
    /// The enforced policy version.
    #[serde(default)]
    pub policy_version: Option<u64>,
    /// The shadow version's decision, when one is set (not enforced).
    #[serde(default)]
    pub shadow: Option<ShadowDecision>,
}

/// What the shadow bundle would have decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowDecision {
    /// Shadow version.
    pub version: u64,
    /// Its outcome.
    pub effect: DecisionEffect,
    /// Its determining policies.
    pub policies: Vec<String>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// Capability (or builtin tool) name.
    pub tool: String,
    /// Its arguments.
    #[serde(default)]
    pub args: serde_json::Value,
    /// The side effect the agent expects; a mismatch with the catalog is reported.
    #[serde(default)]
    pub expected_side_effect: Option<SideEffect>,
}

/// `POST /v1/plans`: a plan reviewed step by step; nothing is executed. Each step is
/// checked again when it is called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The steps, in order (at most 100).
    pub steps: Vec<PlanStep>,
    /// Task the plan belongs to.
    #[serde(default)]
    pub task_id: Option<String>,
}

/// One step's review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanStepDecision {
    /// Step index (0-based).
    pub index: u32,
    /// The step's tool.
    pub tool: String,
    /// The catalog's side effect, when the tool exists.
    #[serde(default)]
    pub side_effect: Option<SideEffect>,
    /// The decision.
    pub decision: DecisionRecord,
}

/// `POST /v1/plans` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanResponse {
    /// One entry per step.
    pub steps: Vec<PlanStepDecision>,
    /// Whether every step would be permitted without approval.
    pub all_permitted: bool,
}
