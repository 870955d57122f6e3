//! Policy bundle versions: publish (validated strictly, immutable), list, show, diff,
//! activate, one-step rollback (a stack of activations), shadow.

use corral_types::api::{PolicyDiff, PolicyList, PolicyVersion};
use rusqlite::{params, OptionalExtension};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::core::{now_rfc3339, PolicyCore, PolicyCoreError, PolicyEvent};

impl PolicyCore {
    pub(crate) fn versions_raw(&self) -> Result<Vec<PolicyVersion>, PolicyCoreError> {
        let rows: Vec<(u64, String, String, String, Option<String>, String)> = self.store.with(|c| {
            let mut st = c.prepare(
                "SELECT version, text, sha256, published_by, note, created_at FROM policy_versions ORDER BY version",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(version, text, sha256, published_by, note, created_at)| PolicyVersion {
                    version,
                    policy_ids: ids_of(&text),
                    sha256,
                    published_by,
                    note,
                    created_at,
                    text: None,
                },
            )
            .collect())
    }

    pub(crate) fn version_text(&self, v: u64) -> Result<String, PolicyCoreError> {
        let v_i = i64::try_from(v).map_err(|_| PolicyCoreError::NoVersion(v))?;
        self.store
            .with(|c| {
                c.query_row(
                    "SELECT text FROM policy_versions WHERE version = ?1",
                    [v_i],
                    |r| r.get(0),
                )
                .optional()
            })?
            .ok_or(PolicyCoreError::NoVersion(v))
    }

    pub(crate) fn insert_version(
        &self,
        text: &str,
        by: &str,
        note: Option<&str>,
    ) -> Result<u64, PolicyCoreError> {
        let sha = hex(&Sha256::digest(text.as_bytes()));
        let now = now_rfc3339();
        let v: i64 = self.store.with(|c| {
            let tx = c.transaction()?;
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions",
                [],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO policy_versions (version, text, sha256, published_by, note, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![next, text, sha, by, note, now],
            )?;
            tx.commit()?;
            Ok(next)
        })?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    pub(crate) fn push_activation(&self, v: u64) -> Result<(), PolicyCoreError> {
        let v = i64::try_from(v).map_err(|_| PolicyCoreError::NoVersion(v))?;
        let now = now_rfc3339();
        self.store.with(|c| {
            c.execute(
                "INSERT INTO policy_activations (version, at) VALUES (?1, ?2)",
                params![v, now],
            )
        })?;
        Ok(())
    }

    /// (active, shadow) as stored.
    pub(crate) fn pointers(&self) -> Result<(Option<u64>, Option<u64>), PolicyCoreError> {
        let (a, s): (Option<i64>, Option<i64>) = self.store.with(|c| {
            let a = c
                .query_row(
                    "SELECT version FROM policy_activations WHERE rolled_back = 0 ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let s = c
                .query_row("SELECT version FROM policy_shadow WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            Ok((a, s))
        })?;
        let u = |x: Option<i64>| x.and_then(|v| u64::try_from(v).ok());
        Ok((u(a), u(s)))
    }

    /// Publishes a bundle: validated strictly against the schema generated from the
    /// catalog (refused with Cedar's messages otherwise, nothing changes), stored as
    /// the next immutable version, and made active unless `activate` is false.
    pub fn publish_policy(
        &self,
        text: &str,
        activate: bool,
        note: Option<&str>,
        actor: &str,
    ) -> Result<PolicyVersion, PolicyCoreError> {
        let _g = self.lock_changes();
        let compiled = self.schema_compile(0, text)?;
        let v = self.insert_version(text, actor, note)?;
        if activate {
            self.push_activation(v)?;
            self.reinstall()?;
        }
        self.audit(PolicyEvent {
            kind: "policy_publish",
            tenant: "*".into(),
            actor: actor.into(),
            payload: json!({"version": v, "activated": activate, "policy_ids": compiled.ids(),
                "sha256": hex(&Sha256::digest(text.as_bytes()))}),
        })?;
        self.version(v)
    }

    /// One version with its text.
    pub fn version(&self, v: u64) -> Result<PolicyVersion, PolicyCoreError> {
        let text = self.version_text(v)?;
        let mut pv = self
            .versions_raw()?
            .into_iter()
            .find(|p| p.version == v)
            .ok_or(PolicyCoreError::NoVersion(v))?;
        pv.text = Some(text);
        Ok(pv)
    }

    /// Versions, active and shadow.
    pub fn policy_list(&self) -> Result<PolicyList, PolicyCoreError> {
        let (active, shadow) = self.pointers()?;
        Ok(PolicyList {
            versions: self.versions_raw()?,
            active,
            shadow,
        })
    }

    /// Policies added, removed and changed from `from` to `to`, by id.
    pub fn policy_diff(&self, from: u64, to: u64) -> Result<PolicyDiff, PolicyCoreError> {
        let texts = |v| -> Result<Vec<corral_types::api::PolicyText>, PolicyCoreError> {
            let t = self.version_text(v)?;
            Ok(split_policies(&t))
        };
        let (a, b) = (texts(from)?, texts(to)?);
        let (added, removed, changed) = crate::policy::diff(&a, &b);
        Ok(PolicyDiff {
            from,
            to,
            added,
            removed,
            changed,
        })
    }

    /// Makes a stored version active (it must validate against the current catalog).
    pub fn activate_policy(&self, v: u64, actor: &str) -> Result<PolicyVersion, PolicyCoreError> {
        let _g = self.lock_changes();
        self.bundle_for(v)?;
        self.push_activation(v)?;
        self.reinstall()?;
        self.audit(PolicyEvent {
            kind: "policy_publish",
            tenant: "*".into(),
            actor: actor.into(),
            payload: json!({"version": v, "activated": true}),
        })?;
        self.version(v)
    }

    /// One step back: the active version before the current one becomes active again.
    /// Repeated, it keeps stepping back.
    pub fn rollback_policy(&self, actor: &str) -> Result<PolicyVersion, PolicyCoreError> {
        let _g = self.lock_changes();
        let stack: Vec<(i64, i64)> = self.store.with(|c| {
            let mut st = c.prepare(
                "SELECT seq, version FROM policy_activations WHERE rolled_back = 0 ORDER BY seq DESC LIMIT 2",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        let [(top_seq, from), (_, to)] = stack[..] else {
            return Err(PolicyCoreError::NoRollback);
        };
        let to_u = u64::try_from(to).unwrap_or(0);
        // The version rolled back to must still fit the catalog: fail before changing.
        self.bundle_for(to_u)?;
        self.store.with(|c| {
            c.execute(
                "UPDATE policy_activations SET rolled_back = 1 WHERE seq = ?1",
                [top_seq],
            )
        })?;
        self.reinstall()?;
        self.audit(PolicyEvent {
            kind: "policy_rollback",
            tenant: "*".into(),
            actor: actor.into(),
            payload: json!({"from": from, "to": to}),
        })?;
        self.version(to_u)
    }

    /// Evaluates `v` next to the active version (not enforced), or stops (`None`).
    pub fn set_shadow(&self, v: Option<u64>, actor: &str) -> Result<(), PolicyCoreError> {
        let _g = self.lock_changes();
        match v {
            Some(v) => {
                self.bundle_for(v)?;
                let vi = i64::try_from(v).map_err(|_| PolicyCoreError::NoVersion(v))?;
                self.store.with(|c| {
                    c.execute(
                        "INSERT INTO policy_shadow (id, version) VALUES (1, ?1)
                         ON CONFLICT (id) DO UPDATE SET version = ?1",
                        [vi],
                    )
                })?;
            }
            None => {
                self.store
                    .with(|c| c.execute("DELETE FROM policy_shadow", []))?;
            }
        }
        self.reinstall()?;
        self.audit(PolicyEvent {
            kind: "policy_publish",
            tenant: "*".into(),
            actor: actor.into(),
            payload: json!({"shadow": v}),
        })
    }
}

/// Policies of a stored text by id (the same naming as compilation: `@id`, else
/// `policyN`). A text that no longer parses yields one pseudo-policy `(unparsed)`.
fn split_policies(text: &str) -> Vec<corral_types::api::PolicyText> {
    use std::str::FromStr;
    match cedar_policy::PolicySet::from_str(text) {
        Ok(set) => {
            let mut v: Vec<(u64, corral_types::api::PolicyText)> = set
                .policies()
                .map(|p| {
                    let raw = p.id().to_string();
                    let n = raw
                        .strip_prefix("policy")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(u64::MAX);
                    let id = p.annotation("id").map_or(raw, str::to_string);
                    (
                        n,
                        corral_types::api::PolicyText {
                            id,
                            text: p.to_string(),
                        },
                    )
                })
                .collect();
            v.sort_by_key(|(n, _)| *n);
            v.into_iter().map(|(_, t)| t).collect()
        }
        Err(_) => vec![corral_types::api::PolicyText {
            id: "(unparsed)".into(),
            text: text.into(),
        }],
    }
}

fn ids_of(text: &str) -> Vec<String> {
    split_policies(text).into_iter().map(|p| p.id).collect()
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}
