#!/usr/bin/env bash
# rss.sh [DIST]: idle memory of `eddy run` (the packaged eddy.toml: system
# sensor every second, HTTP/2 + HTTP/3 listening on loopback, no clients)
# under qemu-user for arm64 and armv6 (arm1176), and natively on amd64.
#
# Under qemu-user the process's RSS is the emulator's: guest memory plus
# qemu's own (translated code, its heap). So for each architecture it also
# measures a minimal static Go program that only sleeps, under the same
# emulator, and reports Go's own account of eddy's memory from /metrics
# (go_memstats_sys_bytes: everything the runtime took from the OS, an upper
# bound for the native RSS; heap in use).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dist=$(cd "${1:-$src/dist}" && pwd)
GO=${GO:-go}
SETTLE=${SETTLE:-30}
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
# shellcheck source=packaging/test/lib.sh
. "$src/packaging/test/lib.sh"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# sample PID: the median VmRSS over 10 samples a second apart.
sample() {
	local _
	for _ in $(seq 10); do rss_kib "$1"; sleep 1; done | sort -n | sed -n 5p
}

cat >"$tmp/sleep.go" <<'GO'
package main

import "time"

func main() { time.Sleep(time.Hour) }
GO
printf 'module sleeper\n\ngo 1.26\n' >"$tmp/go.mod"

measure() { # NAME BINARY GOARCH GOARM EMULATOR...
	local name=$1 bin=$2 goarch=$3 goarm=$4
	shift 4
	local port data log pid sleeper base eddy token metrics sys heap
	(cd "$tmp" && CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm "$GO" build -trimpath -ldflags '-s -w' -o "$tmp/sleep-$goarch" sleep.go)
	"$@" "$tmp/sleep-$goarch" &
	sleeper=$!
	pids+=("$sleeper")
	port=$(free_port)
	data=$tmp/data-$goarch
	log=$tmp/log-$goarch
	"$@" "$bin" run --config "$src/packaging/eddy.toml" --data "$data" --listen "127.0.0.1:$port" >"$log" 2>&1 &
	pid=$!
	pids+=("$pid")
	sleep "$SETTLE"
	kill -0 "$pid" || { cat "$log" >&2; echo "eddy run exited" >&2; exit 1; }
	base=$(sample "$sleeper")
	eddy=$(sample "$pid")
	token=$(cat "$data/token")
	metrics=$(curl -sk --max-time 10 -H "Authorization: Bearer $token" "https://127.0.0.1:$port/metrics")
	sys=$(awk '$1 == "go_memstats_sys_bytes" {printf "%.1f", $2 / 1048576}' <<<"$metrics")
	heap=$(awk '$1 == "go_memstats_heap_inuse_bytes" {printf "%.1f", $2 / 1048576}' <<<"$metrics")
	awk -v n="$name" -v e="$eddy" -v b="$base" -v s="$sys" -v h="$heap" \
		'BEGIN { printf "%-16s %6.1f MiB  %6.1f MiB  %6.1f MiB  %6s MiB  %6s MiB\n", n, e / 1024, b / 1024, (e - b) / 1024, s, h }'
	kill "$pid" "$sleeper"
	wait "$pid" "$sleeper" 2>/dev/null || true
}

echo "idle eddy run after ${SETTLE}s (median of 10 samples a second apart)"
printf '%-16s %10s  %10s  %10s  %10s  %10s\n' arch "RSS eddy" "RSS sleep" "difference" "Go sys" "Go heap"
measure "arm64 (qemu)" "$dist/eddy-linux-arm64" arm64 "" qemu-aarch64
measure "armv6 (qemu)" "$dist/eddy-linux-armv6" arm 6 qemu-arm -cpu arm1176
measure "amd64 (native)" "$dist/eddy-linux-amd64" amd64 ""
