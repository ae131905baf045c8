# Outpost developer entry points. `make help` lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

ROOT      := $(abspath .)
CACHE     := $(ROOT)/.cache
TOOLS_BIN := $(CACHE)/bin
BIN       := $(ROOT)/bin
export PATH := $(TOOLS_BIN):$(PATH)
export GOFLAGS := -buildvcs=false

# Pinned tool versions, installed into .cache/bin by scripts/install-tools.sh.
BUF_VERSION           ?= v1.50.0
PROTOC_GEN_GO_VERSION ?= v1.36.12
GOLANGCI_LINT_VERSION ?= v2.15.0
export BUF_VERSION PROTOC_GEN_GO_VERSION GOLANGCI_LINT_VERSION
# Helm for the charts' tests and make helm-lint (.cache/helm/<version>/helm).
HELM_VERSION          ?= v4.3.2
export HELM_VERSION

MODULES  = $(shell go list -m -f '{{.Dir}}')
SERVICES = scheduler account-migrator k8s-watcher ingestion-runner
GO_TEST_FLAGS ?= -count=1 -p 2 -timeout 20m

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: ## Install pinned tools (buf, protoc-gen-go, golangci-lint) into .cache/bin
	@scripts/install-tools.sh

.PHONY: build
build: ## Build every service binary and the outpost CLI into bin/
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do \
		echo "build $$s"; (cd services/$$s && go build -o $(BIN)/$$s .) || exit 1; \
	done
	@echo "build outpost-broker"; cd libs && go build -o $(BIN)/outpost-broker ./cmd/outpost-broker
	@echo "build outpost"; cd libs && go build -o $(BIN)/outpost ./cmd/outpost

.PHONY: run
run: build ## Start Outpost locally: embedded JetStream and the four services
	@scripts/run-local.sh

.PHONY: test-deps
test-deps: tools ## Install what the tests need: fauxqs, kube-apiserver, kubectl and helm (.cache/), etcd, PostgreSQL, MariaDB, buildah, podman, skopeo, chromium (Debian)
	@scripts/install-fauxqs.sh
	@scripts/install-databases.sh
	@scripts/install-kube.sh
	@scripts/install-image-tools.sh
	@scripts/install-helm.sh
	@scripts/install-browser.sh

.PHONY: test
test: test-deps images ## Unit, integration and end-to-end tests of every module
	@set -e; for m in $(MODULES); do \
		echo "== go test $$m"; (cd $$m && go test $(GO_TEST_FLAGS) ./...); \
	done

.PHONY: test-e2e
test-e2e: test-deps ## Only the end-to-end tests (real binaries as processes)
	cd tests && go test $(GO_TEST_FLAGS) -v ./e2e/...

.PHONY: bench
bench: build test-deps ## Benchmarks against the raw substrate, figures to bench/results
	@scripts/bench.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 10s); fails on a crash
	@scripts/fuzz.sh

OUTPOST_CHAOS_JOBS ?= 1000
.PHONY: chaos
chaos: test-deps ## Chaos run: OUTPOST_CHAOS_JOBS jobs (1000) under kill -9 of every process kind, figures to bench/results/chaos.json
	@scripts/chaos.sh

.PHONY: lint
lint: tools ## go vet and golangci-lint (.golangci.yml) every module, gofmt check, buf lint, buf breaking (against main, or main's previous commit)
	@set -e; for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && go vet ./...); done
	@set -e; for m in $(MODULES); do echo "== golangci-lint $$m"; (cd $$m && golangci-lint run ./...); done
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd proto && buf lint
	@scripts/buf-breaking.sh

.PHONY: generate
generate: tools ## Regenerate Go code from proto/
	cd proto && buf generate

.PHONY: checkgenerate
checkgenerate: generate ## Fail if the committed generated code is stale
	@git diff --exit-code -- proto || (echo "generated code is stale: run make generate and commit"; exit 1)
	@test -z "$$(git status --porcelain -- proto)" || (git status --porcelain -- proto; echo "untracked generated files"; exit 1)

.PHONY: images
images: ## Build one OCI image per binary (buildah, no registry) into bin/images/<name>.tar
	@scripts/build-images.sh

.PHONY: helm-lint
helm-lint: ## helm lint --strict each profile, then real helm installs into the test kube-apiserver
	@scripts/install-kube.sh
	@scripts/install-helm.sh
	@scripts/helm-lint.sh

.PHONY: clean
clean: ## Remove build output and local broker data
	rm -rf $(BIN) .data
