#include "runtime/data_plane.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/config_table.h"

namespace tianhe::runtime {
namespace {

void collect_log(core::PromWriter& w, const log::LogStats& s, const log::ShardLog& l,
                 uint32_t shard) {
  const core::Labels sl{{"shard", std::to_string(shard)}};
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
  core::write_histogram(w, "tianhe_log_append_latency_seconds",
                        "Latency of one log append (write).", {}, s.append_latency);
  core::write_histogram(w, "tianhe_log_fsync_latency_seconds",
                        "Latency of one fdatasync of the log.", {}, s.sync_latency);
}

// The table of an extension: as parsed, or its defaults when the config had none.
std::any table_of(const DataPlaneOptions& o, std::string_view kind, std::string_view name,
                  const config::ConfigTable& table) {
  const std::string header = std::string(kind) + "." + std::string(name);
  auto it = o.tables.find(header);
  if (it != o.tables.end()) return it->second;
  std::any a = table.make_default();
  if (table.finish) table.finish(a, o.data_dir);
  return a;
}

// The identity of the logs in `dir` (made on first use; see GatewayContext::log_id).
Result<std::string> log_identity(const std::string& dir) {
  const std::string path = dir + "/identity";
  {
    std::ifstream in(path);
    std::string id;
    if (in >> id && id.size() == 16) return id;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  uint8_t raw[8];
  if (::getrandom(raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) {
    return make_error("cannot draw a random log identity: " + errno_text(errno));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (uint8_t b : raw) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << id << "\n";
    if (!out)
      return make_error("cannot write " + tmp + "; check that the log directory is writable");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return make_error("cannot write " + path + ": " + errno_text(errno));
  }
  return id;
}

}  // namespace

Result<std::unique_ptr<DataPlane>> DataPlane::open(DataPlaneOptions options,
                                                   const Extensions& extensions) {
  std::unique_ptr<DataPlane> d(new DataPlane());
  d->options_ = std::move(options);
  const DataPlaneOptions& o = d->options_;
  uint32_t shards = o.shards;
  if (shards == 0) shards = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<log::ShardLog>> logs;
  GatewayContext context;
  context.data_dir = o.data_dir;
  context.shards = shards;
  context.log = o.log;
  context.registry = o.registry;
  auto id = log_identity(o.log.dir);
  if (!id.ok()) return make_error("log: " + id.error().message);
  context.log_id = std::move(id.value());
  // The user codecs' budgets ([codecs]; the control plane parses it like an extension table).
  CodecLimits limits;
  if (auto it = o.tables.find("codecs"); it != o.tables.end()) {
    if (const auto* l = std::any_cast<CodecLimits>(&it->second)) limits = *l;
  }
  // Tracing ([tracing]; parsed by the control plane like [codecs]).
  TracingOptions tracing;
  if (auto it = o.tables.find("tracing"); it != o.tables.end()) {
    if (const auto* t = std::any_cast<TracingOptions>(&it->second)) tracing = *t;
  }
  if (tracing.service_instance.empty()) tracing.service_instance = context.log_id;
  d->tracing_ = std::make_shared<Tracing>(std::move(tracing), shards);
  context.tracing = d->tracing_;
  auto codecs = CodecStage::create(o.data_dir, o.registry, extensions, 256ull << 20, limits);
  if (!codecs.ok()) return make_error("codecs: " + codecs.error().message);
  d->codecs_ = std::move(codecs.value());
  d->codecs_->set_tracing(d->tracing_);
  context.codecs = d->codecs_;
  for (uint32_t i = 0; i < shards; ++i) {
    d->log_stats_.push_back(std::make_unique<log::LogStats>());
    auto l = log::ShardLog::open(o.log, i, d->log_stats_.back().get());
    if (!l.ok()) return make_error("log: " + l.error().message);
    context.logs.push_back(l.value().get());
    logs.push_back(std::move(l.value()));
  }
  // From the first sink on, consumer threads read the logs: an error below stops them before
  // the logs (held by `logs` and the shards, destroyed on return) go away.
  const auto fail = [&d](Error e) {
    for (auto& s : d->sinks_) s.instance->stop();
    return e;
  };
  for (const SinkSpec& spec : extensions.sinks()) {
    // The sink's table, then its named instances ([sinks.<name>.<instance>]) in name order.
    std::vector<std::pair<std::string, std::any>> instances;
    instances.emplace_back(std::string(spec.name), table_of(o, "sinks", spec.name, spec.config));
    if (spec.config.instances) {
      const std::string prefix = "sinks." + std::string(spec.name) + ".";
      for (auto it = o.tables.lower_bound(prefix);
           it != o.tables.end() && it->first.starts_with(prefix); ++it) {
        instances.emplace_back(it->first.substr(6), it->second);
      }
    }
    for (auto& [name, table] : instances) {
      if (!spec.enabled(table)) continue;
      auto sink = spec.start(table, context, name);
      if (!sink.ok()) return fail(make_error("sinks." + name + ": " + sink.error().message));
      const uint64_t lag = sink.value()->lag_bytes();
      d->sinks_.push_back({name, spec.name, std::move(sink.value()), lag});
    }
  }
  for (const ProtocolSpec& spec : extensions.protocols()) {
    std::any table = table_of(o, "protocols", spec.name, spec.config);
    if (!spec.enabled(table)) continue;
    auto p = spec.create(table, context);
    if (!p.ok()) {
      return fail(make_error("protocols." + std::string(spec.name) + ": " + p.error().message));
    }
    d->protocols_.push_back({spec.name, std::move(p.value())});
  }
  for (uint32_t i = 0; i < shards; ++i) {
    auto shard = std::make_unique<Shard>(i, std::move(logs[i]), o.registry,
                                         ShardOptions{.receive_window = o.receive_window});
    shard->set_tracer(&d->tracing_->shard(i));
    for (auto& p : d->protocols_) {
      auto ingest = p.instance->create_ingest(i);
      // Its error names its key already ("protocols.report.listen: ...").
      if (!ingest.ok()) return fail(ingest.error());
      shard->add_ingest(std::move(ingest.value()));
    }
    d->shards_.push_back(std::move(shard));
  }
  return d;
}

DataPlane::~DataPlane() {
  stop();
}

void DataPlane::start_shards() {
  for (auto& s : shards_) s->start();
}

void DataPlane::stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  for (auto& s : shards_) s->stop();
  for (auto& s : sinks_) s.instance->stop();
  shards_.clear();  // closes the logs with a final sync
}

uint16_t DataPlane::port(std::string_view name) const noexcept {
  for (const auto& p : protocols_) {
    if (p.name == name) return p.instance->port();
  }
  return 0;
}

uint16_t DataPlane::first_port() const noexcept {
  return protocols_.empty() ? 0 : protocols_.front().instance->port();
}

std::string DataPlane::banner() const {
  std::string out;
  for (const auto& p : protocols_) out += p.instance->banner();
  return out;
}

std::string DataPlane::recovery_summary() const {
  uint64_t torn = 0;
  for (const auto& s : log_stats_) torn += s->torn_bytes_truncated.load(std::memory_order_relaxed);
  std::string out;
  if (torn > 0) {
    out = "cut a torn log tail of " + std::to_string(torn) + " bytes (a crash mid-write)";
  }
  for (const auto& s : sinks_) {
    const uint64_t behind = s.lag_at_start;
    if (behind == 0) continue;
    out += out.empty() ? "" : "; ";
    out += "sink " + s.name + " is " + config::format_bytes_approx(behind) +
           " of log behind, catching up";
  }
  return out.empty() ? "clean" : out;
}

std::vector<DataPlane::SinkView> DataPlane::sink_statuses() const {
  std::vector<SinkView> out;
  for (const auto& s : sinks_) out.push_back({s.name, std::string(s.kind), s.instance->status()});
  return out;
}

bool DataPlane::sinks_caught_up() const {
  return std::all_of(sinks_.begin(), sinks_.end(),
                     [](const RunningSink& s) { return s.instance->lag_bytes() == 0; });
}

Result<void> DataPlane::add_routes(core::HttpRoutes& routes) {
  for (auto& s : sinks_) {
    if (auto r = s.instance->add_routes(routes); !r.ok()) {
      return make_error("sinks." + s.name + ": " + r.error().message);
    }
  }
  return {};
}

void DataPlane::collect(core::PromWriter& w) const {
  for (const auto& p : protocols_) p.instance->collect(w);
  tracing_->collect(w);
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    Shard& sh = *shards_[i];
    collect_log(w, *log_stats_[i], sh.log(), i);
    const core::Labels sl{{"shard", std::to_string(i)}};
    w.counter("tianhe_shard_heap_allocations_total",
              "Heap allocations made by the shard thread (0 growth = allocation-free).", sl,
              sh.stats().heap_allocations.get());
    w.counter("tianhe_shard_loop_iterations_total", "Event-loop iterations of the shard.", sl,
              sh.stats().loop_iterations.get());
    w.counter("tianhe_shard_idle_waits_total",
              "Times the shard slept until input, an ack's sync or room to send arrived.", sl,
              sh.stats().idle_waits.get());
    w.counter("tianhe_shard_receive_windows_total",
              "Waits of gateway.receive_window before a receive (receive coalescing).", sl,
              sh.stats().receive_windows.get());
  }
  w.gauge("tianhe_registry_devices", "Devices registered.", {},
          static_cast<double>(options_.registry->device_count()));
  w.gauge("tianhe_registry_table_bytes", "Bytes of the registry's device table.", {},
          static_cast<double>(options_.registry->table_bytes()));
  w.gauge("tianhe_shards", "Shards (threads) serving the data plane.", {},
          static_cast<double>(shards_.size()));
  for (const auto& s : sinks_) s.instance->collect(w);
  codecs_->collect(w);
}

Totals DataPlane::totals() const {
  Totals t;
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    t.log_appended_bytes += log_stats_[i]->bytes_appended.load(std::memory_order_relaxed);
    Totals::add(t.log_fsync_us, log_stats_[i]->sync_latency);
    t.heap_allocations += shards_[i]->stats().heap_allocations.get();
  }
  for (const auto& p : protocols_) p.instance->add_totals(t);
  for (const auto& s : sinks_) s.instance->add_totals(t);
  return t;
}

Result<SessionPage> DataPlane::sessions(std::string_view protocol, uint64_t after,
                                        uint32_t limit) const {
  const ProtocolInstance* instance = nullptr;
  std::string running;
  for (const RunningProtocol& p : protocols_) {
    if (p.name == protocol) instance = p.instance.get();
    running += (running.empty() ? "" : ", ") + std::string(p.name);
  }
  if (instance == nullptr) {
    return make_error("protocol \"" + std::string(protocol) + "\" is not running; running: " +
                      (running.empty() ? std::string("none") : running));
  }
  constexpr int kShardShift = 48;
  constexpr uint64_t kLocalMask = (uint64_t{1} << kShardShift) - 1;
  limit = std::min(limit, kMaxSessionPage);
  SessionPage out;
  const auto shards = static_cast<uint32_t>(shards_.size());
  for (uint32_t shard = 0; shard < shards; ++shard) {
    const auto first = static_cast<uint32_t>(after >> kShardShift);
    const uint32_t room = static_cast<uint32_t>(limit - out.sessions.size());
    // Shards before the cursor's and after a full page are asked for their count only.
    const bool listing = shard >= first && !out.more;
    auto page =
        instance->sessions(shard, shard == first ? after & kLocalMask : 0, listing ? room : 0);
    if (!page.ok())
      return make_error("shard " + std::to_string(shard) + ": " + page.error().message);
    out.total += page->total;
    if (!listing) continue;
    for (std::string& s : page->sessions) out.sessions.push_back(std::move(s));
    out.next = (uint64_t{shard} << kShardShift) | (page->next & kLocalMask);
    if (page->more || (out.sessions.size() == limit && shard + 1 < shards)) {
      out.more = true;
      if (!page->more) out.next = uint64_t{shard + 1} << kShardShift;
    }
  }
  return out;
}

DebugFields DataPlane::debug(uint32_t shard) const {
  DebugFields out;
  for (const auto& p : protocols_) p.instance->debug(shard, out);
  if (shard < shards_.size()) {
    Shard& sh = *shards_[shard];
    out.emplace_back("log_durable_offset", sh.log().durable_offset());
    out.emplace_back("log_backlog_bytes", sh.log().backlog_bytes());
    out.emplace_back("heap_allocations", sh.stats().heap_allocations.get());
  }
  return out;
}

}  // namespace tianhe::runtime
