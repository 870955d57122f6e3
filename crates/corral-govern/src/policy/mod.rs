//! Cedar policy: bundles compiled once per version against the schema generated from
//! the catalog, and decisions.
//!
//! A decision is Cedar's, with two of corral's rules on top: a permit whose deciding
//! policies carry `@approval("required")` needs a human's approval, and any
//! evaluation error denies (fail closed). Default deny and forbid-wins are Cedar's own.

mod schema;
mod visibility;

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, ValidationMode, Validator,
};
use corral_types::api::{DecisionEffect, PolicyChange, PolicyText};
pub(crate) use schema::GeneratedSchema;
use serde_json::{json, Value};

use crate::catalog::{Catalog, CatalogEntry};

/// The annotation that turns a permit into "permit with approval".
pub const APPROVAL_ANNOTATION: &str = "approval";

/// Why a bundle was refused or a decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The Cedar text does not parse.
    #[error("the policy bundle does not parse: {0}")]
    Parse(String),
    /// The bundle does not validate against the catalog's schema.
    #[error("the policy bundle does not validate against the catalog's schema: {0}")]
    Invalid(String),
    /// The generated schema is unusable (a catalog problem).
    #[error("the Cedar schema generated from the catalog is invalid: {0}")]
    Schema(String),
    /// An argument cannot be expressed to Cedar.
    #[error("{0}")]
    Input(String),
    /// The request could not be built.
    #[error("the policy request could not be built: {0}")]
    Request(String),
}

/// A bundle compiled for one schema.
#[derive(Debug)]
pub struct CompiledBundle {
    /// Its version.
    pub version: u64,
    set: PolicySet,
    approval: HashSet<String>,
    texts: Vec<PolicyText>,
}

impl CompiledBundle {
    /// Parses `text`, names each policy by its `@id` (else `policyN`) and validates the
    /// set strictly against `schema`. Cedar's messages are kept whole.
    pub(crate) fn compile(
        version: u64,
        text: &str,
        schema: &GeneratedSchema,
    ) -> Result<CompiledBundle, PolicyError> {
        let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Parse(render(&e)))?;
        let mut set = PolicySet::new();
        let mut approval = HashSet::new();
        let mut texts = Vec::new();
        // Keep source order: Cedar's policyN ids sort as strings, not numbers.
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            let id = p.id().to_string();
            id.strip_prefix("policy")
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        });
        for p in policies {
            let id = p
                .annotation("id")
                .map_or_else(|| p.id().to_string(), str::to_string);
            let p = p.new_id(PolicyId::new(&id));
            match p.annotation(APPROVAL_ANNOTATION) {
                None => {}
                Some("required") if p.effect() == cedar_policy::Effect::Permit => {
                    approval.insert(id.clone());
                }
                Some(_) => {
                    return Err(PolicyError::Invalid(format!(
                        "policy {id}: @approval(\"required\") is the only form, on permit policies"
                    )))
                }
            }
            texts.push(PolicyText {
                id: id.clone(),
                text: p.to_string(),
            });
            set.add(p).map_err(|e| {
                PolicyError::Invalid(format!("policy {id}: {e} (ids must be unique)"))
            })?;
        }
        let res = Validator::new(schema.schema.clone()).validate(&set, ValidationMode::Strict);
        if !res.validation_passed() {
            let msgs: Vec<String> = res.validation_errors().map(render).collect();
            return Err(PolicyError::Invalid(msgs.join("; ")));
        }
        Ok(CompiledBundle {
            version,
            set,
            approval,
            texts,
        })
    }

    /// The policies by id, in source order.
    pub fn texts(&self) -> &[PolicyText] {
        &self.texts
    }

    /// Policy ids.
    pub fn ids(&self) -> Vec<String> {
        self.texts.iter().map(|t| t.id.clone()).collect()
    }
}

fn render(e: &impl std::fmt::Display) -> String {
    // Cedar's errors carry their useful detail in the source chain (miette); Display
    // of the top one plus its help is enough and stays on one line.
    e.to_string()
}

/// Who calls, what, in which state.
#[derive(Debug, Clone)]
pub(crate) struct PolicyInput<'a> {
    /// Tenant.
    pub(crate) tenant: &'a str,
    /// Agent (unique within the tenant).
    pub(crate) agent: &'a str,
    /// Task id, or "".
    pub(crate) task_id: &'a str,
    /// Budget state (`context.budget`).
    pub(crate) budget: &'a Value,
    /// Seconds since the epoch.
    pub(crate) now_unix: i64,
}

/// Cedar's answer for one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyOutcome {
    /// The effect.
    pub(crate) effect: DecisionEffect,
    /// Determining policies.
    pub(crate) policies: Vec<String>,
    /// Reasons (errors, default deny).
    pub(crate) reasons: Vec<String>,
}

/// The schema for the current catalog, and the action uid.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) schema: GeneratedSchema,
    action: EntityUid,
    authorizer: Authorizer,
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let t = EntityTypeName::from_str(ty).map_err(|e| PolicyError::Request(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

impl Engine {
    pub(crate) fn new(catalog: &Catalog) -> Result<Engine, PolicyError> {
        Ok(Engine {
            schema: schema::generate(catalog)?,
            action: uid("Action", "call")?,
            authorizer: Authorizer::new(),
        })
    }

    /// Decides one call with one bundle. Every error denies.
    pub(crate) fn decide(
        &self,
        bundle: &CompiledBundle,
        entry: &CatalogEntry,
        args: &Value,
        input: &PolicyInput<'_>,
    ) -> PolicyOutcome {
        match self.try_decide(bundle, entry, args, input) {
            Ok(o) => o,
            Err(e) => PolicyOutcome {
                effect: DecisionEffect::Forbid,
                policies: Vec::new(),
                reasons: vec![format!("denied: {e}")],
            },
        }
    }

    fn try_decide(
        &self,
        bundle: &CompiledBundle,
        entry: &CatalogEntry,
        args: &Value,
        input: &PolicyInput<'_>,
    ) -> Result<PolicyOutcome, PolicyError> {
        let cap = &entry.capability;
        let shaped = match self.schema.inputs.get(&cap.name) {
            Some(t) => t.shape(args, "")?.unwrap_or_else(|| json!({})),
            None => json!({}),
        };
        let (day_secs, days) = (
            input.now_unix.rem_euclid(86_400),
            input.now_unix.div_euclid(86_400),
        );
        let ctx = json!({
            "input": shaped,
            "side_effect": cap.side_effect.as_str(),
            "task_id": input.task_id,
            "budget": input.budget,
            "time": {"unix": input.now_unix, "hour": day_secs / 3600, "day_of_week": (days + 4).rem_euclid(7)},
        });
        let context = Context::from_json_value(ctx, Some((&self.schema.schema, &self.action)))
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let (principal, resource, entities) = entities(input, entry)?;
        let request = Request::new(
            principal,
            self.action.clone(),
            resource,
            context,
            Some(&self.schema.schema),
        )
        .map_err(|e| PolicyError::Request(e.to_string()))?;
        let resp = self
            .authorizer
            .is_authorized(&request, &bundle.set, &entities);
        let diag = resp.diagnostics();
        let errors: Vec<String> = diag.errors().map(|e| e.to_string()).collect();
        let policies: Vec<String> = diag.reason().map(ToString::to_string).collect();
        if !errors.is_empty() {
            return Ok(PolicyOutcome {
                effect: DecisionEffect::Forbid,
                policies,
                reasons: errors
                    .into_iter()
                    .map(|e| format!("denied: a policy failed to evaluate: {e}"))
                    .collect(),
            });
        }
        Ok(match resp.decision() {
            Decision::Allow => {
                let needs: Vec<&String> = policies
                    .iter()
                    .filter(|p| bundle.approval.contains(*p))
                    .collect();
                if needs.is_empty() {
                    PolicyOutcome {
                        effect: DecisionEffect::Permit,
                        reasons: vec![format!("permitted by {}", policies.join(", "))],
                        policies,
                    }
                } else {
                    PolicyOutcome {
                        effect: DecisionEffect::NeedsApproval,
                        reasons: vec![format!(
                            "permitted with a human's approval ({} requires it)",
                            needs
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )],
                        policies,
                    }
                }
            }
            Decision::Deny if policies.is_empty() => PolicyOutcome {
                effect: DecisionEffect::Forbid,
                policies,
                reasons: vec![format!(
                    "no policy permits {} to call {} (default deny)",
                    input.agent, cap.name
                )],
            },
            Decision::Deny => PolicyOutcome {
                effect: DecisionEffect::Forbid,
                reasons: vec![format!("forbidden by {}", policies.join(", "))],
                policies,
            },
        })
    }
}

/// The principal's uid (`Agent::"TENANT/AGENT"`).
pub(crate) fn agent_id(tenant: &str, agent: &str) -> String {
    format!("{tenant}/{agent}")
}

fn entities(
    input: &PolicyInput<'_>,
    entry: &CatalogEntry,
) -> Result<(EntityUid, EntityUid, Entities), PolicyError> {
    let cap = &entry.capability;
    let tenant = uid("Tenant", input.tenant)?;
    let agent = uid("Agent", &agent_id(input.tenant, input.agent))?;
    let category = uid("Category", &cap.category)?;
    let resource = uid("Capability", &cap.name)?;
    let s = |v: &str| RestrictedExpression::new_string(v.to_string());
    let req = |e: Result<Entity, _>| {
        e.map_err(|e: cedar_policy::EntityAttrEvaluationError| PolicyError::Request(e.to_string()))
    };
    let list = vec![
        Entity::new_no_attrs(tenant.clone(), HashSet::new()),
        req(Entity::new(
            agent.clone(),
            [
                ("tenant".to_string(), s(input.tenant)),
                ("name".to_string(), s(input.agent)),
            ]
            .into_iter()
            .collect(),
            [tenant].into_iter().collect(),
        ))?,
        Entity::new_no_attrs(category.clone(), HashSet::new()),
        req(Entity::new(
            resource.clone(),
            [
                ("side_effect".to_string(), s(cap.side_effect.as_str())),
                ("category".to_string(), s(&cap.category)),
            ]
            .into_iter()
            .collect(),
            [category].into_iter().collect(),
        ))?,
    ];
    let entities =
        Entities::from_entities(list, None).map_err(|e| PolicyError::Request(e.to_string()))?;
    Ok((agent, resource, entities))
}

pub(crate) use visibility::could_permit;

/// Policies of `a` and `b` by id: (added, removed, changed).
pub(crate) fn diff(
    a: &[PolicyText],
    b: &[PolicyText],
) -> (Vec<PolicyText>, Vec<PolicyText>, Vec<PolicyChange>) {
    let am: BTreeMap<&str, &str> = a.iter().map(|p| (p.id.as_str(), p.text.as_str())).collect();
    let bm: BTreeMap<&str, &str> = b.iter().map(|p| (p.id.as_str(), p.text.as_str())).collect();
    let added = b
        .iter()
        .filter(|p| !am.contains_key(p.id.as_str()))
        .cloned()
        .collect();
    let removed = a
        .iter()
        .filter(|p| !bm.contains_key(p.id.as_str()))
        .cloned()
        .collect();
    let changed = b
        .iter()
        .filter_map(|p| {
            let before = am.get(p.id.as_str())?;
            (*before != p.text).then(|| PolicyChange {
                id: p.id.clone(),
                before: before.to_string(),
                after: p.text.clone(),
            })
        })
        .collect();
    (added, removed, changed)
}

#[cfg(test)]
mod tests;
