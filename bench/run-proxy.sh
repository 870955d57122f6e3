#!/usr/bin/env bash
# corral's egress proxy (mode allow, TLS passed through) versus a direct connection
# from a sandbox in mode open, interleaved in one run: median added latency per fresh
# HTTPS request (transparent and CONNECT) and 100 MiB download throughput (HTTPS and
# HTTP). bench/proxy.py says exactly what is measured.
#   BENCH_ITERS=200   measured fresh-connection requests per path (in batches of 20)
#   BENCH_ROUNDS=5    measured 100 MiB downloads per path
# Run as root from the repository root after `cargo build --release`. Its own network
# namespace and loopback only; needs ip, nft, openssl, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${BENCH_ITERS:-200}
rounds=${BENCH_ROUNDS:-5}
python3 bench/proxy.py target/release/corral "$iters" "$rounds"
