//! Bad input: 125, one line naming the problem, nothing left behind.

#[allow(unused_imports)]
use super::helpers::*;

#[test]
fn bad_unknown_template() {
    assert_bad_input(
        &["run", "--template", "no-such-template", "--", "true"],
        &["template", "no-such-template"],
    );
}

#[test]
fn bad_memory_size() {
    assert_bad_input(
        &["run", "--memory", "12X", "--", "true"],
        &["--memory", "12X"],
    );
    assert_bad_input(&["run", "--memory", "0", "--", "true"], &["--memory"]);
}

#[test]
fn bad_disk_size() {
    assert_bad_input(&["run", "--disk", "0", "--", "true"], &["--disk"]);
}

#[test]
fn bad_output_limit_attached() {
    assert_bad_input(
        &["run", "--output-limit=-1", "--", "true"],
        &["output-limit"],
    );
}

#[test]
fn bad_output_limit_negative() {
    // `--output-limit -1`: the line must say which option is wrong, not only
    // "unexpected argument '-1'".
    assert_bad_input(
        &["run", "--output-limit", "-1", "--", "true"],
        &["output-limit"],
    );
}

#[test]
fn bad_timeout() {
    assert_bad_input(
        &["run", "--timeout", "5x", "--", "true"],
        &["--timeout", "5x"],
    );
    assert_bad_input(&["run", "--timeout", "0", "--", "true"], &["--timeout"]);
}

#[test]
fn bad_cpus() {
    for c in ["abc", "0", "0.001", "5000", "nan", "inf"] {
        assert_bad_input(&["run", "--cpus", c, "--", "true"], &["cpu"]);
    }
}

#[test]
fn bad_cpus_negative() {
    assert_bad_input(&["run", "--cpus", "-1", "--", "true"], &["cpu"]);
}

#[test]
fn bad_pids() {
    assert_bad_input(&["run", "--pids", "1", "--", "true"], &["--pids"]);
    assert_bad_input(&["run", "--pids", "many", "--", "true"], &["--pids"]);
}

#[test]
fn bad_mount_source_missing() {
    let p = unique_host_path("missing-src");
    let spec = format!("{}:/data", p.display());
    assert_bad_input(
        &["run", "--mount", &spec, "--", "true"],
        &["does not exist", &p.display().to_string()],
    );
}

#[test]
fn bad_mount_relative_paths() {
    assert_bad_input(
        &["run", "--mount", "/tmp:data", "--", "true"],
        &["relative"],
    );
    assert_bad_input(
        &["run", "--mount", "tmp:/data", "--", "true"],
        &["relative"],
    );
    assert_bad_input(&["run", "--mount", "/tmp:/a/../b", "--", "true"], &[".."]);
}

#[test]
fn bad_mount_mode_and_shape() {
    assert_bad_input(&["run", "--mount", "/tmp:/data:xx", "--", "true"], &["xx"]);
    assert_bad_input(&["run", "--mount", "/tmp", "--", "true"], &["mount"]);
}

#[test]
fn bad_mount_under_proc() {
    assert_bad_input(
        &["run", "--mount", "/tmp:/proc/x", "--", "true"],
        &["/proc"],
    );
    assert_bad_input(&["run", "--mount", "/tmp:/proc", "--", "true"], &["/proc"]);
}

#[test]
fn bad_mount_onto_root() {
    assert_bad_input(&["run", "--mount", "/tmp:/", "--", "true"], &["/"]);
    assert_bad_input(&["run", "--mount", "/tmp:/:rw", "--", "true"], &["root"]);
}

#[test]
fn bad_workdir_relative() {
    assert_bad_input(
        &["run", "--workdir", "rel/dir", "--", "true"],
        &["--workdir", "relative"],
    );
}

#[test]
fn bad_workdir_under_proc() {
    assert_bad_input(&["run", "--workdir", "/proc/x", "--", "true"], &["/proc/x"]);
}

#[test]
fn bad_unknown_option() {
    assert_bad_input(
        &["run", "--bogus-option", "--", "true"],
        &["--bogus-option"],
    );
}

#[test]
fn bad_missing_separator() {
    assert_bad_input(&["run", "true"], &["true"]);
}

#[test]
fn bad_missing_command() {
    // The line must say what is missing (the command), not end in "not provided:".
    assert_bad_input(&["run"], &["cmd"]);
    assert_bad_input(&["run", "--"], &["cmd"]);
}

#[test]
fn bad_net_mode() {
    assert_bad_input(&["run", "--net", "bogus", "--", "true"], &["net", "bogus"]);
}

#[test]
fn bad_env_without_equals() {
    assert_bad_input(&["run", "--env", "FOO", "--", "true"], &["--env", "FOO"]);
    assert_bad_input(&["run", "--env", "=x", "--", "true"], &["--env"]);
}

#[test]
fn bad_skip_layer() {
    assert_bad_input(
        &["run", "--dangerously-skip-layer", "firewall", "--", "true"],
        &["layer", "firewall"],
    );
}

#[test]
fn bad_user() {
    assert_bad_input(
        &["run", "--user", "admin", "--", "true"],
        &["--user", "admin"],
    );
}

// --json turns a corral failure into an {"error":{...}} object on stdout.

#[test]
fn json_error_unknown_template() {
    assert_json_error(&["--template", "nope", "--", "true"], Some("not_found"));
}

#[test]
fn json_error_net_mode() {
    assert_json_error(&["--net", "bogus", "--", "true"], None);
}

#[test]
fn json_error_relative_workdir() {
    assert_json_error(&["--workdir", "rel", "--", "true"], None);
}

#[test]
fn json_error_malformed_size() {
    assert_json_error(&["--memory", "12X", "--", "true"], None);
}

#[test]
fn json_error_bad_mount() {
    let p = unique_host_path("json-missing-src");
    let spec = format!("{}:/data", p.display());
    assert_json_error(&["--mount", &spec, "--", "true"], None);
}

#[test]
fn json_error_unknown_option() {
    assert_json_error(&["--bogus", "--", "true"], None);
}
