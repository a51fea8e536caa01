// The exporter against a real OTLP/HTTP receiver (test/tracing/otlp_receiver.py, decoding with
// python3-protobuf's classes of the official schema) on loopback: every field as that decoder
// reads it, retries after 503, a receiver that is down, partial success, stop() flushing.
#include "control/otlp/otlp_exporter.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <set>
#include <thread>

#include "control/otlp/otlp_test_receiver.h"
#include "core/clock.h"
#include "core/report.h"

namespace tianhe::control::otlp {
namespace {

using core::tracing::SpanKind;
using core::tracing::SpanRecord;
using core::tracing::SpanRing;
using core::tracing::SpanStatus;
using core::tracing::Stage;
using nlohmann::json;

constexpr auto kReport = static_cast<core::Protocol>(1);
constexpr auto kMqtt = static_cast<core::Protocol>(2);
constexpr auto kLorawan = static_cast<core::Protocol>(3);
constexpr auto kModbus = static_cast<core::Protocol>(4);
constexpr auto kUnnamed = static_cast<core::Protocol>(200);

void name_protocols() {
  core::set_protocol_name(kReport, "report");
  core::set_protocol_name(kMqtt, "mqtt");
  core::set_protocol_name(kLorawan, "lorawan");
  core::set_protocol_name(kModbus, "modbus");
}

/// Waits until `pred` holds, up to a minute (a condition with a deadline, not a sleep).
bool eventually(const std::function<bool()>& pred) {
  const int64_t until = core::mono_ns() + 60'000'000'000;
  while (!pred()) {
    if (core::mono_ns() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string hex(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (const uint8_t b : bytes) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 0xf]);
  }
  return s;
}

/// A span whose ids and times follow from `i`.
SpanRecord span(uint32_t i, Stage stage = Stage::kReport) {
  SpanRecord s;
  // The first four bytes of both ids are `i` (unique per test), the rest a fixed pattern.
  for (size_t b = 0; b < 16; ++b) {
    s.trace_id[b] = static_cast<uint8_t>(b < 4 ? i >> (8 * (3 - b)) : 0x10 + b);
  }
  for (size_t b = 0; b < 8; ++b) {
    s.span_id[b] = static_cast<uint8_t>(b < 4 ? i >> (8 * (3 - b)) : 0xa0 + b);
  }
  s.start_ns = 1'700'000'000'000'000'000 + int64_t{i} * 1000;
  s.end_ns = s.start_ns + 500 + i;
  s.device_id = 1000 + i;
  s.seq = i;
  s.tenant = 3;
  s.shard = static_cast<uint16_t>(i % 4);
  s.stage = stage;
  s.kind = stage == Stage::kReport ? SpanKind::kServer : SpanKind::kInternal;
  s.protocol = kReport;
  core::tracing::set_text(s.model, "th-sensor");
  return s;
}

OtlpExporterOptions options_for(const std::string& endpoint) {
  OtlpExporterOptions o;
  o.endpoint = endpoint;
  o.flush_interval = std::chrono::milliseconds(20);
  o.poll_interval = std::chrono::milliseconds(5);
  o.initial_backoff = std::chrono::milliseconds(5);
  o.max_backoff = std::chrono::milliseconds(50);
  o.timeout = std::chrono::milliseconds(20'000);
  o.host_name = "test-host";
  o.scope_version = "9.9.9";
  return o;
}

uint64_t dropped(const OtlpExporterStats& s, DropReason r) {
  return s.spans_dropped[static_cast<size_t>(r)];
}
uint64_t requests(const OtlpExporterStats& s, RequestResult r) {
  return s.requests[static_cast<size_t>(r)];
}

/// Decoded spans by span id.
std::map<std::string, json> by_span_id(const std::vector<json>& rows) {
  std::map<std::string, json> m;
  for (const json& r : rows) m[r["span_id"].get<std::string>()] = r;
  return m;
}

/// A TCP port with a bound socket that does not listen: connecting is refused, and the port stays
/// ours while the socket is open (nothing else can take it).
class DownPort {
 public:
  DownPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~DownPort() { close(fd_); }
  DownPort(const DownPort&) = delete;
  DownPort& operator=(const DownPort&) = delete;
  std::string endpoint() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/v1/traces";
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

TEST(OtlpExporterTest, EveryFieldAsTheReceiverDecodesIt) {
  name_protocols();
  const OtlpTestReceiver rx;
  ASSERT_TRUE(rx.ok());
  SpanRing ring(64, "shard-0");
  OtlpExporterOptions o = options_for(rx.endpoint());
  o.max_batch_spans = 3;  // several requests on one kept-alive connection
  o.headers = {{"X-Tianhe-Test", "yes"}};
  OtlpExporter exporter(o, "node-7");
  ASSERT_TRUE(exporter.start({&ring}).ok());

  std::vector<SpanRecord> sent;
  // 0: a root report span over UDP, sampled at 25 %, OK.
  SpanRecord s = span(0);
  s.threshold = core::tracing::threshold_for_rate(0.25);
  s.has_threshold = true;
  s.status = SpanStatus::kOk;
  sent.push_back(s);
  // 1: an MQTT report continuing the sender's trace (remote parent), CONSUMER, not sampled flag.
  s = span(1);
  s.protocol = kMqtt;
  s.kind = SpanKind::kConsumer;
  for (size_t b = 0; b < 8; ++b) s.parent_span_id[b] = static_cast<uint8_t>(0x50 + b);
  s.trace_flags = 0;
  sent.push_back(s);
  // 2: validation failed.
  s = span(2, Stage::kValidate);
  s.status = SpanStatus::kError;
  for (size_t b = 0; b < 8; ++b) s.parent_span_id[b] = sent[0].span_id[b];
  core::tracing::set_text(s.detail, "out_of_range");
  sent.push_back(s);
  // 3, 4, 5: sinks with a database, a messaging and no semantic-convention system.
  const char* sinks[] = {"postgres", "nats", "jsonl"};
  for (uint32_t k = 0; k < 3; ++k) {
    s = span(3 + k, Stage::kSink);
    s.kind = SpanKind::kClient;
    s.count = 3 * k + 1;
    core::tracing::set_text(s.sink, sinks[k]);
    sent.push_back(s);
  }
  // 6: a decode span of a protocol no extension named; 7: LoRaWAN; 8: Modbus with no model.
  s = span(6, Stage::kDecode);
  s.protocol = kUnnamed;
  sent.push_back(s);
  s = span(7);
  s.protocol = kLorawan;
  sent.push_back(s);
  s = span(8);
  s.protocol = kModbus;
  s.model[0] = '\0';
  sent.push_back(s);
  for (const SpanRecord& r : sent) ASSERT_TRUE(ring.push(r));

  const std::vector<json> rows = rx.wait_rows("span", sent.size());
  ASSERT_EQ(rows.size(), sent.size());
  auto got = by_span_id(rows);
  ASSERT_EQ(got.size(), sent.size()) << "a span id arrived twice";
  const char* kind_names[] = {"", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
  for (size_t i = 0; i < sent.size(); ++i) {
    const SpanRecord& r = sent[i];
    SCOPED_TRACE("span " + std::to_string(i) + " " + kind_names[static_cast<int>(r.kind)]);
    ASSERT_TRUE(got.count(hex(r.span_id)));
    const json& j = got[hex(r.span_id)];
    EXPECT_EQ(j["resource"], json({{"service.name", "tianhe"},
                                   {"service.instance.id", "node-7"},
                                   {"host.name", "test-host"}}));
    EXPECT_EQ(j["scope"], json({{"name", "tianhe"}, {"version", "9.9.9"}}));
    EXPECT_EQ(j["trace_id"], hex(r.trace_id));
    const bool root = std::all_of(r.parent_span_id.begin(), r.parent_span_id.end(),
                                  [](uint8_t b) { return b == 0; });
    EXPECT_EQ(j["parent_span_id"], root ? "" : hex(r.parent_span_id));
    EXPECT_EQ(j["name"], std::string(core::tracing::stage_name(r.stage)));
    EXPECT_EQ(j["kind"], static_cast<int>(r.kind));
    EXPECT_EQ(j["start_time_unix_nano"], static_cast<uint64_t>(r.start_ns));
    EXPECT_EQ(j["end_time_unix_nano"], static_cast<uint64_t>(r.end_ns));
    uint32_t flags = r.trace_flags | 0x100u;
    if (!root && r.stage == Stage::kReport) flags |= 0x200u;  // the sender's span is remote
    EXPECT_EQ(j["flags"], flags);
    EXPECT_EQ(j["status"]["code"], static_cast<int>(r.status));
    EXPECT_EQ(j["status"]["message"], r.status == SpanStatus::kError ? r.detail : "");
    EXPECT_EQ(j["trace_state"], i == 0 ? "ot=th:c" : "");
  }
  // Attributes, span by span.
  auto attrs = [&](size_t i) { return got[hex(sent[i].span_id)]["attributes"]; };
  auto base = [&](size_t i, const std::string& protocol) {
    json a = {{"tianhe.device.id", 1000 + i},
              {"tianhe.report.seq", i},
              {"tianhe.tenant", 3},
              {"tianhe.shard", i % 4},
              {"tianhe.protocol", protocol}};
    if (sent[i].model[0] != '\0') a["tianhe.model"] = "th-sensor";
    return a;
  };
  json a0 = base(0, "report");
  a0.update({{"messaging.operation.type", "receive"},
             {"network.transport", "udp"},
             {"network.protocol.name", "report"}});
  EXPECT_EQ(attrs(0), a0);
  json a1 = base(1, "mqtt");
  a1.update({{"messaging.operation.type", "receive"},
             {"network.transport", "tcp"},
             {"network.protocol.name", "mqtt"}});
  EXPECT_EQ(attrs(1), a1);
  json a2 = base(2, "report");
  a2["tianhe.reason"] = "out_of_range";
  EXPECT_EQ(attrs(2), a2);
  json a3 = base(3, "report");
  a3.update({{"tianhe.sink", "postgres"}, {"db.system.name", "postgresql"}});  // count 1: none
  EXPECT_EQ(attrs(3), a3);
  json a4 = base(4, "report");
  a4.update({{"tianhe.sink", "nats"}, {"messaging.system", "nats"}, {"tianhe.report.count", 4}});
  EXPECT_EQ(attrs(4), a4);
  json a5 = base(5, "report");
  a5.update({{"tianhe.sink", "jsonl"}, {"tianhe.report.count", 7}});
  EXPECT_EQ(attrs(5), a5);
  EXPECT_EQ(attrs(6), base(6, "unknown"));
  json a7 = base(7, "lorawan");
  a7.update({{"messaging.operation.type", "receive"},
             {"network.transport", "udp"},
             {"network.protocol.name", "lorawan"}});
  EXPECT_EQ(attrs(7), a7);
  json a8 = base(8, "modbus");
  a8.update({{"messaging.operation.type", "receive"},
             {"network.transport", "tcp"},
             {"network.protocol.name", "modbus"}});
  EXPECT_EQ(attrs(8), a8);

  // The requests: protobuf content type, our header, one connection's worth of batches.
  const std::vector<json> reqs = rx.rows("request");
  ASSERT_GE(reqs.size(), 3u);
  for (const json& q : reqs) {
    EXPECT_EQ(q["content_type"], "application/x-protobuf");
    EXPECT_EQ(q["headers"].value("x-tianhe-test", ""), "yes");
    EXPECT_EQ(q["path"], "/v1/traces");
    EXPECT_LE(q["spans"].get<int>(), 3);
  }
  ASSERT_TRUE(eventually([&] { return exporter.stats().spans_exported == sent.size(); }));
  exporter.stop();
  const OtlpExporterStats st = exporter.stats();
  EXPECT_EQ(dropped(st, DropReason::kExportFailed), 0u);
  EXPECT_EQ(dropped(st, DropReason::kRejectedByReceiver), 0u);
  EXPECT_EQ(requests(st, RequestResult::kOk), reqs.size());
  EXPECT_EQ(st.queued, 0u);
  EXPECT_EQ(st.ring_spans, 0u);
}

// 503 and 429 with Retry-After: 0. The back-off is an hour, so the test finishes only if the
// receiver's Retry-After is what the exporter waits for.
class OtlpRetryTest : public ::testing::TestWithParam<int> {};

TEST_P(OtlpRetryTest, RetriesAfterRetryAfterNothingLostNothingTwice) {
  name_protocols();
  const int status = GetParam();
  const OtlpTestReceiver rx(
      {"--fail-first", "2", "--fail-status", std::to_string(status), "--retry-after", "0"});
  ASSERT_TRUE(rx.ok());
  SpanRing ring(256, "shard-0");
  OtlpExporterOptions o = options_for(rx.endpoint());
  o.flush_interval = std::chrono::hours(1);  // one batch, cut by size
  o.max_batch_spans = 50;
  o.initial_backoff = std::chrono::hours(1);
  o.max_backoff = std::chrono::hours(1);
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&ring}).ok());
  for (uint32_t i = 0; i < 50; ++i) ASSERT_TRUE(ring.push(span(i)));
  const std::vector<json> rows = rx.wait_rows("span", 50);
  EXPECT_EQ(rows.size(), 50u);
  EXPECT_EQ(by_span_id(rows).size(), 50u);
  ASSERT_TRUE(eventually([&] { return exporter.stats().spans_exported == 50; }));
  const std::vector<json> reqs = rx.rows("request");
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0]["status"], status);
  EXPECT_EQ(reqs[1]["status"], status);
  EXPECT_EQ(reqs[2]["status"], 200);
  EXPECT_EQ(reqs[0]["bytes"], reqs[2]["bytes"]);  // the same batch sent again
  exporter.stop();
  const OtlpExporterStats st = exporter.stats();
  EXPECT_EQ(requests(st, RequestResult::kRetryStatus), 2u);
  EXPECT_EQ(requests(st, RequestResult::kOk), 1u);
  EXPECT_EQ(dropped(st, DropReason::kExportFailed), 0u);
}

INSTANTIATE_TEST_SUITE_P(Statuses, OtlpRetryTest, ::testing::Values(503, 429));

// Two recording threads push while the exporter sends: every span a ring accepted arrives once.
TEST(OtlpExporterTest, ProducersWhileExportingNothingLostNothingTwice) {
  name_protocols();
  const OtlpTestReceiver rx;
  ASSERT_TRUE(rx.ok());
  SpanRing a(128, "shard-0");
  SpanRing b(128, "shard-1");
  OtlpExporterOptions o = options_for(rx.endpoint());
  o.max_batch_spans = 64;
  o.max_queue_spans = 256;
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&a, &b}).ok());
  constexpr uint32_t kEach = 3000;
  std::atomic<uint64_t> accepted{0};
  auto produce = [&](SpanRing& ring, uint32_t first) {
    for (uint32_t i = first; i < first + kEach; ++i) {
      if (ring.push(span(i))) accepted.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::thread ta(produce, std::ref(a), 0);
  std::thread tb(produce, std::ref(b), kEach);
  ta.join();
  tb.join();
  EXPECT_EQ(a.pushed() + a.dropped() + b.pushed() + b.dropped(), 2 * kEach);
  ASSERT_TRUE(eventually([&] { return exporter.stats().spans_exported == accepted.load(); }))
      << exporter.last_error();
  exporter.stop();
  const std::vector<json> rows = rx.wait_rows("span", accepted.load());
  EXPECT_EQ(rows.size(), accepted.load());
  const auto got = by_span_id(rows);
  EXPECT_EQ(got.size(), rows.size()) << "a span arrived twice";
  const OtlpExporterStats st = exporter.stats();
  EXPECT_EQ(st.ring_full, a.dropped() + b.dropped());
  EXPECT_EQ(dropped(st, DropReason::kExportFailed), 0u);
}

// A queue of 100 slots cut into batches of 64: the queue is a ring, so batches start anywhere
// in it and many run across its end (encoded in two parts). Every span arrives once, whole.
TEST(OtlpExporterTest, BatchesAcrossTheQueueEndArriveWhole) {
  name_protocols();
  const OtlpTestReceiver rx;
  ASSERT_TRUE(rx.ok());
  SpanRing ring(2048, "shard-0");
  OtlpExporterOptions o = options_for(rx.endpoint());
  o.max_batch_spans = 64;
  o.max_queue_spans = 100;
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&ring}).ok());
  constexpr uint32_t kSpans = 1000;
  for (uint32_t i = 0; i < kSpans; ++i) ASSERT_TRUE(ring.push(span(i)));
  ASSERT_TRUE(eventually([&] { return exporter.stats().spans_exported == kSpans; }))
      << exporter.last_error();
  exporter.stop();
  const std::vector<json> rows = rx.wait_rows("span", kSpans);
  ASSERT_EQ(rows.size(), kSpans);
  const auto got = by_span_id(rows);
  ASSERT_EQ(got.size(), rows.size()) << "a span arrived twice";
  for (uint32_t i = 0; i < kSpans; ++i) {
    const SpanRecord sent = span(i);
    const auto it = got.find(hex(sent.span_id));
    ASSERT_NE(it, got.end()) << i;
    EXPECT_EQ(it->second["attributes"]["tianhe.report.seq"], i);
    EXPECT_EQ(it->second["attributes"]["tianhe.device.id"], 1000 + i);
    EXPECT_EQ(it->second["end_time_unix_nano"], static_cast<uint64_t>(sent.end_ns));
  }
  EXPECT_GE(requests(exporter.stats(), RequestResult::kOk), kSpans / 64);
}

TEST(OtlpExporterTest, ReceiverDownDropsCountedAndNeverBlocksPush) {
  name_protocols();
  const DownPort down;
  SpanRing ring(16, "shard-0");
  OtlpExporterOptions o = options_for(down.endpoint());
  o.max_retries = 2;
  o.max_batch_spans = 8;
  o.max_queue_spans = 16;
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&ring}).ok());
  // Pushing never waits for the exporter: every call returns, refused ones counted by the ring.
  constexpr uint32_t kSpans = 5000;
  uint32_t accepted = 0;
  for (uint32_t i = 0; i < kSpans; ++i) accepted += ring.push(span(i)) ? 1 : 0;
  EXPECT_EQ(ring.pushed(), accepted);
  EXPECT_EQ(ring.pushed() + ring.dropped(), kSpans);
  // Whatever reached the exporter is dropped as export_failed after the retries.
  ASSERT_TRUE(eventually([&] {
    const OtlpExporterStats st = exporter.stats();
    return dropped(st, DropReason::kExportFailed) == accepted;
  })) << exporter.last_error();
  exporter.stop();
  const OtlpExporterStats st = exporter.stats();
  EXPECT_EQ(st.spans_exported, 0u);
  EXPECT_EQ(st.ring_full, ring.dropped());
  EXPECT_GE(requests(st, RequestResult::kTransportError), 3u);  // a first try and 2 retries
  EXPECT_EQ(requests(st, RequestResult::kOk), 0u);
  EXPECT_EQ(st.queued, 0u);
  EXPECT_NE(exporter.last_error().find("curl error 7"), std::string::npos) << exporter.last_error();

  // The same counters as metrics.
  core::PromWriter w;
  exporter.collect(w);
  const std::string text = w.render();
  EXPECT_EQ(core::sum_samples(text, "tianhe_tracing_spans_dropped_total", "export_failed"),
            static_cast<double>(accepted));
  EXPECT_EQ(core::sum_samples(text, "tianhe_tracing_spans_dropped_total", "ring_full"),
            static_cast<double>(ring.dropped()));
  EXPECT_EQ(core::sum_samples(text, "tianhe_tracing_export_requests_total", "transport_error"),
            static_cast<double>(requests(st, RequestResult::kTransportError)));
  EXPECT_EQ(core::sum_samples(text, "tianhe_tracing_ring_spans", "shard-0"), 0.0);
  EXPECT_EQ(core::sum_samples(text, "tianhe_tracing_export_seconds_count"),
            static_cast<double>(requests(st, RequestResult::kTransportError)));
}

TEST(OtlpExporterTest, StopFlushesWhatIsQueued) {
  name_protocols();
  const OtlpTestReceiver rx;
  ASSERT_TRUE(rx.ok());
  SpanRing a(256, "shard-0");
  SpanRing b(256, "shard-1");
  OtlpExporterOptions o = options_for(rx.endpoint());
  o.flush_interval = std::chrono::hours(1);  // only stop() sends
  o.max_batch_spans = 512;
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&a}).ok());
  exporter.add_ring(&b);  // a ring added while running
  for (uint32_t i = 0; i < 100; ++i) ASSERT_TRUE((i % 2 == 0 ? a : b).push(span(i)));
  exporter.stop(std::chrono::seconds(30));
  const std::vector<json> rows = rx.wait_rows("span", 100);
  EXPECT_EQ(by_span_id(rows).size(), 100u);
  EXPECT_EQ(exporter.stats().spans_exported, 100u);
  EXPECT_EQ(rx.rows("request").size(), 1u);
  exporter.stop();  // idempotent
}

TEST(OtlpExporterTest, StopGivesUpAtItsDeadline) {
  name_protocols();
  const DownPort down;
  SpanRing ring(64, "shard-0");
  OtlpExporterOptions o = options_for(down.endpoint());
  o.flush_interval = std::chrono::hours(1);
  o.max_retries = 1'000'000;
  o.initial_backoff = std::chrono::milliseconds(20);
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&ring}).ok());
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(ring.push(span(i)));
  exporter.stop(std::chrono::milliseconds(200));
  EXPECT_EQ(dropped(exporter.stats(), DropReason::kExportFailed), 10u);
}

// A batch waiting out an hour's Retry-After is tried once more at stop(), not dropped.
TEST(OtlpExporterTest, StopRetriesAWaitingBatchAtOnce) {
  name_protocols();
  const OtlpTestReceiver rx({"--fail-first", "1", "--retry-after", "3600"});
  ASSERT_TRUE(rx.ok());
  SpanRing ring(64, "shard-0");
  OtlpExporterOptions o = options_for(rx.endpoint());
  o.max_backoff = std::chrono::hours(2);
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&ring}).ok());
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(ring.push(span(i)));
  ASSERT_TRUE(
      eventually([&] { return requests(exporter.stats(), RequestResult::kRetryStatus) == 1; }));
  exporter.stop(std::chrono::seconds(30));
  EXPECT_EQ(exporter.stats().spans_exported, 10u);
  EXPECT_EQ(by_span_id(rx.wait_rows("span", 10)).size(), 10u);
}

TEST(OtlpExporterTest, PartialSuccessCountsRejectedSpans) {
  name_protocols();
  const OtlpTestReceiver rx({"--reject-spans", "3"});
  ASSERT_TRUE(rx.ok());
  SpanRing ring(64, "shard-0");
  OtlpExporterOptions o = options_for(rx.endpoint());
  o.flush_interval = std::chrono::hours(1);
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&ring}).ok());
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(ring.push(span(i)));
  exporter.stop(std::chrono::seconds(30));
  const OtlpExporterStats st = exporter.stats();
  EXPECT_EQ(st.spans_exported, 7u);
  EXPECT_EQ(dropped(st, DropReason::kRejectedByReceiver), 3u);
  EXPECT_EQ(requests(st, RequestResult::kPartialSuccess), 1u);
  EXPECT_NE(exporter.last_error().find("rejected by the test receiver"), std::string::npos);
}

TEST(OtlpExporterTest, ClientErrorIsNotRetried) {
  name_protocols();
  const OtlpTestReceiver rx({"--status", "400"});
  ASSERT_TRUE(rx.ok());
  SpanRing ring(64, "shard-0");
  OtlpExporterOptions o = options_for(rx.endpoint());
  o.flush_interval = std::chrono::hours(1);
  OtlpExporter exporter(o, "node-1");
  ASSERT_TRUE(exporter.start({&ring}).ok());
  for (uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(ring.push(span(i)));
  exporter.stop(std::chrono::seconds(30));
  const OtlpExporterStats st = exporter.stats();
  EXPECT_EQ(dropped(st, DropReason::kRejectedByReceiver), 5u);
  EXPECT_EQ(requests(st, RequestResult::kErrorStatus), 1u);
  EXPECT_EQ(rx.rows("request").size(), 1u);
}

TEST(OtlpExporterTest, StartRefusesBadOptionsNamingTheKey) {
  OtlpExporterOptions o;
  o.endpoint = "localhost:4318";
  Result<void> r = OtlpExporter(o, "x").start({});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("tracing.endpoint"), std::string::npos) << r.error().message;
  o = OtlpExporterOptions{};
  o.max_queue_spans = 10;
  r = OtlpExporter(o, "x").start({});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("tracing.max_queue_spans"), std::string::npos);
  o = OtlpExporterOptions{};
  o.headers = {{"Bad Name", "v"}};
  r = OtlpExporter(o, "x").start({});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("tracing.headers"), std::string::npos);
  OtlpExporter once(OtlpExporterOptions{}, "x");  // no spans: it never connects
  ASSERT_TRUE(once.start({}).ok());
  EXPECT_FALSE(once.start({}).ok());
  once.stop();
  EXPECT_FALSE(once.start({}).ok());
}

}  // namespace
}  // namespace tianhe::control::otlp
