//! The HTTP API's wire types (`/v1/...`). Handlers parse these, the core executes them;
//! the OpenAPI document is generated from their JSON Schemas (schemars).

mod daemon;
mod egress;
mod exec;
mod files;
mod govern_audit;
mod govern_policy;
mod keys;
mod sandbox;
mod secret;
mod snapshot;
mod template;

pub use daemon::{HealthResponse, PtyClientMessage, PtyServerMessage, PtySize};
pub use egress::{EgressRecord, EgressRecordList};
pub use exec::{
    ExecEvent, ExecRequest, ExecStream, ProcessInfo, ProcessList, ProcessOutput, ProcessState,
    RunCodeLanguage, RunCodeRequest, SignalRequest, StdinWriteRequest,
};
pub use files::{
    FileEntry, FileKind, FileList, FileWriteResponse, MkdirRequest, RenameRequest, WatchEvent,
    WatchEventKind,
};
pub use govern_audit::{
    Approval, ApprovalDecisionRequest, ApprovalList, ApprovalStatus, AuditFault, AuditFaultKind,
    AuditKind, AuditList, AuditRecord, AuditVerifyResponse, CallError, CallRequest, CallResponse,
    CallStatus,
};
pub use govern_policy::{
    BudgetLimits, BudgetLimitsRequest, BudgetList, Capability, CapabilityList, CapabilityTarget,
    Compensation, DecisionEffect, DecisionRecord, KillSwitch, KillSwitchClearQuery, KillSwitchList,
    KillSwitchRequest, KillSwitchScope, KillSwitchSetResponse, PlanRequest, PlanResponse, PlanStep,
    PlanStepDecision, PolicyChange, PolicyDiff, PolicyList, PolicyPublishRequest, PolicyText,
    PolicyVersion, ShadowDecision, ShadowRequest, SideEffect, TaskUsage, TaskUsageRequest,
    TenantBudget,
};
pub use keys::{
    KeyCreateRequest, KeyCreateResponse, KeyInfo, KeyList, Role, Tenant, TenantCreateRequest,
    TenantList, TenantQuota,
};
pub use sandbox::{
    NetworkMode, NetworkRequest, Resources, ResourcesRequest, Sandbox, SandboxCreateRequest,
    SandboxList, SandboxState, TimeoutRequest,
};
pub use secret::{Secret, SecretList, SecretPutRequest};
pub use snapshot::{Snapshot, SnapshotList};
pub use template::{
    Template, TemplateBuild, TemplateBuildCreateRequest, TemplateBuildEvent, TemplateBuildList,
    TemplateBuildRequest, TemplateBuildSource, TemplateBuildState, TemplateConfig,
    TemplateImportRequest, TemplateLayer, TemplateLayerState, TemplateList,
};

/// The default page size of list endpoints, and the largest accepted.
pub const PAGE_DEFAULT: u32 = 100;
/// The largest page size a list endpoint accepts.
pub const PAGE_MAX: u32 = 1000;
