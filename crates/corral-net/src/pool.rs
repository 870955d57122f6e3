//! The daemon's pool of pre-built sandbox networks, so that a create with networking
//! costs no more than taking one off a list. A namespace is pre-built in the mode it
//! will serve (its veth already in that mode's nft set: nobody is inside it until a
//! sandbox joins it), one list per mode, so taking one runs no command; a create whose
//! mode's list is empty takes one of the other mode and moves it (one nft transaction),
//! or builds one.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::network::{Lease, NetMode, Network};
use crate::NetError;

#[derive(Debug, Default)]
struct Inner {
    /// Built, unassigned slots in `open`.
    ready: Vec<u32>,
    /// Built, unassigned slots in `allow` (only while the egress proxy runs).
    ready_allow: Vec<u32>,
    /// Every slot that exists or is being built (ready, leased, in progress).
    used: BTreeSet<u32>,
    /// Whether the table exists (made at start only when there was something to take
    /// over, else by the first build: a daemon that never builds a network leaves
    /// nothing on the host).
    installed: bool,
}

impl Inner {
    fn ready(&mut self, mode: NetMode) -> &mut Vec<u32> {
        match mode {
            NetMode::Open => &mut self.ready,
            NetMode::Allow => &mut self.ready_allow,
        }
    }
}

/// The other mode.
fn other(mode: NetMode) -> NetMode {
    match mode {
        NetMode::Open => NetMode::Allow,
        NetMode::Allow => NetMode::Open,
    }
}

/// Pre-built namespaces per mode, and the slots in use.
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
    /// `target` namespaces ready per mode (see [`NetPool::refill`]).
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
                ready_allow: Vec::new(),
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

    /// The modes kept ready: `open`, and `allow` while the egress proxy runs.
    fn modes(&self) -> &'static [NetMode] {
        if self.net.config().egress.is_some() {
            &[NetMode::Open, NetMode::Allow]
        } else {
            &[NetMode::Open]
        }
    }

    fn build_new(&self, mode: NetMode) -> Result<Lease, NetError> {
        {
            let mut g = self.lock();
            if !g.installed {
                Network::enable_forwarding()?;
                self.net.install_table(&[], &[])?;
                g.installed = true;
            }
        }
        let slot = self.alloc()?;
        match self.net.build(slot, Some(mode)) {
            Ok(l) => Ok(l),
            Err(e) => {
                self.lock().used.remove(&slot);
                Err(e)
            }
        }
    }

    /// A network in `mode` for a new sandbox: a pooled one of that mode (no command
    /// runs), else a pooled one of the other mode moved in one nft transaction, else
    /// one built now.
    pub fn acquire(&self, mode: NetMode) -> Result<Lease, NetError> {
        if !self.modes().contains(&mode) {
            return Err(NetError::Config(
                "mode allow needs the egress proxy, which is not running".into(),
            ));
        }
        let (same, moved) = {
            let mut g = self.lock();
            match g.ready(mode).pop() {
                Some(s) => (Some(s), None),
                None => (None, g.ready(other(mode)).pop()),
            }
        };
        if let Some(slot) = same {
            return Ok(self.net.lease(slot));
        }
        let Some(slot) = moved else {
            return self.build_new(mode);
        };
        if let Err(e) = self.net.set_mode(slot, Some(mode)) {
            self.release(slot);
            return Err(e);
        }
        Ok(self.net.lease(slot))
    }

    /// Removes a sandbox's network (veth, namespace, set element) and frees its slot.
    pub fn release(&self, slot: u32) {
        self.net.remove(slot);
        let mut g = self.lock();
        g.ready.retain(|&s| s != slot);
        g.ready_allow.retain(|&s| s != slot);
        g.used.remove(&slot);
    }

    /// Whether fewer than the target are ready in some mode.
    pub fn wants_refill(&self) -> bool {
        let mut g = self.lock();
        self.modes().iter().any(|&m| g.ready(m).len() < self.target)
    }

    /// Builds namespaces until `target` are ready in each mode (`open` first);
    /// stops at the first error.
    pub fn refill(&self) -> Result<(), NetError> {
        for &mode in self.modes() {
            while self.lock().ready(mode).len() < self.target
                && !self.closed.load(Ordering::Acquire)
            {
                let l = self.build_new(mode)?;
                self.lock().ready(mode).push(l.slot);
            }
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
        let ready: Vec<u32> = {
            let mut g = self.lock();
            let mut r = std::mem::take(&mut g.ready);
            r.append(&mut g.ready_allow);
            r
        };
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::exec::fake::Recorder;
    use crate::network::NetConfig;
    use crate::{Cidr, EgressPorts};

    /// A pool over the recording fake; `installed` so no sysctl is touched.
    fn pool(egress: bool) -> (NetPool, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let net = Network::new(
            NetConfig {
                tag: "pt1".into(),
                cidr: Cidr::parse_pool("10.203.0.0/24").unwrap(),
                deny: vec![],
                egress: egress.then_some(EgressPorts { proxy: 1, dns: 2 }),
            },
            Box::new(rec.clone()),
        )
        .unwrap();
        let p = NetPool {
            net,
            target: 2,
            inner: Mutex::new(Inner {
                installed: true,
                ..Default::default()
            }),
            closed: AtomicBool::new(false),
        };
        (p, rec)
    }

    fn nft_calls(rec: &Recorder) -> Vec<String> {
        let calls = rec.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.starts_with("nft"))
            .cloned()
            .collect()
    }

    #[test]
    fn refill_builds_each_mode_in_its_set_and_acquire_runs_no_command() {
        let (p, rec) = pool(true);
        assert!(p.wants_refill());
        p.refill().unwrap();
        assert!(!p.wants_refill());
        let (open, allow) = {
            let g = p.lock();
            (g.ready.clone(), g.ready_allow.clone())
        };
        assert_eq!(open.len(), 2);
        assert_eq!(allow.len(), 2);
        let nft = nft_calls(&rec);
        // Each namespace went straight into its own mode's set, allow ones out of open.
        assert_eq!(nft.len(), 4);
        for s in &allow {
            let e = format!("{{ \"crlpt1h{s}\" }}");
            assert!(nft.iter().any(|c| c
                .contains(&format!("add element inet corral_pt1 allow {e}"))
                && c.contains(&format!("delete element inet corral_pt1 open {e}"))));
        }
        let before = rec.calls.lock().unwrap().len();
        let a = p.acquire(NetMode::Allow).unwrap();
        let o = p.acquire(NetMode::Open).unwrap();
        assert_eq!(
            rec.calls.lock().unwrap().len(),
            before,
            "a pooled acquire runs nothing"
        );
        assert!(allow.contains(&a.slot));
        assert!(open.contains(&o.slot));
        assert!(p.wants_refill());
    }

    #[test]
    fn an_empty_mode_takes_the_other_and_moves_it_else_builds() {
        let (p, rec) = pool(true);
        p.lock().ready.push(7);
        p.lock().used.insert(7);
        let l = p.acquire(NetMode::Allow).unwrap();
        assert_eq!(l.slot, 7);
        let nft = nft_calls(&rec);
        assert_eq!(nft.len(), 1);
        assert!(nft[0].contains("add element inet corral_pt1 allow { \"crlpt1h7\" }"));
        assert!(nft[0].contains("delete element inet corral_pt1 open { \"crlpt1h7\" }"));
        // Nothing ready at all: built now, in the asked mode.
        let l = p.acquire(NetMode::Allow).unwrap();
        assert_ne!(l.slot, 7);
        let calls = rec.calls.lock().unwrap().clone();
        assert!(calls.iter().any(|c| c.starts_with("ip -batch")));
        assert!(calls
            .last()
            .unwrap()
            .contains("add element inet corral_pt1 allow"));
    }

    #[test]
    fn without_the_proxy_only_open_is_kept_and_allow_is_refused() {
        let (p, rec) = pool(false);
        p.refill().unwrap();
        let (open, allow) = {
            let g = p.lock();
            (g.ready.len(), g.ready_allow.len())
        };
        assert_eq!((open, allow), (2, 0));
        let before = rec.calls.lock().unwrap().len();
        let e = p.acquire(NetMode::Allow).unwrap_err();
        assert!(e.to_string().contains("egress proxy"), "{e}");
        // Refused before anything was taken or moved.
        assert_eq!(p.lock().ready.len(), 2);
        assert_eq!(rec.calls.lock().unwrap().len(), before);
    }

    #[test]
    fn release_and_shutdown_clear_both_lists() {
        let (p, rec) = pool(true);
        p.refill().unwrap();
        let one = p.lock().ready_allow[0];
        p.release(one);
        assert!(!p.lock().ready_allow.contains(&one));
        assert!(!p.lock().used.contains(&one));
        p.shutdown();
        let g = p.lock();
        assert!(g.ready.is_empty() && g.ready_allow.is_empty() && g.used.is_empty());
        assert!(!g.installed);
        let last = rec.calls.lock().unwrap().last().unwrap().clone();
        assert_eq!(last, "nft delete table inet corral_pt1");
    }
}
