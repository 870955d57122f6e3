#!/usr/bin/env python3
"""`corral run -- /bin/true` of several corral binaries, interleaved in one run: how a
change to the binary (its size, link flags, panic strategy) moves a one-shot start.

Usage: python3 bench/compare-builds.py [--rounds N] NAME=PATH [NAME=PATH ...]
e.g. python3 bench/compare-builds.py old=/tmp/old/corral new=target/release/corral
(root, like any `corral run`). Build an older commit with `git worktree add DIR REV` and
`CARGO_TARGET_DIR=DIR/target cargo build --release -p corral` inside DIR.

Each round runs every binary once, order rotated per round, after 5 warm-up rounds;
each run is timed by `time.perf_counter_ns` around `os.posix_spawn` + `os.waitpid`,
stdio on /dev/null (the method of bench/lib/oneshot.py). Prints p50, p90 and mean per
binary and each one's p50 ratio to the first."""
import os, statistics, sys, time

args = sys.argv[1:]
rounds = 300
if args[:1] == ["--rounds"]:
    rounds, args = int(args[1]), args[2:]
if not args or any("=" not in a for a in args):
    raise SystemExit(__doc__)
bins = [tuple(a.split("=", 1)) for a in args]
for name, path in bins:
    if not os.access(path, os.X_OK):
        raise SystemExit(f"{name}: {path} is not an executable")
times = {name: [] for name, _ in bins}
null = os.open("/dev/null", os.O_RDWR)
io = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
for r in range(rounds + 5):
    k = r % len(bins)
    for name, path in bins[k:] + bins[:k]:
        t = time.perf_counter_ns()
        pid = os.posix_spawn(path, [path, "run", "--", "/bin/true"], os.environ, file_actions=io)
        _, status = os.waitpid(pid, 0)
        ms = (time.perf_counter_ns() - t) / 1e6
        if status != 0:
            raise SystemExit(f"{name}: `corral run -- /bin/true` failed (wait status {status})")
        if r >= 5:
            times[name].append(ms)
first = statistics.median(times[bins[0][0]])
for name, _ in bins:
    v = sorted(times[name])
    p50 = statistics.median(v)
    print(f"{name}: p50 {p50:.2f} ms, p90 {v[int(len(v) * 0.9)]:.2f}, mean {statistics.mean(v):.2f}, "
          f"p50 / {bins[0][0]} {p50 / first:.3f}")
