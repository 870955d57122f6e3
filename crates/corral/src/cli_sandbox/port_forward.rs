//! `corral sandbox port-forward ID [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT`: a local
//! listener whose every accepted connection is carried to `127.0.0.1:REMOTE_PORT`
//! inside the sandbox through the daemon's tunnel route
//! (`GET /v1/sandboxes/{id}/tunnel/{port}`, upgraded to a raw TCP stream).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use corral_client::{Client, ClientError};
use corral_types::api::SandboxState;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How often the sandbox is looked at while no connection shows it has gone.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Where to listen and which port inside the sandbox to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ForwardSpec {
    pub(super) local: SocketAddr,
    pub(super) remote: u16,
}

/// `[LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT`; LOCAL_ADDR defaults to 127.0.0.1 (an IPv6
/// address in brackets: `[::1]:8080:80`), LOCAL_PORT 0 picks a free port.
pub(super) fn parse_spec(s: &str) -> Result<ForwardSpec, String> {
    let usage = || {
        format!("expected [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT (e.g. 8080:80 or 0.0.0.0:0:8000), got {s:?}")
    };
    let (rest, remote) = s.rsplit_once(':').ok_or_else(usage)?;
    let remote = match remote.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("REMOTE_PORT {remote:?} is not a port (1-65535)")),
    };
    let (addr, local) = match rest.rsplit_once(':') {
        Some((a, l)) if !a.is_empty() => (Some(a), l),
        Some(_) => return Err(usage()),
        None => (None, rest),
    };
    let local_port = local
        .parse::<u16>()
        .map_err(|_| format!("LOCAL_PORT {local:?} is not a port (0-65535; 0 picks a free one)"))?;
    let ip = match addr {
        None | Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(a) => a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| format!("LOCAL_ADDR {a:?} is not an IP address"))?,
    };
    Ok(ForwardSpec {
        local: SocketAddr::new(ip, local_port),
        remote,
    })
}

/// Why forwarding must stop: the sandbox is gone or no longer running (None: it is
/// still there, running or paused, or the daemon could not say).
async fn gone(c: &Client, id: &str) -> Option<String> {
    match c.get_sandbox(id).await {
        Err(ClientError::Api { status: 404, .. }) => Some(format!("sandbox {id} no longer exists")),
        Ok(sb) if matches!(sb.state, SandboxState::Stopping | SandboxState::Stopped) => {
            Some(match sb.stop_reason {
                Some(r) => format!("sandbox {id} has stopped ({r})"),
                None => format!("sandbox {id} has stopped"),
            })
        }
        _ => None,
    }
}

/// Listens and forwards until Ctrl-C (exit 0) or the sandbox goes away (an error).
pub(super) async fn run(c: &Client, id: &str, spec: ForwardSpec) -> anyhow::Result<ExitCode> {
    let sb = c.get_sandbox(id).await?;
    if let Some(why) = gone(c, id).await {
        bail!("{why}; nothing to forward to");
    }
    let listener = TcpListener::bind(spec.local)
        .await
        .with_context(|| format!("cannot listen on {}", spec.local))?;
    let local = listener.local_addr()?;
    println!("Forwarding from {local} -> {}:{}", sb.id, spec.remote);
    std::io::stdout().flush()?;

    let (stop_tx, mut stop_rx) = mpsc::channel::<String>(1);
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(ExitCode::SUCCESS),
            Some(why) = stop_rx.recv() => bail!("{why}; port-forward stopped"),
            _ = watch.tick() => {
                if let Some(why) = gone(c, id).await {
                    bail!("{why}; port-forward stopped");
                }
            }
            accepted = listener.accept() => {
                let (sock, peer) = accepted.context("accepting a local connection")?;
                tokio::spawn(forward(c.clone(), id.to_string(), spec.remote, sock, peer, stop_tx.clone()));
            }
        }
    }
}

/// Carries one local connection; a failed tunnel closes it and says why on stderr.
async fn forward(
    c: Client,
    id: String,
    port: u16,
    mut sock: TcpStream,
    peer: SocketAddr,
    stop: mpsc::Sender<String>,
) {
    match c.open_port(&id, port).await {
        Ok(mut remote) => {
            let _ = sock.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut sock, &mut remote).await;
        }
        Err(e) => {
            eprintln!("corral: connection from {peer} not forwarded: {e}");
            if matches!(e.status(), Some(404 | 409)) {
                if let Some(why) = gone(&c, &id).await {
                    let _ = stop.send(why).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let p = |s: &str| parse_spec(s).unwrap();
        assert_eq!(p("8080:80").local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p("8080:80").remote, 80);
        assert_eq!(p("0:8000").local.port(), 0);
        assert_eq!(p("0.0.0.0:9000:80").local, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(p("[::1]:9000:80").local, "[::1]:9000".parse().unwrap());
        assert_eq!(p("localhost:1:2").local, "127.0.0.1:1".parse().unwrap());
        for bad in [
            "80",
            "8080:0",
            "8080:x",
            "x:80",
            "nohost:1:2",
            ":1:2",
            "70000:80",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
