//! The daemon's pool of pre-built sandbox networks, so that a create with networking
//! costs no more than taking one off a list (the nft element of a pooled namespace is
//! added when it is built: nobody is inside it until a sandbox joins it).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::network::{Lease, NetMode, Network};
use crate::NetError;

#[derive(Debug, Default)]
struct Inner {
    /// Built, unassigned slots.
    ready: Vec<u32>,
    /// Every slot that exists or is being built (ready, leased, in progress).
    used: BTreeSet<u32>,
    /// Whether the table exists (made at start only when there was something to take
    /// over, else by the first build: a daemon that never builds a network leaves
    /// nothing on the host).
    installed: bool,
}

/// Pre-built namespaces of mode `open`, and the slots in use.
#[derive(Debug)]
pub struct NetPool {
    net: Network,
    target: usize,
    inner: Mutex<Inner>,
    /// Set by shutdown: a refill in flight removes what it builds.
    closed: AtomicBool,
}

impl NetPool {
    /// Takes over after a previous daemon: rebuilds the table with `keep_open` and
    /// `keep_allow` (slots of sandboxes that are still alive) in their modes' sets,
    /// removes every other leftover of this tag, and turns on IPv4 forwarding. Keeps
    /// `target` namespaces ready (see [`NetPool::refill`]).
    pub fn start(
        net: Network,
        target: usize,
        keep_open: &[u32],
        keep_allow: &[u32],
    ) -> Result<NetPool, NetError> {
        let keep: Vec<u32> = keep_open.iter().chain(keep_allow).copied().collect();
        let installed = !keep.is_empty() || !net.existing_slots().is_empty() || net.table_exists();
        if installed {
            Network::enable_forwarding()?;
            net.recover(keep_open, keep_allow)?;
        }
        Ok(NetPool {
            net,
            target,
            inner: Mutex::new(Inner {
                ready: Vec::new(),
                used: keep.iter().copied().collect(),
                installed,
            }),
            closed: AtomicBool::new(false),
        })
    }

    /// The underlying network.
    pub fn network(&self) -> &Network {
        &self.net
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alloc(&self) -> Result<u32, NetError> {
        let mut g = self.lock();
        let slots = self.net.config().cidr.slots();
        let slot = (0..slots)
            .find(|s| !g.used.contains(s))
            .ok_or_else(|| NetError::Exhausted(self.net.config().cidr.to_string()))?;
        g.used.insert(slot);
        Ok(slot)
    }

    fn build_new(&self) -> Result<Lease, NetError> {
        {
            let mut g = self.lock();
            if !g.installed {
                Network::enable_forwarding()?;
                self.net.install_table(&[], &[])?;
                g.installed = true;
            }
        }
        let slot = self.alloc()?;
        match self.net.build(slot, true) {
            Ok(l) => Ok(l),
            Err(e) => {
                self.lock().used.remove(&slot);
                Err(e)
            }
        }
    }

    /// A network in `mode` for a new sandbox: a pooled one (pre-built in `open`,
    /// moved to `allow` in one nft transaction when asked), or one built now.
    pub fn acquire(&self, mode: NetMode) -> Result<Lease, NetError> {
        let ready = self.lock().ready.pop();
        let lease = match ready {
            Some(slot) => self.net.lease(slot),
            None => self.build_new()?,
        };
        if mode != NetMode::Open {
            if let Err(e) = self.net.set_mode(lease.slot, Some(mode)) {
                self.release(lease.slot);
                return Err(e);
            }
        }
        Ok(lease)
    }

    /// Removes a sandbox's network (veth, namespace, set element) and frees its slot.
    pub fn release(&self, slot: u32) {
        self.net.remove(slot);
        let mut g = self.lock();
        g.ready.retain(|&s| s != slot);
        g.used.remove(&slot);
    }

    /// Whether fewer than the target are ready.
    pub fn wants_refill(&self) -> bool {
        self.lock().ready.len() < self.target
    }

    /// Builds namespaces until `target` are ready; stops at the first error.
    pub fn refill(&self) -> Result<(), NetError> {
        while self.wants_refill() && !self.closed.load(Ordering::Acquire) {
            let l = self.build_new()?;
            self.lock().ready.push(l.slot);
        }
        if self.closed.load(Ordering::Acquire) {
            self.shutdown();
        }
        Ok(())
    }

    /// Removes the ready namespaces; removes the table too when no sandbox holds a
    /// network any more (sandboxes kept across a restart keep theirs).
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let ready: Vec<u32> = std::mem::take(&mut self.lock().ready);
        for s in ready {
            self.release(s);
        }
        let mut g = self.lock();
        if g.used.is_empty() && g.installed {
            self.net.remove_table();
            g.installed = false;
        }
    }
}
