// Micro-benchmarks of the MQTT-SN frame parser and reply encoders (per-datagram costs on a
// shard's hot path).
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <string_view>

#include "protocols/mqtt_sn/mqtt_sn_parser.h"

namespace {

using namespace tianhe::protocols::mqtt_sn;  // NOLINT(google-build-using-namespace)

// A QoS 1 PUBLISH of a typical JSON reading: the gateway's most frequent datagram.
void BM_ParsePublish(benchmark::State& state) {
  constexpr std::string_view kJson = R"({"temperature":21.5,"humidity":48.25,"battery_mv":3100})";
  std::array<uint8_t, 128> buf{};
  Flags f;
  f.qos = Qos::kQos1;
  const size_t n =
      encode_publish(f, 1, 7, {reinterpret_cast<const uint8_t*>(kJson.data()), kJson.size()}, buf);
  Frame frame;
  for (auto _ : state) {
    benchmark::DoNotOptimize(parse_frame({buf.data(), n}, ParserLimits{}, frame));
    benchmark::DoNotOptimize(frame);
  }
}
BENCHMARK(BM_ParsePublish);

// The PUBACK the gateway parks for it.
void BM_EncodePuback(benchmark::State& state) {
  std::array<uint8_t, 16> buf{};
  uint16_t id = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(encode_puback(1, ++id, ReturnCode::kAccepted, buf));
  }
}
BENCHMARK(BM_EncodePuback);

}  // namespace

BENCHMARK_MAIN();
