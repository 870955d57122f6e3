//! Exit statuses.

#[allow(unused_imports)]
use super::helpers::*;

#[test]
fn exit_codes_propagate() {
    let env = Env::new();
    for code in [0, 3, 255] {
        let v = env.sh(&[], &format!("exit {code}"));
        assert_eq!(exit_code(&v), code, "{v}");
        assert_eq!(v["signal"], Value::Null, "{v}");
        assert_eq!(v["timed_out"], false);
        assert_eq!(v["oom_killed"], false);
        // and without --json, as corral's own status
        let out = env.run(&[], &["/bin/sh", "-c", &format!("exit {code}")]);
        assert_eq!(out.status.code(), Some(code as i32), "{out:?}");
    }
}

#[test]
fn signal_death_is_128_plus_n() {
    let env = Env::new();
    let v = env.sh(&[], "kill -TERM $$");
    assert_eq!(exit_code(&v), 143, "{v}");
    assert_eq!(v["signal"], 15, "{v}");
    assert_eq!(v["timed_out"], false);
    assert_eq!(v["oom_killed"], false);

    let v = env.sh(&[], "kill -KILL $$");
    assert_eq!(exit_code(&v), 137, "{v}");
    assert_eq!(v["signal"], 9, "{v}");
    assert_eq!(
        v["oom_killed"], false,
        "SIGKILL by the command is no OOM: {v}"
    );
    assert_eq!(v["timed_out"], false);

    let v = env.sh(&[], "kill -INT $$");
    assert_eq!(exit_code(&v), 130, "{v}");
    assert_eq!(v["signal"], 2, "{v}");

    let out = env.run(&[], &["/bin/sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    let out = env.run(&[], &["/bin/sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert!(
        !s(&out.stderr).contains("memory"),
        "a plain SIGKILL must not be reported as OOM: {:?}",
        s(&out.stderr)
    );
    assert!(env.leftover_cgroups().is_empty());
}

#[test]
fn missing_command_is_127_with_one_line() {
    let env = Env::new();
    for cmd in ["no-such-command-corral", "/no/such/bin/corral"] {
        let out = env.run(&[], &[cmd, "arg"]);
        assert_eq!(out.status.code(), Some(127), "{cmd}: {out:?}");
        assert!(out.stdout.is_empty());
        let l = lines(&out.stderr);
        assert_eq!(l.len(), 1, "{cmd}: one line expected: {l:?}");
        assert!(
            l[0].contains(cmd),
            "{cmd}: the line names the command: {l:?}"
        );
        assert!(l[0].contains("not found"), "{l:?}");

        let (v, code) = env.json(&[], &[cmd]);
        assert_eq!(code, 127);
        assert_eq!(exit_code(&v), 127, "{v}");
        assert_eq!(v["signal"], Value::Null);
        let l = lines(stderr(&v).as_bytes());
        assert_eq!(l.len(), 1, "{v}");
        assert!(l[0].contains(cmd), "{v}");
    }
    assert!(env.leftover_cgroups().is_empty());
}

#[test]
fn non_executable_is_126() {
    let env = Env::new();
    for cmd in ["/etc/passwd", "/tmp"] {
        let out = env.run(&[], &[cmd]);
        assert_eq!(out.status.code(), Some(126), "{cmd}: {out:?}");
        let l = lines(&out.stderr);
        assert_eq!(l.len(), 1, "{cmd}: {l:?}");
        assert!(l[0].contains(cmd), "{l:?}");
        let (v, code) = env.json(&[], &[cmd]);
        assert_eq!((code, exit_code(&v)), (126, 126), "{v}");
    }
}
