// Micro-benchmarks of the control plane's HTTP parsing and metrics rendering.
#include <benchmark/benchmark.h>

#include <array>
#include <string>

#include "control/http_server.h"
#include "core/metrics.h"

namespace tianhe::control {
namespace {

// A typical API request as curl or a dashboard sends it.
void BM_ParseTypicalRequest(benchmark::State& state) {
  const std::string text =
      "GET /api/v1/devices/123456/reports?from=1700000000&limit=100 HTTP/1.1\r\n"
      "Host: gateway:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
      "Authorization: Bearer 0123456789abcdef0123456789abcdef\r\n\r\n";
  HttpRequest req;
  size_t consumed = 0;
  for (auto _ : state) {
    auto st = parse_http_request({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, req,
                                 consumed);
    benchmark::DoNotOptimize(st);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseTypicalRequest);

// One scrape of 16 shards x 5 protocols x 4 reasons plus a log2 histogram per shard.
void BM_RenderScrape(benchmark::State& state) {
  std::array<uint64_t, 24> buckets{};
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] = i * 3;
  for (auto _ : state) {
    PromWriter w;
    for (int shard = 0; shard < 16; ++shard) {
      for (const char* proto : {"report", "mqtt_sn", "modbus", "lorawan", "mqtt"}) {
        for (const char* reason : {"ok", "malformed", "unknown_device", "model"}) {
          w.counter("tianhe_protocol_reports_total", "Reports.",
                    {{"protocol", proto}, {"result", reason}}, shard);
        }
      }
      write_log2_us_histogram(w, "tianhe_log_append_duration_seconds", "Append latency.", {},
                              buckets, 0.5);
    }
    benchmark::DoNotOptimize(w.render());
  }
}
BENCHMARK(BM_RenderScrape);

}  // namespace
}  // namespace tianhe::control
