#!/usr/bin/env bash
# test-foreign.sh DIST: the arm64 and armhf packages' contents run on their
# CPUs: each .deb is unpacked (dpkg-deb -x) and its /usr/bin/eddy runs
# `version` and `check-config` on the package's own /etc/eddy/eddy.toml under
# qemu-user: qemu-aarch64, and qemu-arm -cpu arm1176 (the Pi Zero/1's ARMv6
# core, on which a binary built for ARMv7 dies with SIGILL). Installing them
# into a foreign Debian root would need binfmt_misc on the host; this needs
# nothing but qemu-user.
set -euo pipefail
dist=${1:?usage: test-foreign.sh DIST}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
check() { # DEBARCH WANT EMULATOR...
	local arch=$1 want=$2 deb v
	shift 2
	deb=$(find "$dist" -maxdepth 1 -name "eddy_*_$arch.deb" | sort | tail -1)
	[ -n "$deb" ] || { echo "no eddy_*_$arch.deb in $dist"; status=1; return; }
	[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || { echo "$deb: Architecture is not $arch"; status=1; return; }
	mkdir -p "$tmp/$arch"
	dpkg-deb -x "$deb" "$tmp/$arch"
	if ! v=$("$@" "$tmp/$arch/usr/bin/eddy" version 2>&1) || ! grep -q "$want" <<<"$v"; then
		echo "$arch: eddy version under $*: $v"
		status=1
		return
	fi
	if ! "$@" "$tmp/$arch/usr/bin/eddy" check-config "$tmp/$arch/etc/eddy/eddy.toml" >/dev/null; then
		echo "$arch: check-config of the package's eddy.toml failed under $*"
		status=1
		return
	fi
	echo "$arch: $v; its eddy.toml passes check-config ($*)"
}
check arm64 'linux/arm64' qemu-aarch64
check armhf 'linux/arm GOARM=6' qemu-arm -cpu arm1176
exit "$status"
