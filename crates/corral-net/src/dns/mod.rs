//! corral's DNS resolver for allow-mode sandboxes (UDP; nftables redirects every
//! UDP/53 packet of such a sandbox here, whatever address it was sent to).
//!
//! It never forwards a query. An allowed name (one some allow rule names, on any port)
//! gets a synthetic A record: the host end of the sandbox's veth, i.e. the proxy, so
//! every connection to it goes through the proxy, which resolves the real name itself
//! and applies the rebinding check to the real answer ([`crate::proxy`]). AAAA and
//! other types of an allowed name get an empty answer (IPv6 is dropped); any other
//! name gets NXDOMAIN, recorded as a denied attempt. DNS over TCP is not served.

pub(crate) mod wire;

use std::net::IpAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use wire::{Parsed, Rcode};

use crate::proxy::{EgressRecord, Shared, Via};

/// The TTL of a synthetic answer.
const TTL: u32 = 60;

pub(crate) async fn serve(sock: UdpSocket, sh: Arc<Shared>) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let IpAddr::V4(src) = from.ip() else { continue };
        let Some(sb) = sh.sandbox(src) else { continue };
        let out = match wire::parse(&buf[..n]) {
            Parsed::Drop => continue,
            Parsed::Error { id, flags, rcode } => wire::error(id, flags, rcode),
            Parsed::Query(q) => {
                if !wire::is_in(&q) {
                    wire::answer(&q, Rcode::Refused, None, 0)
                } else if sb.policy.resolvable(&q.name) {
                    let a = (q.qtype == wire::TYPE_A).then_some(sb.host_addr);
                    wire::answer(&q, Rcode::NoError, a, TTL)
                } else {
                    sh.records.push(EgressRecord {
                        at_ms: crate::proxy::now_ms(),
                        sandbox: sb.sandbox.clone(),
                        tenant: sb.tenant.clone(),
                        host: q.name.clone(),
                        port: 53,
                        via: Via::Dns,
                        method: None,
                        path: None,
                        bytes_up: 0,
                        bytes_down: 0,
                        allowed: false,
                        rule: None,
                        reason: Some("the name matches no allow rule".into()),
                    });
                    wire::answer(&q, Rcode::NxDomain, None, 0)
                }
            }
        };
        let _ = sock.send_to(&out, from).await;
    }
}
