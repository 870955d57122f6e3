#!/usr/bin/env python3
"""What corral's egress proxy costs (mode allow, TLS passed through untouched) versus a
direct connection from the same kind of sandbox network (mode open: the same veth and
nftables, no proxy), interleaved in one run.

The upstream is the benchmark's own: a network namespace it creates (198.19.252.2,
reached over a veth from the host), HTTPS (test CA, api.test) and HTTP servers on
8445/8446 serving a 2 KiB body at / and 100 MiB at /big. One daemon, two sandboxes:
`direct` in mode open (connects to 198.19.252.2 itself), `proxy` in mode allow for
api.test:8445 and api.test:8446 (api.test resolves through corral's resolver to the
proxy, which is transparent: the original destination from nftables, the name from
the SNI or Host header, the upstream from the daemon's static resolve map); `connect`
is the same sandbox using HTTPS_PROXY (CONNECT). No packet leaves the machine.

Latency: each request is a fresh TCP connection + TLS handshake + GET + the whole 2 KiB
response, timed by the client inside the sandbox; batches of 20 interleaved per path.
Throughput: curl downloads /big (100 MiB) to /dev/null, interleaved, 5 rounds each (after
one warm-up round; BENCH_ROUNDS);
the median of curl's own speed_download.

BENCH_RATE (e.g. `1gbit`): shape the upstream's sending side to that rate (tc tbf on
its own veth end, inside the benchmark's namespace), as a real download is
link-limited; unset, both paths are CPU-bound on loopback-speed veths."""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from daemon_api import Client, Daemon  # noqa: E402

corral, iters = sys.argv[1], int(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
NS, VETH, HOST, UP = "cprx-up", "cprxv0", "198.19.252.1", "198.19.252.2"
BIG = 100 << 20

SERVER = r'''
import http.server, ssl, sys, threading
d, addr, big = sys.argv[1], sys.argv[2], int(sys.argv[3])
small, chunk = b"x" * 2048, b"y" * (1 << 20)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        n = big if self.path == "/big" else len(small)
        self.send_response(200); self.send_header("Content-Length", str(n)); self.end_headers()
        if self.path == "/big":
            for _ in range(n // len(chunk)): self.wfile.write(chunk)
        else:
            self.wfile.write(small)
    def log_message(self, *a): pass
def serve(port, tls):
    s = http.server.ThreadingHTTPServer((addr, port), H)
    if tls:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(d + "/srv.pem", d + "/srv.key")
        s.socket = c.wrap_socket(s.socket, server_side=True)
    s.serve_forever()
threading.Thread(target=serve, args=(8446, False), daemon=True).start()
serve(8445, True)
'''

# argv: mode(direct|transparent|connect) ca n
CLIENT = r'''
import json, os, socket, ssl, sys, time
mode, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
req = b"GET / HTTP/1.1\r\nHost: api.test:8445\r\n\r\n"
# Resolved once, outside the timing (corral's resolver answers the proxy's address):
# what is measured is the proxy, not a DNS lookup the direct path does not make.
addr = socket.gethostbyname("api.test") if mode == "transparent" else None
def connect():
    if mode == "direct":
        s = socket.create_connection(("198.19.252.2", 8445))
    elif mode == "transparent":
        s = socket.create_connection((addr, 8445))
    else:
        h, p = os.environ["HTTPS_PROXY"].rsplit("//", 1)[1].rsplit(":", 1)
        s = socket.create_connection((h, int(p)))
        s.sendall(b"CONNECT api.test:8445 HTTP/1.1\r\nHost: api.test:8445\r\n\r\n")
        b = b""
        while b"\r\n\r\n" not in b: b += s.recv(4096)
        assert b.split(b" ")[1] == b"200", b
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(s, server_hostname="api.test")
def get(t):
    t.sendall(req)
    b = b""
    while b"\r\n\r\n" not in b: b += t.recv(65536)
    head, rest = b.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    while len(rest) < 2048: rest += t.recv(65536)
out = []
for _ in range(n):
    t0 = time.perf_counter(); t = connect(); get(t); out.append((time.perf_counter() - t0) * 1000); t.close()
print(json.dumps(out))
'''


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def upstream(d):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh("openssl", "req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "2",
       "-subj", "/CN=corral-bench-ca", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    sh("openssl", "req", *ec, "-keyout", f"{d}/srv.key", "-out", f"{d}/srv.csr", "-subj", "/CN=api.test")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=DNS:api.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", f"{d}/srv.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
       "-CAcreateserial", "-out", f"{d}/srv.pem", "-days", "2", "-extfile", f"{d}/ext")
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", VETH, check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", "up0", "netns", NS)
    sh("ip", "addr", "add", f"{HOST}/30", "dev", VETH)
    sh("ip", "link", "set", VETH, "up")
    for a in (["addr", "add", f"{UP}/30", "dev", "up0"], ["link", "set", "lo", "up"], ["link", "set", "up0", "up"]):
        sh("ip", "-n", NS, *a)
    if os.environ.get("BENCH_RATE"):
        sh("ip", "netns", "exec", NS, "tc", "qdisc", "add", "dev", "up0", "root", "tbf",
           "rate", os.environ["BENCH_RATE"], "burst", "1mb", "latency", "50ms")
    p = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", SERVER, d, UP, str(BIG)])
    for _ in range(100):
        if subprocess.run(["python3", "-c", f"import socket; socket.create_connection(('{UP}', 8445), 0.2)"],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    return p


def start(tmp):
    d = Daemon(corral, tmp, "serve", 0)
    with open(d.config, "a", encoding="utf-8") as f:
        f.write(f'[network]\ncidr = "10.203.245.0/24"\npool_size = 2\n'
                f'resolve = {{ "api.test" = "{UP}" }}\n')
    d.start()
    # Downloads run inside one exec call: a longer timeout than the default client's.
    return d, Client(d.host, d.port, d.key, timeout=400)


def run(c, sid, cmd):
    out = c.json("POST", f"/v1/sandboxes/{sid}/exec", {"cmd": cmd, "timeout_s": 300})
    if out.get("exit_code") != 0:
        raise SystemExit(f"{cmd[:3]} failed in {sid}: {out.get('stderr')}")
    return out["stdout"]


tmp = tempfile.mkdtemp(prefix="corral-bench-proxy-")
server = daemon = None
try:
    server = upstream(tmp)
    daemon, c = start(tmp)
    time.sleep(1)
    direct = c.json("POST", "/v1/sandboxes", {"network": {"mode": "open"}, "timeout_s": 3600})["id"]
    proxy = c.json("POST", "/v1/sandboxes",
                   {"network": {"mode": "allow", "allow": ["api.test:8445", "api.test:8446"]},
                    "timeout_s": 3600})["id"]
    ca = open(f"{tmp}/ca.pem").read()
    for sid in (direct, proxy):
        run(c, sid, ["sh", "-c", 'printf "%s" "$0" > /tmp/ca.pem', ca])
    lat = {"direct": [], "transparent": [], "connect": []}
    batch = 20
    for r in range(max(1, iters // batch) + 1):
        for mode, sid in (("direct", direct), ("transparent", proxy), ("connect", proxy)):
            v = json.loads(run(c, sid, ["python3", "-c", CLIENT, mode, "/tmp/ca.pem", str(batch)]))
            if r > 0:  # round 0 warms up
                lat[mode] += v
    thr = {"direct_https": [], "proxy_https": [], "direct_http": [], "proxy_http": []}
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", "--noproxy", "*",
            "--cacert", "/tmp/ca.pem"]
    pin = ["--resolve", f"api.test:8445:{UP}", "--resolve", f"api.test:8446:{UP}"]
    for r in range(rounds + 1):
        for name, sid, extra, url in (
            ("direct_https", direct, pin, "https://api.test:8445/big"),
            ("proxy_https", proxy, [], "https://api.test:8445/big"),
            ("direct_http", direct, pin, "http://api.test:8446/big"),
            ("proxy_http", proxy, [], "http://api.test:8446/big"),
        ):
            speed, size = run(c, sid, curl + extra + [url]).split()
            assert int(size) == BIG, (name, size)
            if r > 0:
                thr[name].append(float(speed) / (1 << 20))
    out = {}
    for mode, v in lat.items():
        out[f"{mode}_p50_ms"] = round(statistics.median(v), 3)
        out[f"{mode}_p90_ms"] = round(statistics.quantiles(v, n=10)[-1], 3)
    out["n"] = len(lat["direct"])
    out["added_transparent_ms"] = round(out["transparent_p50_ms"] - out["direct_p50_ms"], 3)
    out["added_connect_ms"] = round(out["connect_p50_ms"] - out["direct_p50_ms"], 3)
    for name, v in thr.items():
        out[f"{name}_mib_s"] = round(statistics.median(v), 1)
    out["https_ratio"] = round(out["proxy_https_mib_s"] / out["direct_https_mib_s"], 3)
    out["http_ratio"] = round(out["proxy_http_mib_s"] / out["direct_http_mib_s"], 3)
    print(json.dumps(out))
finally:
    if daemon:
        daemon.stop()
        daemon.remove_cgroup_parent()
    if server:
        server.kill()
        server.wait()
    sh("ip", "link", "del", VETH, check=False)
    sh("ip", "netns", "del", NS, check=False)
    shutil.rmtree(tmp, ignore_errors=True)
