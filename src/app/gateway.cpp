#include "app/gateway.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "app/args.h"
#include "control/config_fields.h"
#include "core/assert.h"
#include "core/clock.h"
#include "pipeline/validator.h"
#include "protocols/report/report_ingest.h"
#include "protocols/report/report_parser.h"
#include "sinks/store/store.h"
#include "sinks/store/store_sink.h"

namespace tianhe::app {
namespace {

using control::Labels;
using control::PromWriter;
using Json = nlohmann::json;

const char* busy_reason_label(int i) {
  switch (static_cast<runtime::BusyReason>(i)) {
    case runtime::BusyReason::kBacklogFull: return "backlog_full";
    case runtime::BusyReason::kDiskFull: return "disk_full";
    case runtime::BusyReason::kIoError: return "io_error";
    case runtime::BusyReason::kCount: break;
  }
  return "unknown";
}

const char* ack_status_label(int i) {
  static constexpr const char* kNames[] = {"ok", "rejected", "busy"};
  return kNames[i];
}

template <typename H>
std::vector<uint64_t> buckets_of(const H& h) {
  std::vector<uint64_t> b(H::kBuckets);
  for (int i = 0; i < H::kBuckets; ++i) b[i] = h.bucket(i);
  return b;
}

std::vector<uint64_t> buckets_of(const std::atomic<uint64_t>* a, int n) {
  std::vector<uint64_t> b(n);
  for (int i = 0; i < n; ++i) b[i] = a[i].load(std::memory_order_relaxed);
  return b;
}

void collect_ingest(PromWriter& w, const runtime::IngestStats& s, std::string_view protocol,
                    uint32_t shard) {
  const std::string p(protocol);
  const Labels pl{{"protocol", p}};
  w.counter("tianhe_datagrams_received_total", "Datagrams received.", pl,
            s.datagrams_received.get());
  w.counter("tianhe_received_bytes_total", "Bytes received in datagrams.", pl,
            s.bytes_received.get());
  w.counter("tianhe_receive_batches_total",
            "Receive calls (recvmmsg) that returned datagrams: datagrams / batches is the batch "
            "size (see gateway.receive_window).",
            pl, s.recv_batches.get());
  for (size_t r = 0; r < protocols::report::kDropReasonCount; ++r) {
    w.counter("tianhe_datagrams_dropped_total",
              "Datagrams dropped before any report was read, by reason.",
              {{"protocol", p},
               {"reason", std::string(protocols::report::drop_reason_name(
                              static_cast<protocols::report::DropReason>(r)))}},
              s.datagrams_dropped[r].get());
  }
  w.counter("tianhe_reports_received_total", "Reports read from well-formed datagrams.", pl,
            s.reports_received.get());
  w.counter("tianhe_reports_accepted_total", "Reports accepted (appended to the shard log).", pl,
            s.reports_accepted.get());
  for (int r = 1; r < static_cast<int>(pipeline::RejectReason::kCount); ++r) {
    w.counter("tianhe_reports_rejected_total",
              "Reports not accepted, by reason (model violations, or the log pushing back).",
              {{"protocol", p},
               {"reason",
                std::string(pipeline::reject_reason_name(static_cast<pipeline::RejectReason>(r)))}},
              s.reports_rejected[r].get());
  }
  for (int r = 0; r < static_cast<int>(runtime::BusyReason::kCount); ++r) {
    w.counter("tianhe_reports_rejected_total",
              "Reports not accepted, by reason (model violations, or the log pushing back).",
              {{"protocol", p}, {"reason", busy_reason_label(r)}}, s.reports_busy[r].get());
  }
  w.counter("tianhe_reports_auto_registered_total",
            "Reports from unknown devices accepted under the default model.", pl,
            s.reports_auto_registered.get());
  w.counter("tianhe_traceparents_invalid_total", "Invalid traceparents ignored.", pl,
            s.bad_traceparents.get());
  for (int k = 0; k < static_cast<int>(runtime::AckKind::kCount); ++k) {
    w.counter("tianhe_reports_acked_total", "Reports acknowledged, by ack status.",
              {{"protocol", p}, {"status", ack_status_label(k)}}, s.acks_sent[k].get());
  }
  w.counter("tianhe_ack_datagrams_sent_total", "Ack datagrams sent.", pl,
            s.ack_datagrams_sent.get());
  w.counter("tianhe_ack_send_errors_total", "Ack datagrams that could not be sent.", pl,
            s.ack_send_errors.get());
  w.counter("tianhe_acks_dropped_total",
            "Acks not sent because the pending-ack queue was full (the reports are stored).",
            {{"protocol", p}, {"reason", "queue_full"}}, s.ack_queue_full.get());
  w.counter("tianhe_udp_receive_drops_total",
            "Datagrams the kernel dropped because a socket's receive buffer was full.", pl,
            s.kernel_drops.get());
  const Labels sl{{"protocol", p}, {"shard", std::to_string(shard)}};
  w.gauge("tianhe_udp_receive_buffer_bytes", "Receive buffer granted by the kernel per socket.", sl,
          s.recv_buffer_bytes.get());
  w.gauge("tianhe_queue_depth", "Items waiting in a bounded queue.",
          {{"queue", "pending_acks"}, {"protocol", p}, {"shard", std::to_string(shard)}},
          s.pending_acks.get());
  control::write_log2_us_histogram(w, "tianhe_ack_latency_seconds",
                                   "Time from receiving a report to sending its ack.", pl,
                                   buckets_of(s.ack_latency), s.ack_latency.sum_ns() / 1e9);
  control::write_log2_us_histogram(
      w, "tianhe_receive_queue_delay_seconds",
      "Time the oldest datagram of each receive waited in the socket's buffer (arrival to read): "
      "input waiting for its shard.",
      pl, buckets_of(s.receive_queue_delay), s.receive_queue_delay.sum_ns() / 1e9);
  control::write_log2_us_histogram(
      w, "tianhe_ingest_batch_latency_seconds",
      "Time from receiving a batch to its reports being appended to the log.", pl,
      buckets_of(s.batch_latency), s.batch_latency.sum_ns() / 1e9);
}

void collect_log(PromWriter& w, const log::LogStats& s, const log::ShardLog& l, uint32_t shard) {
  const Labels sl{{"shard", std::to_string(shard)}};
  w.counter("tianhe_log_records_appended_total", "Records appended to the shard log.", sl,
            s.records_appended.load());
  w.counter("tianhe_log_appended_bytes_total", "Bytes appended to the shard log.", sl,
            s.bytes_appended.load());
  w.counter("tianhe_log_append_errors_total", "Appends that failed (disk full, I/O error).", sl,
            s.append_errors.load());
  w.counter("tianhe_log_backlog_full_total", "Appends refused because the backlog limit was hit.",
            sl, s.backlog_full.load());
  w.counter("tianhe_log_fsyncs_total", "fdatasync calls (group commits).", sl, s.syncs.load());
  w.counter("tianhe_log_segments_deleted_total",
            "Segments removed from the log after every sink consumed them (deleted or recycled).",
            sl, s.segments_deleted.load());
  w.counter("tianhe_log_torn_bytes_truncated_total",
            "Bytes of a torn tail zeroed at recovery (segments of format version 1).", sl,
            s.torn_bytes_truncated.load());
  w.counter("tianhe_log_segments_created_total", "Segment files created (zero-filled).", sl,
            s.segments_created.load());
  w.counter("tianhe_log_segments_recycled_total",
            "Spare segments made by renaming a consumed segment (nothing written).", sl,
            s.segments_recycled.load());
  w.counter("tianhe_log_segment_create_stalls_total",
            "Rollovers that had to wait for the next segment to be prepared.", sl,
            s.segment_create_stalls.load());
  w.counter("tianhe_log_writeback_kicks_total",
            "Background writebacks started (durability none: one per MiB written).", sl,
            s.writeback_kicks.load());
  w.counter("tianhe_log_segment_create_errors_total",
            "Segments that could not be created (e.g. disk full).", sl,
            s.segment_create_errors.load());
  w.counter("tianhe_log_sync_errors_total",
            "Failed fdatasync calls (the log then refuses appends until reopened).", sl,
            s.sync_errors.load());
  w.gauge("tianhe_log_backlog_bytes", "Bytes between the slowest sink and the end of the log.", sl,
          static_cast<double>(l.backlog_bytes()));
  w.gauge("tianhe_log_durable_offset_bytes", "Offset up to which the log is durable.", sl,
          static_cast<double>(l.durable_offset()));
  control::write_log2_us_histogram(
      w, "tianhe_log_append_latency_seconds", "Latency of one log append (write).", {},
      buckets_of(s.append_us_buckets, log::LogStats::kBuckets), s.append_ns_sum.load() / 1e9);
  control::write_log2_us_histogram(
      w, "tianhe_log_fsync_latency_seconds", "Latency of one fdatasync of the log.", {},
      buckets_of(s.sync_us_buckets, log::LogStats::kBuckets), s.sync_ns_sum.load() / 1e9);
}

Json report_json(const sinks::store::StoredReport& r, const control::Registry& registry) {
  Json j;
  j["device_id"] = r.device_id;
  j["seq"] = r.seq;
  j["time"] = format_time(r.device_time_ns);
  j["time_ns"] = r.device_time_ns;
  j["received_ns"] = r.received_ns;
  j["tenant"] = r.tenant < 1u << 20 ? registry.tenant_name(r.tenant) : std::to_string(r.tenant);
  j["protocol"] = std::string(core::protocol_name(r.protocol));
  j["metrics"] = Json::parse(sinks::store::metrics_json(r.raw_metrics));
  return j;
}

Result<uint64_t> device_param(const control::HttpRequest& req) {
  const std::string id = req.param("id");
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(id.c_str(), &end, 10);
  if (id.empty() || *end != '\0' || errno != 0 || v == 0) {
    return make_error("device id '" + id + "' is not a positive integer");
  }
  return static_cast<uint64_t>(v);
}

}  // namespace

Result<std::unique_ptr<Gateway>> Gateway::start(const control::GatewayConfig& config) {
  std::unique_ptr<Gateway> g(new Gateway());
  g->config_ = config;
  g->started_ns_ = core::wall_ns();
  auto registry = control::Registry::build(config);
  if (!registry.ok()) return registry.error();
  g->registry_ = registry.value();

  uint32_t shards = config.shards;
  if (shards == 0) shards = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<log::ShardLog>> logs;
  for (uint32_t i = 0; i < shards; ++i) {
    g->log_stats_.push_back(std::make_unique<log::LogStats>());
    auto l = log::ShardLog::open(config.log, i, g->log_stats_.back().get());
    if (!l.ok()) return make_error("log: " + l.error().message);
    logs.push_back(std::move(l.value()));
  }
  if (config.store.enabled) {
    std::vector<log::ShardLog*> raw;
    raw.reserve(logs.size());
    for (auto& l : logs) raw.push_back(l.get());
    auto sink = sinks::store::StoreSink::start(config.store, config.log, raw);
    if (!sink.ok()) return make_error("sinks.store: " + sink.error().message);
    g->store_ = std::move(sink.value());
  }
  // From here the store sink's thread reads the logs: an error below stops it before the logs
  // (held by `logs` and the shards, destroyed on return) go away.
  const auto fail = [&g](Error e) {
    if (g->store_) g->store_->stop();
    return e;
  };
  for (uint32_t i = 0; i < shards; ++i) {
    auto shard = std::make_unique<runtime::Shard>(
        i, std::move(logs[i]), g->registry_,
        runtime::ShardOptions{.receive_window = config.receive_window});
    g->report_stats_.push_back(std::make_unique<runtime::IngestStats>());
    if (config.report.enabled) {
      control::ReportProtocolConfig rc = config.report;
      // Port 0: the first shard picks a port, the others join it (SO_REUSEPORT).
      if (i > 0) rc.listen.port = g->report_port_;
      auto ingest =
          protocols::report::ReportIngest::create(rc, g->report_stats_.back().get(), i > 0);
      if (!ingest.ok()) return fail(ingest.error());
      g->report_port_ = ingest.value()->port();
      shard->add_ingest(std::move(ingest.value()));
    }
    g->shards_.push_back(std::move(shard));
  }
  g->register_collectors();
  if (config.http.enabled) {
    if (auto r = g->start_http(); !r.ok()) return fail(r.error());
  }
  for (auto& s : g->shards_) s->start();
  return g;
}

Gateway::~Gateway() {
  stop();
}

void Gateway::stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  if (http_) http_->stop();
  for (auto& s : shards_) s->stop();
  if (store_) store_->stop();
  shards_.clear();  // closes the logs with a final sync
}

uint16_t Gateway::http_port() const noexcept {
  return http_ ? http_->port() : 0;
}

void Gateway::register_collectors() {
  metrics_.add([this](PromWriter& w) {
    for (uint32_t i = 0; i < shards_.size(); ++i) {
      collect_ingest(w, *report_stats_[i], "report", i);
      collect_log(w, *log_stats_[i], shards_[i]->log(), i);
      const Labels sl{{"shard", std::to_string(i)}};
      w.counter("tianhe_shard_heap_allocations_total",
                "Heap allocations made by the shard thread (0 growth = allocation-free).", sl,
                shards_[i]->stats().heap_allocations.get());
      w.counter("tianhe_shard_loop_iterations_total", "Event-loop iterations of the shard.", sl,
                shards_[i]->stats().loop_iterations.get());
      w.counter("tianhe_shard_idle_waits_total",
                "Times the shard slept until input, an ack's sync or room to send arrived.", sl,
                shards_[i]->stats().idle_waits.get());
      w.counter("tianhe_shard_receive_windows_total",
                "Waits of gateway.receive_window before a receive (receive coalescing).", sl,
                shards_[i]->stats().receive_windows.get());
    }
    w.gauge("tianhe_registry_devices", "Devices registered.", {},
            static_cast<double>(registry_->device_count()));
    w.gauge("tianhe_registry_table_bytes", "Bytes of the registry's device table.", {},
            static_cast<double>(registry_->table_bytes()));
    w.gauge("tianhe_shards", "Shards (threads) serving the data plane.", {},
            static_cast<double>(shards_.size()));
    if (store_) store_->collect(w);
    if (http_) http_->collect(w);
  });
}

std::string Gateway::recovery_summary() const {
  uint64_t torn = 0, behind = 0;
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    torn += log_stats_[i]->torn_bytes_truncated.load(std::memory_order_relaxed);
    behind += shards_[i]->log().backlog_bytes();
  }
  std::string out;
  char part[128];
  if (torn > 0) {
    std::snprintf(part, sizeof part, "cut a torn log tail of %llu bytes (a crash mid-write)",
                  static_cast<unsigned long long>(torn));
    out = part;
  }
  if (store_ && behind > 0) {
    out += out.empty() ? "" : "; ";
    out += "the store is " + control::config_fields::format_bytes_approx(behind) +
           " of log behind, catching up";
  }
  return out.empty() ? "clean" : out;
}

std::string Gateway::debug_shards_json() const {
  Json arr = Json::array();
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    const auto& s = *report_stats_[i];
    const auto& l = shards_[i]->log();
    arr.push_back({{"shard", i},
                   {"datagrams_received", s.datagrams_received.get()},
                   {"reports_accepted", s.reports_accepted.get()},
                   {"pending_acks", s.pending_acks.get()},
                   {"kernel_drops", s.kernel_drops.get()},
                   {"recv_buffer_bytes", s.recv_buffer_bytes.get()},
                   {"log_durable_offset", l.durable_offset()},
                   {"log_backlog_bytes", l.backlog_bytes()},
                   {"heap_allocations", shards_[i]->stats().heap_allocations.get()}});
  }
  return Json{{"shards", arr}}.dump(2);
}

Result<void> Gateway::start_http() {
  http_ = std::make_unique<control::HttpServer>();
  if (store_) {
    auto reader = sinks::store::StoreReader::open(config_.store.dir);
    if (!reader.ok()) return make_error("sinks.store: " + reader.error().message);
    reader_ = std::move(reader.value());
  }
  http_->route("GET", "/metrics", [this](const control::HttpRequest&) {
    control::HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_.render();
    return r;
  });
  http_->route("GET", "/healthz", [](const control::HttpRequest&) {
    return control::HttpResponse{200, "application/json", R"({"status":"ok"})", {}};
  });
  http_->route("GET", "/debug/shards", [this](const control::HttpRequest&) {
    return control::HttpResponse{200, "application/json", debug_shards_json(), {}};
  });
  http_->route("GET", "/api/v1/devices/{id}", [this](const control::HttpRequest& req) {
    auto id = device_param(req);
    if (!id.ok()) return control::HttpResponse::error(400, id.error().message);
    const control::DeviceEntry* d = registry_->find(*id);
    if (d == nullptr) return control::HttpResponse::error(404, "device not registered");
    const control::Model& m = registry_->model(d->model);
    Json metrics = Json::array();
    for (const auto& mm : m.metrics()) {
      metrics.push_back({{"name", mm.name},
                         {"type", std::string(core::value_type_name(mm.type))},
                         {"unit", mm.unit},
                         {"required", mm.required}});
    }
    Json j{{"device_id", *id},
           {"tenant", registry_->tenant_name(d->tenant)},
           {"model", m.name()},
           {"metrics", metrics}};
    return control::HttpResponse{200, "application/json", j.dump(), {}};
  });
  if (reader_) {
    http_->route("GET", "/api/v1/devices/{id}/reports", [this](const control::HttpRequest& req) {
      auto id = device_param(req);
      if (!id.ok()) return control::HttpResponse::error(400, id.error().message);
      const int64_t now = core::wall_ns();
      sinks::store::HistoryQuery q;
      q.device_id = *id;
      if (auto f = req.query_param("from"); !f.empty()) {
        auto t = parse_time(f, now, "from");
        if (!t.ok()) return control::HttpResponse::error(400, t.error().message);
        q.from_ns = *t;
      }
      if (auto f = req.query_param("to"); !f.empty()) {
        auto t = parse_time(f, now, "to");
        if (!t.ok()) return control::HttpResponse::error(400, t.error().message);
        q.to_ns = *t;
      }
      if (auto f = req.query_param("limit"); !f.empty()) {
        char* end = nullptr;
        unsigned long v = std::strtoul(f.c_str(), &end, 10);
        if (*end != '\0' || v == 0 || v > 100000) {
          return control::HttpResponse::error(400, "limit: use a number from 1 to 100000");
        }
        q.limit = static_cast<uint32_t>(v);
      }
      q.newest_first = req.query_param("order", "asc") == "desc";
      auto rows = reader_->history(q);
      if (!rows.ok()) return control::HttpResponse::error(500, rows.error().message);
      Json arr = Json::array();
      for (const auto& r : *rows) arr.push_back(report_json(r, *registry_));
      Json j{{"device_id", *id}, {"count", arr.size()}, {"reports", arr}};
      return control::HttpResponse{200, "application/json", j.dump(), {}};
    });
    http_->route("GET", "/api/v1/devices/{id}/latest", [this](const control::HttpRequest& req) {
      auto id = device_param(req);
      if (!id.ok()) return control::HttpResponse::error(400, id.error().message);
      auto r = reader_->latest(*id);
      if (!r.ok()) return control::HttpResponse::error(500, r.error().message);
      if (!r->has_value()) {
        return control::HttpResponse::error(404, "no report stored for this device yet");
      }
      return control::HttpResponse{
          200, "application/json", report_json(**r, *registry_).dump(), {}};
    });
    http_->route("GET", "/api/v1/stats", [this](const control::HttpRequest&) {
      auto c = reader_->counts();
      if (!c.ok()) return control::HttpResponse::error(500, c.error().message);
      Json j{{"reports", c->reports},
             {"devices", c->devices},
             {"chunks", c->chunks},
             {"bytes", c->bytes},
             {"registered_devices", registry_->device_count()}};
      return control::HttpResponse{200, "application/json", j.dump(), {}};
    });
  }
  http_->route("GET", "/", [](const control::HttpRequest&) {
    control::HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body =
        "<!doctype html><title>Tianhe</title><h1>Tianhe</h1><ul>"
        "<li><a href=\"/metrics\">/metrics</a> (Prometheus)</li>"
        "<li><a href=\"/api/v1/stats\">/api/v1/stats</a></li>"
        "<li>/api/v1/devices/{id}, /api/v1/devices/{id}/latest, "
        "/api/v1/devices/{id}/reports?from=&amp;to=&amp;limit=</li>"
        "<li><a href=\"/debug/shards\">/debug/shards</a></li></ul>";
    return r;
  });
  http_->set_idle_timeout(config_.http.idle_timeout);
  http_->set_request_timeout(config_.http.request_timeout);
  return http_->start(config_.http.listen, config_.http.max_connections);
}

}  // namespace tianhe::app
