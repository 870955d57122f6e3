#!/usr/bin/env bash
# The daemon over loopback HTTP: warm and cold create -> exec `true`, exec round trips
# in a running sandbox, peers (one-shot corral run, bubblewrap, runc) interleaved in
# the same run, 100 concurrent clients, density of idle sandboxes, and the daemon's
# RSS while streaming a 1 GiB file. Writes the daemon block of BENCHMARKS.md.
# See bench/README.md.
#
#   BENCH_ITERS=500        measured rounds of warm, cold and peer rounds
#   BENCH_WARMUP=10        warm-up rounds per phase, discarded
#   BENCH_EXEC_ITERS=1000  exec round trips per command in one running sandbox
#   BENCH_CLIENTS=100      concurrent client threads
#   BENCH_CONCURRENT_S=60  how long they run
#   BENCH_DENSITY=500      idle sandboxes held at once
#   BENCH_FILE_MIB=1024    size of the file streamed up and down
#   BENCH_POOL=4           the daemon's pool_size
#   BENCH_BUILD=1          run `cargo build --release` even if target/release/corral exists
#
# A benchmark, not a test: missed targets print FAIL and the exit status stays 0.
# Run as root. Only loopback traffic: the daemon listens on 127.0.0.1:0.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$here/lib/common.sh"

declare -A knob=(
	[BENCH_ITERS]=500 [BENCH_WARMUP]=10 [BENCH_EXEC_ITERS]=1000 [BENCH_CLIENTS]=100
	[BENCH_CONCURRENT_S]=60 [BENCH_DENSITY]=500 [BENCH_FILE_MIB]=1024 [BENCH_POOL]=4
)
command_line=""
for k in BENCH_ITERS BENCH_WARMUP BENCH_EXEC_ITERS BENCH_CLIENTS BENCH_CONCURRENT_S \
	BENCH_DENSITY BENCH_FILE_MIB BENCH_POOL; do
	v=${!k:-${knob[$k]}}
	[[ $v =~ ^[0-9]+$ ]] || {
		bench_log "$k must be a non-negative integer"
		exit 2
	}
	knob[$k]=$v
	[[ -n ${!k:-} ]] && command_line+="$k=$v "
done
((knob[BENCH_ITERS] > 0 && knob[BENCH_CLIENTS] > 0 && knob[BENCH_DENSITY] > 0)) || {
	bench_log "BENCH_ITERS, BENCH_CLIENTS and BENCH_DENSITY must be at least 1"
	exit 2
}
[[ ${BENCH_BUILD:-0} == 1 ]] && command_line+="BENCH_BUILD=1 "
command_line+="bench/run-daemon.sh"

((EUID == 0)) || bench_log "warning: not root; corral serve and runc will likely fail"

python=/usr/bin/python3
[[ -x $python ]] || {
	bench_log "$python is required"
	exit 2
}

ensure_pkgs bubblewrap:/usr/bin/bwrap runc:/usr/sbin/runc time:/usr/bin/time
ensure_corral "$repo"
stale=0
if [[ -x $repo/target/release/corral ]]; then
	stale=$(find "$repo/crates" "$repo/Cargo.lock" -type f -newer "$repo/target/release/corral" | wc -l)
	((stale == 0)) || bench_log "warning: $stale source files are newer than target/release/corral (BENCH_BUILD=1 rebuilds)"
fi

tmp=$(mktemp -d -t corral-bench-daemon.XXXXXX)
cleanup() {
	local rc=$? pidf pid cg
	# An interrupted driver may leave its daemon running: SIGTERM removes its
	# sandboxes; give it time, then SIGKILL.
	for pidf in "$tmp"/*/pid; do
		[[ -f $pidf ]] || continue
		pid=$(<"$pidf")
		if kill -0 "$pid" 2>/dev/null && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$repo/target/release/corral"* ]]; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	if [[ -x /usr/sbin/runc && -d $tmp/runc-state ]]; then
		local cid
		for cid in $(/usr/sbin/runc --root "$tmp/runc-state" list -q 2>/dev/null); do
			/usr/sbin/runc --root "$tmp/runc-state" delete -f "$cid" >/dev/null 2>&1 || true
		done
	fi
	# Our cgroup parents (named after the driver's pid): remove them if empty; the
	# driver reports anything left in them as a leak.
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

"$python" -B "$here/lib/runc_bundle.py" "$tmp/bundle" /bin/true

"$python" -B "$here/lib/daemon.py" \
	--repo "$repo" \
	--tmp "$tmp" \
	--runc-bundle "$tmp/bundle" \
	--pool "${knob[BENCH_POOL]}" \
	--iters "${knob[BENCH_ITERS]}" \
	--warmup "${knob[BENCH_WARMUP]}" \
	--exec-iters "${knob[BENCH_EXEC_ITERS]}" \
	--clients "${knob[BENCH_CLIENTS]}" \
	--concurrent-s "${knob[BENCH_CONCURRENT_S]}" \
	--density "${knob[BENCH_DENSITY]}" \
	--file-mib "${knob[BENCH_FILE_MIB]}" \
	--stale "$stale" \
	--command "$command_line" \
	--markdown "${BENCH_MARKDOWN-$repo/BENCHMARKS.md}" \
	--json "$repo/bench/out/daemon.json"
