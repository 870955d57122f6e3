#!/usr/bin/env bash
# Sets up a Debian host for corral: packages, host tuning, and a release build.
# Idempotent; run as root from anywhere. Used by the README quick start and by
# scripts/test.sh (and so by CI).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: run as root (corral creates namespaces, mounts and cgroups)" >&2
    exit 1
fi

# Packages: a C toolchain for crates that build C, python3 for the tests and the host
# template's demo, python3-venv for the E2B SDK tests, util-linux/procps for test
# helpers, openssl to make test certificates.
need=()
# iproute2 and nftables build sandbox networks (mode open; see docs/network.md);
# debootstrap builds Debian base templates (`corral template debootstrap`); curl and
# python3-pip are what the egress tests drive through the proxy (mode allow); zstd
# compresses the tests' zstd OCI layers.
for pkg in gcc libc6-dev python3 python3-venv procps util-linux openssl iproute2 nftables debootstrap curl python3-pip zstd; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "setup.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
        { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi

# Host tuning: moving a process into a cgroup takes a global lock whose write side
# waits for an RCU grace period (~10 ms here) unless the cgroup hierarchy "favors
# dynamic modifications". corral moves every sandbox's init into its cgroup, so it
# turns this on (cgroup2 mount option favordynmods, Linux >= 6.0; it applies to the
# v1 controllers too). Cost: fork/exit take a slightly slower path host-wide.
# Harmless when unsupported. See docs/operations.md.
for mnt in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    if [[ $(stat -f -c %T "$mnt" 2>/dev/null) == cgroup2fs ]]; then
        if ! grep -q " $mnt .*favordynmods" /proc/self/mountinfo; then
            mount -o remount,favordynmods "$mnt" 2>/dev/null &&
                echo "setup.sh: enabled favordynmods on $mnt" ||
                echo "setup.sh: note: $mnt does not support favordynmods; sandbox starts pay ~10 ms more" >&2
        fi
    fi
done

if ! command -v cargo >/dev/null; then
    echo "setup.sh: cargo not found; install Rust with rustup (the toolchain is pinned in rust-toolchain.toml)" >&2
    exit 1
fi
cargo build --release --locked
echo "setup.sh: built target/release/corral (and corral-full, which it runs for every command but run)"
