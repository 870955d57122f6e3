//! `corral serve` over TLS (rustls): a client that trusts the certificate gets in,
//! plain HTTP and a client that does not trust it do not.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Env;

/// A test CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key).
fn openssl(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is installed by scripts/setup.sh");
        assert!(st.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "1",
            "-subj",
            "/CN=corral test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[test]
fn tls_daemon_serves_only_clients_that_trust_it() {
    let env = Env::new();
    let dir = env.state.path();
    let (ca, cert, key) = openssl(dir);
    let config = dir.join("corral.toml");
    std::fs::write(
        &config,
        format!(
            "pool_size = 0\ncgroup_parent = \"{}\"\nruntime_dir = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            env.cgroup_parent,
            env.runtime.path().display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let data = dir.join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stops the daemon even when an assertion fails.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.0.id().to_string())
                .status();
            let _ = self.0.wait();
        }
    }
    let mut child = Stop(child);
    let t0 = Instant::now();
    let addr = loop {
        if let Ok(a) = std::fs::read_to_string(data.join("listen.addr")) {
            if !a.trim().is_empty() {
                break a.trim().to_string();
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let admin = std::fs::read_to_string(data.join("admin-key"))
        .unwrap()
        .trim()
        .to_string();
    let cli = |url: &str, ca: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(["tenant", "ls", "--json", "--url", url, "--key", &admin]);
        if let Some(ca) = ca {
            c.arg("--ca-cert").arg(ca);
        }
        c.output().unwrap()
    };
    let https = format!("https://{addr}");
    let ok = cli(&https, Some(&ca));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("default"));
    let untrusted = cli(&https, None);
    assert!(
        !untrusted.status.success(),
        "a client without the CA must refuse the certificate"
    );
    let plain = cli(&format!("http://{addr}"), None);
    assert!(
        !plain.status.success(),
        "plain HTTP to the TLS port must fail"
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status();
    let st = child.0.wait().unwrap();
    assert!(st.success(), "graceful shutdown: {st}");
}
