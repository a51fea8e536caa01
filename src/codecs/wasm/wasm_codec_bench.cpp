// The WebAssembly codec next to the built-in C++ Cayenne LPP codec, on the same payloads in the
// same run: the Cayenne LPP subset decoder of test/codecs/wasm in C (clang --target=wasm32 -O2)
// and in hand-written WAT, against codecs/cayenne_lpp. Also a call stopped by its budget.
#include <benchmark/benchmark.h>

#include <vector>

#include "codecs/cayenne_lpp/cayenne_lpp_codec.h"
#include "codecs/wasm/wasm_codec.h"

namespace tianhe::codecs::wasm {
namespace {

// Temperature, humidity, barometer, analog input, digital input: 18 bytes, 5 metrics.
const std::vector<uint8_t> kLpp = {0x01, 0x67, 0x00, 0xeb, 0x02, 0x68, 0x5a, 0x03, 0x73,
                                   0x27, 0x7f, 0x04, 0x02, 0x01, 0x2c, 0x05, 0x00, 0x01};

// ns per decode is the benchmark's time; decodes/s its items_per_second.
template <typename Codec>
void run(benchmark::State& state, Codec& codec, const std::vector<uint8_t>& payload) {
  core::ReportBatch batch(256, 256 * 8);
  for (auto _ : state) {
    batch.clear();
    codec.batch_done();
    core::Report* r = batch.add_report();
    if (codec.decode(payload, {.fport = 1}, batch, *r) != pipeline::DecodeStatus::kOk) {
      state.SkipWithError("decode failed");
      break;
    }
    benchmark::DoNotOptimize(r->metric_count);
  }
  state.SetItemsProcessed(state.iterations());
}

void run_file(benchmark::State& state, const char* file) {
  auto codec = WasmCodec::from_file(std::string(TH_WASM_MODULES) + "/" + file,
                                    {.reload_check = std::chrono::nanoseconds(0)});
  if (!codec.ok()) {
    state.SkipWithError(codec.error().message.c_str());
    return;
  }
  run(state, **codec, kLpp);
}

// The built-in C++ codec: the floor.
void BM_CayenneLppCpp(benchmark::State& state) {
  cayenne_lpp::CayenneLppCodec codec;
  run(state, codec, kLpp);
}
BENCHMARK(BM_CayenneLppCpp);

// The same payload through the C example: copy in, one call, read the layout out.
void BM_CayenneLppWasmC(benchmark::State& state) {
  run_file(state, "lpp_subset_c.wasm");
}
BENCHMARK(BM_CayenneLppWasmC);

// The same through the WAT example.
void BM_CayenneLppWasmWat(benchmark::State& state) {
  run_file(state, "lpp_subset.wasm");
}
BENCHMARK(BM_CayenneLppWasmWat);

// A call stopped by a 1 ms budget, and the fresh instance after it: what an endless loop costs.
void BM_EndlessLoopStopped(benchmark::State& state) {
  auto codec = WasmCodec::from_file(std::string(TH_WASM_MODULES) + "/loop.wasm",
                                    {.time_budget = std::chrono::milliseconds(1)});
  if (!codec.ok()) {
    state.SkipWithError(codec.error().message.c_str());
    return;
  }
  const std::vector<uint8_t> loop = {0x01};
  core::ReportBatch batch(4, 16);
  for (auto _ : state) {
    batch.clear();
    core::Report* r = batch.add_report();
    benchmark::DoNotOptimize((*codec)->decode(loop, {}, batch, *r));
  }
}
BENCHMARK(BM_EndlessLoopStopped)->Unit(benchmark::kMillisecond)->Iterations(20);

}  // namespace
}  // namespace tianhe::codecs::wasm
