#!/usr/bin/python3
"""Driver for bench/run-oneshot.sh: one-shot start cost of `corral run -- /bin/true`
against bubblewrap and runc, measured interleaved in the same run.

Each round runs every available tool once; the order rotates each round so that no
tool always follows the same neighbour. Every run is timed on its own with
time.perf_counter_ns() around os.posix_spawn() + os.waitpid() (spawn to reap;
stdio on /dev/null, stderr kept in a scratch file). The first --warmup rounds are discarded. A "no sandbox"
row runs /bin/true directly in the same rounds and shows the driver's own floor.

Peak RSS is ru_maxrss of single runs, read through /usr/bin/time -f %M (see
run_rss for why not from this process): the largest of the process itself and the
descendants it waited for, not their sum.

Results: a markdown block between the oneshot markers of BENCHMARKS.md (everything
else in that file is kept), the same block on stdout, and raw samples as JSON.
Misses against the targets print FAIL but never change the exit status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdblock import replace_block  # noqa: E402

BEGIN = "<!-- oneshot:begin -->"
END = "<!-- oneshot:end -->"
HEADER = """# corral benchmarks

Figures here are written by the scripts under `bench/` (see `bench/README.md`). Each
block names the command that produced it and the machine it ran on; peers are always
measured in the same run as corral, never copied from elsewhere.
"""
SECTION = "## One-shot start: `corral run -- /bin/true`"

RUN_TIMEOUT_S = 60
RSS_RUNS = 5
# Targets (benchmarks report them; they never fail the script).
TARGET_VS_BWRAP = 1.2
TARGET_VS_RUNC = 0.3
TARGET_RSS_KIB = 10 * 1024


def bwrap_argv(bwrap: str) -> list[str]:
    argv = [bwrap, "--unshare-all", "--ro-bind", "/usr", "/usr"]
    # Merged /usr (Debian 12): recreate the top-level links that exist on the host.
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.exists(f"/usr/{name}"):
            argv += ["--symlink", f"usr/{name}", f"/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--die-with-parent",
             "--", "/bin/true"]
    return argv


class Tool:
    def __init__(self, key: str, label: str, argv, exe: str | None):
        self.key = key
        self.label = label
        self._argv = argv  # callable(seq) -> list[str]
        self.exe = exe
        self.available = exe is not None and os.access(exe, os.X_OK)
        self.reason = None if self.available else f"{exe or key}: not found"
        self.samples_ns: list[int] = []
        self.failures = 0
        self.first_failure: str | None = None
        self.rss_kib: list[int] = []

    def argv(self, seq: int) -> list[str]:
        return self._argv(seq)


class Spawner:
    """Times single runs with as little driver work as possible in the timed span:
    os.posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK) + exec) and os.waitpid, with
    stdin/stdout on /dev/null and stderr in a scratch file read only after a failure.
    A run still going after RUN_TIMEOUT_S is killed from SIGALRM."""

    def __init__(self, scratch: str):
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.errpath = os.path.join(scratch, "stderr")
        # Descriptors this driver inherited without close-on-exec stay out of the runs.
        inherited = []
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            try:
                if fd > 2 and os.get_inheritable(fd):
                    inherited.append(fd)
            except OSError:
                pass  # the listdir's own descriptor, already closed
        self.close_actions = [(os.POSIX_SPAWN_CLOSE, fd) for fd in inherited]
        self.pid = 0
        signal.signal(signal.SIGALRM, self._timeout)

    def _timeout(self, _sig, _frame) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def run(self, argv: list[str]) -> tuple[int, int, str]:
        """Wall time in ns, exit status (-N for signal N) and stderr of one run."""
        err = os.open(self.errpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                      0o600)
        actions = [(os.POSIX_SPAWN_DUP2, self.devnull, 0),
                   (os.POSIX_SPAWN_DUP2, self.devnull, 1),
                   (os.POSIX_SPAWN_DUP2, err, 2)] + self.close_actions
        signal.alarm(RUN_TIMEOUT_S)
        t0 = time.perf_counter_ns()
        try:
            self.pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
            _, status = os.waitpid(self.pid, 0)
            t1 = time.perf_counter_ns()
            rc = os.waitstatus_to_exitcode(status)
        except OSError as e:
            t1 = time.perf_counter_ns()
            rc = -1000
            os.write(err, f"spawn failed: {e}".encode())
        finally:
            signal.alarm(0)
            self.pid = 0
            os.close(err)
        msg = ""
        if rc != 0:
            with open(self.errpath, encoding="utf-8", errors="replace") as f:
                msg = f.read(64 * 1024).strip()
            if rc == -signal.SIGKILL:
                msg += f"\n(killed: SIGKILL, timeout {RUN_TIMEOUT_S} s?)"
        return t1 - t0, rc, msg


GNU_TIME = "/usr/bin/time"


def run_rss(argv: list[str], scratch: str) -> tuple[int, int]:
    """(exit status, ru_maxrss KiB) of one run.

    ru_maxrss of a child also counts the high-water RSS of the address space it
    replaced at exec, i.e. its spawner's. Spawned from this Python driver every
    tool would read at least ~14 MiB, so the run goes through GNU time (about
    1 MiB; the no-sandbox row shows that floor). Without GNU time, fall back to
    wait4 here and say so.
    """
    if os.access(GNU_TIME, os.X_OK):
        out = os.path.join(scratch, "maxrss")
        try:
            p = subprocess.run([GNU_TIME, "-f", "%M", "-o", out, "--"] + argv,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return -1, 0
        try:
            with open(out, encoding="utf-8") as f:
                kib = int(f.read().split()[-1])
        except (OSError, ValueError, IndexError):
            return -1, 0
        return p.returncode, kib
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)  # already reaped
    return p.returncode, ru.ru_maxrss


def rss_method() -> str:
    if os.access(GNU_TIME, os.X_OK):
        return "`/usr/bin/time -f %M`"
    return ("`os.wait4` in the Python driver (GNU time missing: every figure includes "
            "the driver's own RSS, so read them as upper bounds)")


def pct(sorted_vals: list[int], q: float) -> float:
    """Nearest-rank percentile."""
    k = max(0, math.ceil(q * len(sorted_vals)) - 1)
    return sorted_vals[k]


def stats(samples_ns: list[int]) -> dict | None:
    if not samples_ns:
        return None
    ms = sorted(s / 1e6 for s in samples_ns)
    return {"n": len(ms), "median": statistics.median(ms), "p90": pct(ms, 0.9),
            "mean": statistics.fmean(ms), "min": ms[0], "max": ms[-1]}


def cmd_out(argv: list[str], cwd: str | None = None) -> str | None:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def cgroup_mode() -> str:
    """Read /proc/self/mountinfo: v2 (unified), hybrid, or v1 (legacy)."""
    v1, v2 = [], []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mnt = left.split()[4]
            fstype = right.split()[0]
            if fstype == "cgroup2":
                v2.append(mnt)
            elif fstype == "cgroup":
                v1.append(mnt)
    if "/sys/fs/cgroup" in v2:
        return "v2 (unified)"
    if v1 and v2:
        ctrls = "?"
        try:
            with open(os.path.join(v2[0], "cgroup.controllers"), encoding="utf-8") as f:
                ctrls = f.read().split()
            ctrls = " ".join(ctrls) or "none"
        except OSError:
            pass
        return f"hybrid (v1 controllers; cgroup2 at {v2[0]} with controllers: {ctrls})"
    if v1:
        return "v1 (legacy)"
    return "none mounted"


def machine_info() -> dict:
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_gib": mem_kib / 1024 / 1024,
        "kernel": os.uname().release,
        "cgroups": cgroup_mode(),
        "loadavg": os.getloadavg(),
    }


def corral_rev(repo: str, corral: str) -> str:
    rev = cmd_out(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo)
    rev = f"git {rev}" if rev else "no git commit yet"
    # Changes to the benchmark files themselves do not change the binary.
    dirty = cmd_out(["git", "status", "--porcelain", "--", ".", ":!BENCHMARKS.md", ":!bench"],
                    cwd=repo)
    rev += " with uncommitted changes" if dirty else ""
    version = cmd_out([corral, "--version"]) if os.access(corral, os.X_OK) else None
    name = version.splitlines()[0] if version else "corral"
    try:
        built = dt.datetime.fromtimestamp(os.stat(corral).st_mtime, dt.timezone.utc)
        rev += f", binary built {built:%Y-%m-%d %H:%M}Z"
    except OSError:
        rev += ", binary missing"
    return f"{name} ({rev})"


NAMESPACES = ("pid", "net", "mnt", "ipc", "uts")


def check_corral(corral: str) -> tuple[bool, list[str]]:
    """Make sure `corral run` really runs the command, in a sandbox, before timing it.

    Returns (usable, notes). Not usable: `corral run -- /bin/false` does not exit 1
    (a stub that exits 0 would otherwise be "measured"); the reason is the last note.
    Usable but noted: the command shares one of the host's namespaces, or that could
    not be checked (no /bin/sh or /proc inside, or stdout not passed through).
    """
    def run(args: list[str]) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run([corral, "run", "--"] + args, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return None

    p = run(["/bin/false"])
    if p is None or p.returncode != 1:
        got = "no exit (timeout or spawn error)" if p is None else f"exit {p.returncode}"
        return False, [f"`corral run -- /bin/false` gave {got}, expected exit 1: "
                       "the command does not seem to be run"]
    script = " ".join(f"/proc/self/ns/{n}" for n in NAMESPACES)
    p = run(["/bin/sh", "-c", f"readlink {script}"])
    inside = p.stdout.split() if p is not None and p.returncode == 0 else []
    if len(inside) != len(NAMESPACES):
        return True, ["could not check its namespaces (`readlink /proc/self/ns/*` inside "
                      "gave no usable output)"]
    host = [os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES]
    shared = [n for n, a, b in zip(NAMESPACES, inside, host) if a == b]
    if shared:
        return True, ["WARNING: the command ran in the host's " + ", ".join(shared)
                      + " namespace(s): not all isolation layers are on"]
    return True, []


def fmt(v: float | None, nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--tmp", required=True, help="scratch dir (runc state)")
    ap.add_argument("--runc-bundle", required=True)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--command", required=True, help="command line to record")
    ap.add_argument("--markdown", required=True, help="BENCHMARKS.md path")
    ap.add_argument("--json", help="write raw samples here")
    a = ap.parse_args()

    corral = os.path.join(a.repo, "target/release/corral")
    bwrap = "/usr/bin/bwrap"
    runc = "/usr/sbin/runc"
    runc_root = os.path.join(a.tmp, "runc-state")
    os.makedirs(runc_root, exist_ok=True)
    pid = os.getpid()
    spawner = Spawner(a.tmp)

    tools = [
        Tool("corral", "corral run", lambda s: [corral, "run", "--", "/bin/true"], corral),
        Tool("bwrap", "bubblewrap", lambda s: bwrap_argv(bwrap), bwrap),
        Tool("runc", "runc run",
             lambda s: [runc, "--root", runc_root, "run", "--bundle", a.runc_bundle,
                        f"bench-{pid}-{s}"], runc),
        Tool("none", "/bin/true, no sandbox", lambda s: ["/bin/true"], "/bin/true"),
    ]
    by = {t.key: t for t in tools}
    seq = 0

    def next_seq() -> int:
        nonlocal seq
        seq += 1
        return seq

    # Preflight: one run each; a failing tool is reported and left out.
    for t in tools:
        if not t.available:
            print(f"[bench] {t.label}: unavailable ({t.reason})", file=sys.stderr)
            continue
        _, rc, err = spawner.run(t.argv(next_seq()))
        if rc != 0:
            t.available = False
            first = err.splitlines()[0] if err else ""
            t.reason = f"exit {rc}" + (f": {first}" if first else "")
            print(f"[bench] {t.label}: unavailable, `{shlex.join(t.argv(0))}` exited {rc}; "
                  f"stderr:\n{err or '(empty)'}", file=sys.stderr)

    notes = []
    if by["corral"].available:
        ok, notes = check_corral(corral)
        if not ok:
            by["corral"].available = False
            by["corral"].reason = notes.pop()
            print(f"[bench] corral run: unavailable, {by['corral'].reason}", file=sys.stderr)
        for n in notes:
            print(f"[bench] corral: {n}", file=sys.stderr)

    active = [t for t in tools if t.available]
    machine = machine_info()
    started = dt.datetime.now(dt.timezone.utc)
    total = a.warmup + a.iters
    print(f"[bench] {a.warmup} warm-up + {a.iters} measured rounds over: "
          f"{', '.join(t.label for t in active) or 'nothing'}", file=sys.stderr)

    gc.disable()
    for r in range(total):
        k = r % len(active) if active else 0
        for t in active[k:] + active[:k]:
            ns, rc, err = spawner.run(t.argv(next_seq()))
            if r < a.warmup:
                continue
            if rc == 0:
                t.samples_ns.append(ns)
            else:
                t.failures += 1
                t.first_failure = t.first_failure or f"exit {rc}: {' '.join(err.split())[:200]}"
        if (r + 1) % 50 == 0 or r + 1 == total:
            print(f"[bench] round {r + 1}/{total}", file=sys.stderr)
    gc.enable()
    for t in active:
        if not t.samples_ns:
            t.reason = f"all {t.failures} measured runs failed"

    # Peak RSS, per run, after the timed rounds (so it does not disturb them).
    for t in active:
        if not t.samples_ns:
            continue
        for _ in range(RSS_RUNS):
            rc, kib = run_rss(t.argv(next_seq()), a.tmp)
            if rc == 0:
                t.rss_kib.append(kib)

    # Leftover runc containers would mean `runc run` did not clean up: report, remove.
    leftovers = []
    if by["runc"].exe and os.access(runc, os.X_OK):
        out = cmd_out([runc, "--root", runc_root, "list", "-q"]) or ""
        leftovers = out.split()
        for cid in leftovers:
            subprocess.run([runc, "--root", runc_root, "delete", "-f", cid],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    st = {t.key: stats(t.samples_ns) for t in tools}
    base_b = st["bwrap"]["median"] if st["bwrap"] else None
    base_r = st["runc"]["median"] if st["runc"] else None

    def ratio(t: Tool, base: float | None) -> str:
        s = st[t.key]
        return "—" if s is None or base is None else f"{s['median'] / base:.2f}"

    versions = {
        "bwrap": cmd_out([bwrap, "--version"]) or "not installed",
        "runc": (cmd_out([runc, "--version"]) or "not installed").splitlines()[0],
        "corral": corral_rev(a.repo, corral),
    }

    # ---- targets
    cs = st["corral"]
    checks = []

    def check(ok: bool | None, text: str) -> None:
        checks.append(("SKIP" if ok is None else "PASS" if ok else "FAIL") + " " + text)

    why = by["corral"].reason or "no successful runs"
    if cs and base_b:
        lim = TARGET_VS_BWRAP * base_b
        check(cs["median"] <= lim, f"corral median {cs['median']:.2f} ms ≤ {TARGET_VS_BWRAP}× "
              f"bwrap median ({lim:.2f} ms): ratio {cs['median'] / base_b:.3f}")
    else:
        check(None, f"corral median ≤ {TARGET_VS_BWRAP}× bwrap median: "
              f"{'corral' if not cs else 'bwrap'} not measured ({why if not cs else by['bwrap'].reason})")
    if cs and base_r:
        lim = TARGET_VS_RUNC * base_r
        check(cs["median"] <= lim, f"corral median {cs['median']:.2f} ms ≤ {TARGET_VS_RUNC}× "
              f"runc median ({lim:.2f} ms): ratio {cs['median'] / base_r:.3f}")
    else:
        check(None, f"corral median ≤ {TARGET_VS_RUNC}× runc median: "
              f"{'corral' if not cs else 'runc'} not measured ({why if not cs else by['runc'].reason})")
    crss = max(by["corral"].rss_kib) if by["corral"].rss_kib else None
    if crss is not None:
        check(crss <= TARGET_RSS_KIB, f"corral peak RSS {crss / 1024:.1f} MiB ≤ "
              f"{TARGET_RSS_KIB // 1024} MiB")
    else:
        check(None, f"corral peak RSS ≤ {TARGET_RSS_KIB // 1024} MiB: corral not measured ({why})")

    # ---- markdown block
    m = machine
    L = []
    L.append(f"Command: `{a.command}` (as root; the script installs bubblewrap, runc and time "
             "and builds corral if needed)  ")
    L.append(f"Date: {started:%Y-%m-%d %H:%M} UTC  ")
    L.append(f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_gib']:.1f} GiB RAM, "
             f"kernel {m['kernel']}, cgroups {m['cgroups']}; load average at start "
             f"{m['loadavg'][0]:.2f}  ")
    L.append(f"Versions: {versions['bwrap']}; {versions['runc']}; {versions['corral']}")
    L.append("")
    L.append(f"Method: {a.iters} measured rounds after {a.warmup} warm-up rounds; each round "
             "runs every tool once, interleaved, order rotated per round. Each figure is the "
             "wall time of one run (spawn to reap) by `time.perf_counter_ns` around "
             "`os.posix_spawn` + `os.waitpid` in `bench/lib/oneshot.py`, so the driver's own cost is in "
             "every row; the no-sandbox row shows it. Ratios are of medians.")
    L.append("")
    L.append("| tool | median ms | p90 ms | mean ms | ratio vs bwrap | ratio vs runc |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for t in tools:
        s = st[t.key]
        if s is None:
            L.append(f"| {t.label} | unavailable ({(t.reason or 'no successful runs').replace('|', '/')}) "
                     "| — | — | — | — |")
        else:
            L.append(f"| {t.label} | {fmt(s['median'])} | {fmt(s['p90'])} | {fmt(s['mean'])} "
                     f"| {ratio(t, base_b)} | {ratio(t, base_r)} |")
    L.append("")
    if notes:
        L += [f"corral check: {n}" for n in notes] + [""]
    fails = [f"{t.label}: {t.failures} failed runs (first: {t.first_failure})"
             for t in tools if t.failures]
    if fails:
        L.append("Failed runs (left out of the figures): " + "; ".join(fails))
        L.append("")
    if leftovers:
        L.append(f"runc left {len(leftovers)} containers behind (deleted afterwards).")
        L.append("")
    rss = [f"{t.label} {max(t.rss_kib) / 1024:.1f} MiB" if t.rss_kib else f"{t.label} —"
           for t in tools]
    L.append(f"Peak RSS, largest of {RSS_RUNS} runs by {rss_method()}: " + "; ".join(rss)
             + ". This is `ru_maxrss` from `wait4`: the largest single process among the "
             "tool and the descendants it waited for (for corral, any helper it waits for "
             "and /bin/true), not their sum; the no-sandbox row is the method's floor.")
    L.append("")
    L.append("Peers: `" + shlex.join(["bwrap"] + bwrap_argv(bwrap)[1:]) + "`; "
             "`runc --root STATE run --bundle BUNDLE bench-PID-SEQ` with the bundle from "
             "`bench/lib/runc_bundle.py` (read-only rootfs, /usr bind-mounted read-only, "
             "pid/ipc/uts/mount/network namespaces, no terminal).")
    L.append("")
    L.append("Targets:")
    L.append("")
    L += [f"- {c}" for c in checks]
    body = "\n".join(L)

    print(body)
    print()
    for c in checks:
        print(c)

    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({
                "command": a.command, "date": started.isoformat(), "machine": machine,
                "versions": versions, "iters": a.iters, "warmup": a.warmup,
                "tools": {t.key: {"label": t.label, "available": t.available,
                                  "reason": t.reason, "argv": t.argv(0),
                                  "samples_ns": t.samples_ns, "failures": t.failures,
                                  "first_failure": t.first_failure, "rss_kib": t.rss_kib,
                                  "stats_ms": st[t.key]} for t in tools},
                "checks": checks,
            }, f, indent=1)
            f.write("\n")
        print(f"[bench] raw samples: {a.json}", file=sys.stderr)

    try:
        replace_block(a.markdown, BEGIN, END, body, HEADER, SECTION)
    except ValueError as e:
        print(f"[bench] not updating {a.markdown}: {e}", file=sys.stderr)
        return 1
    print(f"[bench] updated {a.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
