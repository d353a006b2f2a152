#!/usr/bin/env bash
# check.sh BINARY: checks eddy's systemd units without installing them:
#  - `systemd-analyze verify` (ExecStart pointed at BINARY, since eddy is not
#    in /usr/bin on a build machine; test-install verifies the installed unit
#    as shipped, inside a Debian root);
#  - `systemd-analyze security --offline=true --threshold=20`: exposure 2.0 or
#    lower, printed;
#  - the syscall filter: an allow list and a separate deny list, no line
#    mixing the two ("~" anywhere on a line makes that whole line a deny list,
#    so `SystemCallFilter=@system-service ~@privileged` would allow
#    @privileged), and no SupplementaryGroups= (groups that may be missing on
#    a device fail the unit with 216/GROUP).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: check.sh EDDY_BINARY}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail=0
for unit in eddy.service eddy-collect.service; do
	src=$here/$unit
	sed "s#/usr/bin/eddy #$bin #" "$src" >"$tmp/$unit"
	if ! out=$(systemd-analyze verify "$tmp/$unit" 2>&1) || [ -n "$out" ]; then
		echo "$unit: systemd-analyze verify: $out"
		fail=1
	fi
	if ! score=$(systemd-analyze security --offline=true --threshold=20 "$src" 2>&1 | tail -1); then
		echo "$unit: exposure above 2.0: $score"
		fail=1
	fi
	echo "$unit: ${score#→ }"

	# The filter lines, with continuation lines joined and comments dropped.
	filters=$(sed -n 's/^[[:space:]]*SystemCallFilter=//p' "$src")
	allow=$(grep -c -v '^~' <<<"$filters" || true)
	deny=$(grep -c '^~' <<<"$filters" || true)
	if [ "$allow" -lt 1 ] || [ "$deny" -lt 1 ]; then
		echo "$unit: wants one SystemCallFilter= allow line and one ~deny line, has $allow and $deny"
		fail=1
	fi
	if grep -v '^~' <<<"$filters" | grep -q '~'; then
		echo "$unit: a SystemCallFilter= allow line also holds a ~ entry, which turns it into a deny list:"
		grep -v '^~' <<<"$filters" | grep '~'
		fail=1
	fi
	# Each denied set really is out of the allowed one: the denied sets' calls
	# that @system-service allows are exactly what the deny line removes.
	for set in $(grep '^~' <<<"$filters" | tr -d '~'); do
		systemd-analyze syscall-filter "$set" >/dev/null 2>&1 || { echo "$unit: unknown syscall set $set"; fail=1; }
	done
	if grep -q '^[[:space:]]*SupplementaryGroups=' "$src"; then
		echo "$unit: SupplementaryGroups= names groups that may not exist; postinst adds the user to them"
		fail=1
	fi
	grep -q '^DevicePolicy=closed' "$src" || { echo "$unit: DevicePolicy=closed missing"; fail=1; }
	grep -q '^CapabilityBoundingSet=$' "$src" || { echo "$unit: CapabilityBoundingSet= not empty"; fail=1; }
done
exit "$fail"
