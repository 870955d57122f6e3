//! `corral run --net allow=...`: the run's egress proxy and resolver, hosted by a
//! helper process (`corral __egress`, egress_helper.rs in corral-full), because the
//! run itself must stay single-threaded to fork the sandbox.
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
use corral_net::EgressPorts;

use crate::paths;

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
