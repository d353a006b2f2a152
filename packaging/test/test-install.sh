#!/usr/bin/env bash
# test-install.sh DEB: installs eddy's amd64 .deb into a throwaway Debian
# root (debootstrap --variant=minbase, cached under /var/cache/eddy-test) and
# checks what an operator would: the user and its device groups, files and
# modes, the registered conffiles, the enabled unit, `eddy version` and
# `eddy check-config` inside the root, the daemon serving /healthz there (on
# a loopback port), the maintainer scripts run twice, an upgrade that keeps a
# locally edited conffile, remove keeping /var/lib/eddy and purge deleting it.
# The root is chrooted into here; test-nspawn.sh boots one under systemd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
# shellcheck source=packaging/test/lib.sh
. "$here/lib.sh"
need_root

deb=$(realpath "${1:?usage: test-install.sh eddy_VERSION_amd64.deb}")
start=$SECONDS
tar=$(root_tarball amd64)
root=$(mktemp -d /var/tmp/eddy-root.XXXXXX)
work=$(mktemp -d)
daemon=
cleanup() {
	[ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true
	umount "$root/proc" 2>/dev/null || true
	rm -rf "$root" "$work"
}
trap cleanup EXIT
tar -C "$root" -xf "$tar"
chmod 0755 "$root" # mktemp's 0700: the eddy user must reach /usr/bin
mount -t proc proc "$root/proc"
log "root unpacked from $tar in $((SECONDS - start)) s"

in_root() { chroot "$root" "$@"; }
field() { in_root dpkg-query -W -f="\${$1}" eddy; } # FIELD: eddy's package field
pass() { log "ok: $*"; }
expect_mode() { # PATH MODE OWNER:GROUP
	local got
	got=$(in_root stat -c '%a %U:%G' "$1")
	[ "$got" = "$2 $3" ] || die "$1: mode and owner $got, want $2 $3"
}

# The groups that own I2C and GPIO devices on a Pi; spi and w1 are left
# missing, so postinst must skip them.
in_root groupadd --system i2c
in_root groupadd --system gpio

# --- install -------------------------------------------------------------
cp "$deb" "$root/tmp/eddy.deb"
t=$SECONDS
in_root dpkg -i /tmp/eddy.deb >"$work/install.log" 2>&1 || { cat "$work/install.log"; die "dpkg -i failed"; }
version=$(field Version)
pass "dpkg -i eddy $version ($((SECONDS - t)) s)"

IFS=: read -r _ _ uid gid _ home shell < <(in_root getent passwd eddy) || die "no eddy user"
[ "$uid" -lt 1000 ] || die "eddy uid $uid is not a system uid"
{ [ "$home" = /var/lib/eddy ] && [ "$shell" = /usr/sbin/nologin ]; } || die "eddy: home $home, shell $shell"
[ "$(in_root getent group eddy | cut -d: -f3)" = "$gid" ] || die "eddy's primary group is not eddy"
groups=$(in_root id -nG eddy)
for g in eddy i2c gpio; do
	grep -qw "$g" <<<"$groups" || die "eddy is not in group $g (groups: $groups)"
done
pass "user eddy (uid $uid, system), groups: $groups"

expect_mode /usr/bin/eddy 755 root:root
expect_mode /lib/systemd/system/eddy.service 644 root:root
expect_mode /lib/systemd/system/eddy-collect.service 644 root:root
expect_mode /etc/eddy 755 root:root
expect_mode /etc/eddy/eddy.toml 644 root:root
expect_mode /etc/eddy/collect.toml 640 root:eddy
expect_mode /var/lib/eddy 750 eddy:eddy
expect_mode /usr/share/doc/eddy/copyright 644 root:root
in_root test -s /usr/share/doc/eddy/changelog.gz || die "no changelog"
in_root test -s /usr/share/man/man1/eddy.1.gz || die "no man page"
pass "files and modes"

conffiles=$(field Conffiles)
for f in /etc/eddy/eddy.toml /etc/eddy/collect.toml; do
	grep -q "^ $f [0-9a-f]\{32\}$" <<<"$conffiles" || die "$f is not a registered conffile: $conffiles"
done
pass "conffiles registered"

in_root test -L /etc/systemd/system/multi-user.target.wants/eddy.service || die "eddy.service not enabled"
! in_root test -e /etc/systemd/system/multi-user.target.wants/eddy-collect.service || die "eddy-collect.service enabled"
out=$(in_root systemd-analyze verify /lib/systemd/system/eddy.service /lib/systemd/system/eddy-collect.service 2>&1) || die "systemd-analyze verify: $out"
# Inside the root, eddy collect may not exist yet: only eddy.service must verify silently.
if grep -v 'eddy-collect' <<<"$out" | grep -q .; then die "systemd-analyze verify: $out"; fi
pass "eddy.service enabled, eddy-collect.service not; both verify in the root"

v=$(in_root eddy version)
grep -q '^eddy .*linux/amd64' <<<"$v" || die "eddy version: $v"
pass "eddy version: $v"
in_root eddy check-config /etc/eddy/eddy.toml >/dev/null || die "check-config /etc/eddy/eddy.toml"
pass "eddy check-config /etc/eddy/eddy.toml"

# --- the daemon, as the eddy user, on the shipped config -------------------
addr=
run_daemon() { # sets daemon (its pid) and addr (where it listens)
	: >"$work/daemon.log"
	chroot --userspec=eddy:eddy "$root" /usr/bin/eddy run --config /etc/eddy/eddy.toml \
		--listen "127.0.0.1:$(free_port)" >"$work/daemon.log" 2>&1 &
	daemon=$!
	local _
	addr=
	for _ in $(seq 100); do
		addr=$(sed -n 's/.*"msg":"listening","addr":"\([0-9.:]*\)".*/\1/p' "$work/daemon.log" | head -1)
		[ -n "$addr" ] && break
		kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; die "eddy run exited"; }
		sleep 0.2
	done
	[ -n "$addr" ] || { cat "$work/daemon.log" >&2; die "eddy run did not say where it listens"; }
}
stop_daemon() {
	local t=$SECONDS rc=0
	kill -TERM "$daemon"
	wait "$daemon" || rc=$?
	daemon=
	[ "$rc" -eq 0 ] || { tail -5 "$work/daemon.log"; die "eddy run exited $rc after SIGTERM"; }
	[ $((SECONDS - t)) -le 5 ] || die "eddy run took $((SECONDS - t)) s to stop"
}
t=$SECONDS
run_daemon
health=$(curl -sk --max-time 5 "https://$addr/healthz") || die "GET /healthz failed"
pass "eddy run as eddy serves https://$addr/healthz: $health ($((SECONDS - t)) s)"
expect_mode /var/lib/eddy/ring.db 600 eddy:eddy
expect_mode /var/lib/eddy/token 600 eddy:eddy
stop_daemon
pass "SIGTERM: exit 0 within 5 s; ring.db and token owned by eddy, 0600"
tok=$(chroot --userspec=eddy:eddy "$root" eddy token) || die "eddy token as eddy"
[ "$tok" = "$(cat "$root/var/lib/eddy/token")" ] || die "eddy token does not print /var/lib/eddy/token"
fp=$(chroot --userspec=eddy:eddy "$root" eddy cert) || die "eddy cert as eddy"
grep -q '^fingerprint: [0-9A-F:]\{95\}$' <<<"$fp" || die "eddy cert: $fp"
pass "eddy token and eddy cert as the eddy user read the daemon's files (README's commands)"

# --- maintainer scripts twice ----------------------------------------------
DPKG_MAINTSCRIPT_PACKAGE=eddy DPKG_MAINTSCRIPT_NAME=postinst DPKG_MAINTSCRIPT_ARCH=amd64 \
	in_root /var/lib/dpkg/info/eddy.postinst configure "$version" || die "postinst configure run twice"
[ "$(in_root id -nG eddy)" = "$groups" ] || die "second postinst changed eddy's groups"
pass "postinst again: no change"

# --- upgrade keeps a locally edited conffile ---------------------------------
sed -i 's/^max_age = "168h"/max_age = "72h"   # edited by the operator/' "$root/etc/eddy/eddy.toml"
grep -q 'edited by the operator' "$root/etc/eddy/eddy.toml" || die "could not edit the conffile"
collect_sum=$(md5sum <"$root/etc/eddy/collect.toml")
# The newer package ships a changed eddy.toml too, so dpkg must choose.
mkdir -p "$work/src"
cp -r "$src/packaging" "$work/src/packaging"
ln -s "$src/systemd" "$work/src/systemd"
printf '\n# A line added by the newer package.\n' >>"$work/src/packaging/eddy.toml"
newver="$version+test1"
(cd "$src/packaging" && "${GO:-go}" run ./mkdeb -src "$work/src" -bin "$(dirname "$deb")" -out "$work" \
	-arch amd64 -version test -deb-version "$newver" -epoch "${SOURCE_DATE_EPOCH:-0}") >/dev/null
cp "$work/eddy_${newver}_amd64.deb" "$root/tmp/eddy-new.deb"
t=$SECONDS
in_root dpkg -i --force-confdef --force-confold /tmp/eddy-new.deb >"$work/upgrade.log" 2>&1 ||
	{ cat "$work/upgrade.log"; die "upgrade failed"; }
[ "$(field Version)" = "$newver" ] || die "version after upgrade"
grep -q 'edited by the operator' "$root/etc/eddy/eddy.toml" || die "upgrade overwrote the edited eddy.toml"
grep -q 'added by the newer package' "$root/etc/eddy/eddy.toml.dpkg-dist" || die "no eddy.toml.dpkg-dist"
[ "$(md5sum <"$root/etc/eddy/collect.toml")" = "$collect_sum" ] || die "collect.toml changed"
expect_mode /etc/eddy/collect.toml 640 root:eddy
in_root eddy check-config /etc/eddy/eddy.toml >/dev/null || die "check-config after upgrade"
pass "upgrade to $newver kept the edited eddy.toml, left the new one as eddy.toml.dpkg-dist ($((SECONDS - t)) s)"

# --- remove keeps data and config; purge deletes them -------------------------
in_root dpkg -r eddy >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; die "dpkg -r failed"; }
! in_root test -e /usr/bin/eddy || die "/usr/bin/eddy left after remove"
in_root test -s /var/lib/eddy/ring.db || die "remove deleted /var/lib/eddy/ring.db"
in_root test -s /var/lib/eddy/token || die "remove deleted the token"
grep -q 'edited by the operator' "$root/etc/eddy/eddy.toml" || die "remove deleted the edited conffile"
pass "dpkg -r: binary gone; /var/lib/eddy and /etc/eddy kept"
in_root dpkg -P eddy >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; die "dpkg -P failed"; }
! in_root test -e /var/lib/eddy || die "purge left /var/lib/eddy"
! in_root test -e /etc/eddy || die "purge left /etc/eddy"
! in_root test -e /etc/systemd/system/multi-user.target.wants/eddy.service || die "purge left the enablement symlink"
field Status 2>/dev/null | grep -q 'not-installed' ||
	! in_root dpkg-query -W eddy >/dev/null 2>&1 || die "eddy still known to dpkg after purge"
pass "dpkg -P: /var/lib/eddy, /etc/eddy and the unit's state gone"

# --- and a fresh install over the kept user works --------------------------------
in_root dpkg -i /tmp/eddy.deb >"$work/reinstall.log" 2>&1 || { cat "$work/reinstall.log"; die "reinstall after purge failed"; }
[ "$(in_root getent passwd eddy | cut -d: -f3)" = "$uid" ] || die "reinstall changed eddy's uid"
expect_mode /var/lib/eddy 750 eddy:eddy
pass "reinstall after purge: same uid, fresh /var/lib/eddy"

log "test-install: all checks passed in $((SECONDS - start)) s"
