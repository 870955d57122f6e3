//! Templates through the Manager: list, get, import (admin) and remove. The store
//! itself (files, layers, atomicity) is crate::templates; the Manager adds what only
//! it knows: which sandboxes and snapshots use a template, so one in use is never
//! removed. Creates hold `template_lock` shared from resolving the template until the
//! sandbox's row exists; a removal holds it exclusively while it checks and removes.

use std::path::Path;

use corral_types::api::{
    Template, TemplateBuildRequest, TemplateBuildSource, TemplateImportRequest, TemplateList,
};

use super::{store, Manager, SandboxError};
use crate::templates::{TemplateStore, TemplateStoreError};

impl From<TemplateStoreError> for SandboxError {
    fn from(e: TemplateStoreError) -> SandboxError {
        let msg = corral_isolate::error_chain(&e);
        match e {
            TemplateStoreError::NotFound { .. } => SandboxError::NotFound(msg),
            TemplateStoreError::InvalidName(_)
            | TemplateStoreError::UnsafeEntry { .. }
            | TemplateStoreError::BadSource { .. }
            | TemplateStoreError::Tar(_)
            | TemplateStoreError::Recipe(_)
            | TemplateStoreError::StepFailed { .. } => SandboxError::InvalidRequest(msg),
            TemplateStoreError::Exists(_)
            | TemplateStoreError::InUse { .. }
            | TemplateStoreError::Cancelled => SandboxError::Conflict(msg),
            TemplateStoreError::Io { .. } | TemplateStoreError::IdBase { .. } => {
                SandboxError::Internal(msg)
            }
        }
    }
}

/// Who uses any of `pinned` (`name:version`s) according to a data directory's state
/// database: sandboxes not stopped and snapshots. For `corral template rm` without a
/// daemon; a missing database means nobody.
pub fn template_users(data_dir: &Path, pinned: &[String]) -> Result<Vec<String>, SandboxError> {
    let db = data_dir.join("state.db");
    if !db.exists() {
        return Ok(Vec::new());
    }
    store::Store::open(&db)?.template_users(pinned)
}

/// Removes `r` (`name`: every version, or `name:version`) from the store in `data_dir`
/// unless a sandbox or snapshot recorded in its state database uses it. Returns the
/// removed `name:version`s.
pub fn remove_template(
    data_dir: &Path,
    id_base: u32,
    r: &str,
) -> Result<Vec<String>, SandboxError> {
    let store = TemplateStore::new(data_dir, id_base);
    let pinned = store.versions_of(r)?;
    refuse_used(r, template_users(data_dir, &pinned)?)?;
    store.remove_pinned(&pinned)?;
    Ok(pinned)
}

fn refuse_used(r: &str, users: Vec<String>) -> Result<(), SandboxError> {
    if users.is_empty() {
        return Ok(());
    }
    let shown: Vec<_> = users.iter().take(5).cloned().collect();
    let more = users.len().saturating_sub(5);
    Err(TemplateStoreError::InUse {
        name: r.to_string(),
        users: if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        },
    }
    .into())
}

impl Manager {
    pub(super) fn template_store(&self) -> TemplateStore {
        TemplateStore::new(&self.cfg.data_dir, self.cfg.id_map_base)
    }

    /// Every template (`host` first).
    pub async fn templates(&self) -> Result<TemplateList, SandboxError> {
        let store = self.template_store();
        let templates = blocking(move || store.list()).await??;
        Ok(TemplateList { templates })
    }

    /// One template: `name` (newest version) or `name:version`.
    pub async fn template(&self, r: &str) -> Result<Template, SandboxError> {
        let store = self.template_store();
        let r = r.to_string();
        Ok(blocking(move || store.get(&r)).await??)
    }

    /// Imports a template from a path on this host (the caller checked the admin role):
    /// an import job (template_builds.rs) this call waits for, in a task of its own (a
    /// client that hangs up does not cut it short).
    pub async fn import_template(
        &self,
        req: TemplateImportRequest,
    ) -> Result<Template, SandboxError> {
        let source = TemplateBuildSource::Import {
            dir: req.dir,
            oci: req.oci,
        };
        self.build_and_wait(&req.name, req.version, source).await
    }

    /// Builds a template from a recipe whose context is a directory on this host (the
    /// caller checked the admin role): a build job (template_builds.rs) this call waits
    /// for. The job runs in a task of its own: a client that hangs up does not cut it
    /// short.
    pub async fn build_template(
        &self,
        req: TemplateBuildRequest,
    ) -> Result<Template, SandboxError> {
        let source = TemplateBuildSource::Recipe {
            recipe: req.recipe,
            context: req.context,
            build_args: req.build_args,
        };
        self.build_and_wait(&req.name, req.version, source).await
    }

    /// Removes `name` (every version) or `name:version`, refused while a sandbox or a
    /// snapshot uses it.
    pub async fn remove_template(&self, r: &str) -> Result<Vec<String>, SandboxError> {
        let _guard = self.template_lock.write().await;
        let store = self.template_store();
        let pinned = {
            let (store, r) = (store.clone(), r.to_string());
            blocking(move || store.versions_of(&r)).await??
        };
        let mut users: Vec<String> = self
            .live_list()
            .iter()
            .map(|l| l.row())
            .filter(|row| pinned.contains(&row.template))
            .map(|row| row.id)
            .collect();
        for u in self.store.template_users(&pinned)? {
            if !users.contains(&u) {
                users.push(u);
            }
        }
        refuse_used(r, users)?;
        let p = pinned.clone();
        blocking(move || store.remove_pinned(&p)).await??;
        Ok(pinned)
    }

    /// Resolves a create's template to the `name:version` the sandbox records.
    pub(crate) async fn pin_template(&self, r: &str) -> Result<String, SandboxError> {
        if r == "host" {
            return Ok(r.into());
        }
        let store = self.template_store();
        let name = r.to_string();
        match blocking(move || store.pin(&name)).await? {
            Ok(p) => Ok(p),
            // A shipped recipe never built here: its build starts (or is joined) and
            // the create answers `template_building`.
            Err(e @ TemplateStoreError::NotFound { .. }) => {
                Err(self.first_use(r).unwrap_or(e.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes what interrupted imports left (at start).
    pub(crate) async fn clean_templates(&self) -> Result<(), SandboxError> {
        let store = self.template_store();
        Ok(blocking(move || store.clean_stale()).await??)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SandboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SandboxError::Internal(format!("a template task failed: {e}")))
}
