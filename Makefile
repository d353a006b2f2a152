# eddy's build and test entry points. `make test` is what README.md and CI run.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Debian packages the tests need (real brokers, clients, emulators).
# Node and npm are checked by command, not package: a NodeSource nodejs
# brings its own npm, which Debian's npm package would conflict with.
DEB_DEPS := mosquitto curl qemu-user
NODE_TEST_DIR := server/testdata/node
# apt-get needs root: sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build deps deps-apt deps-npm deps-ipv6 test test-unit test-race test-cross test-arm test-arm64 lint bench fuzz cross clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o eddy ./cmd/eddy

# deps installs what the test suite needs, one package per apt-get call
# (this machine's apt drops downloaded packages between dpkg runs), the
# npm packages of the EventSource test (so that no test reaches a
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
# server's TestNodeEventSource; reinstalled when the lock file changes.
deps-npm: $(NODE_TEST_DIR)/node_modules/.package-lock.json

$(NODE_TEST_DIR)/node_modules/.package-lock.json: $(NODE_TEST_DIR)/package-lock.json | deps-apt
	cd $(NODE_TEST_DIR) && npm ci --no-audit --no-fund

# TestListenDualStack serves on ::1 as well as 127.0.0.1.
deps-ipv6:
	@grep -qE '^0{31}1 .* lo$$' /proc/net/if_inet6 2>/dev/null || { \
	  echo "make deps: this host has no IPv6 on loopback (no ::1): server's TestListenDualStack needs it."; \
	  echo "  enable it:  $(SUDO) sysctl -w net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.lo.disable_ipv6=0"; \
	  echo "  in Docker:  docker run --sysctl net.ipv6.conf.all.disable_ipv6=0 ..."; \
	  exit 1; }

# test runs the whole suite: lint, unit and end-to-end tests, the same
# under the race detector (streams are handed between goroutines), and the
# ring log's tests on emulated ARMv6 (Pi Zero) and arm64.
test: deps lint test-unit test-race test-cross

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test-unit:
	$(GO) test -count=1 -timeout 15m ./...

test-race:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...

test-cross: test-arm test-arm64

# A true ARMv6 CPU, as on the Pi Zero/1; bbolt's map is capped on 32-bit.
test-arm:
	EDDY_TEST_EXEC="qemu-arm -cpu arm1176" GOARCH=arm GOARM=6 CGO_ENABLED=0 \
	  $(GO) test -count=1 -exec "qemu-arm -cpu arm1176" ./ringlog/ ./config/ ./topic/

test-arm64:
	EDDY_TEST_EXEC="qemu-aarch64" GOARCH=arm64 CGO_ENABLED=0 \
	  $(GO) test -count=1 -exec "qemu-aarch64" ./ringlog/ ./config/ ./topic/

# cross builds the static binaries for the Pi family and amd64.
cross:
	mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/eddy-linux-arm64 ./cmd/eddy
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/eddy-linux-armv6 ./cmd/eddy
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/eddy-linux-amd64 ./cmd/eddy

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
