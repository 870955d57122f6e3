//! Budgets: per task (capability calls, sandbox CPU time, tokens reported by the
//! harness) and per tenant per UTC day (calls). Past the burn threshold a tenant is
//! degraded to read_only capabilities; an exhausted budget denies.
//!
//! Counters live in memory (checked on every call) and are written through to the
//! store; a restart reloads them.

use std::collections::HashMap;
use std::sync::Mutex;

use corral_types::api::{BudgetLimits, TaskUsage, TenantBudget};
use corral_types::rfc3339_ms;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use crate::store::{Store, StoreError};

/// The default burn threshold (percent of the tenant's daily calls).
pub const DEFAULT_DEGRADE_AT_PERCENT: u8 = 80;
/// The key of the default limits.
pub const DEFAULT_TENANT: &str = "*";

/// Why a budget operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// A limit is out of range.
    #[error("degrade_at_percent must be 1-100")]
    BadPercent,
    /// A task id is unusable.
    #[error("a task id is 1-200 characters")]
    BadTask,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A budget's state for one call.
#[derive(Debug, Clone)]
pub(crate) struct BudgetCheck {
    /// `context.budget` for Cedar.
    pub(crate) context: Value,
    /// Why the call is denied, if exhausted.
    pub(crate) exhausted: Option<String>,
    /// Degraded to read_only capabilities.
    pub(crate) degraded: bool,
}

#[derive(Debug, Default)]
struct State {
    limits: HashMap<String, BudgetLimits>,
    tenant_calls: HashMap<(String, String), u64>,
    tasks: HashMap<(String, String), TaskUsage>,
}

/// Limits and counters.
#[derive(Debug)]
pub(crate) struct Budgets {
    state: Mutex<State>,
}

/// The UTC day of a unix time, `YYYY-MM-DD`.
pub(crate) fn utc_day(unix: i64) -> String {
    let ms = u64::try_from(unix.max(0)).unwrap_or(0).saturating_mul(1000);
    rfc3339_ms(ms).chars().take(10).collect()
}

impl Budgets {
    pub(crate) fn load(store: &Store) -> Result<Budgets, StoreError> {
        let rows: Vec<(String, String)> = store.with(|c| {
            let mut st = c.prepare("SELECT tenant, json FROM budget_limits")?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        let mut limits = HashMap::new();
        for (t, j) in rows {
            let l: BudgetLimits = serde_json::from_str(&j)
                .map_err(|e| store.corrupt("budget limit", e.to_string()))?;
            limits.insert(t, l);
        }
        Ok(Budgets {
            state: Mutex::new(State {
                limits,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters are plain numbers updated in one statement each: still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_limits(
        &self,
        store: &Store,
        tenant: &str,
        limits: BudgetLimits,
    ) -> Result<BudgetLimits, BudgetError> {
        if let Some(p) = limits.degrade_at_percent {
            if p == 0 || p > 100 {
                return Err(BudgetError::BadPercent);
            }
        }
        let j = serde_json::to_string(&limits)
            .map_err(|e| store.corrupt("budget limit", e.to_string()))?;
        store.with(|c| {
            c.execute(
                "INSERT INTO budget_limits (tenant, json) VALUES (?1, ?2)
                 ON CONFLICT (tenant) DO UPDATE SET json = ?2",
                params![tenant, j],
            )
        })?;
        self.lock()
            .limits
            .insert(tenant.to_string(), limits.clone());
        Ok(limits)
    }

    /// A tenant's own limits, else the default's, else none.
    pub(crate) fn limits(&self, tenant: &str) -> BudgetLimits {
        let st = self.lock();
        st.limits
            .get(tenant)
            .or_else(|| st.limits.get(DEFAULT_TENANT))
            .cloned()
            .unwrap_or_default()
    }

    fn tenant_calls(&self, store: &Store, tenant: &str, day: &str) -> Result<u64, StoreError> {
        let key = (tenant.to_string(), day.to_string());
        if let Some(n) = self.lock().tenant_calls.get(&key) {
            return Ok(*n);
        }
        let n: Option<i64> = store.with(|c| {
            c.query_row(
                "SELECT calls FROM tenant_usage WHERE tenant = ?1 AND day = ?2",
                params![tenant, day],
                |r| r.get(0),
            )
            .optional()
        })?;
        let n = u64::try_from(n.unwrap_or(0)).unwrap_or(0);
        self.lock().tenant_calls.insert(key, n);
        Ok(n)
    }

    pub(crate) fn task(
        &self,
        store: &Store,
        tenant: &str,
        task: &str,
    ) -> Result<TaskUsage, StoreError> {
        let key = (tenant.to_string(), task.to_string());
        if let Some(u) = self.lock().tasks.get(&key) {
            return Ok(u.clone());
        }
        let row: Option<(i64, i64, i64)> = store.with(|c| {
            c.query_row(
                "SELECT calls, cpu_ms, tokens FROM task_usage WHERE tenant = ?1 AND task = ?2",
                params![tenant, task],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        let (calls, cpu, tokens) = row.unwrap_or((0, 0, 0));
        let u = TaskUsage {
            tenant: tenant.to_string(),
            task_id: task.to_string(),
            calls: u64::try_from(calls).unwrap_or(0),
            cpu_ms: u64::try_from(cpu).unwrap_or(0),
            tokens: u64::try_from(tokens).unwrap_or(0),
        };
        self.lock().tasks.insert(key, u.clone());
        Ok(u)
    }

    /// The budget state of a call now.
    pub(crate) fn check(
        &self,
        store: &Store,
        tenant: &str,
        task: &str,
        now_unix: i64,
    ) -> Result<BudgetCheck, StoreError> {
        let limits = self.limits(tenant);
        let calls = self.tenant_calls(store, tenant, &utc_day(now_unix))?;
        let usage = if task.is_empty() {
            None
        } else {
            Some(self.task(store, tenant, task)?)
        };
        let mut exhausted = None;
        let mut degraded = false;
        let mut ctx = json!({
            "degraded": false,
            "tenant_calls_today": calls,
            "task_calls": usage.as_ref().map_or(0, |u| u.calls),
            "task_tokens": usage.as_ref().map_or(0, |u| u.tokens),
        });
        if let Some(max) = limits.tenant_calls_per_day {
            ctx["calls_remaining_today"] = json!(max.saturating_sub(calls));
            let pct = u64::from(
                limits
                    .degrade_at_percent
                    .unwrap_or(DEFAULT_DEGRADE_AT_PERCENT),
            );
            if calls >= max {
                exhausted = Some(format!(
                    "budget exhausted: tenant {tenant} used {calls}/{max} calls today; resets at 00:00 UTC"
                ));
            } else if calls.saturating_mul(100) >= max.saturating_mul(pct) {
                degraded = true;
            }
        }
        if let Some(u) = &usage {
            if let Some(max) = limits.task_calls {
                ctx["task_calls_remaining"] = json!(max.saturating_sub(u.calls));
                if u.calls >= max && exhausted.is_none() {
                    exhausted = Some(format!(
                        "budget exhausted: task {task} used {}/{max} calls",
                        u.calls
                    ));
                }
            }
            if let Some(max) = limits.task_cpu_seconds {
                if u.cpu_ms >= max.saturating_mul(1000) && exhausted.is_none() {
                    exhausted = Some(format!(
                        "budget exhausted: task {task} used {:.1}/{max} sandbox CPU-seconds",
                        u.cpu_ms as f64 / 1000.0
                    ));
                }
            }
            if let Some(max) = limits.task_tokens {
                if u.tokens >= max && exhausted.is_none() {
                    exhausted = Some(format!(
                        "budget exhausted: task {task} used {}/{max} tokens",
                        u.tokens
                    ));
                }
            }
        }
        ctx["degraded"] = json!(degraded);
        Ok(BudgetCheck {
            context: ctx,
            exhausted,
            degraded,
        })
    }

    /// Counts one call for the tenant (today) and the task.
    pub(crate) fn record_call(
        &self,
        store: &Store,
        tenant: &str,
        task: &str,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let day = utc_day(now_unix);
        let before = self.tenant_calls(store, tenant, &day)?;
        store.with(|c| {
            c.execute(
                "INSERT INTO tenant_usage (tenant, day, calls) VALUES (?1, ?2, 1)
                 ON CONFLICT (tenant, day) DO UPDATE SET calls = calls + 1",
                params![tenant, day],
            )
        })?;
        self.lock()
            .tenant_calls
            .insert((tenant.to_string(), day), before + 1);
        if !task.is_empty() {
            self.add_task(store, tenant, task, 1, 0, 0)?;
        }
        Ok(())
    }

    /// Adds to a task's counters.
    pub(crate) fn add_task(
        &self,
        store: &Store,
        tenant: &str,
        task: &str,
        calls: u64,
        cpu_ms: u64,
        tokens: u64,
    ) -> Result<TaskUsage, StoreError> {
        let mut u = self.task(store, tenant, task)?;
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        store.with(|c| {
            c.execute(
                "INSERT INTO task_usage (tenant, task, calls, cpu_ms, tokens) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, task) DO UPDATE SET calls = calls + ?3, cpu_ms = cpu_ms + ?4,
                 tokens = tokens + ?5",
                params![tenant, task, n(calls), n(cpu_ms), n(tokens)],
            )
        })?;
        u.calls = u.calls.saturating_add(calls);
        u.cpu_ms = u.cpu_ms.saturating_add(cpu_ms);
        u.tokens = u.tokens.saturating_add(tokens);
        self.lock()
            .tasks
            .insert((tenant.to_string(), task.to_string()), u.clone());
        Ok(u)
    }

    /// Tenants with limits or usage today (all, or just `only`).
    pub(crate) fn tenants(
        &self,
        store: &Store,
        only: Option<&str>,
        now_unix: i64,
    ) -> Result<Vec<TenantBudget>, StoreError> {
        let day = utc_day(now_unix);
        let mut names: Vec<String> = store.with(|c| {
            let mut st = c.prepare(
                "SELECT tenant FROM budget_limits WHERE tenant != '*'
                 UNION SELECT tenant FROM tenant_usage WHERE day = ?1",
            )?;
            let rows = st
                .query_map([&day], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })?;
        if let Some(t) = only {
            names = vec![t.to_string()];
        }
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for t in names {
            let chk = self.check(store, &t, "", now_unix)?;
            out.push(TenantBudget {
                limits: self.limits(&t),
                day: day.clone(),
                calls_today: self.tenant_calls(store, &t, &day)?,
                degraded: chk.degraded,
                exhausted: chk.exhausted.is_some(),
                tenant: t,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrades_then_exhausts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let b = Budgets::load(&store).unwrap();
        let now = 1_700_000_000;
        b.set_limits(
            &store,
            "acme",
            BudgetLimits {
                tenant_calls_per_day: Some(10),
                degrade_at_percent: Some(80),
                ..BudgetLimits::default()
            },
        )
        .unwrap();
        for _ in 0..7 {
            b.record_call(&store, "acme", "t1", now).unwrap();
        }
        let c = b.check(&store, "acme", "t1", now).unwrap();
        assert!(!c.degraded && c.exhausted.is_none());
        assert_eq!(c.context["calls_remaining_today"], 3);
        b.record_call(&store, "acme", "t1", now).unwrap();
        assert!(b.check(&store, "acme", "t1", now).unwrap().degraded);
        b.record_call(&store, "acme", "t1", now).unwrap();
        b.record_call(&store, "acme", "t1", now).unwrap();
        let c = b.check(&store, "acme", "t1", now).unwrap();
        assert_eq!(
            c.exhausted.as_deref(),
            Some("budget exhausted: tenant acme used 10/10 calls today; resets at 00:00 UTC")
        );
        // The next day starts over; a restart keeps the count.
        assert!(b
            .check(&store, "acme", "t1", now + 86_400)
            .unwrap()
            .exhausted
            .is_none());
        let b2 = Budgets::load(&store).unwrap();
        assert!(b2
            .check(&store, "acme", "t1", now)
            .unwrap()
            .exhausted
            .is_some());
        assert_eq!(b2.task(&store, "acme", "t1").unwrap().calls, 10);
        assert_eq!(utc_day(0), "1970-01-01");
    }
}
