"""Small pieces for bench/lib/daemon.py: a keep-alive HTTP client for the corral API,
starting and stopping a `corral serve`, and reading what it leaves on the host.

Only the Python standard library. One Client per thread (http.client connections are
not thread-safe); each keeps one TCP connection to loopback open across requests.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import time

CONTROLLERS = ("memory", "cpu", "pids", "freezer")
POOL_RE = re.compile(rb'^corral_pool_depth\{template="host"\} (\d+)', re.M)


class ApiError(Exception):
    pass


class Client:
    """One keep-alive connection. Every call reads the whole response (so the
    connection can be reused) and returns (status, body bytes). A broken connection
    is reopened on the next call; the failed call raises ApiError."""

    def __init__(self, host: str, port: int, key: str, timeout: float = 120.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.auth = f"Bearer {key}"
        self.conn: http.client.HTTPConnection | None = None

    def _conn(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.connect()
            # Requests are small: send them at once, not after a delayed ACK.
            import socket
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                sink=None) -> tuple[int, bytes]:
        """`sink(resp)` consumes the body itself (streamed downloads); then the
        returned body is b""."""
        h = {"Authorization": self.auth}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        try:
            c = self._conn()
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            if sink is not None and 200 <= r.status < 300:
                sink(r)
                data = b""
            else:
                data = r.read()
            if r.will_close:
                self.close()
            return r.status, data
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise ApiError(f"{method} {path}: {type(e).__name__}: {e}") from e

    def json(self, method: str, path: str, body=None, ok=(200, 201, 204)) -> dict:
        st, data = self.request(method, path, body)
        if st not in ok:
            raise ApiError(f"{method} {path}: HTTP {st}: {data[:300].decode(errors='replace')}")
        return json.loads(data) if data else {}

    def pool_depth(self) -> int:
        st, data = self.request("GET", "/metrics")
        m = POOL_RE.search(data) if st == 200 else None
        if not m:
            raise ApiError(f"GET /metrics: HTTP {st}, no corral_pool_depth for host")
        return int(m.group(1))


class Daemon:
    """A `corral serve` on 127.0.0.1:0 with its own data dir, cgroup parent and
    runtime dir, all under `tmp`."""

    def __init__(self, corral: str, tmp: str, name: str, pool_size: int):
        self.corral = corral
        self.dir = os.path.join(tmp, name)
        self.data = os.path.join(self.dir, "data")
        self.runtime = os.path.join(self.dir, "run")
        self.parent = f"corral-bench-{os.getpid()}-{name}"
        self.pool_size = pool_size
        os.makedirs(self.runtime, exist_ok=True)
        self.config = os.path.join(self.dir, "corral.toml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(f'pool_size = {pool_size}\n'
                    f'cgroup_parent = "{self.parent}"\n'
                    f'runtime_dir = "{self.runtime}"\n')
        self.log = os.path.join(self.dir, "serve.log")
        self.proc: subprocess.Popen | None = None
        self.host, self.port, self.key = "127.0.0.1", 0, ""

    def start(self, wait_s: float = 60) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.corral, "serve", "--data-dir", self.data, "--listen", "127.0.0.1:0",
                 "--config", self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        # Let the shell's trap find it after an interrupted run.
        with open(os.path.join(self.dir, "pid"), "w", encoding="utf-8") as f:
            f.write(f"{self.proc.pid}\n")
        addr_file = os.path.join(self.data, "listen.addr")
        key_file = os.path.join(self.data, "admin-key")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ApiError(f"corral serve exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with open(addr_file, encoding="utf-8") as f:
                    addr = f.read().strip()
                with open(key_file, encoding="utf-8") as f:
                    self.key = f.read().strip()
                if addr and self.key:
                    host, _, port = addr.rpartition(":")
                    self.host, self.port = host.strip("[]"), int(port)
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise ApiError(f"corral serve did not write listen.addr in {wait_s} s: {self.log_tail()}")

    def client(self, key: str | None = None) -> Client:
        return Client(self.host, self.port, key or self.key)

    def log_tail(self, n: int = 1500) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return " ".join(f.read().decode(errors="replace").split())
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def stop(self, wait_s: float = 120) -> tuple[int | None, float]:
        """SIGTERM, wait; (exit status or None if it had to be SIGKILLed, seconds)."""
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        return rc, time.monotonic() - t0

    # ---- what it leaves on the host

    def cgroup_dirs(self) -> list[str]:
        """Sandbox cgroups under our parent, per controller (and cgroup2 if any)."""
        out = []
        roots = [f"/sys/fs/cgroup/{c}" for c in CONTROLLERS]
        roots += ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        for root in roots:
            base = os.path.join(root, self.parent)
            try:
                out += [os.path.join(base, e.name) for e in os.scandir(base) if e.is_dir()]
            except OSError:
                pass
        return sorted(set(out))

    def sandbox_cgroup_names(self) -> set[str]:
        return {os.path.basename(p) for p in self.cgroup_dirs()}

    def inits(self) -> dict[int, str]:
        """pid -> sandbox cgroup name of every process in our cgroup parent (pids
        controller): for an idle sandbox that is its init, whose argv reads
        `corral-init` (its comm stays `corral`, the binary it was cloned from)."""
        found = {}
        marker = f":/{self.parent}/"
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cgroup", encoding="utf-8") as f:
                    cg = f.read()
            except OSError:
                continue
            i = cg.find(marker)
            if i >= 0:
                found[int(name)] = cg[i + len(marker):].split("\n")[0].split("/")[0]
        return found

    @staticmethod
    def argv0(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            return ""

    def sockets(self) -> list[str]:
        try:
            return sorted(os.listdir(os.path.join(self.data, "sockets")))
        except FileNotFoundError:
            return []

    def remove_cgroup_parent(self) -> None:
        """rmdir our (by then empty) parent cgroups; a non-empty one stays (a leak)."""
        for root in [f"/sys/fs/cgroup/{c}" for c in CONTROLLERS] + ["/sys/fs/cgroup/unified"]:
            try:
                os.rmdir(os.path.join(root, self.parent))
            except OSError:
                pass


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM...), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime+stime, cutime+cstime) of a process in clock ticks (children: reaped ones,
    i.e. the daemon's `corral __spawn` helpers)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
    except (OSError, IndexError, ValueError):
        return 0, 0


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat", encoding="utf-8") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM (peak RSS) of a process: `echo 5 > /proc/PID/clear_refs`."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def pss_kib(pid: int) -> dict[str, int]:
    """Pss, Pss_Anon, Pss_File, Pss_Shmem of /proc/PID/smaps_rollup (KiB; {} if gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0])
    return out
