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
	local rc=$? pid
	if [[ -f $tmp/serve/pid ]]; then
		pid=$(<"$tmp/serve/pid")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	for cg in /sys/fs/cgroup/*/corral-bench-*-serve; do
		[[ -d $cg ]] && rmdir "$cg" 2>/dev/null || true
	done
	unmount_under "$tmp"
	rm -rf --one-file-system -- "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/bin/python3 -B "$here/lib/templates.py" --repo "$repo" --tmp "$tmp" \
	--iters "$iters" --mib "$mib" --command "$command_line" \
	--markdown "${BENCH_MARKDOWN-$repo/BENCHMARKS.md}" --json "$repo/bench/out/templates.json"
