#!/usr/bin/env bash
# test.sh: the tests of the packages where 32-bit and ARM bugs live (ringlog:
# bbolt's 32-bit map, 64-bit atomics' alignment; sse; ingest; sensors; config
# and topic, which are cheap), built for arm64 and for arm GOARM=6 and run
# under Debian's qemu-user: qemu-aarch64, and qemu-arm with -cpu arm1176, the
# Pi Zero/1's ARMv6 core, on which a GOARM=7 instruction dies with SIGILL.
# EDDY_TEST_EXEC tells tests that start child processes (the ring log's
# SIGKILL test) to start them under the same emulator.
#
# -short: the ring log's crash test runs 10 SIGKILL rounds, not 50. Skipped:
# sse's isolation and slow-reader tests (a slow, stalled or flow-controlled
# stream must not slow the fast ones, floods for 60 s): they time real
# network throughput, which emulation at a tenth of native speed cannot
# reach; they run natively in `make test-unit` and test-race, and the
# encoding, fan-out, backpressure and resume tests run here.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
PKGS=${EDDY_CROSS_PKGS:-./ringlog/ ./sse/ ./ingest/ ./sensors/ ./config/ ./topic/}
SKIP=${EDDY_CROSS_SKIP:-TestSlowReaderKeepsReading|/SlowConsumerIsolation|/StalledStreamOnSharedConnection}
read -r -a pkgs <<<"$PKGS"
# The two emulated runs go side by side (most of their time is spent in
# timers and I/O), each into its own log, printed when both are done.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run() { # NAME EXEC GOARCH GOARM
	local name=$1 exec=$2 start=$SECONDS rc=0
	echo "== $name: go test -short -skip '$SKIP' -exec \"$exec\" ${pkgs[*]}"
	EDDY_TEST_EXEC=$exec GOOS=linux GOARCH=$3 GOARM=$4 CGO_ENABLED=0 \
		"$GO" test -count=1 -short -timeout 10m -skip "$SKIP" -exec "$exec" "${pkgs[@]}" || rc=$?
	echo "== $name: $((SECONDS - start)) s, exit $rc"
	return "$rc"
}
run arm64 qemu-aarch64 arm64 "" >"$logs/arm64" 2>&1 &
a=$!
run "armv6 (arm1176)" "qemu-arm -cpu arm1176" arm 6 >"$logs/armv6" 2>&1 &
b=$!
status=0
wait "$a" || status=1
wait "$b" || status=1
cat "$logs/arm64" "$logs/armv6"
exit "$status"
