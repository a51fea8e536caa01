// Micro-benchmarks of the cayenne_lpp codec: the cost of one decode on a shard's hot path.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "codecs/cayenne_lpp/cayenne_lpp_codec.h"

namespace {

namespace core = tianhe::core;
using tianhe::codecs::cayenne_lpp::CayenneLppCodec;

void run(benchmark::State& state, const std::vector<uint8_t>& payload) {
  CayenneLppCodec codec;
  core::ReportBatch batch(256, 256 * 64);
  for (auto _ : state) {
    if (batch.reports_free() == 0) batch.clear();
    core::Report* r = batch.add_report();
    auto st = codec.decode(payload, {}, batch, *r);
    benchmark::DoNotOptimize(st);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(payload.size()));
}

// Two temperatures (the reference's first example, 8 bytes): a typical small LoRaWAN uplink.
void BM_LppTwoTemperatures(benchmark::State& state) {
  run(state, {0x03, 0x67, 0x01, 0x10, 0x05, 0x67, 0x00, 0xFF});
}
BENCHMARK(BM_LppTwoTemperatures);

// A tracker: GPS, accelerometer, temperature, humidity, battery voltage (10 metrics, 32 bytes).
void BM_LppTracker(benchmark::State& state) {
  run(state, {0x01, 0x88, 0x06, 0x76, 0x5F, 0xF2, 0x96, 0x0A, 0x00, 0x03, 0xE8,
              0x02, 0x71, 0x04, 0xD2, 0xFB, 0x2E, 0x00, 0x00, 0x03, 0x67, 0x01,
              0x10, 0x04, 0x68, 0x50, 0x05, 0x74, 0x01, 0x4A, 0x06, 0x66, 0x01});
}
BENCHMARK(BM_LppTracker);

}  // namespace
