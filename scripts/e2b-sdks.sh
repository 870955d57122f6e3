#!/usr/bin/env bash
# Installs the official E2B SDKs for the E2B-compatibility tests and benchmark, from
# the package registries: Python `e2b` 2.x in a venv (target/e2b-venv) and JS `e2b`
# with the machine's Node (target/e2b-node). Idempotent: a second run with both in
# place returns at once. Prints nothing on success unless asked (-v).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/e2b-venv"
node="$root/target/e2b-node"
# One installer at a time (tests run in parallel and may all call this).
mkdir -p "$root/target"
exec 9>"$root/target/.e2b-sdks.lock"
flock 9
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import e2b' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'e2b>=2,<3'
fi
if [ ! -f "$node/node_modules/e2b/package.json" ]; then
    mkdir -p "$node"
    (cd "$node" && { [ -f package.json ] || echo '{"private":true}' > package.json; } && npm install --silent --no-audit --no-fund e2b >/dev/null)
fi
