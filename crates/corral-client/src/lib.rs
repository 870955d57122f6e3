//! corral-client: a typed async client for corral's HTTP API (`corral serve`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), corral_client::ClientError> {
//! use corral_client::Client;
//! use corral_types::api::{ExecRequest, SandboxCreateRequest};
//! let c = Client::new("http://127.0.0.1:7070", "crl_...")?;
//! let sb = c.create_sandbox(&SandboxCreateRequest::default()).await?;
//! let r = c
//!     .exec(&sb.id, &ExecRequest { cmd: vec!["echo".into(), "hi".into()], ..Default::default() })
//!     .await?;
//! assert_eq!(r.stdout, "hi\n");
//! c.delete_sandbox(&sb.id).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod error;
mod files;
mod govern_audit;
mod govern_policy;
mod http;
mod mcp;
mod ports;
mod secrets;
mod stream;
mod templates;

use std::collections::BTreeMap;

use corral_types::api::{
    ExecEvent, ExecRequest, FileEntry, FileList, HealthResponse, KeyCreateRequest,
    KeyCreateResponse, KeyList, MkdirRequest, ProcessInfo, ProcessList, ProcessOutput,
    RenameRequest, RunCodeRequest, Sandbox, SandboxCreateRequest, SandboxList, SandboxState,
    SignalRequest, Snapshot, SnapshotList, StdinWriteRequest, Tenant, TenantCreateRequest,
    TenantList, TimeoutRequest,
};
use corral_types::RunResult;
pub use error::ClientError;
use futures_util::Stream;
pub use govern_audit::AuditListParams;
use http::{encode, Transport};
use hyper::Method;
pub use mcp::McpAnswer;
pub use ports::PortStream;

/// Filters and paging of [`Client::list_sandboxes`].
#[derive(Debug, Clone, Default)]
pub struct SandboxListParams {
    /// Only this state (the server's default: all but stopped).
    pub state: Option<SandboxState>,
    /// Only sandboxes with all these labels.
    pub metadata: BTreeMap<String, String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (1-1000).
    pub limit: Option<u32>,
}

/// A connection to one corral daemon with one API key. Cheap to clone (a shared
/// connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    t: Transport,
}

fn seg(s: &str) -> String {
    encode(s, false)
}

/// `path` with the query `q` (the pairs, already encoded), then a page's `cursor` and
/// `limit` when given.
fn with_query(path: &str, mut q: Vec<String>, cursor: Option<&str>, limit: Option<u32>) -> String {
    if let Some(c) = cursor {
        q.push(format!("cursor={}", encode(c, false)));
    }
    if let Some(l) = limit {
        q.push(format!("limit={l}"));
    }
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

impl Client {
    /// A client for the daemon at `url` (`http://127.0.0.1:7070`), authenticating with
    /// `key`. https URLs are checked against the system's root certificates.
    pub fn new(url: &str, key: &str) -> Result<Client, ClientError> {
        Ok(Client {
            t: Transport::new(url, key, None)?,
        })
    }

    /// Like [`Client::new`], trusting only the CA certificates in `ca_pem` (PEM) for
    /// https, e.g. a daemon's self-signed certificate.
    pub fn with_ca_pem(url: &str, key: &str, ca_pem: &[u8]) -> Result<Client, ClientError> {
        Ok(Client {
            t: Transport::new(url, key, Some(ca_pem))?,
        })
    }

    /// The daemon's base URL.
    pub fn url(&self) -> &str {
        self.t.base()
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        self.t.json(Method::GET, "/v1/health", None::<&()>).await
    }

    /// `GET /v1/openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.t
            .json(Method::GET, "/v1/openapi.json", None::<&()>)
            .await
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let resp = self
            .t
            .send(Method::GET, "/metrics", http::empty(), None, None)
            .await?;
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    // Tenants and keys (admin).

    /// `POST /v1/tenants`.
    pub async fn create_tenant(&self, req: &TenantCreateRequest) -> Result<Tenant, ClientError> {
        self.t.json(Method::POST, "/v1/tenants", Some(req)).await
    }

    /// `GET /v1/tenants`.
    pub async fn list_tenants(&self) -> Result<TenantList, ClientError> {
        self.t.json(Method::GET, "/v1/tenants", None::<&()>).await
    }

    /// `POST /v1/keys`: the response holds the secret, shown only this once.
    pub async fn create_key(
        &self,
        req: &KeyCreateRequest,
    ) -> Result<KeyCreateResponse, ClientError> {
        self.t.json(Method::POST, "/v1/keys", Some(req)).await
    }

    /// `GET /v1/keys`.
    pub async fn list_keys(&self) -> Result<KeyList, ClientError> {
        self.t.json(Method::GET, "/v1/keys", None::<&()>).await
    }

    /// `DELETE /v1/keys/{id}`.
    pub async fn revoke_key(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/keys/{}", seg(id));
        self.t.unit(Method::DELETE, &path, None::<&()>).await
    }

    // Sandboxes.

    /// `POST /v1/sandboxes`.
    pub async fn create_sandbox(&self, req: &SandboxCreateRequest) -> Result<Sandbox, ClientError> {
        self.t.json(Method::POST, "/v1/sandboxes", Some(req)).await
    }

    /// `GET /v1/sandboxes`: one page.
    pub async fn list_sandboxes(&self, p: &SandboxListParams) -> Result<SandboxList, ClientError> {
        let mut q: Vec<String> = Vec::new();
        if let Some(s) = p.state {
            q.push(format!("state={}", s.as_str()));
        }
        for (k, v) in &p.metadata {
            q.push(format!(
                "metadata.{}={}",
                encode(k, false),
                encode(v, false)
            ));
        }
        let path = with_query("/v1/sandboxes", q, p.cursor.as_deref(), p.limit);
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/sandboxes/{id}`.
    pub async fn get_sandbox(&self, id: &str) -> Result<Sandbox, ClientError> {
        let path = format!("/v1/sandboxes/{}", seg(id));
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/sandboxes/{id}`.
    pub async fn delete_sandbox(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/sandboxes/{}", seg(id));
        self.t.unit(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /v1/sandboxes/{id}/timeout`.
    pub async fn set_timeout(&self, id: &str, timeout_s: u64) -> Result<Sandbox, ClientError> {
        let path = format!("/v1/sandboxes/{}/timeout", seg(id));
        let req = TimeoutRequest { timeout_s };
        self.t.json(Method::POST, &path, Some(&req)).await
    }

    /// `POST /v1/sandboxes/{id}/pause`.
    pub async fn pause(&self, id: &str) -> Result<Sandbox, ClientError> {
        let path = format!("/v1/sandboxes/{}/pause", seg(id));
        self.t.json(Method::POST, &path, None::<&()>).await
    }

    /// `POST /v1/sandboxes/{id}/resume`.
    pub async fn resume(&self, id: &str) -> Result<Sandbox, ClientError> {
        let path = format!("/v1/sandboxes/{}/resume", seg(id));
        self.t.json(Method::POST, &path, None::<&()>).await
    }

    /// `POST /v1/sandboxes/{id}/snapshot`.
    pub async fn snapshot(&self, id: &str) -> Result<Snapshot, ClientError> {
        let path = format!("/v1/sandboxes/{}/snapshot", seg(id));
        self.t.json(Method::POST, &path, None::<&()>).await
    }

    // Exec.

    /// `POST /v1/sandboxes/{id}/exec`: runs to completion (`background` must be false).
    pub async fn exec(&self, id: &str, req: &ExecRequest) -> Result<RunResult, ClientError> {
        let path = format!("/v1/sandboxes/{}/exec", seg(id));
        self.t.json(Method::POST, &path, Some(req)).await
    }

    /// `POST /v1/sandboxes/{id}/exec` streamed: output events as they happen, then
    /// `exit` (or `error`).
    pub async fn exec_stream(
        &self,
        id: &str,
        req: &ExecRequest,
    ) -> Result<impl Stream<Item = Result<ExecEvent, ClientError>> + Send + Unpin, ClientError>
    {
        let path = format!("/v1/sandboxes/{}/exec", seg(id));
        let resp = self
            .t
            .send_json(Method::POST, &path, Some(req), Some("application/x-ndjson"))
            .await?;
        Ok(stream::ndjson(resp.into_body()))
    }

    /// `POST /v1/sandboxes/{id}/exec` with `background: true`.
    pub async fn exec_background(
        &self,
        id: &str,
        req: &ExecRequest,
    ) -> Result<ProcessInfo, ClientError> {
        let path = format!("/v1/sandboxes/{}/exec", seg(id));
        let mut req = req.clone();
        req.background = true;
        self.t.json(Method::POST, &path, Some(&req)).await
    }

    /// `POST /v1/sandboxes/{id}/run_code`.
    pub async fn run_code(&self, id: &str, req: &RunCodeRequest) -> Result<RunResult, ClientError> {
        let path = format!("/v1/sandboxes/{}/run_code", seg(id));
        self.t.json(Method::POST, &path, Some(req)).await
    }

    /// `GET /v1/sandboxes/{id}/processes`.
    pub async fn processes(&self, id: &str) -> Result<ProcessList, ClientError> {
        let path = format!("/v1/sandboxes/{}/processes", seg(id));
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/sandboxes/{id}/processes/{pid}`.
    pub async fn process(&self, id: &str, pid: &str) -> Result<ProcessInfo, ClientError> {
        let path = format!("/v1/sandboxes/{}/processes/{}", seg(id), seg(pid));
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/sandboxes/{id}/processes/{pid}/output`.
    pub async fn process_output(&self, id: &str, pid: &str) -> Result<ProcessOutput, ClientError> {
        let path = format!("/v1/sandboxes/{}/processes/{}/output", seg(id), seg(pid));
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/sandboxes/{id}/processes/{pid}/stdin`.
    pub async fn process_stdin(
        &self,
        id: &str,
        pid: &str,
        req: &StdinWriteRequest,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/sandboxes/{}/processes/{}/stdin", seg(id), seg(pid));
        self.t.unit(Method::POST, &path, Some(req)).await
    }

    /// `POST /v1/sandboxes/{id}/processes/{pid}/signal` (`SIGTERM`, `TERM`, `15`).
    pub async fn process_signal(
        &self,
        id: &str,
        pid: &str,
        signal: &str,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/sandboxes/{}/processes/{}/signal", seg(id), seg(pid));
        let req = SignalRequest {
            signal: Some(signal.to_string()),
        };
        self.t.unit(Method::POST, &path, Some(&req)).await
    }

    // Files (contents: see files.rs).

    /// `GET /v1/sandboxes/{id}/files/list?path=`.
    pub async fn list_files(&self, id: &str, path: &str) -> Result<FileList, ClientError> {
        let p = format!(
            "/v1/sandboxes/{}/files/list?path={}",
            seg(id),
            encode(path, true)
        );
        self.t.json(Method::GET, &p, None::<&()>).await
    }

    /// `GET /v1/sandboxes/{id}/files/stat?path=`.
    pub async fn stat_file(&self, id: &str, path: &str) -> Result<FileEntry, ClientError> {
        let p = format!(
            "/v1/sandboxes/{}/files/stat?path={}",
            seg(id),
            encode(path, true)
        );
        self.t.json(Method::GET, &p, None::<&()>).await
    }

    /// `POST /v1/sandboxes/{id}/files/mkdir`.
    pub async fn mkdir(&self, id: &str, path: &str, parents: bool) -> Result<(), ClientError> {
        let p = format!("/v1/sandboxes/{}/files/mkdir", seg(id));
        let req = MkdirRequest {
            path: path.to_string(),
            parents: Some(parents),
        };
        self.t.unit(Method::POST, &p, Some(&req)).await
    }

    /// `DELETE /v1/sandboxes/{id}/files?path=&recursive=`.
    pub async fn remove_file(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<(), ClientError> {
        let p = format!(
            "/v1/sandboxes/{}/files?path={}&recursive={recursive}",
            seg(id),
            encode(path, true)
        );
        self.t.unit(Method::DELETE, &p, None::<&()>).await
    }

    /// `POST /v1/sandboxes/{id}/files/rename`.
    pub async fn rename_file(&self, id: &str, from: &str, to: &str) -> Result<(), ClientError> {
        let p = format!("/v1/sandboxes/{}/files/rename", seg(id));
        let req = RenameRequest {
            from: from.to_string(),
            to: to.to_string(),
        };
        self.t.unit(Method::POST, &p, Some(&req)).await
    }

    // Snapshots.

    /// `GET /v1/snapshots`.
    pub async fn list_snapshots(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<SnapshotList, ClientError> {
        let path = with_query("/v1/snapshots", Vec::new(), cursor, limit);
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/snapshots/{id}`.
    pub async fn get_snapshot(&self, id: &str) -> Result<Snapshot, ClientError> {
        let path = format!("/v1/snapshots/{}", seg(id));
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/snapshots/{id}`.
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/snapshots/{}", seg(id));
        self.t.unit(Method::DELETE, &path, None::<&()>).await
    }
}
