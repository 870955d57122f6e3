//! Sandbox networks (mode `open`) against real servers the test creates itself: an
//! "upstream" network namespace reached through a veth pair the test makes (198.18.K.2,
//! plus 169.254.169.254 routed only for the daemon's pool by a policy rule, so the
//! host's own routing is untouched), and servers on the host's own addresses. No
//! packet goes to an address the test did not create.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Daemon;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A number unique to this test in this process, kept small for names and octets.
fn unique() -> u32 {
    (std::process::id() * 7 + NEXT.fetch_add(1, Ordering::Relaxed) * 13) % 240 + 5
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

const SERVER: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    while True:
        d, a = u.recvfrom(100)
        u.sendto(b"udp-ok", a)
if len(sys.argv) > 2:
    threading.Thread(target=udp, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
while True:
    c, a = s.accept()
    c.sendall(b"tcp-ok " + a[0].encode())
    c.close()
"#;

/// Tries each target from inside a sandbox, in parallel; prints one JSON object.
const CLIENT: &str = r#"
import json, socket, sys, threading
out = {}
def tcp(name, h, p):
    s = socket.socket(); s.settimeout(1.5)
    try:
        s.connect((h, p)); out[name] = s.recv(100).decode() or "empty"
    except Exception as e:
        out[name] = "ERR " + type(e).__name__
def udp(name, h, p):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
    try:
        s.sendto(b"x", (h, p)); out[name] = s.recv(100).decode()
    except Exception as e:
        out[name] = "ERR " + type(e).__name__
ts = []
for spec in sys.argv[1:]:
    kind, name, h, p = spec.split(",")
    ts.append(threading.Thread(target=tcp if kind == "t" else udp, args=(name, h, int(p))))
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(out))
"#;

/// The test's upstream: a namespace with servers, reachable from the daemon's pool.
struct Upstream {
    ns: String,
    veth: String,
    k: u32,
    pool: String,
    servers: Vec<Child>,
}

impl Upstream {
    const PORT: u16 = 8080;

    fn addr(&self) -> String {
        format!("198.18.{}.2", self.k)
    }

    fn new(k: u32, pool: &str) -> Upstream {
        let ns = format!("ctup{}-{k}", std::process::id() % 100000);
        let veth = format!("ctu{}v{k}", std::process::id() % 100000);
        let u = Upstream {
            ns: ns.clone(),
            veth: veth.clone(),
            k,
            pool: pool.to_string(),
            servers: Vec::new(),
        };
        assert!(ip(&["netns", "add", &ns]));
        assert!(ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "up0", "netns", &ns
        ]));
        assert!(ip(&[
            "addr",
            "add",
            &format!("198.18.{k}.1/30"),
            "dev",
            &veth
        ]));
        assert!(ip(&["link", "set", &veth, "up"]));
        for a in [
            vec!["addr", "add", &format!("198.18.{k}.2/30"), "dev", "up0"],
            vec!["addr", "add", "169.254.169.254/32", "dev", "lo"],
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "up0", "up"],
        ] {
            let mut args = vec!["-n", &ns];
            args.extend(a.iter().copied());
            assert!(ip(&args), "{args:?}");
        }
        // 169.254.169.254 only for the pool's packets (a policy rule and table of the
        // test's own), never for the host's.
        let table = (20000 + k).to_string();
        let gw = format!("198.18.{k}.2");
        assert!(ip(&[
            "route",
            "add",
            "169.254.169.254/32",
            "via",
            &gw,
            "table",
            &table
        ]));
        assert!(ip(&[
            "rule", "add", "from", pool, "lookup", &table, "priority", &table
        ]));
        let mut u = u;
        u.servers.push(
            Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-c", SERVER])
                .arg(Self::PORT.to_string())
                .arg("udp")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_tcp(&format!("{}:{}", u.addr(), Self::PORT));
        u
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let table = (20000 + self.k).to_string();
        ip(&[
            "rule", "del", "from", &self.pool, "lookup", &table, "priority", &table,
        ]);
        ip(&["route", "flush", "table", &table]);
        ip(&["link", "del", &self.veth]);
        ip(&["netns", "del", &self.ns]);
    }
}

fn wait_tcp(addr: &str) {
    let t0 = Instant::now();
    while TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "server {addr} never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_daemon(k: u32, pool: usize) -> (Daemon, String) {
    let cidr = format!("10.203.{k}.0/24");
    let d = Daemon::start_with(
        0,
        &format!("[network]\ncidr = \"{cidr}\"\npool_size = {pool}\ndeny = [\"192.0.2.0/24\"]"),
    );
    (d, cidr)
}

fn probe(d: &Daemon, id: &str, targets: &[String]) -> Value {
    let mut cmd = vec!["python3", "-c", CLIENT];
    cmd.extend(targets.iter().map(String::as_str));
    let v = d.exec(id, &cmd);
    let out = v["stdout"].as_str().unwrap_or("");
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("probe output: {v}"))
}

/// The sandbox's own address (eth0), read inside.
fn sandbox_addr(d: &Daemon, id: &str) -> String {
    let v = d.exec(
        id,
        &[
            "sh",
            "-c",
            "/usr/sbin/ip -4 -o addr show dev eth0 | awk '{print $4}'",
        ],
    );
    let a = v["stdout"].as_str().unwrap().trim().to_string();
    a.split('/').next().unwrap().to_string()
}

fn gateway(addr: &str) -> String {
    let mut o: Vec<u32> = addr.split('.').map(|x| x.parse().unwrap()).collect();
    o[3] -= 1;
    format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])
}

/// What of a slot exists: (veth, namespace file, nft element).
fn slot_exists(d: &Daemon, addr: &str) -> (bool, bool, bool) {
    let tag = corral_net::tag_for(&d.data_dir());
    let o: Vec<u32> = addr.split('.').map(|x| x.parse().unwrap()).collect();
    let slot = o[3] / 4; // the daemon's pool is a /24
    let veth = format!("crl{tag}h{slot}");
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    let set = Command::new("nft")
        .args(["list", "set", "inet", &format!("corral_{tag}"), "open"])
        .output()
        .unwrap();
    (
        links.contains(&format!(": {veth}@")),
        std::path::Path::new(&format!("/run/netns/crl{tag}-{slot}")).exists(),
        String::from_utf8_lossy(&set.stdout).contains(&format!("\"{veth}\"")),
    )
}

#[test]
fn open_mode_reaches_upstream_and_nothing_private() {
    let k = unique();
    let (d, cidr) = start_daemon(k, 2);
    let up = Upstream::new(k, &cidr);
    // A server on every host address (0.0.0.0): the host-side veth included.
    let host_port = 18000 + k as u16;
    let mut host_srv = Command::new("python3")
        .args(["-c", SERVER, &host_port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_tcp(&format!("127.0.0.1:{host_port}"));
    // Control: the metadata address answers inside the upstream namespace.
    let ctl = Command::new("ip")
        .args(["netns", "exec", &up.ns, "python3", "-c", CLIENT])
        .arg("t,meta,169.254.169.254,8080")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ctl.stdout).contains("tcp-ok"),
        "{ctl:?}"
    );

    let a = d.create(json!({"network": {"mode": "open"}}));
    let b = d.create(json!({"network": {"mode": "open"}}));
    let r = d.call("GET", &format!("/v1/sandboxes/{a}"), None);
    assert_eq!(r.json()["network"], "open");
    let a_addr = sandbox_addr(&d, &a);
    let b_addr = sandbox_addr(&d, &b);
    assert!(a_addr.starts_with(&format!("10.203.{k}.")), "{a_addr}");
    // Sandbox b listens on every address of its own.
    let bg = d.call(
        "POST",
        &format!("/v1/sandboxes/{b}/exec"),
        Some(&json!({"cmd": ["python3", "-c", SERVER, "9000"], "background": true})),
    );
    assert!(bg.status < 300, "{}", bg.text());
    std::thread::sleep(Duration::from_millis(300));
    let self_check = probe(&d, &b, &["t,self,127.0.0.1,9000".into()]);
    assert!(
        self_check["self"].as_str().unwrap().starts_with("tcp-ok"),
        "{self_check}"
    );

    let up_addr = up.addr();
    let gw = gateway(&a_addr);
    let got = probe(
        &d,
        &a,
        &[
            format!("t,upstream_tcp,{up_addr},8080"),
            format!("u,upstream_udp,{up_addr},8080"),
            "t,metadata_tcp,169.254.169.254,8080".into(),
            "u,metadata_udp,169.254.169.254,8080".into(),
            format!("t,host_veth,{gw},{host_port}"),
            format!("t,host_loopback,127.0.0.1,{host_port}"),
            format!("t,other_sandbox,{b_addr},9000"),
        ],
    );
    // Masqueraded: the upstream sees the host end of its own veth.
    assert_eq!(got["upstream_tcp"], format!("tcp-ok 198.18.{k}.1"), "{got}");
    assert_eq!(got["upstream_udp"], "udp-ok", "{got}");
    for blocked in [
        "metadata_tcp",
        "metadata_udp",
        "host_veth",
        "host_loopback",
        "other_sandbox",
    ] {
        assert!(
            got[blocked].as_str().unwrap().starts_with("ERR"),
            "{blocked} reachable: {got}"
        );
    }

    // Nothing inside can change the network, not even sandbox root.
    for cmd in [
        "/usr/sbin/ip addr add 10.99.0.1/32 dev eth0",
        "/usr/sbin/ip route del default",
        "/usr/sbin/ip link set eth0 down",
        "/usr/sbin/ip link set eth0 address 02:00:00:00:00:01",
    ] {
        let r = d.call(
            "POST",
            &format!("/v1/sandboxes/{a}/exec"),
            Some(&json!({"cmd": ["sh", "-c", cmd], "user": "root"})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_ne!(r.json()["exit_code"], 0, "{cmd} succeeded: {}", r.text());
    }
    let again = probe(&d, &a, &[format!("t,upstream_tcp,{up_addr},8080")]);
    assert!(again["upstream_tcp"]
        .as_str()
        .unwrap()
        .starts_with("tcp-ok"));

    // A `none` sandbox still has loopback only.
    let n = d.create(json!({}));
    let got = probe(&d, &n, &[format!("t,upstream_tcp,{up_addr},8080")]);
    assert!(
        got["upstream_tcp"].as_str().unwrap().starts_with("ERR"),
        "{got}"
    );

    // Delete: nothing of the sandbox's network remains.
    assert_eq!(slot_exists(&d, &a_addr), (true, true, true));
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{a}"), None).status,
        204
    );
    assert_eq!(slot_exists(&d, &a_addr), (false, false, false));
    let _ = host_srv.kill();
    let _ = host_srv.wait();
    // Shutdown: no namespace, veth or table of this daemon remains.
    let tag = corral_net::tag_for(&d.data_dir());
    drop(d);
    assert_nothing_left(&tag);
}

fn assert_nothing_left(tag: &str) {
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&format!("crl{tag}h")),
        "veths left"
    );
    let ns: Vec<_> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("crl{tag}-"))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(ns.is_empty(), "namespaces left: {ns:?}");
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains(&format!("corral_{tag}")),
        "table left"
    );
}

#[test]
fn kill9_restart_keeps_live_networks_and_removes_leftovers() {
    let k = unique();
    let (mut d, cidr) = start_daemon(k, 0);
    let up = Upstream::new(k, &cidr);
    let live = d.create(json!({"network": {"mode": "open"}}));
    let live_addr = sandbox_addr(&d, &live);
    d.kill9();
    // A build cut short by the crash left a namespace and veth of slot 50 behind.
    let tag = corral_net::tag_for(&d.data_dir());
    assert!(ip(&["netns", "add", &format!("crl{tag}-50")]));
    assert!(ip(&[
        "link",
        "add",
        &format!("crl{tag}h50"),
        "type",
        "veth",
        "peer",
        "name",
        "x0",
        "netns",
        &format!("crl{tag}-50")
    ]));
    d.restart();
    assert!(!std::path::Path::new(&format!("/run/netns/crl{tag}-50")).exists());
    assert!(!ip(&["link", "show", &format!("crl{tag}h50")]));
    // The live sandbox was re-attached with its network.
    assert_eq!(slot_exists(&d, &live_addr), (true, true, true));
    let got = probe(&d, &live, &[format!("t,upstream_tcp,{},8080", up.addr())]);
    assert!(
        got["upstream_tcp"].as_str().unwrap().starts_with("tcp-ok"),
        "{got}"
    );
    drop(d);
    assert_nothing_left(&tag);
}
