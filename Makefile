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

FUZZTIME ?= 10s
.PHONY: fuzz
fuzz: ## Run each fuzz test for FUZZTIME (default 10s) on top of its seed corpus
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/arrayspec/
	$(GO) test -run '^$$' -fuzz '^FuzzExpand$$' -fuzztime $(FUZZTIME) ./internal/placeholder/
	$(GO) test -run '^$$' -fuzz '^FuzzSubmitDecoding$$' -fuzztime $(FUZZTIME) ./internal/server/
	$(GO) test -run '^$$' -fuzz '^FuzzUnpack$$' -fuzztime $(FUZZTIME) ./internal/blob/
	$(GO) test -run '^$$' -fuzz '^FuzzConfine$$' -fuzztime $(FUZZTIME) ./internal/blob/
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZTIME) ./internal/autoscale/
	$(GO) test -run '^$$' -fuzz '^FuzzFastDecode$$' -fuzztime $(FUZZTIME) ./internal/proto/

.PHONY: clean
clean: ## Remove build output
	rm -rf bin
