#include "sinks/nats/nats_writer.h"

#include <nats/nats.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include "core/clock.h"
#include "core/record_format.h"
#include "sinks/common/cursor_file.h"
#include "sinks/common/dead_letter.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/common/record.h"

namespace tianhe::sinks::nats {
namespace {

constexpr const char* kMsgIdHeader = "Nats-Msg-Id";
constexpr const char* kPositionHeader = "Tianhe-Log-Position";
constexpr const char* kTraceHeader = "traceparent";

std::string status_text(natsStatus s) {
  std::string out = natsStatus_GetText(s);
  natsStatus last = NATS_OK;
  if (const char* detail = nats_GetLastError(&last); detail != nullptr && *detail != '\0') {
    std::string_view d(detail);
    if (const size_t at = d.find("): "); d.front() == '(' && at != std::string_view::npos) {
      d.remove_prefix(at + 3);  // "(conn.c:2088): " is where, not why
    }
    if (d != out) out += " (" + std::string(d) + ")";
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

/// Owns a natsOptions.
struct Options {
  natsOptions* o = nullptr;
  ~Options() { natsOptions_Destroy(o); }
};

/// Connects with `servers`, the timeout, no automatic reconnect (the consumer reopens and
/// resumes from the cursors, so a lost connection surfaces at once as kRetry).
Result<natsConnection*> connect(const NatsServers& servers, std::chrono::milliseconds timeout,
                                std::string_view header) {
  Options opts;
  std::vector<const char*> urls;
  for (const std::string& u : servers.urls) urls.push_back(u.c_str());
  natsStatus s = natsOptions_Create(&opts.o);
  if (s == NATS_OK) s = natsOptions_SetServers(opts.o, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts.o, timeout.count());
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts.o, false);
  if (s == NATS_OK && !servers.user.empty()) {
    s = natsOptions_SetUserInfo(opts.o, servers.user.c_str(), servers.password.c_str());
  }
  if (s == NATS_OK && !servers.token.empty())
    s = natsOptions_SetToken(opts.o, servers.token.c_str());
  if (s != NATS_OK) return make_error(std::string(header) + ": client options: " + status_text(s));
  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, opts.o);
  if (s != NATS_OK) {
    std::string hint = "check that nats-server runs there (with -js) and is reachable";
    if (s == NATS_NOT_PERMITTED || s == NATS_CONNECTION_AUTH_FAILED) {
      hint = "check the user, password_env / password_file or token";
    }
    return make_error(std::string(header) + ": cannot connect to " + join(servers.urls) + ": " +
                      status_text(s) + "; " + hint);
  }
  return nc;
}

/// The stream as the sink found or made it.
struct StreamState {
  bool created = false;
  int64_t duplicate_window_ns = 0;  ///< the stream's own
};

/// Gets the stream, or creates it (file storage, the template's subjects, the duplicate
/// window).
Result<StreamState> ensure_stream(jsCtx* js, const std::string& name, const std::string& subject,
                                  std::chrono::milliseconds window, std::string_view header) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js, name.c_str(), nullptr, &jerr);
  if (s == NATS_OK) {
    StreamState found;
    if (si->Config != nullptr) found.duplicate_window_ns = si->Config->Duplicates;
    jsStreamInfo_Destroy(si);
    return found;
  }
  const std::string h(header);
  if (s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr) {
    return make_error(h + ": JetStream is not enabled on the server (" + status_text(s) +
                      "); start nats-server with -js, or enable it for this account");
  }
  if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
    return make_error(h + ": cannot read stream " + name + ": " + status_text(s) +
                      (jerr != 0 ? " (JetStream error " + std::to_string(jerr) + ")" : ""));
  }
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  const char* subjects[] = {subject.c_str()};
  sc.Name = name.c_str();
  sc.Description = "Tianhe device reports (docs/sinks/nats.md)";
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  sc.Duplicates = std::chrono::duration_cast<std::chrono::nanoseconds>(window).count();
  jerr = static_cast<jsErrCode>(0);
  s = js_AddStream(&si, js, &sc, nullptr, &jerr);
  if (s != NATS_OK) {
    std::string hint;
    if (jerr == JSStreamSubjectOverlapErr) {
      hint = "; another stream captures " + subject + ": set " + h + ".stream to that stream " +
             "or choose a subject prefix of its own";
    }
    return make_error(h + ": cannot create stream " + name + " (subjects " + subject +
                      "): " + status_text(s) +
                      (jerr != 0 ? " (JetStream error " + std::to_string(jerr) + ")" : "") + hint);
  }
  StreamState made{.created = true, .duplicate_window_ns = sc.Duplicates};
  if (si != nullptr && si->Config != nullptr) made.duplicate_window_ns = si->Config->Duplicates;
  jsStreamInfo_Destroy(si);
  return made;
}

/// libnats' PubAck handler (its thread): records the outcome in the writer's AckState.
void on_pub_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* acks = static_cast<AckState*>(closure);
  {
    std::lock_guard lock(acks->mu);
    if (pae != nullptr) {
      AckState::Failure f;
      const char* pos = nullptr;
      if (natsMsgHeader_Get(msg, kPositionHeader, &pos) == NATS_OK && pos != nullptr) {
        f.position = pos;
      }
      f.js_code = static_cast<int>(pae->ErrCode);
      f.text = pae->ErrText != nullptr ? pae->ErrText : natsStatus_GetText(pae->Err);
      acks->failures.push_back(std::move(f));
    } else if (pa != nullptr && pa->Duplicate) {
      ++acks->duplicates;
    }
    ++acks->answered;
  }
  acks->cv.notify_all();
  natsMsg_Destroy(msg);
}

/// Creates the JetStream context with `max_pending` publishes in flight at most.
Result<jsCtx*> jet_stream(natsConnection* nc, AckState* acks, int64_t max_pending,
                          std::chrono::milliseconds timeout, std::string_view header) {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = timeout.count();
  jo.PublishAsync.MaxPending = max_pending;
  jo.PublishAsync.StallWait = timeout.count();
  jo.PublishAsync.AckHandler = on_pub_ack;
  jo.PublishAsync.AckHandlerClosure = acks;
  jsCtx* js = nullptr;
  if (natsStatus s = natsConnection_JetStream(&js, nc, &jo); s != NATS_OK) {
    return make_error(std::string(header) + ": JetStream context: " + status_text(s));
  }
  return js;
}

/// Creates the natsMsg of `r` (subject, body and headers built in `parts`).
natsStatus make_message(const SubjectTemplate& subject, const core::Report& r,
                        const ReportPosition& pos, const pipeline::Registry* registry,
                        MessageParts& parts, natsMsg** out) {
  build_message(subject, r, pos, registry, parts);
  natsMsg* m = nullptr;
  natsStatus s = natsMsg_Create(&m, parts.subject.c_str(), nullptr, parts.body.data(),
                                static_cast<int>(parts.body.size()));
  if (s == NATS_OK) s = natsMsgHeader_Set(m, kMsgIdHeader, parts.msg_id.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(m, kPositionHeader, parts.position.c_str());
  if (s == NATS_OK && !parts.traceparent.empty()) {
    s = natsMsgHeader_Set(m, kTraceHeader, parts.traceparent.c_str());
  }
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    return s;
  }
  *out = m;
  return NATS_OK;
}

}  // namespace

NatsWriter::NatsWriter(const NatsConfig& config, NatsServers servers, SubjectTemplate subject,
                       std::string cursor_path, std::string header,
                       std::shared_ptr<const pipeline::Registry> registry)
    : config_(config),
      servers_(std::move(servers)),
      subject_(std::move(subject)),
      cursor_path_(std::move(cursor_path)),
      header_(std::move(header)),
      registry_(std::move(registry)) {}

NatsWriter::~NatsWriter() {
  close();
}

Result<std::vector<uint64_t>> NatsWriter::open(uint32_t shards) {
  close();
  auto nc = connect(servers_, config_.sink.timeout, header_);
  if (!nc) return nc.error();
  nc_ = *nc;
  auto js = jet_stream(nc_, &acks_, std::max<int64_t>(config_.sink.batch_reports, 1),
                       config_.sink.timeout, header_);
  if (!js) {
    close();
    return js.error();
  }
  js_ = *js;
  auto created = ensure_stream(js_, config_.stream, subject_.stream_subject(),
                               config_.duplicate_window, header_);
  if (!created) {
    close();
    return created.error();
  }
  const int64_t window_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(config_.duplicate_window).count();
  stats_.duplicate_window_ns.store(created->duplicate_window_ns, std::memory_order_relaxed);
  if (created->created) {
    stats_.streams_created.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr,
                 "%s: created stream %s (subjects %s, file storage, duplicate window %lld ms)\n",
                 header_.c_str(), config_.stream.c_str(), subject_.stream_subject().c_str(),
                 static_cast<long long>(config_.duplicate_window.count()));
  } else if (created->duplicate_window_ns < window_ns && !warned_window_) {
    // The stream is the operator's and stays as it is; say what its window means.
    warned_window_ = true;
    std::fprintf(stderr,
                 "%s: stream %s keeps its duplicate window of %lld ms, shorter than "
                 "duplicate_window (%lld ms): a replay later than that is stored twice\n",
                 header_.c_str(), config_.stream.c_str(),
                 static_cast<long long>(created->duplicate_window_ns / 1'000'000),
                 static_cast<long long>(config_.duplicate_window.count()));
  }
  auto state = load_cursor_file(cursor_path_, shards);
  if (!state) {
    close();
    return make_error(header_ + ": " + state.error().message);
  }
  last_saved_ = state->shards;
  return state->shards;
}

void NatsWriter::close() noexcept {
  if (js_ != nullptr) {
    // Messages still awaiting a PubAck are dropped: their batch is replayed after open().
    natsMsgList pending{};
    if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) natsMsgList_Destroy(&pending);
  }
  if (nc_ != nullptr) natsConnection_Close(nc_);
  if (js_ != nullptr) jsCtx_Destroy(js_);
  js_ = nullptr;
  if (nc_ != nullptr) natsConnection_Destroy(nc_);
  nc_ = nullptr;
}

WriteStatus NatsWriter::write(const Batch& batch, bool durable, std::string& error) {
  (void)durable;  // every accepted batch saves its cursors (after its PubAcks)
  if (nc_ == nullptr || js_ == nullptr) {
    error = header_ + ": not connected";
    return WriteStatus::kRetry;
  }
  if (!batch.reports.empty()) {
    if (const WriteStatus st = publish(batch, error); st != WriteStatus::kAccepted) return st;
    if (const WriteStatus st = settle(batch, error); st != WriteStatus::kAccepted) return st;
  }
  if (auto r = save_cursors(batch); !r) {
    error = header_ + ": " + r.error().message;
    return WriteStatus::kRetry;
  }
  return WriteStatus::kAccepted;
}

WriteStatus NatsWriter::publish(const Batch& batch, std::string& error) {
  const size_t n = batch.reports.size();
  {
    std::lock_guard lock(acks_.mu);
    acks_.answered = 0;
    acks_.duplicates = 0;
    acks_.failures.clear();
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.ExpectStream = config_.stream.c_str();  // a message some other stream captured fails
  size_t sent = 0;
  for (size_t i = 0; i < n; ++i) {
    natsMsg* m = nullptr;
    natsStatus s =
        make_message(subject_, batch.reports[i], batch.positions[i], registry_.get(), parts_, &m);
    if (s == NATS_OK) s = js_PublishMsgAsync(js_, &m, &po);
    natsMsg_Destroy(m);  // null when the client took it
    if (s != NATS_OK) {
      error = header_ + ": publish to " + parts_.subject + ": " + status_text(s);
      return WriteStatus::kRetry;
    }
    ++sent;
  }
  stats_.published.fetch_add(sent, std::memory_order_relaxed);
  // Every PubAck within the timeout, or the batch is replayed.
  const auto deadline = std::chrono::steady_clock::now() + config_.sink.timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = std::clamp<int64_t>(left.count(), 1, 100);
    const natsStatus s = js_PublishAsyncComplete(js_, &wait);
    if (s == NATS_OK) break;
    if (natsConnection_IsClosed(nc_)) {
      error = header_ + ": the connection closed while awaiting PubAcks";
      return WriteStatus::kRetry;
    }
    if (s != NATS_TIMEOUT || left.count() <= 0) {
      std::lock_guard lock(acks_.mu);
      stats_.pub_errors.fetch_add(n - std::min<uint64_t>(acks_.answered, n),
                                  std::memory_order_relaxed);
      error = header_ + ": " + std::to_string(n - acks_.answered) + " of " + std::to_string(n) +
              " PubAcks missing after " + std::to_string(config_.sink.timeout.count()) + " ms (" +
              status_text(s) + ")";
      return WriteStatus::kRetry;
    }
  }
  // The handler may still be returning for the last PubAck: wait for its count too.
  std::unique_lock lock(acks_.mu);
  if (!acks_.cv.wait_until(lock, deadline + std::chrono::seconds(1),
                           [&] { return acks_.answered >= n; })) {
    error = header_ + ": PubAcks incomplete (" + std::to_string(acks_.answered) + " of " +
            std::to_string(n) + ")";
    return WriteStatus::kRetry;
  }
  stats_.duplicates.fetch_add(acks_.duplicates, std::memory_order_relaxed);
  return WriteStatus::kAccepted;
}

WriteStatus NatsWriter::settle(const Batch& batch, std::string& error) {
  std::vector<AckState::Failure> failures;
  {
    std::lock_guard lock(acks_.mu);
    failures.swap(acks_.failures);
  }
  if (failures.empty()) {
    poison_attempts_.clear();
    return WriteStatus::kAccepted;
  }
  stats_.pub_errors.fetch_add(failures.size(), std::memory_order_relaxed);
  const AckState::Failure* retry = nullptr;
  const AckState::Failure* blocked = nullptr;
  for (const auto& f : failures) {
    const Refusal r = classify_refusal(f.js_code);
    if (r == Refusal::kRetry && retry == nullptr) retry = &f;
    if (r == Refusal::kBlocked && blocked == nullptr) blocked = &f;
  }
  auto describe = [](const AckState::Failure& f) {
    return f.text + (f.js_code != 0 ? " (JetStream error " + std::to_string(f.js_code) + ")" : "");
  };
  if (retry != nullptr) {
    error = header_ + ": " + std::to_string(failures.size()) +
            " messages not stored: " + describe(*retry) + "; check that stream " + config_.stream +
            " captures " + subject_.stream_subject();
    return WriteStatus::kRetry;
  }
  if (blocked != nullptr) {
    error = header_ + ": stream " + config_.stream +
            " refuses messages for now: " + describe(*blocked) +
            "; free space or raise the stream's limits (max_bytes, " +
            "max_msgs) or the server's JetStream storage";
    return WriteStatus::kBlocked;
  }
  // Only records refused for good: count an attempt each; dead-letter them at max_attempts.
  bool all_due = true;
  for (const auto& f : failures) {
    all_due &= ++poison_attempts_[f.position] >= config_.sink.max_attempts;
  }
  if (!all_due || batch.dead_letter == nullptr) {
    error = header_ + ": " + std::to_string(failures.size()) +
            " records refused: " + describe(failures.front()) + " (attempt " +
            std::to_string(poison_attempts_[failures.front().position]) + " of " +
            std::to_string(config_.sink.max_attempts) + ")";
    return WriteStatus::kBlocked;
  }
  std::unordered_map<std::string, size_t> by_position;
  for (size_t i = 0; i < batch.positions.size(); ++i) {
    std::string p;
    append_log_position(p, batch.positions[i]);
    by_position.emplace(std::move(p), i);
  }
  for (const auto& f : failures) {
    const auto it = by_position.find(f.position);
    if (it == by_position.end()) {
      error = header_ + ": a refused message without a known log position (" + f.position + ")";
      return WriteStatus::kRetry;
    }
    batch.dead_letter->add(batch.reports[it->second], registry_.get(), describe(f),
                           poison_attempts_[f.position]);
  }
  // The dead-letter file is on disk before the cursors that pass these records.
  if (auto r = batch.dead_letter->sync(); !r) {
    error = header_ + ": dead-letter file: " + r.error().message;
    return WriteStatus::kRetry;
  }
  stats_.poison.fetch_add(failures.size(), std::memory_order_relaxed);
  std::fprintf(stderr, "%s: %zu records dead-lettered after %u attempts: %s\n", header_.c_str(),
               failures.size(), config_.sink.max_attempts, describe(failures.front()).c_str());
  poison_attempts_.clear();
  return WriteStatus::kAccepted;
}

Result<void> NatsWriter::save_cursors(const Batch& batch) {
  bool same = last_saved_.size() == batch.cursors.size();
  for (size_t i = 0; same && i < batch.cursors.size(); ++i) {
    same = last_saved_[i] == batch.cursors[i].offset;
  }
  if (same) return {};
  if (auto r = save_cursor_file(cursor_path_, batch.cursors); !r) return r.error();
  last_saved_.resize(batch.cursors.size());
  for (size_t i = 0; i < batch.cursors.size(); ++i) last_saved_[i] = batch.cursors[i].offset;
  return {};
}

void NatsWriter::collect(core::PromWriter& w, const core::Labels& sink) const {
  auto get = [](const std::atomic<uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  w.counter("tianhe_sink_nats_published_total",
            "Messages published to JetStream (replays after a failure included).", sink,
            get(stats_.published));
  w.counter("tianhe_sink_nats_duplicates_total",
            "PubAcks saying the stream already held the message (a replay or a retransmission "
            "dropped by its Nats-Msg-Id).",
            sink, get(stats_.duplicates));
  w.counter("tianhe_sink_nats_pub_errors_total",
            "Messages whose PubAck was an error or did not come in time.", sink,
            get(stats_.pub_errors));
  w.counter("tianhe_sink_nats_poison_total",
            "Records the stream refused for good (over its max message size), dead-lettered.", sink,
            get(stats_.poison));
  w.counter("tianhe_sink_nats_streams_created_total", "Streams this sink created.", sink,
            get(stats_.streams_created));
  w.gauge("tianhe_sink_nats_duplicate_window_seconds",
          "The stream's duplicate window: a replay later than this is stored twice.", sink,
          static_cast<double>(stats_.duplicate_window_ns.load(std::memory_order_relaxed)) / 1e9);
}

Result<std::unique_ptr<SinkWriter>> make_writer(const NatsConfig& config,
                                                const DeliveryContext& context) {
  auto servers = parse_servers(config.sink, context.header);
  if (!servers) return servers.error();
  if (std::string e = check_stream_name(config.stream); !e.empty()) {
    return make_error(context.header + ".stream: " + e);
  }
  auto subject = SubjectTemplate::parse(config.subject, context.header + ".subject");
  if (!subject) return subject.error();
  const std::string cursor =
      (std::filesystem::path(context.gateway.data_dir) / "sinks" / (context.instance + ".cursor"))
          .string();
  return std::unique_ptr<SinkWriter>(new NatsWriter(config, std::move(servers.value()),
                                                    std::move(subject.value()), cursor,
                                                    context.header, context.gateway.registry));
}

// ---- the ceiling: a plain client, no consumer, no cursors ----
namespace {

/// Reports of the registry's first devices with their model's metrics, encoded as the log
/// holds them (so record_json reads them the same way).
struct SampleReports {
  std::vector<uint8_t> bytes;
  core::ReportBatch decoded{4096, 4096 * 16};
};

Result<void> sample_reports(const pipeline::Registry& registry, SampleReports& out) {
  core::ReportBatch batch(1, 64);
  std::vector<uint8_t> buf(1 << 20);
  size_t used = 3;
  uint16_t count = 0;
  const int64_t now = core::wall_ns();
  for (uint64_t id = 1; count < 1024 && id <= 1'000'000; ++id) {
    const pipeline::DeviceEntry* d = registry.find(id);
    if (d == nullptr) {
      if (count > 0) break;
      continue;
    }
    const pipeline::Model& model = registry.model(d->model);
    batch.clear();
    core::Report* r = batch.add_report();
    r->device_id = id;
    r->seq = 1;
    r->tenant = d->tenant;
    r->device_time_ns = now;
    r->received_ns = now;
    r->protocol = static_cast<core::Protocol>(1);  // the report protocol's id (report_parser.h)
    for (const pipeline::ModelMetric& mm : model.metrics()) {
      core::Metric* m = batch.add_metric(*r);
      if (m == nullptr) break;
      m->name = mm.name;
      m->value.type = mm.type;
      if (mm.type == core::ValueType::kDouble) m->value.f64 = std::clamp(20.5, mm.min, mm.max);
      if (mm.type == core::ValueType::kInt64) {
        m->value.i64 = static_cast<int64_t>(
            std::clamp(3000.0, std::max(mm.min, -1e18), std::min(mm.max, 1e18)));
      }
      if (mm.type == core::ValueType::kBool) m->value.b = false;
      if (mm.type == core::ValueType::kString) m->value.str = "ok";
    }
    const size_t w = core::encode_report(batch, *r, std::span(buf).subspan(used));
    if (w == 0) break;
    used += w;
    ++count;
  }
  if (count == 0) return make_error("the registry has no devices among ids 1-1000000");
  core::encode_payload_header(count, buf);
  buf.resize(used);
  out.bytes = std::move(buf);
  out.decoded.clear();
  if (core::decode_payload(out.bytes, out.decoded) != core::RecordStatus::kOk) {
    return make_error("sample reports did not decode");
  }
  return {};
}

}  // namespace

Result<double> ceiling(const NatsConfig& config, const runtime::GatewayContext& gateway,
                       uint64_t reports) {
  const std::string header = "sinks.nats (ceiling)";
  if (gateway.registry == nullptr) return make_error(header + ": no registry");
  auto servers = parse_servers(config.sink, "sinks.nats");
  if (!servers) return servers.error();
  SampleReports samples;
  if (auto r = sample_reports(*gateway.registry, samples); !r) {
    return make_error(header + ": " + r.error().message);
  }
  const std::string scratch = "TIANHE_CEILING_" + std::to_string(::getpid());
  auto subject = SubjectTemplate::parse(
      "tianhe_ceiling_" + std::to_string(::getpid()) + ".{tenant}.{model}.{device}", header);
  if (!subject) return subject.error();
  auto nc = connect(*servers, config.sink.timeout, header);
  if (!nc) return nc.error();
  AckState acks;
  const int64_t max_pending = std::max<int64_t>(config.sink.batch_reports, 1);
  auto js = jet_stream(*nc, &acks, max_pending, config.sink.timeout, header);
  if (!js) {
    natsConnection_Destroy(*nc);
    return js.error();
  }
  auto cleanup = [&] {
    js_DeleteStream(*js, scratch.c_str(), nullptr, nullptr);
    jsCtx_Destroy(*js);
    natsConnection_Close(*nc);
    natsConnection_Destroy(*nc);
  };
  if (auto c =
          ensure_stream(*js, scratch, subject->stream_subject(), config.duplicate_window, header);
      !c) {
    cleanup();
    return c.error();
  }
  MessageParts parts;
  const uint32_t devices = samples.decoded.size();
  std::vector<core::Report> sample(devices);
  for (uint32_t i = 0; i < devices; ++i) sample[i] = samples.decoded[i];
  const auto t0 = std::chrono::steady_clock::now();
  std::string error;
  for (uint64_t i = 0; i < reports && error.empty(); ++i) {
    core::Report r = sample[i % devices];
    r.seq = static_cast<uint32_t>(i / devices + 1);  // a distinct reading each
    const ReportPosition pos{0, static_cast<uint32_t>(i % devices), i / devices};
    natsMsg* m = nullptr;
    natsStatus s = make_message(*subject, r, pos, gateway.registry.get(), parts, &m);
    if (s == NATS_OK) s = js_PublishMsgAsync(*js, &m, nullptr);
    natsMsg_Destroy(m);
    if (s != NATS_OK) error = "publish: " + status_text(s);
  }
  if (error.empty()) {
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = std::max<int64_t>(config.sink.timeout.count(), 1);
    if (natsStatus s = js_PublishAsyncComplete(*js, &wait); s != NATS_OK) {
      error = "awaiting PubAcks: " + status_text(s);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  {
    std::unique_lock lock(acks.mu);
    if (error.empty()) {
      acks.cv.wait_for(lock, std::chrono::seconds(1), [&] { return acks.answered >= reports; });
    }
    if (error.empty() && !acks.failures.empty()) {
      error =
          std::to_string(acks.failures.size()) + " messages refused: " + acks.failures.front().text;
    }
  }
  cleanup();
  if (!error.empty()) return make_error(header + ": " + error);
  return seconds > 0 ? static_cast<double>(reports) / seconds : 0.0;
}

}  // namespace tianhe::sinks::nats
