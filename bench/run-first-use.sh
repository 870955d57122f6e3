#!/usr/bin/env bash
# The shipped `python` and `node` recipes built by the daemon on first use, for real:
# a fresh `corral serve`, then `corral sandbox create --template python` (the create
# answers template_building, the CLI follows the build's progress and retries), the
# same for `node` (its `debian` base is then built already), and a check of each
# template (WORKDIR, USER, the packages). Prints the wall time of each create.
#
# Needs the Debian archive (deb.debian.org, security.debian.org: package registries).
# RUN steps reach them only through corral's egress proxy. Where those names resolve
# into a reserved range (as on the project's build machines, 203.0.113.0/24), the
# proxy's rebinding protection refuses them; this script passes the addresses the host
# resolves as `[network] resolve` (trusted as given, like curl --resolve).
# Run as root from the repository root after `cargo build --release`. About 1.7 GiB in
# a temporary data dir, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${CORRAL:-$PWD/target/release/corral}
D=$(mktemp -d /tmp/corral-first-use.XXXXXX)
PID=
cleanup() {
    [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" || true
    rm -rf "$D"
}
trap cleanup EXIT
resolve=""
for h in deb.debian.org security.debian.org; do
    ip=$(getent ahostsv4 "$h" | awk 'NR==1{print $1}')
    [[ -n $ip ]] || { echo "run-first-use.sh: cannot resolve $h" >&2; exit 1; }
    resolve+="\"$h\" = \"$ip\", "
done
cat > "$D/corral.toml" <<EOT
pool_size = 0
cgroup_parent = "corral-bench-first-use-$$"
runtime_dir = "$D/run"
[network]
cidr = "10.203.248.0/24"
resolve = { ${resolve%, } }
EOT
"$C" serve --data-dir "$D/data" --listen 127.0.0.1:0 --config "$D/corral.toml" > "$D/serve.log" 2>&1 &
PID=$!
for _ in $(seq 200); do [[ -s $D/data/listen.addr ]] && break; sleep 0.05; done
export CORRAL_URL=http://$(cat "$D/data/listen.addr") CORRAL_API_KEY=$(cat "$D/data/admin-key")
declare -A check=(
    [python]='pwd; id -u; python3 -c "import numpy, pandas, matplotlib; print(\"numpy\", numpy.__version__, \"pandas\", pandas.__version__)"'
    [node]='pwd; id -u; node -e "console.log(\"node\", process.version)"'
)
for t in python node; do
    t0=$(date +%s.%N)
    id=$("$C" sandbox create --template "$t" 2> "$D/create-$t.log")
    t1=$(date +%s.%N)
    printf '== %s: first create (build on first use) took %.1f s\n' "$t" "$(awk "BEGIN{print $t1 - $t0}")"
    tail -3 "$D/create-$t.log" | sed 's/^/   /'
    "$C" sandbox exec "$id" -- sh -c "${check[$t]}" | sed 's/^/   /'
    "$C" sandbox rm "$id" > /dev/null
    t0=$(date +%s.%N)
    id=$("$C" sandbox create --template "$t")
    t1=$(date +%s.%N)
    printf '   second create: %.3f s\n' "$(awk "BEGIN{print $t1 - $t0}")"
    "$C" sandbox rm "$id" > /dev/null
done
"$C" template builds 2>/dev/null | sed 's/^/   /' || true
