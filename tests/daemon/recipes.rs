//! Recipes: `corral template build` from a Dockerfile subset (COPY, RUN in a corral
//! sandbox, ENV, WORKDIR, USER, ARG), sandboxes created from the result through a
//! daemon, the step cache (an unchanged rebuild is all cached and yields the same
//! template; a changed COPY rebuilds that step and the later ones), errors with line
//! numbers, and a killed build leaving nothing registered. Every RUN is offline.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Daemon, Env};

const RECIPE: &str = "\
# corral: allow deb.debian.org
FROM host
ARG GREETING=hello
ENV APP_MODE=test
COPY gone.txt /opt/app/gone.txt
COPY data.txt /opt/app/
WORKDIR /opt/app
RUN echo \"$GREETING from run\" > made.txt && rm gone.txt \\
    && mkdir -p /srv/x && echo y > /srv/x/y
USER sandbox
RUN [\"/bin/sh\", \"-c\", \"echo $APP_MODE > /home/sandbox/mode.txt\"]
";

fn build(env: &Env, data: &Path, ctx: &Path, extra: &[&str]) -> Output {
    env.cmd()
        .args(["template", "build", "--name", "app", "--data-dir"])
        .arg(data)
        .args(extra)
        .arg(ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn ok(o: &Output) -> (String, String) {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "build failed: {err}");
    (out, err)
}

/// The steps the build reported as running (not cached).
fn running(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("step ") && l.contains(" running "))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)?
                .split('/')
                .next()
                .map(str::to_string)
        })
        .collect()
}

fn digests(t: &Value) -> Vec<String> {
    t["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_recipe_builds_caches_and_serves_sandboxes() {
    let d = Daemon::start(0);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Recipe"), RECIPE).unwrap();
    std::fs::write(ctx.path().join("data.txt"), "data v1\n").unwrap();
    std::fs::write(ctx.path().join("gone.txt"), "deleted by RUN\n").unwrap();

    let first = build(
        &d.env,
        &d.data_dir(),
        ctx.path(),
        &["--build-arg", "GREETING=hi"],
    );
    let (out, err) = ok(&first);
    assert!(out.starts_with("app:1 tpl-"), "{out}");
    assert_eq!(running(&err), ["4", "5", "7", "9"], "{err}");
    let t = d.call("GET", "/v1/templates/app", None).json();
    assert_eq!(t["env"], json!(["APP_MODE=test"]), "{t}");
    assert_eq!(digests(&t).len(), 4, "two COPY and two RUN layers: {t}");

    let id = d.create(json!({"template": "app"}));
    let r = d.exec(
        &id,
        &[
            "/bin/sh",
            "-c",
            "cat /opt/app/data.txt /opt/app/made.txt /srv/x/y /home/sandbox/mode.txt; \
             test -e /opt/app/gone.txt && echo still-there || echo gone",
        ],
    );
    assert_eq!(r["stdout"], "data v1\nhi from run\ny\ntest\ngone\n", "{r}");
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        204
    );

    // Unchanged: every step cached, the same template (no new version).
    let t0 = Instant::now();
    let again = build(
        &d.env,
        &d.data_dir(),
        ctx.path(),
        &["--build-arg", "GREETING=hi"],
    );
    let took = t0.elapsed();
    let (out, err) = ok(&again);
    assert!(out.starts_with("app:1 "), "{out}");
    assert!(running(&err).is_empty(), "{err}");
    assert!(err.contains("cached"), "{err}");
    eprintln!("cached rebuild took {took:?}");

    // The COPY'd file changes: that step and the later ones run, the earlier is cached.
    std::fs::write(ctx.path().join("data.txt"), "data v2\n").unwrap();
    let changed = build(
        &d.env,
        &d.data_dir(),
        ctx.path(),
        &["--build-arg", "GREETING=hi"],
    );
    let (out, err) = ok(&changed);
    assert!(out.starts_with("app:2 "), "{out}");
    assert_eq!(running(&err), ["5", "7", "9"], "{err}");
    let t2 = d.call("GET", "/v1/templates/app:2", None).json();
    let (a, b) = (digests(&t), digests(&t2));
    assert_eq!(a[0], b[0], "the unchanged COPY layer is shared");
    assert_ne!(a[1], b[1]);
    let id = d.create(json!({"template": "app:2"}));
    let r = d.exec(&id, &["/bin/cat", "/opt/app/data.txt"]);
    assert_eq!(r["stdout"], "data v2\n", "{r}");
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        204
    );

    // A different build arg is a different RUN input.
    let other = build(&d.env, &d.data_dir(), ctx.path(), &[]);
    let (_, err) = ok(&other);
    assert_eq!(running(&err), ["7", "9"], "{err}");
    d.assert_clean(0);
}

#[test]
fn bad_recipes_name_their_line_and_register_nothing() {
    let env = Env::new();
    let data = env.state.path().join("data");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("a.txt"), "a").unwrap();
    for (recipe, want) in [
        (
            "FROM host\n\nFROB x\n",
            "recipe line 3: unknown instruction",
        ),
        ("FROM host\nRUN [\"sh\", \n", "recipe line 2: bad JSON"),
        ("# c\nCOPY a.txt /a\n", "recipe line 2: COPY before FROM"),
        ("ARG X\n", "missing FROM"),
        (
            "FROM host\nRUN true\nCOPY ../etc/passwd /p\n",
            "(recipe line 3)",
        ),
        (
            "FROM host\nRUN true \\\n  && exit 3\n",
            "(recipe line 2) failed: RUN failed with exit status 3",
        ),
        ("FROM nosuch\n", "(recipe line 1)"),
    ] {
        std::fs::write(ctx.path().join("Recipe"), recipe).unwrap();
        let o = build(&env, &data, ctx.path(), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{recipe}: {err}");
        assert!(err.contains(want), "{recipe}: want {want:?} in {err}");
    }
    let ls = env
        .cmd()
        .args(["template", "ls", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "only host: {list}");
    let tmp = data.join("templates/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "work dirs removed"
    );
}

#[test]
fn a_killed_build_leaves_nothing_registered() {
    let env = Env::new();
    let data = env.state.path().join("data");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Recipe"),
        "FROM host\nRUN echo started > /started && sleep 60\n",
    )
    .unwrap();
    let mut child = env
        .cmd()
        .args(["template", "build", "--name", "slow", "--data-dir"])
        .arg(&data)
        .arg(ctx.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tmp = data.join("templates/tmp");
    let t0 = Instant::now();
    loop {
        let started = std::fs::read_dir(&tmp)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.path().join("s2/upper/started").exists())
            })
            .unwrap_or(false);
        if started {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the RUN never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let cmd = |args: &[&str]| {
        env.cmd()
            .args(["template"])
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let list: Value = serde_json::from_slice(&cmd(&["ls", "--json"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "only host: {list}");
    assert_eq!(cmd(&["inspect", "slow"]).status.code(), Some(125));
    // The next build removes the dead one's work dir (and builds).
    std::fs::write(ctx.path().join("Recipe"), "FROM host\nRUN true\n").unwrap();
    let o = build(&env, &data, ctx.path(), &[]);
    ok(&o);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn the_api_builds_a_recipe() {
    let d = Daemon::start(0);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello.txt"), "hello\n").unwrap();
    let recipe = "FROM host\nARG WHO\nCOPY hello.txt /opt/\nRUN echo \"$WHO\" >> /opt/hello.txt\n";
    let body = json!({"name": "api", "recipe": recipe,
        "context": ctx.path().to_str().unwrap(), "build_args": {"WHO": "api"}});
    let r = d.call("POST", "/v1/templates/build", Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    let t = r.json();
    assert_eq!(t["version"], "1", "{t}");
    let id = d.create(json!({"template": "api"}));
    let r = d.exec(&id, &["/bin/cat", "/opt/hello.txt"]);
    assert_eq!(r["stdout"], "hello\napi\n", "{r}");
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        204
    );
    // Unchanged: the same version; a bad recipe: 400 naming its line.
    let r = d.call("POST", "/v1/templates/build", Some(&body));
    assert_eq!(r.json()["version"], "1");
    let bad = json!({"name": "api", "recipe": "FROM host\nRUN [1]\n",
        "context": ctx.path().to_str().unwrap()});
    let r = d.call("POST", "/v1/templates/build", Some(&bad));
    let code = r.assert_error(400);
    assert_eq!(code, "invalid_argument");
    assert!(r.text().contains("recipe line 2"), "{}", r.text());
    let tenant = d.tenant_key("t1");
    let r = d.call_as(&tenant, "POST", "/v1/templates/build", Some(&body));
    r.assert_error(403);
    d.assert_clean(0);
}
