// The JavaScript codec next to the built-in C++ Cayenne LPP codec, on the same payloads in the
// same run: test/codecs/js/lpp_mini.js (a vendor-style Decoder, 15 lines of byte arithmetic)
// against codecs/cayenne_lpp. Also the TS013 example codec; test/codecs/js/bench_th12.js (the
// decoder `tianhe bench --protocols --codec` runs in the LoRaWAN row) against codecs/raw, the
// row's built-in codec, on that row's 12-byte payload; and a call stopped by its budget.
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "codecs/cayenne_lpp/cayenne_lpp_codec.h"
#include "codecs/js/js_codec.h"
#include "codecs/raw/raw_codec.h"

namespace tianhe::codecs::js {
namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Temperature, humidity, barometer, analog input, digital input: 15 bytes, 5 metrics.
const std::vector<uint8_t> kLpp = {0x01, 0x67, 0x00, 0xeb, 0x02, 0x68, 0x5a, 0x03, 0x73,
                                   0x27, 0x7f, 0x04, 0x02, 0x01, 0x2c, 0x05, 0x00, 0x01};

// Decodes `payload` over and over. A call the time budget stopped is counted ("timeouts"), not
// an error: the budget is wall-clock time, so on a loaded machine a call whose thread was
// descheduled past it is stopped however little it computed. Any other failure is an error.
template <typename Codec>
void run(benchmark::State& state, Codec& codec, const std::vector<uint8_t>& payload) {
  core::ReportBatch batch(256, 256 * 8);
  int64_t timeouts = 0;
  for (auto _ : state) {
    batch.clear();
    codec.batch_done();
    core::Report* r = batch.add_report();
    const pipeline::DecodeStatus st = codec.decode(payload, {.fport = 1}, batch, *r);
    if (st == pipeline::DecodeStatus::kTimeout) {
      ++timeouts;
    } else if (st != pipeline::DecodeStatus::kOk) {
      state.SkipWithError("decode failed");
      break;
    }
    benchmark::DoNotOptimize(r->metric_count);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["timeouts"] = static_cast<double>(timeouts);
}

// The built-in C++ codec: the floor.
void BM_CayenneLppCpp(benchmark::State& state) {
  cayenne_lpp::CayenneLppCodec codec;
  run(state, codec, kLpp);
}
BENCHMARK(BM_CayenneLppCpp);

// The same payload through a JavaScript Decoder(bytes, port): copy in, call, flatten, copy out.
void BM_CayenneLppJs(benchmark::State& state) {
  auto codec = JsCodec::from_source("lpp_mini.js", read(TH_JS_EXAMPLES "/lpp_mini.js"));
  if (!codec.ok()) {
    state.SkipWithError(codec.error().message.c_str());
    return;
  }
  run(state, **codec, kLpp);
}
BENCHMARK(BM_CayenneLppJs);

// A TS013 decodeUplink with nested data and helper functions (acme_th.js).
void BM_Ts013Js(benchmark::State& state) {
  auto codec = JsCodec::from_source("acme_th.js", read(TH_JS_EXAMPLES "/acme_th.js"));
  if (!codec.ok()) {
    state.SkipWithError(codec.error().message.c_str());
    return;
  }
  run(state, **codec, {0x08, 0x59, 0x5b, 0x0c, 0x1c, 0x01});
}
BENCHMARK(BM_Ts013Js);

// The LoRaWAN simulator's payload: 8 pseudo-random bytes and a little-endian frame round.
const std::vector<uint8_t> kSim12 = {0x6b, 0x03, 0xdc, 0x69, 0x5c, 0x45,
                                     0x50, 0x25, 0x02, 0x00, 0x00, 0x00};

// The LoRaWAN bench row's built-in codec (hex of the payload): its floor.
void BM_RawCpp12(benchmark::State& state) {
  raw::RawCodec codec;
  run(state, codec, kSim12);
}
BENCHMARK(BM_RawCpp12);

// The decoder of the LoRaWAN bench row's --codec run (TS013, 7 metrics, a boolean pair).
void BM_Th12Js(benchmark::State& state) {
  auto codec = JsCodec::from_source("bench_th12.js", read(TH_JS_EXAMPLES "/bench_th12.js"));
  if (!codec.ok()) {
    state.SkipWithError(codec.error().message.c_str());
    return;
  }
  run(state, **codec, kSim12);
}
BENCHMARK(BM_Th12Js);

// A call stopped by a 1 ms budget: what an endless loop costs the shard.
void BM_EndlessLoopStopped(benchmark::State& state) {
  auto codec = JsCodec::from_source("loop.js", "function Decoder(b) { for (;;) {} }",
                                    {.time_budget = std::chrono::milliseconds(1)});
  core::ReportBatch batch(4, 16);
  for (auto _ : state) {
    batch.clear();
    core::Report* r = batch.add_report();
    benchmark::DoNotOptimize((*codec)->decode(kLpp, {}, batch, *r));
  }
}
BENCHMARK(BM_EndlessLoopStopped)->Unit(benchmark::kMillisecond)->Iterations(20);

}  // namespace
}  // namespace tianhe::codecs::js
