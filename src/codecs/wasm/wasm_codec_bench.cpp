// The WebAssembly codec next to the built-in C++ Cayenne LPP codec, on the same payloads in the
// same run: the Cayenne LPP subset decoder of test/codecs/wasm in C (clang --target=wasm32 -O2)
// and in hand-written WAT, against codecs/cayenne_lpp. Also a call stopped by its budget.
#include <benchmark/benchmark.h>

#include <fstream>
#include <memory>
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
  // The defaults, hot reload's look at the file once a second included.
  auto codec = WasmCodec::from_file(std::string(TH_WASM_MODULES) + "/" + file);
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

// Resident and virtual size of the process, in bytes (/proc/self/statm, in pages).
std::pair<double, double> rss_and_vsz() {
  std::ifstream in("/proc/self/statm");
  double vsz = 0, rss = 0;
  in >> vsz >> rss;
  return {rss * 4096, vsz * 4096};
}

// 100 codecs of one shard (100 instances of the C example, each decoding once): the memory
// per shard for 100 loaded codecs, as counters (resident and address space per codec).
void BM_HundredCodecsMemory(benchmark::State& state) {
  for (auto _ : state) {
    const auto [rss0, vsz0] = rss_and_vsz();
    std::vector<std::unique_ptr<WasmCodec>> codecs;
    core::ReportBatch batch(4, 64);
    for (int i = 0; i < 100; ++i) {
      auto c = WasmCodec::from_file(std::string(TH_WASM_MODULES) + "/lpp_subset_c.wasm",
                                    {.reload_check = std::chrono::nanoseconds(0)});
      if (!c.ok()) {
        state.SkipWithError(c.error().message.c_str());
        return;
      }
      batch.clear();
      core::Report* r = batch.add_report();
      benchmark::DoNotOptimize((*c)->decode(kLpp, {}, batch, *r));
      codecs.push_back(std::move(c.value()));
    }
    const auto [rss1, vsz1] = rss_and_vsz();
    state.counters["rss_KiB_per_codec"] = (rss1 - rss0) / 1024 / 100;
    state.counters["vsz_MiB_per_codec"] = (vsz1 - vsz0) / (1 << 20) / 100;
  }
}
BENCHMARK(BM_HundredCodecsMemory)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
}  // namespace tianhe::codecs::wasm
