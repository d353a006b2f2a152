#!/usr/bin/env bash
# repro.sh [DIST]: proves the build reproducible. It clones this commit
# into a fresh directory elsewhere, builds the binaries there with an empty
# Go build cache (a full rebuild: several minutes) and, when DIST holds
# packages, the packages too, and compares every file with DIST byte for
# byte. The tree must be clean: uncommitted changes are not in the clone.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dist=$(cd "${1:-$src/dist}" && pwd)
GO=${GO:-go}
cd "$src"
[ -z "$(git status --porcelain --untracked-files=no)" ] || { echo "repro: the tree has uncommitted changes" >&2; exit 1; }
commit=$(git rev-parse HEAD)
tmp=$(mktemp -d /var/tmp/eddy-repro.XXXXXX)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
git clone -q --no-hardlinks "$src" "$tmp/eddy"
git -C "$tmp/eddy" checkout -q "$commit"
export GOCACHE=$tmp/gocache
start=$SECONDS
(cd "$tmp/eddy" && GO=$GO cross/build.sh "$tmp/out" >/dev/null)
echo "rebuilt in $tmp/eddy with an empty build cache in $((SECONDS - start)) s"
status=0
compare() { # FILE...
	local f
	for f in "$@"; do
		if cmp -s "$dist/$f" "$tmp/out/$f"; then
			echo "identical  $(sha256sum "$dist/$f" | cut -d' ' -f1)  $f"
		else
			echo "DIFFERENT  $f"
			status=1
		fi
	done
}
compare eddy-linux-arm64 eddy-linux-armv6 eddy-linux-amd64
shopt -s nullglob
debs=("$dist"/eddy_*.deb)
if [ ${#debs[@]} -gt 0 ]; then
	version=$(git describe --tags --always --dirty)
	(cd "$tmp/eddy/packaging" && "$GO" run ./mkdeb -src .. -bin "$tmp/out" -out "$tmp/out" \
		-version "$version" -commit "$(git rev-parse --short=12 HEAD)" -epoch "$(git log -1 --format=%ct)" >/dev/null)
	names=()
	for d in "${debs[@]}"; do names+=("$(basename "$d")"); done
	compare "${names[@]}"
fi
exit "$status"
