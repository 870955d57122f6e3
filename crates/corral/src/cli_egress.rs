//! `corral run --net allow=...`: the run's egress proxy and resolver, hosted by a
//! helper process (`corral __egress`), because the run itself must stay
//! single-threaded to fork the sandbox.
//!
//! The conversation, one line each way per step, over the helper's stdin/stdout:
//! helper `PORTS <proxy> <dns>`; run `SANDBOX <sandbox-ip> <host-ip>`; helper `READY`.
//! The helper then serves until its stdin closes (the run ended or died) and prints
//! each denied attempt on stderr as it happens.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use corral_isolate::{Bind, SandboxSpec};
use corral_net::{EgressConfig, EgressPorts, EgressProxy, Policy, Rule, SandboxEgress};

use crate::paths;

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

/// `NAME=IPV4` (the `--egress-resolve` syntax).
pub(crate) fn parse_resolve(s: &str) -> Result<(String, Ipv4Addr), String> {
    let (n, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid --egress-resolve {s:?}: use NAME=IPV4"))?;
    let ip = ip
        .parse()
        .map_err(|_| format!("invalid --egress-resolve {s:?}: {ip:?} is not an IPv4 address"))?;
    Ok((n.to_string(), ip))
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

/// A sandbox network in mode allow for one `corral_isolate::run` (a `corral run` or a
/// recipe's RUN step): its own namespace and veth, and the proxy helper serving it.
/// Dropping it removes the network, then stops the helper.
pub(crate) struct AllowNet {
    _net: corral_net::RunNet,
    _helper: Helper,
}

/// Starts the proxy helper for `rules` (NAME[:PORT],...; `resolve`: static answers
/// for names), builds the run's network and sets `spec` up to use it: the namespace,
/// the explicit proxy's variables (unless the spec sets them) and a resolv.conf
/// naming corral's resolver.
pub(crate) fn attach_allow(
    spec: &mut SandboxSpec,
    rules: &str,
    resolve: &[(String, Ipv4Addr)],
) -> Result<AllowNet, String> {
    let mut helper = Helper::start(rules, resolve)?;
    let net = corral_net::RunNet::create(
        &paths::runtime_dir().join("net"),
        corral_net::Cidr::RUN_DEFAULT,
        Vec::new(),
        Some(helper.ports),
    )
    .map_err(|e| {
        format!(
            "building the run's network (needs root, iproute2 and nftables): {}",
            corral_isolate::error_chain(&e)
        )
    })?;
    let a = net.lease().addrs;
    helper.register(a.sandbox, a.host)?;
    spec.netns = Some(net.lease().netns.clone());
    for (k, v) in corral_net::proxy_env(a.host, helper.ports) {
        if !spec.env.iter().any(|(e, _)| *e == k) {
            spec.env.push((k, v));
        }
    }
    let path = paths::runtime_dir()
        .join("net")
        .join(format!("resolv-run-{}.conf", net.lease().slot));
    std::fs::write(&path, corral_net::resolv_conf(a.host))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    spec.mounts.push(Bind {
        source: path,
        target: PathBuf::from("/etc/resolv.conf"),
        writable: false,
    });
    Ok(AllowNet {
        _net: net,
        _helper: helper,
    })
}

/// Networks for recipes' RUN steps (`# corral: allow HOST ...`), for `corral template
/// build` and the daemon's `corral __build` helper.
#[derive(Debug, Default)]
pub(crate) struct BuildEgress {
    /// `--egress-resolve` answers (tests: names of hosts in their own namespaces).
    pub(crate) resolve: Vec<(String, Ipv4Addr)>,
}

impl corral_sandbox::BuildNetwork for BuildEgress {
    fn attach(
        &self,
        allow: &[String],
        spec: &mut SandboxSpec,
    ) -> Result<Box<dyn std::any::Any>, String> {
        let net = attach_allow(spec, &allow.join(","), &self.resolve)?;
        Ok(Box::new(net))
    }
}

/// The run's side: the helper process while the run lasts.
pub(crate) struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The ports it listens on.
    pub(crate) ports: EgressPorts,
}

impl Helper {
    /// Starts `corral __egress` and reads its ports.
    pub(crate) fn start(rules: &str, resolve: &[(String, Ipv4Addr)]) -> Result<Helper, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding corral's binary: {e}"))?;
        let mut child = Command::new(exe)
            .arg("__egress")
            .arg(rules)
            .args(resolve.iter().map(|(n, ip)| format!("{n}={ip}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the egress proxy: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("starting the egress proxy: no pipes".into());
        };
        let mut h = Helper {
            child,
            stdin: Some(stdin),
            stdout,
            ports: EgressPorts { proxy: 0, dns: 0 },
        };
        let line = h.line()?;
        let ports: Vec<u16> = line
            .strip_prefix("PORTS ")
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        match ports.as_slice() {
            [proxy, dns] => {
                h.ports = EgressPorts {
                    proxy: *proxy,
                    dns: *dns,
                }
            }
            _ => return Err(format!("the egress proxy did not start (it said {line:?})")),
        }
        Ok(h)
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("talking to the egress proxy: {e}"))?;
        Ok(line.trim().to_string())
    }

    /// Serves the sandbox at `sandbox` (host end `host`) from now on.
    pub(crate) fn register(&mut self, sandbox: Ipv4Addr, host: Ipv4Addr) -> Result<(), String> {
        let w = self.stdin.as_mut().ok_or("the egress proxy is gone")?;
        writeln!(w, "SANDBOX {sandbox} {host}")
            .and_then(|_| w.flush())
            .map_err(|e| format!("talking to the egress proxy: {e}"))?;
        match self.line()?.as_str() {
            "READY" => Ok(()),
            other => Err(format!(
                "the egress proxy refused the sandbox (it said {other:?})"
            )),
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing stdin ends it; kill in case it is stuck.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
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
