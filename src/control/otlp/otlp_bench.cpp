// Micro-benchmarks of the exporter: encoding alone (spans/s of ExportTraceServiceRequest bytes),
// and export end to end — rings → batches → POST → answer — against a receiver that discards
// (the project's own HTTP server on loopback) and against the python3-protobuf receiver.
#include <benchmark/benchmark.h>

#include <string>
#include <thread>
#include <vector>

#include "control/http_server.h"
#include "control/otlp/otlp_encoder.h"
#include "control/otlp/otlp_exporter.h"
#include "control/otlp/otlp_test_receiver.h"
#include "core/report.h"
#include "runtime/alloc_counter.h"

namespace tianhe::control::otlp {
namespace {

using core::tracing::SpanRecord;
using core::tracing::SpanRing;
using core::tracing::Stage;

/// A realistic span: a sink confirmation with every text field set.
SpanRecord sample_span(uint32_t i) {
  SpanRecord s;
  for (size_t b = 0; b < 16; ++b) s.trace_id[b] = static_cast<uint8_t>(b * 13 + i);
  for (size_t b = 0; b < 8; ++b) s.span_id[b] = static_cast<uint8_t>(b * 7 + i);
  for (size_t b = 0; b < 8; ++b) s.parent_span_id[b] = static_cast<uint8_t>(b * 5 + 1);
  s.start_ns = 1'700'000'000'000'000'000 + i;
  s.end_ns = s.start_ns + 25'000;
  s.device_id = 100'000 + i;
  s.seq = i;
  s.tenant = 1;
  s.shard = 2;
  s.threshold = core::tracing::threshold_for_rate(0.01);
  s.has_threshold = true;
  s.stage = i % 2 == 0 ? Stage::kReport : Stage::kSink;
  s.kind = i % 2 == 0 ? core::tracing::SpanKind::kServer : core::tracing::SpanKind::kClient;
  s.protocol = static_cast<core::Protocol>(1);
  core::tracing::set_text(s.model, "acme-th-sensor-v2");
  core::tracing::set_text(s.sink, "postgres");
  return s;
}

// Encoding one batch of state.range(0) spans (half report, half sink spans) into request bytes.
void BM_Encode(benchmark::State& state) {
  core::set_protocol_name(static_cast<core::Protocol>(1), "report");
  std::vector<SpanRecord> spans(static_cast<size_t>(state.range(0)));
  for (size_t i = 0; i < spans.size(); ++i) spans[i] = sample_span(static_cast<uint32_t>(i));
  OtlpEncoder enc({"node-1", "bench-host", "0.1.0"});
  std::string out;
  enc.encode(spans, out);  // warm: the output string's capacity
  const uint64_t allocs_before = runtime::thread_allocations();
  for (auto _ : state) {
    enc.encode(spans, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["allocs_per_batch"] =
      static_cast<double>(runtime::thread_allocations() - allocs_before) /
      static_cast<double>(state.iterations());
  state.counters["bytes_per_span"] =
      static_cast<double>(out.size()) / static_cast<double>(state.range(0));
}
BENCHMARK(BM_Encode)->Arg(512)->Arg(64);

/// Pushes `n` spans into `ring` (waiting for room: the ring is the producer's) and waits until
/// the exporter reports `target` exported.
void push_and_wait(SpanRing& ring, const OtlpExporter& exporter, uint32_t n, uint64_t target) {
  for (uint32_t i = 0; i < n; ++i) {
    while (!ring.push(sample_span(i))) std::this_thread::yield();
  }
  while (exporter.stats().spans_exported < target) std::this_thread::yield();
}

/// One iteration exports this many spans.
constexpr uint32_t kSpansPerIteration = 4096;

void run_export(benchmark::State& state, const std::string& endpoint) {
  core::set_protocol_name(static_cast<core::Protocol>(1), "report");
  SpanRing ring(1 << 16, "bench");
  OtlpExporterOptions o;
  o.endpoint = endpoint;
  o.max_batch_spans = 512;
  o.max_queue_spans = 8192;
  o.flush_interval = std::chrono::milliseconds(1);
  o.poll_interval = std::chrono::milliseconds(1);
  OtlpExporter exporter(o, "node-1");
  if (!exporter.start({&ring}).ok()) {
    state.SkipWithError("exporter did not start");
    return;
  }
  uint64_t target = 0;
  for (auto _ : state) {
    target += kSpansPerIteration;
    push_and_wait(ring, exporter, kSpansPerIteration, target);
  }
  exporter.stop();
  const OtlpExporterStats st = exporter.stats();
  state.SetItemsProcessed(static_cast<int64_t>(st.spans_exported));
  state.counters["requests"] = static_cast<double>(st.requests[0]);
  state.counters["dropped"] =
      static_cast<double>(st.ring_full + st.spans_dropped[0] + st.spans_dropped[1]);
}

// Export end to end against a receiver that reads each request and discards it (HttpServer).
void BM_ExportToDiscardingServer(benchmark::State& state) {
  HttpServer server;
  server.route("POST", "/v1/traces", [](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "application/x-protobuf";
    return r;
  });
  if (!server.start(Endpoint{"127.0.0.1", 0}).ok()) {
    state.SkipWithError("server did not start");
    return;
  }
  run_export(state, "http://127.0.0.1:" + std::to_string(server.port()) + "/v1/traces");
  server.stop();
}
BENCHMARK(BM_ExportToDiscardingServer)->Unit(benchmark::kMillisecond)->UseRealTime();

// Export end to end against the python3-protobuf receiver (decodes and writes JSON lines).
void BM_ExportToPythonReceiver(benchmark::State& state) {
  const OtlpTestReceiver rx;
  if (!rx.ok()) {
    state.SkipWithError("receiver did not start");
    return;
  }
  run_export(state, rx.endpoint());
}
BENCHMARK(BM_ExportToPythonReceiver)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace tianhe::control::otlp
