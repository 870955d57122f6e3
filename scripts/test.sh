#!/usr/bin/env bash
# The whole test suite, as root: formatting, lints, unit tests, the privileged
# end-to-end and escape suites, and a release build. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: run as root: the suite creates real namespaces, mounts and cgroups" >&2
    exit 1
fi

scripts/setup.sh
# The Debian packages the debootstrap template test unpacks offline (made once).
scripts/debian-fixture.sh

echo "== rustfmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
# Unit tests, the seccomp kernel tests and the end-to-end/escape/leak suites.
cargo test --workspace --locked

# Fuzz smoke (docs/fuzzing.md): every target of fuzz/ for CORRAL_FUZZ_SMOKE seconds
# (10 is enough to catch a target that no longer builds or crashes on its seeds). Off
# by default: the cold build of fuzz/ (nightly, AddressSanitizer, one codegen unit, its
# own fuzz/target) takes far longer than CI's budget on 2 cores.
if [[ -n ${CORRAL_FUZZ_SMOKE:-} ]]; then
    echo "== fuzz smoke"
    scripts/fuzz.sh "$CORRAL_FUZZ_SMOKE"
fi
