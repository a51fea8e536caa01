// Micro-benchmarks of the raw codec: the cost of one decode on a shard's hot path.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "codecs/raw/raw_codec.h"

namespace {

namespace core = tianhe::core;
using tianhe::codecs::raw::RawCodec;

void run(benchmark::State& state, size_t bytes) {
  RawCodec codec;
  core::ReportBatch batch(256, 512);
  const std::vector<uint8_t> payload(bytes, 0x5A);
  for (auto _ : state) {
    if (batch.reports_free() == 0) {
      batch.clear();
      codec.batch_done();
    }
    core::Report* r = batch.add_report();
    auto st = codec.decode(payload, {}, batch, *r);
    benchmark::DoNotOptimize(st);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}

// A 12-byte payload: a small LoRaWAN uplink of an unknown format.
void BM_Raw12(benchmark::State& state) {
  run(state, 12);
}
BENCHMARK(BM_Raw12);

// A 242-byte payload: the largest LoRaWAN application payload (DR4+ in EU868).
void BM_Raw242(benchmark::State& state) {
  run(state, 242);
}
BENCHMARK(BM_Raw242);

}  // namespace
