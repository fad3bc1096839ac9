# The README's commands. `make test` is what CI runs.
GO ?= go

.PHONY: build run test unit fuzz bench vet chaos

build:
	CGO_ENABLED=0 $(GO) build -o bin/distkv ./cmd/distkv

run:
	$(GO) run ./cmd/distkv dev

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 10m ./...
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...

fuzz:
	scripts/fuzz.sh $${FUZZTIME:-5}

test: vet unit fuzz

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./internal/...

# A long randomized fault round with linearizability checking (issue 4).
chaos:
	$(GO) test -count=1 -timeout 0 ./test/chaos -run TestChaos -v -chaos.duration=$${CHAOS_DURATION:-5m}
