#!/usr/bin/env bash
# Create -> exec from an imported template with >= 200 MB of files versus from `host`,
# interleaved on one daemon, and rebuilds of an unchanged recipe from a warm cache.
# Writes the templates block of BENCHMARKS.md.
#
#   BENCH_ITERS=300   measured rounds (one create of each template per round)
#   BENCH_MIB=220     MiB of data files in the template
#
# A benchmark, not a test: a missed target prints FAIL, the exit status stays 0.
# Run as root. Only loopback traffic.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$here/lib/common.sh"
iters=${BENCH_ITERS:-300}
mib=${BENCH_MIB:-220}
command_line="bench/run-templates.sh"
[[ -n ${BENCH_ITERS:-} ]] && command_line="BENCH_ITERS=$iters $command_line"
[[ -n ${BENCH_MIB:-} ]] && command_line="BENCH_MIB=$mib $command_line"
ensure_corral "$repo"

tmp=$(mktemp -d -t corral-bench-templates.XXXXXX)
cleanup() {
	local rc=$?
	stop_daemon_and_remove "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/bin/python3 -B "$here/lib/templates.py" --repo "$repo" --tmp "$tmp" \
	--iters "$iters" --mib "$mib" --command "$command_line" \
	--markdown "${BENCH_MARKDOWN-$repo/BENCHMARKS.md}" --json "$repo/bench/out/templates.json"
