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
//! Mode `allow` (the set `allow`, present when the table is made with the egress
//! proxy's ports):
//! - prerouting (dstnat): from a member, UDP to port 53 (any address) is redirected to
//!   the resolver's port, every other IPv4 TCP connection (any address, any port) to
//!   the proxy's port, both on the veth's host address; SO_ORIGINAL_DST gives the
//!   proxy the address the sandbox asked for.
//! - input: from a member, exactly those two ports are accepted ahead of the drop;
//!   the two ports are dropped from every other interface (the proxy also serves only
//!   registered sandbox addresses).
//! - forward: members are in no accepting set, so what was not redirected (other UDP,
//!   ICMP, IPv6, anything) hits the final drop: nothing leaves directly.

use crate::addr::Cidr;
use crate::proxy::EgressPorts;

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

fn elements(ifs: &[String]) -> String {
    if ifs.is_empty() {
        return String::new();
    }
    let names: Vec<String> = ifs.iter().map(|n| format!("\"{n}\"")).collect();
    format!("        elements = {{ {} }}\n", names.join(", "))
}

/// What goes into a table besides the fixed parts.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableSpec<'a> {
    pub(crate) deny: &'a [Cidr],
    pub(crate) open_ifs: &'a [String],
    pub(crate) allow_ifs: &'a [String],
    /// The egress proxy's ports; without them there is no `allow` set.
    pub(crate) egress: Option<EgressPorts>,
}

/// A script for `nft -f -` that (re)creates the table atomically with `open` holding
/// `open_ifs` (and `allow` holding `allow_ifs`, with the redirects, when `egress`).
pub(crate) fn table_script(tag: &str, pool: &Cidr, spec: &TableSpec<'_>) -> String {
    let (deny, open_ifs) = (spec.deny, spec.open_ifs);
    let t = table(tag);
    let w = veth_wildcard(tag);
    let mut denied: Vec<String> = ALWAYS_DENIED.iter().map(|s| s.to_string()).collect();
    denied.push(pool.to_string());
    denied.extend(deny.iter().map(Cidr::to_string));
    let open = elements(open_ifs);
    let (allow_set, allow_input, prerouting) = match spec.egress {
        None => (String::new(), String::new(), String::new()),
        Some(EgressPorts { proxy, dns }) => (
            format!(
                "    set allow {{\n        type ifname\n{}    }}\n",
                elements(spec.allow_ifs)
            ),
            format!(
                "        iifname @allow meta nfproto ipv4 tcp dport {proxy} accept\n\
                 \x20       iifname @allow meta nfproto ipv4 udp dport {dns} accept\n\
                 \x20       tcp dport {proxy} drop\n\
                 \x20       udp dport {dns} drop\n"
            ),
            format!(
                "    chain prerouting {{\n\
                 \x20       type nat hook prerouting priority dstnat; policy accept;\n\
                 \x20       iifname @allow meta nfproto ipv4 udp dport 53 redirect to :{dns}\n\
                 \x20       iifname @allow meta nfproto ipv4 meta l4proto tcp redirect to :{proxy}\n\
                 \x20   }}\n"
            ),
        ),
    };
    format!(
        "table inet {t} {{}}\n\
         delete table inet {t}\n\
         table inet {t} {{\n\
         \x20   set open {{\n\
         \x20       type ifname\n\
         {open}\
         \x20   }}\n\
         {allow_set}\
         \x20   set deny4 {{\n\
         \x20       type ipv4_addr\n\
         \x20       flags interval\n\
         \x20       auto-merge\n\
         \x20       elements = {{ {denied} }}\n\
         \x20   }}\n\
         \x20   chain input {{\n\
         \x20       type filter hook input priority -10; policy accept;\n\
         {allow_input}\
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
         {prerouting}\
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
        let open = ["crlab12ch3".to_string()];
        let s = table_script(
            "ab12c",
            &pool,
            &TableSpec {
                deny: &deny,
                open_ifs: &open,
                ..Default::default()
            },
        );
        assert!(!s.contains("allow") && !s.contains("redirect"));
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
        let s = table_script("r3", &pool, &TableSpec::default());
        assert!(s.contains("set open {\n        type ifname\n    }"));
    }

    #[test]
    fn allow_mode_redirects_to_the_proxy_and_admits_only_its_ports() {
        let pool = Cidr::parse_pool("10.203.0.0/16").unwrap();
        let allow = ["crlab12ch5".to_string()];
        let s = table_script(
            "ab12c",
            &pool,
            &TableSpec {
                allow_ifs: &allow,
                egress: Some(EgressPorts {
                    proxy: 40001,
                    dns: 40002,
                }),
                ..Default::default()
            },
        );
        assert!(s.contains(
            "set allow {\n        type ifname\n        elements = { \"crlab12ch5\" }\n    }"
        ));
        assert!(s.contains(
            "chain prerouting {\n        type nat hook prerouting priority dstnat; policy accept;\n        \
             iifname @allow meta nfproto ipv4 udp dport 53 redirect to :40002\n        \
             iifname @allow meta nfproto ipv4 meta l4proto tcp redirect to :40001\n    }"
        ));
        let pos = |needle: &str| s.find(needle).unwrap();
        // The proxy's and resolver's ports are admitted from members only, ahead of
        // the drop of everything else from a sandbox veth; elsewhere they are dropped.
        assert!(
            pos("iifname @allow meta nfproto ipv4 tcp dport 40001 accept")
                < pos("tcp dport 40001 drop")
        );
        assert!(
            pos("iifname @allow meta nfproto ipv4 udp dport 40002 accept")
                < pos("udp dport 40002 drop")
        );
        assert!(pos("udp dport 40002 drop") < pos("iifname \"crlab12ch*\" drop"));
        // Members are in no accepting forward set: what is not redirected is dropped.
        let fwd = &s[pos("chain forward")..pos("chain prerouting")];
        assert!(!fwd.contains("@allow"));
        assert!(fwd
            .trim_end()
            .ends_with("iifname \"crlab12ch*\" drop\n    }"));
    }
}
