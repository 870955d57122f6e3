#!/usr/bin/python3
"""Write a minimal OCI bundle that runs /bin/true under runc.

Usage: runc_bundle.py BUNDLE_DIR [ARG...]

The rootfs is an almost empty directory: /usr is bind-mounted read-only from the
host and the merged-usr symlinks (/bin, /lib, /lib64, /sbin -> usr/...) are created
in it, matching the bubblewrap peer. Namespaces: pid, ipc, uts, mount, network
(runc's own defaults). No terminal. The root filesystem is read-only; /proc, /dev
and /tmp are fresh mounts. Capabilities, masked and read-only paths and the device
rules follow `runc spec`, so runc does the work it does for an ordinary container.
"""

import json
import os
import sys

MERGED_USR = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}
CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def make_bundle(bundle: str, args: list[str]) -> None:
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("usr", "proc", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    for name, target in MERGED_USR.items():
        # Only link what exists on the host (lib64 may be absent on some arches).
        if os.path.exists(os.path.join("/", target)):
            path = os.path.join(rootfs, name)
            if not os.path.lexists(path):
                os.symlink(target, path)

    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/usr", "type": "bind", "source": "/usr",
             "options": ["rbind", "ro", "nosuid", "nodev"]},
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    }
    with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    make_bundle(sys.argv[1], sys.argv[2:] or ["/bin/true"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
