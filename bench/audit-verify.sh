#!/bin/sh
# Audit verify throughput: writes N records (default 500,000) shaped like a capability
# call's (arguments, decision, output; ~600 bytes of canonical JSON each) into a fresh
# audit.db, then times `corral audit verify --data-dir DIR` (the whole chain recomputed,
# columns cross-checked) three times. Must reach >= 100,000 records/s.
#
#   sh bench/audit-verify.sh            # N=500000
#   N=1000000 sh bench/audit-verify.sh
set -eu
cd "$(dirname "$0")/.."
N=${N:-500000}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
cargo build --release -q -p corral
AUDIT_BENCH_DIR=$DIR N=$N cargo test -q -p corral-govern --release verify_throughput \
    -- --ignored --nocapture 2>&1 | grep verified
for i in 1 2 3; do
    # The binary's own report: records, elapsed ms, records/s.
    target/release/corral audit verify --data-dir "$DIR"
done
