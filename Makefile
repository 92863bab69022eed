# Lote — make help lists the targets.
GO        ?= go
BIN       := bin/lote
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/lote
	$(GO) build -o $(BIN) ./cmd/lote

.PHONY: run
run: build ## Start Lote on this machine (lote up, state in $$LOTE_HOME or ~/.lote)
	./$(BIN) up $(ARGS)

.PHONY: test
test: ## Run every test with the race detector (unit, store, end-to-end)
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: e2e
e2e: ## Run only the end-to-end tests (real binary, real processes)
	$(GO) test -race -count=1 -timeout 10m ./e2e/...

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

.PHONY: docs
docs: ## Regenerate docs/cli.md from the command definitions
	$(GO) run ./internal/cli/gendocs > docs/cli.md.tmp && mv docs/cli.md.tmp docs/cli.md

.PHONY: screenshots
screenshots: ## Refresh docs/screenshots from the dashboard's browser tests (needs chromium)
	rm -rf .screenshots && mkdir -p .screenshots docs/screenshots
	LOTE_ARTIFACTS=$(CURDIR)/.screenshots $(GO) test -count=1 -run 'TestDashboardInBrowser|TestJobViewWith100kTasks' ./internal/web
	cp .screenshots/dashboard/*.png docs/screenshots/ && rm -rf .screenshots

.PHONY: bench
bench: build ## Benchmarks of DESIGN §7: Lote against xargs, parallel and Slurm, one table (docs/benchmarks.md)
	bench/run.sh

.PHONY: bench-go
bench-go: ## Go benchmarks: scheduler, core, journal, store, spawner (go test -bench)
	$(GO) test -run '^$$' -bench . -benchmem ./internal/... ./bench/...

# Each fuzz test runs for a number of executions, not a duration: a duration-based
# -fuzztime can fail with a bare "context deadline exceeded" on a loaded machine, a race
# in Go's fuzz coordinator (go.dev/issue/75804, fixed in Go 1.27). The counts take about
# 10 s each on a 2-core machine; FUZZTIME=30s (or 1000000x) overrides them all.
FUZZTIME ?=
fuzztime = $(or $(FUZZTIME),$(1))
.PHONY: fuzz
fuzz: ## Run each fuzz test for a fixed number of executions (FUZZTIME overrides) on top of its seed corpus
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(call fuzztime,150000x) ./internal/arrayspec/
	$(GO) test -run '^$$' -fuzz '^FuzzExpand$$' -fuzztime $(call fuzztime,100000x) ./internal/placeholder/
	$(GO) test -run '^$$' -fuzz '^FuzzSubmitDecoding$$' -fuzztime $(call fuzztime,10000x) ./internal/server/
	$(GO) test -run '^$$' -fuzz '^FuzzUnpack$$' -fuzztime $(call fuzztime,1000x) ./internal/blob/
	$(GO) test -run '^$$' -fuzz '^FuzzConfine$$' -fuzztime $(call fuzztime,5000x) ./internal/blob/
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(call fuzztime,50000x) ./internal/autoscale/
	$(GO) test -run '^$$' -fuzz '^FuzzFastDecode$$' -fuzztime $(call fuzztime,30000x) ./internal/proto/
	$(GO) test -run '^$$' -fuzz '^FuzzCodec$$' -fuzztime $(call fuzztime,30000x) ./internal/spawner/

.PHONY: clean
clean: ## Remove build output
	rm -rf bin
