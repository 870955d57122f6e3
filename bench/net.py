#!/usr/bin/env python3
"""Create latency with networking (mode open, pre-built namespace pool) versus
without (mode none), interleaved on one daemon, both without the warm sandbox pool so
the difference is the network alone; plus `none` from the warm sandbox pool for scale.
Loopback API traffic only; the sandboxes send nothing."""
import json, os, statistics, subprocess, sys, tempfile, time, urllib.request

corral, iters = sys.argv[1], int(sys.argv[2])

def start(pool, tmp):
    data = os.path.join(tmp, "data")
    cfg = os.path.join(tmp, "corral.toml")
    with open(cfg, "w") as f:
        f.write(f'pool_size = {pool}\ncgroup_parent = "corral-bench-net"\nruntime_dir = "{tmp}/run"\n'
                f'[network]\ncidr = "10.203.240.0/22"\npool_size = 4\n')
    p = subprocess.Popen([corral, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
                          "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    addr_file = os.path.join(data, "listen.addr")
    for _ in range(600):
        if os.path.exists(addr_file) and open(addr_file).read().strip():
            break
        time.sleep(0.05)
    key = open(os.path.join(data, "admin-key")).read().strip()
    return p, "http://" + open(addr_file).read().strip(), key

def call(base, key, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + key,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"{}")

def measure(base, key, body):
    t = time.perf_counter()
    sid = call(base, key, "POST", "/v1/sandboxes", body)["id"]
    dt = (time.perf_counter() - t) * 1000
    call(base, key, "DELETE", f"/v1/sandboxes/{sid}")
    return dt

res = {}
with tempfile.TemporaryDirectory() as tmp:
    p, base, key = start(0, tmp)
    time.sleep(1)
    none, open_ = [], []
    for i in range(iters + 3):
        a = measure(base, key, {})
        time.sleep(0.05)
        b = measure(base, key, {"network": {"mode": "open"}})
        time.sleep(0.05)
        if i >= 3:
            none.append(a); open_.append(b)
    p.terminate(); p.wait()
res["none_cold"] = statistics.median(none)
res["open_cold"] = statistics.median(open_)
with tempfile.TemporaryDirectory() as tmp:
    p, base, key = start(4, tmp)
    time.sleep(2)
    warm = []
    for i in range(iters):
        warm.append(measure(base, key, {}))
        time.sleep(0.15)
    p.terminate(); p.wait()
res["none_warm"] = statistics.median(warm)
print(json.dumps({k: round(v, 2) for k, v in res.items()}))
