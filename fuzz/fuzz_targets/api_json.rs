//! The daemon's API request bodies (and the PTY WebSocket's client messages): any
//! bytes either fail to deserialize or give a value that serializes back to JSON that
//! deserializes to the same value (what the daemon logs, stores and forwards is what it
//! checked). The string fields the daemon parses further (sizes, template and secret
//! names, egress rules) go through those parsers too.
#![no_main]

use std::fmt::Debug;

use corral_types::api;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Deserializes `data` as `T`; when it parses, checks the JSON round trip.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&v).expect("a parsed request serializes");
    let back: T = serde_json::from_slice(&json).expect("a serialized request parses");
    assert_eq!(v, back, "JSON round trip changed the request");
    Some(v)
}

fn sizes(fields: &[&Option<String>]) {
    for s in fields.iter().filter_map(|f| f.as_deref()) {
        let _ = corral_types::parse_size(s);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 24 {
        0 => {
            if let Some(r) = round_trip::<api::SandboxCreateRequest>(body) {
                let res = &r.resources;
                sizes(&[&res.memory, &res.disk, &res.cpus]);
                if let Some(t) = &r.template {
                    let _ = corral_sandbox::check_template_name(t);
                }
                let _ = corral_net::parse_egress_rules(&r.network.allow.join(","));
            }
        }
        1 => drop(round_trip::<api::ExecRequest>(body)),
        2 => drop(round_trip::<api::RunCodeRequest>(body)),
        3 => drop(round_trip::<api::StdinWriteRequest>(body)),
        4 => drop(round_trip::<api::SignalRequest>(body)),
        5 => drop(round_trip::<api::MkdirRequest>(body)),
        6 => drop(round_trip::<api::RenameRequest>(body)),
        7 => drop(round_trip::<api::CallRequest>(body)),
        8 => drop(round_trip::<api::ApprovalDecisionRequest>(body)),
        9 => drop(round_trip::<api::TenantCreateRequest>(body)),
        10 => drop(round_trip::<api::KeyCreateRequest>(body)),
        11 => drop(round_trip::<api::PolicyPublishRequest>(body)),
        12 => drop(round_trip::<api::ShadowRequest>(body)),
        13 => drop(round_trip::<api::KillSwitchRequest>(body)),
        14 => drop(round_trip::<api::BudgetLimitsRequest>(body)),
        15 => drop(round_trip::<api::TaskUsageRequest>(body)),
        16 => drop(round_trip::<api::PlanRequest>(body)),
        17 => {
            if let Some(r) = round_trip::<api::TemplateImportRequest>(body) {
                let _ = corral_sandbox::check_template_name(&r.name);
            }
        }
        18 => {
            if let Some(r) = round_trip::<api::TemplateBuildRequest>(body) {
                let _ = corral_sandbox::check_template_name(&r.name);
                let _ = corral_sandbox::fuzzing::recipe(&r.recipe, &r.build_args);
            }
        }
        19 => drop(round_trip::<api::TemplateBuildCreateRequest>(body)),
        20 => {
            if let Some(r) = round_trip::<api::SecretPutRequest>(body) {
                // Debug (what a log line would show) never depends on the value.
                let blank = api::SecretPutRequest {
                    value: String::new(),
                    ..r.clone()
                };
                assert_eq!(
                    format!("{r:?}"),
                    format!("{blank:?}"),
                    "Debug shows the value"
                );
                for h in &r.hosts {
                    let _ = corral_net::HostRule::parse(h);
                }
                if let Some(h) = &r.header {
                    let _ = corral_net::HeaderTemplate::parse(h);
                }
            }
        }
        21 => {
            if let Some(n) = round_trip::<api::NetworkRequest>(body) {
                let _ = corral_net::parse_egress_rules(&n.allow.join(","));
            }
        }
        22 => drop(round_trip::<api::TimeoutRequest>(body)),
        _ => drop(round_trip::<api::PtyClientMessage>(body)),
    }
});
