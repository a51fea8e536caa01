// Micro-benchmarks of the packet reader on the hot path: one PUBLISH as the broker sends it.
#include <benchmark/benchmark.h>

#include <string>

#include "protocols/mqtt/mqtt_packet.h"

namespace {

using namespace tianhe::protocols::mqtt;  // NOLINT(google-build-using-namespace)

// A QoS 1 PUBLISH of a 60-byte JSON payload, MQTT 3.1.1 (no properties).
void BM_ParsePublish311(benchmark::State& state) {
  const std::string payload = R"({"temperature": 21.5, "humidity": 40.25, "battery_mv": 3300})";
  uint8_t buf[256];
  const size_t n = encode_publish(
      Version::k311, "acme/123456/telemetry", 1, 42, false,
      {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, "", "", buf);
  ParserLimits l;
  l.version = Version::k311;
  for (auto _ : state) {
    Packet p;
    benchmark::DoNotOptimize(parse_packet({buf, n}, l, p));
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_ParsePublish311);

// The same with an MQTT 5 traceparent user property (properties walked and the topic and
// strings UTF-8 checked).
void BM_ParsePublish5Traceparent(benchmark::State& state) {
  const std::string payload = R"({"temperature": 21.5, "humidity": 40.25, "battery_mv": 3300})";
  uint8_t buf[256];
  const size_t n =
      encode_publish(Version::k5, "acme/123456/telemetry", 1, 42, false,
                     {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()},
                     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "", buf);
  ParserLimits l;
  for (auto _ : state) {
    Packet p;
    benchmark::DoNotOptimize(parse_packet({buf, n}, l, p));
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_ParsePublish5Traceparent);

}  // namespace
