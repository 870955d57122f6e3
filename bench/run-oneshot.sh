#!/usr/bin/env bash
# One-shot sandbox start cost: `corral run -- /bin/true` against bubblewrap and runc,
# interleaved in the same run. Writes medians, p90, means and ratios into the
# oneshot block of BENCHMARKS.md. See bench/README.md.
#
#   BENCH_ITERS=200   measured rounds (each round runs every tool once)
#   BENCH_WARMUP=5    warm-up rounds, discarded
#   BENCH_BUILD=1     run `cargo build --release` even if target/release/corral exists
#
# A benchmark, not a test: missed targets print FAIL and the exit status stays 0.
# Run as root (runc, and corral's isolation layers, need it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$here/lib/common.sh"

iters=${BENCH_ITERS:-200}
warmup=${BENCH_WARMUP:-5}
for v in "$iters" "$warmup"; do
	[[ $v =~ ^[0-9]+$ ]] || {
		bench_log "BENCH_ITERS and BENCH_WARMUP must be non-negative integers"
		exit 2
	}
done
((iters > 0)) || {
	bench_log "BENCH_ITERS must be at least 1"
	exit 2
}

# The command line as it will be recorded next to the figures.
command_line="BENCH_ITERS=$iters"
[[ -n ${BENCH_WARMUP:-} ]] && command_line+=" BENCH_WARMUP=$warmup"
[[ ${BENCH_BUILD:-0} == 1 ]] && command_line+=" BENCH_BUILD=1"
command_line+=" bench/run-oneshot.sh"

((EUID == 0)) || bench_log "warning: not root; runc and corral will likely fail"

python=/usr/bin/python3
[[ -x $python ]] || {
	bench_log "$python is required"
	exit 2
}

ensure_pkgs bubblewrap:/usr/bin/bwrap runc:/usr/sbin/runc time:/usr/bin/time
ensure_corral "$repo"

tmp=$(mktemp -d -t corral-bench-oneshot.XXXXXX)
cleanup() {
	local rc=$?
	# Containers still registered in our private runc state dir (the driver deletes
	# them too; this covers an interrupted run).
	if [[ -x /usr/sbin/runc && -d $tmp/runc-state ]]; then
		local cid
		for cid in $(/usr/sbin/runc --root "$tmp/runc-state" list -q 2>/dev/null); do
			/usr/sbin/runc --root "$tmp/runc-state" delete -f "$cid" >/dev/null 2>&1 || true
		done
	fi
	unmount_under "$tmp"
	rm -rf --one-file-system -- "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$python" -B "$here/lib/runc_bundle.py" "$tmp/bundle" /bin/true

"$python" -B "$here/lib/oneshot.py" \
	--repo "$repo" \
	--tmp "$tmp" \
	--runc-bundle "$tmp/bundle" \
	--iters "$iters" \
	--warmup "$warmup" \
	--command "$command_line" \
	--markdown "$repo/BENCHMARKS.md" \
	--json "$repo/bench/out/oneshot.json"
