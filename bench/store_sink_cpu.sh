#!/usr/bin/env bash
# CPU cost of the store sink, per million reports, for one or more `tianhe` binaries (an A/B
# comparison of two builds, run alternately on the same machine). For each binary: start
# `tianhe serve` with examples/tianhe.toml on ports chosen at run time, send batched reports
# (32 per datagram, as fast as possible) for BENCH_SECONDS, wait until the store has caught up,
# then divide the `store-sink` thread's CPU time by the reports it wrote. CPU time per report is
# steadier than throughput on a shared, noisy machine.
#
#   bench/store_sink_cpu.sh build/release/src/app/tianhe /path/to/other/tianhe
#
# Knobs (environment): BENCH_SECONDS (default 6), BENCH_ROUNDS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 TIANHE_BINARY [MORE_BINARIES...]" >&2; exit 2; }
SIM=${SIM:-$1}
secs=${BENCH_SECONDS:-6}
work=$(mktemp -d /tmp/tianhe-sinkcpu-XXXXXX)
trap 'rm -rf "$work"' EXIT

measure() {
  local bin=$1 dir=$work/run
  rm -rf "$dir" && mkdir -p "$dir"
  sed -e "s|^data_dir = .*|data_dir = \"$dir/data\"|" \
      -e 's|listen = "127.0.0.1:7700"|listen = "127.0.0.1:0"|' \
      -e 's|listen = "127.0.0.1:8080"|listen = "127.0.0.1:0"|' examples/tianhe.toml > "$dir/cfg.toml"
  "$bin" serve --config "$dir/cfg.toml" --ready-file "$dir/ready" > "$dir/serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do [ -s "$dir/ready" ] && break; sleep 0.05; done
  read -r report_port http_port < "$dir/ready"
  "$SIM" simulate --target "127.0.0.1:$report_port" --rate 0 --batch 32 --duration "$secs" \
    --ack --quiet --json > "$dir/sim.json"
  local lag=1
  for _ in $(seq 1200); do
    lag=$(curl -s "127.0.0.1:$http_port/metrics" |
      awk '/^tianhe_sink_lag_bytes/ {s += $2} END {print s + 0}')
    [ "$lag" = "0" ] && break
    sleep 0.1
  done
  local tid ticks written
  for t in /proc/$pid/task/*; do [ "$(cat "$t/comm")" = store-sink ] && tid=${t##*/}; done
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/task/$tid/stat")
  written=$(curl -s "127.0.0.1:$http_port/metrics" |
    awk '/^tianhe_sink_store_reports_written_total/ {s += $2} END {print s + 0}')
  kill "$pid"
  wait "$pid" || true
  awk -v b="$bin" -v t="$ticks" -v w="$written" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    printf "%-50s %9d reports  store-sink %.2f CPU-s  = %.3f CPU-s per million\n",
      b, w, t / hz, (t / hz) / (w / 1e6) }'
}

for _ in $(seq "${BENCH_ROUNDS:-2}"); do
  for bin in "$@"; do measure "$bin"; done
done
