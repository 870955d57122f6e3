//! The upstream of the egress tests (shared by tests/daemon/egress.rs and
//! tests/run_cli/egress.rs): a network namespace the test creates, reached from the
//! host through a veth pair (198.19.K.1 <-> 198.19.K.2), running an HTTP server (8080),
//! an HTTPS server with a test CA (8443, names api.test and web.test), a raw TCP banner
//! and a UDP echo (9000). Sandboxes in mode allow reach it only through corral's egress
//! proxy, which the tests point at it with a static resolve map, so no name is ever
//! looked up in real DNS and no packet goes to an address the test did not create.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

const SERVER: &str = r#"
import http.server, socket, ssl, sys, threading
d, addr = sys.argv[1], sys.argv[2]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k): super().__init__(*a, directory=d, **k)
    def log_message(self, *a): pass
def serve(port, tls):
    s = http.server.ThreadingHTTPServer((addr, port), H)
    if tls:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(d + "/../srv.pem", d + "/../srv.key")
        s.socket = c.wrap_socket(s.socket, server_side=True)
    s.serve_forever()
def banner():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 9000)); s.listen(64)
    while True:
        c, a = s.accept(); c.sendall(b"tcp-ok"); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((addr, 9000))
    while True:
        b, a = u.recvfrom(100); u.sendto(b"udp-ok", a)
for f, a in [(serve, (8080, False)), (serve, (8443, True)), (banner, ()), (udp, ())]:
    threading.Thread(target=f, args=a, daemon=True).start()
threading.Event().wait()
"#;

/// A minimal wheel and a PEP 503 index for it (what `pip download` needs).
const MAKE_INDEX: &str = r#"
import os, sys, zipfile
d = sys.argv[1]
os.makedirs(d + "/simple/demo", exist_ok=True)
whl = "demo-1.0-py3-none-any.whl"
with zipfile.ZipFile(d + "/" + whl, "w") as z:
    z.writestr("demo/__init__.py", "")
    z.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
    z.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: corral-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("demo-1.0.dist-info/RECORD", "")
open(d + "/simple/demo/index.html", "w").write('<html><body><a href="/%s">%s</a></body></html>' % (whl, whl))
open(d + "/index.html", "w").write("hello from upstream\n")
with open(d + "/big", "wb") as f:
    f.write(os.urandom(1 << 20) * int(sys.argv[2]))
"#;

pub struct Upstream {
    pub ns: String,
    veth: String,
    k: u32,
    pub dir: PathBuf,
    server: Option<Child>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Upstream {
    /// The upstream with a `big_mib` MiB file at /big.
    pub fn new(big_mib: u32) -> Upstream {
        let k = (std::process::id() * 11 + NEXT.fetch_add(1, Ordering::Relaxed) * 17) % 250 + 3;
        let tag = std::process::id() % 100000;
        let u = Upstream {
            ns: format!("ceup{tag}-{k}"),
            veth: format!("ceu{tag}v{k}"),
            k,
            dir: std::env::temp_dir().join(format!("corral-egress-{tag}-{k}")),
            server: None,
        };
        let _ = std::fs::remove_dir_all(&u.dir);
        std::fs::create_dir_all(u.dir.join("www")).unwrap();
        let d = u.dir.to_str().unwrap().to_string();
        let d = d.as_str();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args([
                "-keyout",
                &format!("{d}/ca.key"),
                "-out",
                &format!("{d}/ca.pem"),
            ])
            .args(["-days", "2", "-subj", "/CN=corral-test-ca"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
        run(Command::new("openssl")
            .args(["req"])
            .args(ec)
            .args([
                "-keyout",
                &format!("{d}/srv.key"),
                "-out",
                &format!("{d}/srv.csr"),
            ])
            .args(["-subj", "/CN=api.test"]));
        std::fs::write(
            u.dir.join("ext"),
            "subjectAltName=DNS:api.test,DNS:web.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-in", &format!("{d}/srv.csr")])
            .args([
                "-CA",
                &format!("{d}/ca.pem"),
                "-CAkey",
                &format!("{d}/ca.key"),
            ])
            .args([
                "-CAcreateserial",
                "-out",
                &format!("{d}/srv.pem"),
                "-days",
                "2",
            ])
            .args(["-extfile", &format!("{d}/ext")]));
        run(Command::new("python3").args([
            "-c",
            MAKE_INDEX,
            &format!("{d}/www"),
            &big_mib.to_string(),
        ]));
        assert!(ip(&["netns", "add", &u.ns]));
        assert!(ip(&[
            "link", "add", &u.veth, "type", "veth", "peer", "name", "up0", "netns", &u.ns
        ]));
        assert!(ip(&[
            "addr",
            "add",
            &format!("198.19.{k}.1/30"),
            "dev",
            &u.veth
        ]));
        assert!(ip(&["link", "set", &u.veth, "up"]));
        let addr = format!("198.19.{k}.2/30");
        for a in [
            vec!["addr", "add", addr.as_str(), "dev", "up0"],
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "up0", "up"],
        ] {
            let mut args = vec!["-n", u.ns.as_str()];
            args.extend(a.iter().copied());
            assert!(ip(&args), "{args:?}");
        }
        let mut u = u;
        u.server = Some(
            Command::new("ip")
                .args(["netns", "exec", &u.ns, "python3", "-c", SERVER])
                .arg(format!("{d}/www"))
                .arg(u.addr())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        for port in [8080, 8443, 9000] {
            wait_tcp(&format!("{}:{port}", u.addr()));
        }
        u
    }

    /// The servers' address.
    pub fn addr(&self) -> String {
        format!("198.19.{}.2", self.k)
    }

    /// The test CA (PEM).
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.pem")).unwrap()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The `[network] resolve` entries: every test name points here.
    pub fn resolve_toml(&self) -> String {
        let a = self.addr();
        format!("resolve = {{ \"api.test\" = \"{a}\", \"web.test\" = \"{a}\", \"denied.test\" = \"{a}\" }}")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(c) = &mut self.server {
            let _ = c.kill();
            let _ = c.wait();
        }
        ip(&["link", "del", &self.veth]);
        ip(&["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_tcp(addr: &str) {
    let t0 = Instant::now();
    while TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "server {addr} never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
