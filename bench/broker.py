#!/usr/bin/env python3
"""Latency per HTTPS request when corral's credential broker terminates TLS to inject
a secret, versus the egress proxy passing the TLS through untouched, versus a direct
connection without any proxy; interleaved in one run.

The upstream is the benchmark's own: a network namespace it creates (198.19.251.2,
reached over a veth from the host), an HTTPS server with a test CA for api.test on
port 8444. One daemon, two sandboxes in mode allow for api.test:8444: `pass` without
secrets (the proxy splices the bytes) and `broker` with a secret bound to api.test
(TLS terminated with a corral leaf, TLS to the server, the placeholder swapped). The
`direct` client runs in the host's namespace and connects to the server itself.

Each measured request is a fresh TCP connection + TLS handshake + one GET with an
Authorization header + the whole 2 KiB response (the client's clock, inside the
sandbox for pass and broker), plus a keep-alive series (requests 2..N on one
connection). No packet leaves the machine: the names resolve through the daemon's
static map to the benchmark's own namespace."""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from daemon_api import Daemon  # noqa: E402

corral, iters = sys.argv[1], int(sys.argv[2])
NS, VETH, HOST, UP = "cbrk-up", "cbrkv0", "198.19.251.1", "198.19.251.2"

SERVER = r'''
import http.server, ssl, sys
d, addr = sys.argv[1], sys.argv[2]
body = b"x" * 2048
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer((addr, 8444), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(d + "/srv.pem", d + "/srv.key")
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
'''

# Runs where it is measured: N fresh-connection requests, then K keep-alive ones.
# argv: connect_host connect_port(0: direct) ca_file auth n k
CLIENT = r'''
import json, os, socket, ssl, sys, time
proxy = os.environ.get("HTTPS_PROXY", "")
direct, ca, auth, n, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
req = ("GET / HTTP/1.1\r\nHost: api.test:8444\r\nAuthorization: Bearer %s\r\n\r\n" % auth).encode()
def connect():
    if direct:
        s = socket.create_connection((direct, 8444))
    else:
        h, p = proxy.rsplit("//", 1)[1].rsplit(":", 1)
        s = socket.create_connection((h, int(p)))
        s.sendall(b"CONNECT api.test:8444 HTTP/1.1\r\nHost: api.test:8444\r\n\r\n")
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
    ln = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(rest) < ln: rest += t.recv(65536)
fresh, keep = [], []
for _ in range(n):
    t0 = time.perf_counter(); t = connect(); get(t); fresh.append((time.perf_counter() - t0) * 1000); t.close()
t = connect(); get(t)
for _ in range(k):
    t0 = time.perf_counter(); get(t); keep.append((time.perf_counter() - t0) * 1000)
t.close()
print(json.dumps({"fresh": fresh, "keep": keep}))
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
    p = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", SERVER, d, UP])
    for _ in range(100):
        if subprocess.run(["python3", "-c", f"import socket; socket.create_connection(('{UP}', 8444), 0.2)"],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    return p


def start(tmp, ca):
    d = Daemon(corral, tmp, "daemon", 0)
    with open(d.config, "a", encoding="utf-8") as f:
        f.write(f'[network]\ncidr = "10.203.244.0/24"\npool_size = 2\nupstream_ca = "{ca}"\n'
                f'resolve = {{ "api.test" = "{UP}" }}\n')
    d.start()
    return d, d.client()


def in_sandbox(c, sid, args):
    out = c.json("POST", f"/v1/sandboxes/{sid}/exec",
               {"cmd": ["python3", "-c", CLIENT, *args], "timeout_s": 300})
    if out.get("exit_code") != 0:
        raise SystemExit(f"client failed in {sid}: {out.get('stderr')}")
    return json.loads(out["stdout"])


tmp = tempfile.mkdtemp(prefix="corral-bench-broker-")
server = daemon = None
try:
    server = upstream(tmp)
    daemon, c = start(tmp, f"{tmp}/ca.pem")
    time.sleep(1)
    placeholder = c.json("PUT", "/v1/secrets/API",
                       {"value": "sk-bench-0123456789abcdef", "hosts": ["api.test:8444"]})["placeholder"]
    net = {"mode": "allow", "allow": ["api.test:8444"]}
    plain = c.json("POST", "/v1/sandboxes", {"network": net})["id"]
    brok = c.json("POST", "/v1/sandboxes", {"network": net, "secrets": ["API"]})["id"]
    # The passthrough sandbox verifies the server's own certificate (the test CA).
    c.json("POST", f"/v1/sandboxes/{plain}/exec",
         {"cmd": ["sh", "-c", 'printf "%s" "$0" > /tmp/ca.pem', open(f"{tmp}/ca.pem").read()]})
    res = {"direct": {"fresh": [], "keep": []}, "pass": {"fresh": [], "keep": []},
           "broker": {"fresh": [], "keep": []}}
    batch, keep = 20, 20
    rounds = max(1, iters // batch)
    for r in range(rounds + 1):
        d = json.loads(sh("python3", "-c", CLIENT, UP, f"{tmp}/ca.pem", "x", str(batch), str(keep)).stdout)
        p = in_sandbox(c, plain, ["", "/tmp/ca.pem", "x", str(batch), str(keep)])
        b = in_sandbox(c, brok, ["", "/etc/ssl/certs/corral/bundle.pem", placeholder,
                                         str(batch), str(keep)])
        if r == 0:
            continue  # warm-up: caches, leaf minting, page cache
        for name, v in (("direct", d), ("pass", p), ("broker", b)):
            res[name]["fresh"] += v["fresh"]
            res[name]["keep"] += v["keep"]
    out = {}
    for name, v in res.items():
        out[name] = {"fresh_p50": round(statistics.median(v["fresh"]), 3),
                     "fresh_p90": round(statistics.quantiles(v["fresh"], n=10)[-1], 3),
                     "keep_p50": round(statistics.median(v["keep"]), 3),
                     "n": len(v["fresh"])}
    out["added_fresh_vs_direct"] = round(out["broker"]["fresh_p50"] - out["direct"]["fresh_p50"], 3)
    out["added_fresh_vs_pass"] = round(out["broker"]["fresh_p50"] - out["pass"]["fresh_p50"], 3)
    out["added_keep_vs_direct"] = round(out["broker"]["keep_p50"] - out["direct"]["keep_p50"], 3)
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
