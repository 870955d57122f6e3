#!/usr/bin/env python3
"""Where corral's start-up time goes: `corral run -- /bin/true` with all layers, and with
each skippable layer turned off (--dangerously-skip-layer), next to bubblewrap, all
interleaved in one run. Same timing method as bench/lib/oneshot.py (posix_spawn to
waitpid, stdio to /dev/null). Run as root from the repository root after a release
build. Usage: bench/layers.py [ROUNDS]
"""
import os
import statistics
import sys
import time

CORRAL = os.path.abspath("target/release/corral")
SKIP = "--dangerously-skip-layer"
BWRAP = ("bwrap --unshare-all --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib "
         "/lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --proc /proc --dev /dev "
         "--tmpfs /tmp --die-with-parent -- /bin/true").split()
CASES = {
    "corral, all layers": [CORRAL, "run", "--", "/bin/true"],
    "without seccomp": [CORRAL, "run", SKIP, "seccomp", "--", "/bin/true"],
    "without landlock": [CORRAL, "run", SKIP, "landlock", "--", "/bin/true"],
    "without cgroups": [CORRAL, "run", SKIP, "cgroups", "--", "/bin/true"],
    "without all three": [CORRAL, "run", SKIP, "seccomp", SKIP, "landlock", SKIP, "cgroups",
                          "--", "/bin/true"],
    "bubblewrap": BWRAP,
}


def once(argv, devnull):
    t = time.perf_counter_ns()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
        (os.POSIX_SPAWN_DUP2, devnull, 2)])
    os.waitpid(pid, 0)
    return (time.perf_counter_ns() - t) / 1e6


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    devnull = os.open(os.devnull, os.O_RDWR)
    xs = {k: [] for k in CASES}
    for r in range(rounds + 5):
        order = list(CASES.items())
        order = order[r % len(order):] + order[:r % len(order)]
        for name, argv in order:
            dt = once(argv, devnull)
            if r >= 5:
                xs[name].append(dt)
    base = statistics.median(xs["bubblewrap"])
    full = statistics.median(xs["corral, all layers"])
    print("| case | median ms | vs bubblewrap | layer's share |")
    print("|---|---:|---:|---:|")
    for name, v in xs.items():
        m = statistics.median(v)
        share = f"{full - m:+.2f} ms" if name.startswith("without") else ""
        print(f"| {name} | {m:.2f} | {m / base:.2f} | {share} |")


if __name__ == "__main__":
    main()
