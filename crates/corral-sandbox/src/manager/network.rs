//! Sandbox networks (modes `open` and `allow`): corral-net's pool of pre-built
//! namespaces, taken by a create, released by teardown or a failed create, and taken
//! over after a restart (slots of re-attached sandboxes are kept in their mode's set,
//! everything else of this daemon's tag is removed); and the egress proxy + resolver
//! of mode `allow`, started with the pool, which serves each allow-mode sandbox by its
//! address. The warm sandbox pool stays mode `none`.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use corral_net::{
    Cidr, EgressConfig, EgressProxy, NetConfig, NetMode, NetPool, Network, Policy, RealExec, Rule,
    SandboxEgress,
};
use corral_types::api::NetworkMode;

use super::{Manager, SandboxError};

/// The `[network]` settings of corral.toml.
#[derive(Debug, Clone)]
pub struct NetSettings {
    /// The address pool, one /30 per sandbox with networking.
    pub cidr: Cidr,
    /// Destinations no sandbox may reach, besides the fixed ones.
    pub deny: Vec<Cidr>,
    /// Namespaces kept pre-built.
    pub pool_size: usize,
    /// Egress rules denied to every allow-mode sandbox (`egress_deny`; deny wins).
    pub egress_deny: Vec<Rule>,
    /// Static name -> address map the egress proxy uses instead of the system
    /// resolver (`resolve`; for tests and private registries: trusted as configured).
    pub resolve: HashMap<String, Ipv4Addr>,
    /// Connections one allow-mode sandbox may have open through the egress proxy at
    /// once (`egress_max_connections`).
    pub egress_max_connections: usize,
    /// Extra PEM roots the credential broker trusts toward real hosts, besides the
    /// system's (`upstream_ca`; a private CA, tests).
    pub upstream_roots: Option<std::path::PathBuf>,
}

impl Default for NetSettings {
    fn default() -> Self {
        NetSettings {
            cidr: Cidr::DAEMON_DEFAULT,
            deny: Vec::new(),
            pool_size: 2,
            egress_deny: Vec::new(),
            resolve: HashMap::new(),
            egress_max_connections: corral_net::DEFAULT_MAX_CONNECTIONS,
            upstream_roots: None,
        }
    }
}

impl Manager {
    fn net_pool(&self) -> Result<Arc<NetPool>, SandboxError> {
        match self.net.get() {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(e)) => Err(SandboxError::Unavailable(format!(
                "sandbox networking is unavailable on this host: {e}"
            ))),
            None => Err(SandboxError::Unavailable(
                "sandbox networking is not ready yet; retry".into(),
            )),
        }
    }

    /// Starts the egress proxy, then takes over this daemon's networks after recovery:
    /// keeps the slots of live sandboxes (in their modes' sets, allow-mode ones served
    /// by the proxy again), removes every other leftover, and fills the pool in the
    /// background.
    pub(crate) async fn start_network(&self) {
        let s = self.cfg.network.clone();
        let egress = match EgressProxy::start(EgressConfig {
            deny: s.egress_deny.clone(),
            resolve: s.resolve.clone(),
            max_connections: s.egress_max_connections,
        })
        .await
        {
            Ok(p) => {
                let p = Arc::new(p);
                let _ = self.egress.set(p.clone());
                Some(p)
            }
            Err(e) => {
                eprintln!(
                    "corral: warning: the egress proxy is off (mode allow is refused): {}",
                    corral_isolate::error_chain(&e)
                );
                None
            }
        };
        // Before any sandbox is served again: a re-attached sandbox with secrets must
        // never be spliced past the broker.
        self.start_broker();
        let rows: Vec<_> = self.live_list().iter().map(|l| l.row()).collect();
        let keep_open: Vec<u32> = rows
            .iter()
            .filter(|r| r.net_allow.is_none())
            .filter_map(|r| r.net_slot)
            .collect();
        // Allow-mode sandboxes whose rules no longer parse (or without a proxy) are
        // kept in no set: they reach nothing rather than more than they should.
        let mut keep_allow = Vec::new();
        for r in &rows {
            if let (Some(slot), Some(text), Some(p)) = (r.net_slot, &r.net_allow, &egress) {
                let rules: Vec<String> = text.split(',').map(str::to_string).collect();
                if let Ok(Some(policy)) = self.egress_policy(NetworkMode::Allow, &rules) {
                    keep_allow.push(slot);
                    let addrs = s.cidr.slot(slot);
                    p.register(
                        addrs.sandbox,
                        SandboxEgress {
                            sandbox: r.id.clone(),
                            tenant: r.tenant.clone().unwrap_or_default(),
                            host_addr: addrs.host,
                            policy,
                        },
                    );
                }
            }
        }
        let tag = corral_net::tag_for(&self.cfg.data_dir);
        let ports = egress.as_ref().map(|p| p.ports());
        let started = tokio::task::spawn_blocking(move || {
            let net = Network::new(
                NetConfig {
                    tag,
                    cidr: s.cidr,
                    deny: s.deny,
                    egress: ports,
                },
                Box::new(RealExec),
            )?;
            NetPool::start(net, s.pool_size, &keep_open, &keep_allow)
        })
        .await;
        let result = match started {
            Ok(Ok(p)) => Ok(Arc::new(p)),
            Ok(Err(e)) => Err(corral_isolate::error_chain(&e)),
            Err(e) => Err(format!("starting the network pool failed: {e}")),
        };
        if let Err(e) = &result {
            eprintln!("corral: warning: sandbox networking (modes open and allow) is off: {e}");
        }
        let _ = self.net.set(result);
        self.net_refill();
    }

    /// The egress proxy (for the credential broker's interceptor and the records).
    pub fn egress_proxy(&self) -> Option<Arc<EgressProxy>> {
        self.egress.get().cloned()
    }

    /// The most recent egress records of a sandbox of `tenant` (oldest first; at most
    /// `limit`). Stopped sandboxes keep theirs while they are in the ring.
    pub fn egress_records(
        &self,
        tenant: &str,
        id: &str,
        limit: usize,
    ) -> Result<corral_types::api::EgressRecordList, SandboxError> {
        self.get(tenant, id)?;
        let records = self
            .egress
            .get()
            .map(|p| p.records(Some(id), limit.clamp(1, 4096)))
            .unwrap_or_default()
            .into_iter()
            .map(|r| corral_types::api::EgressRecord {
                at: super::clock::rfc3339(r.at_ms),
                sandbox_id: r.sandbox,
                tenant: r.tenant,
                host: r.host,
                port: r.port,
                via: r.via.as_str().to_string(),
                method: r.method,
                path: r.path,
                bytes_up: r.bytes_up,
                bytes_down: r.bytes_down,
                allowed: r.allowed,
                rule: r.rule,
                reason: r.reason,
            })
            .collect();
        Ok(corral_types::api::EgressRecordList { records })
    }

    /// Checks a create's network part: for mode allow, its rules (with the daemon's
    /// deny rules) as a policy; None for the other modes.
    pub(crate) fn egress_policy(
        &self,
        mode: NetworkMode,
        allow: &[String],
    ) -> Result<Option<Policy>, SandboxError> {
        if mode != NetworkMode::Allow {
            if !allow.is_empty() {
                return Err(SandboxError::InvalidRequest(
                    "network.allow is only for network.mode \"allow\"".into(),
                ));
            }
            return Ok(None);
        }
        if allow.is_empty() {
            return Err(SandboxError::InvalidRequest(
                "network.mode \"allow\" needs at least one destination in network.allow \
                 (e.g. [\"pypi.org\", \"*.pythonhosted.org\"])"
                    .into(),
            ));
        }
        if allow.len() > 256 {
            return Err(SandboxError::InvalidRequest(
                "at most 256 destinations in network.allow".into(),
            ));
        }
        let rules = allow
            .iter()
            .map(|r| Rule::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SandboxError::InvalidRequest(e.to_string()))?;
        Ok(Some(Policy {
            allow: rules,
            deny: self.cfg.network.egress_deny.clone(),
        }))
    }

    fn egress_running(&self) -> Result<Arc<EgressProxy>, SandboxError> {
        self.egress.get().cloned().ok_or_else(|| {
            SandboxError::Unavailable(
                "the egress proxy is not running on this daemon (see its log); mode allow is unavailable"
                    .into(),
            )
        })
    }

    /// The explicit-proxy variables of an allow-mode sandbox (the caller's own win).
    pub(crate) fn egress_env(
        &self,
        slot: u32,
        env: &mut BTreeMap<String, String>,
    ) -> Result<(), SandboxError> {
        let p = self.egress_running()?;
        let host = self.cfg.network.cidr.slot(slot).host;
        for (k, v) in corral_net::proxy_env(host, p.ports()) {
            env.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// Writes the resolv.conf of an allow-mode sandbox's slot; its path.
    pub(crate) fn egress_resolv_conf(&self, slot: u32) -> Result<std::path::PathBuf, SandboxError> {
        let dir = self.cfg.data_dir.join("net");
        let path = dir.join(format!("resolv-{slot}.conf"));
        let host = self.cfg.network.cidr.slot(slot).host;
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, corral_net::resolv_conf(host)))
            .map_err(|e| SandboxError::Internal(format!("writing {}: {e}", path.display())))?;
        Ok(path)
    }

    /// Serves an allow-mode sandbox from now on.
    pub(crate) fn egress_register(&self, slot: u32, id: &str, tenant: &str, policy: Policy) {
        if let Some(p) = self.egress.get() {
            let addrs = self.cfg.network.cidr.slot(slot);
            p.register(
                addrs.sandbox,
                SandboxEgress {
                    sandbox: id.to_string(),
                    tenant: tenant.to_string(),
                    host_addr: addrs.host,
                    policy,
                },
            );
        }
    }

    /// Tops the pool up in the background.
    pub(crate) fn net_refill(&self) {
        if let Ok(p) = self.net_pool() {
            if p.wants_refill() {
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = p.refill() {
                        eprintln!(
                            "corral: warning: pre-building sandbox networks failed: {}",
                            corral_isolate::error_chain(&e)
                        );
                    }
                });
            }
        }
    }

    /// A network for a new sandbox in mode `open` or `allow`: its slot.
    pub(crate) async fn net_acquire(&self, mode: NetworkMode) -> Result<u32, SandboxError> {
        let mode = if mode == NetworkMode::Allow {
            self.egress_running()?;
            NetMode::Allow
        } else {
            NetMode::Open
        };
        let p = self.net_pool()?;
        let lease = tokio::task::spawn_blocking(move || p.acquire(mode))
            .await
            .map_err(|e| SandboxError::Internal(format!("taking a sandbox network: {e}")))?
            .map_err(|e| match e {
                corral_net::NetError::Exhausted(_) => {
                    SandboxError::Unavailable(corral_isolate::error_chain(&e))
                }
                other => SandboxError::Internal(corral_isolate::error_chain(&other)),
            })?;
        self.net_refill();
        Ok(lease.slot)
    }

    /// The namespace file of a slot.
    pub(crate) fn net_path(&self, slot: u32) -> Result<std::path::PathBuf, SandboxError> {
        Ok(self.net_pool()?.network().lease(slot).netns)
    }

    /// Removes a sandbox's network (veth, namespace, nft element) and frees the slot.
    pub(crate) async fn net_release(&self, slot: u32) {
        if let Some(e) = self.egress.get() {
            e.unregister(self.cfg.network.cidr.slot(slot).sandbox);
        }
        let _ = std::fs::remove_file(
            self.cfg
                .data_dir
                .join("net")
                .join(format!("resolv-{slot}.conf")),
        );
        if let Ok(p) = self.net_pool() {
            let _ = tokio::task::spawn_blocking(move || p.release(slot)).await;
        }
    }

    /// On shutdown: removes the pre-built namespaces (and the table when no sandbox
    /// keeps a network).
    pub(crate) async fn net_shutdown(&self) {
        if let Ok(p) = self.net_pool() {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
    }
}
