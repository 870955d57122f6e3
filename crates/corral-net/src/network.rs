//! One daemon's (or one run's) sandbox networks: named network namespaces made with
//! `ip netns` (a bind mount under /run/netns), a veth pair per namespace, and the
//! nftables table of [`crate::rules`].
//!
//! Names, for tag `T` and slot `n`: namespace `crlT-n` (file /run/netns/crlT-n),
//! host-side veth `crlThn`, the sandbox's end `eth0`, table `inet corral_T`. The tag is
//! unique per data directory ([`crate::tag_for`]), so everything of a daemon is found
//! by name after a crash and nothing of another daemon is touched.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::addr::{Cidr, SlotAddrs};
use crate::exec::Exec;
use crate::proxy::EgressPorts;
use crate::{rules, NetError};

/// Where `ip netns` keeps its namespace files.
pub const NETNS_DIR: &str = "/run/netns";

/// Linux's limit on interface names (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// What a [`Network`] is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Unique per daemon: 1 to 8 lowercase ASCII letters or digits.
    pub tag: String,
    /// The address pool.
    pub cidr: Cidr,
    /// Destinations no sandbox may reach, on top of the pool itself, loopback,
    /// link-local and multicast.
    pub deny: Vec<Cidr>,
    /// The egress proxy's ports: with them the table has mode `allow` (set, redirects).
    pub egress: Option<EgressPorts>,
}

/// The mode a sandbox network's veth is in (which nft set holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// In `open`: outbound except the denied destinations.
    Open,
    /// In `allow`: everything redirected to the egress proxy and resolver.
    Allow,
}

/// A sandbox's network, as its user needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The slot in the pool.
    pub slot: u32,
    /// The namespace file to join (`setns`).
    pub netns: PathBuf,
    /// The host-side veth.
    pub host_if: String,
    /// The addresses.
    pub addrs: SlotAddrs,
}

/// Builds and removes namespaces, veths and the table of one tag.
#[derive(Debug)]
pub struct Network {
    cfg: NetConfig,
    exec: Box<dyn Exec>,
}

impl Network {
    /// Checks the configuration (tag, and that every interface name fits in 15 bytes).
    pub fn new(cfg: NetConfig, exec: Box<dyn Exec>) -> Result<Network, NetError> {
        let t = &cfg.tag;
        if t.is_empty()
            || t.len() > 8
            || !t
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(NetError::Config(format!(
                "network tag {t:?} must be 1 to 8 lowercase letters or digits"
            )));
        }
        let longest = host_if(t, cfg.cidr.slots() - 1);
        if longest.len() > IFNAME_MAX {
            return Err(NetError::Config(format!(
                "the pool {} has too many addresses for interface names of {IFNAME_MAX} bytes \
                 (e.g. {longest}); use a smaller pool",
                cfg.cidr
            )));
        }
        Ok(Network { cfg, exec })
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// What slot `slot` is called and addressed.
    pub fn lease(&self, slot: u32) -> Lease {
        Lease {
            slot,
            netns: PathBuf::from(NETNS_DIR).join(netns_name(&self.cfg.tag, slot)),
            host_if: host_if(&self.cfg.tag, slot),
            addrs: self.cfg.cidr.slot(slot),
        }
    }

    /// Turns on IPv4 forwarding (net.ipv4.ip_forward = 1), which masquerading needs.
    pub fn enable_forwarding() -> Result<(), NetError> {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| NetError::Io {
            what: "setting net.ipv4.ip_forward to 1".into(),
            source,
        })
    }

    /// (Re)creates the table with `open` holding the veths of `open_slots` (and
    /// `allow` those of `allow_slots`).
    pub fn install_table(&self, open_slots: &[u32], allow_slots: &[u32]) -> Result<(), NetError> {
        let names = |slots: &[u32]| -> Vec<String> {
            slots.iter().map(|&s| host_if(&self.cfg.tag, s)).collect()
        };
        let (open, allow) = (names(open_slots), names(allow_slots));
        if !allow.is_empty() && self.cfg.egress.is_none() {
            return Err(NetError::Config(
                "mode allow needs the egress proxy, which is not running".into(),
            ));
        }
        let script = rules::table_script(
            &self.cfg.tag,
            &self.cfg.cidr,
            &rules::TableSpec {
                deny: &self.cfg.deny,
                open_ifs: &open,
                allow_ifs: &allow,
                egress: self.cfg.egress,
            },
        );
        self.exec.run(
            "installing corral's nftables table",
            "nft",
            &["-f", "-"],
            Some(&script),
        )?;
        Ok(())
    }

    /// Whether the table exists (a previous daemon's, say).
    pub fn table_exists(&self) -> bool {
        self.exec
            .run(
                "looking for corral's nftables table",
                "nft",
                &["list", "table", "inet", &rules::table(&self.cfg.tag)],
                None,
            )
            .is_ok()
    }

    /// Removes the table (nothing if it is not there).
    pub fn remove_table(&self) {
        let _ = self.exec.run(
            "removing corral's nftables table",
            "nft",
            &["delete", "table", "inet", &rules::table(&self.cfg.tag)],
            None,
        );
    }

    /// Builds slot `slot`: the namespace (loopback up), the veth pair with its
    /// addresses, the sandbox's default route via the host end; its veth in the set of
    /// `mode` (none: in no set, so it reaches nothing yet). On failure whatever was
    /// made is removed again.
    pub fn build(&self, slot: u32, mode: Option<NetMode>) -> Result<Lease, NetError> {
        let l = self.lease(slot);
        let ns = netns_name(&self.cfg.tag, slot);
        let root = format!(
            "netns add {ns}\n\
             link add {h} type veth peer name eth0 netns {ns}\n\
             addr add {host}/30 dev {h}\n\
             link set {h} up\n",
            h = l.host_if,
            host = l.addrs.host,
        );
        let inside = format!(
            "addr add {sb}/30 dev eth0\n\
             link set lo up\n\
             link set eth0 up\n\
             route add default via {host}\n",
            sb = l.addrs.sandbox,
            host = l.addrs.host,
        );
        let result = (|| {
            self.exec.run(
                "creating a sandbox network namespace and veth pair",
                "ip",
                &["-batch", "-"],
                Some(&root),
            )?;
            self.exec.run(
                "configuring a sandbox network namespace",
                "ip",
                &["-n", &ns, "-batch", "-"],
                Some(&inside),
            )?;
            if mode.is_some() {
                self.set_mode(slot, mode)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(l),
            Err(e) => {
                self.remove(slot);
                Err(e)
            }
        }
    }

    /// Puts slot's veth in exactly the set of `mode` (none: in no set, so it reaches
    /// nothing), atomically (one `nft -f` transaction; `add` before `delete` so a
    /// missing element is no error).
    pub fn set_mode(&self, slot: u32, mode: Option<NetMode>) -> Result<(), NetError> {
        let t = rules::table(&self.cfg.tag);
        let e = format!("{{ \"{}\" }}", host_if(&self.cfg.tag, slot));
        let mut sets = vec![("open", mode == Some(NetMode::Open))];
        if self.cfg.egress.is_some() {
            sets.push(("allow", mode == Some(NetMode::Allow)));
        } else if mode == Some(NetMode::Allow) {
            return Err(NetError::Config(
                "mode allow needs the egress proxy, which is not running".into(),
            ));
        }
        let mut script = String::new();
        for (set, member) in sets {
            script.push_str(&format!("add element inet {t} {set} {e}\n"));
            if !member {
                script.push_str(&format!("delete element inet {t} {set} {e}\n"));
            }
        }
        self.exec
            .run(
                "changing a sandbox's network mode",
                "nft",
                &["-f", "-"],
                Some(&script),
            )
            .map(|_| ())
    }

    /// Removes everything of slot `slot`: its set element, veth pair and namespace.
    /// Best effort and idempotent: a part that is already gone is skipped.
    pub fn remove(&self, slot: u32) {
        let _ = self.set_mode(slot, None);
        self.remove_links(&[slot]);
    }

    fn remove_links(&self, slots: &[u32]) {
        if slots.is_empty() {
            return;
        }
        let mut script = String::new();
        for &s in slots {
            script.push_str(&format!(
                "link del {}\nnetns del {}\n",
                host_if(&self.cfg.tag, s),
                netns_name(&self.cfg.tag, s)
            ));
        }
        // -force: go on after a line fails (a part already gone).
        let _ = self.exec.run(
            "removing sandbox networks",
            "ip",
            &["-force", "-batch", "-"],
            Some(&script),
        );
    }

    /// Slots of this tag that exist on the host (a veth or a namespace file).
    pub fn existing_slots(&self) -> BTreeSet<u32> {
        let mut found = BTreeSet::new();
        let veth_prefix = format!("crl{}h", self.cfg.tag);
        if let Ok(out) = self
            .exec
            .run("listing interfaces", "ip", &["-o", "link", "show"], None)
        {
            for line in out.lines() {
                // "12: crlab12ch3@if11: <BROADCAST,..."
                let name = line.split(": ").nth(1).unwrap_or("");
                let name = name.split('@').next().unwrap_or("");
                if let Some(n) = name.strip_prefix(&veth_prefix).and_then(|d| d.parse().ok()) {
                    found.insert(n);
                }
            }
        }
        let ns_prefix = format!("crl{}-", self.cfg.tag);
        if let Ok(rd) = std::fs::read_dir(NETNS_DIR) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(n) = name.strip_prefix(&ns_prefix).and_then(|d| d.parse().ok()) {
                    found.insert(n);
                }
            }
        }
        found
    }

    /// After a crash: rebuilds the table with `keep_open` in `open` and `keep_allow`
    /// in `allow` (slots of sandboxes still alive), and removes every other slot of
    /// this tag that exists.
    pub fn recover(&self, keep_open: &[u32], keep_allow: &[u32]) -> Result<(), NetError> {
        self.install_table(keep_open, keep_allow)?;
        let stale: Vec<u32> = self
            .existing_slots()
            .into_iter()
            .filter(|s| !keep_open.contains(s) && !keep_allow.contains(s))
            .collect();
        self.remove_links(&stale);
        Ok(())
    }
}

/// The namespace name of a slot.
fn netns_name(tag: &str, slot: u32) -> String {
    format!("crl{tag}-{slot}")
}

/// The host-side veth of a slot.
fn host_if(tag: &str, slot: u32) -> String {
    format!("crl{tag}h{slot}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::exec::fake::Recorder;

    fn net(tag: &str, cidr: &str, links: &str) -> (Network, Arc<Recorder>) {
        let rec = Arc::new(Recorder {
            links: links.into(),
            ..Default::default()
        });
        let n = Network::new(
            NetConfig {
                tag: tag.into(),
                cidr: Cidr::parse_pool(cidr).unwrap(),
                deny: vec![],
                egress: None,
            },
            Box::new(rec.clone()),
        )
        .unwrap();
        (n, rec)
    }

    #[test]
    fn names_fit_and_tags_are_checked() {
        let cfg = |tag: &str, cidr: &str| NetConfig {
            tag: tag.into(),
            cidr: Cidr::parse_pool(cidr).unwrap(),
            deny: vec![],
            egress: None,
        };
        assert!(Network::new(cfg("ab12c", "10.203.0.0/16"), Box::new(crate::RealExec)).is_ok());
        assert!(Network::new(cfg("r16383", "10.204.0.0/16"), Box::new(crate::RealExec)).is_ok());
        assert!(Network::new(cfg("ab12c", "10.0.0.0/8"), Box::new(crate::RealExec)).is_err());
        assert!(Network::new(cfg("AB", "10.0.0.0/24"), Box::new(crate::RealExec)).is_err());
        assert!(Network::new(cfg("a-b", "10.0.0.0/24"), Box::new(crate::RealExec)).is_err());
        let (n, _) = net("ab12c", "10.203.0.0/16", "");
        let l = n.lease(16383);
        assert_eq!(l.host_if, "crlab12ch16383");
        assert!(l.host_if.len() <= 15);
        assert_eq!(l.netns, PathBuf::from("/run/netns/crlab12c-16383"));
    }

    #[test]
    fn build_makes_namespace_veth_route_and_open_element() {
        let (n, rec) = net("ab12c", "10.203.0.0/16", "");
        let l = n.build(1, Some(NetMode::Open)).unwrap();
        assert_eq!(l.addrs.sandbox.to_string(), "10.203.0.6");
        let calls = rec.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                "ip -batch - <<\nnetns add crlab12c-1\nlink add crlab12ch1 type veth peer name eth0 netns crlab12c-1\naddr add 10.203.0.5/30 dev crlab12ch1\nlink set crlab12ch1 up\n".to_string(),
                "ip -n crlab12c-1 -batch - <<\naddr add 10.203.0.6/30 dev eth0\nlink set lo up\nlink set eth0 up\nroute add default via 10.203.0.5\n".to_string(),
                "nft -f - <<\nadd element inet corral_ab12c open { \"crlab12ch1\" }\n".to_string(),
            ]
        );
    }

    #[test]
    fn recover_keeps_live_slots_and_removes_the_rest() {
        let links = "1: lo: <LOOPBACK,UP>\n7: crlab12ch3@if2: <UP>\n8: crlab12ch4@if2: <UP>\n9: crlab12dh9@if2: <UP>\n10: crlab12ch@if1: x\n";
        let (n, rec) = net("ab12c", "10.203.0.0/16", links);
        n.recover(&[3], &[]).unwrap();
        let calls = rec.calls.lock().unwrap().clone();
        assert!(calls[0].starts_with("nft -f - <<\ntable inet corral_ab12c {}\ndelete table"));
        assert!(calls[0].contains("elements = { \"crlab12ch3\" }"));
        assert_eq!(calls[1], "ip -o link show");
        assert_eq!(
            calls[2],
            "ip -force -batch - <<\nlink del crlab12ch4\nnetns del crlab12c-4\n"
        );
        assert_eq!(calls.len(), 3);
    }

    #[test]
    fn set_mode_moves_a_veth_between_sets_atomically() {
        let rec = Arc::new(Recorder::default());
        let n = Network::new(
            NetConfig {
                tag: "ab12c".into(),
                cidr: Cidr::parse_pool("10.203.0.0/24").unwrap(),
                deny: vec![],
                egress: Some(EgressPorts { proxy: 1, dns: 2 }),
            },
            Box::new(rec.clone()),
        )
        .unwrap();
        n.set_mode(4, Some(NetMode::Allow)).unwrap();
        n.recover(&[1], &[4]).unwrap();
        let calls = rec.calls.lock().unwrap().clone();
        let e = "{ \"crlab12ch4\" }";
        assert_eq!(
            calls[0],
            format!(
                "nft -f - <<\nadd element inet corral_ab12c open {e}\n\
                 delete element inet corral_ab12c open {e}\n\
                 add element inet corral_ab12c allow {e}\n"
            )
        );
        assert!(calls[1]
            .contains("set allow {\n        type ifname\n        elements = { \"crlab12ch4\" }"));
        assert!(calls[1]
            .contains("set open {\n        type ifname\n        elements = { \"crlab12ch1\" }"));
        // Without the proxy, mode allow is refused rather than left open.
        let (plain, _) = net("ab12c", "10.203.0.0/24", "");
        assert!(plain.set_mode(4, Some(NetMode::Allow)).is_err());
        assert!(plain.install_table(&[], &[4]).is_err());
    }

    #[test]
    fn remove_drops_element_then_links() {
        let (n, rec) = net("ab12c", "10.203.0.0/24", "");
        n.remove(2);
        let calls = rec.calls.lock().unwrap().clone();
        assert_eq!(
            calls[0],
            "nft -f - <<\nadd element inet corral_ab12c open { \"crlab12ch2\" }\ndelete element inet corral_ab12c open { \"crlab12ch2\" }\n"
        );
        assert_eq!(
            calls[1],
            "ip -force -batch - <<\nlink del crlab12ch2\nnetns del crlab12c-2\n"
        );
    }
}
