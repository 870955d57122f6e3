//! `corral sandbox|key|tenant ...` against a real daemon: the CLI as a user runs it,
//! with CORRAL_URL and CORRAL_API_KEY (or --url/--key), checking what it prints and
//! how it exits.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::harness::Daemon;

/// `corral ARGS` pointed at `d` through the environment, with `key`.
fn corral_as(d: &Daemon, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CORRAL_URL", format!("http://{}", d.addr))
        .env("CORRAL_API_KEY", key)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn corral(d: &Daemon, args: &[&str]) -> Output {
    corral_as(d, &d.key, args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success; returns stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = corral(d, args);
    assert!(
        o.status.success(),
        "corral {args:?}: {}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn ok_json(d: &Daemon, args: &[&str]) -> Value {
    let out = ok(d, args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("corral {args:?} --json printed no JSON ({e}): {out:?}"))
}

/// Asserts a failed command reported one clean line: non-zero exit, `corral: ...`
/// on stderr, nothing of a panic or a Rust debug dump.
fn assert_clean_failure(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "{what} succeeded: {}", stdout(o));
    assert_eq!(o.status.code(), Some(125), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: not one line: {err:?}");
    assert!(lines[0].starts_with("corral: "), "{what}: {err:?}");
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "Api {",
        "Error {",
        "{ status",
        "Some(",
    ] {
        assert!(
            !err.contains(bad),
            "{what}: debug output {bad:?} in {err:?}"
        );
    }
    lines[0].to_string()
}

#[test]
fn sandbox_create_ls_get_exec_and_rm() {
    let d = Daemon::start(0);
    let sb = ok_json(
        &d,
        &[
            "sandbox",
            "create",
            "--json",
            "--metadata",
            "app=cli",
            "--memory",
            "256M",
        ],
    );
    let id = sb["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sb-"), "{sb}");
    assert_eq!(sb["state"], "running");
    assert_eq!(sb["metadata"]["app"], "cli");
    assert_eq!(sb["resources"]["memory_bytes"], 256u64 << 20);

    // Without --json, create prints just the id.
    let plain = ok(&d, &["sandbox", "create"]);
    let id2 = plain.trim().to_string();
    assert!(
        id2.starts_with("sb-") && !id2.contains(char::is_whitespace),
        "{plain:?}"
    );

    // Human table: a header and a row per sandbox, the id first.
    let table = ok(&d, &["sandbox", "ls"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("STATE"),
        "{table}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{table}");
    let row = rows
        .iter()
        .find(|r| r.starts_with(&id))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("running") && row.contains("app=cli") && row.contains("256M"),
        "{row}"
    );
    assert!(rows.iter().any(|r| r.starts_with(&id2)), "{table}");

    // --json parses, and the metadata filter applies.
    let all = ok_json(&d, &["sandbox", "ls", "--json"]);
    let ids: Vec<&str> = all["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{all}");
    assert!(ids.contains(&id.as_str()) && ids.contains(&id2.as_str()));
    let only = ok_json(&d, &["sandbox", "ls", "--json", "--metadata", "app=cli"]);
    assert_eq!(only["sandboxes"].as_array().unwrap().len(), 1, "{only}");
    assert_eq!(only["sandboxes"][0]["id"], id.as_str());

    let got = ok_json(&d, &["sandbox", "get", &id, "--json"]);
    assert_eq!(got["id"], id.as_str());

    // exec streams stdout and stderr to ours and exits with the command's status.
    let o = corral(
        &d,
        &[
            "sandbox",
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    let o = corral(
        &d,
        &[
            "sandbox",
            "exec",
            &id,
            "--env",
            "X=42",
            "--cwd",
            "/tmp",
            "--",
            "sh",
            "-c",
            "echo $X; pwd",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "42\n/tmp\n");
    // --json: the run result, and still the command's exit status.
    let o = corral(
        &d,
        &[
            "sandbox",
            "exec",
            "--json",
            &id,
            "--",
            "sh",
            "-c",
            "echo hi; exit 5",
        ],
    );
    assert_eq!(o.status.code(), Some(5), "stderr: {}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["exit_code"], 5);
    assert_eq!(r["stdout"], "hi\n");
    // A command that is not there: 127, like corral run.
    let o = corral(&d, &["sandbox", "exec", &id, "--", "no-such-command-xyz"]);
    assert_eq!(o.status.code(), Some(127), "stderr: {}", stderr(&o));

    let o = ok_json(&d, &["sandbox", "rm", "--json", &id, &id2]);
    assert_eq!(o["deleted"], serde_json::json!([id, id2]));
    for i in [&id, &id2] {
        let s = d.call("GET", &format!("/v1/sandboxes/{i}"), None).json();
        assert_eq!(s["state"], "stopped", "{s}");
    }
    // Stopped sandboxes are not listed by default.
    let table = ok(&d, &["sandbox", "ls"]);
    assert_eq!(table.lines().count(), 1, "{table}");
    d.assert_clean(0);
}

#[test]
fn sandbox_cp_round_trips_bytes() {
    let d = Daemon::start(0);
    let id = d.create(serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.bin");
    // 3 MiB + a bit, every byte value, not a multiple of any buffer size.
    let data: Vec<u8> = (0..(3 << 20) + 12345u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let remote = format!("{id}:/home/sandbox/f.bin");
    let o = ok_json(
        &d,
        &["sandbox", "cp", "--json", src.to_str().unwrap(), &remote],
    );
    assert_eq!(o["bytes"], data.len() as u64, "{o}");
    // The sandbox sees the same bytes.
    let r = d.exec(&id, &["sh", "-c", "wc -c < /home/sandbox/f.bin"]);
    assert_eq!(r["stdout"].as_str().unwrap().trim(), data.len().to_string());
    let back = dir.path().join("out.bin");
    let o = ok_json(
        &d,
        &["sandbox", "cp", "--json", &remote, back.to_str().unwrap()],
    );
    assert_eq!(o["bytes"], data.len() as u64, "{o}");
    let got = std::fs::read(&back).unwrap();
    assert!(
        got == data,
        "downloaded {} bytes differ from the {} uploaded",
        got.len(),
        data.len()
    );

    // Plain (no --json) copies print nothing on stdout.
    let back2 = dir.path().join("out2.bin");
    let out = ok(&d, &["sandbox", "cp", &remote, back2.to_str().unwrap()]);
    assert!(out.is_empty(), "{out:?}");
    assert!(std::fs::read(&back2).unwrap() == data);

    // Neither side remote, a missing remote file, a missing local file: clean errors.
    let o = corral(
        &d,
        &[
            "sandbox",
            "cp",
            src.to_str().unwrap(),
            back.to_str().unwrap(),
        ],
    );
    assert_clean_failure(&o, "cp local local");
    let o = corral(
        &d,
        &[
            "sandbox",
            "cp",
            &format!("{id}:/home/sandbox/nope"),
            back.to_str().unwrap(),
        ],
    );
    let line = assert_clean_failure(&o, "cp of a missing file");
    assert!(line.contains("404") || line.contains("not_found"), "{line}");
    // A failed download leaves the destination as it was: no truncated or empty file.
    let keep = dir.path().join("keep.txt");
    std::fs::write(&keep, b"precious").unwrap();
    let fresh = dir.path().join("fresh.txt");
    for remote_src in [
        format!("{id}:/home/sandbox/nope"),
        "sb-00000000000000000000:/etc/hostname".to_string(),
    ] {
        for dst in [&keep, &fresh] {
            let o = corral(&d, &["sandbox", "cp", &remote_src, dst.to_str().unwrap()]);
            assert_clean_failure(&o, "a failed download");
        }
        assert_eq!(std::fs::read(&keep).unwrap(), b"precious", "{remote_src}");
        assert!(
            !fresh.exists(),
            "{remote_src}: a failed download created {fresh:?}"
        );
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["in.bin", "keep.txt", "out.bin", "out2.bin"],
            "{remote_src}: stray files"
        );
    }
    let o = corral(&d, &["sandbox", "cp", "/nonexistent/file", &remote]);
    let line = assert_clean_failure(&o, "cp of a missing local file");
    assert!(line.contains("/nonexistent/file"), "{line}");
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn sandbox_pause_resume_timeout_snapshot_fork() {
    let d = Daemon::start(0);
    let id = ok(&d, &["sandbox", "create", "--timeout", "2m"])
        .trim()
        .to_string();
    let sb = d.call("GET", &format!("/v1/sandboxes/{id}"), None).json();
    let expires0 = sb["expires_at"].as_str().unwrap().to_string();

    let p = ok_json(&d, &["sandbox", "pause", "--json", &id]);
    assert_eq!(p["state"], "paused", "{p}");
    assert_eq!(
        d.call("GET", &format!("/v1/sandboxes/{id}"), None).json()["state"],
        "paused"
    );
    // The human form is a one-row table.
    let t = ok(&d, &["sandbox", "get", &id]);
    assert_eq!(t.lines().count(), 2, "{t}");
    assert!(t.lines().nth(1).unwrap().contains("paused"), "{t}");
    let r = ok_json(&d, &["sandbox", "resume", "--json", &id]);
    assert_eq!(r["state"], "running", "{r}");

    let t = ok_json(&d, &["sandbox", "timeout", "--json", &id, "1h"]);
    let expires1 = t["expires_at"].as_str().unwrap();
    assert!(expires1 > expires0.as_str(), "{expires0} -> {expires1}");

    let w = d.exec(&id, &["sh", "-c", "echo forked-data > /home/sandbox/keep"]);
    assert_eq!(w["exit_code"], 0, "{w}");
    let snap = ok(&d, &["sandbox", "snapshot", &id]).trim().to_string();
    assert!(snap.starts_with("snap-"), "{snap:?}");
    let snap_json = ok_json(&d, &["sandbox", "snapshot", "--json", &id]);
    assert_eq!(snap_json["source_sandbox_id"], id.as_str());
    // Content-addressed: the same files, the same id.
    assert_eq!(snap_json["id"], snap.as_str());

    let child = ok_json(
        &d,
        &["sandbox", "fork", "--json", &snap, "--metadata", "gen=2"],
    );
    let cid = child["id"].as_str().unwrap().to_string();
    assert_ne!(cid, id);
    assert_eq!(child["metadata"]["gen"], "2");
    let o = corral(
        &d,
        &["sandbox", "exec", &cid, "--", "cat", "/home/sandbox/keep"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "forked-data\n");

    ok(&d, &["sandbox", "rm", &id, &cid]);
    d.assert_clean(0);
}

#[test]
fn cli_errors_are_one_clean_line() {
    let d = Daemon::start(0);
    let ghost = "sb-00000000000000000000";
    for args in [
        vec!["sandbox", "get", ghost],
        vec!["sandbox", "exec", ghost, "--", "true"],
        vec!["sandbox", "exec", "--json", ghost, "--", "true"],
        vec!["sandbox", "pause", ghost],
        vec!["sandbox", "resume", ghost],
        vec!["sandbox", "snapshot", ghost],
        vec!["sandbox", "timeout", ghost, "5m"],
        vec!["sandbox", "rm", ghost],
    ] {
        let o = corral(&d, &args);
        let line = assert_clean_failure(&o, &format!("{args:?}"));
        assert!(
            line.contains(ghost),
            "{args:?}: the message does not name the id: {line}"
        );
        assert!(
            line.contains("not_found") || line.contains("404"),
            "{args:?}: {line}"
        );
    }
    let o = corral(
        &d,
        &["sandbox", "fork", "snap-0000000000000000000000000000dead"],
    );
    let line = assert_clean_failure(&o, "fork of an unknown snapshot");
    assert!(
        line.contains("snap-0000000000000000000000000000dead"),
        "{line}"
    );

    // A wrong key: 401, said plainly.
    let o = corral_as(&d, "crl_0123456789abcdef", &["sandbox", "ls"]);
    let line = assert_clean_failure(&o, "ls with a wrong key");
    assert!(
        line.contains("unauthenticated") && line.contains("401"),
        "{line}"
    );
    assert!(
        !line.contains("crl_0123456789abcdef"),
        "the key is echoed: {line}"
    );
    // --key wins over the environment.
    let o = corral_as(&d, "crl_wrong", &["sandbox", "ls", "--key", &d.key]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Nothing listening: a clean line that names the URL.
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .env("CORRAL_API_KEY", "k")
        .args(["sandbox", "ls", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    let line = assert_clean_failure(&o, "ls with no daemon");
    assert!(line.contains("127.0.0.1:1"), "{line}");

    // An agent may not create keys: 403, said plainly.
    let agent = d.tenant_key("team-a");
    let o = corral_as(
        &d,
        &agent,
        &["key", "create", "--tenant", "team-a", "--role", "admin"],
    );
    let line = assert_clean_failure(&o, "agent creating a key");
    assert!(
        line.contains("403") || line.contains("permission_denied"),
        "{line}"
    );
    // Another tenant's sandbox does not exist for it.
    let id = d.create(serde_json::json!({}));
    let o = corral_as(&d, &agent, &["sandbox", "get", &id]);
    let line = assert_clean_failure(&o, "another tenant's sandbox");
    assert!(line.contains("404") || line.contains("not_found"), "{line}");
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn key_and_tenant_commands() {
    let d = Daemon::start(0);
    let t = ok_json(
        &d,
        &[
            "tenant",
            "create",
            "--json",
            "acme",
            "--max-sandboxes",
            "3",
            "--max-memory",
            "2G",
        ],
    );
    assert_eq!(t["name"], "acme");
    assert_eq!(t["quota"]["max_sandboxes"], 3);
    assert_eq!(t["quota"]["max_memory_bytes"], 2u64 << 30);
    assert_eq!(ok(&d, &["tenant", "create", "beta"]).trim(), "beta");
    let o = corral(&d, &["tenant", "create", "acme"]);
    assert_clean_failure(&o, "a duplicate tenant");

    let table = ok(&d, &["tenant", "ls"]);
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    let acme = table
        .lines()
        .find(|l| l.starts_with("acme "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(acme.contains(&(2u64 << 30).to_string()), "{acme}");
    assert!(table.lines().any(|l| l.starts_with("beta ")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("default ")), "{table}");
    let list = ok_json(&d, &["tenant", "ls", "--json"]);
    let names: Vec<&str> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for n in ["acme", "beta", "default"] {
        assert!(names.contains(&n), "{list}");
    }

    // Plain create: the secret alone on stdout, the rest on stderr.
    let o = corral(
        &d,
        &[
            "key", "create", "--tenant", "acme", "--role", "agent", "--name", "ci",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let secret = stdout(&o).trim().to_string();
    assert!(
        secret.starts_with("crl_") && !secret.contains(char::is_whitespace),
        "{secret:?}"
    );
    assert!(stderr(&o).contains("acme"), "{}", stderr(&o));
    let created = ok_json(
        &d,
        &[
            "key", "create", "--json", "--tenant", "beta", "--role", "operator",
        ],
    );
    let secret2 = created["secret"].as_str().unwrap().to_string();
    let kid2 = created["key"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["key"]["role"], "operator");

    // The new key works, for its tenant.
    let o = corral_as(&d, &secret, &["sandbox", "ls", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // ls: every key, never a secret (nor a secret-looking string).
    let table = ok(&d, &["key", "ls"]);
    let json = ok(&d, &["key", "ls", "--json"]);
    for out in [&table, &json] {
        for s in [&secret, &secret2, &d.key] {
            assert!(!out.contains(s.as_str()), "key ls shows a secret: {out}");
        }
        assert!(
            !out.contains("crl_"),
            "key ls shows something secret-like: {out}"
        );
    }
    let keys: Value = serde_json::from_str(&json).unwrap();
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{json}"); // admin + 2
    for k in keys {
        assert!(k.get("secret").is_none(), "{k}");
    }
    let ci = keys.iter().find(|k| k["name"] == "ci").unwrap();
    assert_eq!(ci["tenant"], "acme");
    assert!(ci["revoked_at"].is_null());
    let row = table
        .lines()
        .find(|l| l.starts_with(ci["id"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("acme") && row.contains("agent") && row.contains("ci"),
        "{row}"
    );

    // Revoke: effective at once, shown in ls.
    let r = ok_json(&d, &["key", "revoke", "--json", &kid2]);
    assert_eq!(r["revoked"], kid2.as_str());
    let o = corral_as(&d, &secret2, &["sandbox", "ls"]);
    let line = assert_clean_failure(&o, "a revoked key");
    assert!(line.contains("401"), "{line}");
    let keys = ok_json(&d, &["key", "ls", "--json"]);
    let k2 = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == kid2.as_str())
        .unwrap()
        .clone();
    assert!(k2["revoked_at"].is_string(), "{k2}");
    let o = corral(&d, &["key", "revoke", "key-0000000000000000"]);
    let line = assert_clean_failure(&o, "revoking an unknown key");
    assert!(
        line.contains("key-0000000000000000") || line.contains("404"),
        "{line}"
    );
}
