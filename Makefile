# Tianhe — the two commands: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
CONFIG ?= examples/tianhe.toml
DEPS_STAMP := build/.deps-installed

.PHONY: run test bench bench-sinks bench-store deps build-release build-dev build-tsan tsan fuzz format format-check tidy clean

$(DEPS_STAMP): scripts/install-deps.sh
	@bash scripts/install-deps.sh
	@mkdir -p build && touch $@

deps: $(DEPS_STAMP)

build-release: $(DEPS_STAMP)
	@cmake --preset release >/dev/null
	@cmake --build build/release -j $(JOBS) --target tianhe

build-dev: $(DEPS_STAMP)
	@cmake --preset dev >/dev/null
	@cmake --build build/dev -j $(JOBS)

build-tsan: $(DEPS_STAMP)
	@cmake --preset tsan >/dev/null
	@cmake --build build/tsan -j $(JOBS)

## make run: install what is missing, build release, start the gateway on examples/tianhe.toml
run: build-release
	@echo
	@echo "Starting tianhe with $(CONFIG) (data in ./data). In another terminal:"
	@echo "  build/release/src/app/tianhe simulate --target 127.0.0.1:7700 --devices 1000 --rate 2000 --duration 10 --ack"
	@echo "  build/release/src/app/tianhe query --device 1 --from -1h"
	@echo "  curl -s 127.0.0.1:8080/api/v1/devices/1/latest ; curl -s 127.0.0.1:8080/metrics | head"
	@echo
	build/release/src/app/tianhe serve --config $(CONFIG)

## make test: install, build dev (ASan+UBSan), run every test
test: build-dev
	@bash test/run_all.sh

## make tsan: the concurrent parts under ThreadSanitizer
tsan: build-tsan
	@cd build/tsan && ctest --output-on-failure -L concurrent

## make bench: end-to-end benchmarks (prints a table and JSON)
bench: build-release
	@bash bench/run.sh

## make bench-sinks: every sink against its real engine on loopback (MariaDB, PostgreSQL, Redis,
## NATS, a webhook receiver): delivery rate next to the engine's own ceiling, ingest with every
## sink on next to the store alone, catch-up after a 60 s outage; ~10 min
bench-sinks: build-release
	@/usr/bin/python3 bench/sinks_bench.py build/release/src/app/tianhe $(BENCH_SINKS_ARGS)

## make bench-store: the embedded store at 500,000 devices and 100M reports (ingest, merges,
## every query, warm and with a dropped page cache); ~1.5 min, ~1.5 GB under /tmp, removed after
STORE_BENCH_DIR ?= /tmp/tianhe-store-bench
STORE_BENCH_REPORTS ?= 100000000
bench-store: $(DEPS_STAMP)
	@cmake --preset release >/dev/null
	@cmake --build build/release -j $(JOBS) --target store_engines_bench
	build/release/src/sinks/store/store_engines_bench blocks $(STORE_BENCH_DIR) \
	  $(STORE_BENCH_REPORTS) 500000 4194304 256 cold

fuzz: $(DEPS_STAMP)
	@cmake --preset fuzz >/dev/null
	@cmake --build build/fuzz -j $(JOBS)

format:
	@git ls-files '*.cpp' '*.h' | xargs clang-format -i

format-check:
	@git ls-files '*.cpp' '*.h' | xargs clang-format --dry-run --Werror

## make tidy: clang-tidy with the checks of .clang-tidy (make test runs it too)
tidy: build-dev
	@bash scripts/tidy.sh

clean:
	rm -rf build
