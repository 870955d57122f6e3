//! Environment and identity.

#[allow(unused_imports)]
use super::helpers::*;

#[test]
fn default_environment_and_no_caller_leak() {
    let env = Env::new();
    let mark = marker("envleak");
    let out = env
        .cmd()
        .env("CORRAL_TEST_CALLER_MARKER", &mark)
        .env("HOME", "/root/caller-home")
        .args(["run", "--json", "--", "/usr/bin/env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = stdout(&v);
    let vars: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    assert!(
        vars.get("PATH").is_some_and(|p| p.contains("/usr/bin")),
        "{text}"
    );
    assert_eq!(vars.get("HOME"), Some(&"/home/sandbox"), "{text}");
    assert_eq!(vars.get("USER"), Some(&"sandbox"), "{text}");
    assert!(
        !text.contains(&mark),
        "the caller's environment leaked: {text}"
    );
    assert!(
        !text.contains("CORRAL_"),
        "corral's own settings leaked: {text}"
    );
    assert!(!text.contains("caller-home"), "{text}");
}

#[test]
fn env_option_sets_variables() {
    let env = Env::new();
    let v = env.json(
        &[
            "--env",
            "FOO=bar",
            "--env",
            "SPACED=a b  c",
            "--env",
            "EQ=x=y",
            "--env",
            "EMPTY=",
        ],
        &["/usr/bin/env"],
    );
    let text = ok_stdout(&v.0);
    let l: Vec<&str> = text.lines().collect();
    for want in ["FOO=bar", "SPACED=a b  c", "EQ=x=y", "EMPTY="] {
        assert!(l.contains(&want), "{want} missing in {text}");
    }
}

#[test]
fn user_root_and_sandbox() {
    let env = Env::new();
    let v = env.sh(&["--user", "root"], "id -u; id -g; echo $HOME; pwd");
    assert_eq!(ok_stdout(&v), "0\n0\n/root\n/root");
    let v = env.sh(
        &["--user", "sandbox"],
        "id -u; id -g; echo $HOME; echo $USER; pwd",
    );
    assert_eq!(
        ok_stdout(&v),
        "1000\n1000\n/home/sandbox\nsandbox\n/home/sandbox"
    );
}

#[test]
fn workdir_existing_and_created() {
    let env = Env::new();
    let v = env.sh(&["--workdir", "/tmp"], "pwd");
    assert_eq!(ok_stdout(&v), "/tmp");
    let v = env.sh(
        &["--workdir", "/srv/corral/a/b"],
        "pwd; stat -c %u:%g .; touch f && echo writable",
    );
    assert_eq!(ok_stdout(&v), "/srv/corral/a/b\n1000:1000\nwritable");
    let v = env.sh(
        &["--workdir", "/srv/corral/r", "--user", "root"],
        "pwd; stat -c %u:%g .",
    );
    assert_eq!(ok_stdout(&v), "/srv/corral/r\n0:0");
}
