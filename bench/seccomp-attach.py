#!/usr/bin/env python3
"""How long the kernel takes to install a seccomp filter, by program length.

Why: corral installs one seccomp program per sandbox start, so its length is part of
the start-up cost. This measures synthetic classic-BPF programs of N never-matching
compares (the shape of an allowlist) in forked children, each with no_new_privs set,
and prints the median install time per length and the fitted cost per instruction.
Run as any user; no network, no files. Usage: bench/seccomp-attach.py [REPEATS]
"""
import ctypes
import os
import statistics
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def program(n):
    ins = [(0x20, 0, 0, 0)]                      # ld [nr]
    ins += [(0x15, 0, 0, 100000 + i) for i in range(n)]  # jeq k (never true)
    ins.append((0x06, 0, 0, 0x7FFF0000))         # ret ALLOW
    arr = (SockFilter * len(ins))(*[SockFilter(*x) for x in ins])
    return SockFprog(len(ins), arr), arr


def attach_us(n):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        prog, _keep = program(n)
        t = time.perf_counter_ns()
        rc = libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)
        dt = time.perf_counter_ns() - t
        os.write(w, str(dt if rc == 0 else -1).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    return int(out) / 1000


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    rows = []
    for n in (10, 60, 124, 250, 500, 1000, 2300):
        xs = [attach_us(n) for _ in range(repeats)]
        rows.append((n, statistics.median(xs)))
    print("| instructions | median install µs |")
    print("|---:|---:|")
    for n, m in rows:
        print(f"| {n + 2} | {m:.0f} |")
    (n0, m0), (n1, m1) = rows[0], rows[-1]
    print(f"\ncost per instruction ≈ {(m1 - m0) / (n1 - n0):.2f} µs (fit of the extremes)")


if __name__ == "__main__":
    main()
