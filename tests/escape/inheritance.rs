//! What corral's caller has: fds, environment.

#[allow(unused_imports)]
use super::probe::*;

/// corral is started with fd 7 open (no CLOEXEC) on a secret host file: inside, only
/// fds 0, 1 and 2 exist (fd 7 is EBADF), stdin is /dev/null and stdout/stderr are
/// corral's pipes, not any host file.
#[test]
fn host_fds_do_not_leak_inside() {
    let env = Env::new();
    let secret = HostPath(unique_host_path("fd-secret"));
    std::fs::write(&secret.0, "fd secret").unwrap();
    let body = r#"
        valid = []
        for fd in range(1024):
            try:
                os.fstat(fd)
                valid.append(fd)
            except OSError:
                pass
        print('fds', valid)
        t('fd7', lambda: os.fstat(7))
        print('listing', sorted(os.listdir('/proc/self/fd'), key=int))
        print('stdin', os.readlink('/proc/self/fd/0'))
        print('stdout_pipe', os.readlink('/proc/self/fd/1').startswith('pipe:'))
        print('stderr_pipe', os.readlink('/proc/self/fd/2').startswith('pipe:'))
    "#;
    let code = format!("{PRELUDE}\n{}", dedent(body));
    let base = env.cmd();
    let mut c = Command::new("/bin/sh");
    c.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.arg("-c")
        .arg("exec 7<\"$0\" || exit 99; exec \"$@\"")
        .arg(&secret.0)
        .arg(env!("CARGO_BIN_EXE_corral"))
        .args(["run", "--json", "--", "/usr/bin/python3", "-c", &code])
        .stdin(Stdio::null());
    let out = c.output().unwrap();
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {out:?}"));
    expect(
        &v,
        &[
            ("fds", "[0, 1, 2]"),
            ("fd7", "EBADF"),
            ("listing", "['0', '1', '2', '3']"),
            ("stdin", "/dev/null"),
            ("stdout_pipe", "True"),
            ("stderr_pipe", "True"),
        ],
    );
    assert!(!stdout(&v).contains("fd secret"), "{v}");
}

/// A secret in corral's own environment does not get in: not in the command's
/// environment, not in a shell's `env`, and init's /proc/1/environ is closed (EACCES).
/// The inside environment holds only corral's own variables.
#[test]
fn host_environment_does_not_leak() {
    let env = Env::new();
    let name = format!("CORRAL_ESCAPE_SECRET_{}", std::process::id());
    let value = marker("env-secret-value");
    let body = r#"
        import subprocess
        print('keys', sorted(os.environ))
        print('shell_env', ' '.join(sorted(l.split('=')[0] for l in subprocess.run(['env'], capture_output=True, text=True).stdout.splitlines())))
        t('init_environ', lambda: open('/proc/1/environ', 'rb').read())
        print('self_environ', open('/proc/self/environ', 'rb').read().replace(b'\0', b' ').decode())
    "#;
    let code = format!("{PRELUDE}\n{}", dedent(body));
    let mut c = env.cmd();
    c.env(&name, &value)
        .env("LD_PRELOAD", "/nonexistent/corral-evil.so")
        .env("HOME", "/root")
        .args(["run", "--json", "--", "/usr/bin/python3", "-c", &code]);
    let out = c.output().unwrap();
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {out:?}"));
    let all = format!("{}{}", stdout(&v), stderr(&v));
    assert!(
        !all.contains(&name) && !all.contains(&value),
        "the secret leaked: {v}"
    );
    assert!(
        !all.contains("CORRAL_STATE_DIR") && !all.contains("LD_PRELOAD"),
        "{v}"
    );
    let got = outcomes(&v);
    assert_eq!(got["init_environ"], "EACCES", "{v}");
    let allowed = [
        "HOME", "HOSTNAME", "LANG", "LOGNAME", "PATH", "PWD", "SHELL", "SHLVL", "TERM", "USER",
    ];
    for k in got["shell_env"].split(' ') {
        assert!(allowed.contains(&k), "unexpected variable {k} inside: {v}");
    }
    assert!(got["self_environ"].contains("HOME=/home/sandbox"), "{v}");
}
