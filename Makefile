# cityedge — the two commands a newcomer needs are `make demo` and `make test`.
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit time, not the wall clock, so that rebuilding a commit gives the same bytes.
BUILD_DATE ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)
# Static binaries for the gateways: GOOS/GOARCH/GOARM and the dist name.
CROSS   := linux/arm/6/armv6 linux/arm/7/armv7 linux/arm64//arm64 linux/amd64//amd64
FUZZTIME ?= 2s
# The race detector needs cgo and a C compiler; a machine with only Go runs
# the same tests without it.
RACE    ?= $(shell command -v gcc >/dev/null 2>&1 && echo -race)

.PHONY: all build cross dist demo test test-go test-timing test-fuzz vm-test fleet-test lint bench bench-arm fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/cityedge ./cmd/cityedge
	$(GO) build -o bin/devbroker ./cmd/devbroker

cross:
	@mkdir -p dist
	@set -e; for t in $(CROSS); do \
		IFS=/ read -r os arch arm name <<<"$$t"; \
		echo "cross: $$name"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -buildvcs=false \
			-ldflags '$(LDFLAGS)' -o dist/cityedge-linux-$$name ./cmd/cityedge; \
	done

# Tarballs, .debs and SHA256SUMS for every gateway architecture, reproducibly.
dist: cross
	VERSION='$(VERSION)' scripts/dist.sh

# The main job: a local mutual-TLS broker, the agent on simulated sensors,
# and the messages as they arrive. Ctrl-C stops both.
demo: build
	@scripts/demo.sh

# Everything CI runs. Tests that need mosquitto or qemu-user skip with a clear
# message when they are missing, and fail instead under CITYEDGE_REQUIRE_*=1;
# under CITYEDGE_REQUIRE_NO_SKIP=1 (CI) any skipped test fails the run.
test: test-go test-timing test-fuzz vm-test fleet-test

test-go:
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@[ -n "$(RACE)" ] || echo "test: no C compiler, so no race detector (apt-get install gcc to enable it)"
	@mkdir -p bin && $(GO) build -o bin/testjson ./scripts/testjson
	set -o pipefail; $(GO) test $(RACE) -json -timeout 20m ./... | bin/testjson

# The real-time tests (the sampling rhythm, reconnects after broker blips)
# hold the agent to DECISIONS 4's margins against the wall clock: they run
# alone, one package at a time, after the rest (build tag "timing").
test-timing:
	@mkdir -p bin && $(GO) build -o bin/testjson ./scripts/testjson
	set -o pipefail; $(GO) test -tags timing -p 1 -json -timeout 10m -run 'TestSamplingRhythm|TestBrokerBlips' ./cmd/cityedge/ ./uplink/ | bin/testjson

# The emulated ARM gateways (arm64 and armhf kernels under qemu-system with
# simulated chips); CITYEDGE_VM_TEST=0 skips it. See scripts/vm/README.md.
vm-test:
	scripts/vm/run.sh all

# The city fleet: 200 agents on a 3-node RabbitMQ cluster through node loss,
# a whole-cluster restart and a rolling restart (about 6 minutes; needs
# rabbitmq-server and root, see docs/FLEET.md). FLEET_ARGS=-doc=docs/FLEET.md
# refreshes the measured section of docs/FLEET.md.
fleet-test:
	@mkdir -p bin
	$(GO) run ./scripts/fleet -report bin/fleet-report.md $(FLEET_ARGS)

# Every fuzz target for a short fixed time (the seed corpora already ran above).
test-fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

fuzz:
	@scripts/fuzz.sh 60s

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Benchmarks with readings/s, memory/flash and reconnect metrics (about ten minutes);
# writes docs/BENCHMARKS.md, the one place README's figures come from.
bench:
	@set -o pipefail; { $(GO) test -run '^$$' -bench . -benchtime 1s -count 3 ./buffer/ ./uplink/senml/ && \
	  $(GO) test -run '^$$' -bench 'MTLS' -benchtime 10000x -count 3 ./uplink/ ./cmd/cityedge/ && \
	  $(GO) test -run '^$$' -bench 'ReconnectFleet' -benchtime 1x ./uplink/ && \
	  $(GO) test -run '^$$' -bench 'SentiloDrain' -benchtime 3x -count 3 ./uplink/sentilo/ && \
	  $(GO) test -run '^$$' -bench 'Agent' -benchtime 1x -timeout 20m ./cmd/cityedge/ && \
	  $(GO) test -run '^$$' -bench 'Guidance' -benchtime 100x -timeout 10m ./cmd/cityedge/internal/agent/; } 2>&1 | grep -v ' INFO ' | tee bench.out
	$(GO) run ./scripts/benchdoc -in bench.out $(foreach a,armv7 arm64,$(if $(wildcard bench-$(a).out),-in $(a)=bench-$(a).out)) \
	  -out docs/BENCHMARKS.md -cmd 'make bench (ARM: make bench-arm first)'

# The buffer, SenML and drain benchmarks for armv7 and arm64 under qemu-user:
# ratios to their raw baselines on the same emulator, medians of three runs (bench-armv7.out,
# bench-arm64.out; the next `make bench` puts them beside amd64).
bench-arm:
	@scripts/bench-arm.sh

clean:
	rm -rf bin dist .demo bench.out bench-armv7.out bench-arm64.out
