//! Secrets (docs/secrets.md): the tenant's secret store behind the API, and what a
//! sandbox created with `secrets` gets: each secret's placeholder as an environment
//! variable, corral's CA bound read-only at [`corral_net::SANDBOX_CA_DIR`] with the
//! variables that make tools trust it, and its connections registered with the
//! credential broker (the egress proxy's interceptor), which swaps placeholders for
//! values toward bound hosts. Only mode `allow` sends traffic through the proxy, so
//! secrets need it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use corral_net::{Broker, BrokerConfig, BrokerInterceptor, SecretError, SecretMeta, SecretPut};
use corral_types::api::{NetworkMode, Secret, SecretList, SecretPutRequest};

use super::{Manager, SandboxError};

/// The most secrets one sandbox may be created with.
const SECRETS_PER_SANDBOX: usize = 32;

impl From<SecretError> for SandboxError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Invalid(m) => SandboxError::InvalidRequest(m),
            SecretError::NotFound(_) => SandboxError::NotFound(e.to_string()),
            other => SandboxError::Internal(corral_isolate::error_chain(&other)),
        }
    }
}

fn to_api(m: SecretMeta) -> Secret {
    Secret {
        name: m.name,
        hosts: m.hosts.iter().map(|h| h.to_string()).collect(),
        header: m.header.to_string(),
        placeholder: m.placeholder,
        created_at: corral_types::rfc3339_ms(m.created_at_ms),
        updated_at: corral_types::rfc3339_ms(m.updated_at_ms),
    }
}

impl Manager {
    /// Creates or replaces a secret of `tenant`; true when it is new.
    pub fn secret_put(
        &self,
        tenant: &str,
        name: &str,
        req: SecretPutRequest,
    ) -> Result<(Secret, bool), SandboxError> {
        let value = corral_net::SecretValue::new(req.value)?;
        let (meta, new) = self.secrets.put(
            tenant,
            name,
            SecretPut {
                value,
                hosts: req.hosts,
                header: req.header,
            },
        )?;
        Ok((to_api(meta), new))
    }

    /// A secret's metadata (never its value).
    pub fn secret_get(&self, tenant: &str, name: &str) -> Result<Secret, SandboxError> {
        Ok(to_api(self.secrets.get(tenant, name)?))
    }

    /// The tenant's secrets' metadata.
    pub fn secret_list(&self, tenant: &str) -> Result<SecretList, SandboxError> {
        Ok(SecretList {
            secrets: self.secrets.list(tenant)?.into_iter().map(to_api).collect(),
        })
    }

    /// Removes a secret; sandboxes holding its placeholder can no longer use it.
    pub fn secret_delete(&self, tenant: &str, name: &str) -> Result<(), SandboxError> {
        Ok(self.secrets.delete(tenant, name)?)
    }

    /// The secret store (for governance's `value_for`).
    pub fn secret_store(&self) -> Arc<corral_net::SecretStore> {
        self.secrets.clone()
    }

    /// Starts the credential broker as the egress proxy's interceptor (after the
    /// proxy started) and registers re-attached sandboxes with secrets.
    pub(crate) fn start_broker(&self) {
        let Some(proxy) = self.egress_proxy() else {
            return;
        };
        let cfg = BrokerConfig {
            data_dir: self.cfg.data_dir.clone(),
            extra_roots: self.cfg.network.upstream_roots.clone(),
        };
        match Broker::new(&cfg, self.secrets.clone()) {
            Ok(b) => {
                let b = Arc::new(b);
                let _ = self.broker.set(b.clone());
                for l in self.live_list() {
                    let row = l.row();
                    self.broker_register(&row.id, row.tenant.as_deref(), &row.env);
                }
                proxy.set_interceptor(Arc::new(BrokerInterceptor(b)));
            }
            Err(e) => eprintln!(
                "corral: warning: the credential broker is off (sandboxes with secrets are \
                 refused): {}",
                corral_isolate::error_chain(&e)
            ),
        }
    }

    /// The names of the tenant's secrets whose exact placeholders a sandbox's
    /// environment holds under their names (how the secrets of a sandbox are known
    /// after create and after a restart).
    fn secret_names(&self, tenant: &str, env: &BTreeMap<String, String>) -> Vec<String> {
        env.iter()
            .filter(|(_, v)| v.starts_with(corral_net::PLACEHOLDER_PREFIX))
            .filter(|(k, v)| {
                self.secrets
                    .get(tenant, k)
                    .is_ok_and(|m| &m.placeholder == *v)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The directory to bind at the CA path of a sandbox with secrets.
    pub(crate) fn secrets_ca_dir(
        &self,
        tenant: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> Option<PathBuf> {
        let tenant = tenant?;
        let b = self.broker.get()?;
        (!self.secret_names(tenant, env).is_empty()).then(|| b.sandbox_ca_dir().to_path_buf())
    }

    /// Checks a create's `secrets` and adds their placeholders and the CA variables to
    /// its environment.
    pub(crate) fn secrets_for_create(
        &self,
        tenant: &str,
        names: &[String],
        mode: NetworkMode,
        env: &mut BTreeMap<String, String>,
    ) -> Result<(), SandboxError> {
        if names.is_empty() {
            return Ok(());
        }
        if mode != NetworkMode::Allow {
            return Err(SandboxError::InvalidRequest(
                "secrets need network mode allow: only there does every connection go through \
                 corral's egress proxy, where placeholders are swapped for values (mode none \
                 reaches nothing, mode open bypasses the proxy); add network.mode allow with \
                 the secrets' hosts in network.allow"
                    .into(),
            ));
        }
        if names.len() > SECRETS_PER_SANDBOX {
            return Err(SandboxError::InvalidRequest(format!(
                "at most {SECRETS_PER_SANDBOX} secrets per sandbox"
            )));
        }
        self.broker.get().ok_or_else(|| {
            SandboxError::Unavailable(
                "the credential broker is not running on this daemon (see its log); sandboxes \
                 with secrets are refused"
                    .into(),
            )
        })?;
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(SandboxError::InvalidRequest(format!(
                    "secret {n} is listed twice"
                )));
            }
        }
        for (name, placeholder) in self.secrets.placeholders(tenant, names)? {
            if env.contains_key(&name) {
                return Err(SandboxError::InvalidRequest(format!(
                    "env sets {name}, which is also a secret's name; the sandbox gets the \
                     secret's placeholder there, so drop it from env"
                )));
            }
            env.insert(name, placeholder);
        }
        for (k, v) in Broker::sandbox_env() {
            env.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// Sends a new sandbox's connections through the broker (when it has secrets).
    pub(crate) fn broker_register(
        &self,
        id: &str,
        tenant: Option<&str>,
        env: &BTreeMap<String, String>,
    ) {
        if let (Some(b), Some(t)) = (self.broker.get(), tenant) {
            let names = self.secret_names(t, env);
            if !names.is_empty() {
                b.register(id, t, names);
            }
        }
    }

    /// Forgets a sandbox that is gone.
    pub(crate) fn broker_unregister(&self, id: &str) {
        if let Some(b) = self.broker.get() {
            b.unregister(id);
        }
    }
}
