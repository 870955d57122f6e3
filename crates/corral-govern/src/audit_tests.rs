use serde_json::json;

use super::*;

fn ev(i: u64, task: Option<&str>) -> AuditEvent {
    AuditEvent::new(
        AuditKind::ToolCall,
        "acme",
        json!({"i": i, "z": [1, {"b": 2, "a": 1}]}),
    )
    .agent("bot")
    .task(task.map(String::from))
    .correlation(format!("call-{i}"))
}

fn log_with(n: u64) -> (tempfile::TempDir, AuditLog, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = AuditLog::open(&path, false).unwrap();
    for i in 0..n {
        log.append(ev(i, Some(if i % 2 == 0 { "t-even" } else { "t-odd" })))
            .unwrap();
    }
    (dir, log, path)
}

/// Runs SQL behind corral's back, as an attacker with file access would.
fn tamper(path: &Path, sql: &str) {
    let c = Connection::open(path).unwrap();
    c.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn canonical_json_sorts_keys_and_has_no_whitespace() {
    let v = json!({"b": 1, "a": {"d": [true, null, 1.5], "c": "x\"\n\u{1}é"}, "A": -3});
    assert_eq!(
        canonical_json(&v),
        r#"{"A":-3,"a":{"c":"x\"\n\u0001é","d":[true,null,1.5]},"b":1}"#
    );
    // Same value, other insertion order: same bytes, same hash.
    let w = json!({"A": -3, "b": 1, "a": {"c": "x\"\n\u{1}é", "d": [true, null, 1.5]}});
    assert_eq!(sha256_hex(&v), sha256_hex(&w));
}

#[test]
fn appends_chain_and_verify_passes() {
    let (_d, log, path) = log_with(50);
    let (seq, head) = log.head();
    assert_eq!(seq, 50);
    let r = verify_file(&path).unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!((r.records, r.head_seq, r.head_hash.clone()), (50, 50, head));
    // The first record links to zeros; each next one to the previous hash.
    let page = log
        .list(&AuditQuery {
            limit: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.records[0].prev_hash, "0".repeat(64));
    assert_eq!(page.records[1].prev_hash, page.records[0].hash);
    assert_eq!(page.records[0].payload["z"][1], json!({"a": 1, "b": 2}));
}

#[test]
fn reopening_continues_the_chain() {
    let (_d, log, path) = log_with(3);
    drop(log);
    let log = AuditLog::open(&path, true).unwrap();
    assert_eq!(log.append(ev(9, None)).unwrap(), 4);
    assert!(verify_file(&path).unwrap().ok);
}

#[test]
fn corral_itself_cannot_update_or_delete() {
    let (_d, _log, path) = log_with(2);
    let c = Connection::open(&path).unwrap();
    assert!(c.execute("DELETE FROM audit WHERE seq = 1", []).is_err());
    assert!(c.execute("UPDATE audit SET tenant = 'x'", []).is_err());
}

fn fault_of(path: &Path) -> AuditFault {
    let r = verify_file(path).unwrap();
    assert!(!r.ok);
    r.fault.unwrap()
}

#[test]
fn an_edited_record_is_found() {
    let (_d, _log, path) = log_with(10);
    tamper(
        &path,
        "UPDATE audit SET record = replace(record, '\"i\":4', '\"i\":40') WHERE seq = 5",
    );
    let f = fault_of(&path);
    assert_eq!((f.seq, f.kind), (5, AuditFaultKind::Edited), "{f:?}");
    let r = verify_file(&path).unwrap();
    assert_eq!(r.head_seq, 4);
}

#[test]
fn an_edited_and_rehashed_record_breaks_the_next_link() {
    let (_d, _log, path) = log_with(10);
    // Rewrite record 5 and give it a correct hash for its new content: record 6 still
    // links to the old hash.
    let c = Connection::open(&path).unwrap();
    let (rec, prev): (String, Vec<u8>) = c
        .query_row(
            "SELECT record, prev_hash FROM audit WHERE seq = 5",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let rec = rec.replace("\"i\":4", "\"i\":44");
    let hash = chain_hash(&hash_array(&prev), rec.as_bytes());
    c.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
    c.execute(
        "UPDATE audit SET record = ?1, hash = ?2 WHERE seq = 5",
        params![rec, &hash[..]],
    )
    .unwrap();
    let f = fault_of(&path);
    assert_eq!((f.seq, f.kind), (6, AuditFaultKind::BadLink), "{f:?}");
}

#[test]
fn a_deleted_record_is_found() {
    let (_d, _log, path) = log_with(10);
    tamper(&path, "DELETE FROM audit WHERE seq = 7");
    let f = fault_of(&path);
    assert_eq!((f.seq, f.kind), (8, AuditFaultKind::Deleted), "{f:?}");
    assert!(f.message.contains("7..7"), "{}", f.message);
    // Deleting the first one is found too.
    let (_d, _log, path) = log_with(3);
    tamper(&path, "DELETE FROM audit WHERE seq = 1");
    assert_eq!(fault_of(&path).kind, AuditFaultKind::Deleted);
}

#[test]
fn reordered_records_are_found() {
    let (_d, _log, path) = log_with(10);
    tamper(
        &path,
        "UPDATE audit SET seq = -3 WHERE seq = 3;
         UPDATE audit SET seq = 3 WHERE seq = 4;
         UPDATE audit SET seq = 4 WHERE seq = -3;",
    );
    let f = fault_of(&path);
    assert_eq!((f.seq, f.kind), (3, AuditFaultKind::Reordered), "{f:?}");
}

#[test]
fn an_edited_index_column_is_found() {
    // Hiding a record from a task's export by changing only its task_id column.
    let (_d, _log, path) = log_with(10);
    tamper(
        &path,
        "UPDATE audit SET task_id = 'elsewhere' WHERE seq = 2",
    );
    let f = fault_of(&path);
    assert_eq!((f.seq, f.kind), (2, AuditFaultKind::Edited), "{f:?}");
    assert!(f.message.contains("task_id"), "{}", f.message);
}

#[test]
fn list_filters_and_pages() {
    let (_d, log, _path) = log_with(25);
    let q = AuditQuery {
        task_id: Some("t-odd".into()),
        limit: 5,
        ..Default::default()
    };
    let p1 = log.list(&q).unwrap();
    assert_eq!(p1.records.len(), 5);
    assert!(p1
        .records
        .iter()
        .all(|r| r.task_id.as_deref() == Some("t-odd")));
    let cursor: u64 = p1.next_cursor.unwrap().parse().unwrap();
    let p2 = log
        .list(&AuditQuery {
            after_seq: Some(cursor),
            ..q.clone()
        })
        .unwrap();
    assert_eq!(p2.records[0].seq, cursor + 2);
    let mut all = 0;
    let mut after = None;
    loop {
        let p = log
            .list(&AuditQuery {
                after_seq: after,
                ..q.clone()
            })
            .unwrap();
        all += p.records.len();
        match p.next_cursor {
            Some(c) => after = Some(c.parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(all, 12);
    let none = log
        .list(&AuditQuery {
            tenant: Some("other".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(none.records.is_empty() && none.next_cursor.is_none());
}

#[test]
fn export_gives_one_tasks_trail_in_order() {
    let (_d, log, _path) = log_with(9);
    let mut out = Vec::new();
    assert_eq!(
        log.export_task(Some("acme"), "t-even", &mut out).unwrap(),
        5
    );
    let lines: Vec<AuditRecord> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 3, 5, 7, 9]);
    let mut out = Vec::new();
    assert_eq!(
        log.export_task(Some("other"), "t-even", &mut out).unwrap(),
        0
    );
}

#[test]
fn a_failed_batch_leaves_the_chain_untouched() {
    let (_d, log, path) = log_with(2);
    // Another writer holds the write lock past the busy timeout? Simpler: a batch is
    // one transaction, so a good batch of 3 lands whole.
    let seqs = log
        .append_all(&[ev(1, None), ev(2, None), ev(3, None)])
        .unwrap();
    assert_eq!(seqs, [3, 4, 5]);
    assert!(verify_file(&path).unwrap().ok);
}

/// `N=500000 cargo test -p corral-govern --release verify_throughput -- --ignored
/// --nocapture`; with AUDIT_BENCH_DIR=DIR the log is written to DIR/audit.db and kept
/// (bench/audit-verify.sh then times `corral audit verify --data-dir DIR` on it).
#[test]
#[ignore = "a benchmark; run by hand"]
fn verify_throughput() {
    let n: u64 = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("AUDIT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let path = dir.join("audit.db");
    let log = AuditLog::open(&path, false).unwrap();
    // Records shaped like a call's: arguments, a decision with policies, an output.
    let kinds = [AuditKind::ToolCall, AuditKind::Decision, AuditKind::Outcome];
    let batch: Vec<AuditEvent> = (0..999)
        .map(|i| {
            AuditEvent::new(
                kinds[i % 3],
                "acme",
                json!({
                    "capability": "refund_invoice",
                    "args": {"invoice_id": format!("inv_{i:08}"), "amount_cents": 1200, "card": "[redacted]"},
                    "args_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "decision": {"effect": "permit", "stage": "policy", "policies": ["write-limited"], "policy_version": 3},
                    "output": {"status": 200, "body": {"ok": true, "refund_id": format!("re_{i}")}},
                }),
            )
            .agent("agent-7")
            .task(Some(format!("task-{}", i / 30)))
            .correlation(format!("call-{i:024x}"))
        })
        .collect();
    let mut written = 0;
    while written < n {
        log.append_all(&batch).unwrap();
        written += batch.len() as u64;
    }
    let t = Instant::now();
    let r = verify_file(&path).unwrap();
    let s = t.elapsed().as_secs_f64();
    assert!(r.ok);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "verified {} records ({} MB) in {s:.3} s: {:.0} records/s",
        r.records,
        bytes >> 20,
        r.records as f64 / s
    );
}
