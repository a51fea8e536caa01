#include "runtime/codec_stage.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <set>
#include <system_error>

#include "core/clock.h"
#include "core/metrics_json.h"
#include "runtime/extensions.h"

namespace tianhe::runtime {

namespace {

/// Room reserved for dead-letter lines between two writes: a failure is appended without
/// allocating (the largest line, a 64 KiB datagram in hex, fits several times).
constexpr size_t kPendingBytes = 512u << 10;

void append_u64(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void append_i64(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void append_hex(std::string& out, std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (const uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
}

/// Bytes of the dead-letter line for a payload of `n` bytes and a topic of `t` bytes, at most.
size_t line_bound(size_t n, size_t t) {
  return 2 * n + 6 * t + 320;
}

/// The codec a model names by `name` (one made by CodecSpec::create), or nullptr: a codec that
/// only loads files is not one a model can name.
const CodecSpec* named_codec(const Extensions& extensions, std::string_view name) {
  const CodecSpec* spec = extensions.codec(name);
  return spec != nullptr && spec->create ? spec : nullptr;
}

}  // namespace

PayloadDecoder::PayloadDecoder(CodecStage& stage, uint32_t shard, std::string protocol)
    : stage_(stage), shard_(shard), protocol_(std::move(protocol)) {
  pending_.reserve(kPendingBytes);
  path_ = (std::filesystem::path(stage.data_dir_) / "dead-letter" / "codecs" /
           (protocol_ + "-shard" + std::to_string(shard_) + ".jsonl"))
              .string();
}

PayloadDecoder::~PayloadDecoder() {
  flush_dead_letters();
  if (fd_ >= 0) ::close(fd_);
}

PayloadOutcome PayloadDecoder::decode(std::span<const uint8_t> payload,
                                      const pipeline::CodecContext& context,
                                      core::ReportBatch& batch, core::Report& r) noexcept {
  const pipeline::Registry& registry = *stage_.registry_;
  uint32_t model = 0;
  if (const pipeline::DeviceEntry* d = registry.find(r.device_id); d != nullptr) {
    model = d->model;
  } else if (registry.unknown_devices() == pipeline::UnknownDevicePolicy::kAutoRegister) {
    model = registry.default_model();
  } else {
    return PayloadOutcome::kUnknownDevice;
  }
  const Slot& slot = slots_[static_cast<size_t>(slot_of_model_[model])];
  // Wall clock (the same vDSO read as the monotonic one): it is also the decode span's start.
  const int64_t start = core::wall_ns();
  const pipeline::DecodeStatus status = slot.codec->decode(payload, context, batch, r);
  const int64_t took = core::wall_ns() - start;
  slot.counters->decode_time.observe_ns(took);
  r.decode_start_ns = start;
  r.decode_ns = took > 0 ? static_cast<uint32_t>(std::min<int64_t>(took, UINT32_MAX)) : 0;
  if (status == pipeline::DecodeStatus::kOk) {
    slot.counters->decoded.add();
    return PayloadOutcome::kDecoded;
  }
  batch.truncate_metrics(r);
  const auto reason = static_cast<size_t>(status) < slot.counters->failed.size()
                          ? status
                          : pipeline::DecodeStatus::kMalformed;
  slot.counters->failed[static_cast<size_t>(reason)].add();
  count_device(r.device_id);
  dead_letter(slot, payload, context, reason);
  if (stage_.tracing_ != nullptr && shard_ < stage_.tracing_->shards()) {
    stage_.tracing_->shard(shard_).dead_lettered(r, reason, registry);
  }
  return PayloadOutcome::kDeadLettered;
}

void PayloadDecoder::dead_letter(const Slot& slot, std::span<const uint8_t> payload,
                                 const pipeline::CodecContext& context,
                                 pipeline::DecodeStatus status) noexcept {
  const size_t bound = line_bound(payload.size(), context.topic.size());
  if (pending_.size() + bound > pending_.capacity()) flush_dead_letters();
  if (bound > pending_.capacity() - pending_.size() ||
      file_bytes_ + pending_.size() + bound > stage_.max_dead_letter_bytes_) {
    slot.counters->dead_letter_lost.add();
    return;
  }
  // One JSON line: what arrived, from whom, why it was not decoded (docs/codecs/builtin.md).
  std::string& o = pending_;
  o += "{\"dead_lettered_ns\":";
  append_i64(o, core::wall_ns());
  o += ",\"protocol\":\"";
  o += protocol_;
  o += "\",\"shard\":";
  append_u64(o, shard_);
  o += ",\"codec\":\"";
  o += slot.name;
  o += "\",\"reason\":\"";
  o += pipeline::decode_status_name(status);
  o += "\",\"device_id\":";
  append_u64(o, context.device_id);
  o += ",\"fport\":";
  append_u64(o, context.fport);
  o += ",\"received_ns\":";
  append_i64(o, context.received_ns);
  if (!context.topic.empty()) {
    o += ",\"topic\":";
    core::append_json_string(o, context.topic);
  }
  o += ",\"payload_bytes\":";
  append_u64(o, payload.size());
  o += ",\"payload_hex\":\"";
  append_hex(o, payload);
  o += "\"}\n";
}

void PayloadDecoder::flush_dead_letters() noexcept {
  if (pending_.empty()) return;
  if (fd_ < 0) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      stage_.write_errors_.fetch_add(1, std::memory_order_relaxed);
      pending_.clear();
      return;
    }
    const off_t end = ::lseek(fd_, 0, SEEK_END);
    file_bytes_ = end > 0 ? static_cast<uint64_t>(end) : 0;
  }
  size_t done = 0;
  while (done < pending_.size()) {
    const ssize_t n = ::write(fd_, pending_.data() + done, pending_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      stage_.write_errors_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    done += static_cast<size_t>(n);
  }
  file_bytes_ += done;
  pending_.clear();
}

void PayloadDecoder::batch_done() noexcept {
  for (Slot& s : slots_) s.codec->batch_done();
  flush_dead_letters();
}

void PayloadDecoder::count_device(uint64_t device_id) noexcept {
  // A fixed table: the first devices that fail are counted by id, the rest together, so a
  // flood of distinct bad senders cannot grow memory or the metrics' label set.
  for (auto& e : devices_->top) {
    const uint64_t id = e.device_id.load(std::memory_order_relaxed);
    if (id == device_id) {
      e.failures.add();
      return;
    }
    if (id == 0) {
      e.device_id.store(device_id, std::memory_order_relaxed);
      e.failures.add();
      return;
    }
  }
  devices_->other.add();
}

Result<std::shared_ptr<CodecStage>> CodecStage::create(
    std::string data_dir, std::shared_ptr<const pipeline::Registry> registry,
    const Extensions& extensions, uint64_t max_dead_letter_bytes, const CodecLimits& limits) {
  std::set<std::string> checked;
  for (size_t i = 0; i < registry->model_count(); ++i) {
    const pipeline::Model& m = registry->model(static_cast<uint32_t>(i));
    if (m.codec().empty() || named_codec(extensions, m.codec()) != nullptr) continue;
    const CodecSpec* file = codec_for_file(extensions.codecs(), m.codec());
    if (file == nullptr) {
      return make_error("model " + m.name() + ": no codec called \"" + m.codec() +
                        "\" is compiled in");
    }
    // A codec file is loaded once here, so an error in it stops the start with its reason.
    if (!checked.insert(m.codec()).second) continue;
    if (auto c = file->load(m.codec(), limits); !c.ok()) {
      return make_error("model " + m.name() + ": codec " + c.error().message);
    }
  }
  auto stage = std::shared_ptr<CodecStage>(new CodecStage());
  stage->data_dir_ = std::move(data_dir);
  stage->registry_ = std::move(registry);
  stage->extensions_ = &extensions;
  stage->max_dead_letter_bytes_ = max_dead_letter_bytes;
  stage->limits_ = limits;
  return stage;
}

Result<std::unique_ptr<PayloadDecoder>> CodecStage::decoder(uint32_t shard,
                                                            std::string_view protocol,
                                                            std::string_view default_codec) {
  if (named_codec(*extensions_, default_codec) == nullptr) {
    return make_error("protocols." + std::string(protocol) + ": its default codec \"" +
                      std::string(default_codec) +
                      "\" is not compiled in; name a codec in every model it serves");
  }
  auto d = std::unique_ptr<PayloadDecoder>(new PayloadDecoder(*this, shard, std::string(protocol)));
  std::string error;
  auto slot_of = [&](std::string_view name) -> int32_t {
    for (size_t i = 0; i < d->slots_.size(); ++i) {
      if (d->slots_[i].name == name) return static_cast<int32_t>(i);
    }
    std::unique_ptr<pipeline::Codec> codec;
    if (const CodecSpec* spec = named_codec(*extensions_, name); spec != nullptr) {
      codec = spec->create();
    } else if (const CodecSpec* file = codec_for_file(extensions_->codecs(), name);
               file != nullptr) {
      // One codec per shard and file: each shard compiles it in its own engine.
      auto loaded = file->load(std::string(name), limits_);
      if (!loaded.ok()) {
        error = "codec " + loaded.error().message;
        return -1;
      }
      codec = std::move(loaded.value());
    } else {
      error = "no codec called \"" + std::string(name) + "\" is compiled in";
      return -1;
    }
    d->slots_.push_back({.name = std::string(name),
                         .codec = std::move(codec),
                         .counters = counters(name, protocol, shard)});
    return static_cast<int32_t>(d->slots_.size() - 1);
  };
  d->default_slot_ = slot_of(default_codec);
  if (d->default_slot_ < 0) return make_error("protocols." + std::string(protocol) + ": " + error);
  d->slot_of_model_.resize(registry_->model_count(), d->default_slot_);
  for (size_t i = 0; i < registry_->model_count(); ++i) {
    const pipeline::Model& m = registry_->model(static_cast<uint32_t>(i));
    if (m.codec().empty()) continue;
    d->slot_of_model_[i] = slot_of(m.codec());
    if (d->slot_of_model_[i] < 0) return make_error("model " + m.name() + ": " + error);
  }
  std::lock_guard lock(mu_);
  devices_.push_back(std::make_unique<CodecDeviceCounts>());
  devices_.back()->protocol = std::string(protocol);
  d->devices_ = devices_.back().get();
  return d;
}

CodecCounters* CodecStage::counters(std::string_view codec, std::string_view protocol,
                                    uint32_t shard) {
  std::lock_guard lock(mu_);
  for (auto& c : counters_) {
    if (c->codec == codec && c->protocol == protocol && c->shard == shard) return &c->c;
  }
  counters_.push_back(std::make_unique<Counters>());
  counters_.back()->codec = std::string(codec);
  counters_.back()->protocol = std::string(protocol);
  counters_.back()->shard = shard;
  return &counters_.back()->c;
}

void CodecStage::collect(core::PromWriter& w) const {
  std::lock_guard lock(mu_);
  for (const auto& c : counters_) {
    const core::Labels labels = {{"codec", c->codec}, {"protocol", c->protocol}};
    w.counter("tianhe_codec_decoded_total", "Payloads a codec decoded into metrics.", labels,
              static_cast<double>(c->c.decoded.get()));
    for (size_t i = 1; i < c->c.failed.size(); ++i) {
      core::Labels l = labels;
      l.emplace_back(
          "reason",
          std::string(pipeline::decode_status_name(static_cast<pipeline::DecodeStatus>(i))));
      w.counter("tianhe_codec_failures_total",
                "Payloads a codec could not decode (dead-lettered), by reason.", l,
                static_cast<double>(c->c.failed[i].get()));
    }
    w.counter("tianhe_codec_dead_letter_lost_total",
              "Failed payloads not written to the dead-letter file (it reached its size limit).",
              labels, static_cast<double>(c->c.dead_letter_lost.get()));
    core::write_histogram(w, "tianhe_codec_decode_seconds", "Time of one codec call.", labels,
                          c->c.decode_time);
  }
  for (const auto& d : devices_) {
    for (const auto& e : d->top) {
      const uint64_t id = e.device_id.load(std::memory_order_relaxed);
      if (id == 0) break;
      w.counter("tianhe_codec_device_failures_total",
                "Payloads that failed to decode, by device (the first 64 failing devices per "
                "shard and protocol; the rest under device=\"other\").",
                {{"protocol", d->protocol}, {"device", std::to_string(id)}},
                static_cast<double>(e.failures.get()));
    }
    w.counter("tianhe_codec_device_failures_total",
              "Payloads that failed to decode, by device (the first 64 failing devices per "
              "shard and protocol; the rest under device=\"other\").",
              {{"protocol", d->protocol}, {"device", "other"}},
              static_cast<double>(d->other.get()));
  }
  for (const CodecSpec& spec : extensions_->codecs()) {
    if (spec.collect) spec.collect(w);
  }
  w.counter("tianhe_codec_dead_letter_write_errors_total",
            "Writes to a codec dead-letter file that failed (disk full, permissions).", {},
            static_cast<double>(write_errors_.load(std::memory_order_relaxed)));
}

std::vector<CodecUsage> CodecStage::usage() const {
  std::lock_guard lock(mu_);
  std::vector<CodecUsage> out;
  for (const auto& c : counters_) {
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const CodecUsage& u) { return u.codec == c->codec; });
    if (it == out.end()) {
      out.push_back(CodecUsage{.codec = c->codec});
      it = out.end() - 1;
    }
    uint64_t failed = 0;
    for (size_t i = 1; i < c->c.failed.size(); ++i) failed += c->c.failed[i].get();
    it->failures += failed;
    it->calls += c->c.decoded.get() + failed;
    for (int b = 0; b < core::Log2Histogram::kBuckets; ++b) {
      it->time_buckets[static_cast<size_t>(b)] += c->c.decode_time.bucket(b);
    }
    it->time_ns += c->c.decode_time.sum_ns();
  }
  return out;
}

uint64_t CodecStage::dead_lettered() const noexcept {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& c : counters_) {
    for (size_t i = 1; i < c->c.failed.size(); ++i) n += c->c.failed[i].get();
  }
  return n;
}

std::string CodecStage::dead_letter_dir() const {
  return (std::filesystem::path(data_dir_) / "dead-letter" / "codecs").string();
}

}  // namespace tianhe::runtime
