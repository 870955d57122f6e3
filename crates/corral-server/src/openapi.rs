//! The OpenAPI 3.1 document, generated from a table of the routes and the JSON Schemas
//! of the corral-types wire types. Served at `GET /v1/openapi.json` and checked in at
//! docs/openapi.json (a test fails when that copy is stale).

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use corral_types::api::{
    Approval, ApprovalDecisionRequest, ApprovalList, AuditList, AuditRecord, AuditVerifyResponse,
    BudgetLimitsRequest, BudgetList, CallRequest, CallResponse, Capability, CapabilityList,
    EgressRecordList, ExecEvent, ExecRequest, FileEntry, FileList, FileWriteResponse,
    HealthResponse, KeyCreateRequest, KeyCreateResponse, KeyList, KillSwitchList,
    KillSwitchRequest, KillSwitchSetResponse, MkdirRequest, PlanRequest, PlanResponse, PolicyDiff,
    PolicyList, PolicyPublishRequest, PolicyVersion, ProcessInfo, ProcessList, ProcessOutput,
    PtyClientMessage, PtyServerMessage, RenameRequest, RunCodeRequest, Sandbox,
    SandboxCreateRequest, SandboxList, ShadowRequest, SignalRequest, Snapshot, SnapshotList,
    StdinWriteRequest, TaskUsage, TaskUsageRequest, Template, TemplateBuild,
    TemplateBuildCreateRequest, TemplateBuildEvent, TemplateBuildList, TemplateBuildRequest,
    TemplateImportRequest, TemplateList, Tenant, TenantCreateRequest, TenantList, TimeoutRequest,
    WatchEvent,
};
use corral_types::{ErrorBody, RunResult};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn s<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// What a request carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReqBody {
    None,
    Json(SchemaFn),
    Octets,
}

/// What a response carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resp {
    Json(SchemaFn),
    Empty,
    Octets,
    Ndjson(SchemaFn),
    Text,
    /// `101 Switching Protocols`: a WebSocket; client frames and the server's last one.
    WebSocket(SchemaFn, SchemaFn),
    /// Whatever a service inside the sandbox answers (exposed ports).
    Proxied,
    /// `101 Switching Protocols` to a raw byte stream (the port tunnel).
    RawUpgrade,
}

/// One query parameter: name, description, required.
pub(crate) type QueryParam = (&'static str, &'static str, bool);

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteDoc {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) op: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) auth: bool,
    pub(crate) query: &'static [QueryParam],
    pub(crate) body: ReqBody,
    pub(crate) ok: &'static [(u16, Resp)],
}

const PATH_Q: &[QueryParam] = &[("path", "Absolute path inside the sandbox.", true)];
const RECURSIVE_Q: &[QueryParam] = &[
    ("path", "Absolute path inside the sandbox.", true),
    ("recursive", "true: also below subdirectories.", false),
];
const PAGE_Q: &[QueryParam] = &[
    ("cursor", "next_cursor of the previous page.", false),
    ("limit", "Page size, 1-1000 (default 100).", false),
];

macro_rules! r {
    ($m:literal, $p:literal, $op:literal, $sum:expr, auth: $a:expr, query: $q:expr, body: $b:expr, ok: [$(($st:literal, $r:expr)),*]) => {
        RouteDoc { method: $m, path: $p, op: $op, summary: $sum, auth: $a, query: $q, body: $b, ok: &[$(($st, $r)),*] }
    };
}

const PROXY_SUMMARY: &str = "Forward the request to the service listening on 127.0.0.1:`port` (or [::1]) inside the sandbox, as `/{path}?query` (`path` may contain slashes; any method, streamed bodies both ways, WebSocket and other upgrades spliced). Headers pass except hop-by-hop ones and the caller's Authorization; Host becomes 127.0.0.1:`port`, with X-Forwarded-Host and X-Forwarded-Prefix added. The answer is the service's own (any status). Works in every network mode. Errors (JSON): 400 bad port, 404 no such sandbox, 409 paused or stopping, 502 nothing listening or no answer.";

/// Every route the server answers (a test checks each is routed).
pub(crate) const ROUTES: &[RouteDoc] = &[
    r!("get", "/v1/health", "health", "Liveness; no key needed.", auth: false, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<HealthResponse>))]),
    r!("get", "/v1/openapi.json", "openapi", "This document; no key needed.", auth: false, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<Value>))]),
    r!("post", "/v1/tenants", "createTenant", "Create a tenant (admin).", auth: true, query: &[], body: ReqBody::Json(s::<TenantCreateRequest>), ok: [(201, Resp::Json(s::<Tenant>))]),
    r!("get", "/v1/tenants", "listTenants", "List tenants (admin).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<TenantList>))]),
    r!("post", "/v1/keys", "createKey", "Create an API key (admin); the secret is shown only here.", auth: true, query: &[], body: ReqBody::Json(s::<KeyCreateRequest>), ok: [(201, Resp::Json(s::<KeyCreateResponse>))]),
    r!("get", "/v1/keys", "listKeys", "List API keys, never their secrets (admin).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<KeyList>))]),
    r!("delete", "/v1/keys/{id}", "revokeKey", "Revoke a key, effective at once (admin).", auth: true, query: &[], body: ReqBody::None, ok: [(204, Resp::Empty)]),
    r!("post", "/v1/sandboxes", "createSandbox", "Create a sandbox.", auth: true, query: &[], body: ReqBody::Json(s::<SandboxCreateRequest>), ok: [(201, Resp::Json(s::<Sandbox>))]),
    r!("get", "/v1/sandboxes", "listSandboxes", "List the tenant's sandboxes, oldest first.", auth: true,
        query: &[("state", "Only this state (default: all but stopped).", false), ("metadata.KEY", "Only sandboxes labelled KEY=VALUE; repeatable with other keys.", false), ("cursor", "next_cursor of the previous page.", false), ("limit", "Page size, 1-1000 (default 100).", false)],
        body: ReqBody::None, ok: [(200, Resp::Json(s::<SandboxList>))]),
    r!("get", "/v1/sandboxes/{id}", "getSandbox", "One sandbox.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<Sandbox>))]),
    r!("delete", "/v1/sandboxes/{id}", "deleteSandbox", "Kill and remove a sandbox.", auth: true, query: &[], body: ReqBody::None, ok: [(204, Resp::Empty)]),
    r!("post", "/v1/sandboxes/{id}/timeout", "setSandboxTimeout", "Set the time to live from now.", auth: true, query: &[], body: ReqBody::Json(s::<TimeoutRequest>), ok: [(200, Resp::Json(s::<Sandbox>))]),
    r!("post", "/v1/sandboxes/{id}/pause", "pauseSandbox", "Freeze every process of the sandbox.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<Sandbox>))]),
    r!("post", "/v1/sandboxes/{id}/resume", "resumeSandbox", "Thaw a paused sandbox.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<Sandbox>))]),
    r!("post", "/v1/sandboxes/{id}/exec", "exec", "Run a command: its result; with Accept: application/x-ndjson its output as it happens; with background, a process (201).", auth: true, query: &[], body: ReqBody::Json(s::<ExecRequest>),
        ok: [(200, Resp::Json(s::<RunResult>)), (201, Resp::Json(s::<ProcessInfo>))]),
    r!("post", "/v1/sandboxes/{id}/run_code", "runCode", "Run code in python, javascript or bash; same results as exec.", auth: true, query: &[], body: ReqBody::Json(s::<RunCodeRequest>),
        ok: [(200, Resp::Json(s::<RunResult>))]),
    r!("get", "/v1/sandboxes/{id}/egress", "listEgress", "The sandbox's recent egress records (mode allow): every attempt, allowed or denied. `limit` (default 1000, at most 4096).", auth: true, query: &[("limit", "Most records, 1-4096 (default 1000).", false)], body: ReqBody::None, ok: [(200, Resp::Json(s::<EgressRecordList>))]),
    r!("get", "/v1/sandboxes/{id}/processes", "listProcesses", "Background processes.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<ProcessList>))]),
    r!("get", "/v1/sandboxes/{id}/processes/{pid}", "getProcess", "One background process.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<ProcessInfo>))]),
    r!("get", "/v1/sandboxes/{id}/processes/{pid}/output", "getProcessOutput", "What a background process wrote (last 1 MiB per stream).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<ProcessOutput>))]),
    r!("post", "/v1/sandboxes/{id}/processes/{pid}/stdin", "writeProcessStdin", "Write to a background process's stdin.", auth: true, query: &[], body: ReqBody::Json(s::<StdinWriteRequest>), ok: [(204, Resp::Empty)]),
    r!("post", "/v1/sandboxes/{id}/processes/{pid}/signal", "signalProcess", "Signal a background process's group.", auth: true, query: &[], body: ReqBody::Json(s::<SignalRequest>), ok: [(204, Resp::Empty)]),
    r!("get", "/v1/sandboxes/{id}/pty", "pty", "Interactive terminal over WebSocket: binary frames both ways, text frames PtyClientMessage in and PtyServerMessage out.", auth: true,
        query: &[("cmd", "Command, split on whitespace (default a shell).", false), ("rows", "Rows (default 24).", false), ("cols", "Columns (default 80).", false)],
        body: ReqBody::None, ok: [(101, Resp::WebSocket(s::<PtyClientMessage>, s::<PtyServerMessage>))]),
    r!("put", "/v1/sandboxes/{id}/files", "writeFile", "Write a file from the raw body (streamed, no size limit but the sandbox's disk).", auth: true, query: PATH_Q, body: ReqBody::Octets, ok: [(200, Resp::Json(s::<FileWriteResponse>))]),
    r!("get", "/v1/sandboxes/{id}/files", "readFile", "Read a file as raw bytes (streamed).", auth: true, query: PATH_Q, body: ReqBody::None, ok: [(200, Resp::Octets)]),
    r!("delete", "/v1/sandboxes/{id}/files", "removeFile", "Remove a file or directory.", auth: true, query: RECURSIVE_Q, body: ReqBody::None, ok: [(204, Resp::Empty)]),
    r!("get", "/v1/sandboxes/{id}/files/list", "listFiles", "List a directory.", auth: true, query: PATH_Q, body: ReqBody::None, ok: [(200, Resp::Json(s::<FileList>))]),
    r!("get", "/v1/sandboxes/{id}/files/stat", "statFile", "Stat a path.", auth: true, query: PATH_Q, body: ReqBody::None, ok: [(200, Resp::Json(s::<FileEntry>))]),
    r!("post", "/v1/sandboxes/{id}/files/mkdir", "mkdir", "Create a directory.", auth: true, query: &[], body: ReqBody::Json(s::<MkdirRequest>), ok: [(204, Resp::Empty)]),
    r!("post", "/v1/sandboxes/{id}/files/rename", "renameFile", "Rename a path.", auth: true, query: &[], body: ReqBody::Json(s::<RenameRequest>), ok: [(204, Resp::Empty)]),
    r!("get", "/v1/sandboxes/{id}/files/watch", "watchFiles", "Change events under a directory, as JSON lines.", auth: true, query: RECURSIVE_Q, body: ReqBody::None, ok: [(200, Resp::Ndjson(s::<WatchEvent>))]),
    r!("post", "/v1/sandboxes/{id}/snapshot", "snapshotSandbox", "Snapshot the writable layer.", auth: true, query: &[], body: ReqBody::None, ok: [(201, Resp::Json(s::<Snapshot>))]),
    r!("get", "/v1/snapshots", "listSnapshots", "The tenant's snapshots.", auth: true, query: PAGE_Q, body: ReqBody::None, ok: [(200, Resp::Json(s::<SnapshotList>))]),
    r!("get", "/v1/snapshots/{id}", "getSnapshot", "One snapshot.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<Snapshot>))]),
    r!("delete", "/v1/snapshots/{id}", "deleteSnapshot", "Delete a snapshot.", auth: true, query: &[], body: ReqBody::None, ok: [(204, Resp::Empty)]),
    r!("post", "/v1/templates", "importTemplate", "Import a template from a directory or OCI image on the daemon's host (admin only): an import job the request waits for (follow one's progress with POST /v1/templates/builds and an import source).", auth: true, query: &[], body: ReqBody::Json(s::<TemplateImportRequest>), ok: [(201, Resp::Json(s::<Template>))]),
    r!("post", "/v1/templates/build", "buildTemplate", "Build a template from a recipe (a Dockerfile subset; RUN steps offline) whose context is a directory on the daemon's host (admin only); answers when the build is done.", auth: true, query: &[], body: ReqBody::Json(s::<TemplateBuildRequest>), ok: [(201, Resp::Json(s::<Template>))]),
    r!("post", "/v1/templates/builds", "startTemplateBuild", "Start a template build job (admin only): a recipe (context on the daemon's host), a Debian base (debootstrap), a shipped recipe or an import (a directory or OCI image on the daemon's host; layer and bytes progress events); answers 202 with the job at once.", auth: true, query: &[], body: ReqBody::Json(s::<TemplateBuildCreateRequest>), ok: [(202, Resp::Json(s::<TemplateBuild>))]),
    r!("get", "/v1/templates/builds", "listTemplateBuilds", "Build jobs, newest first: running ones and the latest finished ones (non-admin keys: shipped recipes' builds only).", auth: true, query: PAGE_Q, body: ReqBody::None, ok: [(200, Resp::Json(s::<TemplateBuildList>))]),
    r!("get", "/v1/templates/builds/{id}", "getTemplateBuild", "One build job (non-admin keys: a shipped recipe's build only).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<TemplateBuild>))]),
    r!("delete", "/v1/templates/builds/{id}", "cancelTemplateBuild", "Cancel a build job (admin only): its builder is ended, nothing of it is registered; answers the job once it has ended.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<TemplateBuild>))]),
    r!("get", "/v1/templates/builds/{id}/events", "templateBuildEvents", "A build job's progress as JSON lines: every kept event from the start, then each as it happens; ends after done, failed or cancelled.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Ndjson(s::<TemplateBuildEvent>))]),
    r!("get", "/v1/templates", "listTemplates", "Every template, `host` first.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<TemplateList>))]),
    r!("get", "/v1/templates/{name}", "getTemplate", "One template: `name` (newest version) or `name:version`.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<Template>))]),
    r!("delete", "/v1/templates/{name}", "deleteTemplate", "Remove `name` (every version) or `name:version`; refused while a sandbox or snapshot uses it (admin only).", auth: true, query: &[], body: ReqBody::None, ok: [(204, Resp::Empty)]),
    r!("get", "/v1/capabilities", "listCapabilities", "The capability catalog (builtin sandbox tools included). Admin and operator keys see every entry; an agent key sees what it could ever be permitted (what MCP tools/list shows it).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<CapabilityList>))]),
    r!("get", "/v1/capabilities/{name}", "getCapability", "One capability (agent keys: only one they could be permitted).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<Capability>))]),
    r!("put", "/v1/capabilities/{name}", "putCapability", "Add or replace a capability (admin): validated, stored, applied at once; refused (400) when invalid or when the active policy bundle would no longer validate.", auth: true, query: &[], body: ReqBody::Json(s::<Capability>), ok: [(200, Resp::Json(s::<Capability>))]),
    r!("post", "/v1/policies", "publishPolicy", "Publish a Cedar bundle as the next immutable version (admin), active unless `activate` is false; validated strictly against the schema generated from the catalog (400 invalid_policy with Cedar's messages; nothing changes).", auth: true, query: &[], body: ReqBody::Json(s::<PolicyPublishRequest>), ok: [(201, Resp::Json(s::<PolicyVersion>))]),
    r!("get", "/v1/policies", "listPolicies", "Every policy version, the active and the shadow one (operator or admin).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<PolicyList>))]),
    r!("get", "/v1/policies/diff", "diffPolicies", "Policies added, removed and changed by id between two versions (operator or admin).", auth: true, query: &[("from", "The older version.", true), ("to", "The newer version.", true)], body: ReqBody::None, ok: [(200, Resp::Json(s::<PolicyDiff>))]),
    r!("post", "/v1/policies/rollback", "rollbackPolicy", "One step back: the previously active version becomes active again (admin); 409 when there is none.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<PolicyVersion>))]),
    r!("put", "/v1/policies/shadow", "setShadowPolicy", "Evaluate a stored version next to the active one on every call; its decision is reported, never enforced (admin).", auth: true, query: &[], body: ReqBody::Json(s::<ShadowRequest>), ok: [(200, Resp::Json(s::<PolicyList>))]),
    r!("delete", "/v1/policies/shadow", "clearShadowPolicy", "Stop shadow evaluation (admin).", auth: true, query: &[], body: ReqBody::None, ok: [(204, Resp::Empty)]),
    r!("get", "/v1/policies/{version}", "getPolicy", "One version with its Cedar text (operator or admin).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<PolicyVersion>))]),
    r!("post", "/v1/policies/{version}/activate", "activatePolicy", "Make a stored version active (admin); it must validate against the current catalog.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<PolicyVersion>))]),
    r!("get", "/v1/kill-switches", "listKillSwitches", "Engaged kill switches (operator or admin).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<KillSwitchList>))]),
    r!("put", "/v1/kill-switches", "setKillSwitch", "Stop a capability, category, agent (TENANT/AGENT) or tenant from the next call on; a tenant switch also pauses the tenant's running sandboxes. Operators: their own tenant and agents; admins: anything.", auth: true, query: &[], body: ReqBody::Json(s::<KillSwitchRequest>), ok: [(200, Resp::Json(s::<KillSwitchSetResponse>))]),
    r!("delete", "/v1/kill-switches", "clearKillSwitch", "Clear a kill switch (paused sandboxes stay paused).", auth: true, query: &[("scope", "capability, category, agent or tenant.", true), ("target", "The switch's target.", true)], body: ReqBody::None, ok: [(204, Resp::Empty)]),
    r!("get", "/v1/budgets", "listBudgets", "Budget limits and today's usage (admin: every tenant with limits or usage; operator: its own).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<BudgetList>))]),
    r!("put", "/v1/budgets/{tenant}", "putBudget", "Set a tenant's budget limits (admin); `*` sets the default.", auth: true, query: &[], body: ReqBody::Json(s::<BudgetLimitsRequest>), ok: [(200, Resp::Json(s::<BudgetList>))]),
    r!("post", "/v1/tasks/{task}/usage", "reportTaskUsage", "Add tokens consumed by a task of the caller's tenant (reported by the agent's harness).", auth: true, query: &[], body: ReqBody::Json(s::<TaskUsageRequest>), ok: [(200, Resp::Json(s::<TaskUsage>))]),
    r!("post", "/v1/plans", "reviewPlan", "Decide each step of a plan for the caller as if called now (permit, forbid, needs_approval; reasons, deciding policies); nothing is executed or counted.", auth: true, query: &[], body: ReqBody::Json(s::<PlanRequest>), ok: [(200, Resp::Json(s::<PlanResponse>))]),
    r!("get", "/v1/sandboxes/{id}/ports/{port}/{path}", "proxyPortGet", PROXY_SUMMARY, auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Proxied)]),
    r!("post", "/v1/sandboxes/{id}/ports/{port}/{path}", "proxyPortPost", PROXY_SUMMARY, auth: true, query: &[], body: ReqBody::Octets, ok: [(200, Resp::Proxied)]),
    r!("put", "/v1/sandboxes/{id}/ports/{port}/{path}", "proxyPortPut", PROXY_SUMMARY, auth: true, query: &[], body: ReqBody::Octets, ok: [(200, Resp::Proxied)]),
    r!("patch", "/v1/sandboxes/{id}/ports/{port}/{path}", "proxyPortPatch", PROXY_SUMMARY, auth: true, query: &[], body: ReqBody::Octets, ok: [(200, Resp::Proxied)]),
    r!("delete", "/v1/sandboxes/{id}/ports/{port}/{path}", "proxyPortDelete", PROXY_SUMMARY, auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Proxied)]),
    r!("get", "/v1/sandboxes/{id}/ports/{port}/", "proxyPortRoot", "The root path `/` of the service on `port` inside the sandbox; every method is forwarded, as for `.../ports/{port}/{path}`.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Proxied)]),
    r!("get", "/v1/sandboxes/{id}/tunnel/{port}", "tunnelPort", "A raw TCP stream to 127.0.0.1:`port` inside the sandbox (what `corral sandbox port-forward` uses): send `Connection: Upgrade` and `Upgrade: tcp`; after the 101 the connection carries the service's bytes both ways. Errors (JSON) come before the upgrade: 400 bad port or no upgrade asked, 404 no such sandbox, 409 paused or stopping, 502 nothing listening.", auth: true, query: &[], body: ReqBody::None, ok: [(101, Resp::RawUpgrade)]),
    r!("put", "/v1/secrets/{name}", "putSecret", "Store or replace a secret of the caller's tenant: its value, the hosts it may go to and the header it is applied in (operator or admin; 201 when new, 200 when replaced). No route ever returns a value (docs/secrets.md).", auth: true, query: &[], body: ReqBody::Json(s::<corral_types::api::SecretPutRequest>), ok: [(201, Resp::Json(s::<corral_types::api::Secret>)), (200, Resp::Json(s::<corral_types::api::Secret>))]),
    r!("get", "/v1/secrets", "listSecrets", "The tenant's secrets: metadata and placeholders, never values.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<corral_types::api::SecretList>))]),
    r!("get", "/v1/secrets/{name}", "getSecret", "One secret's metadata (never its value).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<corral_types::api::Secret>))]),
    r!("delete", "/v1/secrets/{name}", "deleteSecret", "Remove a secret (operator or admin); sandboxes holding its placeholder can no longer use it.", auth: true, query: &[], body: ReqBody::None, ok: [(204, Resp::Empty)]),
    r!("post", "/v1/calls", "callCapability", "Call a capability through the governance pipeline (schema, kill switch, budget, policy, approval, idempotency, audit). 200 completed or failed (the target's answer), 202 pending approval / approved / in progress, 403 denied; the body is a CallResponse in every case.", auth: true, query: &[], body: ReqBody::Json(s::<CallRequest>),
        ok: [(200, Resp::Json(s::<CallResponse>)), (202, Resp::Json(s::<CallResponse>)), (403, Resp::Json(s::<CallResponse>))]),
    r!("get", "/v1/calls/{id}", "getCall", "Where a pending call stands, by the approval id its answer gave; once the approved call ran, its stored result.", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<CallResponse>))]),
    r!("get", "/v1/approvals", "listApprovals", "Approval requests of the tenant (operator; admin: every tenant), oldest first.", auth: true,
        query: &[("status", "Only this status: pending, approved, denied, expired, used.", false), ("limit", "At most this many, 1-1000 (default 100).", false)],
        body: ReqBody::None, ok: [(200, Resp::Json(s::<ApprovalList>))]),
    r!("get", "/v1/approvals/{id}", "getApproval", "One approval request (operator, admin).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<Approval>))]),
    r!("post", "/v1/approvals/{id}/approve", "approve", "Approve a pending request (operator, admin); the agent's next identical call runs once. Body optional.", auth: true, query: &[], body: ReqBody::Json(s::<ApprovalDecisionRequest>), ok: [(200, Resp::Json(s::<Approval>))]),
    r!("post", "/v1/approvals/{id}/deny", "deny", "Deny a pending request (operator, admin). Body optional.", auth: true, query: &[], body: ReqBody::Json(s::<ApprovalDecisionRequest>), ok: [(200, Resp::Json(s::<Approval>))]),
    r!("get", "/v1/audit", "listAudit", "Audit records, oldest first (operator: its tenant; admin: any).", auth: true,
        query: &[("task", "Only this task id.", false), ("tenant", "Only this tenant (admin).", false), ("since", "Only records at or after this RFC 3339 time (YYYY-MM-DDTHH:MM:SS.mmmZ).", false), ("cursor", "next_cursor of the previous page.", false), ("limit", "Page size, 1-1000 (default 100).", false)],
        body: ReqBody::None, ok: [(200, Resp::Json(s::<AuditList>))]),
    r!("get", "/v1/audit/export", "exportAudit", "One task's whole trail (calls, arguments, decisions, outcomes) as JSON lines, in order (operator, admin).", auth: true,
        query: &[("task", "The task id.", true)], body: ReqBody::None, ok: [(200, Resp::Ndjson(s::<AuditRecord>))]),
    r!("get", "/v1/audit/verify", "verifyAudit", "Recompute the whole hash chain; the first bad record and why (admin).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Json(s::<AuditVerifyResponse>))]),
    r!("get", "/metrics", "metrics", "Prometheus metrics (any valid key).", auth: true, query: &[], body: ReqBody::None, ok: [(200, Resp::Text)]),
];

/// The document, as a JSON value.
pub(crate) fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut g = settings.into_generator();
    let error_ref = s::<ErrorBody>(&mut g);
    let exec_event = s::<ExecEvent>(&mut g);
    let mut paths = Map::new();
    for route in ROUTES {
        let op = operation(route, &mut g, &error_ref, &exec_event);
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(route.method.to_string(), op);
        }
    }
    let schemas = g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "corral",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "corral's sandbox daemon (`corral serve`). Every route but /v1/health and /v1/openapi.json needs `Authorization: Bearer KEY`. Errors are `{\"error\": {\"code\", \"message\"}}`.",
        },
        "servers": [{"url": "http://127.0.0.1:7070"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

fn operation(
    route: &RouteDoc,
    g: &mut SchemaGenerator,
    error_ref: &Schema,
    exec_event: &Schema,
) -> Value {
    let mut params = Vec::new();
    for seg in route.path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            params.push(
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
    }
    for (name, desc, required) in route.query {
        params.push(json!({"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": "string"}}));
    }
    let mut op = json!({"operationId": route.op, "summary": route.summary});
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    match route.body {
        ReqBody::None => {}
        ReqBody::Json(f) => {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": f(g)}}});
        }
        ReqBody::Octets => {
            op["requestBody"] = json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}});
        }
    }
    let mut responses = Map::new();
    for (status, resp) in route.ok {
        let content = match resp {
            Resp::Json(f) => {
                let mut c = json!({"application/json": {"schema": f(g)}});
                if (route.op == "exec" || route.op == "runCode") && *status == 200 {
                    c["application/x-ndjson"] = json!({"schema": exec_event});
                }
                Some(c)
            }
            Resp::Empty => None,
            Resp::Octets => Some(
                json!({"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}),
            ),
            Resp::Ndjson(f) => Some(json!({"application/x-ndjson": {"schema": f(g)}})),
            Resp::Text => Some(json!({"text/plain": {"schema": {"type": "string"}}})),
            Resp::Proxied => Some(json!({"*/*": {"schema": {}}})),
            Resp::RawUpgrade => None,
            Resp::WebSocket(client, server) => {
                let (c, sv) = (client(g), server(g));
                Some(
                    json!({"application/json": {"schema": {"description": "Text frames: the client's and the server's last.", "oneOf": [c, sv]}}}),
                )
            }
        };
        let mut r = json!({"description": match resp {
            Resp::Proxied => "The service's own answer: any status, headers and body.",
            Resp::RawUpgrade => "Switching to a raw TCP stream (Upgrade: tcp).",
            _ => status_text(*status),
        }});
        if let Some(c) = content {
            r["content"] = c;
        }
        responses.insert(status.to_string(), r);
    }
    responses.insert(
        "default".into(),
        json!({"description": "An error (4xx or 5xx).", "content": {"application/json": {"schema": error_ref}}}),
    );
    op["responses"] = Value::Object(responses);
    if !route.auth {
        op["security"] = json!([]);
    }
    op
}

fn status_text(status: u16) -> &'static str {
    match status {
        101 => "Switching to the WebSocket protocol.",
        200 => "OK.",
        201 => "Created.",
        204 => "Done; no body.",
        _ => "See the description.",
    }
}

/// The document as pretty JSON with a final newline (the checked-in form).
pub(crate) fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

/// `GET /v1/openapi.json`.
pub(crate) async fn serve_document() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let text = DOC.get_or_init(document_text).clone();
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_is_checked_in_and_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = document_text();
        if std::env::var_os("CORRAL_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is stale: regenerate it with\n  CORRAL_UPDATE_OPENAPI=1 cargo test -p corral-server openapi\nand commit the result"
        );
    }

    #[test]
    fn every_ref_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap().clone();
        let text = serde_json::to_string(&doc).unwrap();
        for part in text.split("\"$ref\":\"").skip(1) {
            let r = part.split('"').next().unwrap();
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "{r}");
        }
        assert!(schemas.contains_key("Sandbox") && schemas.contains_key("ErrorBody"));
    }
}
