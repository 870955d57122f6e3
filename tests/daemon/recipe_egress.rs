//! Recipes' RUN egress: a recipe that names a host (`# corral: allow HOST[:PORT]`)
//! gets, for each RUN, a network in mode allow through corral's egress proxy, and
//! reaches that host only: the test's upstream (tests/daemon/egress_fixture.rs), named
//! through `--egress-resolve`, so no name is looked up in real DNS and no packet goes
//! to an address the test did not create. A recipe that names no host stays offline.

use std::path::Path;
use std::process::Output;

use crate::common::{ok_stdout, Env};
use crate::egress_fixture::Upstream;

const FETCH: &str = "import urllib.request, sys; \
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())";

fn build(env: &Env, up: &Upstream, name: &str, recipe: &str) -> Output {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Recipe"), recipe).unwrap();
    std::fs::write(ctx.path().join("fetch.py"), FETCH).unwrap();
    let a = up.addr();
    env.cmd()
        .args(["template", "build", "--name", name])
        .args(["--egress-resolve", &format!("mirror.test={a}")])
        .args(["--egress-resolve", &format!("other.test={a}")])
        .arg(ctx.path())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Nothing of the builds' networks is left: no namespace of a run slot this test's
/// runtime dir handed out (`crlr<slot>-<slot>`; docs/network.md).
fn assert_no_run_networks(runtime: &Path) {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let netns = names(Path::new("/run/netns"));
    let slots: Vec<String> = names(&runtime.join("net"))
        .iter()
        .filter_map(|n| {
            n.strip_prefix("run-")?
                .strip_suffix(".lock")
                .map(String::from)
        })
        .collect();
    assert!(!slots.is_empty(), "the builds took no run slot");
    for slot in slots {
        let ns = format!("crlr{slot}-{slot}");
        assert!(
            !netns.contains(&ns),
            "a build's network {ns} is left: {netns:?}"
        );
    }
}

#[test]
fn run_steps_reach_the_hosts_the_recipe_names_and_nothing_else() {
    let up = Upstream::new(1);
    let env = Env::new();
    let out = build(
        &env,
        &up,
        "fetched",
        "# corral: allow mirror.test:8080\nFROM host\n\
         COPY fetch.py /opt/fetch.py\n\
         RUN python3 /opt/fetch.py http://mirror.test:8080/index.html > /opt/got\n\
         RUN python3 /opt/fetch.py http://other.test:8080/index.html > /opt/other 2>&1 || echo refused > /opt/other\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let v = env.sh(&["--template", "fetched"], "cat /opt/got /opt/other");
    assert_eq!(ok_stdout(&v), "hello from upstream\nrefused");
    assert_no_run_networks(env.runtime.path());
}

#[test]
fn a_run_step_to_an_unnamed_host_fails_the_build_and_offline_stays_offline() {
    let up = Upstream::new(1);
    let env = Env::new();
    // Named host, but the RUN goes elsewhere: the proxy refuses, the step fails.
    let out = build(
        &env,
        &up,
        "denied",
        "# corral: allow mirror.test:8080\nFROM host\nCOPY fetch.py /opt/fetch.py\n\
         RUN python3 /opt/fetch.py http://other.test:8080/index.html\n",
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(125), "{t}");
    assert!(t.contains("step 3 (recipe line 4) failed"), "{t}");
    assert!(t.contains("403"), "the proxy's refusal is shown: {t}");
    // No `# corral: allow`: no network at all, not even the proxy.
    let out = build(
        &env,
        &up,
        "offline",
        "FROM host\nCOPY fetch.py /opt/fetch.py\n\
         RUN python3 /opt/fetch.py http://mirror.test:8080/index.html\n",
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(125), "{t}");
    assert!(t.contains("step 3 (recipe line 3) failed"), "{t}");
    for name in ["denied", "offline"] {
        let o = env
            .cmd()
            .args(["template", "inspect", name])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(125), "{name} must not exist");
    }
    assert_no_run_networks(env.runtime.path());
}
