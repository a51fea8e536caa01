#!/usr/bin/env bash
# `make bench`: the end-to-end benchmark on this machine. Prints the table and JSON from
# `tianhe bench` and keeps the JSON in build/bench-latest.json. Knobs (environment):
#   BENCH_DURATION (s per throughput phase, default 10), BENCH_LATENCY_DURATION (default 30),
#   BENCH_LAG_DURATION (default 60), BENCH_DEVICES (default 500000).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release/src/app/tianhe
out=$("$BIN" bench --duration "${BENCH_DURATION:-10}" \
  --latency-duration "${BENCH_LATENCY_DURATION:-30}" --lag-duration "${BENCH_LAG_DURATION:-60}" \
  --devices "${BENCH_DEVICES:-500000}")
echo "$out"
echo "$out" | tail -n 1 > build/bench-latest.json
echo "(JSON kept in build/bench-latest.json)"
