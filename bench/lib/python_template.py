#!/usr/bin/python3
"""Driver for bench/run-python-template.sh (issue 6's two figures for the shipped
`python` recipe): rebuilds of the unchanged recipe from a warm cache, and create ->
exec from `python` (1.2 GiB: numpy, pandas, matplotlib) versus from `host`,
interleaved on one daemon (pool_size 0).

The benchmark sends no packet off the machine: it needs a store in which `python` was
already built from resources/templates/python/Recipe (an install step: the recipe's
RUN fetches Debian packages through the egress proxy; see bench/README.md). The store's
templates are hard-linked into the benchmark daemon's data dir (nothing copied), and a
rebuild whose every step is cached starts no RUN and so opens no network.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon_api import Daemon  # noqa: E402
from mdblock import replace_block  # noqa: E402
from oneshot import HEADER, corral_rev, pct  # noqa: E402
from templates import interleaved_creates  # noqa: E402

BEGIN, END = "<!-- python-template:begin -->", "<!-- python-template:end -->"
SECTION = "## Templates: the shipped `python` recipe"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repo", required=True)
    p.add_argument("--tmp", required=True)
    p.add_argument("--store", required=True, help="data dir holding a built `python`")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rebuilds", type=int, default=20)
    p.add_argument("--command", default="bench/run-python-template.sh")
    p.add_argument("--markdown", default="")
    p.add_argument("--json", default="")
    a = p.parse_args()
    corral = os.path.join(a.repo, "target/release/corral")
    d = Daemon(corral, a.tmp, "serve", 0)
    os.makedirs(d.data, exist_ok=True)
    subprocess.run(["cp", "-al", os.path.join(a.store, "templates"), d.data], check=True)
    info = subprocess.run([corral, "template", "inspect", "python", "--data-dir", d.data],
                          capture_output=True, text=True)
    if info.returncode != 0:
        raise SystemExit(f"no `python` template in {a.store}: {info.stderr.strip()}")
    tpl = json.loads(info.stdout)
    recipe = os.path.join(a.repo, "resources/templates/python")
    cmd = [corral, "template", "build", "--name", "python", "-f",
           os.path.join(recipe, "Recipe"), "--data-dir", d.data, recipe]
    times = []
    for _ in range(a.rebuilds):
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.monotonic() - t0)
        if r.returncode != 0 or " running " in r.stderr:
            raise SystemExit(f"the rebuild was not all cached: {r.stderr}")
    d.start()
    c = d.client()
    samples = interleaved_creates(c, ("host", "python"), a.warmup, a.iters)
    # One real import, to show the template works, not just starts.
    sid = c.json("POST", "/v1/sandboxes", {"template": "python"})["id"]
    r = c.json("POST", f"/v1/sandboxes/{sid}/exec", {"cmd": [
        "python3", "-c", "import numpy, pandas, matplotlib; print(numpy.__version__, "
        "pandas.__version__, matplotlib.__version__)"]})
    c.json("DELETE", f"/v1/sandboxes/{sid}", ok=(204,))
    d.stop()
    assert r["exit_code"] == 0, r
    st = {k: {"p50": statistics.median(v), "p99": pct(sorted(v), 0.99), "n": len(v)}
          for k, v in samples.items()}
    diff = st["python"]["p50"] - st["host"]["p50"]
    size = tpl["size_bytes"] / 2**30
    body = "\n".join([
        f"Command: `{a.command}` ({corral_rev(a.repo, corral)}, {time.strftime('%Y-%m-%d')}). "
        f"`python` built from resources/templates/python/Recipe ({len(tpl['layers'])} layers, "
        f"{size:.2f} GiB; numpy, pandas, matplotlib {r['stdout'].split()[2] if r['stdout'] else '?'}) "
        "on a debootstrapped `debian`.",
        "",
        "Rebuild of the unchanged recipe from a warm cache (`corral template build`, the whole "
        "CLI process, wall time):",
        "",
        "| build | n | p50 s | max s |",
        "|---|---|---|---|",
        f"| python, all steps cached | {len(times)} | {statistics.median(times):.3f} | {max(times):.3f} |",
        "",
        f"- cached rebuild max {max(times):.3f} s (target: <= 2 s) — "
        f"{'PASS' if max(times) <= 2.0 else 'FAIL'}",
        "",
        "Create -> exec `/usr/bin/true` -> result over loopback HTTP, one `corral serve`, "
        "pool_size 0, the two templates interleaved round by round:",
        "",
        "| template | n | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| host | {st['host']['n']} | {st['host']['p50']:.2f} | {st['host']['p99']:.2f} |",
        f"| python ({size:.2f} GiB) | {st['python']['n']} | {st['python']['p50']:.2f} | {st['python']['p99']:.2f} |",
        "",
        f"- p50 difference: {diff:+.2f} ms (target: within 1 ms) — "
        f"{'PASS' if abs(diff) <= 1.0 else 'FAIL'}",
    ])
    print(body)
    if a.markdown:
        replace_block(a.markdown, BEGIN, END, body, HEADER, SECTION)
    if a.json:
        os.makedirs(os.path.dirname(a.json), exist_ok=True)
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"samples": samples, "stats": st, "rebuilds": times}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
