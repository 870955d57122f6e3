#!/usr/bin/env bash
# Makes the Debian package tarballs the template tests unpack offline, from
# `debootstrap --make-tarball` against the host's own Debian mirror (the package
# registry; the tests themselves send no packet off the machine), kept between runs:
#   target/debian-fixture/bookworm-minbase.tgz  minbase (~45 MB, ~20 s)
#   target/debian-fixture/bookworm-python.tgz   minbase + python3 with numpy, pandas and
#                                               matplotlib (~235 MB, ~40 s): the
#                                               code-interpreter example's template
# Run as root; used by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=bookworm
dir=target/debian-fixture
python_pkgs=python3,python3-numpy,python3-pandas,python3-matplotlib
[[ -s $dir/$suite-minbase.tgz && -s $dir/$suite-python.tgz ]] && exit 0

# The host's mirror for the suite: deb822 (*.sources) or one-line (*.list) entries.
mirror=$(
    {
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f $f ]] || continue
            awk -v s="$suite" 'BEGIN{RS=""; FS="\n"}
                { t=""; u=""; ss="";
                  for (i=1;i<=NF;i++) {
                    if ($i ~ /^Types:/) t=$i; if ($i ~ /^URIs:/) u=$i; if ($i ~ /^Suites:/) ss=$i }
                  if (t ~ /[ \t]deb([ \t]|$)/ && (" " ss " ") ~ ("[ \t]" s "[ \t]")) {
                    sub(/^URIs:[ \t]*/, "", u); split(u, a, /[ \t]+/); print a[1] } }' "$f"
        done
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v s="$suite" '$1=="deb" { i=2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                           if ($(i+1)==s) print $i }'
    } | head -n1 || true
)
if [[ -z $mirror ]]; then
    echo "debian-fixture.sh: no Debian mirror for $suite in /etc/apt/sources.list*" >&2
    exit 1
fi
command -v debootstrap >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends debootstrap >/dev/null ||
        { apt-get update >/dev/null && apt-get install -y --no-install-recommends debootstrap >/dev/null; }
}
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work" "$dir"/*.tmp' EXIT
fetch() { # NAME [--include=...]
    local out=$dir/$suite-$1.tgz
    shift
    [[ -s $out ]] && return 0
    echo "debian-fixture.sh: fetching the packages of $out (once)"
    rm -rf "$work/target"
    debootstrap --make-tarball="$out.tmp" --variant=minbase "$@" "$suite" "$work/target" "$mirror" >/dev/null
    mv "$out.tmp" "$out"
}
fetch minbase
fetch python --include="$python_pkgs"
