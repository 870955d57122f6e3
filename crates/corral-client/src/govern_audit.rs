//! Governance evidence: approvals, the audit log, capability calls.

use corral_types::api::{
    Approval, ApprovalDecisionRequest, ApprovalList, ApprovalStatus, AuditList,
    AuditVerifyResponse, CallRequest, CallResponse,
};
use hyper::Method;

use crate::{encode, seg, Client, ClientError};

/// Filters and paging of [`Client::list_audit`].
#[derive(Debug, Clone, Default)]
pub struct AuditListParams {
    /// Only this task.
    pub task: Option<String>,
    /// Only this tenant (admin).
    pub tenant: Option<String>,
    /// Only records at or after this RFC 3339 time.
    pub since: Option<String>,
    /// The previous page's next_cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
}

impl Client {
    /// `GET /v1/approvals[?status=]` (operator, admin).
    pub async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<ApprovalList, ClientError> {
        let path = match status {
            Some(s) => format!("/v1/approvals?status={}", s.as_str()),
            None => "/v1/approvals".to_string(),
        };
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/approvals/{id}`.
    pub async fn get_approval(&self, id: &str) -> Result<Approval, ClientError> {
        let path = format!("/v1/approvals/{}", seg(id));
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/approvals/{id}/approve` or `/deny`.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Approval, ClientError> {
        let verb = if approve { "approve" } else { "deny" };
        let path = format!("/v1/approvals/{}/{verb}", seg(id));
        let body = ApprovalDecisionRequest { reason };
        self.t.json(Method::POST, &path, Some(&body)).await
    }

    /// `GET /v1/audit`.
    pub async fn list_audit(&self, p: &AuditListParams) -> Result<AuditList, ClientError> {
        let mut q = Vec::new();
        for (k, v) in [
            ("task", &p.task),
            ("tenant", &p.tenant),
            ("since", &p.since),
            ("cursor", &p.cursor),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", encode(v, false)));
            }
        }
        if let Some(l) = p.limit {
            q.push(format!("limit={l}"));
        }
        let path = if q.is_empty() {
            "/v1/audit".to_string()
        } else {
            format!("/v1/audit?{}", q.join("&"))
        };
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/audit/export?task=ID`: JSON lines.
    pub async fn export_audit(&self, task: &str) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/audit/export?task={}", encode(task, false));
        let resp = self
            .t
            .send(Method::GET, &path, crate::http::empty(), None, None)
            .await?;
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?
            .to_bytes();
        Ok(bytes.to_vec())
    }

    /// `GET /v1/audit/verify` (admin).
    pub async fn verify_audit(&self) -> Result<AuditVerifyResponse, ClientError> {
        self.t
            .json(Method::GET, "/v1/audit/verify", None::<&()>)
            .await
    }

    /// `POST /v1/calls`: a capability call. A denial (403) is an error here whose code
    /// is the refusal's; pending answers (202) come back as responses.
    pub async fn call(&self, req: &CallRequest) -> Result<CallResponse, ClientError> {
        self.t.json(Method::POST, "/v1/calls", Some(req)).await
    }

    /// `GET /v1/calls/{id}`.
    pub async fn get_call(&self, id: &str) -> Result<CallResponse, ClientError> {
        let path = format!("/v1/calls/{}", seg(id));
        self.t.json(Method::GET, &path, None::<&()>).await
    }
}
