//! `corral serve`: the sandbox daemon. Reads corral.toml, starts the Manager and the
//! HTTP API, and shuts both down on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use corral_sandbox::{Manager, ManagerConfig};
use corral_server::{ServerConfig, TlsFiles};
use corral_types::parse_size;
use serde::Deserialize;

use crate::client_conn::fail;
use crate::paths;

/// Options of `corral serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The daemon's data directory (state, keys, snapshots); created 0700 if missing.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Address to listen on (port 0: any free port, written to DIR/listen.addr).
    /// Overrides `listen` in the config file; default 127.0.0.1:7070.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// corral.toml (see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// corral.toml. Every key is optional; docs/configuration.md lists the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    pool_size: Option<usize>,
    health_interval_s: Option<u64>,
    default_timeout_s: Option<u64>,
    max_timeout_s: Option<u64>,
    cgroup_parent: Option<String>,
    runtime_dir: Option<PathBuf>,
    #[serde(default)]
    defaults: Defaults,
    keep_sandboxes_on_shutdown: Option<bool>,
    #[serde(default)]
    network: NetworkKeys,
    #[serde(default)]
    templates: TemplateKeys,
}

/// `[templates]`: shipped recipes built on first use.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateKeys {
    build_on_first_use: Option<bool>,
    debootstrap_mirror: Option<String>,
    debootstrap_tarball: Option<PathBuf>,
    recipes_dir: Option<PathBuf>,
}

fn template_settings(t: TemplateKeys) -> anyhow::Result<corral_sandbox::TemplateSettings> {
    for (key, p) in [
        ("templates.debootstrap_tarball", &t.debootstrap_tarball),
        ("templates.recipes_dir", &t.recipes_dir),
    ] {
        if let Some(p) = p {
            if !p.is_absolute() {
                bail!("{key}: {} must be an absolute path", p.display());
            }
        }
    }
    Ok(corral_sandbox::TemplateSettings {
        build_on_first_use: t.build_on_first_use.unwrap_or(true),
        debootstrap_mirror: t.debootstrap_mirror,
        debootstrap_tarball: t.debootstrap_tarball,
        recipes_dir: t.recipes_dir,
    })
}

/// `[network]`: sandbox networks (mode `open`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkKeys {
    cidr: Option<String>,
    deny: Option<Vec<String>>,
    pool_size: Option<usize>,
    /// Egress rules denied to every allow-mode sandbox (deny wins over allow).
    egress_deny: Option<Vec<String>>,
    /// Static name -> IPv4 map for the egress proxy (tests, private registries).
    resolve: Option<std::collections::HashMap<String, String>>,
    /// Connections one allow-mode sandbox may have open through the egress proxy.
    egress_max_connections: Option<usize>,
    /// Extra PEM roots the credential broker trusts toward real hosts (a private CA;
    /// tests), besides the system's.
    upstream_ca: Option<PathBuf>,
}

fn network_settings(n: NetworkKeys) -> anyhow::Result<corral_sandbox::NetSettings> {
    let mut s = corral_sandbox::NetSettings::default();
    if let Some(c) = n.cidr {
        s.cidr = corral_net::Cidr::parse_pool(&c)
            .map_err(|e| anyhow::anyhow!("network.cidr: {}", corral_isolate::error_chain(&e)))?;
    }
    for d in n.deny.unwrap_or_default() {
        s.deny.push(
            corral_net::Cidr::parse(&d).map_err(|e| {
                anyhow::anyhow!("network.deny: {}", corral_isolate::error_chain(&e))
            })?,
        );
    }
    if let Some(p) = n.pool_size {
        s.pool_size = p;
    }
    for r in n.egress_deny.unwrap_or_default() {
        s.egress_deny.push(
            corral_net::Rule::parse(&r).map_err(|e| anyhow::anyhow!("network.egress_deny: {e}"))?,
        );
    }
    for (name, ip) in n.resolve.unwrap_or_default() {
        let ip = ip.parse().map_err(|_| {
            anyhow::anyhow!("network.resolve: {ip:?} (for {name:?}) is not an IPv4 address")
        })?;
        s.resolve.insert(name, ip);
    }
    if let Some(m) = n.egress_max_connections {
        if m == 0 {
            anyhow::bail!(
                "network.egress_max_connections: must be at least 1 (the default is {})",
                corral_net::DEFAULT_MAX_CONNECTIONS
            );
        }
        s.egress_max_connections = m;
    }
    s.upstream_roots = n.upstream_ca;
    Ok(s)
}

/// `[defaults]`: resources of a sandbox whose create request names none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    memory: Option<String>,
    cpus: Option<String>,
    pids: Option<u64>,
    disk: Option<String>,
}

/// Everything `serve` needs, resolved from the file, the flags and the defaults.
#[derive(Debug)]
struct Resolved {
    server: ServerConfig,
    manager: ManagerConfig,
    templates: corral_sandbox::TemplateSettings,
}

pub(crate) fn main(args: ServeArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => load_config(path)?,
        None => FileConfig::default(),
    };
    let corral_exe = std::env::current_exe().context("cannot find the corral binary's own path")?;
    let resolved = resolve(file, &args, corral_exe)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        // Keys and sandbox state: the daemon's user only.
        .mode(0o700)
        .create(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let manager: Arc<Manager> = Manager::start(resolved.manager)
            .await
            .context("cannot start the sandbox manager")?;
        manager.set_template_settings(resolved.templates);
        let served =
            corral_server::serve(resolved.server, manager.clone(), shutdown_signal()).await;
        eprintln!("corral: shutting down");
        manager.shutdown().await;
        served.context("the HTTP server failed")
    })
}

fn load_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

fn resolve(file: FileConfig, args: &ServeArgs, corral_exe: PathBuf) -> anyhow::Result<Resolved> {
    let listen = match (args.listen, file.listen) {
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => corral_server::DEFAULT_LISTEN.parse()?,
    };
    let tls = match (file.tls_cert, file.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => bail!("tls_cert and tls_key go together: set both or neither"),
    };
    let default_timeout_s = file.default_timeout_s.unwrap_or(300);
    let max_timeout_s = file.max_timeout_s.unwrap_or(28_800);
    if default_timeout_s == 0 || default_timeout_s > max_timeout_s {
        bail!("default_timeout_s must be from 1 to max_timeout_s ({max_timeout_s})");
    }
    let health_interval_s = file.health_interval_s.unwrap_or(30);
    if health_interval_s == 0 {
        bail!("health_interval_s must be at least 1");
    }
    let d = file.defaults;
    let memory = size_key("defaults.memory", d.memory.as_deref().unwrap_or("512M"))?;
    let disk = size_key("defaults.disk", d.disk.as_deref().unwrap_or("1G"))?;
    let cpus = cpu_millis(d.cpus.as_deref().unwrap_or("1"))?;
    let pids = d.pids.unwrap_or(256);
    if pids < 2 {
        bail!("defaults.pids must be at least 2");
    }
    let network = network_settings(file.network)?;
    let templates = template_settings(file.templates)?;
    Ok(Resolved {
        templates,
        server: ServerConfig {
            listen,
            data_dir: args.data_dir.clone(),
            tls,
        },
        manager: ManagerConfig {
            data_dir: args.data_dir.clone(),
            runtime_dir: file.runtime_dir.unwrap_or_else(paths::runtime_dir),
            corral_exe,
            cgroup_parent: file.cgroup_parent.unwrap_or_else(|| "corral".to_string()),
            id_map_base: paths::ID_MAP_BASE,
            pool_size: file.pool_size.unwrap_or(4),
            health_interval: Duration::from_secs(health_interval_s),
            default_timeout: Duration::from_secs(default_timeout_s),
            max_timeout: Duration::from_secs(max_timeout_s),
            default_memory_bytes: memory,
            default_cpu_millis: cpus,
            default_pids: pids,
            default_disk_bytes: disk,
            skip_layers: Vec::new(),
            keep_sandboxes_on_shutdown: file.keep_sandboxes_on_shutdown.unwrap_or(false),
            network,
        },
    })
}

fn size_key(key: &str, v: &str) -> anyhow::Result<u64> {
    parse_size(v).map_err(|e| anyhow::anyhow!("{key}: {e}"))
}

fn cpu_millis(v: &str) -> anyhow::Result<u64> {
    match v.trim().parse::<f64>() {
        Ok(c) if c > 0.0 && c <= 1024.0 => Ok((c * 1000.0).round() as u64),
        _ => bail!("defaults.cpus: {v:?} is not a CPU count such as \"1\" or \"0.5\""),
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // No signal handlers: fall back to Ctrl-C only.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            data_dir: "/tmp/d".into(),
            listen: None,
            config: None,
        }
    }

    #[test]
    fn defaults_without_a_file() {
        let r = resolve(FileConfig::default(), &args(), "/bin/corral".into()).unwrap();
        assert_eq!(r.server.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(r.manager.pool_size, 4);
        assert_eq!(r.manager.default_memory_bytes, 512 << 20);
        assert_eq!(r.manager.default_cpu_millis, 1000);
        assert_eq!(r.manager.max_timeout, Duration::from_secs(28_800));
        assert_eq!(r.manager.cgroup_parent, "corral");
        assert!(!r.manager.keep_sandboxes_on_shutdown);
    }

    #[test]
    fn file_keys_apply_and_unknown_keys_are_named() {
        let f: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:0\"\npool_size = 0\n[defaults]\ncpus = \"0.5\"\nmemory = \"1G\"\n",
        )
        .unwrap();
        let r = resolve(f, &args(), "/bin/corral".into()).unwrap();
        assert_eq!(r.server.listen.port(), 0);
        assert_eq!(r.manager.pool_size, 0);
        assert_eq!(r.manager.default_cpu_millis, 500);
        assert_eq!(r.manager.default_memory_bytes, 1 << 30);
        let e = toml::from_str::<FileConfig>("pool_sise = 3\n").unwrap_err();
        assert!(e.to_string().contains("pool_sise"), "{e}");
        let e = toml::from_str::<FileConfig>("[defaults]\nmem = \"1G\"\n").unwrap_err();
        assert!(e.to_string().contains("mem"), "{e}");
        let f: FileConfig = toml::from_str("tls_cert = \"/a\"\n").unwrap();
        assert!(resolve(f, &args(), "/bin/corral".into()).is_err());
    }

    #[test]
    fn the_egress_connection_cap_defaults_applies_and_refuses_zero() {
        let keys = |t: &str| toml::from_str::<NetworkKeys>(t).unwrap();
        let s = network_settings(keys("")).unwrap();
        assert_eq!(
            s.egress_max_connections,
            corral_net::DEFAULT_MAX_CONNECTIONS
        );
        let s = network_settings(keys("egress_max_connections = 8")).unwrap();
        assert_eq!(s.egress_max_connections, 8);
        let e = network_settings(keys("egress_max_connections = 0")).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    #[test]
    fn template_keys_apply_and_paths_must_be_absolute() {
        let r = resolve(FileConfig::default(), &args(), "/bin/corral".into()).unwrap();
        assert!(r.templates.build_on_first_use);
        assert!(r.templates.recipes_dir.is_none());
        let f: FileConfig = toml::from_str(
            "[templates]\nbuild_on_first_use = false\nrecipes_dir = \"/srv/recipes\"\ndebootstrap_mirror = \"http://m.test/debian\"\n",
        )
        .unwrap();
        let r = resolve(f, &args(), "/bin/corral".into()).unwrap();
        assert!(!r.templates.build_on_first_use);
        assert_eq!(r.templates.recipes_dir, Some("/srv/recipes".into()));
        assert_eq!(
            r.templates.debootstrap_mirror.as_deref(),
            Some("http://m.test/debian")
        );
        let f: FileConfig =
            toml::from_str("[templates]\ndebootstrap_tarball = \"rel.tgz\"\n").unwrap();
        let e = resolve(f, &args(), "/bin/corral".into()).unwrap_err();
        assert!(
            e.to_string().contains("templates.debootstrap_tarball"),
            "{e}"
        );
        assert!(toml::from_str::<FileConfig>("[templates]\nbuild = true\n").is_err());
    }
}
