# The README's commands. `make test` is what CI runs.
GO ?= go

.PHONY: build run test unit fuzz bench vet

build:
	$(GO) build -o bin/distkv ./cmd/distkv

run:
	$(GO) run ./cmd/distkv dev

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 10m ./...

fuzz:
	scripts/fuzz.sh $${FUZZTIME:-5}

test: vet unit fuzz

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./internal/...
