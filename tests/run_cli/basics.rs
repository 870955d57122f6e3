//! The basics: template contents, sh, python.

#[allow(unused_imports)]
use super::helpers::*;

#[test]
fn hello_from_the_host_template() {
    let env = Env::new();
    let v = env.sh(&[], "echo hello; id -u");
    assert_eq!(ok_stdout(&v), "hello\n1000");
}

#[test]
fn sh_and_python3_run() {
    let env = Env::new();
    assert_eq!(ok_stdout(&env.sh(&[], "echo $((6 * 7))")), "42");
    let v = env.py(&[], "import sys; print(sys.version_info[0], 6 * 7)");
    assert_eq!(ok_stdout(&v), "3 42");
}

#[test]
fn passwd_hostname_and_ca_bundle() {
    let env = Env::new();
    let v = env.sh(
        &[],
        "grep '^sandbox:' /etc/passwd; cat /proc/sys/kernel/hostname; hostname; \
         test -s /etc/ssl/certs/ca-certificates.crt && grep -c 'BEGIN CERTIFICATE' \
         /etc/ssl/certs/ca-certificates.crt",
    );
    let out = ok_stdout(&v);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 4, "{out}");
    let f: Vec<&str> = l[0].split(':').collect();
    assert_eq!(f[0], "sandbox", "{out}");
    assert_eq!(f[2], "1000", "uid: {out}");
    assert_eq!(f[3], "1000", "gid: {out}");
    assert_eq!(f[5], "/home/sandbox", "home: {out}");
    assert_eq!(l[1], "sandbox");
    assert_eq!(l[2], "sandbox");
    let certs: u32 = l[3].parse().unwrap();
    assert!(certs > 10, "the CA bundle holds {certs} certificates");
}
