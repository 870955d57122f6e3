//! [`PolicyCore`]: the policy half of governance behind one handle — the catalog (file
//! with hot reload, and published entries), Cedar bundles (versions, active, shadow,
//! rollback), kill switches, budgets, decisions, visibility and plan review.
//!
//! Everything security-relevant fails closed: an unreadable store, an active bundle
//! that no longer validates against the catalog, or an evaluation error denies, with
//! the reason in the decision.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_types::api::{
    Capability, DecisionEffect, DecisionRecord, KillSwitch, KillSwitchScope, PolicyVersion,
    ShadowDecision, SideEffect,
};
use serde_json::{json, Value};

use crate::budget::{BudgetError, Budgets};
use crate::catalog::{ArgsRejection, Catalog, CatalogEntry, CatalogError};
use crate::killswitch::{KillSwitchError, KillSwitches};
use crate::policy::{CompiledBundle, Engine, PolicyError, PolicyInput};
use crate::store::{Store, StoreError};

/// The shipped default bundle (version 1 of a fresh store).
pub const DEFAULT_POLICY: &str = include_str!("../../../resources/govern/default-policy.cedar");

/// How often the catalog file is checked for changes.
pub const CATALOG_POLL: Duration = Duration::from_secs(1);

/// Where the policy half keeps and finds things.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// The catalog file (default DATA_DIR/capabilities.toml; absent is an empty
    /// catalog).
    pub catalog_path: Option<PathBuf>,
}

/// Failures of the policy half.
#[derive(Debug, thiserror::Error)]
pub enum PolicyCoreError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A catalog problem.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A policy problem.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A kill switch problem.
    #[error(transparent)]
    KillSwitch(#[from] KillSwitchError),
    /// A budget problem.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// No such policy version.
    #[error("policy version {0} does not exist; `corral policy ls` lists them")]
    NoVersion(u64),
    /// Rollback with nothing before.
    #[error("there is no earlier active version to roll back to")]
    NoRollback,
    /// A catalog change would break the active or shadow bundle.
    #[error("this catalog change would make policy version {version} invalid: {message}; publish a bundle that fits first")]
    BreaksPolicy {
        /// The bundle it breaks.
        version: u64,
        /// Cedar's message.
        message: String,
    },
    /// The catalog file cannot be read.
    #[error("cannot read the catalog {path}: {source}")]
    CatalogFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A plan too long.
    #[error("a plan has at most {0} steps")]
    PlanTooLong(usize),
    /// The audit record of a change could not be written (the change stands).
    #[error("the change was made but its audit record failed: {0}")]
    Audit(String),
}

/// What the policy half reports for the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyEvent {
    /// `kill_switch`, `policy_publish`, `policy_rollback`, `catalog_publish`, `budget`.
    pub kind: &'static str,
    /// The tenant concerned (`*` for daemon-wide changes).
    pub tenant: String,
    /// Who did it (key id or `corral`).
    pub actor: String,
    /// Details.
    pub payload: Value,
}

/// Receives [`PolicyEvent`]s (the audit log). An error is returned to the caller of
/// the change.
pub trait PolicyAuditHook: Send + Sync + std::fmt::Debug {
    /// Records one event.
    fn record(&self, event: PolicyEvent) -> Result<(), String>;
}

/// A call to decide.
#[derive(Debug, Clone, Copy)]
pub struct CallCheck<'a> {
    /// Tenant of the caller.
    pub tenant: &'a str,
    /// Agent (the key's name, else its id).
    pub agent: &'a str,
    /// Capability or builtin tool name.
    pub capability: &'a str,
    /// Arguments (validated here first).
    pub args: &'a Value,
    /// Task id.
    pub task_id: Option<&'a str>,
}

/// A decision and what it was made on.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The decision record (the audit keeps it).
    pub decision: DecisionRecord,
    /// The catalog entry, when the capability exists.
    pub entry: Option<Arc<CatalogEntry>>,
    /// The argument rejection, when the arguments did not validate.
    pub args_error: Option<ArgsRejection>,
}

#[derive(Debug)]
struct Snapshot {
    catalog: Arc<Catalog>,
    engine: Arc<Engine>,
    active: Option<Arc<CompiledBundle>>,
    shadow: Option<Arc<CompiledBundle>>,
    /// Why there is no usable active bundle (every call is denied with it).
    broken: Option<String>,
}

#[derive(Debug, Default)]
struct FileState {
    sig: Option<(SystemTime, [u8; 32])>,
    caps: Vec<Capability>,
    last_error: Option<String>,
}

/// The policy half of governance. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct PolicyCore {
    pub(crate) store: Store,
    snap: RwLock<Arc<Snapshot>>,
    pub(crate) kills: KillSwitches,
    pub(crate) budgets: Budgets,
    catalog_path: PathBuf,
    file: Mutex<FileState>,
    /// Serialises catalog and bundle changes (readers never wait on it).
    change: Mutex<()>,
    audit: RwLock<Option<Arc<dyn PolicyAuditHook>>>,
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn now_rfc3339() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    corral_types::rfc3339_ms(ms)
}

fn deny(stage: &str, reason: String) -> DecisionRecord {
    DecisionRecord {
        effect: DecisionEffect::Forbid,
        stage: stage.into(),
        reasons: vec![reason],
        policies: Vec::new(),
        policy_version: None,
        shadow: None,
    }
}

impl PolicyCore {
    /// Opens DATA_DIR/policy.db (creating it with the default bundle as version 1),
    /// loads the catalog file and compiles the active and shadow bundles. A bundle
    /// that no longer validates is not an error here: calls are denied with the reason
    /// until a valid one is activated.
    pub fn open(data_dir: &Path, cfg: PolicyConfig) -> Result<Arc<PolicyCore>, PolicyCoreError> {
        let store = Store::open(&data_dir.join("policy.db"))?;
        let kills = KillSwitches::load(&store)?;
        let budgets = Budgets::load(&store)?;
        let catalog_path = cfg
            .catalog_path
            .unwrap_or_else(|| data_dir.join("capabilities.toml"));
        let core = PolicyCore {
            store,
            snap: RwLock::new(Arc::new(Snapshot {
                catalog: Arc::new(Catalog::default()),
                engine: Arc::new(Engine::new(&Catalog::default())?),
                active: None,
                shadow: None,
                broken: Some("the policy engine is starting".into()),
            })),
            kills,
            budgets,
            catalog_path,
            file: Mutex::new(FileState::default()),
            change: Mutex::new(()),
            audit: RwLock::new(None),
        };
        if core.versions_raw()?.is_empty() {
            let v = core.insert_version(DEFAULT_POLICY, "corral", Some("corral's default"))?;
            core.push_activation(v)?;
        }
        // A bad catalog file at start: builtins and published entries only, the error
        // logged; the file is retried by the watcher.
        if let Err(e) = core.read_catalog_file(true) {
            eprintln!("corral: {e}");
        }
        {
            let _g = core.change_lock();
            let catalog = core.build_catalog()?;
            core.install(catalog, false)?;
        }
        Ok(Arc::new(core))
    }

    /// Sends kill switch, policy, catalog and budget changes to `hook` from now on.
    pub fn set_audit_hook(&self, hook: Arc<dyn PolicyAuditHook>) {
        *self.audit.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    pub(crate) fn audit(&self, event: PolicyEvent) -> Result<(), PolicyCoreError> {
        let hook = self.audit.read().unwrap_or_else(|p| p.into_inner()).clone();
        match hook {
            Some(h) => h.record(event).map_err(PolicyCoreError::Audit),
            None => Ok(()),
        }
    }

    fn change_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.change.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The catalog in use.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.snapshot().catalog.clone()
    }

    /// The Cedar schema generated from the catalog (JSON schema format).
    pub fn cedar_schema(&self) -> Value {
        self.snapshot().engine.schema.json.clone()
    }

    /// The active and shadow versions.
    pub fn active_versions(&self) -> (Option<u64>, Option<u64>) {
        let s = self.snapshot();
        (
            s.active.as_ref().map(|b| b.version),
            s.shadow.as_ref().map(|b| b.version),
        )
    }

    // ---- catalog ----

    fn published_caps(&self) -> Result<Vec<Capability>, PolicyCoreError> {
        let rows: Vec<String> = self.store.with(|c| {
            let mut st = c.prepare("SELECT json FROM capabilities ORDER BY name")?;
            let rows = st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })?;
        rows.iter()
            .map(|j| {
                serde_json::from_str(j)
                    .map_err(|e| self.store.corrupt("capability", e.to_string()).into())
            })
            .collect()
    }

    /// File entries, overridden by published ones of the same name.
    fn build_catalog(&self) -> Result<Catalog, PolicyCoreError> {
        let published = self.published_caps()?;
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut caps: Vec<Capability> = file
            .caps
            .iter()
            .filter(|c| !published.iter().any(|p| p.name == c.name))
            .cloned()
            .collect();
        caps.extend(published);
        let source = if file.sig.is_some() {
            format!("file:{} + api", self.catalog_path.display())
        } else {
            "api".to_string()
        };
        Ok(Catalog::build(caps, &source)?)
    }

    /// Compiles the active and shadow bundles against `catalog` and swaps them in.
    /// With `strict`, a bundle that does not fit refuses the catalog.
    fn install(&self, catalog: Catalog, strict: bool) -> Result<(), PolicyCoreError> {
        let engine = Engine::new(&catalog)?;
        let (active, shadow) = self.pointers()?;
        let mut broken = None;
        let mut compile = |v: Option<u64>| -> Result<Option<Arc<CompiledBundle>>, PolicyCoreError> {
            let Some(v) = v else { return Ok(None) };
            let text = self.version_text(v)?;
            match CompiledBundle::compile(v, &text, &engine.schema) {
                Ok(b) => Ok(Some(Arc::new(b))),
                Err(e) if strict => Err(PolicyCoreError::BreaksPolicy {
                    version: v,
                    message: e.to_string(),
                }),
                Err(e) => {
                    broken.get_or_insert(format!(
                        "policy version {v} does not validate against the current catalog ({e}); publish or activate one that does"
                    ));
                    Ok(None)
                }
            }
        };
        let active_b = compile(active)?;
        let shadow_b = compile(shadow)?;
        if active.is_none() {
            broken.get_or_insert("no policy version is active; publish one".to_string());
        }
        if active_b.is_none() && active.is_some() && broken.is_none() {
            broken = Some("the active policy version cannot be used".into());
        }
        *self.snap.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot {
            catalog: Arc::new(catalog),
            engine: Arc::new(engine),
            active: active_b,
            shadow: shadow_b,
            broken,
        });
        Ok(())
    }

    /// Reads the catalog file when it changed (mtime, then content hash). Returns
    /// whether the parsed entries changed. On error the previous entries stay.
    fn read_catalog_file(&self, force: bool) -> Result<bool, PolicyCoreError> {
        use sha2::{Digest, Sha256};
        let path = &self.catalog_path;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
                let changed = f.sig.is_some();
                *f = FileState::default();
                return Ok(changed);
            }
            Err(source) => {
                return Err(PolicyCoreError::CatalogFile {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        {
            let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            if !force && f.sig.is_some_and(|(m, _)| m == mtime) {
                return Ok(false);
            }
        }
        let text =
            std::fs::read_to_string(path).map_err(|source| PolicyCoreError::CatalogFile {
                path: path.display().to_string(),
                source,
            })?;
        let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if !force && f.sig.is_some_and(|(_, h)| h == hash) {
            f.sig = Some((mtime, hash));
            return Ok(false);
        }
        let origin = path.display().to_string();
        let caps = Catalog::parse(&text, &origin)?;
        // Checked whole before it replaces anything.
        Catalog::build(caps.clone(), &origin)?;
        f.sig = Some((mtime, hash));
        f.caps = caps;
        f.last_error = None;
        Ok(true)
    }

    /// Re-reads the catalog file if it changed and applies it. A file that does not
    /// validate (or would break the active bundle) is refused: the error is returned
    /// (and logged once by the watcher) and the last good catalog stays.
    pub fn reload_catalog(&self) -> Result<bool, PolicyCoreError> {
        let _g = self.change_lock();
        let before = {
            let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            (f.sig, f.caps.clone())
        };
        match self.read_catalog_file(false) {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(e) => return Err(e),
        }
        let applied = self.build_catalog().and_then(|c| self.install(c, true));
        if let Err(e) = applied {
            // Put the previous file state back: the next poll tries the file again, so
            // it applies once a bundle that fits it is active (the watcher logs the
            // same error only once).
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.sig = before.0;
            f.caps = before.1;
            return Err(e);
        }
        Ok(true)
    }

    /// Starts a thread that polls the catalog file every [`CATALOG_POLL`] and stops
    /// when the core is dropped.
    pub fn spawn_catalog_watcher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            // A vital thread: a panic on it stops the process (crates/corral/src/panics.rs).
            .name("corral-catalog".into())
            .spawn(move || loop {
                std::thread::sleep(CATALOG_POLL);
                let Some(core) = weak.upgrade() else { return };
                match core.reload_catalog() {
                    Ok(true) => {
                        eprintln!("corral: catalog {} reloaded", core.catalog_path.display())
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let msg = e.to_string();
                        let mut f = core.file.lock().unwrap_or_else(|p| p.into_inner());
                        if f.last_error.as_deref() != Some(msg.as_str()) {
                            eprintln!("corral: catalog refused, the previous one stays: {msg}");
                            f.last_error = Some(msg);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("corral: cannot start the catalog watcher ({e}); the catalog file will not be reloaded");
        }
    }

    /// Publishes (adds or replaces) one capability: stored, applied at once, audited.
    pub fn publish_capability(
        &self,
        cap: Capability,
        actor: &str,
    ) -> Result<Capability, PolicyCoreError> {
        let _g = self.change_lock();
        let next = self.catalog().with(cap.clone(), "api")?;
        let stored = next
            .get(&cap.name)
            .map(|e| e.capability.clone())
            .unwrap_or(cap);
        // Validate against the bundles before storing anything.
        let mut trial = self.build_catalog()?.published();
        trial.retain(|c| c.name != stored.name);
        trial.push(stored.clone());
        let trial_cat = Catalog::build(trial, "api")?;
        let engine = Engine::new(&trial_cat)?;
        let (active, shadow) = self.pointers()?;
        for v in [active, shadow].into_iter().flatten() {
            CompiledBundle::compile(v, &self.version_text(v)?, &engine.schema).map_err(|e| {
                PolicyCoreError::BreaksPolicy {
                    version: v,
                    message: e.to_string(),
                }
            })?;
        }
        let json = serde_json::to_string(&stored)
            .map_err(|e| self.store.corrupt("capability", e.to_string()))?;
        let now = now_rfc3339();
        self.store.with(|c| {
            c.execute(
                "INSERT INTO capabilities (name, json, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET json = ?2, updated_at = ?3",
                rusqlite::params![stored.name, json, now],
            )
        })?;
        let catalog = self.build_catalog()?;
        self.install(catalog, false)?;
        self.audit(PolicyEvent {
            kind: "catalog_publish",
            tenant: "*".into(),
            actor: actor.into(),
            payload: json!({"capability": stored.name, "side_effect": stored.side_effect, "category": stored.category}),
        })?;
        Ok(stored)
    }

    // ---- decisions ----

    /// Decides a call now. See [`PolicyCore::evaluate_at`].
    pub fn evaluate(&self, call: &CallCheck<'_>) -> Evaluation {
        self.evaluate_at(call, now_unix())
    }

    /// Decides a call: catalog → arguments → kill switch → budget → Cedar (active
    /// bundle; the shadow bundle is evaluated too and reported, not enforced). The
    /// first stage that refuses decides. Nothing is counted: call
    /// [`PolicyCore::record_call`] once the call runs.
    pub fn evaluate_at(&self, call: &CallCheck<'_>, now: i64) -> Evaluation {
        let snap = self.snapshot();
        let Some(entry) = snap.catalog.get(call.capability).cloned() else {
            return Evaluation {
                decision: deny(
                    "catalog",
                    format!(
                        "unknown capability {:?}; GET /v1/capabilities lists them",
                        call.capability
                    ),
                ),
                entry: None,
                args_error: None,
            };
        };
        let cap = &entry.capability;
        if let Err(r) = entry.validate_args(call.args) {
            return Evaluation {
                decision: deny("arguments", format!("arguments rejected: {r}")),
                entry: Some(entry),
                args_error: Some(r),
            };
        }
        let done = |decision| Evaluation {
            decision,
            entry: Some(entry.clone()),
            args_error: None,
        };
        if let Some(ks) = self
            .kills
            .stopping(call.tenant, call.agent, &cap.category, &cap.name)
        {
            return done(deny(
                "kill_switch",
                format!(
                    "stopped by the {} kill switch on {:?}: {}",
                    ks.scope.as_str(),
                    ks.target,
                    ks.reason
                ),
            ));
        }
        let task = call.task_id.unwrap_or("");
        let budget = match self.budgets.check(&self.store, call.tenant, task, now) {
            Ok(b) => b,
            Err(e) => {
                return done(deny(
                    "error",
                    format!("denied: budget state unreadable: {e}"),
                ))
            }
        };
        if let Some(reason) = budget.exhausted {
            return done(deny("budget", reason));
        }
        if budget.degraded && cap.side_effect != SideEffect::ReadOnly {
            return done(deny(
                "budget",
                format!(
                    "tenant {} is past its budget's burn threshold and degraded to read_only capabilities; {} is {}",
                    call.tenant,
                    cap.name,
                    cap.side_effect.as_str()
                ),
            ));
        }
        let Some(active) = &snap.active else {
            let why = snap
                .broken
                .clone()
                .unwrap_or_else(|| "no policy version is active".into());
            return done(deny("error", format!("denied: {why}")));
        };
        let input = PolicyInput {
            tenant: call.tenant,
            agent: call.agent,
            task_id: task,
            budget: &budget.context,
            now_unix: now,
        };
        let out = snap.engine.decide(active, &entry, call.args, &input);
        let shadow = snap.shadow.as_ref().map(|b| {
            let s = snap.engine.decide(b, &entry, call.args, &input);
            ShadowDecision {
                version: b.version,
                effect: s.effect,
                policies: s.policies,
            }
        });
        done(DecisionRecord {
            effect: out.effect,
            stage: "policy".into(),
            reasons: out.reasons,
            policies: out.policies,
            policy_version: Some(active.version),
            shadow,
        })
    }

    /// Whether `TENANT/AGENT` could ever be permitted `capability` (for tools/list): it
    /// exists, no kill switch stops it, and the active bundle has a permit whose scope
    /// can match with no unconditional forbid. Budgets are not considered. Fails
    /// closed (false) when there is no usable bundle.
    pub fn visible(&self, tenant: &str, agent: &str, capability: &str) -> bool {
        let snap = self.snapshot();
        let (Some(entry), Some(active)) = (snap.catalog.get(capability), &snap.active) else {
            return false;
        };
        let cap = &entry.capability;
        if self
            .kills
            .stopping(tenant, agent, &cap.category, &cap.name)
            .is_some()
        {
            return false;
        }
        crate::policy::could_permit(active, tenant, agent, &cap.name, &cap.category)
            .unwrap_or(false)
    }

    /// Every catalog entry `TENANT/AGENT` could be permitted (see
    /// [`PolicyCore::visible`]), builtin tools included.
    pub fn visible_capabilities(&self, tenant: &str, agent: &str) -> Vec<Arc<CatalogEntry>> {
        self.catalog()
            .entries()
            .filter(|e| self.visible(tenant, agent, &e.capability.name))
            .cloned()
            .collect()
    }

    /// Counts a call that ran (tenant per day, and the task).
    pub fn record_call(&self, tenant: &str, task_id: Option<&str>) -> Result<(), PolicyCoreError> {
        Ok(self
            .budgets
            .record_call(&self.store, tenant, task_id.unwrap_or(""), now_unix())?)
    }

    /// Adds sandbox CPU time to a task.
    pub fn record_cpu(
        &self,
        tenant: &str,
        task_id: &str,
        cpu_ms: u64,
    ) -> Result<(), PolicyCoreError> {
        self.budgets
            .add_task(&self.store, tenant, task_id, 0, cpu_ms, 0)?;
        Ok(())
    }

    // ---- kill switches ----

    /// Engages a kill switch (effective from the next call); audited.
    pub fn set_kill_switch(
        &self,
        scope: KillSwitchScope,
        target: &str,
        reason: Option<String>,
        actor: &str,
    ) -> Result<KillSwitch, PolicyCoreError> {
        let ks = self.kills.set(
            &self.store,
            KillSwitch {
                scope,
                target: target.to_string(),
                reason: reason.unwrap_or_else(|| "stopped by an operator".into()),
                set_by: actor.to_string(),
                created_at: now_rfc3339(),
            },
        )?;
        self.audit(PolicyEvent {
            kind: "kill_switch",
            tenant: tenant_of(&ks),
            actor: actor.into(),
            payload: json!({"action": "set", "scope": scope, "target": ks.target, "reason": ks.reason}),
        })?;
        Ok(ks)
    }

    /// Clears a kill switch; audited.
    pub fn clear_kill_switch(
        &self,
        scope: KillSwitchScope,
        target: &str,
        actor: &str,
    ) -> Result<KillSwitch, PolicyCoreError> {
        let ks = self.kills.clear(&self.store, scope, target)?;
        self.audit(PolicyEvent {
            kind: "kill_switch",
            tenant: tenant_of(&ks),
            actor: actor.into(),
            payload: json!({"action": "clear", "scope": scope, "target": ks.target}),
        })?;
        Ok(ks)
    }

    /// Every engaged kill switch.
    pub fn kill_switches(&self) -> Vec<KillSwitch> {
        self.kills.list()
    }

    // ---- policy versions: see versions.rs ----

    pub(crate) fn bundle_for(&self, v: u64) -> Result<CompiledBundle, PolicyCoreError> {
        let text = self.version_text(v)?;
        Ok(CompiledBundle::compile(
            v,
            &text,
            &self.snapshot().engine.schema,
        )?)
    }

    pub(crate) fn schema_compile(&self, v: u64, text: &str) -> Result<CompiledBundle, PolicyError> {
        CompiledBundle::compile(v, text, &self.snapshot().engine.schema)
    }

    /// Re-installs the current catalog with the bundles the pointers name now.
    pub(crate) fn reinstall(&self) -> Result<(), PolicyCoreError> {
        let catalog = self.build_catalog()?;
        self.install(catalog, false)
    }

    pub(crate) fn lock_changes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.change_lock()
    }

    /// Versions listed (without text).
    pub fn versions(&self) -> Result<Vec<PolicyVersion>, PolicyCoreError> {
        self.versions_raw()
    }
}

fn tenant_of(ks: &KillSwitch) -> String {
    match ks.scope {
        KillSwitchScope::Tenant => ks.target.clone(),
        KillSwitchScope::Agent => ks.target.split('/').next().unwrap_or("*").to_string(),
        _ => "*".into(),
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
