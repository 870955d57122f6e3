//! The capability catalog: what agents may ask corral to do, each with a validated JSON
//! Schema of its arguments, a side-effect class, a category and a target.
//!
//! A catalog comes from a file (TOML `[[capability]]` tables, or JSON
//! `{"capabilities": [...]}`) and from `PUT /v1/capabilities/{name}`. Every entry is
//! checked when it is loaded: a bad file is refused whole and the last good catalog
//! stays. corral's own sandbox tools are builtin entries of category `sandbox`.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_types::api::{Capability, CapabilityTarget, SideEffect};
use serde::Deserialize;
use serde_json::{json, Value};

/// The category of corral's builtin sandbox tools.
pub const BUILTIN_CATEGORY: &str = "sandbox";

/// Why a catalog or a capability was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be parsed.
    #[error("catalog {origin}: {message}; fix the file (the last good catalog stays in use)")]
    Parse {
        /// Where it came from.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// One capability is invalid.
    #[error("capability {name:?}: {message}")]
    Invalid {
        /// Its name.
        name: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Two entries share a name (or one shadows a builtin tool).
    #[error(
        "capability {0:?} is defined twice (or is the name of a builtin sandbox tool); rename one"
    )]
    Duplicate(String),
}

/// A capability with its compiled argument validator.
#[derive(Debug)]
pub struct CatalogEntry {
    /// The capability as published.
    pub capability: Capability,
    /// Whether it is one of corral's builtin sandbox tools.
    pub builtin: bool,
    validator: jsonschema::Validator,
}

/// An argument rejection: a short machine-readable error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsRejection {
    /// `invalid_arguments` and the failing JSON Schema keyword, e.g.
    /// `invalid_arguments.required`.
    pub code: String,
    /// JSON pointer to the offending value (`""` for the whole object).
    pub pointer: String,
    /// Why (the value itself is never echoed: it may be sensitive).
    pub reason: String,
}

impl std::fmt::Display for ArgsRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{} at {at}: {}", self.code, self.reason)
    }
}

impl CatalogEntry {
    /// Validates arguments against the input schema. The first error only (enough to
    /// fix, and bounded).
    pub fn validate_args(&self, args: &Value) -> Result<(), ArgsRejection> {
        match self.validator.iter_errors(args).next() {
            None => Ok(()),
            Some(e) => Err(ArgsRejection {
                code: format!("invalid_arguments.{}", e.kind().keyword()),
                pointer: e.instance_path().as_str().to_string(),
                reason: e.masked().to_string(),
            }),
        }
    }
}

/// An immutable catalog; swapped whole on reload.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: BTreeMap<String, Arc<CatalogEntry>>,
    /// Where it came from (`file:PATH`, `api`, `builtin`).
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default, alias = "capability")]
    capabilities: Vec<Capability>,
}

impl Catalog {
    /// Builtin tools plus `caps`, each checked. `source` is recorded as given.
    pub fn build(caps: Vec<Capability>, source: &str) -> Result<Catalog, CatalogError> {
        let mut entries = BTreeMap::new();
        for cap in builtin_tools() {
            let entry = compile(cap, true)?;
            entries.insert(entry.capability.name.clone(), Arc::new(entry));
        }
        for cap in caps {
            let entry = compile(cap, false)?;
            let name = entry.capability.name.clone();
            if entries.contains_key(&name) {
                return Err(CatalogError::Duplicate(name));
            }
            entries.insert(name, Arc::new(entry));
        }
        Ok(Catalog {
            entries,
            source: source.to_string(),
        })
    }

    /// Parses a catalog file: TOML (`[[capability]]`) unless it starts with `{`.
    pub fn parse(text: &str, origin: &str) -> Result<Vec<Capability>, CatalogError> {
        // One line: parser messages draw the line with a caret over several.
        let parse_err = |message: String| CatalogError::Parse {
            origin: origin.to_string(),
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let file: CatalogFile = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| parse_err(e.to_string()))?
        };
        Ok(file.capabilities)
    }

    /// One entry.
    pub fn get(&self, name: &str) -> Option<&Arc<CatalogEntry>> {
        self.entries.get(name)
    }

    /// Every entry, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<CatalogEntry>> {
        self.entries.values()
    }

    /// Capabilities not builtin (what a file or the API published).
    pub fn published(&self) -> Vec<Capability> {
        self.entries
            .values()
            .filter(|e| !e.builtin)
            .map(|e| e.capability.clone())
            .collect()
    }

    /// A copy with `cap` added or replaced (a builtin cannot be replaced).
    pub fn with(&self, cap: Capability, source: &str) -> Result<Catalog, CatalogError> {
        let mut caps: Vec<Capability> = self
            .published()
            .into_iter()
            .filter(|c| c.name != cap.name)
            .collect();
        caps.push(cap);
        Catalog::build(caps, source)
    }
}

fn invalid(name: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Checks one capability and compiles its schema.
fn compile(mut cap: Capability, builtin: bool) -> Result<CatalogEntry, CatalogError> {
    let name = cap.name.clone();
    if !valid_name(&name) {
        return Err(invalid(
            &name,
            "names are 1-64 of a-z, 0-9, '_', '.', '-', starting with a letter",
        ));
    }
    if cap.description.trim().is_empty() {
        return Err(invalid(&name, "description is empty; say what it does"));
    }
    if !valid_name(&cap.category) {
        return Err(invalid(
            &name,
            "category must be 1-64 of a-z, 0-9, '_', '.', '-', starting with a letter",
        ));
    }
    if !builtin && cap.category == BUILTIN_CATEGORY {
        return Err(invalid(
            &name,
            "category `sandbox` is reserved for corral's builtin tools",
        ));
    }
    // Idempotency is not optional for anything that changes state.
    if cap.side_effect != SideEffect::ReadOnly {
        cap.idempotency_key_required = true;
        if !builtin && cap.compensation.is_none() {
            return Err(invalid(
                &name,
                "a capability that is not read_only needs `compensation = { rollback, owner }`",
            ));
        }
    }
    if cap.input_schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(invalid(
            &name,
            "input_schema must have `\"type\": \"object\"`",
        ));
    }
    if let Err(e) = jsonschema::meta::validate(&cap.input_schema) {
        return Err(invalid(
            &name,
            format!("input_schema is not a valid JSON Schema: {e}"),
        ));
    }
    let validator = jsonschema::validator_for(&cap.input_schema)
        .map_err(|e| invalid(&name, format!("input_schema cannot be compiled: {e}")))?;
    match (&cap.target, builtin) {
        (None, false) => {
            return Err(invalid(
                &name,
                "a target is required: `target = { kind = \"http\", ... }` or `{ kind = \"sandbox\", ... }`",
            ))
        }
        (Some(t), _) => check_target(&name, t)?,
        (None, true) => {}
    }
    Ok(CatalogEntry {
        capability: cap,
        builtin,
        validator,
    })
}

fn check_target(name: &str, t: &CapabilityTarget) -> Result<(), CatalogError> {
    match t {
        CapabilityTarget::Http {
            method,
            url,
            headers,
            secret,
            ..
        } => {
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                return Err(invalid(
                    name,
                    "target.method must be GET, POST, PUT, PATCH or DELETE",
                ));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    name,
                    "target.url must start with http:// or https://",
                ));
            }
            // The host part must be fixed: an argument must not choose where corral
            // sends a secret.
            let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            if authority.is_empty() || authority.contains("{{") {
                return Err(invalid(
                    name,
                    "target.url's host must be fixed text (templates only in the path or query)",
                ));
            }
            for h in headers.keys() {
                if h.eq_ignore_ascii_case("authorization") {
                    return Err(invalid(
                        name,
                        "do not put an Authorization header in the catalog; name a `secret` instead",
                    ));
                }
            }
            if let Some(s) = secret {
                if !valid_secret_name(s) {
                    return Err(invalid(
                        name,
                        "target.secret is a secret's name (A-Z, a-z, 0-9, '_', '-', '.'), never its value",
                    ));
                }
            }
        }
        CapabilityTarget::Sandbox { template, command } => {
            if template.is_empty() || command.is_empty() {
                return Err(invalid(
                    name,
                    "a sandbox target needs a template and a non-empty command",
                ));
            }
        }
    }
    Ok(())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

fn valid_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn tool(name: &str, desc: &str, side_effect: SideEffect, schema: Value) -> Capability {
    Capability {
        name: name.into(),
        description: desc.into(),
        input_schema: schema,
        side_effect,
        category: BUILTIN_CATEGORY.into(),
        idempotency_key_required: false,
        compensation: None,
        target: None,
    }
}

/// corral's builtin sandbox tools as governance sees them (names and side-effect
/// classes fixed here; the MCP server's own schemas are stricter).
pub fn builtin_tools() -> Vec<Capability> {
    use SideEffect::{ReadOnly, WriteLimited};
    let sid = json!({"type": "string"});
    vec![
        tool(
            "create_sandbox",
            "Create a sandbox from a template.",
            WriteLimited,
            json!({"type": "object", "properties": {"template": {"type": "string"}}}),
        ),
        tool(
            "run_code",
            "Run code (python, javascript, bash) in a sandbox.",
            WriteLimited,
            json!({"type": "object", "properties": {"sandbox_id": sid, "language": {"type": "string"}, "code": {"type": "string"}}}),
        ),
        tool(
            "exec_command",
            "Run a command in a sandbox.",
            WriteLimited,
            json!({"type": "object", "properties": {"sandbox_id": sid}}),
        ),
        tool(
            "read_file",
            "Read a file in a sandbox.",
            ReadOnly,
            json!({"type": "object", "properties": {"sandbox_id": sid, "path": {"type": "string"}}}),
        ),
        tool(
            "write_file",
            "Write a file in a sandbox.",
            WriteLimited,
            json!({"type": "object", "properties": {"sandbox_id": sid, "path": {"type": "string"}}}),
        ),
        tool(
            "list_files",
            "List a directory in a sandbox.",
            ReadOnly,
            json!({"type": "object", "properties": {"sandbox_id": sid, "path": {"type": "string"}}}),
        ),
        tool(
            "kill_sandbox",
            "Remove a sandbox.",
            WriteLimited,
            json!({"type": "object", "properties": {"sandbox_id": sid}}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[capability]]
name = "send_email"
description = "Send an email."
side_effect = "privileged"
category = "comms"
input_schema = { type = "object", required = ["to"], properties = { to = { type = "string" }, amount = { type = "integer", maximum = 100 } }, additionalProperties = false }
compensation = { rollback = "none", owner = "ops" }
target = { kind = "http", method = "POST", url = "https://mail.example.invalid/send", secret = "MAIL_TOKEN" }
"#;

    #[test]
    fn parses_and_validates_args() {
        let caps = Catalog::parse(SAMPLE, "test").unwrap();
        let cat = Catalog::build(caps, "test").unwrap();
        let e = cat.get("send_email").unwrap();
        assert!(e.capability.idempotency_key_required);
        e.validate_args(&json!({"to": "a@b"})).unwrap();
        let r = e.validate_args(&json!({"amount": 5})).unwrap_err();
        assert_eq!(r.code, "invalid_arguments.required");
        let r = e
            .validate_args(&json!({"to": "x", "amount": 500}))
            .unwrap_err();
        assert_eq!(r.code, "invalid_arguments.maximum");
        assert_eq!(r.pointer, "/amount");
        assert!(!r.reason.contains("500"), "{}", r.reason);
        assert!(cat.get("read_file").unwrap().builtin);
    }

    #[test]
    fn refuses_bad_entries() {
        let bad_schema = SAMPLE.replace("type = \"integer\"", "type = \"integre\"");
        let e = Catalog::build(Catalog::parse(&bad_schema, "t").unwrap(), "t").unwrap_err();
        assert!(e.to_string().contains("not a valid JSON Schema"), "{e}");
        let no_comp = SAMPLE.replace(
            "compensation = { rollback = \"none\", owner = \"ops\" }\n",
            "",
        );
        assert!(Catalog::build(Catalog::parse(&no_comp, "t").unwrap(), "t").is_err());
        let templ_host = SAMPLE.replace("mail.example.invalid", "{{host}}");
        assert!(Catalog::build(Catalog::parse(&templ_host, "t").unwrap(), "t").is_err());
        let builtin = SAMPLE.replace("send_email", "read_file");
        assert!(matches!(
            Catalog::build(Catalog::parse(&builtin, "t").unwrap(), "t"),
            Err(CatalogError::Duplicate(_))
        ));
        assert!(Catalog::parse("[[capability]]\nname = 3", "t").is_err());
    }
}
