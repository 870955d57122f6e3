#!/usr/bin/env python3
"""Create latency with networking versus without, on one daemon: mode `none`, mode
`open` and mode `allow` (namespaces pre-built per mode), interleaved, the warm sandbox
pool off so the difference is the network alone; plus `none` from the warm sandbox
pool for scale. Loopback API traffic only; the sandboxes send nothing (the allow rule
names a host nobody resolves).

    bench/net.py CORRAL ITERS   -> one JSON line of p50s in ms
"""
import json
import os
import statistics
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from daemon_api import Daemon  # noqa: E402

corral, iters = sys.argv[1], int(sys.argv[2])
WARMUP = 3
BODIES = {
    "none": {},
    "open": {"network": {"mode": "open"}},
    "allow": {"network": {"mode": "allow", "allow": ["pypi.org"]}},
}


def daemon(tmp: str, name: str, pool: int) -> Daemon:
    d = Daemon(corral, tmp, name, pool)
    with open(d.config, "a", encoding="utf-8") as f:
        # A pool of its own, apart from the default and from the tests'.
        f.write('[network]\ncidr = "10.203.240.0/22"\npool_size = 4\n')
    d.start()
    return d


def create_delete(c, body) -> float:
    t = time.perf_counter()
    sid = c.json("POST", "/v1/sandboxes", body)["id"]
    dt = (time.perf_counter() - t) * 1000
    c.json("DELETE", f"/v1/sandboxes/{sid}")
    return dt


res = {}
with tempfile.TemporaryDirectory() as tmp:
    d = daemon(tmp, "cold", 0)
    try:
        c = d.client()
        time.sleep(1)
        samples = {k: [] for k in BODIES}
        for i in range(iters + WARMUP):
            for mode, body in BODIES.items():
                dt = create_delete(c, body)
                # Let the pool refill in the background before the next create.
                time.sleep(0.05)
                if i >= WARMUP:
                    samples[mode].append(dt)
        for mode, xs in samples.items():
            res[f"{mode}_cold"] = statistics.median(xs)
    finally:
        d.stop()
        d.remove_cgroup_parent()
    d = daemon(tmp, "warm", 4)
    try:
        c = d.client()
        time.sleep(2)
        warm = []
        for _ in range(iters):
            warm.append(create_delete(c, {}))
            time.sleep(0.15)
        res["none_warm"] = statistics.median(warm)
    finally:
        d.stop()
        d.remove_cgroup_parent()
print(json.dumps({k: round(v, 2) for k, v in res.items()}))
