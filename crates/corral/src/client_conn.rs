//! What the client subcommands (`key`, `tenant`, `sandbox`) share: where the daemon
//! is, which key to use, a small runtime, tables and error exits.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use corral_client::Client;

use crate::EXIT_CORRAL_ERROR;

/// The daemon to talk to.
#[derive(Debug, Clone, Args)]
pub(crate) struct Conn {
    /// Daemon URL [env: CORRAL_URL; default http://127.0.0.1:7070].
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// API key [env: CORRAL_API_KEY; default: DATA_DIR/admin-key, DATA_DIR being
    /// CORRAL_DATA_DIR or /var/lib/corral].
    #[arg(long, global = true, value_name = "KEY")]
    key: Option<String>,
    /// Trust this CA certificate (PEM) for an https daemon [env: CORRAL_CA_CERT].
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl Conn {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        connect(
            self.url.clone(),
            self.key.clone(),
            self.ca_cert.clone(),
            None,
        )
    }
}

/// A client of the daemon: `url`, `key` and `ca` as given, else CORRAL_URL,
/// CORRAL_API_KEY and CORRAL_CA_CERT, else http://127.0.0.1:7070 and the admin key in
/// `data_dir` (else CORRAL_DATA_DIR, else /var/lib/corral).
pub(crate) fn connect(
    url: Option<String>,
    key: Option<String>,
    ca: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Client> {
    let url = url
        .or_else(|| std::env::var("CORRAL_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:7070".to_string());
    let key = match key.or_else(|| std::env::var("CORRAL_API_KEY").ok()) {
        Some(k) => k,
        None => {
            let dir = data_dir
                .or_else(|| std::env::var_os("CORRAL_DATA_DIR").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/var/lib/corral"));
            let file = dir.join("admin-key");
            std::fs::read_to_string(&file)
                .with_context(|| {
                    format!(
                        "no API key: pass --key, set CORRAL_API_KEY, or make {} readable",
                        file.display()
                    )
                })?
                .trim()
                .to_string()
        }
    };
    Ok(
        match ca.or_else(|| std::env::var_os("CORRAL_CA_CERT").map(PathBuf::from)) {
            Some(path) => {
                let pem = std::fs::read(&path)
                    .with_context(|| format!("cannot read the CA file {}", path.display()))?;
                Client::with_ca_pem(&url, &key, &pem)?
            }
            None => Client::new(&url, &key)?,
        },
    )
}

/// Runs a client command on a small single-threaded runtime; errors become one line
/// on stderr and exit 125.
pub(crate) fn run_client<F>(f: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(f) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

pub(crate) fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("corral: {e:#}");
    ExitCode::from(EXIT_CORRAL_ERROR)
}

/// Prints a value as pretty JSON.
pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

/// Prints rows under a header, columns padded to their widest cell.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `K=V` arguments.
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
