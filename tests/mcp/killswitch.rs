//! A kill switch through MCP: the builtin vanishes from tools/list and is refused,
//! effective from the next call; clearing it brings it back.

use serde_json::json;

use crate::harness::Daemon;
use crate::{call, http, ok, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_hides_and_refuses_a_builtin() {
    let d = Daemon::start(0);
    let c = http(&d, &d.key).await;
    let tool_names = || async {
        c.list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    };
    assert!(tool_names().await.contains(&"run_code".to_string()));
    let sb = ok(&c, "create_sandbox", json!({})).await;
    let id = sb["id"].as_str().unwrap().to_string();
    // A kill switch: run_code vanishes from tools/list and is refused.
    let r = d.call(
        "PUT",
        "/v1/kill-switches",
        Some(&json!({"scope": "capability", "target": "run_code", "reason": "incident 7"})),
    );
    assert!(r.status < 300, "{} {}", r.status, r.text());
    assert!(!tool_names().await.contains(&"run_code".to_string()));
    let r = call(
        &c,
        "run_code",
        json!({"sandbox_id": id, "language": "bash", "code": "echo ran"}),
    )
    .await
    .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("kill_switch"), "{}", text(&r));
    let r = d.call(
        "DELETE",
        "/v1/kill-switches?scope=capability&target=run_code",
        None,
    );
    assert!(r.status < 300, "{} {}", r.status, r.text());
    assert!(tool_names().await.contains(&"run_code".to_string()));

    ok(&c, "kill_sandbox", json!({"sandbox_id": id})).await;
    c.cancel().await.unwrap();
}
