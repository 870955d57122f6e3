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
