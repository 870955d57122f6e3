#!/usr/bin/env bash
# The E2B-compatible endpoint through the official Python SDK, next to corral's native
# API in the same run and daemon: Sandbox.create() -> commands.run("true") -> kill(),
# over loopback. Writes the e2b block of BENCHMARKS.md. See docs/e2b.md.
#
#   BENCH_ITERS=200   measured rounds per client (interleaved: e2b, native, e2b, ...)
#   BENCH_WARMUP=10   warm-up rounds per client, discarded
#   BENCH_POOL=4      the daemon's pool_size
#   BENCH_BUILD=1     run `cargo build --release` even if target/release/corral exists
#
# A benchmark, not a test: a missed target prints FAIL and the exit status stays 0.
# Run as root. Only loopback traffic: the daemon listens on 127.0.0.1:0 and the SDK
# is pointed at it (E2B_API_URL, E2B_SANDBOX_URL, E2B_DOMAIN).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$here/lib/common.sh"

iters=${BENCH_ITERS:-200}
warmup=${BENCH_WARMUP:-10}
pool=${BENCH_POOL:-4}
command_line="BENCH_ITERS=$iters BENCH_WARMUP=$warmup BENCH_POOL=$pool bench/run-e2b.sh"

ensure_corral "$repo"
"$repo/scripts/e2b-sdks.sh"

data=$(mktemp -d /tmp/corral-bench-e2b.XXXXXX)
printf 'pool_size = %s\nlisten = "127.0.0.1:0"\n' "$pool" >"$data/corral.toml"
"$repo/target/release/corral" serve --data-dir "$data/dir" --config "$data/corral.toml" \
	>"$data/log" 2>&1 &
daemon=$!
cleanup() {
	kill "$daemon" 2>/dev/null || true
	wait "$daemon" 2>/dev/null || true
	rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 200); do
	[[ -s $data/dir/listen.addr ]] && break
	sleep 0.05
done
addr=$(tr -d '\n' <"$data/dir/listen.addr")

env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy \
	E2B_API_URL="http://$addr/e2b" E2B_SANDBOX_URL="http://$addr/e2b/sandbox" \
	E2B_DOMAIN="$addr" E2B_API_KEY="$(cat "$data/dir/admin-key")" \
	CORRAL_BENCH_ADDR="$addr" CORRAL_BENCH_ITERS="$iters" CORRAL_BENCH_WARMUP="$warmup" \
	CORRAL_BENCH_CMD="$command_line" PYTHONPATH="$here/lib" \
	"$repo/target/e2b-venv/bin/python" "$here/lib/e2b_bench.py" "$repo/BENCHMARKS.md"
