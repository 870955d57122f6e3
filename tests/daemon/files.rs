//! Files: upload, download, list, stat, mkdir, remove, rename, watch, and paths that
//! try to reach the host.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::harness::Daemon;

fn put(d: &Daemon, id: &str, path: &str, data: &[u8]) -> crate::harness::Resp {
    let auth = format!("Bearer {}", d.key);
    d.raw(
        "PUT",
        &format!("/v1/sandboxes/{id}/files?path={path}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(data),
    )
    .unwrap()
}

#[test]
fn upload_download_list_stat_mkdir_rename_remove() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let data: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
    let r = put(&d, &id, "/home/sandbox/blob.bin", &data);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["size_bytes"], data.len());
    let got = d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/files?path=/home/sandbox/blob.bin"),
        None,
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.body, data);
    let owner = d.exec(&id, &["stat", "-c", "%u %s", "/home/sandbox/blob.bin"]);
    assert_eq!(
        owner["stdout"],
        format!("1000 {}\n", data.len()),
        "owned by the sandbox user"
    );
    let mk = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/files/mkdir"),
        Some(&json!({"path": "/home/sandbox/a/b/c"})),
    );
    assert!(mk.status == 200 || mk.status == 204, "{}", mk.text());
    let list = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{id}/files/list?path=/home/sandbox"),
            None,
        )
        .json();
    let names: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"a") && names.contains(&"blob.bin"),
        "{list}"
    );
    let blob = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "blob.bin")
        .unwrap();
    assert_eq!(blob["type"], "file");
    assert_eq!(blob["size"], data.len());
    assert_eq!(blob["path"], "/home/sandbox/blob.bin");
    let st = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{id}/files/stat?path=/home/sandbox/a"),
            None,
        )
        .json();
    assert_eq!(st["type"], "dir");
    let mv = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/files/rename"),
        Some(&json!({"from": "/home/sandbox/blob.bin", "to": "/home/sandbox/a/moved.bin"})),
    );
    assert!(mv.status == 200 || mv.status == 204, "{}", mv.text());
    d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/files?path=/home/sandbox/blob.bin"),
        None,
    )
    .assert_error(404);
    let rm = d.call(
        "DELETE",
        &format!("/v1/sandboxes/{id}/files?path=/home/sandbox/a&recursive=true"),
        None,
    );
    assert!(rm.status == 200 || rm.status == 204, "{}", rm.text());
    d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/files/stat?path=/home/sandbox/a"),
        None,
    )
    .assert_error(404);
    // The read-only root refuses writes with a clear error.
    let ro = put(&d, &id, "/usr/bin/evil", b"x");
    assert!(
        ro.status == 403 || ro.status == 400,
        "{} {}",
        ro.status,
        ro.text()
    );
    d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/files?path=relative"),
        None,
    )
    .assert_error(400);
    d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/files/list?path=/home/sandbox/nothing"),
        None,
    )
    .assert_error(404);
}

#[test]
fn no_path_trick_reaches_a_host_file() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let secret = format!("host-secret-{}", std::process::id());
    let host_file = d.env.state.path().join("host-secret.txt");
    std::fs::write(&host_file, &secret).unwrap();
    let hp = host_file.display().to_string();
    d.exec(&id, &["ln", "-s", &hp, "/home/sandbox/link"]);
    d.exec(&id, &["ln", "-s", "/", "/home/sandbox/rootlink"]);
    let attempts = [
        hp.clone(),
        format!("/../../..{hp}"),
        "/home/sandbox/link".into(),
        format!("/home/sandbox/rootlink{hp}"),
        format!("/proc/1/root{hp}"),
        format!("/proc/self/root{hp}"),
        format!("/proc/self/cwd/../../..{hp}"),
        "/proc/1/environ".into(),
        format!("/proc/1/cwd{hp}"),
    ];
    for p in attempts {
        let r = d.call("GET", &format!("/v1/sandboxes/{id}/files?path={p}"), None);
        assert!(
            !r.text().contains(&secret),
            "{p} leaked the host file: {} {}",
            r.status,
            r.text()
        );
        assert!(
            r.status >= 400 && r.status < 500 || r.status == 200,
            "{p}: {}",
            r.status
        );
    }
    // Writing through a symlink pointing at a host path lands inside the sandbox, never
    // on the host.
    let target = d.env.state.path().join("written-by-sandbox");
    d.exec(
        &id,
        &[
            "ln",
            "-s",
            &target.display().to_string(),
            "/home/sandbox/out",
        ],
    );
    let _ = put(&d, &id, "/home/sandbox/out", b"pwned");
    assert!(!target.exists(), "a sandbox symlink wrote a host file");
}

#[test]
fn watch_streams_changes_under_a_directory() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /v1/sandboxes/{id}/files/watch?path=/home/sandbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        d.key
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    d.exec(&id, &["sh", "-c", "echo x > /home/sandbox/new.txt"]);
    let mut seen = String::new();
    for _ in 0..40 {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&l);
        if seen.contains("/home/sandbox/new.txt") && seen.contains("create") {
            return;
        }
    }
    panic!("no create event for new.txt: {seen}");
}
