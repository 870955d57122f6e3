#!/usr/bin/env bash
# The code-interpreter scenario, end to end through a running `corral serve`:
# upload a CSV (1 GiB by default) into a `python` sandbox, run analysis code that
# writes a PNG chart and a summary, download both, delete the sandbox.
#
#   examples/code-interpreter/run.sh [OUT_DIR]
#
# Needs: a daemon (CORRAL_URL, CORRAL_API_KEY as for `corral sandbox`), a `python`
# template (see README.md here), python3 on this host to make the data.
# SIZE=bytes of CSV (default 1 GiB); TEMPLATE (default python); CORRAL=the binary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-./code-interpreter-out}
size=${SIZE:-1073741824}
template=${TEMPLATE:-python}
corral=${CORRAL:-corral}
mkdir -p "$out"
work=$(mktemp -d)
id=
cleanup() {
    [[ -n $id ]] && "$corral" sandbox rm "$id" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "making $size bytes of CSV" >&2
python3 "$here/make_data.py" "$work/data.csv" "$size" > "$out/expected.json"

# The writable layer is in memory: it must hold the CSV, and pandas its chunks.
mem=$(( size * 2 + (1 << 30) ))
disk=$(( size + (256 << 20) ))
id=$("$corral" sandbox create --template "$template" --memory "$mem" --disk "$disk" --timeout 30m)
echo "sandbox $id" >&2
"$corral" sandbox cp "$work/data.csv" "$id:/tmp/data.csv"
"$corral" sandbox cp "$here/analysis.py" "$id:/tmp/analysis.py"
"$corral" sandbox exec "$id" --timeout 20m -- python3 /tmp/analysis.py /tmp/data.csv /tmp/out
"$corral" sandbox cp "$id:/tmp/out/chart.png" "$out/chart.png"
"$corral" sandbox cp "$id:/tmp/out/summary.json" "$out/summary.json"
echo "wrote $out/chart.png and $out/summary.json" >&2
