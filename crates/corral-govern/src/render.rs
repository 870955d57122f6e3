//! Filling a capability's target templates with its (validated) arguments.
//!
//! `{{name}}` is replaced by argument `name` (an absent one by nothing), encoded for
//! where it lands, so an argument can never change the shape of the request:
//! - URL: percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`); the host is fixed
//!   text (the catalog refuses templates there);
//! - header value: as text; a value with CR, LF or NUL is refused;
//! - body: between double quotes, the JSON string escape of the text; elsewhere the
//!   argument's JSON (a string quoted), so `{"amount": {{n}}}` cannot grow members;
//! - sandbox argv: each element as text (no shell ever parses it).

use corral_types::api::CapabilityTarget;
use serde_json::Value;

use crate::gateway::TargetRequest;

/// Where a substitution lands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Url,
    Header,
    Body,
    Argv,
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn fill(template: &str, args: &Value, place: Place) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let name = rest[start + 2..start + 2 + len].trim();
        let before = &rest[..start];
        let after = &rest[start + 2 + len + 2..];
        out.push_str(before);
        let value = args.get(name).cloned().unwrap_or(Value::Null);
        let absent = args.get(name).is_none();
        let piece = match place {
            _ if absent && place != Place::Body => String::new(),
            Place::Url => percent_encode(&text_of(&value)),
            Place::Argv => text_of(&value),
            Place::Header => {
                let t = text_of(&value);
                if t.contains(['\r', '\n', '\0']) {
                    return Err(format!(
                        "argument {name:?} cannot go into a header: it contains a line break"
                    ));
                }
                t
            }
            Place::Body => {
                let quoted = out.ends_with('"') && after.starts_with('"');
                if quoted {
                    let json = Value::String(text_of(&value)).to_string();
                    json[1..json.len() - 1].to_string()
                } else {
                    value.to_string()
                }
            }
        };
        out.push_str(&piece);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// The request a target makes with `args`, and the name of the secret it needs.
pub(crate) fn render(
    target: &CapabilityTarget,
    args: &Value,
) -> Result<(TargetRequest, Option<String>), String> {
    match target {
        CapabilityTarget::Http {
            method,
            url,
            headers,
            body,
            secret,
        } => {
            let headers = headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), fill(v, args, Place::Header)?)))
                .collect::<Result<Vec<_>, String>>()?;
            Ok((
                TargetRequest::Http {
                    method: method.clone(),
                    url: fill(url, args, Place::Url)?,
                    headers,
                    body: body
                        .as_deref()
                        .map(|b| fill(b, args, Place::Body))
                        .transpose()?,
                },
                secret.clone(),
            ))
        }
        CapabilityTarget::Sandbox { template, command } => Ok((
            TargetRequest::Sandbox {
                template: template.clone(),
                argv: command
                    .iter()
                    .map(|c| fill(c, args, Place::Argv))
                    .collect::<Result<_, _>>()?,
            },
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn each_place_is_encoded_for_itself() {
        let t = CapabilityTarget::Http {
            method: "POST".into(),
            url: "https://x.invalid/inv/{{id}}?q={{ q }}".into(),
            headers: BTreeMap::from([("X-Note".to_string(), "n={{note}}".to_string())]),
            body: Some(r#"{"invoice": "{{id}}", "amount": {{amount}}, "tag": {{tag}}}"#.into()),
            secret: Some("TOKEN".into()),
        };
        let args = json!({"id": "a/b\"c", "q": "x y&z", "amount": 5, "tag": "t\", \"admin\": true", "note": "hi"});
        let (req, secret) = render(&t, &args).unwrap();
        assert_eq!(secret.as_deref(), Some("TOKEN"));
        let TargetRequest::Http {
            url, headers, body, ..
        } = req
        else {
            panic!()
        };
        assert_eq!(url, "https://x.invalid/inv/a%2Fb%22c?q=x%20y%26z");
        assert_eq!(headers, [("X-Note".to_string(), "n=hi".to_string())]);
        let body: Value = serde_json::from_str(&body.unwrap()).unwrap();
        // The arguments stay values: no member was injected.
        assert_eq!(
            body,
            json!({"invoice": "a/b\"c", "amount": 5, "tag": "t\", \"admin\": true"})
        );
        let bad = json!({"note": "x\r\nEvil: 1"});
        assert!(render(&t, &bad).is_err());
    }

    #[test]
    fn argv_elements_are_text_and_absent_is_empty() {
        let t = CapabilityTarget::Sandbox {
            template: "host".into(),
            command: vec!["echo".into(), "{{msg}}; rm -rf /".into(), "{{none}}".into()],
        };
        let (req, _) = render(&t, &json!({"msg": "$(id)"})).unwrap();
        assert_eq!(
            req,
            TargetRequest::Sandbox {
                template: "host".into(),
                argv: vec!["echo".into(), "$(id); rm -rf /".into(), String::new()]
            }
        );
    }
}
