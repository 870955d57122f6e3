#!/usr/bin/env bash
# Issue 6's figures for the shipped `python` recipe: rebuild from a warm cache, and
# create -> exec from `python` versus `host`. Writes the python-template block of
# BENCHMARKS.md.
#
#   BENCH_STORE=DIR bench/run-python-template.sh
#
# DIR is a data dir in which `python` was built beforehand (this script sends no packet
# off the machine; the build is an install step that fetches Debian packages):
#   corral template debootstrap --name debian --data-dir DIR
#   corral template build --name python -f resources/templates/python/Recipe \
#       resources/templates/python --data-dir DIR
# BENCH_ITERS=100 measured rounds. A benchmark, not a test: a missed target prints FAIL.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$here/lib/common.sh"
store=${BENCH_STORE:?set BENCH_STORE to a data dir holding a built python template}
iters=${BENCH_ITERS:-100}
command_line="BENCH_STORE=DIR bench/run-python-template.sh"
[[ -n ${BENCH_ITERS:-} ]] && command_line="BENCH_ITERS=$iters $command_line"
ensure_corral "$repo"

tmp=$(mktemp -d -t corral-bench-python.XXXXXX)
cleanup() {
	local rc=$?
	stop_daemon_and_remove "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/bin/python3 -B "$here/lib/python_template.py" --repo "$repo" --tmp "$tmp" \
	--store "$store" --iters "$iters" --command "$command_line" \
	--markdown "${BENCH_MARKDOWN-$repo/BENCHMARKS.md}" --json "$repo/bench/out/python-template.json"
