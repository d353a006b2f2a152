#!/usr/bin/env bash
# Shared by test-install.sh and test-nspawn.sh: a cached Debian root and
# helpers. Source it; it does nothing on its own.

# RELEASE is the Debian release of the throwaway root; the cache is keyed by it.
RELEASE=${EDDY_TEST_RELEASE:-bookworm}
CACHE_DIR=${EDDY_TEST_CACHE:-/var/cache/eddy-test}

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
# need_root: the install tests use debootstrap, chroot, mount and systemd-nspawn.
need_root() { [ "$(id -u)" = 0 ] || die "run as root: debootstrap, chroot, mount and systemd-nspawn need it"; }

# apt_mirror prints the Debian mirror apt on this machine is configured
# with (deb822 .sources first, then one-line .list files), so the root is
# built from the same place as the host's packages.
apt_mirror() {
	local f m
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		m=$(awk '/^URIs:/ {print $2; exit}' "$f")
		case "$m" in */debian) echo "$m"; return 0 ;; esac
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -e "$f" ] || continue
		m=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
		case "$m" in */debian | */debian/) echo "${m%/}"; return 0 ;; esac
	done
	return 1
}

# root_tarball [ARCH] prints the path of a cached minbase root for ARCH
# (default amd64) with systemd, systemd-sysv and dbus, building it with
# debootstrap the first time (a few minutes; later runs only unpack it).
root_tarball() {
	local arch=${1:-amd64} tar dir mirror
	tar="$CACHE_DIR/$RELEASE-$arch-minbase-systemd.tar"
	if [ -s "$tar" ]; then
		echo "$tar"
		return 0
	fi
	mirror=$(apt_mirror) || die "no Debian mirror in /etc/apt/sources.list*"
	mkdir -p "$CACHE_DIR"
	dir=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
	log "debootstrap $RELEASE $arch (minbase + systemd) into $dir; cached as $tar"
	local foreign=()
	[ "$arch" = amd64 ] || foreign=(--foreign)
	if ! debootstrap --variant=minbase --arch="$arch" "${foreign[@]}" \
		--include=systemd,systemd-sysv,dbus "$RELEASE" "$dir" "$mirror" >"$dir.log" 2>&1; then
		tail -20 "$dir.log" >&2
		rm -rf "$dir"
		die "debootstrap failed (log: $dir.log)"
	fi
	if [ "$arch" != amd64 ]; then
		second_stage "$arch" "$dir" >>"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; die "second stage failed"; }
	fi
	# Reproducible enough for a cache: no machine-id, no apt lists.
	rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin
	: >"$dir/etc/machine-id"
	chmod 0755 "$dir" # mktemp's 0700 would become the root's /
	tar -C "$dir" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
	rm -rf "$dir"
	echo "$tar"
}

# free_port prints a loopback port that nothing listens on, TCP or UDP (eddy
# takes both: HTTP/2 and HTTP/3 on the same number).
free_port() {
	local p hex _
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		hex=$(printf ':%04X ' "$p")
		if ! cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null | grep -q "$hex"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
