# eddy's build and test entry points. `make test` is what README.md and CI run.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Debian packages the tests need (real brokers, clients, emulators, and
# what packaging and the install test use, and the browser the dashboard's
# tests drive).
# Node and npm are checked by command, not package: a NodeSource nodejs
# brings its own npm, which Debian's npm package would conflict with.
DEB_DEPS := mosquitto curl qemu-user debootstrap systemd systemd-container lintian dpkg-dev shellcheck chromium
NODE_TEST_DIR := server/testdata/node
# The dashboard's test-only npm packages (axe-core), from their lockfile.
AXE_DIR := dashboard/testdata/axe
# apt-get needs root: sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Every timestamp in the packages: the commit's time (reproducible builds).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

.PHONY: all build deps deps-apt deps-npm deps-ipv6 test test-unit test-race test-cross lint bench fuzz cross deb test-install test-nspawn test-arm64 repro clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o eddy ./cmd/eddy

# deps installs what the test suite needs, one package per apt-get call
# (this machine's apt drops downloaded packages between dpkg runs), the
# npm packages of the EventSource test and of the dashboard's
# accessibility check (so that no test reaches a
# registry), and checks what it cannot install: IPv6 on loopback.
deps: deps-apt deps-npm deps-ipv6
	$(GO) mod download

deps-apt:
	@missing=""; for p in $(DEB_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  export DEBIAN_FRONTEND=noninteractive; $(SUDO) apt-get update -qq; \
	  for p in $$missing; do echo "installing $$p"; $(SUDO) apt-get install -y -qq --no-install-recommends $$p >/dev/null || exit 1; done; \
	fi

# The eventsource npm package, pinned by package-lock.json, for
# server's TestNodeEventSource, and axe-core for the dashboard's
# accessibility checks; reinstalled when a lock file changes.
deps-npm: $(NODE_TEST_DIR)/node_modules/.package-lock.json $(AXE_DIR)/node_modules/.package-lock.json

$(NODE_TEST_DIR)/node_modules/.package-lock.json: $(NODE_TEST_DIR)/package-lock.json | deps-apt
	cd $(NODE_TEST_DIR) && npm ci --no-audit --no-fund

$(AXE_DIR)/node_modules/.package-lock.json: $(AXE_DIR)/package-lock.json | deps-apt
	cd $(AXE_DIR) && npm ci --no-audit --no-fund

# TestListenDualStack serves on ::1 as well as 127.0.0.1.
deps-ipv6:
	@grep -qE '^0{31}1 .* lo$$' /proc/net/if_inet6 2>/dev/null || { \
	  echo "make deps: this host has no IPv6 on loopback (no ::1): server's TestListenDualStack needs it."; \
	  echo "  enable it:  $(SUDO) sysctl -w net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.lo.disable_ipv6=0"; \
	  echo "  in Docker:  docker run --sysctl net.ipv6.conf.all.disable_ipv6=0 ..."; \
	  exit 1; }

# test runs the whole suite: lint, unit and end-to-end tests, the same
# under the race detector (streams are handed between goroutines), the
# ARM-sensitive packages' tests on emulated ARMv6 (Pi Zero) and arm64, and
# the .deb installed into a Debian root and booted under systemd (as root).
test: deps lint test-unit test-race test-cross test-install

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test-unit:
	$(GO) test -count=1 -timeout 15m ./...

test-race:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...

# test-cross runs the tests of ringlog, sse, ingest, sensors, config and
# topic built for arm64 and for arm GOARM=6 under qemu-user (qemu-aarch64;
# qemu-arm -cpu arm1176, the Pi Zero/1's ARMv6 core).
test-cross:
	GO=$(GO) cross/test.sh

# cross builds the static binaries for the Pi family and amd64 into dist/
# and prints their SHA-256 (byte-identical for the same commit: see repro).
cross:
	GO=$(GO) VERSION='$(VERSION)' COMMIT='$(COMMIT)' cross/build.sh dist

# deb builds dist/eddy_<version>_{arm64,armhf,amd64}.deb (each built twice
# and compared), checks the systemd units, runs lintian on the packages and
# the arm64 and armhf packages' eddy under qemu-user.
deb: cross
	cd packaging && $(GO) vet ./... && $(GO) test -count=1 ./...
	rm -f dist/eddy_*.deb
	cd packaging && $(GO) run ./mkdeb -src .. -bin ../dist -out ../dist -version '$(VERSION)' -commit '$(COMMIT)' -epoch $(SOURCE_DATE_EPOCH) -check
	systemd/check.sh dist/eddy-linux-amd64
	shellcheck -x cross/*.sh systemd/*.sh packaging/test/*.sh packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm
	lintian --fail-on error,warning dist/eddy_*.deb
	packaging/test/test-foreign.sh dist

# test-install installs the amd64 package into a throwaway Debian root
# (debootstrap, cached under /var/cache/eddy-test) and checks it as an
# operator would, then boots that root under systemd-nspawn and drives the
# unit: READY, watchdog, restart after kill -9, clean stop, the journal.
test-install: deb
	packaging/test/test-install.sh dist/eddy_*_amd64.deb
	packaging/test/test-nspawn.sh dist/eddy_*_amd64.deb

test-nspawn: deb
	packaging/test/test-nspawn.sh dist/eddy_*_amd64.deb

# test-arm64 installs the arm64 package into an arm64 Debian root and runs it
# there under qemu-user, in a namespace of its own (the host's binfmt_misc is
# untouched). Not in `make test`: the first run builds the root (minutes).
test-arm64: deb
	packaging/test/test-arm64.sh dist/eddy_*_arm64.deb

# repro builds the binaries again in a fresh checkout elsewhere with an empty
# build cache and compares them with dist/ (several minutes).
repro: cross
	cross/repro.sh dist

# bench runs the benchmarks behind BENCHMARKS.md (several minutes).
bench:
	mkdir -p .bench
	EDDY_BENCH_DIR=$(CURDIR)/.bench $(GO) test -run '^$$' -bench 'Append|Resume|History|Churn' -count 5 -timeout 30m ./ringlog/ | tee bench-ringlog.txt
	EDDY_BENCH_DIR=$(CURDIR)/.bench $(GO) test -run '^$$' -bench WriteAmplification -benchtime 1x -count 3 ./ringlog/ | tee -a bench-ringlog.txt
	$(GO) test -run '^$$' -bench 'Encode|Fanout' -benchtime 2s -count 3 ./sse/ | tee bench-sse.txt
	$(GO) test -run '^$$' -bench StreamHTTP2 -benchtime 4000x -count 3 ./sse/ | tee -a bench-sse.txt
	$(GO) test -run '^$$' -bench BenchmarkMQTTIngest -benchtime 5000x -count 3 ./ingest/ | tee bench-mqtt.txt
	$(GO) run ./cmd/eddy-load -scenario stream | tee bench-stream.txt
	$(GO) run ./cmd/eddy-load -scenario ingest | tee bench-ingest.txt
	EDDY_DASH_BENCH_WINDOW=5m $(GO) test -run '^$$' -bench Dashboard -benchtime 1x -timeout 15m ./dashboard/ | tee bench-dashboard.txt

# fuzz runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 30s
FUZZ_TARGETS := ringlog:FuzzDecodeRecord config:FuzzParse topic:FuzzParseFilter \
	sse:FuzzEncode sse:FuzzLastEventID sse:FuzzParseParams sse:FuzzAppendTime sse:FuzzIsNumber \
	server:FuzzSessionCookie server:FuzzAuthHeaders ingest:FuzzDecodePayload tls:FuzzParseFingerprint \
	sensors:FuzzParseW1Slave sensors:FuzzParseCPU sensors:FuzzProcParsers cmd/eddy:FuzzReadEvents
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t#*:}; \
	  echo "== $$pkg $$fn"; $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg/ || exit 1; done

clean:
	rm -rf eddy dist .bench
