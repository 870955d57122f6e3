//! Sandbox networks (mode `open`): corral-net's pool of pre-built namespaces, taken
//! by a create, released by teardown or a failed create, and taken over after a
//! restart (slots of re-attached sandboxes are kept, everything else of this daemon's
//! tag is removed). The warm sandbox pool stays mode `none`.

use std::sync::Arc;

use corral_net::{Cidr, NetConfig, NetPool, Network, RealExec};

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
}

impl Default for NetSettings {
    fn default() -> Self {
        NetSettings {
            cidr: Cidr::DAEMON_DEFAULT,
            deny: Vec::new(),
            pool_size: 2,
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

    /// Takes over this daemon's networks after recovery: keeps the slots of live
    /// sandboxes, removes every other leftover, and fills the pool in the background.
    pub(crate) async fn start_network(&self) {
        let keep: Vec<u32> = self
            .live_list()
            .iter()
            .filter_map(|l| l.row().net_slot)
            .collect();
        let s = self.cfg.network.clone();
        let tag = corral_net::tag_for(&self.cfg.data_dir);
        let started = tokio::task::spawn_blocking(move || {
            let net = Network::new(
                NetConfig {
                    tag,
                    cidr: s.cidr,
                    deny: s.deny,
                    egress: None,
                },
                Box::new(RealExec),
            )?;
            NetPool::start(net, s.pool_size, &keep, &[])
        })
        .await;
        let result = match started {
            Ok(Ok(p)) => Ok(Arc::new(p)),
            Ok(Err(e)) => Err(corral_isolate::error_chain(&e)),
            Err(e) => Err(format!("starting the network pool failed: {e}")),
        };
        if let Err(e) = &result {
            eprintln!("corral: warning: sandbox networking (mode open) is off: {e}");
        }
        let _ = self.net.set(result);
        self.net_refill();
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

    /// A network for a new sandbox in mode `open`: its slot.
    pub(crate) async fn net_acquire(&self) -> Result<u32, SandboxError> {
        let p = self.net_pool()?;
        let lease = tokio::task::spawn_blocking(move || p.acquire(corral_net::NetMode::Open))
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
