#!/usr/bin/env bash
# Latency per HTTPS request through corral's credential broker (TLS terminated, a
# secret injected) versus the egress proxy passing TLS through versus a direct
# connection, interleaved in one run (bench/broker.py says exactly what is measured).
#   BENCH_ITERS=200   measured fresh-connection requests per path (in batches of 20)
# Run as root from the repository root after `cargo build --release`. Its own network
# namespace and loopback only; needs ip, openssl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${BENCH_ITERS:-200}
python3 bench/broker.py target/release/corral "$iters"
