//! Plan review (`POST /v1/plans`): each step decided as if called now, nothing
//! executed and nothing counted. A step is decided again when it is really called.
//! Also the budget operations of [`PolicyCore`].

use corral_types::api::{
    BudgetLimits, BudgetList, DecisionEffect, PlanRequest, PlanResponse, PlanStepDecision,
    TaskUsage, TenantBudget,
};
use serde_json::json;

use crate::budget::DEFAULT_TENANT;
use crate::core::{now_unix, CallCheck, PolicyCore, PolicyCoreError, PolicyEvent};

/// The longest plan reviewed at once.
pub const MAX_PLAN_STEPS: usize = 100;

impl PolicyCore {
    /// Decides each step of a plan for `TENANT/AGENT`; a step whose expected side
    /// effect differs from the catalog's gets a reason saying so (the catalog's class
    /// is the one decided on).
    pub fn review_plan(
        &self,
        tenant: &str,
        agent: &str,
        plan: &PlanRequest,
    ) -> Result<PlanResponse, PolicyCoreError> {
        if plan.steps.len() > MAX_PLAN_STEPS {
            return Err(PolicyCoreError::PlanTooLong(MAX_PLAN_STEPS));
        }
        let now = now_unix();
        let mut steps = Vec::with_capacity(plan.steps.len());
        for (i, step) in plan.steps.iter().enumerate() {
            let args = if step.args.is_null() {
                json!({})
            } else {
                step.args.clone()
            };
            let ev = self.evaluate_at(
                &CallCheck {
                    tenant,
                    agent,
                    capability: &step.tool,
                    args: &args,
                    task_id: plan.task_id.as_deref(),
                },
                now,
            );
            let side_effect = ev.entry.as_ref().map(|e| e.capability.side_effect);
            let mut decision = ev.decision;
            if let (Some(expected), Some(actual)) = (step.expected_side_effect, side_effect) {
                if expected != actual {
                    decision.reasons.push(format!(
                        "the plan expects {} but {} is {} in the catalog",
                        expected.as_str(),
                        step.tool,
                        actual.as_str()
                    ));
                }
            }
            steps.push(PlanStepDecision {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                tool: step.tool.clone(),
                side_effect,
                decision,
            });
        }
        let all_permitted = steps
            .iter()
            .all(|s| s.decision.effect == DecisionEffect::Permit);
        Ok(PlanResponse {
            steps,
            all_permitted,
        })
    }

    /// Sets a tenant's budget limits (`*`: the default); audited.
    pub fn set_budget_limits(
        &self,
        tenant: &str,
        limits: BudgetLimits,
        actor: &str,
    ) -> Result<BudgetLimits, PolicyCoreError> {
        let l = self.budgets.set_limits(&self.store, tenant, limits)?;
        self.audit(PolicyEvent {
            kind: "budget",
            tenant: tenant.into(),
            actor: actor.into(),
            payload: json!({"action": "limits", "limits": l}),
        })?;
        Ok(l)
    }

    /// Budgets of every tenant with limits or usage today (or of `only`).
    pub fn budget_list(&self, only: Option<&str>) -> Result<BudgetList, PolicyCoreError> {
        let tenants: Vec<TenantBudget> = self.budgets.tenants(&self.store, only, now_unix())?;
        Ok(BudgetList {
            default_limits: self.budgets.limits(DEFAULT_TENANT),
            tenants,
        })
    }

    /// Adds tokens reported by the harness to a task; audited.
    pub fn report_tokens(
        &self,
        tenant: &str,
        task_id: &str,
        tokens: u64,
        actor: &str,
    ) -> Result<TaskUsage, PolicyCoreError> {
        if task_id.is_empty() || task_id.len() > 200 {
            return Err(crate::budget::BudgetError::BadTask.into());
        }
        let u = self
            .budgets
            .add_task(&self.store, tenant, task_id, 0, 0, tokens)?;
        self.audit(PolicyEvent {
            kind: "budget",
            tenant: tenant.into(),
            actor: actor.into(),
            payload: json!({"action": "tokens", "task_id": task_id, "tokens": tokens, "total": u.tokens}),
        })?;
        Ok(u)
    }

    /// A task's usage.
    pub fn task_usage(&self, tenant: &str, task_id: &str) -> Result<TaskUsage, PolicyCoreError> {
        Ok(self.budgets.task(&self.store, tenant, task_id)?)
    }
}
