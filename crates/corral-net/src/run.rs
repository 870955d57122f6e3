//! The network of one `corral run --net open|allow=...`: built before the run, removed
//! after it. For mode allow the run's egress proxy (hosted by a helper process: the
//! run itself must stay single-threaded to fork the sandbox) gives its ports.
//!
//! Concurrent runs share no table: each takes a slot of the run pool by locking
//! `LOCK_DIR/run-<slot>.lock` (flock: the kernel drops the lock when the run dies, even
//! by SIGKILL) and uses the tag `r<slot>`. Whatever a killed run left of a slot is
//! removed by the next run that takes the slot.

use std::fs::File;
use std::path::Path;

use crate::addr::Cidr;
use crate::exec::RealExec;
use crate::network::{Lease, NetConfig, NetMode, Network};
use crate::proxy::EgressPorts;
use crate::NetError;

/// A run's network; dropping it removes everything.
#[derive(Debug)]
pub struct RunNet {
    net: Network,
    lease: Lease,
    _lock: File,
}

impl RunNet {
    /// Takes a free slot of `cidr` (locks under `lock_dir`), removes leftovers of a
    /// previous holder, and builds a network in it: mode `open`, or mode `allow`
    /// through the egress proxy listening on `egress` when given.
    pub fn create(
        lock_dir: &Path,
        cidr: Cidr,
        deny: Vec<Cidr>,
        egress: Option<EgressPorts>,
    ) -> Result<RunNet, NetError> {
        std::fs::create_dir_all(lock_dir).map_err(|source| NetError::Io {
            what: format!("creating {}", lock_dir.display()),
            source,
        })?;
        Network::enable_forwarding()?;
        let slots = cidr.slots();
        let first = std::process::id() % slots;
        for i in 0..slots {
            let slot = (first + i) % slots;
            let path = lock_dir.join(format!("run-{slot}.lock"));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| NetError::Io {
                    what: format!("opening {}", path.display()),
                    source,
                })?;
            if file.try_lock().is_err() {
                continue;
            }
            let net = Network::new(
                NetConfig {
                    tag: format!("r{slot}"),
                    cidr,
                    deny: deny.clone(),
                    egress,
                },
                Box::new(RealExec),
            )?;
            net.recover(&[], &[])?;
            let mode = if egress.is_some() {
                NetMode::Allow
            } else {
                NetMode::Open
            };
            let built = net.build(slot, Some(mode));
            let lease = match built {
                Ok(l) => l,
                Err(e) => {
                    net.remove(slot);
                    net.remove_table();
                    return Err(e);
                }
            };
            return Ok(RunNet {
                net,
                lease,
                _lock: file,
            });
        }
        Err(NetError::Exhausted(cidr.to_string()))
    }

    /// The network.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for RunNet {
    fn drop(&mut self) {
        self.net.remove(self.lease.slot);
        self.net.remove_table();
    }
}
