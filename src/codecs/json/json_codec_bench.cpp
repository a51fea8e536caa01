// Micro-benchmarks of the json codec: the cost of one decode on a shard's hot path.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string_view>

#include "codecs/json/json_codec.h"

namespace {

namespace core = tianhe::core;
using tianhe::codecs::json::JsonCodec;

void run(benchmark::State& state, std::string_view text) {
  JsonCodec codec;
  core::ReportBatch batch(256, 256 * 64);
  const std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(text.data()),
                                         text.size());
  for (auto _ : state) {
    // One batch of 256 payloads, then the batch is done, as the codec stage runs it.
    if (batch.reports_free() == 0) {
      batch.clear();
      codec.batch_done();
    }
    core::Report* r = batch.add_report();
    auto st = codec.decode(payload, {}, batch, *r);
    benchmark::DoNotOptimize(st);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}

// A flat sensor reading of five metrics (numbers, a bool, a string): the common MQTT payload.
void BM_JsonFlat5(benchmark::State& state) {
  run(state, R"({"temperature":21.5,"humidity":48,"battery_mv":3300,"door":true,"fw":"2.4.1"})");
}
BENCHMARK(BM_JsonFlat5);

// The same readings nested two levels with an array: dotted and indexed names are composed.
void BM_JsonNested(benchmark::State& state) {
  run(state,
      R"({"env":{"temperature":21.5,"humidity":48},"power":{"battery_mv":3300,"cells":[3.31,3.29]},)"
      R"("door":true,"fw":"2.4.1"})");
}
BENCHMARK(BM_JsonNested);

// A larger reading: 32 top-level numbers (a multi-sensor node).
void BM_JsonFlat32(benchmark::State& state) {
  run(state,
      R"({"m0":0.5,"m1":1.5,"m2":2.5,"m3":3.5,"m4":4.5,"m5":5.5,"m6":6.5,"m7":7.5,"m8":8,"m9":9,)"
      R"("m10":10,"m11":11,"m12":12,"m13":13,"m14":14,"m15":15,"m16":16.25,"m17":17.25,)"
      R"("m18":18.25,"m19":19.25,"m20":20.25,"m21":21.25,"m22":22,"m23":23,"m24":24,"m25":25,)"
      R"("m26":26,"m27":27,"m28":28,"m29":29,"m30":30,"m31":31})");
}
BENCHMARK(BM_JsonFlat32);

}  // namespace
