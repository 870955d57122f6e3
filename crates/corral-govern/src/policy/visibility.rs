//! Could an agent ever be permitted a capability? Scope analysis of the bundle (Cedar's
//! partial evaluation is behind an experimental feature): some permit's scope matches
//! the principal, the `call` action and the resource, and no forbid without
//! conditions matches them. A permit with conditions counts as possible; the decision
//! at call time is the real check.

use cedar_policy::{ActionConstraint, Effect, EntityUid, PrincipalConstraint, ResourceConstraint};

use super::{uid, CompiledBundle, PolicyError};

struct Scope {
    agent: EntityUid,
    tenant: EntityUid,
    action: EntityUid,
    capability: EntityUid,
    category: EntityUid,
}

/// Whether some permit could apply to `TENANT/AGENT` calling `capability` (of
/// `category`), with no unconditional forbid in the way.
pub(crate) fn could_permit(
    bundle: &CompiledBundle,
    tenant: &str,
    agent: &str,
    capability: &str,
    category: &str,
) -> Result<bool, PolicyError> {
    let s = Scope {
        agent: uid("Agent", &super::agent_id(tenant, agent))?,
        tenant: uid("Tenant", tenant)?,
        action: uid("Action", "call")?,
        capability: uid("Capability", capability)?,
        category: uid("Category", category)?,
    };
    let mut permit = false;
    for p in bundle.set.policies() {
        let matches = principal_matches(&p.principal_constraint(), &s)
            && action_matches(&p.action_constraint(), &s)
            && resource_matches(&p.resource_constraint(), &s);
        if !matches {
            continue;
        }
        match p.effect() {
            Effect::Forbid if !p.has_non_scope_constraint() => return Ok(false),
            Effect::Forbid => {}
            Effect::Permit => permit = true,
        }
    }
    Ok(permit)
}

fn principal_matches(c: &PrincipalConstraint, s: &Scope) -> bool {
    let in_ = |u: &EntityUid| *u == s.agent || *u == s.tenant;
    match c {
        PrincipalConstraint::Any => true,
        PrincipalConstraint::Eq(u) => *u == s.agent,
        PrincipalConstraint::In(u) => in_(u),
        PrincipalConstraint::Is(t) => *t == *s.agent.type_name(),
        PrincipalConstraint::IsIn(t, u) => *t == *s.agent.type_name() && in_(u),
    }
}

fn action_matches(c: &ActionConstraint, s: &Scope) -> bool {
    match c {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(u) => *u == s.action,
        ActionConstraint::In(us) => us.contains(&s.action),
    }
}

fn resource_matches(c: &ResourceConstraint, s: &Scope) -> bool {
    let in_ = |u: &EntityUid| *u == s.capability || *u == s.category;
    match c {
        ResourceConstraint::Any => true,
        ResourceConstraint::Eq(u) => *u == s.capability,
        ResourceConstraint::In(u) => in_(u),
        ResourceConstraint::Is(t) => *t == *s.capability.type_name(),
        ResourceConstraint::IsIn(t, u) => *t == *s.capability.type_name() && in_(u),
    }
}
