//! Redaction before anything is recorded or shown: arguments' sensitive fields, header
//! and field names that carry credentials, and the values of injected secrets.
//!
//! A field is sensitive when the capability's input schema marks its property
//! `"x-sensitive": true` or `"writeOnly": true` (followed through `properties`,
//! `items` and `additionalProperties`), or when its name is a credential's
//! ([`is_sensitive_name`]). Its value becomes `"[redacted]"`, whatever its type.

use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";

/// Names (compared lowercase, `-` as `_`) whose values are credentials wherever they
/// appear: HTTP headers, form fields, JSON members.
const SENSITIVE_NAMES: &[&str] = &[
    "authorization",
    "proxy_authorization",
    "cookie",
    "set_cookie",
    "x_api_key",
    "api_key",
    "apikey",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "private_key",
    "x_auth_token",
];

/// Suffixes that make a name a credential's (`github_token`, `db_password`).
const SENSITIVE_SUFFIXES: &[&str] = &["_token", "_secret", "_password", "_api_key"];

/// Whether a field or header called `name` holds a credential.
pub fn is_sensitive_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('-', "_");
    SENSITIVE_NAMES.contains(&n.as_str()) || SENSITIVE_SUFFIXES.iter().any(|s| n.ends_with(s))
}

/// A copy of `args` with sensitive fields redacted, guided by `schema` (the
/// capability's input JSON Schema; `Value::Null` when there is none).
pub fn redact_args(args: &Value, schema: &Value) -> Value {
    let mut out = args.clone();
    redact_in_place(&mut out, Some(schema));
    out
}

fn schema_marks_sensitive(schema: &Value) -> bool {
    schema.get("x-sensitive").and_then(Value::as_bool) == Some(true)
        || schema.get("writeOnly").and_then(Value::as_bool) == Some(true)
}

fn redact_in_place(v: &mut Value, schema: Option<&Value>) {
    if schema.is_some_and(schema_marks_sensitive) {
        *v = Value::String(REDACTED.into());
        return;
    }
    match v {
        Value::Object(map) => {
            let props = schema.and_then(|s| s.get("properties"));
            let extra = schema.and_then(|s| s.get("additionalProperties"));
            for (k, item) in map.iter_mut() {
                if is_sensitive_name(k) {
                    *item = Value::String(REDACTED.into());
                    continue;
                }
                let sub = props
                    .and_then(|p| p.get(k))
                    .or(extra.filter(|e| e.is_object()));
                redact_in_place(item, sub);
            }
        }
        Value::Array(items) => {
            let sub = schema.and_then(|s| s.get("items"));
            for item in items {
                redact_in_place(item, sub);
            }
        }
        _ => {}
    }
}

/// The values (as text) of the sensitive fields of `args`: what [`redact_args`] would
/// hide. Outputs that echo them are scrubbed of them before they are recorded.
pub fn sensitive_values(args: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(args, Some(schema), false, &mut out);
    out
}

fn collect(v: &Value, schema: Option<&Value>, hidden: bool, out: &mut Vec<String>) {
    let hidden = hidden || schema.is_some_and(schema_marks_sensitive);
    match v {
        Value::Object(map) => {
            let props = schema.and_then(|s| s.get("properties"));
            let extra = schema.and_then(|s| s.get("additionalProperties"));
            for (k, item) in map {
                let sub = props
                    .and_then(|p| p.get(k))
                    .or(extra.filter(|e| e.is_object()));
                collect(item, sub, hidden || is_sensitive_name(k), out);
            }
        }
        Value::Array(items) => {
            let sub = schema.and_then(|s| s.get("items"));
            for item in items {
                collect(item, sub, hidden, out);
            }
        }
        Value::String(s) if hidden => out.push(s.clone()),
        Value::Number(n) if hidden => out.push(n.to_string()),
        _ => {}
    }
}

/// Replaces every occurrence of each secret in the strings (and member names) of `v`
/// with `[redacted]`, and redacts members with credential names. Used on outputs:
/// a target that echoes its `Authorization` header must not hand the secret to the
/// agent or the log. Secrets shorter than 4 bytes are not searched for (they would
/// match everywhere; corral's secret store refuses them anyway).
pub fn scrub(v: &mut Value, secrets: &[&str]) {
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| s.len() >= 4).collect();
    scrub_value(v, &secrets);
}

fn scrub_str(s: &str, secrets: &[&str]) -> Option<String> {
    if !secrets.iter().any(|x| s.contains(x)) {
        return None;
    }
    let mut out = s.to_string();
    for x in secrets {
        out = out.replace(x, REDACTED);
    }
    Some(out)
}

fn scrub_value(v: &mut Value, secrets: &[&str]) {
    match v {
        Value::String(s) => {
            if let Some(clean) = scrub_str(s, secrets) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub_value(i, secrets)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut item) in old {
                let k = scrub_str(&k, secrets).unwrap_or(k);
                if is_sensitive_name(&k) {
                    item = Value::String(REDACTED.into());
                } else {
                    scrub_value(&mut item, secrets);
                }
                map.insert(k, item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_that_carry_credentials() {
        for n in [
            "Authorization",
            "x-api-key",
            "GITHUB_TOKEN",
            "db_password",
            "Cookie",
        ] {
            assert!(is_sensitive_name(n), "{n}");
        }
        for n in ["token_count", "idempotency_key", "author", "name", "tokens"] {
            assert!(!is_sensitive_name(n), "{n}");
        }
    }

    #[test]
    fn schema_marked_fields_are_redacted_at_any_depth() {
        let schema = json!({
            "type": "object",
            "properties": {
                "card": {"type": "string", "x-sensitive": true},
                "user": {"type": "object", "properties": {"pin": {"writeOnly": true}}},
                "list": {"type": "array", "items": {"properties": {"ssn": {"x-sensitive": true}}}},
                "amount": {"type": "integer"}
            }
        });
        let args = json!({
            "card": "4111", "amount": 5,
            "user": {"pin": 1234, "name": "ann"},
            "list": [{"ssn": "1"}, {"ssn": "2", "ok": true}],
            "headers": {"Authorization": "Bearer x", "accept": "json"}
        });
        let r = redact_args(&args, &schema);
        assert_eq!(
            r,
            json!({
                "card": REDACTED, "amount": 5,
                "user": {"pin": REDACTED, "name": "ann"},
                "list": [{"ssn": REDACTED}, {"ssn": REDACTED, "ok": true}],
                "headers": {"Authorization": REDACTED, "accept": "json"}
            })
        );
        // No schema: only credential names.
        assert_eq!(
            redact_args(&json!({"password": "p", "x": 1}), &Value::Null),
            json!({"password": REDACTED, "x": 1})
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_outputs() {
        let mut out = json!({
            "body": "you sent Bearer s3cr3t-value ok",
            "headers": {"authorization": "whatever", "x": ["s3cr3t-value"]},
            "s3cr3t-value": 1,
            "n": 3
        });
        let args = json!({"pin": "s3cr3t-value", "n": 1});
        let schema = json!({"properties": {"pin": {"x-sensitive": true}}});
        assert_eq!(sensitive_values(&args, &schema), ["s3cr3t-value"]);
        scrub(&mut out, &["s3cr3t-value", "ab"]);
        let text = out.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(out["body"], "you sent Bearer [redacted] ok");
        assert_eq!(out["headers"]["authorization"], REDACTED);
        assert_eq!(out["n"], 3);
    }
}
