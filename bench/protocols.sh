#!/usr/bin/env bash
# The per-core protocol figures and the user-codec figures of docs/performance.md, each run twice
# (the machine is shared): `tianhe bench --protocols` (every protocol with a bench plan: gateway
# CPU, stored per CPU-second, each simulator's floor), the LoRaWAN row with a JavaScript model
# codec next to the plan's built-in codec, and the memory of 100 loaded JavaScript codecs on one
# thread. Needs the release build (cmake --preset release && cmake --build build/release -j1
# --target tianhe js_codec_memory_bench). Keeps each run's JSON in build/bench-protocols-*.json.
# Knobs (environment): BENCH_DURATION (s per phase, default 10), BENCH_CODEC (default
# test/codecs/js/bench_th12.js), BENCH_VERSUS (the built-in codec of the comparison row; default
# the plan's own), BENCH_SIMULATE_ARGS (more simulator arguments, e.g. a payload format).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release/src/app/tianhe
MEM=build/release/src/codecs/js/js_codec_memory_bench
duration=${BENCH_DURATION:-10}
codec=${BENCH_CODEC:-test/codecs/js/bench_th12.js}
extra=()
[ -n "${BENCH_VERSUS:-}" ] && extra+=(--versus "$BENCH_VERSUS")
[ -n "${BENCH_SIMULATE_ARGS:-}" ] && extra+=("--simulate-args=$BENCH_SIMULATE_ARGS")
for run in 1 2; do
  echo "== run $run: $BIN bench --protocols --duration $duration"
  out=$("$BIN" bench --protocols --duration "$duration")
  echo "$out"
  echo "$out" | tail -n 1 >"build/bench-protocols-$run.json"
  echo "== run $run: $BIN bench --protocols --protocol lorawan --codec $codec ${extra[*]}"
  out=$("$BIN" bench --protocols --protocol lorawan --codec "$codec" --duration "$duration" \
    ${extra[@]+"${extra[@]}"})
  echo "$out"
  echo "$out" | tail -n 1 >"build/bench-protocols-codec-$run.json"
  echo "== run $run: $MEM --codecs 100"
  "$MEM" --codecs 100
done
echo "(JSON kept in build/bench-protocols-{1,2}.json and build/bench-protocols-codec-{1,2}.json)"
