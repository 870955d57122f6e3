//! The Cedar schema, generated from the catalog, and the shaping of validated
//! arguments into `context.input`.
//!
//! Entity types: `Tenant`; `Agent` in `Tenant` (id `TENANT/AGENT`, attributes `tenant`,
//! `name`); `Category`; `Capability` in `Category` (attributes `side_effect`,
//! `category`). One action, `call`, from an Agent on a Capability.
//!
//! `context.input` is a record with the union of the catalog's top-level argument
//! fields, every one optional (test with `has`). JSON Schema types map to Cedar:
//! string → String, integer → Long, boolean → Bool, array of those → Set, object with
//! `properties` → Record. Anything else (numbers with fractions, unions, `null`) is not
//! expressible and left out; a field two capabilities type differently is left out too.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::PolicyError;
use crate::catalog::Catalog;

/// A Cedar attribute type this module can express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CedarType {
    String,
    Long,
    Bool,
    Set(Box<CedarType>),
    Record(BTreeMap<String, CedarType>),
}

impl CedarType {
    /// From a JSON Schema (a subset; `None` when not expressible).
    fn from_json_schema(s: &Value) -> Option<CedarType> {
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            // An `enum` of strings without a type is a string.
            None if s
                .get("enum")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)) =>
            {
                "string"
            }
            _ => return None,
        };
        match ty {
            "string" => Some(CedarType::String),
            "integer" => Some(CedarType::Long),
            "boolean" => Some(CedarType::Bool),
            "array" => {
                let items = s.get("items")?;
                let inner = CedarType::from_json_schema(items)?;
                match inner {
                    CedarType::Set(_) | CedarType::Record(_) => None,
                    t => Some(CedarType::Set(Box::new(t))),
                }
            }
            "object" => Some(CedarType::Record(record_fields(s))),
            _ => None,
        }
    }

    fn merge(&self, other: &CedarType) -> Option<CedarType> {
        match (self, other) {
            (CedarType::Record(a), CedarType::Record(b)) => {
                Some(CedarType::Record(merge_fields(a, b)))
            }
            (a, b) if a == b => Some(a.clone()),
            _ => None,
        }
    }

    /// The part of `self` that `merged` keeps with the same type.
    fn intersect(&self, merged: &CedarType) -> Option<CedarType> {
        match (self, merged) {
            (CedarType::Record(a), CedarType::Record(m)) => Some(CedarType::Record(
                a.iter()
                    .filter_map(|(k, t)| Some((k.clone(), t.intersect(m.get(k)?)?)))
                    .collect(),
            )),
            (a, b) if a == b => Some(a.clone()),
            _ => None,
        }
    }

    fn to_cedar_json(&self) -> Value {
        match self {
            CedarType::String => json!({"type": "String"}),
            CedarType::Long => json!({"type": "Long"}),
            CedarType::Bool => json!({"type": "Boolean"}),
            CedarType::Set(t) => json!({"type": "Set", "element": t.to_cedar_json()}),
            CedarType::Record(fields) => {
                let attrs: Map<String, Value> = fields
                    .iter()
                    .map(|(k, t)| {
                        let mut v = t.to_cedar_json();
                        if let Value::Object(o) = &mut v {
                            o.insert("required".into(), Value::Bool(false));
                        }
                        (k.clone(), v)
                    })
                    .collect();
                json!({"type": "Record", "attributes": attrs})
            }
        }
    }

    /// Shapes a validated value to this type: fields the type does not know are left
    /// out, `null` is absent. A value that does not fit (an integer beyond i64) is an
    /// error: the call is denied rather than decided on partial input.
    pub(crate) fn shape(&self, v: &Value, at: &str) -> Result<Option<Value>, PolicyError> {
        let unfit = || PolicyError::Input(format!("argument {at} cannot be given to policy"));
        Ok(Some(match (self, v) {
            (_, Value::Null) => return Ok(None),
            (CedarType::String, Value::String(_)) | (CedarType::Bool, Value::Bool(_)) => v.clone(),
            (CedarType::Long, Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    json!(i)
                } else {
                    match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
                        _ => return Err(unfit()),
                    }
                }
            }
            (CedarType::Set(t), Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(x) = t.shape(item, &format!("{at}/{i}"))? {
                        out.push(x);
                    }
                }
                Value::Array(out)
            }
            (CedarType::Record(fields), Value::Object(o)) => {
                let mut out = Map::new();
                for (k, t) in fields {
                    if let Some(x) = o.get(k) {
                        if let Some(s) = t.shape(x, &format!("{at}/{k}"))? {
                            out.insert(k.clone(), s);
                        }
                    }
                }
                Value::Object(out)
            }
            _ => return Err(unfit()),
        }))
    }
}

fn record_fields(s: &Value) -> BTreeMap<String, CedarType> {
    let mut out = BTreeMap::new();
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            if let Some(t) = CedarType::from_json_schema(p) {
                if valid_attr(k) {
                    out.insert(k.clone(), t);
                }
            }
        }
    }
    out
}

/// Cedar attribute names usable with `.` (others would need `["..."]`; kept simple).
fn valid_attr(k: &str) -> bool {
    !k.is_empty()
        && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn merge_fields(
    a: &BTreeMap<String, CedarType>,
    b: &BTreeMap<String, CedarType>,
) -> BTreeMap<String, CedarType> {
    let mut out = BTreeMap::new();
    let mut conflicted = Vec::new();
    for (k, t) in a.iter().chain(b.iter()) {
        if conflicted.contains(k) {
            continue;
        }
        match out.get(k) {
            None => {
                out.insert(k.clone(), t.clone());
            }
            Some(prev) => match CedarType::merge(prev, t) {
                Some(m) => {
                    out.insert(k.clone(), m);
                }
                None => {
                    out.remove(k);
                    conflicted.push(k.clone());
                }
            },
        }
    }
    out
}

/// The schema of a catalog: Cedar's JSON schema and, per capability, the type its
/// validated arguments are shaped to.
#[derive(Debug)]
pub(crate) struct GeneratedSchema {
    pub(crate) schema: cedar_policy::Schema,
    pub(crate) json: Value,
    pub(crate) inputs: BTreeMap<String, CedarType>,
}

pub(crate) fn generate(catalog: &Catalog) -> Result<GeneratedSchema, PolicyError> {
    let mut per_cap = BTreeMap::new();
    let mut merged = BTreeMap::new();
    let mut conflicts: Vec<String> = Vec::new();
    for e in catalog.entries() {
        let fields = record_fields(&e.capability.input_schema);
        for (k, t) in &fields {
            if conflicts.contains(k) {
                continue;
            }
            match merged.get(k).map(|prev: &CedarType| prev.merge(t)) {
                None => {
                    merged.insert(k.clone(), t.clone());
                }
                Some(Some(m)) => {
                    merged.insert(k.clone(), m);
                }
                Some(None) => {
                    merged.remove(k);
                    conflicts.push(k.clone());
                }
            }
        }
        per_cap.insert(e.capability.name.clone(), CedarType::Record(fields));
    }
    let merged = CedarType::Record(merged);
    let inputs = per_cap
        .into_iter()
        .filter_map(|(k, t)| Some((k, t.intersect(&merged)?)))
        .collect();
    let long = json!({"type": "Long"});
    let string = json!({"type": "String"});
    let json = json!({"": {
        "entityTypes": {
            "Tenant": {},
            "Agent": {"memberOfTypes": ["Tenant"], "shape": {"type": "Record", "attributes": {
                "tenant": string, "name": string}}},
            "Category": {},
            "Capability": {"memberOfTypes": ["Category"], "shape": {"type": "Record", "attributes": {
                "side_effect": string, "category": string}}},
        },
        "actions": {"call": {"appliesTo": {
            "principalTypes": ["Agent"],
            "resourceTypes": ["Capability"],
            "context": {"type": "Record", "attributes": {
                "input": merged.to_cedar_json(),
                "side_effect": string,
                "task_id": string,
                "budget": {"type": "Record", "attributes": {
                    "degraded": {"type": "Boolean"},
                    "tenant_calls_today": long,
                    "calls_remaining_today": {"type": "Long", "required": false},
                    "task_calls": long,
                    "task_calls_remaining": {"type": "Long", "required": false},
                    "task_tokens": long,
                }},
                "time": {"type": "Record", "attributes": {
                    "unix": long, "hour": long, "day_of_week": long,
                }},
            }},
        }}},
    }});
    let schema = cedar_policy::Schema::from_json_value(json.clone())
        .map_err(|e| PolicyError::Schema(e.to_string()))?;
    Ok(GeneratedSchema {
        schema,
        json,
        inputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_merges_types() {
        let a = json!({"type": "object", "properties": {
            "to": {"type": "string"}, "n": {"type": "integer"}, "x": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "opt": {"type": "object", "properties": {"deep": {"type": "boolean"}}},
            "both": {"type": "string"}}});
        let b = json!({"type": "object", "properties": {"both": {"type": "integer"}, "to": {"type": "string"}}});
        let ta = CedarType::Record(record_fields(&a));
        let tb = CedarType::Record(record_fields(&b));
        let m = ta.merge(&tb).unwrap();
        let CedarType::Record(f) = &m else { panic!() };
        assert!(f.contains_key("to") && f.contains_key("tags") && f.contains_key("opt"));
        assert!(!f.contains_key("x"), "numbers are not expressible");
        // `both` conflicts only when merged field by field through generate(); merge()
        // alone keeps neither.
        assert!(!f.contains_key("both"));
        let shaped = ta
            .shape(
                &json!({"to": "a", "n": 3, "x": 1.5, "tags": ["q"], "extra": 1}),
                "",
            )
            .unwrap()
            .unwrap();
        assert_eq!(shaped, json!({"to": "a", "n": 3, "tags": ["q"]}));
        assert!(ta.shape(&json!({"n": 1e30}), "").is_err());
    }
}
