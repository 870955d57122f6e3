//! Governance policy: capabilities, policy bundles, kill switches, budgets, plans.

use corral_types::api::{
    BudgetLimitsRequest, BudgetList, Capability, CapabilityList, KillSwitchList, KillSwitchRequest,
    KillSwitchScope, KillSwitchSetResponse, PlanRequest, PlanResponse, PolicyDiff, PolicyList,
    PolicyPublishRequest, PolicyVersion, ShadowRequest, TaskUsage, TaskUsageRequest,
};
use hyper::Method;

use crate::{encode, seg, Client, ClientError};

impl Client {
    /// `GET /v1/capabilities`.
    pub async fn list_capabilities(&self) -> Result<CapabilityList, ClientError> {
        self.t
            .json(Method::GET, "/v1/capabilities", None::<&()>)
            .await
    }

    /// `PUT /v1/capabilities/{name}` (admin).
    pub async fn put_capability(&self, cap: &Capability) -> Result<Capability, ClientError> {
        let path = format!("/v1/capabilities/{}", seg(&cap.name));
        self.t.json(Method::PUT, &path, Some(cap)).await
    }

    /// `POST /v1/policies` (admin).
    pub async fn publish_policy(
        &self,
        req: &PolicyPublishRequest,
    ) -> Result<PolicyVersion, ClientError> {
        self.t.json(Method::POST, "/v1/policies", Some(req)).await
    }

    /// `GET /v1/policies`.
    pub async fn list_policies(&self) -> Result<PolicyList, ClientError> {
        self.t.json(Method::GET, "/v1/policies", None::<&()>).await
    }

    /// `GET /v1/policies/{version}`.
    pub async fn get_policy(&self, version: u64) -> Result<PolicyVersion, ClientError> {
        let path = format!("/v1/policies/{version}");
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/policies/diff?from=&to=`.
    pub async fn diff_policies(&self, from: u64, to: u64) -> Result<PolicyDiff, ClientError> {
        let path = format!("/v1/policies/diff?from={from}&to={to}");
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/policies/rollback` (admin).
    pub async fn rollback_policy(&self) -> Result<PolicyVersion, ClientError> {
        self.t
            .json(Method::POST, "/v1/policies/rollback", None::<&()>)
            .await
    }

    /// `POST /v1/policies/{version}/activate` (admin).
    pub async fn activate_policy(&self, version: u64) -> Result<PolicyVersion, ClientError> {
        let path = format!("/v1/policies/{version}/activate");
        self.t.json(Method::POST, &path, None::<&()>).await
    }

    /// `PUT /v1/policies/shadow` (admin).
    pub async fn set_shadow_policy(&self, version: u64) -> Result<PolicyList, ClientError> {
        self.t
            .json(
                Method::PUT,
                "/v1/policies/shadow",
                Some(&ShadowRequest { version }),
            )
            .await
    }

    /// `DELETE /v1/policies/shadow` (admin).
    pub async fn clear_shadow_policy(&self) -> Result<(), ClientError> {
        self.t
            .unit(Method::DELETE, "/v1/policies/shadow", None::<&()>)
            .await
    }

    /// `GET /v1/kill-switches`.
    pub async fn list_kill_switches(&self) -> Result<KillSwitchList, ClientError> {
        self.t
            .json(Method::GET, "/v1/kill-switches", None::<&()>)
            .await
    }

    /// `PUT /v1/kill-switches`.
    pub async fn set_kill_switch(
        &self,
        req: &KillSwitchRequest,
    ) -> Result<KillSwitchSetResponse, ClientError> {
        self.t
            .json(Method::PUT, "/v1/kill-switches", Some(req))
            .await
    }

    /// `DELETE /v1/kill-switches?scope=&target=`.
    pub async fn clear_kill_switch(
        &self,
        scope: KillSwitchScope,
        target: &str,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/v1/kill-switches?scope={}&target={}",
            scope.as_str(),
            encode(target, false)
        );
        self.t.unit(Method::DELETE, &path, None::<&()>).await
    }

    /// `GET /v1/budgets`.
    pub async fn list_budgets(&self) -> Result<BudgetList, ClientError> {
        self.t.json(Method::GET, "/v1/budgets", None::<&()>).await
    }

    /// `PUT /v1/budgets/{tenant}` (admin; `*` is the default).
    pub async fn put_budget(
        &self,
        tenant: &str,
        req: &BudgetLimitsRequest,
    ) -> Result<BudgetList, ClientError> {
        let path = format!("/v1/budgets/{}", seg(tenant));
        self.t.json(Method::PUT, &path, Some(req)).await
    }

    /// `POST /v1/tasks/{task}/usage`.
    pub async fn report_task_usage(
        &self,
        task: &str,
        req: &TaskUsageRequest,
    ) -> Result<TaskUsage, ClientError> {
        let path = format!("/v1/tasks/{}/usage", seg(task));
        self.t.json(Method::POST, &path, Some(req)).await
    }

    /// `POST /v1/plans`.
    pub async fn review_plan(&self, req: &PlanRequest) -> Result<PlanResponse, ClientError> {
        self.t.json(Method::POST, "/v1/plans", Some(req)).await
    }
}
