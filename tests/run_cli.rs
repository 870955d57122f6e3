//! `corral run`: options, exit statuses, JSON output, bad input.

mod common;

use common::*;

#[test]
fn hello_from_the_host_template() {
    let env = Env::new();
    let v = env.sh(&[], "echo hello; id -u");
    assert_eq!(ok_stdout(&v), "hello\n1000");
}
