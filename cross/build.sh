#!/usr/bin/env bash
# build.sh [OUTDIR]: eddy's static binaries for the Pi family and amd64,
#   OUTDIR/eddy-linux-arm64   linux/arm64 (Pi 3/4/5 on a 64-bit OS)
#   OUTDIR/eddy-linux-armv6   linux/arm GOARM=6 (the armhf package: every Pi
#                             on 32-bit Raspberry Pi OS, down to the ARMv6 Pi
#                             Zero/1, which a GOARM=7 binary kills with SIGILL)
#   OUTDIR/eddy-linux-amd64   linux/amd64
# and prints their SHA-256. CGO_ENABLED=0 and -trimpath, version stamped with
# -ldflags from git: the same commit and Go toolchain give byte-identical
# binaries wherever the tree is checked out (cross/repro.sh proves it).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/dist}
GO=${GO:-go}
cd "$src"
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=${COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || true)}
ldflags="-s -w -buildid= -X main.version=$version -X main.commit=$commit"
mkdir -p "$out"
build() { # GOARCH GOARM NAME
	CGO_ENABLED=0 GOOS=linux GOARCH=$1 GOARM=$2 \
		"$GO" build -trimpath -ldflags "$ldflags" -o "$out/$3" ./cmd/eddy
}
build arm64 "" eddy-linux-arm64
build arm 6 eddy-linux-armv6
build amd64 "" eddy-linux-amd64
echo "eddy $version (commit $commit), $("$GO" env GOVERSION)"
(cd "$out" && sha256sum eddy-linux-arm64 eddy-linux-armv6 eddy-linux-amd64 && stat -c '%s bytes  %n' eddy-linux-arm64 eddy-linux-armv6 eddy-linux-amd64)
