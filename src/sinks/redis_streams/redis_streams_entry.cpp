#include "sinks/redis_streams/redis_streams_entry.h"

#include <charconv>
#include <cmath>

#include "core/hash.h"

namespace tianhe::sinks::redis_streams {
namespace {

constexpr std::string_view kFixed[] = {"device_id", "seq",    "time_ns", "received_ns",
                                       "protocol",  "tenant", "model",   "traceparent"};

}  // namespace

void append_value(std::string& out, const core::Value& v) {
  char buf[64];
  switch (v.type) {
    case core::ValueType::kDouble: {
      if (std::isnan(v.f64)) {
        out += "nan";
      } else if (std::isinf(v.f64)) {
        out += v.f64 < 0 ? "-inf" : "inf";
      } else {
        // Shortest text that parses back to the same double (C++17 to_chars).
        const auto r = std::to_chars(buf, buf + sizeof buf, v.f64);
        out.append(buf, r.ptr);
      }
      break;
    }
    case core::ValueType::kInt64: {
      const auto r = std::to_chars(buf, buf + sizeof buf, v.i64);
      out.append(buf, r.ptr);
      break;
    }
    case core::ValueType::kBool: out += v.b ? "true" : "false"; break;
    case core::ValueType::kString: out += v.str; break;
  }
}

bool is_fixed_field(std::string_view name) noexcept {
  for (std::string_view f : kFixed) {
    if (f == name) return true;
  }
  return false;
}

EntryBuilder::EntryBuilder(uint64_t max_len, bool approximate) : approximate_(approximate) {
  if (max_len > 0) max_len_ = std::to_string(max_len);
}

void EntryBuilder::add(std::string_view s) {
  spans_.emplace_back(arena_.size(), s.size());
  arena_ += s;
}

void EntryBuilder::add_number(int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  add(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
}

void EntryBuilder::add_unsigned(uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  add(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
}

void EntryBuilder::build(std::string_view key, const RecordFields& f,
                         std::span<const core::Metric> metrics) {
  arena_.clear();
  spans_.clear();
  add("XADD");
  add(key);
  if (!max_len_.empty()) {
    add("MAXLEN");
    // "MAXLEN N" is exact on every server with streams (5.0+); "MAXLEN ~ N" trims whole nodes.
    if (approximate_) add("~");
    add(max_len_);
  }
  add("*");
  add("device_id");
  add_unsigned(f.device_id);
  add("seq");
  add_unsigned(f.seq);
  add("time_ns");
  add_number(f.time_ns);
  add("received_ns");
  add_number(f.received_ns);
  add("protocol");
  add(f.protocol);
  add("tenant");
  add(f.tenant);
  add("model");
  add(f.model);
  if (f.traceparent_len > 0) {
    add("traceparent");
    add(f.traceparent());
  }
  for (const core::Metric& m : metrics) {
    const size_t at = arena_.size();
    if (m.name.empty()) {
      arena_ += '#';
      char buf[16];
      const auto r = std::to_chars(buf, buf + sizeof buf, m.id);
      arena_.append(buf, r.ptr);
    } else {
      if (is_fixed_field(m.name)) arena_ += "m.";
      arena_ += m.name;
    }
    spans_.emplace_back(at, arena_.size() - at);
    const size_t v = arena_.size();
    append_value(arena_, m.value);
    spans_.emplace_back(v, arena_.size() - v);
  }
  // The arena is complete: only now are pointers into it stable.
  argv_.clear();
  lens_.clear();
  for (const auto& [off, len] : spans_) {
    argv_.push_back(arena_.data() + off);
    lens_.push_back(len);
  }
}

std::string format_seed_field(uint64_t device_id, uint32_t shard) {
  return std::to_string(device_id) + ":" + std::to_string(shard);
}

std::string format_seed(uint32_t seq, int64_t time_ns) {
  return std::to_string(seq) + " " + std::to_string(time_ns);
}

namespace {

template <typename T>
bool parse_whole(std::string_view s, T& v) {
  const char* end = s.data() + s.size();
  const auto r = std::from_chars(s.data(), end, v);
  return !s.empty() && r.ec == std::errc() && r.ptr == end;
}

}  // namespace

bool parse_seed(std::string_view field, std::string_view value, Seed& out) {
  const size_t colon = field.find(':');
  const size_t space = value.find(' ');
  return colon != std::string_view::npos && space != std::string_view::npos &&
         parse_whole(field.substr(0, colon), out.device_id) &&
         parse_whole(field.substr(colon + 1), out.shard) &&
         parse_whole(value.substr(0, space), out.seq) &&
         parse_whole(value.substr(space + 1), out.time_ns);
}

size_t SeenWindow::KeyHash::operator()(const Key& k) const noexcept {
  return static_cast<size_t>(core::mix64(k.first ^ (uint64_t{k.second} << 48)));
}

void SeenWindow::reset(uint32_t shards, std::span<const Seed> seeds) {
  shards_ = shards == 0 ? 1 : shards;
  committed_.clear();
  // Seeds of shards the gateway no longer has are dropped: no report is read from them.
  for (const Seed& s : seeds) {
    if (s.shard < shards_) committed_[{s.device_id, s.shard}] = {s.seq, s.time_ns};
  }
  rebuild();
  begin();
}

void SeenWindow::rebuild() {
  tables_.clear();
  const size_t per_shard = committed_.size() / shards_ + 1;
  for (uint32_t i = 0; i < shards_; ++i) tables_.emplace_back(per_shard < 1024 ? 1024 : per_shard);
  for (const auto& [key, st] : committed_) tables_[key.second].seed(key.first, st.first, st.second);
  dirty_ = false;
}

SeqWindowTable& SeenWindow::table(uint32_t shard) {
  if (shard >= tables_.size()) {
    shards_ = shard + 1;
    while (tables_.size() < shards_) tables_.emplace_back(1024);
  }
  return tables_[shard];
}

void SeenWindow::begin() {
  batch_.clear();
  batch_index_.clear();
}

SeqVerdict SeenWindow::check(uint32_t shard, uint64_t device_id, uint32_t seq, int64_t time_ns) {
  dirty_ = true;
  const SeqVerdict v = table(shard).check(device_id, seq, time_ns);
  if (v == SeqVerdict::kDuplicate) return v;
  // Mirror how the table moves a device's newest: ahead of it, a reboot, or a first report.
  const Key key{device_id, shard};
  if (const auto in_batch = batch_index_.find(key); in_batch != batch_index_.end()) {
    Seed& b = batch_[in_batch->second];
    if (v == SeqVerdict::kReboot || static_cast<int32_t>(seq - b.seq) > 0) {
      b = {device_id, shard, seq, time_ns};
    }
    return v;
  }
  const auto c = committed_.find(key);
  const bool moves = c == committed_.end() || v == SeqVerdict::kReboot ||
                     static_cast<int32_t>(seq - c->second.first) > 0;
  if (moves) {
    batch_index_.emplace(key, batch_.size());
    batch_.push_back({device_id, shard, seq, time_ns});
  }
  return v;
}

void SeenWindow::commit() {
  for (const Seed& s : batch_) committed_[{s.device_id, s.shard}] = {s.seq, s.time_ns};
  dirty_ = false;
  begin();
}

void SeenWindow::rollback() {
  if (dirty_) rebuild();
  begin();
}

std::pair<ErrorClass, std::string_view> classify_error(std::string_view m) noexcept {
  const std::string_view code = m.substr(0, m.find(' '));
  if (code == "OOM") return {ErrorClass::kBlocked, "oom"};
  if (code == "READONLY") return {ErrorClass::kBlocked, "readonly"};
  if (code == "MISCONF") return {ErrorClass::kBlocked, "misconf"};
  if (code == "LOADING") return {ErrorClass::kBlocked, "loading"};
  if (code == "BUSY") return {ErrorClass::kBlocked, "busy"};
  if (code == "MASTERDOWN" || code == "NOREPLICAS" || code == "TRYAGAIN" || code == "CLUSTERDOWN") {
    return {ErrorClass::kBlocked, "unavailable"};
  }
  if (code == "NOAUTH" || code == "WRONGPASS" || code == "NOPERM" || code == "MOVED" ||
      code == "ASK") {
    return {ErrorClass::kRetry, "connection"};
  }
  return {ErrorClass::kRefused, "refused"};
}

std::string_view blocked_hint(std::string_view reason) noexcept {
  if (reason == "oom") {
    return "the server reached maxmemory: raise maxmemory, free memory, or set max_len so "
           "streams are trimmed";
  }
  if (reason == "readonly") return "the server is a read-only replica: point url at the primary";
  if (reason == "misconf") {
    return "the server cannot persist its data (a full disk?): check the server's log";
  }
  if (reason == "loading") return "the server is loading its data set; it accepts writes after";
  if (reason == "busy") return "a script keeps the server busy";
  return "the server cannot take writes now; check its state";
}

}  // namespace tianhe::sinks::redis_streams
