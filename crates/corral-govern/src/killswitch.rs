//! Kill switches: a capability, a category, an agent (`TENANT/AGENT`) or a whole tenant
//! stopped from the next call on. Kept in memory (checked on every call) and in the
//! store (they survive a restart).

use std::collections::HashMap;
use std::sync::RwLock;

use corral_types::api::{KillSwitch, KillSwitchScope};
use rusqlite::params;

use crate::store::{Store, StoreError};

/// Why a kill switch could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum KillSwitchError {
    /// The target is empty or too long.
    #[error("kill switch target must be 1-200 characters (a capability, category, TENANT/AGENT or tenant)")]
    BadTarget,
    /// An agent target without a tenant.
    #[error("an agent kill switch's target is TENANT/AGENT")]
    BadAgent,
    /// Nothing to clear.
    #[error("no {scope} kill switch is set for {target:?}")]
    NotSet {
        /// Scope.
        scope: &'static str,
        /// Target.
        target: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The engaged switches.
#[derive(Debug, Default)]
pub(crate) struct KillSwitches {
    on: RwLock<HashMap<(KillSwitchScope, String), KillSwitch>>,
}

fn parse_scope(s: &str) -> Option<KillSwitchScope> {
    Some(match s {
        "capability" => KillSwitchScope::Capability,
        "category" => KillSwitchScope::Category,
        "agent" => KillSwitchScope::Agent,
        "tenant" => KillSwitchScope::Tenant,
        _ => return None,
    })
}

impl KillSwitches {
    pub(crate) fn load(store: &Store) -> Result<KillSwitches, StoreError> {
        let rows = store.with(|c| {
            let mut st =
                c.prepare("SELECT scope, target, reason, set_by, created_at FROM kill_switches")?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        KillSwitch {
                            scope: KillSwitchScope::Capability,
                            target: r.get(1)?,
                            reason: r.get(2)?,
                            set_by: r.get(3)?,
                            created_at: r.get(4)?,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        let mut on = HashMap::new();
        for (scope, mut ks) in rows {
            ks.scope = parse_scope(&scope)
                .ok_or_else(|| store.corrupt("kill switch", format!("unknown scope {scope:?}")))?;
            on.insert((ks.scope, ks.target.clone()), ks);
        }
        Ok(KillSwitches {
            on: RwLock::new(on),
        })
    }

    pub(crate) fn set(&self, store: &Store, ks: KillSwitch) -> Result<KillSwitch, KillSwitchError> {
        if ks.target.is_empty() || ks.target.len() > 200 {
            return Err(KillSwitchError::BadTarget);
        }
        if ks.scope == KillSwitchScope::Agent && !ks.target.contains('/') {
            return Err(KillSwitchError::BadAgent);
        }
        store.with(|c| {
            c.execute(
                "INSERT INTO kill_switches (scope, target, reason, set_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (scope, target) DO UPDATE SET reason = ?3, set_by = ?4, created_at = ?5",
                params![ks.scope.as_str(), ks.target, ks.reason, ks.set_by, ks.created_at],
            )
        })?;
        self.write()
            .insert((ks.scope, ks.target.clone()), ks.clone());
        Ok(ks)
    }

    pub(crate) fn clear(
        &self,
        store: &Store,
        scope: KillSwitchScope,
        target: &str,
    ) -> Result<KillSwitch, KillSwitchError> {
        let n = store.with(|c| {
            c.execute(
                "DELETE FROM kill_switches WHERE scope = ?1 AND target = ?2",
                params![scope.as_str(), target],
            )
        })?;
        let removed = self.write().remove(&(scope, target.to_string()));
        match removed {
            Some(ks) if n > 0 => Ok(ks),
            _ => Err(KillSwitchError::NotSet {
                scope: scope.as_str(),
                target: target.to_string(),
            }),
        }
    }

    pub(crate) fn list(&self) -> Vec<KillSwitch> {
        let mut v: Vec<KillSwitch> = self.read().values().cloned().collect();
        v.sort_by(|a, b| (a.scope.as_str(), &a.target).cmp(&(b.scope.as_str(), &b.target)));
        v
    }

    /// The switch that stops this call, if any (tenant first, then agent, category,
    /// capability).
    pub(crate) fn stopping(
        &self,
        tenant: &str,
        agent: &str,
        category: &str,
        capability: &str,
    ) -> Option<KillSwitch> {
        let on = self.read();
        if on.is_empty() {
            return None;
        }
        let agent_id = crate::policy::agent_id(tenant, agent);
        let found = [
            (KillSwitchScope::Tenant, tenant),
            (KillSwitchScope::Agent, agent_id.as_str()),
            (KillSwitchScope::Category, category),
            (KillSwitchScope::Capability, capability),
        ]
        .into_iter()
        .find_map(|(s, t)| on.get(&(s, t.to_string())).cloned());
        found
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<(KillSwitchScope, String), KillSwitch>> {
        // The map is replaced entry by entry; a poisoned lock holds a consistent map.
        self.on.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<(KillSwitchScope, String), KillSwitch>> {
        self.on.write().unwrap_or_else(|p| p.into_inner())
    }
}
