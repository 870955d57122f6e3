//! The nftables table of one daemon (or one run): `inet corral_<tag>`.
//!
//! Enforcement is on the host side of each sandbox's veth, keyed by the veth's name:
//! every host-side veth of this daemon is `crl<tag>h<slot>`, matched by the wildcard
//! `crl<tag>h*`; the set `open` holds the ones whose sandbox is in mode `open`.
//!
//! - input: nothing from a sandbox veth reaches the host itself (any host address,
//!   any protocol, IPv4 and IPv6).
//! - forward: replies to a sandbox's own connections pass; nothing else enters a
//!   sandbox. From a sandbox: IPv4 only; never to a denied destination (the pool
//!   itself = other sandboxes, loopback, link-local incl. 169.254.169.254, multicast,
//!   the configured deny ranges); then members of `open` pass, every other veth of ours
//!   is dropped (default deny: a veth in no mode's set reaches nothing).
//! - postrouting: the pool's traffic leaving through another interface is
//!   masqueraded.
//!
//! Phase 2 adds a set per further mode (allowlist: traffic redirected to the daemon's
//! proxy and resolver) ahead of the final drop; the structure stays the same.

use crate::addr::Cidr;

/// Destinations no sandbox may reach in any mode, besides the pool itself and the
/// configured deny ranges.
pub(crate) const ALWAYS_DENIED: &[&str] =
    &["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3"];

/// The table's name.
pub(crate) fn table(tag: &str) -> String {
    format!("corral_{tag}")
}

/// The wildcard matching every host-side veth of the tag.
pub(crate) fn veth_wildcard(tag: &str) -> String {
    format!("crl{tag}h*")
}

/// A script for `nft -f -` that (re)creates the table atomically with `open` holding
/// `open_ifs`.
pub(crate) fn table_script(tag: &str, pool: &Cidr, deny: &[Cidr], open_ifs: &[String]) -> String {
    let t = table(tag);
    let w = veth_wildcard(tag);
    let mut denied: Vec<String> = ALWAYS_DENIED.iter().map(|s| s.to_string()).collect();
    denied.push(pool.to_string());
    denied.extend(deny.iter().map(Cidr::to_string));
    let open = if open_ifs.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = open_ifs.iter().map(|n| format!("\"{n}\"")).collect();
        format!("        elements = {{ {} }}\n", names.join(", "))
    };
    format!(
        "table inet {t} {{}}\n\
         delete table inet {t}\n\
         table inet {t} {{\n\
         \x20   set open {{\n\
         \x20       type ifname\n\
         {open}\
         \x20   }}\n\
         \x20   set deny4 {{\n\
         \x20       type ipv4_addr\n\
         \x20       flags interval\n\
         \x20       auto-merge\n\
         \x20       elements = {{ {denied} }}\n\
         \x20   }}\n\
         \x20   chain input {{\n\
         \x20       type filter hook input priority -10; policy accept;\n\
         \x20       iifname \"{w}\" drop\n\
         \x20   }}\n\
         \x20   chain forward {{\n\
         \x20       type filter hook forward priority -10; policy accept;\n\
         \x20       oifname \"{w}\" ct state established,related accept\n\
         \x20       oifname \"{w}\" drop\n\
         \x20       iifname \"{w}\" meta nfproto != ipv4 drop\n\
         \x20       iifname \"{w}\" ip daddr @deny4 drop\n\
         \x20       iifname @open accept\n\
         \x20       iifname \"{w}\" drop\n\
         \x20   }}\n\
         \x20   chain postrouting {{\n\
         \x20       type nat hook postrouting priority srcnat; policy accept;\n\
         \x20       ip saddr {pool} oifname != \"{w}\" masquerade\n\
         \x20   }}\n\
         }}\n",
        denied = denied.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_denies_before_it_allows() {
        let pool = Cidr::parse_pool("10.203.0.0/16").unwrap();
        let deny = [Cidr::parse("192.168.0.0/16").unwrap()];
        let s = table_script("ab12c", &pool, &deny, &["crlab12ch3".into()]);
        assert!(s.starts_with("table inet corral_ab12c {}\ndelete table inet corral_ab12c\n"));
        assert!(s.contains("elements = { \"crlab12ch3\" }"));
        assert!(s.contains(
            "elements = { 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3, 10.203.0.0/16, 192.168.0.0/16 }"
        ));
        let pos = |needle: &str| s.find(needle).unwrap();
        assert!(pos("ip daddr @deny4 drop") < pos("iifname @open accept"));
        assert!(pos("iifname @open accept") < s.rfind("iifname \"crlab12ch*\" drop").unwrap());
        assert!(s.contains("chain input {\n        type filter hook input priority -10; policy accept;\n        iifname \"crlab12ch*\" drop"));
        assert!(s.contains("ip saddr 10.203.0.0/16 oifname != \"crlab12ch*\" masquerade"));
    }

    #[test]
    fn empty_open_set_has_no_elements_line() {
        let pool = Cidr::parse_pool("10.203.0.0/24").unwrap();
        let s = table_script("r3", &pool, &[], &[]);
        assert!(s.contains("set open {\n        type ifname\n    }"));
    }
}
