# Herald: `make dev` runs the whole pipeline locally, `make test` runs every
# test. Both install what they need first (npm packages from the committed
# lock file, tool binaries into ./bin), so a fresh clone works.

SHELL := /bin/bash
.DEFAULT_GOAL := help

GO  ?= go
NPM ?= npm
BIN := $(CURDIR)/bin
# Tools installed into ./bin (mailpit for the SMTP tests) come first on PATH.
export PATH := $(BIN):$(PATH)

MAILPIT_VERSION ?= v1.33.1
# The linter of the GitHub Actions workflows (.github/workflows).
ACTIONLINT_VERSION ?= v1.7.12
# go test's own deadline for one package; the whole run stays far below it.
TEST_TIMEOUT ?= 20m
FUZZTIME     ?= 20s
# Extra flags for herald-dev, e.g. make dev ARGS='-api-addr 127.0.0.1:8080'.
ARGS ?=

# The binaries Herald builds, where they exist yet.
CMDS := $(foreach d,services/notification-api services/email-sender services/herald-ops services/devstack/sqs-local services/devstack/herald-dev,$(if $(wildcard $(d)/*.go),./$(d)))

# The infrastructure's own targets (test-stacks, trivy), once stacks/ has them.
STACKS_MK := $(wildcard stacks/stacks.mk)
-include $(STACKS_MK)
# The container images (images, push, test-images).
-include services/images.mk

.PHONY: help dev test test-go fuzz bench bench-go tools build fmt fmt-check vet lint-workflows clean distclean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The launcher is built and exec'ed (not `go run`), so Ctrl-C reaches it
# directly and it stops everything it started before exiting.
dev: node_modules/.package-lock.json ## run the whole pipeline locally; Ctrl-C stops it
	@mkdir -p .dev/bin
	$(GO) build -o .dev/bin/herald-dev ./services/devstack/herald-dev
	@exec .dev/bin/herald-dev $(ARGS)

test: tools fmt-check vet lint-workflows test-go fuzz ## the one test command: tools, gofmt, vet, actionlint, all tests, a short fuzz run, trivy on every stack
ifneq ($(STACKS_MK),)
	$(MAKE) trivy
endif

# The end-to-end tests run verbosely, so their figures (sent, duplicates,
# lost, elapsed) show in the output, and always (-count=1): they build the
# services' binaries themselves, which Go's test cache does not see, so a
# cached result could stand for services that have changed since.
# The services' own packages run under the race detector: they are the
# concurrent code (coalescer, consumer, key refresh). The stacks' synth tests
# are among the rest (stacks.mk's test-stacks runs them alone).
RACE_PKGS := ./services/internal/... ./services/notification-api/... ./services/email-sender/...
test-go: tools
	$(GO) test -race -timeout $(TEST_TIMEOUT) $(RACE_PKGS)
	$(GO) test -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v -e '^herald/tests$$' -e '^herald/services/internal/' -e '^herald/services/notification-api' -e '^herald/services/email-sender')
	$(GO) test -v -count=1 -timeout $(TEST_TIMEOUT) ./tests

# The request decoder's fuzz target, run briefly (its corpus lives in testdata/).
fuzz:
	@if grep -qs 'func FuzzDecode' services/notification-api/*_test.go; then \
		echo "$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./services/notification-api"; \
		$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./services/notification-api; \
	else \
		echo "fuzz: services/notification-api has no FuzzDecode yet"; \
	fi

# The pipeline benchmark of BENCHMARKS.md: batching on and off, keyed, and
# keyed with the API's writes answered at once (its own ceiling), each on a
# fresh pipeline, its figures, ratios and targets. Flags through BENCH_FLAGS,
# e.g. make bench BENCH_FLAGS='-n 5000 -modes on'.
BENCH_FLAGS ?=
bench: tools ## the pipeline benchmark (BENCHMARKS.md): throughput, latency, SQS requests, CPU and RSS, batching on vs off, keys vs none; the shared rate limit's DynamoDB requests
	$(GO) run ./tests/bench $(BENCH_FLAGS)
	$(GO) test -run='^$$' -bench=SharedRateLimit ./services/notification-api

bench-go: tools ## the Go micro-benchmarks (API enqueue, pipeline mails per second), with their figures
	$(GO) test -run='^$$' -bench=. -benchmem -timeout $(TEST_TIMEOUT) ./...

tools: node_modules/.package-lock.json $(BIN)/.mailpit-$(MAILPIT_VERSION) $(BIN)/.actionlint-$(ACTIONLINT_VERSION) ## install the SES emulator (npm ci), mailpit and actionlint into ./bin

# npm writes this file on every install, so it is newer than the lock file
# exactly when node_modules matches it.
# Only the runtime dependencies (the SES emulator): the cdktf CLI, a dev
# dependency, is for deploys and comes with `make cdktf-cli`.
node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --omit=dev --no-audit --no-fund --loglevel=error
	@touch $@

$(BIN)/.mailpit-$(MAILPIT_VERSION):
	GOBIN=$(BIN) $(GO) install github.com/axllent/mailpit@$(MAILPIT_VERSION)
	@rm -f $(BIN)/.mailpit-*
	@touch $@

$(BIN)/.actionlint-$(ACTIONLINT_VERSION):
	GOBIN=$(BIN) $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	@rm -f $(BIN)/.actionlint-*
	@touch $@

# The workflows cannot run here, so actionlint checks them: syntax,
# expressions and contexts, action inputs, and the shell of every run step
# through shellcheck when it is installed (.ci/run installs it).
WORKFLOWS := $(wildcard .github/workflows/*.yml)
lint-workflows: $(BIN)/.actionlint-$(ACTIONLINT_VERSION) ## actionlint over .github/workflows (shell steps through shellcheck when installed)
	@if command -v shellcheck >/dev/null 2>&1; then \
		echo "actionlint: run steps checked with shellcheck $$(shellcheck --version | sed -n 's/^version: //p')"; \
	else \
		echo "actionlint: NOTICE: shellcheck is not installed, the shell of run steps is not checked (apt-get install shellcheck)"; \
	fi
	$(BIN)/actionlint $(WORKFLOWS)

build: ## compile everything, and the service and launcher binaries into ./bin
	$(GO) build ./...
	$(GO) build -o $(BIN)/ $(CMDS)

fmt: ## gofmt every Go file
	$(GO) fmt ./...

fmt-check:
	@out=$$(gofmt -l $$($(GO) list -f '{{.Dir}}' ./...)); \
	if [ -n "$$out" ]; then echo "not gofmt'ed (run make fmt):"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet ./...

clean: ## remove build outputs and local pipeline state
	rm -rf $(BIN) .dev cdktf.out coverage.out

distclean: clean ## also remove node_modules
	rm -rf node_modules
