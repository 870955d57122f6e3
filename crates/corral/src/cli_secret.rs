//! `corral secret set|ls|get|rm`: secrets of the caller's tenant (over the API; see
//! docs/secrets.md). A value is read from stdin or a file, never taken on the command
//! line (any user on the host can read a process's arguments in ps), and never shown.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use corral_types::api::{Secret, SecretPutRequest};

use crate::client_conn::{print_json, print_table, run_client, Conn};

/// Secrets.
#[derive(Debug, Args)]
pub(crate) struct SecretArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: SecretCmd,
}

#[derive(Debug, Subcommand)]
enum SecretCmd {
    /// Store or replace a secret (operator or admin key). The value comes from stdin
    /// or a file, one trailing newline removed.
    Set {
        /// Its name (letters, digits, '_'): also the sandbox's environment variable.
        name: String,
        /// A host it may go to: api.example.com, *.example.com, either with :PORT
        /// (repeat for more).
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
        /// The header it goes into, with {value} where it goes [default:
        /// 'Authorization: Bearer {value}'].
        #[arg(long, value_name = "'NAME: TEMPLATE'")]
        header: Option<String>,
        /// Read the value from stdin.
        #[arg(long, conflicts_with = "value_file")]
        value_stdin: bool,
        /// Read the value from this file.
        #[arg(long, value_name = "FILE")]
        value_file: Option<PathBuf>,
    },
    /// List the tenant's secrets (names, hosts, headers, placeholders; never values).
    Ls,
    /// Show one secret's metadata.
    Get {
        /// Its name.
        name: String,
    },
    /// Remove a secret (operator or admin key).
    Rm {
        /// Its name.
        name: String,
    },
}

fn strip_newline(mut v: String) -> String {
    if v.ends_with('\n') {
        v.pop();
        if v.ends_with('\r') {
            v.pop();
        }
    }
    v
}

fn read_value(stdin: bool, file: Option<PathBuf>) -> anyhow::Result<String> {
    let v = match (stdin, file) {
        (_, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading the secret's value from {}", f.display()))?,
        (true, None) => {
            let mut v = String::new();
            std::io::stdin()
                .read_to_string(&mut v)
                .context("reading the secret's value from stdin")?;
            v
        }
        (false, None) => bail!(
            "give the value with --value-stdin (e.g. `printf %s \"$KEY\" | corral secret set \
             NAME --host H --value-stdin`) or --value-file FILE; it is never taken on the \
             command line, where ps shows it"
        ),
    };
    let v = strip_newline(v);
    if v.is_empty() {
        bail!("the secret's value is empty");
    }
    Ok(v)
}

fn row(s: &Secret) -> Vec<String> {
    vec![
        s.name.clone(),
        s.hosts.join(","),
        s.header.clone(),
        s.placeholder.clone(),
        s.updated_at.clone(),
    ]
}

const HEADER: &[&str] = &["NAME", "HOSTS", "HEADER", "PLACEHOLDER", "UPDATED"];

pub(crate) fn main(args: SecretArgs) -> ExitCode {
    run_client(async move {
        let json = args.conn.json;
        match args.cmd {
            SecretCmd::Set {
                name,
                hosts,
                header,
                value_stdin,
                value_file,
            } => {
                let value = read_value(value_stdin, value_file)?;
                let c = args.conn.client()?;
                let s = c
                    .put_secret(
                        &name,
                        &SecretPutRequest {
                            value,
                            hosts,
                            header,
                        },
                    )
                    .await?;
                if json {
                    return print_json(&s);
                }
                eprintln!(
                    "corral: secret {} stored; sandboxes created with it hold {}",
                    s.name, s.placeholder
                );
            }
            SecretCmd::Ls => {
                let list = args.conn.client()?.list_secrets().await?;
                if json {
                    return print_json(&list);
                }
                let rows: Vec<Vec<String>> = list.secrets.iter().map(row).collect();
                print_table(HEADER, &rows);
            }
            SecretCmd::Get { name } => {
                let s = args.conn.client()?.get_secret(&name).await?;
                if json {
                    return print_json(&s);
                }
                print_table(HEADER, &[row(&s)]);
            }
            SecretCmd::Rm { name } => {
                args.conn.client()?.delete_secret(&name).await?;
                if json {
                    return print_json(&serde_json::json!({"removed": name}));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_removed() {
        assert_eq!(strip_newline("abc\n".into()), "abc");
        assert_eq!(strip_newline("abc\r\n".into()), "abc");
        assert_eq!(strip_newline("abc\n\n".into()), "abc\n");
        assert_eq!(strip_newline("abc".into()), "abc");
    }

    #[test]
    fn no_value_source_is_an_error_that_says_how() {
        let e = read_value(false, None).unwrap_err().to_string();
        assert!(e.contains("--value-stdin"), "{e}");
    }
}
