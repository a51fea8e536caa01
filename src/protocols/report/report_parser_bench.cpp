// Micro-benchmarks of the report datagram parser (the per-datagram cost on a shard's hot path).
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <vector>

#include "protocols/report/report_encoder.h"
#include "protocols/report/report_parser.h"

namespace {

using namespace tianhe::protocols::report;  // NOLINT(google-build-using-namespace)
namespace core = tianhe::core;

constexpr std::string_view kTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

// A typical sensor reading: five metrics of every value type.
std::array<MetricIn, 5> five_metrics() {
  std::array<MetricIn, 5> m{};
  m[0].name = "temperature";
  m[0].value.type = core::ValueType::kDouble;
  m[0].value.f64 = 21.5;
  m[1].name = "humidity";
  m[1].value.type = core::ValueType::kDouble;
  m[1].value.f64 = 48.25;
  m[2].id = 17;
  m[2].value.type = core::ValueType::kInt64;
  m[2].value.i64 = -1234;
  m[3].name = "door_open";
  m[3].value.type = core::ValueType::kBool;
  m[3].value.b = true;
  m[4].name = "firmware";
  m[4].value.type = core::ValueType::kString;
  m[4].value.str = "2.4.1";
  return m;
}

std::vector<uint8_t> datagram(int reports) {
  std::vector<uint8_t> buf(65507);
  EnvelopeEncoder enc(buf);
  const auto m = five_metrics();
  for (int i = 0; i < reports; ++i) {
    enc.add_report(1000 + static_cast<uint64_t>(i), static_cast<uint32_t>(i),
                   1'700'000'000'000'000'000 + i, true, m, i % 4 == 0 ? kTraceparent : "");
  }
  buf.resize(enc.size());
  return buf;
}

void run(benchmark::State& state, int reports) {
  const std::vector<uint8_t> bytes = datagram(reports);
  core::ReportBatch batch(256, 256 * 64);
  const ParserLimits limits;
  for (auto _ : state) {
    batch.clear();
    ParseResult r = parse_datagram(bytes, 0, 0, limits, batch);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(batch.begin());
  }
  state.SetItemsProcessed(state.iterations() * reports);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}

// One device sending one report with five metrics and a traceparent: the common small datagram.
void BM_ParseSingleReport(benchmark::State& state) {
  run(state, 1);
}
BENCHMARK(BM_ParseSingleReport);

// An edge gateway batching 32 reports (five metrics each, a quarter traced) into one datagram.
void BM_ParseBatch32(benchmark::State& state) {
  run(state, 32);
}
BENCHMARK(BM_ParseBatch32);

}  // namespace
