#!/usr/bin/env bash
# Fuzzes what strangers can reach (docs/fuzzing.md): builds every target of fuzz/ with
# cargo fuzz and runs each for SECONDS per target, starting from its seeds in
# fuzz/corpus/TARGET/ (and what earlier runs found there). Stops at the first crash and
# prints the reproducer.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      (default: 30 seconds, every target)
#   FUZZ_JOBS=N       run N targets at once (default 1: the machines have 2 cores)
#   FUZZ_SANITIZER=none|address   (default address: dependencies hold unsafe code)
#
# Reproduce a crash: cargo +nightly fuzz run -O -a TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
shift || true
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1)); then
    echo "fuzz.sh: SECONDS must be a whole number of seconds, e.g. scripts/fuzz.sh 30" >&2
    exit 2
fi
san=${FUZZ_SANITIZER:-address}
jobs=${FUZZ_JOBS:-1}

# cargo fuzz needs a nightly compiler (sanitizers, -Z flags); the build machines have one
# installed by rustup and cannot download others. The main workspace keeps its pinned
# toolchain (rust-toolchain.toml); only fuzz/ is built with nightly.
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain; install it with: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo +nightly install cargo-fuzz --locked
fi

build_flags=(-O -a -s "$san")
cd fuzz
if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Dictionaries: the tokens each parser looks for.
dict_for() {
    case $1 in
        http_head) echo dict/http.dict ;;
        api_json | mcp_frame | ctl_message | catalog) echo dict/json.dict ;;
        recipe) echo dict/recipe.dict ;;
        policy_bundle) echo dict/cedar.dict ;;
    esac
}

echo "== fuzz: building ${#targets[@]} targets (sanitizer $san)"
start=$SECONDS
if ((${#targets[@]} == 1)); then
    cargo +nightly fuzz build "${build_flags[@]}" "${targets[0]}"
else
    cargo +nightly fuzz build "${build_flags[@]}"
fi
mkdir -p target
echo "== fuzz: built in $((SECONDS - start)) s"

run_one() {
    local t=$1 dict args
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    dict=$(dict_for "$t")
    [[ -n $dict ]] && args+=(-dict="$dict")
    mkdir -p "corpus/$t"
    if ! cargo +nightly fuzz run "${build_flags[@]}" "$t" "corpus/$t" -- "${args[@]}" \
        >"target/fuzz-$t.log" 2>&1; then
        echo "== fuzz: $t FAILED; log: fuzz/target/fuzz-$t.log" >&2
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "target/fuzz-$t.log" | head -5 >&2 || true
        local a
        a=$(ls -t "artifacts/$t"/* 2>/dev/null | head -1 || true)
        if [[ -n $a ]]; then
            echo "== reproducer: fuzz/$a; replay it with:" >&2
            echo "   (cd fuzz && cargo +nightly fuzz run ${build_flags[*]} $t $a)" >&2
        fi
        return 1
    fi
    local execs
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "target/fuzz-$t.log" | grep -oE '[0-9]+$' || echo '?')
    echo "== fuzz: $t ok ($execs runs in ${secs} s)"
}

failed=0
running=0
for t in "${targets[@]}"; do
    if ((jobs > 1)); then
        run_one "$t" &
        running=$((running + 1))
        if ((running >= jobs)); then
            wait -n || failed=1
            running=$((running - 1))
        fi
    else
        run_one "$t" || { failed=1; break; }
    fi
    ((failed)) && break
done
while ((running > 0)); do
    wait -n || failed=1
    running=$((running - 1))
done
if ((failed)); then
    echo "fuzz.sh: a target crashed (see above); fix it and add a unit test that reproduces it" >&2
    exit 1
fi
echo "== fuzz: every target ran ${secs} s without a crash"
