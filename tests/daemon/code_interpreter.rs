//! The code-interpreter scenario (examples/code-interpreter): a `python` template with
//! numpy, pandas and matplotlib, bootstrapped from Debian packages (offline, from the
//! tarball scripts/debian-fixture.sh made); the example script uploads a CSV into a
//! sandbox, runs the analysis, and downloads the PNG chart and the summary, all through
//! the daemon with the `corral sandbox` CLI.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::debootstrap::{debootstrap, fixture};
use crate::harness::Daemon;

#[test]
fn csv_in_chart_and_summary_out_of_a_python_sandbox() {
    let tarball = fixture("python");
    let d = Daemon::start(0);
    let out = debootstrap(
        &d.data_dir(),
        &[
            "--name",
            "python",
            "--tarball",
            tarball.to_str().unwrap(),
            "--include",
            "python3,python3-numpy,python3-pandas,python3-matplotlib",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/code-interpreter");
    let results = tempfile::tempdir().unwrap();
    let run = Command::new(example.join("run.sh"))
        .arg(results.path())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CORRAL", env!("CARGO_BIN_EXE_corral"))
        .env("CORRAL_URL", format!("http://{}", d.addr))
        .env("CORRAL_API_KEY", &d.key)
        .env("SIZE", "3000000")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "run.sh failed: stdout={} stderr={}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    let png = std::fs::read(results.path().join("chart.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 5_000,
        "a chart of 4 bars is more than {} bytes",
        png.len()
    );
    let read = |f: &str| -> Value {
        serde_json::from_slice(&std::fs::read(results.path().join(f)).unwrap()).unwrap()
    };
    let (summary, expected) = (read("summary.json"), read("expected.json"));
    assert!(expected["rows"].as_u64().unwrap() > 10_000, "{expected}");
    assert_eq!(summary["rows"], expected["rows"], "{summary}");
    for (region, want) in expected["revenue_by_region"].as_object().unwrap() {
        let got = summary["revenue_by_region"][region].as_f64().unwrap();
        let want = want.as_f64().unwrap();
        assert!((got - want).abs() < 0.5, "{region}: {got} != {want}");
    }
    assert_eq!(summary["units_by_month"].as_object().unwrap().len(), 12);
    // The script deleted its sandbox.
    d.assert_clean(0);
}
