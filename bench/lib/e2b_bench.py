"""Sandbox.create() -> commands.run("true") -> kill() through the E2B Python SDK,
interleaved with the same round through corral's native API (keep-alive HTTP/1.1),
against one daemon. Prints the figures and rewrites the e2b block of BENCHMARKS.md."""

import http.client
import json
import os
import platform
import statistics
import sys
import time

from e2b import Sandbox

from mdblock import replace_block

addr = os.environ["CORRAL_BENCH_ADDR"]
key = os.environ["E2B_API_KEY"]
iters = int(os.environ["CORRAL_BENCH_ITERS"])
warmup = int(os.environ["CORRAL_BENCH_WARMUP"])
conn = http.client.HTTPConnection(*addr.split(":"))


def native(method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    assert r.status < 300, (r.status, data)
    return json.loads(data) if data else None


def e2b_round():
    t0 = time.perf_counter()
    s = Sandbox.create()
    r = s.commands.run("true")
    t1 = time.perf_counter()
    assert r.exit_code == 0
    s.kill()
    return t1 - t0, time.perf_counter() - t0


def native_round():
    t0 = time.perf_counter()
    sb = native("POST", "/v1/sandboxes", {})
    r = native("POST", f"/v1/sandboxes/{sb['id']}/exec", {"cmd": ["true"]})
    t1 = time.perf_counter()
    assert r["exit_code"] == 0
    native("DELETE", f"/v1/sandboxes/{sb['id']}")
    return t1 - t0, time.perf_counter() - t0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


res = {"e2b": ([], []), "native": ([], [])}
for i in range(warmup + iters):
    for name, f in (("e2b", e2b_round), ("native", native_round)):
        first, full = f()
        if i >= warmup:
            res[name][0].append(first)
            res[name][1].append(full)

rows = []
for name, label in (("e2b", "E2B Python SDK (`/e2b`)"), ("native", "corral native API (`/v1`)")):
    first, full = res[name]
    rows.append(f"| {label} | {pct(first, 50):.2f} | {pct(first, 99):.2f} | "
                f"{pct(full, 50):.2f} | {pct(full, 99):.2f} |")
p50 = pct(res["e2b"][0], 50)
verdict = "PASS" if p50 <= 20 else "FAIL"
import e2b as _e2b  # noqa: E402

body = "\n".join([
    f"Command: `{os.environ['CORRAL_BENCH_CMD']}` ({time.strftime('%Y-%m-%d')}, "
    f"{platform.machine()}, {os.cpu_count()} CPUs, Python SDK e2b "
    f"{getattr(_e2b, '__version__', '') or 'installed by scripts/e2b-sdks.sh'}, "
    f"{iters} rounds each, interleaved, after {warmup} warm-up rounds; warm pool on).",
    "",
    "| client | create → first command p50 (ms) | p99 | create → run → kill p50 (ms) | p99 |",
    "|---|---|---|---|---|",
    *rows,
    "",
    f"Target: create → first command through the Python SDK p50 ≤ 20 ms: "
    f"{p50:.2f} ms, {verdict}.",
    "",
    "The SDK's extra time over the native call is spent outside the native path (the SDK's",
    "client, Connect framing, the streamed `Start`; not profiled further). Before the daemon",
    "set TCP_NODELAY the SDK round sat at ~50 ms: each streamed frame waited for the",
    "client's delayed ACK.",
])
print(body)
replace_block(sys.argv[1], "<!-- e2b:begin -->", "<!-- e2b:end -->", body,
              header="# Benchmarks", section="## E2B-compatible endpoint (Python SDK)")
