# The README's commands. `make test` is what CI runs.
GO ?= go

.PHONY: build run test unit fuzz bench vet chaos soak chaos-selfcheck image

build:
	CGO_ENABLED=0 $(GO) build -o bin/distkv ./cmd/distkv

# The container image (Dockerfile), tagged $(IMAGE): the static binary is
# built here with the Go toolchain and staged in $(IMAGE_STAGE) with an empty
# data directory, then copied onto scratch, so no base image is pulled.
# IMAGE_STAGE must be a directory named bin/image* (see .dockerignore).
IMAGE ?= distkv:latest
IMAGE_STAGE ?= bin/image

image:
	rm -rf $(IMAGE_STAGE)
	mkdir -p $(IMAGE_STAGE)/data
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(IMAGE_STAGE)/distkv ./cmd/distkv
	docker build --build-arg STAGE=$(IMAGE_STAGE) -t $(IMAGE) .

run:
	$(GO) run ./cmd/distkv dev

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The last two lines test the modules of their own: bench/ and deploy/k8s/
# (the Kubernetes manifests, checked without a cluster: about 10 s).
# The second line runs, once, the raftnode tests that drive the loop through
# stalls, snapshots, member changes and restarts with its invariant checks
# compiled in (internal/raftnode/invariants.go): about 20 s.
unit:
	$(GO) test -count=1 -timeout 10m ./...
	$(GO) test -count=1 -timeout 5m -tags invariants -run 'DiskFull|Snapshot|Member|Restart|Stop|Crash|Notice|Applied|Joining|Removal|Compact|Transfer' ./internal/raftnode/
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd deploy/k8s && $(GO) vet ./... && $(GO) test -count=1 ./...

fuzz:
	scripts/fuzz.sh $${FUZZTIME:-5}

test: vet unit fuzz

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./internal/...

# Randomized fault rounds with linearizability checking (issue 4): CHAOS_ROUNDS
# rounds of CHAOS_DURATION on three nodes and CHAOS_SHARDED_ROUNDS on five
# nodes whose ranges split and move (issue 19), each with its seed printed,
# then a summary of each test. Fails if any round does. CI's `make test` runs
# the short default (2 rounds of 35s and a sharded one).
chaos:
	$(GO) test -count=1 -timeout 0 ./test/chaos -run 'TestChaos$$|TestChaosSharded$$|TestChaosBank$$' -v \
		-chaos.rounds=$${CHAOS_ROUNDS:-5} -chaos.sharded-rounds=$${CHAOS_SHARDED_ROUNDS:-2} \
		-chaos.bank-rounds=$${CHAOS_BANK_ROUNDS:-2} \
		-chaos.duration=$${CHAOS_DURATION:-60s}

# One long round of mixed faults sampling each node's RSS and open files; fails
# if they grow without bound (see TestSoak). Logs and resources.csv are kept.
soak:
	$(GO) test -count=1 -timeout 0 ./test/chaos -run 'TestSoak$$' -v -chaos.soak=$${SOAK_DURATION:-30m}

# The chaos checker's self-check: one round with each deliberately broken
# behaviour of internal/raftnode/testhooks.go; passes only if the checker
# fails every one of them.
chaos-selfcheck:
	scripts/chaos-selfcheck.sh $${CHAOS_DURATION:-30s}
