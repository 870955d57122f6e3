#!/usr/bin/env python3
"""How fast can any TCP-terminating relay pass a CPU-bound 100 MiB download on this
host? The ceiling that corral's egress proxy is measured against (bench/proxy.py),
without corral: the same download direct and through three minimal relay designs,
interleaved in one run.

Topology (all made here, removed on exit): a server namespace and a client namespace,
each joined to the host by a veth; the host forwards between them (the direct path) or
runs the relays (the relayed path: client -> host relay -> server, two TCP connections,
like corral's transparent proxy). The server sends 100 MiB from a 1 MiB buffer per
request; the client is curl writing to /dev/null.

Relays, each its own process on the host (no shared interpreter lock):
  splice   socket -> pipe (1 MiB) -> socket with splice(2), as corral's proxy does;
  copy     recv into a 256 KiB buffer, sendall (what a user-space proxy does);
  sockmap  the kernel forwards the stream itself: a BPF_PROG_TYPE_SK_SKB verdict
           program (six instructions, loaded through bpf(2)) redirects every skb that
           reaches the upstream socket to the client's socket; the relay only passes
           the request on. Left out, with the reason, where the kernel refuses it.

Usage: python3 bench/relay-designs.py [ROUNDS]  (root; default 12 rounds; each round
downloads once per path). Prints one JSON object: the median MiB/s per path and each
relay's ratio to direct. No packet leaves the namespaces and veths it creates."""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 12
tag = str(os.getpid() % 100000)
SNS, CNS = f"crd-s{tag}", f"crd-c{tag}"
SV, CV = f"crds{tag}", f"crdc{tag}"
S_HOST, S_ADDR, C_HOST, C_ADDR = "198.19.248.1", "198.19.248.2", "198.19.249.1", "198.19.249.2"
BIG = 100 << 20
PORTS = {"splice": 9101, "copy": 9102, "sockmap": 9103}

SERVER = r'''
import socket, sys, threading
addr, big = sys.argv[1], int(sys.argv[2])
chunk = b"y" * (1 << 20)
def handle(c):
    with c:
        b = b""
        while b"\r\n\r\n" not in b:
            x = c.recv(4096)
            if not x:
                return
            b += x
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % big)
        for _ in range(big // len(chunk)):
            c.sendall(chunk)
s = socket.create_server((addr, 8080), backlog=64)
while True:
    threading.Thread(target=handle, args=(s.accept()[0],), daemon=True).start()
'''

RELAY = r'''
import ctypes, fcntl, os, select, socket, struct, sys, threading
mode, listen, port, upstream = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
F_SETPIPE_SZ = 1031

def splice_one_way(a, b):
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
    try:
        while (n := os.splice(a.fileno(), w, 1 << 20, flags=os.SPLICE_F_MOVE)) > 0:
            while n:
                n -= os.splice(r, b.fileno(), n, flags=os.SPLICE_F_MOVE)
    except OSError:
        pass
    finally:
        os.close(r); os.close(w)
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def copy_one_way(a, b):
    try:
        while x := a.recv(1 << 18):
            b.sendall(x)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(321, cmd, buf, 128)  # SYS_bpf on x86_64
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({cmd}): {os.strerror(e)}")
    return r

def sockmap():
    return bpf(0, struct.pack("IIII", 15, 4, 4, 1))  # BPF_MAP_TYPE_SOCKMAP, 1 slot

def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)

def verdict(target):
    # r2 = &target (pseudo map fd); r3 = 0 (slot); r4 = 0 (egress); return bpf_sk_redirect_map()
    prog = (insn(0x18, 2, 1, 0, target) + insn(0) + insn(0xB7, 3) + insn(0xB7, 4)
            + insn(0x85, imm=52) + insn(0x95))
    code, lic = ctypes.create_string_buffer(prog, len(prog)), ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack("IIQQIIQII16sII", 14, len(prog) // 8, ctypes.addressof(code),
                       ctypes.addressof(lic), 1, 1 << 16, ctypes.addressof(log), 0, 0,
                       b"relay_redirect", 0, 5)  # SK_SKB, expected attach STREAM_VERDICT
    try:
        return bpf(5, attr)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror}: {log.value.decode(errors='replace')}") from None

def put(m, fd):
    k, v = ctypes.c_uint32(0), ctypes.c_uint32(fd)
    bpf(2, struct.pack("IIQQQ", m, 0, ctypes.addressof(k), ctypes.addressof(v), 0))

def sockmap_relay(c, u):
    # The client's socket is the target (its own map, no program), the upstream's socket
    # the source (a map with the verdict program attached): from then on the upstream's
    # bytes never reach this process.
    fds = []
    try:
        target = sockmap(); fds.append(target)
        source = sockmap(); fds.append(source)
        prog = verdict(target); fds.append(prog)
        bpf(8, struct.pack("IIII", source, prog, 5, 0))  # BPF_PROG_ATTACH, STREAM_VERDICT
        put(target, c.fileno()); put(source, u.fileno())
        u.sendall(c.recv(65536))  # the request
        c.setblocking(False)
        while True:  # until the client hangs up (it knows the length)
            select.select([c], [], [], 1.0)
            try:
                if not c.recv(65536):
                    break
            except BlockingIOError:
                pass
    finally:
        for fd in fds:
            os.close(fd)

def handle(c):
    with c, socket.create_connection((upstream, 8080)) as u:
        if mode == "sockmap":
            sockmap_relay(c, u)
            return
        one = splice_one_way if mode == "splice" else copy_one_way
        t = threading.Thread(target=one, args=(c, u)); t.start()
        one(u, c); t.join()

if mode == "sockmap":  # fail here, before listening, where the kernel refuses it
    m = sockmap(); os.close(verdict(m)); os.close(m)
s = socket.create_server((listen, port), backlog=64)
print("ready", flush=True)
while True:
    c = s.accept()[0]
    threading.Thread(target=handle, args=(c,), daemon=True).start()
'''


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def setup():
    for ns, v, host, addr in ((SNS, SV, S_HOST, S_ADDR), (CNS, CV, C_HOST, C_ADDR)):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", v, "type", "veth", "peer", "name", "e0", "netns", ns)
        sh("ip", "addr", "add", f"{host}/30", "dev", v)
        sh("ip", "link", "set", v, "up")
        for a in (["addr", "add", f"{addr}/30", "dev", "e0"], ["link", "set", "lo", "up"],
                  ["link", "set", "e0", "up"], ["route", "add", "default", "via", host]):
            sh("ip", "-n", ns, *a)
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forward = f.read().strip()
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    return forward


def wait_port(ns, addr, port):
    probe = f"import socket; socket.create_connection(('{addr}', {port}), 0.2).close()"
    for _ in range(100):
        cmd = ["python3", "-c", probe]
        if subprocess.run((["ip", "netns", "exec", ns] if ns else []) + cmd,
                          capture_output=True).returncode == 0:
            return True
        time.sleep(0.1)
    return False


def download(url):
    out = subprocess.run(["ip", "netns", "exec", CNS, "curl", "-s", "-o", "/dev/null", "--max-time",
                          "60", "-w", "%{speed_download} %{size_download}", url],
                         capture_output=True, text=True).stdout.split()
    if len(out) != 2 or int(out[1]) != BIG:
        raise SystemExit(f"download from {url} incomplete: {out}")
    return float(out[0]) / (1 << 20)


procs, forward, tmp = [], None, tempfile.mkdtemp(prefix="corral-bench-relay-")
try:
    forward = setup()
    procs.append(subprocess.Popen(["ip", "netns", "exec", SNS, "python3", "-c", SERVER, S_ADDR, str(BIG)]))
    if not wait_port(SNS, S_ADDR, 8080):
        raise SystemExit("the benchmark's server did not start")
    paths, skipped = {"direct": f"http://{S_ADDR}:8080/"}, {}
    for mode, port in PORTS.items():
        log = open(os.path.join(tmp, mode + ".log"), "w+")
        p = subprocess.Popen(["python3", "-c", RELAY, mode, C_HOST, str(port), S_ADDR],
                             stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        if wait_port(None, C_HOST, port):
            paths[mode] = f"http://{C_HOST}:{port}/"
        else:
            log.seek(0)
            skipped[mode] = (log.read().strip().splitlines() or ["did not start"])[-1]
    speeds = {k: [] for k in paths}
    for r in range(rounds + 1):
        order = list(paths.items())
        order = order[r % len(order):] + order[:r % len(order)]  # no path always first
        for name, url in order:
            v = download(url)
            if r > 0:  # round 0 warms up
                speeds[name].append(v)
    out = {f"{k}_mib_s": round(statistics.median(v), 1) for k, v in speeds.items()}
    for k in paths:
        if k != "direct":
            out[f"{k}_ratio"] = round(statistics.median(speeds[k]) / statistics.median(speeds["direct"]), 3)
    out["rounds"] = rounds
    if skipped:
        out["skipped"] = skipped
    print(json.dumps(out))
finally:
    for p in procs:
        p.kill()
        p.wait()
    for ns, v in ((SNS, SV), (CNS, CV)):
        sh("ip", "link", "del", v, check=False)
        sh("ip", "netns", "del", ns, check=False)
    if forward is not None:
        sh("sysctl", "-qw", f"net.ipv4.ip_forward={forward}")
    shutil.rmtree(tmp, ignore_errors=True)
