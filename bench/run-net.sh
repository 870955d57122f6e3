#!/usr/bin/env bash
# Create with networking (modes open and allow, namespaces pre-built per mode) versus
# without (mode none), interleaved on one daemon without the warm sandbox pool; p50 of
# POST /v1/sandboxes.
#   BENCH_ITERS=60   measured rounds
# Run as root from the repository root after `cargo build --release`. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${BENCH_ITERS:-60}
python3 bench/net.py target/release/corral "$iters"
