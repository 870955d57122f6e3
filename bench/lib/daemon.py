#!/usr/bin/python3
"""Driver for bench/run-daemon.sh: `corral serve` over loopback HTTP.

One daemon (pool_size --pool, default 4), one run, these phases in order:
  warm     create -> exec `true` -> result, paced (before each create, wait until
           GET /metrics shows the pool full again) and unpaced; delete timed apart
  cold     the same with resources.disk "2G": not the pool's disk size, so the
           create builds a sandbox while the client waits
  exec     exec round trips in one running sandbox: `true`, `sh -c 'echo hi'`
  peers    interleaved rounds of: `corral run -- /bin/true`, bubblewrap, `runc run`
           (spawned, timed as in oneshot.py), the daemon's paced warm create+exec and
           its exec in a running sandbox
  concurrent  --clients threads looping create -> exec true -> delete for --concurrent-s
  density  --density idle sandboxes at once: host memory, daemon RSS, init PSS
  files    PUT then GET of a --file-mib file, daemon RSS sampled every 50 ms
then SIGTERM and a leak check (cgroups, corral-init processes, sockets).

Every HTTP call goes over one keep-alive connection per client thread
(http.client, TCP_NODELAY) and is timed with time.perf_counter_ns from before the
request is written to after the whole response is read.

Results: a markdown block between the daemon markers of BENCHMARKS.md (everything
else in the file is kept), the same block on stdout, raw samples as JSON. Misses
against the targets print FAIL but never change the exit status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shlex
import statistics
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon_api import (ApiError, Client, Daemon, cpu_ticks, host_cpu,  # noqa: E402
                        meminfo, pss_kib, reset_hwm, status_kib)
from mdblock import replace_block  # noqa: E402
from oneshot import (HEADER, Spawner, bwrap_argv, cmd_out, corral_rev,  # noqa: E402
                     machine_info, pct)

BEGIN = "<!-- daemon:begin -->"
END = "<!-- daemon:end -->"
SECTION = "## The daemon: `corral serve` over loopback HTTP"

MIB = 1024 * 1024
# Targets (issue 3, "Must reach"); reported, never fatal.
T_WARM_P50, T_WARM_P99 = 5.0, 20.0
T_EXEC_P50 = 2.0
T_DENSITY_MIB = 2.0
T_STREAM_RSS_MIB = 100.0

TRUE = {"cmd": ["true"]}
ECHO = {"cmd": ["sh", "-c", "echo hi"]}
COLD = {"resources": {"disk": "2G"}}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def st(samples_ns: list[int]) -> dict | None:
    if not samples_ns:
        return None
    ms = sorted(s / 1e6 for s in samples_ns)
    return {"n": len(ms), "p50": statistics.median(ms), "p90": pct(ms, 0.90),
            "p99": pct(ms, 0.99), "mean": statistics.fmean(ms), "min": ms[0], "max": ms[-1]}


def f2(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


class Bench:
    def __init__(self, a):
        self.a = a
        self.corral = os.path.join(a.repo, "target/release/corral")
        self.d = Daemon(self.corral, a.tmp, "serve", a.pool)
        self.results: dict = {}
        self.checks: list[str] = []
        self.notes: list[str] = []
        self.failures: dict[str, list[str]] = {}

    # ---- helpers

    def check(self, ok: bool | None, text: str) -> None:
        self.checks.append(("SKIP" if ok is None else "PASS" if ok else "FAIL") + " " + text)

    def fail(self, phase: str, msg: str) -> None:
        lst = self.failures.setdefault(phase, [])
        if len(lst) < 5:
            lst.append(" ".join(msg.split())[:300])

    def wait_pool(self, c: Client, timeout_s: float = 60) -> int:
        """Wait until the warm pool is full; ns waited."""
        t0 = time.perf_counter_ns()
        deadline = time.monotonic() + timeout_s
        while c.pool_depth() < self.a.pool:
            if time.monotonic() > deadline:
                raise ApiError(f"warm pool not refilled to {self.a.pool} in {timeout_s} s")
            time.sleep(0.002)
        return time.perf_counter_ns() - t0

    @staticmethod
    def create(c: Client, body: dict) -> str:
        return c.json("POST", "/v1/sandboxes", body, ok=(201,))["id"]

    @staticmethod
    def exec(c: Client, sid: str, body: dict, want_out: str | None = None) -> None:
        r = c.json("POST", f"/v1/sandboxes/{sid}/exec", body, ok=(200,))
        if r.get("exit_code") != 0:
            raise ApiError(f"exec {body['cmd']}: exit {r.get('exit_code')}: {r.get('stderr', '')[:200]}")
        if want_out is not None and r.get("stdout") != want_out:
            raise ApiError(f"exec {body['cmd']}: stdout {r.get('stdout')!r}, want {want_out!r}")

    @staticmethod
    def delete(c: Client, sid: str) -> None:
        c.json("DELETE", f"/v1/sandboxes/{sid}", ok=(204, 200))

    def create_exec(self, c: Client, body: dict) -> tuple[str, int]:
        t0 = time.perf_counter_ns()
        sid = self.create(c, body)
        self.exec(c, sid, TRUE)
        return sid, time.perf_counter_ns() - t0

    def timed_delete(self, c: Client, sid: str) -> int:
        t0 = time.perf_counter_ns()
        self.delete(c, sid)
        return time.perf_counter_ns() - t0

    # ---- setup

    def setup(self) -> None:
        self.d.start()
        admin = self.d.client()
        quota = {"max_sandboxes": 100_000, "max_memory_bytes": 1 << 50}
        admin.json("POST", "/v1/tenants", {"name": "bench", "quota": quota}, ok=(201, 200))
        self.key = admin.json("POST", "/v1/keys", {"tenant": "bench", "role": "agent",
                                                   "name": "bench"}, ok=(201, 200))["secret"]
        self.admin = admin
        log(f"daemon pid {self.d.pid} on {self.d.host}:{self.d.port}, cgroup parent "
            f"{self.d.parent}; waiting for the warm pool ({self.a.pool})")
        if self.a.pool:
            self.wait_pool(admin, 120)
        self.results["rss_start_kib"] = status_kib(self.d.pid, "VmRSS")

    def client(self) -> Client:
        return self.d.client(self.key)

    # ---- phases

    def phase_warm(self) -> None:
        a, c = self.a, self.client()
        r = self.results["warm"] = {"paced": [], "unpaced": [], "delete": [], "pace_wait": [],
                                    "unpaced_delete": []}
        if a.pool == 0:
            self.notes.append("pool_size 0: no warm phase")
            return
        log(f"warm create -> exec true: {a.warmup} + {a.iters} paced, then {a.iters} unpaced")
        for i in range(a.warmup + a.iters):
            try:
                w = self.wait_pool(self.admin)
                sid, ns = self.create_exec(c, {})
                dns = self.timed_delete(c, sid)
            except ApiError as e:
                self.fail("warm", str(e))
                continue
            if i >= a.warmup:
                r["paced"].append(ns)
                r["delete"].append(dns)
                r["pace_wait"].append(w)
        self.wait_pool(self.admin)
        for _ in range(a.iters):
            try:
                sid, ns = self.create_exec(c, {})
                r["unpaced"].append(ns)
                r["unpaced_delete"].append(self.timed_delete(c, sid))
            except ApiError as e:
                self.fail("warm unpaced", str(e))
        c.close()

    def phase_cold(self) -> None:
        a, c = self.a, self.client()
        r = self.results["cold"] = {"create_exec": [], "delete": []}
        log(f"cold create (disk 2G, bypasses the pool) -> exec true: {a.iters}")
        if a.pool:
            self.wait_pool(self.admin)
        for i in range(a.warmup + a.iters):
            try:
                sid, ns = self.create_exec(c, COLD)
                dns = self.timed_delete(c, sid)
            except ApiError as e:
                self.fail("cold", str(e))
                continue
            if i >= a.warmup:
                r["create_exec"].append(ns)
                r["delete"].append(dns)
        c.close()

    def phase_exec(self) -> None:
        a, c = self.a, self.client()
        r = self.results["exec"] = {"true": [], "echo": []}
        log(f"exec round trips in one running sandbox: {a.exec_iters} x true, "
            f"{a.exec_iters} x sh -c 'echo hi'")
        if a.pool:
            self.wait_pool(self.admin)
        sid = self.create(c, {})
        try:
            for key, body, out in (("true", TRUE, None), ("echo", ECHO, "hi\n")):
                for i in range(a.warmup + a.exec_iters):
                    t0 = time.perf_counter_ns()
                    try:
                        self.exec(c, sid, body, out)
                    except ApiError as e:
                        self.fail(f"exec {key}", str(e))
                        continue
                    if i >= a.warmup:
                        r[key].append(time.perf_counter_ns() - t0)
        finally:
            self.delete(c, sid)
            c.close()

    def phase_peers(self) -> None:
        """Interleaved rounds: one-shot peers spawned, the daemon's warm create+exec
        (paced; delete after the timed span) and an exec in a running sandbox."""
        a = self.a
        spawner = Spawner(a.tmp)
        runc_root = os.path.join(a.tmp, "runc-state")
        os.makedirs(runc_root, exist_ok=True)
        bwrap, runc = "/usr/bin/bwrap", "/usr/sbin/runc"
        seq = [0]

        def runc_argv() -> list[str]:
            seq[0] += 1
            return [runc, "--root", runc_root, "run", "--bundle", a.runc_bundle,
                    f"bench-{os.getpid()}-{seq[0]}"]

        c = self.client()
        if a.pool:
            self.wait_pool(self.admin)
        running = self.create(c, {})
        rows = {"run": ("corral run -- /bin/true", lambda: [self.corral, "run", "--", "/bin/true"]),
                "bwrap": ("bubblewrap", lambda: bwrap_argv(bwrap)),
                "runc": ("runc run", runc_argv)}
        samples: dict[str, list[int]] = {k: [] for k in
                                         ("serve_warm", "serve_exec", "run", "bwrap", "runc")}
        unavailable: dict[str, str] = {}
        for k, (label, argv) in rows.items():
            exe = argv()[0]
            if not os.access(exe, os.X_OK):
                unavailable[k] = f"{exe} not found"
                continue
            _, rc, err = spawner.run(argv())
            if rc != 0:
                unavailable[k] = f"exit {rc}: {' '.join(err.split())[:200]}"
        if a.pool == 0:
            unavailable["serve_warm"] = "pool_size 0"

        def serve_warm() -> int:
            self.wait_pool(self.admin)
            sid, ns = self.create_exec(c, {})
            self.delete(c, sid)
            return ns

        def serve_exec() -> int:
            t0 = time.perf_counter_ns()
            self.exec(c, running, TRUE)
            return time.perf_counter_ns() - t0

        def spawned(k: str):
            def f() -> int:
                ns, rc, err = spawner.run(rows[k][1]())
                if rc != 0:
                    raise ApiError(f"exit {rc}: {err[:200]}")
                return ns
            return f

        funcs = {"serve_warm": serve_warm, "serve_exec": serve_exec,
                 "run": spawned("run"), "bwrap": spawned("bwrap"), "runc": spawned("runc")}
        active = [k for k in funcs if k not in unavailable]
        log(f"peers: {a.warmup} + {a.iters} interleaved rounds over {', '.join(active)}")
        gc.disable()
        try:
            for r in range(a.warmup + a.iters):
                k0 = r % len(active)
                for k in active[k0:] + active[:k0]:
                    try:
                        ns = funcs[k]()
                    except ApiError as e:
                        self.fail(f"peers {k}", str(e))
                        continue
                    if r >= a.warmup:
                        samples[k].append(ns)
        finally:
            gc.enable()
            self.delete(c, running)
            c.close()
        leftovers = (cmd_out([runc, "--root", runc_root, "list", "-q"]) or "").split() \
            if os.access(runc, os.X_OK) else []
        for cid in leftovers:
            cmd_out([runc, "--root", runc_root, "delete", "-f", cid])
        self.results["peers"] = {"samples": samples, "unavailable": unavailable,
                                 "runc_leftovers": len(leftovers)}

    def phase_concurrent(self) -> None:
        a = self.a
        log(f"{a.clients} concurrent clients, create -> exec true -> delete for "
            f"{a.concurrent_s} s")
        lat = {"create": [], "exec": [], "delete": []}
        errors: list[str] = []
        counts = {"ok": 0, "failed": 0, "loops": 0}
        lock = threading.Lock()
        start = threading.Barrier(a.clients + 1)
        stop_at = [0.0]

        def worker() -> None:
            c = self.client()
            mine = {"create": [], "exec": [], "delete": []}
            ok = failed = loops = 0
            errs = []
            start.wait()
            while time.monotonic() < stop_at[0]:
                sid = None
                for op in ("create", "exec", "delete"):
                    t0 = time.perf_counter_ns()
                    try:
                        if op == "create":
                            sid = self.create(c, {})
                        elif op == "exec":
                            self.exec(c, sid, TRUE)
                        else:
                            self.delete(c, sid)
                            sid = None
                    except ApiError as e:
                        failed += 1
                        if len(errs) < 3:
                            errs.append(f"{op}: {e}")
                        if sid is None:
                            break  # create failed: nothing to exec or delete
                        continue
                    mine[op].append(time.perf_counter_ns() - t0)
                    ok += 1
                if sid is not None:  # delete failed once: try again, count it
                    try:
                        self.delete(c, sid)
                    except ApiError as e:
                        failed += 1
                        errs.append(f"retry delete: {e}")
                loops += 1
            c.close()
            with lock:
                for k in lat:
                    lat[k] += mine[k]
                counts["ok"] += ok
                counts["failed"] += failed
                counts["loops"] += loops
                errors.extend(errs)

        if a.pool:
            self.wait_pool(self.admin)
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.clients)]
        for t in threads:
            t.start()
        rss_peak = [0]
        sampling = [True]

        def sampler() -> None:
            while sampling[0]:
                rss_peak[0] = max(rss_peak[0], status_kib(self.d.pid, "VmRSS"))
                time.sleep(0.2)

        stop_at[0] = time.monotonic() + a.concurrent_s
        sm = threading.Thread(target=sampler, daemon=True)
        sm.start()
        cpu0, dcpu0, me0 = host_cpu(), cpu_ticks(self.d.pid), os.times()
        t0 = time.perf_counter_ns()
        start.wait()
        for t in threads:
            t.join()
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        cpu1, dcpu1, me1 = host_cpu(), cpu_ticks(self.d.pid), os.times()
        hz = os.sysconf("SC_CLK_TCK")
        cpu = {"host_busy": (cpu1[0] - cpu0[0]) / max(cpu1[1] - cpu0[1], 1),
               "daemon_s": (dcpu1[0] - dcpu0[0]) / hz,
               "spawners_s": (dcpu1[1] - dcpu0[1]) / hz,
               "driver_s": (me1.user + me1.system) - (me0.user + me0.system)}
        sampling[0] = False
        sm.join()
        # Leaks while the daemon still runs (SIGTERM would clean them up and hide them):
        # nothing of the tenant alive, and only the warm pool's sandboxes on the host.
        time.sleep(0.5)
        listed = self.admin_list_live()
        leak = self.host_count_beyond_pool()
        self.results["concurrent"] = {"lat": lat, "elapsed_s": elapsed, **counts,
                                      "errors": errors[:10], "listed_alive": listed,
                                      "host_beyond_pool": leak, "rss_peak_kib": rss_peak[0],
                                      "cpu": cpu}

    def admin_list_live(self) -> int:
        """Sandboxes of tenant bench not stopped, as the API lists them."""
        c, n, cursor = self.client(), 0, None
        while True:
            path = "/v1/sandboxes?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = c.json("GET", path, ok=(200,))
            n += sum(1 for s in page["sandboxes"] if s["state"] != "stopped")
            cursor = page.get("next_cursor")
            if not cursor:
                break
        c.close()
        return n

    def host_count_beyond_pool(self) -> dict:
        if self.a.pool:
            self.wait_pool(self.admin)
        return {"cgroups": len(self.d.sandbox_cgroup_names()) - self.a.pool,
                "inits": len(self.d.inits()) - self.a.pool,
                "sockets": len(self.d.sockets()) - self.a.pool}

    def phase_density(self) -> None:
        a = self.a
        n = a.density
        log(f"density: {n} idle sandboxes at once")
        if a.pool:
            self.wait_pool(self.admin)
        time.sleep(2)
        before = meminfo()
        rss0 = status_kib(self.d.pid, "VmRSS")
        ids: list[str] = []
        create_ns: list[int] = []
        lock = threading.Lock()
        todo = list(range(n))
        errs: list[str] = []

        def creator() -> None:
            c = self.client()
            while True:
                with lock:
                    if not todo:
                        break
                    todo.pop()
                t0 = time.perf_counter_ns()
                try:
                    sid = self.create(c, {})
                except ApiError as e:
                    with lock:
                        errs.append(str(e))
                    continue
                ns = time.perf_counter_ns() - t0
                with lock:
                    ids.append(sid)
                    create_ns.append(ns)
            c.close()

        threads = [threading.Thread(target=creator) for _ in range(a.density_threads)]
        t0 = time.perf_counter_ns()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall_create = (time.perf_counter_ns() - t0) / 1e9
        # Same pool depth as before, so the pool's own sandboxes cancel out.
        if a.pool:
            self.wait_pool(self.admin, 300)
        time.sleep(2)
        after = meminfo()
        rss1 = status_kib(self.d.pid, "VmRSS")
        mine = set(ids)
        procs = {p: cg for p, cg in self.d.inits().items() if cg in mine}
        inits = [p for p in procs if self.d.argv0(p) == "corral-init"]
        pss = {k: 0 for k in ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")}
        for p in procs:
            for k, v in pss_kib(p).items():
                pss[k] += v
        rss_inits = sum(status_kib(p, "VmRSS") for p in procs)
        # Delete them all, timed.
        del_ns: list[int] = []
        todo_del = list(ids)

        def deleter() -> None:
            c = self.client()
            while True:
                with lock:
                    if not todo_del:
                        break
                    sid = todo_del.pop()
                try:
                    del_ns.append(self.timed_delete(c, sid))
                except ApiError as e:
                    with lock:
                        errs.append(str(e))
            c.close()

        threads = [threading.Thread(target=deleter) for _ in range(a.density_threads)]
        t0 = time.perf_counter_ns()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall_delete = (time.perf_counter_ns() - t0) / 1e9
        keys = ("MemAvailable", "MemFree", "AnonPages", "Shmem", "Slab", "SReclaimable",
                "SUnreclaim", "KernelStack", "PageTables", "Percpu")
        delta = {k: before.get(k, 0) - after.get(k, 0) if k in ("MemAvailable", "MemFree")
                 else after.get(k, 0) - before.get(k, 0) for k in keys}
        self.results["density"] = {
            "n": n, "created": len(ids), "errors": errs[:10], "n_errors": len(errs),
            "wall_create_s": wall_create, "wall_delete_s": wall_delete,
            "create_ns": create_ns, "delete_ns": del_ns, "threads": a.density_threads,
            "meminfo_delta_kib": delta, "rss_before_kib": rss0, "rss_after_kib": rss1,
            "inits_found": len(inits), "procs_found": len(procs), "inits_pss_kib": pss, "inits_rss_kib": rss_inits,
        }

    def phase_files(self) -> None:
        a = self.a
        size = a.file_mib * MIB
        log(f"files: PUT and GET of {a.file_mib} MiB")
        c = self.client()
        sid = self.create(c, {"resources": {"disk": "2G", "memory": "3G"}})
        pid = self.d.pid
        out: dict = {"bytes": size}
        chunk = memoryview(os.urandom(MIB))

        def body():
            left = size
            while left > 0:
                n = min(left, MIB)
                yield chunk[:n]
                left -= n

        def sampled(fn) -> tuple[float, int, int, int]:
            peak = [0]
            running = [True]

            def sampler() -> None:
                while running[0]:
                    peak[0] = max(peak[0], status_kib(pid, "VmRSS"))
                    time.sleep(0.05)

            base = status_kib(pid, "VmRSS")
            hwm_ok = reset_hwm(pid)
            th = threading.Thread(target=sampler, daemon=True)
            th.start()
            t0 = time.perf_counter_ns()
            try:
                fn()
            finally:
                secs = (time.perf_counter_ns() - t0) / 1e9
                running[0] = False
                th.join()
            hwm = status_kib(pid, "VmHWM") if hwm_ok else 0
            return secs, base, peak[0], hwm

        def up() -> None:
            st_, data = c.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/big", body=body(),
                                  headers={"Content-Length": str(size),
                                           "Content-Type": "application/octet-stream"})
            if st_ not in (200, 201, 204):
                raise ApiError(f"PUT: HTTP {st_}: {data[:300]!r}")

        got = [0]

        def down() -> None:
            buf = bytearray(MIB)

            def sink(resp) -> None:
                while True:
                    k = resp.readinto(buf)
                    if not k:
                        break
                    got[0] += k

            st_, data = c.request("GET", f"/v1/sandboxes/{sid}/files?path=/tmp/big", sink=sink)
            if st_ != 200:
                raise ApiError(f"GET: HTTP {st_}: {data[:300]!r}")

        try:
            for name, fn in (("up", up), ("down", down)):
                try:
                    secs, base, peak, hwm = sampled(fn)
                    out[name] = {"s": secs, "mib_s": a.file_mib / secs, "rss_base_kib": base,
                                 "rss_peak_kib": peak, "hwm_kib": hwm}
                except ApiError as e:
                    self.fail(f"files {name}", str(e))
            out["down_bytes"] = got[0]
        finally:
            try:
                self.delete(c, sid)
            except ApiError as e:
                self.fail("files", str(e))
            c.close()
        self.results["files"] = out

    def shutdown(self) -> None:
        log("stopping the daemon (SIGTERM) and checking for leftovers")
        rss_end = status_kib(self.d.pid, "VmRSS")
        rc, secs = self.d.stop()
        time.sleep(0.5)
        self.results["shutdown"] = {
            "rc": rc, "s": secs, "rss_end_kib": rss_end,
            "cgroups": self.d.cgroup_dirs(), "inits": sorted(self.d.inits()),
            "sockets": self.d.sockets(),
        }
        self.d.remove_cgroup_parent()

    # ---- report

    def report(self) -> str:
        a, R = self.a, self.results
        m = machine_info()
        L: list[str] = []
        stale = self.a.stale
        versions = cmd_out(["/usr/bin/bwrap", "--version"]) or "bwrap not installed"
        versions += "; " + (cmd_out(["/usr/sbin/runc", "--version"]) or "runc not installed").splitlines()[0]
        versions += "; " + corral_rev(a.repo, self.corral)
        if stale:
            versions += f" (note: {stale} source files under crates/ are newer than the binary)"
        L.append(f"Command: `{a.command}` (as root; the script installs bubblewrap, runc and time "
                 "and builds corral if needed)  ")
        L.append(f"Date: {self.started:%Y-%m-%d %H:%M} UTC; the whole run took "
                 f"{(time.monotonic() - self.t_start) / 60:.1f} min  ")
        L.append(f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_gib']:.1f} GiB RAM, "
                 f"kernel {m['kernel']}, cgroups {m['cgroups']}; load average at start "
                 f"{self.load0[0]:.2f}, at end {m['loadavg'][0]:.2f}  ")
        L.append(f"Versions: {versions}")
        L.append("")
        L.append(f"Setup: one `corral serve --listen 127.0.0.1:0` with `pool_size = {a.pool}`, its "
                 "own `cgroup_parent` and `runtime_dir`, default `[defaults]` (512M, 1 CPU, "
                 "256 pids, 1G disk); a tenant `bench` with a quota large enough for every phase "
                 "and an agent key. The driver (`bench/lib/daemon.py`) uses Python's "
                 "`http.client`, one keep-alive connection per client thread, TCP_NODELAY; each "
                 "figure is `time.perf_counter_ns` from before the request is written to after "
                 "the whole response is read. Percentiles are nearest-rank.")
        L.append("")

        # latency table
        w = R.get("warm", {})
        co = R.get("cold", {})
        ex = R.get("exec", {})
        L.append("| operation (over HTTP) | n | p50 ms | p90 ms | p99 ms | mean ms | max ms |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")

        def row(label: str, samples) -> None:
            s = st(samples or [])
            if s is None:
                L.append(f"| {label} | 0 | — | — | — | — | — |")
            else:
                L.append(f"| {label} | {s['n']} | {f2(s['p50'])} | {f2(s['p90'])} | "
                         f"{f2(s['p99'])} | {f2(s['mean'])} | {f2(s['max'])} |")

        row("warm create → exec `true` → result, paced (pool full before each create)",
            w.get("paced"))
        row("delete of that sandbox", w.get("delete"))
        row("warm create → exec `true`, unpaced (back to back)", w.get("unpaced"))
        row("delete, unpaced", w.get("unpaced_delete"))
        row("cold create (disk 2G: bypasses the pool) → exec `true`", co.get("create_exec"))
        row("delete of a cold sandbox", co.get("delete"))
        row("exec `true` in a running sandbox", ex.get("true"))
        row("exec `sh -c 'echo hi'` in a running sandbox", ex.get("echo"))
        L.append("")
        pw = st(w.get("pace_wait") or [])
        if pw:
            L.append(f"Pacing: before each paced create the driver polls `GET /metrics` every 2 ms "
                     f"until `corral_pool_depth{{template=\"host\"}}` is {a.pool} again (wait "
                     f"after the previous delete: median {f2(pw['p50'])} ms, p99 {f2(pw['p99'])} ms; "
                     "that is the time the pool takes to build a replacement). Unpaced: creates back "
                     "to back, so after the first few the pool is empty and a create waits for a "
                     "build. The cold row asks for a 2G writable layer; the pool's sandboxes have "
                     "1G (the size is fixed at mount time), so the daemon builds one while the "
                     "client waits. Timings exclude the delete unless the row says delete.")
            L.append("")

        # peers
        p = R.get("peers")
        if p:
            s = {k: st(v) for k, v in p["samples"].items()}
            base_b = s["bwrap"]["p50"] if s.get("bwrap") else None
            base_r = s["runc"]["p50"] if s.get("runc") else None
            labels = [("serve_warm", "corral serve: warm create → exec `true` (HTTP, paced)"),
                      ("serve_exec", "corral serve: exec `true` in a running sandbox (HTTP)"),
                      ("run", "`corral run -- /bin/true` (one-shot, spawned)"),
                      ("bwrap", "bubblewrap `/bin/true` (spawned)"),
                      ("runc", "`runc run` `/bin/true` (spawned)")]
            L.append(f"A fresh sandbox per command, against peers: {a.iters} interleaved rounds "
                     f"after {a.warmup} warm-up rounds, each running every row once in an order "
                     "rotated per round. Spawned rows are timed as in `bench/lib/oneshot.py` "
                     "(`posix_spawn` to `waitpid`); the daemon rows as above (the warm row's "
                     "delete and pool wait are outside the timed span). Ratios are of medians.")
            L.append("")
            L.append("| row | p50 ms | p90 ms | p99 ms | vs bwrap | vs runc |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for k, label in labels:
                x = s.get(k)
                if x is None:
                    why = p["unavailable"].get(k, "no successful runs").replace("|", "/")
                    L.append(f"| {label} | unavailable ({why}) | — | — | — | — |")
                    continue
                rb = f"{x['p50'] / base_b:.2f}" if base_b else "—"
                rr = f"{x['p50'] / base_r:.2f}" if base_r else "—"
                L.append(f"| {label} | {f2(x['p50'])} | {f2(x['p90'])} | {f2(x['p99'])} | "
                         f"{rb} | {rr} |")
            L.append("")
            L.append("Peers: `" + shlex.join(["bwrap"] + bwrap_argv("/usr/bin/bwrap")[1:]) + "`; "
                     "`runc --root STATE run --bundle BUNDLE bench-PID-SEQ` with the bundle from "
                     "`bench/lib/runc_bundle.py`."
                     + (f" runc left {p['runc_leftovers']} containers (deleted)." if p["runc_leftovers"] else ""))
            L.append("")

        # concurrency
        cc = R.get("concurrent")
        if cc:
            total = cc["ok"] + cc["failed"]
            L.append(f"{a.clients} concurrent clients (threads, one connection each), each "
                     f"looping create → exec `true` → delete for {a.concurrent_s} s "
                     f"({cc['elapsed_s']:.1f} s measured, the last loops finishing after the "
                     f"deadline): {cc['loops']} loops, {total} requests, "
                     f"**{cc['ok'] / cc['elapsed_s']:.1f} requests/s** "
                     f"({cc['loops'] / cc['elapsed_s']:.1f} create-exec-delete loops/s), "
                     f"**{cc['failed']} failed**; daemon peak RSS "
                     f"{cc['rss_peak_kib'] / 1024:.1f} MiB (sampled every 200 ms).")
            L.append("")
            cp = cc["cpu"]
            L.append(f"CPU over the phase: host {cp['host_busy'] * 100:.0f}% busy "
                     f"({os.cpu_count()} CPUs); daemon {cp['daemon_s']:.1f} s, its reaped "
                     f"children (`corral __spawn` helpers and the sandboxes' inits) {cp['spawners_s']:.1f} s, this driver "
                     f"{cp['driver_s']:.1f} s of CPU in {cc['elapsed_s']:.1f} s; per loop: daemon "
                     f"{cp['daemon_s'] / max(cc['loops'], 1) * 1e3:.2f} ms, helpers "
                     f"{cp['spawners_s'] / max(cc['loops'], 1) * 1e3:.2f} ms, driver "
                     f"{cp['driver_s'] / max(cc['loops'], 1) * 1e3:.2f} ms.")
            L.append("")
            L.append("| op under load | n | p50 ms | p90 ms | p99 ms | max ms |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for op in ("create", "exec", "delete"):
                x = st(cc["lat"][op])
                if x:
                    L.append(f"| {op} | {x['n']} | {f2(x['p50'])} | {f2(x['p90'])} | "
                             f"{f2(x['p99'])} | {f2(x['max'])} |")
            L.append("")
            hb = cc["host_beyond_pool"]
            L.append(f"Right after the clients stopped (daemon still running, pool refilled): "
                     f"{cc['listed_alive']} sandboxes of the tenant not stopped in "
                     f"`GET /v1/sandboxes`; on the host beyond the pool's {a.pool}: "
                     f"{hb['cgroups']} cgroups, {hb['inits']} processes in them, "
                     f"{hb['sockets']} sockets." + (f" First errors: {'; '.join(cc['errors'][:3])}"
                                                     if cc["errors"] else ""))
            L.append("")

        # density
        dn = R.get("density")
        if dn:
            n = max(dn["created"], 1)
            d = dn["meminfo_delta_kib"]
            host = d["MemAvailable"] / n / 1024
            pk = dn["inits_pss_kib"]
            pss = pk["Pss"] / n / 1024
            own = (pk["Pss_Anon"] + pk["Pss_Shmem"]) / n / 1024
            rss_g = (dn["rss_after_kib"] - dn["rss_before_kib"]) / n / 1024
            beyond = host - own
            cs = st(dn["create_ns"])
            ds = st(dn["delete_ns"])
            L.append(f"Density: {dn['created']} of {dn['n']} idle sandboxes at once (default "
                     f"resources), created by {dn['threads']} client threads in "
                     f"{dn['wall_create_s']:.1f} s ({dn['created'] / dn['wall_create_s']:.1f}/s; "
                     f"per create p50 {f2(cs and cs['p50'])} ms, p99 {f2(cs and cs['p99'])} ms), "
                     f"deleted in {dn['wall_delete_s']:.1f} s (per delete p50 "
                     f"{f2(ds and ds['p50'])} ms). Memory measured 2 s after the pool was full "
                     "again, against 2 s after it was full before the creates, so the pool "
                     "cancels out. Per sandbox:")
            L.append("")
            L.append("| per idle sandbox | MiB |")
            L.append("|---|---:|")
            L.append(f"| host: drop in MemAvailable / N | {host:.2f} |")
            L.append(f"| its own processes, PSS (smaps_rollup of the processes in its cgroup: "
                     f"{dn['procs_found']} in {n} sandboxes, {dn['inits_found']} of them corral-init; "
                     f"RSS {dn['inits_rss_kib'] / n / 1024:.2f}) | {pss:.2f} |")
            L.append(f"| of which anonymous + shmem (Pss_Anon + Pss_Shmem: what lowers MemAvailable; "
                     f"Pss_File {pk['Pss_File'] / n / 1024:.2f}: file pages, "
                     f"which MemAvailable counts as available) | {own:.2f} |")
            L.append(f"| **host beyond its own processes**: MemAvailable drop / N − (Pss_Anon + "
                     f"Pss_Shmem) / N | **{beyond:.2f}** |")
            L.append(f"| of which the daemon's RSS growth / N ({dn['rss_before_kib'] / 1024:.1f} → "
                     f"{dn['rss_after_kib'] / 1024:.1f} MiB) | {rss_g:.2f} |")
            parts = ", ".join(f"{k} {d[k] / n:+.0f}" for k in
                              ("Slab", "SUnreclaim", "KernelStack", "PageTables", "Percpu",
                               "Shmem", "AnonPages"))
            L.append("")
            L.append(f"Kernel side, /proc/meminfo growth per sandbox in KiB: {parts}."
                     + (f" Errors: {dn['n_errors']} (first: {dn['errors'][0]})" if dn["n_errors"] else ""))
            L.append("")

        fl = R.get("files")
        if fl:
            L.append(f"Files: one sandbox with resources disk 2G, memory 3G; "
                     f"`PUT /v1/sandboxes/ID/files?path=/tmp/big` of {a.file_mib} MiB generated on "
                     "the fly (Content-Length, one reused random 1 MiB chunk), then `GET` of it read "
                     "into a 1 MiB buffer and discarded. Daemon RSS from /proc/PID/status: VmRSS "
                     "sampled every 50 ms and VmHWM (the kernel's exact high-water mark, reset "
                     "through /proc/PID/clear_refs before each transfer).")
            L.append("")
            L.append("| direction | MiB/s | seconds | RSS before MiB | peak VmRSS (50 ms samples) MiB | VmHWM MiB |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for name, label in (("up", "upload (PUT)"), ("down", "download (GET)")):
                x = fl.get(name)
                if x:
                    L.append(f"| {label} | {x['mib_s']:.0f} | {x['s']:.2f} | "
                             f"{x['rss_base_kib'] / 1024:.1f} | {x['rss_peak_kib'] / 1024:.1f} | "
                             f"{x['hwm_kib'] / 1024:.1f} |")
                else:
                    L.append(f"| {label} | failed | — | — | — | — |")
            if fl.get("down") and fl.get("down_bytes") != fl["bytes"]:
                L.append("")
                L.append(f"Download returned {fl['down_bytes']} bytes, expected {fl['bytes']}.")
            L.append("")

        sd = R.get("shutdown", {})
        if sd:
            L.append(f"Daemon RSS: {R.get('rss_start_kib', 0) / 1024:.1f} MiB with the pool "
                     f"full at start, {sd['rss_end_kib'] / 1024:.1f} MiB at the end. SIGTERM: "
                     f"exit {sd['rc']} after {sd['s']:.1f} s; left behind: {len(sd['cgroups'])} "
                     f"cgroup dirs under `{self.d.parent}`, {len(sd['inits'])} processes "
                     f"(corral-init or other) in it, {len(sd['sockets'])} sockets in DIR/sockets.")
            L.append("")
        if self.failures:
            L.append("Failed requests outside the concurrency phase: " + "; ".join(
                f"{k}: {len(v)}+ (first: {v[0]})" for k, v in self.failures.items()))
            L.append("")
        if self.notes:
            L += self.notes + [""]

        self.targets()
        L.append("Targets:")
        L.append("")
        L += [f"- {c}" for c in self.checks]
        return "\n".join(L)

    def targets(self) -> None:
        R = self.results
        w = st(R.get("warm", {}).get("paced") or [])
        if w:
            self.check(w["p50"] <= T_WARM_P50, f"warm create → exec true p50 {w['p50']:.2f} ms ≤ {T_WARM_P50:g} ms (paced)")
            self.check(w["p99"] <= T_WARM_P99, f"warm create → exec true p99 {w['p99']:.2f} ms ≤ {T_WARM_P99:g} ms (paced)")
        else:
            self.check(None, "warm create → exec true: not measured")
        e = st(R.get("exec", {}).get("true") or [])
        if e:
            self.check(e["p50"] <= T_EXEC_P50, f"exec true round trip p50 {e['p50']:.2f} ms ≤ {T_EXEC_P50:g} ms")
        else:
            self.check(None, "exec round trip: not measured")
        cc = R.get("concurrent")
        if cc:
            self.check(cc["failed"] == 0, f"{self.a.clients} concurrent clients for "
                       f"{self.a.concurrent_s} s: {cc['failed']} failed requests (must be 0)")
            hb = cc["host_beyond_pool"]
            leak = max(cc["listed_alive"], hb["cgroups"], hb["inits"], hb["sockets"])
            self.check(leak <= 0, f"after the concurrent clients, leaked sandboxes {max(leak, 0)} "
                       f"(API {cc['listed_alive']}, cgroups {hb['cgroups']}, inits {hb['inits']}, "
                       f"sockets {hb['sockets']} beyond the pool; must be 0)")
        else:
            self.check(None, "concurrent clients: not run")
        dn = R.get("density")
        if dn and dn["created"]:
            n = dn["created"]
            pk = dn["inits_pss_kib"]
            beyond = (dn["meminfo_delta_kib"]["MemAvailable"] - pk["Pss_Anon"] - pk["Pss_Shmem"]) / n / 1024
            ok = beyond <= T_DENSITY_MIB and dn["created"] == dn["n"]
            self.check(ok, f"{n}/{dn['n']} idle sandboxes, host memory beyond their own processes "
                       f"{beyond:.2f} MiB each ≤ {T_DENSITY_MIB:g} MiB")
        else:
            self.check(None, "density: not measured")
        fl = R.get("files")
        if fl and fl.get("up") and fl.get("down"):
            peak = max(max(fl[k]["rss_peak_kib"], fl[k]["hwm_kib"]) for k in ("up", "down")) / 1024
            self.check(peak <= T_STREAM_RSS_MIB and fl["down_bytes"] == fl["bytes"],
                       f"daemon peak RSS while streaming {self.a.file_mib} MiB up and down "
                       f"{peak:.1f} MiB ≤ {T_STREAM_RSS_MIB:g} MiB")
        else:
            self.check(None, "file streaming: not measured")
        sd = R.get("shutdown")
        if sd:
            left = len(sd["cgroups"]) + len(sd["inits"]) + len(sd["sockets"])
            self.check(left == 0 and sd["rc"] == 0,
                       f"after SIGTERM (exit {sd['rc']}): {len(sd['cgroups'])} cgroup dirs, "
                       f"{len(sd['inits'])} processes (corral-init or other), {len(sd['sockets'])} sockets "
                       "left (must be 0, exit 0)")

    def run(self) -> int:
        self.started = dt.datetime.now(dt.timezone.utc)
        self.t_start = time.monotonic()
        self.load0 = os.getloadavg()
        phases = [("warm", self.phase_warm), ("cold", self.phase_cold),
                  ("exec", self.phase_exec), ("peers", self.phase_peers),
                  ("concurrent", self.phase_concurrent), ("density", self.phase_density),
                  ("files", self.phase_files)]
        only = set(self.a.phases.split(",")) if self.a.phases else None
        try:
            self.setup()
            for name, fn in phases:
                if only and name not in only:
                    continue
                t0 = time.monotonic()
                try:
                    fn()
                except ApiError as e:
                    self.fail(name, f"phase aborted: {e}")
                    log(f"{name}: aborted: {e}")
                log(f"{name}: {time.monotonic() - t0:.1f} s")
        except ApiError as e:
            self.fail("setup", str(e))
            log(f"setup failed: {e}")
        finally:
            self.shutdown()
        body = self.report()
        print(body)
        print()
        for c in self.checks:
            print(c)
        if self.a.json:
            os.makedirs(os.path.dirname(os.path.abspath(self.a.json)), exist_ok=True)
            with open(self.a.json, "w", encoding="utf-8") as f:
                json.dump({"command": self.a.command, "date": self.started.isoformat(),
                           "results": self.results, "checks": self.checks,
                           "failures": self.failures}, f)
                f.write("\n")
            log(f"raw samples: {self.a.json}")
        if self.a.markdown:
            try:
                replace_block(self.a.markdown, BEGIN, END, body, HEADER, SECTION)
            except ValueError as e:
                log(f"not updating {self.a.markdown}: {e}")
                return 1
            log(f"updated {self.a.markdown}")
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--runc-bundle", required=True)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--exec-iters", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--concurrent-s", type=int, default=60)
    ap.add_argument("--density", type=int, default=500)
    ap.add_argument("--density-threads", type=int, default=8)
    ap.add_argument("--file-mib", type=int, default=1024)
    ap.add_argument("--phases", default="", help="comma-separated subset (debugging)")
    ap.add_argument("--stale", type=int, default=0, help="source files newer than the binary")
    ap.add_argument("--command", required=True)
    ap.add_argument("--markdown", help="BENCHMARKS.md path (omit: do not write)")
    ap.add_argument("--json")
    a = ap.parse_args()
    return Bench(a).run()


if __name__ == "__main__":
    sys.exit(main())
