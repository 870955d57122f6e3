//! How the daemon runs a capability's target for governance: HTTP through a hyper
//! client (the secret from the sandbox Manager's secret store, sent as
//! `Authorization: Bearer`, only to hosts the secret is bound to), or a command in a
//! fresh sandbox of the tenant, removed afterwards.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::body::Bytes;
use corral_govern::{BoxFuture, Secret, SecretSource, TargetOutput, TargetRequest, TargetRunner};
use corral_sandbox::Manager;
use corral_types::api::{ExecRequest, SandboxCreateRequest, TenantQuota};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::AppState;

/// The longest an HTTP target may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an HTTP target's answer kept (the rest is refused as too large).
const HTTP_BODY_MAX: usize = 1 << 20;
/// A sandbox target's sandbox lives at most this long; its command gets a bit less.
const SANDBOX_TTL_S: u64 = 120;
const SANDBOX_CMD_TIMEOUT_S: u64 = 100;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Runs targets for [`corral_govern::Governance`].
pub(crate) struct DaemonRunner {
    manager: Arc<Manager>,
    http: Option<Client<Https, Full<Bytes>>>,
    /// Set once the state exists (it owns governance, which owns this): tenant quotas.
    state: OnceLock<Weak<AppState>>,
}

impl std::fmt::Debug for DaemonRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonRunner").finish_non_exhaustive()
    }
}

fn https_client() -> Option<Client<Https, Full<Bytes>>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        // No system roots: http:// targets still work, https:// ones fail to verify.
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    };
    let connector = builder.https_or_http().enable_http1().build();
    Some(Client::builder(TokioExecutor::new()).build(connector))
}

impl DaemonRunner {
    pub(crate) fn new(manager: Arc<Manager>) -> DaemonRunner {
        DaemonRunner {
            manager,
            http: https_client(),
            state: OnceLock::new(),
        }
    }

    pub(crate) fn set_state(&self, st: &Arc<AppState>) {
        let _ = self.state.set(Arc::downgrade(st));
    }

    fn quota(&self, tenant: &str) -> Result<TenantQuota, String> {
        let st = self
            .state
            .get()
            .and_then(Weak::upgrade)
            .ok_or("the daemon is shutting down")?;
        let tenants = st.auth.tenants().map_err(|e| e.to_string())?;
        tenants
            .into_iter()
            .find(|t| t.name == tenant)
            .map(|t| t.quota)
            .ok_or_else(|| format!("tenant {tenant} does not exist"))
    }

    async fn http(
        &self,
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<String>,
        secret: Option<&Secret>,
    ) -> Result<TargetOutput, String> {
        let client = self
            .http
            .as_ref()
            .ok_or("no HTTP client (TLS setup failed at start)")?;
        let mut req = hyper::Request::builder().method(method.as_str()).uri(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        if let Some(s) = secret {
            req = req.header("authorization", format!("Bearer {}", s.0));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("the request is invalid: {e}"))?;
        let resp = tokio::time::timeout(HTTP_TIMEOUT, client.request(req))
            .await
            .map_err(|_| format!("no answer within {} s", HTTP_TIMEOUT.as_secs()))?
            .map_err(|e| format!("the request failed: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = tokio::time::timeout(
            HTTP_TIMEOUT,
            Limited::new(resp.into_body(), HTTP_BODY_MAX).collect(),
        )
        .await
        .map_err(|_| "the answer did not finish in time".to_string())?
        .map_err(|e| format!("reading the answer failed (over 1 MiB?): {e}"))?
        .to_bytes();
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(TargetOutput {
            output: json!({"status": status, "body": body}),
            cpu_ms: 0,
            success: status < 400,
        })
    }

    async fn sandbox(
        &self,
        tenant: &str,
        template: String,
        argv: Vec<String>,
    ) -> Result<TargetOutput, String> {
        let quota = self.quota(tenant)?;
        let sb = self
            .manager
            .create(
                tenant,
                &quota,
                // Defaults otherwise: no network, no secrets, default limits.
                SandboxCreateRequest {
                    template: Some(template),
                    timeout_s: Some(SANDBOX_TTL_S),
                    metadata: [("corral.governance".to_string(), "capability".to_string())].into(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("cannot create the sandbox: {e}"))?;
        let r = self
            .manager
            .exec(
                tenant,
                &sb.id,
                ExecRequest {
                    cmd: argv,
                    timeout_s: Some(SANDBOX_CMD_TIMEOUT_S),
                    ..Default::default()
                },
            )
            .await;
        // Removed whatever happened; its TTL removes it if this fails.
        let _ = self.manager.delete(tenant, &sb.id).await;
        let r = r.map_err(|e| format!("the command could not run: {e}"))?;
        Ok(TargetOutput {
            output: json!({
                "exit_code": r.exit_code,
                "stdout": r.stdout,
                "stderr": r.stderr,
                "timed_out": r.timed_out,
            }),
            cpu_ms: r.cpu_time_ms,
            success: r.exit_code == 0 && !r.timed_out,
        })
    }
}

impl TargetRunner for DaemonRunner {
    fn run<'a>(
        &'a self,
        tenant: &'a str,
        req: TargetRequest,
        secret: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<TargetOutput, String>> {
        Box::pin(async move {
            match req {
                TargetRequest::Http {
                    method,
                    url,
                    headers,
                    body,
                } => self.http(method, url, headers, body, secret).await,
                TargetRequest::Sandbox { template, argv } => {
                    self.sandbox(tenant, template, argv).await
                }
            }
        })
    }
}

/// The Manager's secret store as governance's secret source: a secret goes only to a
/// host it is bound to.
#[derive(Debug)]
pub(crate) struct StoreSecrets(pub(crate) Arc<Manager>);

impl SecretSource for StoreSecrets {
    fn secret(&self, tenant: &str, name: &str, host: &str) -> Result<Option<Secret>, String> {
        Ok(self
            .0
            .secret_store()
            .value_for(tenant, name, host)
            .map(|v| Secret(v.expose().to_string())))
    }
}
