//! Template build jobs over the API (`/v1/templates/builds`): a recipe job whose
//! progress streams and whose template runs sandboxes, a bad recipe failing with its
//! line, a cancel in the middle of a RUN leaving no template, work dir, cgroup or
//! process, a Debian base from the fixture tarball, and a shipped recipe built on the
//! first create that names it, and a RUN reaching the test's own upstream through the
//! daemon's `[network] resolve` map. Nothing leaves the machine (the fixture tarball of
//! scripts/debian-fixture.sh; the upstream lives in a namespace the test made).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::debootstrap::fixture;
use crate::harness::Daemon;

/// The job's events (replayed from the start, followed to the end).
fn events(d: &Daemon, id: &str) -> Vec<Value> {
    let r = d.call("GET", &format!("/v1/templates/builds/{id}/events"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    r.text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn start(d: &Daemon, body: Value) -> String {
    let r = d.call("POST", "/v1/templates/builds", Some(&body));
    assert_eq!(r.status, 202, "{}", r.text());
    let b = r.json();
    let id = b["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("tb_"), "{b}");
    assert!(
        ["queued", "running"].contains(&b["state"].as_str().unwrap()),
        "{b}"
    );
    id
}

fn work_dirs(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("templates/tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn a_recipe_job_streams_its_progress_and_a_bad_one_names_its_line() {
    let d = Daemon::start(0);
    let ctx = d.env.state.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("data.txt"), "from the context\n").unwrap();
    let recipe = "FROM host\nCOPY data.txt /opt/data.txt\nRUN cat /opt/data.txt > /opt/copy.txt && echo built-line\n";
    let id = start(
        &d,
        json!({"name": "job", "source": {"kind": "recipe", "recipe": recipe, "context": ctx.display().to_string()}}),
    );
    let evs = events(&d, &id);
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        evs.iter()
            .any(|e| e["type"] == "step" && e["step"] == 3 && e["total"] == 3),
        "{evs:?}"
    );
    assert!(
        evs.iter()
            .any(|e| e["type"] == "output" && e["line"] == "built-line"),
        "{evs:?}"
    );
    assert!(types.contains(&"step_done"), "{types:?}");
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "done", "{evs:?}");
    assert_eq!(last["template"]["name"], "job");

    let b = d
        .call("GET", &format!("/v1/templates/builds/{id}"), None)
        .json();
    assert_eq!(b["state"], "succeeded", "{b}");
    assert_eq!(b["template"]["name"], "job");
    assert!(b["finished_at"].is_string() && b["started_at"].is_string());
    let list = d.call("GET", "/v1/templates/builds", None).json();
    assert_eq!(list["builds"][0]["id"], id, "{list}");
    // Other keys than admin do not see a recipe build (its output may show its
    // context's files).
    let agent = d.tenant_key("t-builds");
    assert_eq!(
        d.call_as(&agent, "GET", &format!("/v1/templates/builds/{id}"), None)
            .assert_error(404),
        "not_found"
    );
    d.call_as(
        &agent,
        "GET",
        &format!("/v1/templates/builds/{id}/events"),
        None,
    )
    .assert_error(404);
    let theirs = d
        .call_as(&agent, "GET", "/v1/templates/builds", None)
        .json();
    assert_eq!(theirs["builds"], json!([]), "{theirs}");
    // A late client gets the same events again.
    assert_eq!(events(&d, &id), evs);

    let sb = d.create(json!({"template": "job"}));
    let r = d.exec(&sb, &["cat", "/opt/copy.txt"]);
    assert_eq!(r["stdout"], "from the context\n", "{r}");
    d.call("DELETE", &format!("/v1/sandboxes/{sb}"), None);

    // A bad recipe: the job fails with the line.
    let bad = start(
        &d,
        json!({"name": "bad", "source": {"kind": "recipe", "recipe": "FROM host\nFROB x\n", "context": ctx.display().to_string()}}),
    );
    let evs = events(&d, &bad);
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "failed", "{evs:?}");
    assert_eq!(last["code"], "build_failed");
    assert!(
        last["message"].as_str().unwrap().contains("line 2"),
        "{last}"
    );
    let b = d
        .call("GET", &format!("/v1/templates/builds/{bad}"), None)
        .json();
    assert_eq!(b["state"], "failed", "{b}");
    assert_eq!(b["error"]["code"], "build_failed");
    assert_eq!(d.call("GET", "/v1/templates/bad", None).status, 404);

    // Refused before anything runs: a relative context, an unknown shipped recipe.
    for body in [
        json!({"name": "x", "source": {"kind": "recipe", "recipe": "FROM host\n", "context": "rel"}}),
        json!({"name": "x", "source": {"kind": "shipped", "recipe": "nope"}}),
        json!({"name": "Bad Name", "source": {"kind": "shipped", "recipe": "python"}}),
    ] {
        d.call("POST", "/v1/templates/builds", Some(&body))
            .assert_error(400);
    }
    d.call("GET", "/v1/templates/builds/tb_nope", None)
        .assert_error(404);
    assert!(work_dirs(&d.data_dir()).is_empty());
    d.assert_clean(0);
}

#[test]
fn cancelling_a_build_mid_run_leaves_nothing() {
    let d = Daemon::start(0);
    let ctx = d.env.state.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // A distinctive duration: the test looks for its process.
    let marker = format!("sleep 37.{}", std::process::id());
    let recipe = format!("FROM host\nRUN echo started && {marker}\n");
    let body = json!({"name": "slow", "source": {"kind": "recipe", "recipe": recipe, "context": ctx.display().to_string()}});
    let id = start(&d, body.clone());
    d.wait_for("the RUN step to start", || {
        let b = d
            .call("GET", &format!("/v1/templates/builds/{id}"), None)
            .json();
        b["state"] == "running" && b["step"] == 2
    });
    d.wait_for("the RUN's process", || !processes_with(&marker).is_empty());
    // One build per name at a time.
    let r = d.call("POST", "/v1/templates/builds", Some(&body));
    assert_eq!(r.assert_error(409), "conflict");
    assert!(r.text().contains(&id), "{}", r.text());

    let t0 = Instant::now();
    let r = d.call("DELETE", &format!("/v1/templates/builds/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "cancelled", "{}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(20));
    let evs = events(&d, &id);
    assert_eq!(evs.last().unwrap()["type"], "cancelled", "{evs:?}");

    assert_eq!(d.call("GET", "/v1/templates/slow", None).status, 404);
    assert!(
        work_dirs(&d.data_dir()).is_empty(),
        "{:?}",
        work_dirs(&d.data_dir())
    );
    d.wait_for("the RUN's process to end", || {
        processes_with(&marker).is_empty()
    });
    d.assert_clean(0);
    assert!(
        d.leftover_cgroups().is_empty(),
        "{:?}",
        d.leftover_cgroups()
    );
    // Cancelling again answers the job as it is.
    let r = d.call("DELETE", &format!("/v1/templates/builds/{id}"), None);
    assert_eq!(r.json()["state"], "cancelled");

    // A daemon that stops ends a running build the same way.
    let marker = format!("sleep 38.{}", std::process::id());
    let recipe = format!("FROM host\nRUN {marker}\n");
    start(
        &d,
        json!({"name": "slow2", "source": {"kind": "recipe", "recipe": recipe, "context": ctx.display().to_string()}}),
    );
    d.wait_for("the RUN's process", || !processes_with(&marker).is_empty());
    let mut d = d;
    assert!(d.stop().success());
    assert!(processes_with(&marker).is_empty());
    assert!(
        work_dirs(&d.data_dir()).is_empty(),
        "{:?}",
        work_dirs(&d.data_dir())
    );
    assert!(
        d.leftover_cgroups().is_empty(),
        "{:?}",
        d.leftover_cgroups()
    );
}

#[test]
fn a_debian_base_builds_as_a_job_from_the_fixture() {
    let tarball = fixture("minbase");
    let d = Daemon::start(0);
    let id = start(
        &d,
        json!({"name": "deb", "source": {"kind": "debootstrap", "tarball": tarball.display().to_string()}}),
    );
    let evs = events(&d, &id);
    assert!(
        evs.iter().any(|e| e["type"] == "output"
            && e["line"]
                .as_str()
                .unwrap()
                .contains("Base system installed successfully")),
        "{:?}",
        &evs[evs.len().saturating_sub(5)..]
    );
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "done", "{last}");
    assert!(last["template"]["source"]
        .as_str()
        .unwrap()
        .starts_with("debootstrap:bookworm variant=minbase tarball="));
    let b = d
        .call("GET", &format!("/v1/templates/builds/{id}"), None)
        .json();
    assert_eq!(
        (&b["state"], &b["source"]),
        (&json!("succeeded"), &json!("debootstrap"))
    );
    assert!(work_dirs(&d.data_dir()).is_empty());
}

/// `corral ARGS` pointed at `d` through the environment.
fn cli(d: &Daemon, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CORRAL_URL", format!("http://{}", d.addr))
        .env("CORRAL_API_KEY", &d.key)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_shipped_recipe_is_built_on_first_use() {
    let tarball = fixture("minbase");
    let recipes = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(recipes.path().join("python")).unwrap();
    std::fs::write(
        recipes.path().join("python/Recipe"),
        "FROM debian\nRUN echo first-use > /opt/made-by-recipe\n",
    )
    .unwrap();
    std::fs::create_dir_all(recipes.path().join("broken")).unwrap();
    std::fs::write(recipes.path().join("broken/Recipe"), "FROM host\nFROB\n").unwrap();
    let d = Daemon::start_with(
        0,
        &format!(
            "[templates]\nrecipes_dir = \"{}\"\ndebootstrap_tarball = \"{}\"\n",
            recipes.path().display(),
            tarball.display()
        ),
    );
    let create = json!({"template": "python"});
    let r = d.call("POST", "/v1/sandboxes", Some(&create));
    assert_eq!(r.assert_error(409), "template_building");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    let id = msg
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| w.starts_with("tb_"))
        .unwrap_or_else(|| panic!("no build id in {msg}"))
        .to_string();
    assert!(msg.contains("/events"), "{msg}");
    // A second create joins the same build.
    let again = d.call("POST", "/v1/sandboxes", Some(&create));
    assert_eq!(again.assert_error(409), "template_building");
    assert!(again.text().contains(&id), "{}", again.text());

    // Any key may follow a shipped recipe's build (its creates wait on it).
    let agent = d.tenant_key("t-first");
    let r = d.call_as(&agent, "GET", &format!("/v1/templates/builds/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["source"], "shipped");
    // `corral sandbox create` follows the build (progress on stderr) and retries.
    let out = cli(&d, &["sandbox", "create", "--template", "python"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&id) && err.contains("step 2/2 running RUN echo first-use"),
        "{err}"
    );
    let cli_sb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(cli_sb.starts_with("sb"), "{cli_sb}");
    d.call("DELETE", &format!("/v1/sandboxes/{cli_sb}"), None);
    // `corral template builds` lists and shows it.
    let out = cli(&d, &["template", "builds"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&id),
        "{out:?}"
    );
    let out = cli(&d, &["template", "builds", &id, "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["state"], "succeeded", "{shown}");

    let evs = events(&d, &id);
    let phases: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "phase")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(
        phases[0].starts_with("debootstrap debian") && phases[1].starts_with("recipe"),
        "{phases:?}"
    );
    assert_eq!(evs.last().unwrap()["type"], "done", "{:?}", evs.last());
    assert_eq!(d.call("GET", "/v1/templates/debian", None).status, 200);

    // A failed first-use build is reported by the next create, which starts anew.
    let r = d.call(
        "POST",
        "/v1/sandboxes",
        Some(&json!({"template": "broken"})),
    );
    assert_eq!(r.assert_error(409), "template_building");
    let failed = d.call("GET", "/v1/templates/builds", None).json()["builds"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(events(&d, &failed).last().unwrap()["type"], "failed");
    let r = d.call(
        "POST",
        "/v1/sandboxes",
        Some(&json!({"template": "broken"})),
    );
    assert_eq!(r.assert_error(409), "template_building");
    let text = r.text();
    assert!(
        text.contains(&format!("previous build {failed} failed")) && text.contains("line 2"),
        "{text}"
    );

    let sb = d.create(create);
    let r = d.exec(&sb, &["cat", "/opt/made-by-recipe"]);
    assert_eq!(r["stdout"], "first-use\n", "{r}");
    d.call("DELETE", &format!("/v1/sandboxes/{sb}"), None);
    assert!(work_dirs(&d.data_dir()).is_empty());
    d.assert_clean(0);
}

#[test]
fn a_build_jobs_run_steps_use_the_daemons_resolve_map() {
    // The test's own upstream in a namespace it made; `[network] resolve` names it, so
    // nothing is looked up in real DNS.
    let up = crate::egress_fixture::Upstream::new(1);
    let d = Daemon::start_with(
        0,
        &format!(
            "[network]\nresolve = {{ \"mirror.test\" = \"{}\" }}\n",
            up.addr()
        ),
    );
    let ctx = d.env.state.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("fetch.py"),
        "import urllib.request, sys; \
         sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
    )
    .unwrap();
    let recipe = "# corral: allow mirror.test:8080\nFROM host\nCOPY fetch.py /opt/fetch.py\n\
                  RUN python3 /opt/fetch.py http://mirror.test:8080/index.html > /opt/got\n";
    let id = start(
        &d,
        json!({"name": "fetched", "source": {"kind": "recipe", "recipe": recipe, "context": ctx.display().to_string()}}),
    );
    let evs = events(&d, &id);
    assert_eq!(evs.last().unwrap()["type"], "done", "{evs:?}");
    let sb = d.create(json!({"template": "fetched"}));
    let r = d.exec(&sb, &["cat", "/opt/got"]);
    assert_eq!(r["stdout"], "hello from upstream\n", "{r}");
    d.call("DELETE", &format!("/v1/sandboxes/{sb}"), None);
    d.assert_clean(0);
}
