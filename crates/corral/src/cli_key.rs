//! `corral key create|ls|revoke` and `corral tenant create|ls` (admin; over the API).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use corral_types::api::{KeyCreateRequest, Role, TenantCreateRequest, TenantQuota};
use corral_types::parse_size;

use crate::client_conn::{print_json, print_table, run_client, Conn};

/// API keys.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Create a key; its secret is printed once.
    Create {
        /// The tenant it acts for.
        #[arg(long)]
        tenant: String,
        /// Its role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A label for humans.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (never their secrets).
    Ls,
    /// Revoke a key, effective at once.
    Revoke {
        /// The key's id (key-...).
        id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Agent,
    Operator,
    Admin,
}

/// Tenants.
#[derive(Debug, Args)]
pub(crate) struct TenantArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: TenantCmd,
}

#[derive(Debug, Subcommand)]
enum TenantCmd {
    /// Create a tenant.
    Create {
        /// 1-64 of a-z, 0-9 and -, starting with a letter.
        name: String,
        /// Sandboxes alive at once (default 100).
        #[arg(long, value_name = "N")]
        max_sandboxes: Option<u64>,
        /// Sum of the sandboxes' memory limits, e.g. 64G (default 64G).
        #[arg(long, value_name = "SIZE", value_parser = size)]
        max_memory: Option<u64>,
    },
    /// List tenants.
    Ls,
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Agent => "agent",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

pub(crate) fn key_main(args: KeyArgs) -> ExitCode {
    run_client(async move {
        let c = args.conn.client()?;
        let json = args.conn.json;
        match args.cmd {
            KeyCmd::Create { tenant, role, name } => {
                let role = match role {
                    RoleArg::Agent => Role::Agent,
                    RoleArg::Operator => Role::Operator,
                    RoleArg::Admin => Role::Admin,
                };
                let created = c
                    .create_key(&KeyCreateRequest { tenant, role, name })
                    .await?;
                if json {
                    return print_json(&created);
                }
                eprintln!(
                    "corral: key {} for tenant {} ({}); the secret is shown only now:",
                    created.key.id,
                    created.key.tenant,
                    role_name(created.key.role)
                );
                println!("{}", created.secret);
            }
            KeyCmd::Ls => {
                let keys = c.list_keys().await?;
                if json {
                    return print_json(&keys);
                }
                let rows: Vec<Vec<String>> = keys
                    .keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.tenant.clone(),
                            role_name(k.role).to_string(),
                            k.name.clone().unwrap_or_default(),
                            k.created_at.clone(),
                            k.revoked_at.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "TENANT", "ROLE", "NAME", "CREATED", "REVOKED"],
                    &rows,
                );
            }
            KeyCmd::Revoke { id } => {
                c.revoke_key(&id).await?;
                if json {
                    return print_json(&serde_json::json!({"revoked": id}));
                }
                eprintln!("corral: key {id} revoked");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn tenant_main(args: TenantArgs) -> ExitCode {
    run_client(async move {
        let c = args.conn.client()?;
        let json = args.conn.json;
        match args.cmd {
            TenantCmd::Create {
                name,
                max_sandboxes,
                max_memory,
            } => {
                let t = c
                    .create_tenant(&TenantCreateRequest {
                        name,
                        quota: TenantQuota {
                            max_sandboxes,
                            max_memory_bytes: max_memory,
                        },
                    })
                    .await?;
                if json {
                    return print_json(&t);
                }
                println!("{}", t.name);
            }
            TenantCmd::Ls => {
                let list = c.list_tenants().await?;
                if json {
                    return print_json(&list);
                }
                let opt = |v: Option<u64>| v.map_or_else(|| "unlimited".into(), |n| n.to_string());
                let rows: Vec<Vec<String>> = list
                    .tenants
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            opt(t.quota.max_sandboxes),
                            opt(t.quota.max_memory_bytes),
                            t.created_at.clone(),
                        ]
                    })
                    .collect();
                print_table(
                    &["NAME", "MAX_SANDBOXES", "MAX_MEMORY_BYTES", "CREATED"],
                    &rows,
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
