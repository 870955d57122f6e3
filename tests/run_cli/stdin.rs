//! stdin.

#[allow(unused_imports)]
use super::helpers::*;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn stdin_forwards_one_mib_exactly() {
    let env = Env::new();
    let input = pattern(1 << 20);
    let r = run_fed(&env, &["--stdin"], &["/bin/cat"], input.clone(), false);
    assert_eq!(r.status.code(), Some(0), "stderr={:?}", s(&r.stderr));
    assert_eq!(r.stdout.len(), input.len());
    assert!(r.stdout == input, "stdin bytes were altered on the way");

    let r = run_fed(
        &env,
        &["--stdin", "--json"],
        &["/usr/bin/wc", "-c"],
        input,
        false,
    );
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(ok_stdout(&v), "1048576");
}

#[test]
fn stdin_not_read_does_not_hang() {
    let env = Env::new();
    // 4 MiB is far more than a pipe holds; the caller keeps stdin open afterwards.
    let r = run_fed(&env, &["--stdin"], &["/bin/true"], pattern(4 << 20), true);
    assert_eq!(r.status.code(), Some(0), "stderr={:?}", s(&r.stderr));
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    // Reads a little, then exits.
    let r = run_fed(
        &env,
        &["--stdin"],
        &["/usr/bin/head", "-c", "5"],
        b"abcdefghij".repeat(100_000),
        true,
    );
    assert_eq!(r.status.code(), Some(0), "stderr={:?}", s(&r.stderr));
    assert_eq!(r.stdout, b"abcde");
    assert!(env.leftover_cgroups().is_empty());
}

#[test]
fn stdin_forward_of_empty_input() {
    let env = Env::new();
    let r = run_fed(&env, &["--stdin"], &["/bin/cat"], Vec::new(), false);
    assert_eq!(r.status.code(), Some(0));
    assert!(r.stdout.is_empty());
}

#[test]
fn without_stdin_the_command_reads_eof() {
    let env = Env::new();
    // corral's own stdin has data and stays open: the command must not see it.
    let r = run_fed(&env, &[], &["/bin/cat"], b"secret\n".to_vec(), true);
    assert_eq!(r.status.code(), Some(0), "stderr={:?}", s(&r.stderr));
    assert!(r.stdout.is_empty(), "{:?}", s(&r.stdout));
    assert!(r.elapsed < Duration::from_secs(10));
    let r = run_fed(
        &env,
        &["--json"],
        &["/bin/sh", "-c", "read x; echo \"rc=$? x=$x\""],
        b"secret\n".to_vec(),
        true,
    );
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(ok_stdout(&v), "rc=1 x=");
}
