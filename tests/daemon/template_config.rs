//! A template's image config (a recipe's ENV, WORKDIR and USER; an OCI image's Env,
//! WorkingDir and User) is every process's default in its sandboxes: exec (collected,
//! streamed, background), run_code and the terminal. The request's cwd, user and env
//! win, and the sandbox's own env sits between. An OCI User is resolved by name or
//! number at import, and refused when a sandbox cannot be that user. zstd layers
//! (made by the zstd tool) import; a damaged one is refused and leaves no template.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tungstenite::Message;

use crate::harness::{ws_connect, Daemon, Env};
use crate::rootfs::{hex, layer_desc, oci_image, shell_rootfs};

const RECIPE: &str = "\
FROM host
ENV A=1 B=template
RUN mkdir -p /srv/app && chmod 0777 /srv/app
WORKDIR /srv/app
USER sandbox
";

const PROBE: &str = "pwd; id -u; echo \"$A $B\"";

fn exec_body(d: &Daemon, id: &str, body: Value) -> Value {
    let r = d.call("POST", &format!("/v1/sandboxes/{id}/exec"), Some(&body));
    assert_eq!(r.status, 200, "exec {body}: {}", r.text());
    r.json()
}

/// Builds `recipe` as `name` into the store of `data` (no daemon needed).
fn build_into(env: &Env, data: &Path, name: &str, recipe: &str) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Recipe"), recipe).unwrap();
    let o = env
        .cmd()
        .args(["template", "build", "--name", name, "--data-dir"])
        .arg(data)
        .arg(ctx.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn build_recipe(d: &Daemon, name: &str, recipe: &str) -> Value {
    build_into(&d.env, &d.data_dir(), name, recipe);
    d.call("GET", &format!("/v1/templates/{name}"), None).json()
}

/// Opens the terminal, types `line`, and returns what it printed once `until` shows.
fn pty_output(d: &Daemon, id: &str, line: &str, until: &str) -> String {
    let path = format!("/v1/sandboxes/{id}/pty?cmd=/bin/sh");
    let mut ws = ws_connect(d, &path, Some(&d.key)).unwrap();
    ws.send(Message::Binary(line.as_bytes().to_vec().into()))
        .unwrap();
    let mut seen = String::new();
    let t0 = Instant::now();
    while !seen.contains(until) && t0.elapsed() < Duration::from_secs(30) {
        match ws.read() {
            Ok(Message::Binary(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = ws.close(None);
    seen
}

#[test]
fn a_recipes_workdir_user_and_env_are_every_processes_defaults() {
    let d = Daemon::start(0);
    let t = build_recipe(&d, "cfg", RECIPE);
    assert_eq!(
        t["config"],
        json!({"env": ["A=1", "B=template"], "workdir": "/srv/app", "user": "sandbox"}),
        "{t}"
    );
    // The sandbox's own env sits above the template's.
    let id = d.create(json!({"template": "cfg", "env": {"B": "sandbox"}}));

    let r = d.exec(&id, &["sh", "-c", PROBE]);
    assert_eq!(r["stdout"], "/srv/app\n1000\n1 sandbox\n", "{r}");

    // The request's cwd, user and env win.
    let r = exec_body(
        &d,
        &id,
        json!({"cmd": ["sh", "-c", PROBE], "cwd": "/tmp", "user": "root", "env": {"A": "2"}}),
    );
    assert_eq!(r["stdout"], "/tmp\n0\n2 sandbox\n", "{r}");

    // run_code, a streamed exec and a background process get the same defaults.
    let r = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/run_code"),
        Some(&json!({"language": "bash", "code": PROBE})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stdout"], "/srv/app\n1000\n1 sandbox\n");
    let body = serde_json::to_vec(&json!({"cmd": ["sh", "-c", PROBE]})).unwrap();
    let auth = format!("Bearer {}", d.key);
    let r = d
        .raw(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Accept", "application/x-ndjson"),
            ],
            Some(&body),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let streamed: String = r
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "stdout")
        .filter_map(|e| e["data"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, "/srv/app\n1000\n1 sandbox\n", "{}", r.text());
    let r = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({"cmd": ["sh", "-c", "pwd > /tmp/bg.txt; id -u >> /tmp/bg.txt"], "background": true})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let p = r.json();
    let pid = p["process_id"].as_str().unwrap().to_string();
    d.wait_for("the background process", || {
        d.call("GET", &format!("/v1/sandboxes/{id}/processes/{pid}"), None)
            .json()["result"]
            .is_object()
    });
    let r = d.exec(&id, &["cat", "/tmp/bg.txt"]);
    assert_eq!(r["stdout"], "/srv/app\n1000\n", "{r}");

    // The terminal too.
    let seen = pty_output(&d, &id, "echo \"P=$(pwd):$(id -u):$A\"; exit\n", "P=/srv");
    assert!(seen.contains("P=/srv/app:1000:1"), "{seen:?}");

    // The WORKDIR gone from the sandbox: a clear error naming it, not a run elsewhere.
    let r = exec_body(
        &d,
        &id,
        json!({"cmd": ["rmdir", "/srv/app"], "user": "root"}),
    );
    assert_eq!(r["exit_code"], 0, "{r}");
    let r = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({"cmd": ["pwd"]})),
    );
    r.assert_error(400);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("/srv/app") && msg.contains("WORKDIR") && msg.contains("pass cwd"),
        "{msg}"
    );
    let r = exec_body(&d, &id, json!({"cmd": ["pwd"], "cwd": "/tmp"}));
    assert_eq!(r["stdout"], "/tmp\n");

    // Without a config (host): corral's defaults, as before.
    let h = d.create(json!({}));
    let r = d.exec(&h, &["sh", "-c", PROBE]);
    assert_eq!(r["stdout"], "/home/sandbox\n1000\n \n", "{r}");
    for s in [&id, &h] {
        assert_eq!(
            d.call("DELETE", &format!("/v1/sandboxes/{s}"), None).status,
            204
        );
    }
    d.assert_clean(0);
}

#[test]
fn corral_run_applies_the_template_config_under_its_options() {
    let env = Env::new();
    // `corral run` reads the store of CORRAL_STATE_DIR.
    build_into(&env, env.state.path(), "cfg", RECIPE);
    let out = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let o = env.run(&["--template", "cfg"], &["sh", "-c", PROBE]);
    assert_eq!(out(o), "/srv/app\n1000\n1 template\n");
    let o = env.run(
        &[
            "--template",
            "cfg",
            "--user",
            "root",
            "--workdir",
            "/tmp",
            "--env",
            "A=2",
        ],
        &["sh", "-c", PROBE],
    );
    assert_eq!(out(o), "/tmp\n0\n2 template\n");
    let o = env.run(&[], &["sh", "-c", PROBE]);
    assert_eq!(out(o), "/home/sandbox\n1000\n \n");
}

// ---- OCI images -----------------------------------------------------------------

/// [`shell_rootfs`] with an /etc/passwd naming `app` (uid 1000) and `www` (uid 33),
/// and /work (root's, 0755) holding hello.txt.
fn app_rootfs(dir: &Path) {
    shell_rootfs(dir);
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::write(dir.join("work/hello.txt"), "hello from the image\n").unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/work:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\napp:x:1000:\nwww:x:33:\n").unwrap();
}

fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

/// Compresses with the zstd command-line tool (Debian package `zstd`).
fn zstd(data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("layer.tar");
    std::fs::write(&p, data).unwrap();
    let st = Command::new("zstd")
        .args(["-q", "-3"])
        .arg(&p)
        .status()
        .expect("the zstd tool (scripts/setup.sh installs it)");
    assert!(st.success());
    std::fs::read(dir.path().join("layer.tar.zst")).unwrap()
}

/// An OCI layout in `out`: these layers (`(blob, media type)`, bottom first) and this
/// image config.
fn oci_layout(out: &Path, layers: &[(Vec<u8>, &str)], config: Value) {
    let descs = layers
        .iter()
        .map(|(b, mt)| layer_desc(out, b, mt))
        .collect();
    oci_image(out, config, descs);
}

const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn import(d: &Daemon, name: &str, dir: &Path) -> super::harness::Resp {
    d.call(
        "POST",
        "/v1/templates",
        Some(&json!({"name": name, "oci": dir.to_str().unwrap()})),
    )
}

fn template_names(d: &Daemon) -> Vec<String> {
    d.call("GET", "/v1/templates", None).json()["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_oci_images_config_applies_and_zstd_layers_import() {
    let d = Daemon::start(0);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    app_rootfs(&root);
    let layer = zstd(&tar_dir(&root));
    // A second, tiny zstd layer on top.
    let top = work.path().join("top");
    std::fs::create_dir_all(top.join("work")).unwrap();
    std::fs::write(top.join("work/top.txt"), "zstd top layer\n").unwrap();
    let top = zstd(&tar_dir(&top));

    // User by name (app = uid 1000), a WorkingDir, Env; both layers zstd.
    let img = work.path().join("named");
    oci_layout(
        &img,
        &[(layer.clone(), ZSTD), (top.clone(), ZSTD)],
        json!({"Env": ["PATH=/bin", "GREETING=oci"], "WorkingDir": "/work", "User": "app"}),
    );
    let r = import(&d, "named", &img);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["config"],
        json!({"env": ["PATH=/bin", "GREETING=oci"], "workdir": "/work", "user": "sandbox"})
    );
    let id = d.create(json!({"template": "named"}));
    // dash's builtins only: the image has no other programs.
    let r = d.exec(
        &id,
        &[
            "/bin/sh",
            "-c",
            "echo \"$PWD $GREETING $HOME\"; read a < hello.txt; read b < top.txt; echo \"$a/$b\"; \
             echo x 2>/dev/null > /work/mine || echo not-root",
        ],
    );
    assert_eq!(
        r["stdout"], "/work oci /home/sandbox\nhello from the image/zstd top layer\nnot-root\n",
        "{r}"
    );

    // Numeric root (0:0).
    let img = work.path().join("numeric");
    oci_layout(
        &img,
        &[(layer.clone(), ZSTD)],
        json!({"User": "0:0", "WorkingDir": "/work/"}),
    );
    let r = import(&d, "numeric", &img);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["config"],
        json!({"env": [], "workdir": "/work", "user": "root"})
    );
    let id2 = d.create(json!({"template": "numeric"}));
    let r = d.exec(&id2, &["/bin/sh", "-c", "echo $PWD $HOME $USER"]);
    assert_eq!(r["stdout"], "/work /root root\n", "{r}");
    let r = exec_body(
        &d,
        &id2,
        json!({"cmd": ["/bin/sh", "-c", "echo $HOME"], "user": "sandbox"}),
    );
    assert_eq!(r["stdout"], "/home/sandbox\n", "{r}");

    // Users a sandbox cannot be are refused at import, by name or number.
    for (name, user, want) in [
        ("www", "www", "uid 33"),
        ("nonroot", "65532:65532", "uid 65532"),
        ("ghost", "ghost", "not in the image's /etc/passwd"),
        ("badgroup", "1000:33", "gid 33"),
    ] {
        let img = work.path().join(name);
        oci_layout(&img, &[(layer.clone(), ZSTD)], json!({"User": user}));
        let r = import(&d, name, &img);
        r.assert_error(400);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{user}: {msg}");
    }

    // A damaged zstd blob: refused clearly, no template, nothing left behind.
    let mut bad = layer.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let img = work.path().join("damaged");
    oci_layout(&img, &[(bad, ZSTD)], json!({}));
    let r = import(&d, "damaged", &img);
    r.assert_error(400);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("zstd data is corrupt"), "{msg}");
    // The same damage after the manifest was written: the digest catches it.
    let img = work.path().join("rotted");
    oci_layout(&img, &[(layer.clone(), ZSTD)], json!({}));
    let digest = hex(&Sha256::digest(&layer));
    let blob = img.join("blobs/sha256").join(&digest);
    let mut rotted = layer.clone();
    rotted[mid] ^= 0x01;
    std::fs::write(&blob, &rotted).unwrap();
    let r = import(&d, "rotted", &img);
    r.assert_error(400);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("digest mismatch"), "{msg}");

    let names = template_names(&d);
    for gone in ["www", "nonroot", "ghost", "badgroup", "damaged", "rotted"] {
        assert!(!names.iter().any(|n| n == gone), "{gone} in {names:?}");
    }
    let tmp = d.data_dir().join("templates/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).map(|r| r.count()).unwrap_or(0),
        0,
        "import work dirs removed"
    );
    for s in [&id, &id2] {
        assert_eq!(
            d.call("DELETE", &format!("/v1/sandboxes/{s}"), None).status,
            204
        );
    }
    d.assert_clean(0);
}
