#include "runtime/data_plane.h"

#include <dirent.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/clock.h"
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

// The CPU time of each of this process's threads by name (/proc/self/task/<tid>/stat, utime +
// stime; proc(5)). Read from the scrape or sampler thread: the shards and consumers pay nothing.
// Resolution: one clock tick (10 ms at the usual USER_HZ of 100).
std::vector<std::pair<std::string, uint64_t>> thread_cpu_ns() {
  std::vector<std::pair<std::string, uint64_t>> out;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return out;
  const long ticks = ::sysconf(_SC_CLK_TCK);
  const uint64_t ns_per_tick = ticks > 0 ? 1'000'000'000ull / static_cast<uint64_t>(ticks) : 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    // "tid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
    const size_t open = line.find('(');
    const size_t close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    std::istringstream rest(line.substr(close + 1));
    std::string field;
    uint64_t utime = 0, stime = 0;
    // Fields 3.. follow the comm; utime and stime are fields 14 and 15.
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
      if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    out.emplace_back(line.substr(open + 1, close - open - 1), (utime + stime) * ns_per_tick);
  }
  ::closedir(dir);
  return out;
}

// A quantile (0..1) of the difference of two samples of a log2 histogram: the upper bound of
// the bucket the quantile falls in, in bucket units (bucket i: values < 2^i; bucket 0: < 1).
// -1 when the difference is empty. q = 1: the highest non-empty bucket (the max's bound).
double bucket_quantile(const HistogramSample& now, const HistogramSample& then, double q) {
  uint64_t delta[core::Log2Histogram::kBuckets];
  uint64_t total = 0;
  for (int i = 0; i < core::Log2Histogram::kBuckets; ++i) {
    const auto b = static_cast<size_t>(i);
    delta[i] = now.buckets[b] >= then.buckets[b] ? now.buckets[b] - then.buckets[b] : 0;
    total += delta[i];
  }
  if (total == 0) return -1;
  const double rank = std::max(1.0, std::ceil(q * static_cast<double>(total)));
  uint64_t seen = 0;
  for (int i = 0; i < core::Log2Histogram::kBuckets; ++i) {
    seen += delta[i];
    if (static_cast<double>(seen) >= rank) return std::ldexp(1.0, i);
  }
  return std::ldexp(1.0, core::Log2Histogram::kBuckets - 1);
}

uint64_t histogram_count(const HistogramSample& now, const HistogramSample& then) {
  uint64_t n = 0;
  for (size_t i = 0; i < now.buckets.size(); ++i) {
    n += now.buckets[i] >= then.buckets[i] ? now.buckets[i] - then.buckets[i] : 0;
  }
  return n;
}

uint64_t minus(uint64_t now, uint64_t then) {
  return now >= then ? now - then : 0;
}

// A batch-size histogram (observe_count): mean and p99 in units over the window; a p99 is the
// largest size its log2 bucket holds.
nlohmann::json batch_sizes(const HistogramSample& now, const HistogramSample& then) {
  const uint64_t batches = histogram_count(now, then);
  if (batches == 0) return {{"batches", 0}, {"mean", 0}, {"p99", 0}};
  const double units = static_cast<double>(minus(now.sum_ns, then.sum_ns)) / 1000.0;
  return {{"batches", batches},
          {"mean", units / static_cast<double>(batches)},
          {"p99", bucket_quantile(now, then, 0.99) - 1}};
}

// A stage's latency over the window from a duration histogram, in milliseconds.
nlohmann::json stage_latency(std::string name, const HistogramSample& now,
                             const HistogramSample& then) {
  const uint64_t n = histogram_count(now, then);
  nlohmann::json j{{"stage", std::move(name)}, {"count", n}};
  if (n == 0) {
    j["p50_ms"] = 0;
    j["p99_ms"] = 0;
    j["max_ms"] = 0;
    j["mean_ms"] = 0;
    return j;
  }
  j["p50_ms"] = bucket_quantile(now, then, 0.5) / 1000.0;
  j["p99_ms"] = bucket_quantile(now, then, 0.99) / 1000.0;
  j["max_ms"] = bucket_quantile(now, then, 1.0) / 1000.0;
  j["mean_ms"] = static_cast<double>(minus(now.sum_ns, then.sum_ns)) / 1e6 / static_cast<double>(n);
  return j;
}

}  // namespace

void HistogramSample::add(const core::Log2Histogram& h) noexcept {
  for (int i = 0; i < core::Log2Histogram::kBuckets; ++i) {
    buckets[static_cast<size_t>(i)] += h.bucket(i);
  }
  sum_ns += h.sum_ns();
}

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
  {
    std::lock_guard lock(diag_mu_);
    ring_.push_back(diagnosis_sample());
  }
  for (auto& s : shards_) s->start();
  sampler_ = std::thread([this] { run_sampler(); });
}

void DataPlane::stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  if (sampler_.joinable()) {
    {
      std::lock_guard lock(diag_mu_);
      sampler_stop_ = true;
    }
    diag_cv_.notify_all();
    sampler_.join();
  }
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
    w.counter("tianhe_shard_busy_seconds_total",
              "Time the shard's loop spent working (outside its waits; busy share = rate of this "
              "over busy + idle).",
              sl, static_cast<double>(sh.stats().busy_ns.get()) / 1e9);
    w.counter("tianhe_shard_idle_seconds_total",
              "Time the shard's loop spent waiting (idle waits and receive windows).", sl,
              static_cast<double>(sh.stats().idle_ns.get()) / 1e9);
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

void DataPlane::run_sampler() {
  std::unique_lock lock(diag_mu_);
  while (!sampler_stop_) {
    if (diag_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return sampler_stop_; })) break;
    lock.unlock();
    DiagnosisSample s = diagnosis_sample();
    lock.lock();
    if (ring_.size() == kRing) ring_.erase(ring_.begin());
    ring_.push_back(std::move(s));
  }
}

DiagnosisSample DataPlane::diagnosis_sample() const {
  DiagnosisSample d;
  d.mono_ns = core::mono_ns();
  const auto threads = thread_cpu_ns();
  // The CPU of the one thread named `name`; false when none or several carry it.
  const auto cpu_of = [&threads](std::string_view name, uint64_t& ns) {
    int found = 0;
    for (const auto& [comm, cpu] : threads) {
      if (comm == name) {
        ns = cpu;
        ++found;
      }
    }
    return found == 1;
  };
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    const Shard& sh = *shards_[i];
    const ShardStats& st = sh.stats();
    DiagnosisSample::ShardPart p;
    p.busy_ns = st.busy_ns.get();
    p.idle_ns = st.idle_ns.get();
    p.turns = st.loop_iterations.get();
    p.reports_in = st.reports_in.get();
    p.reports_accepted = st.reports_accepted.get();
    p.reports_rejected = st.reports_rejected.get();
    p.log_backlog_bytes = shards_[i]->log().backlog_bytes();
    p.input_batch.add(st.input_batch);
    p.input_time.add(st.input_time);
    p.append_batch.add(st.append_batch);
    p.validate_time.add(st.validate_time);
    p.log_append.add(log_stats_[i]->append_latency);
    p.log_fsync.add(log_stats_[i]->sync_latency);
    cpu_of("shard-" + std::to_string(i), p.cpu_ns);
    d.shards.push_back(p);
  }
  d.codecs = codecs_->usage();
  for (const auto& s : sinks_) {
    DiagnosisSample::SinkPart p{
        .name = s.name, .kind = std::string(s.kind), .status = s.instance->status()};
    // LogConsumer names its thread "<name>-sink", cut to the kernel's 15 characters: two sinks
    // whose names agree that far cannot be told apart, and show no CPU.
    const std::string thread = (s.name + "-sink").substr(0, 15);
    p.cpu_known = cpu_of(thread, p.cpu_ns) &&
                  std::count_if(sinks_.begin(), sinks_.end(), [&](const RunningSink& o) {
                    return (o.name + "-sink").substr(0, 15) == thread;
                  }) == 1;
    d.sinks.push_back(std::move(p));
  }
  return d;
}

nlohmann::json DataPlane::diagnosis(std::string_view part) const {
  using Json = nlohmann::json;
  const DiagnosisSample now = diagnosis_sample();
  // The newest sample at least `seconds` old (the oldest when none is that old).
  DiagnosisSample rate_base, stage_base;
  {
    std::lock_guard lock(diag_mu_);
    const auto pick = [&](int seconds) {
      const int64_t cut = now.mono_ns - int64_t{seconds} * 1'000'000'000 + 50'000'000;
      const DiagnosisSample* best = ring_.empty() ? nullptr : &ring_.front();
      for (const auto& s : ring_) {
        if (s.mono_ns <= cut) best = &s;
      }
      return best != nullptr ? *best : DiagnosisSample{};
    };
    rate_base = pick(1);
    stage_base = pick(kStageWindowSeconds);
  }
  const double rate_s = std::max(1e-3, static_cast<double>(now.mono_ns - rate_base.mono_ns) / 1e9);
  const double stage_s =
      std::max(1e-3, static_cast<double>(now.mono_ns - stage_base.mono_ns) / 1e9);
  const auto per_s = [rate_s](uint64_t a, uint64_t b) {
    return static_cast<double>(minus(a, b)) / rate_s;
  };
  const DiagnosisSample::ShardPart none{};
  const auto shard_at = [&none](const DiagnosisSample& s, size_t i) -> const auto& {
    return i < s.shards.size() ? s.shards[i] : none;
  };
  Json out = Json::object();
  out["window_seconds"] = rate_s;
  out["stage_window_seconds"] = stage_s;
  const bool all = part.empty();
  if (all || part == "shards") {
    Json arr = Json::array();
    for (size_t i = 0; i < now.shards.size(); ++i) {
      const auto& n = now.shards[i];
      const auto& b = shard_at(rate_base, i);
      const uint64_t busy = minus(n.busy_ns, b.busy_ns), idle = minus(n.idle_ns, b.idle_ns);
      Json j{{"shard", i},
             {"busy_percent", busy + idle == 0 ? 0.0
                                               : 100.0 * static_cast<double>(busy) /
                                                     static_cast<double>(busy + idle)},
             {"cpu_seconds_per_second", per_s(n.cpu_ns, b.cpu_ns) / 1e9},
             {"loop_turns_per_second", per_s(n.turns, b.turns)},
             {"receive_batch", batch_sizes(n.input_batch, b.input_batch)},
             {"append_batch", batch_sizes(n.append_batch, b.append_batch)},
             {"log_backlog_bytes", n.log_backlog_bytes},
             {"reports_in_per_second", per_s(n.reports_in, b.reports_in)},
             {"reports_accepted_per_second", per_s(n.reports_accepted, b.reports_accepted)},
             {"reports_rejected_per_second", per_s(n.reports_rejected, b.reports_rejected)},
             {"reports_accepted", n.reports_accepted}};
      arr.push_back(std::move(j));
    }
    out["shards"] = std::move(arr);
  }
  if (all || part == "stages") {
    // Per-shard histograms summed: a stage's latency over the gateway.
    HistogramSample in_now, in_then, va_now, va_then, ap_now, ap_then, fs_now, fs_then;
    const auto sum = [](HistogramSample& into, const HistogramSample& h) {
      for (size_t i = 0; i < into.buckets.size(); ++i) into.buckets[i] += h.buckets[i];
      into.sum_ns += h.sum_ns;
    };
    for (size_t i = 0; i < now.shards.size(); ++i) {
      const auto& b = shard_at(stage_base, i);
      sum(in_now, now.shards[i].input_time);
      sum(in_then, b.input_time);
      sum(va_now, now.shards[i].validate_time);
      sum(va_then, b.validate_time);
      sum(ap_now, now.shards[i].log_append);
      sum(ap_then, b.log_append);
      sum(fs_now, now.shards[i].log_fsync);
      sum(fs_then, b.log_fsync);
    }
    Json arr = Json::array();
    arr.push_back(stage_latency("receive_to_append", in_now, in_then));
    arr.push_back(stage_latency("validate_append", va_now, va_then));
    arr.push_back(stage_latency("log_append", ap_now, ap_then));
    arr.push_back(stage_latency("fsync", fs_now, fs_then));
    for (const CodecUsage& c : now.codecs) {
      HistogramSample cn, cb;
      std::copy(c.time_buckets.begin(), c.time_buckets.end(), cn.buckets.begin());
      cn.sum_ns = c.time_ns;
      for (const CodecUsage& o : stage_base.codecs) {
        if (o.codec != c.codec) continue;
        std::copy(o.time_buckets.begin(), o.time_buckets.end(), cb.buckets.begin());
        cb.sum_ns = o.time_ns;
      }
      arr.push_back(stage_latency("codec." + c.codec, cn, cb));
    }
    // Slowest first: by p99, then by max.
    std::stable_sort(arr.begin(), arr.end(), [](const Json& a, const Json& b) {
      const double pa = a["p99_ms"].get<double>(), pb = b["p99_ms"].get<double>();
      if (pa != pb) return pa > pb;
      return a["max_ms"].get<double>() > b["max_ms"].get<double>();
    });
    out["stages"] = std::move(arr);
  }
  if (all || part == "codecs") {
    Json arr = Json::array();
    for (const CodecUsage& c : now.codecs) {
      CodecUsage b;
      for (const CodecUsage& o : rate_base.codecs) {
        if (o.codec == c.codec) b = o;
      }
      arr.push_back({{"codec", c.codec},
                     {"calls", c.calls},
                     {"failures", c.failures},
                     {"calls_per_second", per_s(c.calls, b.calls)},
                     {"failures_per_second", per_s(c.failures, b.failures)},
                     {"cpu_seconds_per_second", per_s(c.time_ns, b.time_ns) / 1e9}});
    }
    out["codecs"] = std::move(arr);
  }
  if (all || part == "sinks") {
    Json arr = Json::array();
    for (const auto& s : now.sinks) {
      const DiagnosisSample::SinkPart* b = nullptr;
      for (const auto& o : rate_base.sinks) {
        if (o.name == s.name) b = &o;
      }
      Json j{{"name", s.name},
             {"kind", s.kind},
             {"state", s.status.state},
             {"delivered", s.status.delivered},
             {"delivered_per_second", per_s(s.status.delivered, b ? b->status.delivered : 0)},
             {"lag_bytes", s.status.lag_bytes},
             {"lag_reports", s.status.lag_reports},
             {"lag_seconds", s.status.lag_seconds},
             {"retries", s.status.retries}};
      if (s.cpu_known && b != nullptr && b->cpu_known) {
        j["cpu_seconds_per_second"] = per_s(s.cpu_ns, b->cpu_ns) / 1e9;
      } else {
        j["cpu_seconds_per_second"] = nullptr;
      }
      arr.push_back(std::move(j));
    }
    out["sinks"] = std::move(arr);
  }
  if (all) {
    double in = 0, accepted = 0, rejected = 0;
    uint64_t backlog = 0;
    for (size_t i = 0; i < now.shards.size(); ++i) {
      const auto& n = now.shards[i];
      const auto& b = shard_at(rate_base, i);
      in += per_s(n.reports_in, b.reports_in);
      accepted += per_s(n.reports_accepted, b.reports_accepted);
      rejected += per_s(n.reports_rejected, b.reports_rejected);
      backlog += n.log_backlog_bytes;
    }
    out["summary"] = {{"shards", now.shards.size()},
                      {"reports_in_per_second", in},
                      {"reports_accepted_per_second", accepted},
                      {"reports_rejected_per_second", rejected},
                      {"log_backlog_bytes", backlog}};
  }
  return out;
}

}  // namespace tianhe::runtime
