//! `corral __egress` (corral-full): the egress proxy and resolver of one `corral run
//! --net allow=...` or recipe RUN step; the conversation is in cli_egress.rs.

use std::io::BufRead;

use corral_net::{EgressConfig, EgressProxy, Policy, Rule, SandboxEgress};

use crate::cli_egress::parse_resolve;

/// Arguments of `corral __egress`: `RULES [NAME=IP...]`.
fn parse_args(args: &[String]) -> Result<(Vec<Rule>, EgressConfig), String> {
    let rules = args
        .first()
        .ok_or("usage: corral __egress RULES [NAME=IP...]")?;
    let allow = corral_net::parse_egress_rules(rules).map_err(|e| e.to_string())?;
    let mut cfg = EgressConfig::default();
    for a in &args[1..] {
        let (name, ip) = parse_resolve(a)?;
        cfg.resolve.insert(name, ip);
    }
    Ok((allow, cfg))
}

/// The helper's main: serves until stdin closes.
pub(crate) fn helper_main() -> u8 {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let (allow, cfg) = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("corral: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral: starting the egress proxy's runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let proxy = match EgressProxy::start(cfg).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("corral: {}", corral_isolate::error_chain(&e));
                return 1;
            }
        };
        let p = proxy.ports();
        println!("PORTS {} {}", p.proxy, p.dns);
        // The rest of the conversation and the wait for EOF are blocking reads.
        let mut records = proxy.subscribe();
        tokio::spawn(async move {
            while let Ok(r) = records.recv().await {
                if !r.allowed {
                    eprintln!(
                        "corral: egress denied: {}:{} ({}): {}",
                        if r.host.is_empty() { "?" } else { &r.host },
                        r.port,
                        r.via.as_str(),
                        r.reason.as_deref().unwrap_or("not allowed")
                    );
                }
            }
        });
        let proxy = std::sync::Arc::new(proxy);
        let pr = proxy.clone();
        let served = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let stdin = std::io::stdin();
            if stdin.lock().read_line(&mut line).is_err() {
                return;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["SANDBOX", sb, host] = parts.as_slice() {
                if let (Ok(sb), Ok(host)) = (sb.parse(), host.parse()) {
                    pr.register(
                        sb,
                        SandboxEgress {
                            sandbox: "run".into(),
                            tenant: String::new(),
                            host_addr: host,
                            policy: Policy {
                                allow,
                                deny: Vec::new(),
                            },
                        },
                    );
                    println!("READY");
                }
            }
            // Serve until the run closes our stdin.
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdin.lock(), &mut rest);
        })
        .await;
        drop(proxy);
        if served.is_err() {
            1
        } else {
            0
        }
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn arguments() {
        let (allow, cfg) =
            parse_args(&["api.test:8443,*.b.org".into(), "api.test=198.18.3.2".into()]).unwrap();
        assert_eq!(allow.len(), 2);
        assert_eq!(cfg.resolve["api.test"], Ipv4Addr::new(198, 18, 3, 2));
        assert!(parse_args(&[]).is_err());
        assert!(parse_args(&["a.b".into(), "x".into()]).is_err());
        assert!(parse_resolve("a.b=::1").is_err());
    }
}
