#!/usr/bin/env bash
# test-arm64.sh DEB: installs eddy's arm64 .deb into an arm64 Debian root
# (debootstrap --foreign, finished under emulation, cached) and runs it there
# under qemu-user: dpkg -i (maintainer scripts and all, as arm64 code), the
# user and files, `eddy version`, `eddy check-config`, the daemon serving
# /healthz, then purge.
#
# Running arm64 programs inside a chroot needs binfmt_misc. This script never
# touches the host's: it works in a new user and mount namespace (ids mapped
# one to one) with its own binfmt_misc instance (Linux 6.7 and later), where
# it registers qemu-aarch64-static with the F flag (the kernel holds the
# emulator open, so the root needs no copy). The static emulator comes from
# Debian's qemu-user-static package, fetched with `apt-get download` and
# unpacked into the cache, not installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=packaging/test/lib.sh
. "$here/lib.sh"
need_root

deb=$(realpath "${1:?usage: test-arm64.sh eddy_VERSION_arm64.deb}")
start=$SECONDS
mkdir -p "$CACHE_DIR"
qemu=$CACHE_DIR/qemu/x/usr/bin/qemu-aarch64-static
if [ ! -x "$qemu" ]; then
	(cd "$CACHE_DIR/qemu" 2>/dev/null || { mkdir -p "$CACHE_DIR/qemu" && cd "$CACHE_DIR/qemu"; } &&
		apt-get download qemu-user-static >/dev/null 2>&1 && dpkg-deb -x qemu-user-static_*.deb x) ||
		die "could not fetch qemu-user-static"
fi
# The aarch64 ELF magic and mask, as Debian's qemu-user-static registers them.
magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
register=":eddy-aarch64:M::$magic:$mask:$qemu:F"

# in_userns SCRIPT: bash -c SCRIPT as root of new user, mount and pid
# namespaces (the pid namespace lets it mount /proc) whose ids 0-65535 are the
# host's, with a private binfmt_misc that runs aarch64 binaries under qemu.
in_userns() {
	local fifo pid
	fifo=$(mktemp -u)
	mkfifo "$fifo"
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --user --mount --pid --fork --propagation private bash -c 'read -r _ <"$0"; rm -f "$0"
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
		printf "%s" "$1" >/proc/sys/fs/binfmt_misc/register
		exec bash -c "$2"' "$fifo" "$register" "$1" &
	pid=$!
	# Map the ids once unshare has made the namespace.
	while [ "$(readlink "/proc/$pid/ns/user")" = "$(readlink /proc/self/ns/user)" ]; do sleep 0.05; done
	echo "0 0 65536" >"/proc/$pid/uid_map"
	echo "0 0 65536" >"/proc/$pid/gid_map"
	echo go >"$fifo"
	wait "$pid"
}

tar=$CACHE_DIR/$RELEASE-arm64-minbase.tar
if [ ! -s "$tar" ]; then
	mirror=$(apt_mirror) || die "no Debian mirror in /etc/apt/sources.list*"
	dir=$(mktemp -d "$CACHE_DIR/build-arm64.XXXXXX")
	log "debootstrap $RELEASE arm64 (minbase) into $dir, second stage under qemu; cached as $tar"
	debootstrap --foreign --variant=minbase --arch=arm64 "$RELEASE" "$dir" "$mirror" >"$dir.log" 2>&1 ||
		{ tail -20 "$dir.log" >&2; die "debootstrap (first stage) failed"; }
	# container=lxc: no mknod in a user namespace, so debootstrap binds /dev nodes.
	in_userns "container=lxc chroot '$dir' /debootstrap/debootstrap --second-stage" >>"$dir.log" 2>&1 ||
		{ tail -20 "$dir.log" >&2; die "debootstrap --second-stage under qemu failed"; }
	rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin
	chmod 0755 "$dir"
	tar -C "$dir" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
	rm -rf "$dir"
	log "arm64 root cached in $((SECONDS - start)) s"
fi

root=$(mktemp -d /var/tmp/eddy-arm64.XXXXXX)
work=$(mktemp -d)
trap 'rm -rf "$root" "$work"' EXIT
tar -C "$root" -xf "$tar"
chmod 0755 "$root"
cp "$deb" "$root/tmp/eddy.deb"
port=$(free_port)
# Everything below runs arm64 code under qemu: dpkg, the maintainer scripts
# (/bin/sh, useradd), eddy.
if ! in_userns "
set -euo pipefail
R='$root'
in_root() { chroot \"\$R\" \"\$@\"; }
mount -t proc proc \"\$R/proc\"
in_root dpkg --print-architecture | grep -qx arm64
in_root groupadd --system gpio
in_root dpkg -i /tmp/eddy.deb >'$work/install.log' 2>&1 || { cat '$work/install.log'; exit 1; }
echo \"dpkg -i: \$(in_root dpkg-query -W -f='\${Package} \${Version} \${Architecture}' eddy)\"
echo \"user: \$(in_root id eddy)\"
[ \"\$(in_root stat -c '%a %U:%G' /var/lib/eddy)\" = '750 eddy:eddy' ]
in_root test -L /etc/systemd/system/multi-user.target.wants/eddy.service
echo \"eddy version: \$(in_root eddy version)\"
in_root eddy check-config /etc/eddy/eddy.toml
chroot --userspec=eddy:eddy \"\$R\" eddy run --config /etc/eddy/eddy.toml --listen 127.0.0.1:$port >'$work/daemon.log' 2>&1 &
d=\$!
for _ in \$(seq 150); do
	curl -sk --max-time 2 https://127.0.0.1:$port/healthz >'$work/health' 2>/dev/null && break
	kill -0 \$d 2>/dev/null || { cat '$work/daemon.log'; exit 1; }
	sleep 0.2
done
echo \"eddy run (arm64, as eddy) /healthz: \$(cat '$work/health')\"
kill -TERM \$d
wait \$d
in_root dpkg -P eddy >/dev/null
! in_root test -e /var/lib/eddy
echo 'dpkg -P: /var/lib/eddy gone'
" 2>&1 | while read -r line; do log "$line"; done; then
	die "arm64 install test failed"
fi
log "test-arm64: all checks passed in $((SECONDS - start)) s"
