# shellcheck shell=bash
# Helpers shared by bench/*.sh. Source it; it defines functions only.

bench_log() { printf '[bench] %s\n' "$*" >&2; }

# ensure_pkgs PKG:BINARY... : install each Debian package whose binary is missing.
# Tries `apt-get install` first and runs `apt-get update` only if that fails.
# Never fails itself: a package that cannot be installed is reported and the
# caller finds the binary missing later (and marks that tool unavailable).
ensure_pkgs() {
	local missing=() spec
	for spec in "$@"; do
		[[ -x ${spec#*:} ]] || missing+=("${spec%%:*}")
	done
	((${#missing[@]})) || return 0
	if ((EUID != 0)); then
		bench_log "not root: cannot install ${missing[*]}"
		return 0
	fi
	bench_log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q "${missing[@]}" >&2; then
		bench_log "install failed; running apt-get update and retrying"
		apt-get update -q >&2 || true
		apt-get install -y -q "${missing[@]}" >&2 || bench_log "could not install ${missing[*]}"
	fi
	return 0
}

# ensure_corral REPO : build target/release/corral if it is missing (or always
# when BENCH_BUILD=1). A failed build is reported, not fatal: the driver then
# finds corral unavailable and still measures the peers.
ensure_corral() {
	local repo=$1
	if [[ -x $repo/target/release/corral && ${BENCH_BUILD:-0} != 1 ]]; then
		return 0
	fi
	if ! command -v cargo >/dev/null 2>&1; then
		bench_log "cargo not found: cannot build corral"
		return 0
	fi
	bench_log "building corral: cargo build --release"
	(cd "$repo" && cargo build --release >&2) || bench_log "cargo build --release failed"
	return 0
}

# unmount_under DIR : unmount anything still mounted below DIR (deepest first),
# so that removing DIR can never reach through a bind mount into the host.
unmount_under() {
	local dir=$1 mp
	[[ -d $dir ]] || return 0
	# /proc/self/mounts field 2 is the mount point (octal-escaped; our paths are plain).
	while read -r mp; do
		umount -l "$mp" 2>/dev/null || true
	done < <(awk -v d="$dir" 'index($2, d "/") == 1 || $2 == d { print $2 }' /proc/self/mounts | sort -r)
}

# stop_daemon_and_remove DIR : stop the benchmark daemon whose pid is in DIR/serve/pid
# (TERM, then KILL after 20 s), remove the daemons' cgroups, unmount anything below
# DIR, then remove DIR. For the EXIT trap of the scripts that start a daemon.
stop_daemon_and_remove() {
	local dir=$1 pid cg
	if [[ -f $dir/serve/pid ]]; then
		pid=$(<"$dir/serve/pid")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	for cg in /sys/fs/cgroup/*/corral-bench-*-serve; do
		[[ -d $cg ]] && rmdir "$cg" 2>/dev/null || true
	done
	unmount_under "$dir"
	rm -rf --one-file-system -- "$dir"
}
