// The Redis streams sink's registration (the line `th_extension(sinks/redis_streams)` in
// src/extensions.cmake): its table, the factory of its writer (checks the config, does not
// connect) and its ceiling for `tianhe bench --sinks`.
#include <hiredis/hiredis.h>

#include <chrono>
#include <string>
#include <vector>

#include "core/clock.h"
#include "runtime/extensions.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/redis_streams/redis_streams_config.h"
#include "sinks/redis_streams/redis_streams_entry.h"
#include "sinks/redis_streams/redis_streams_writer.h"

namespace tianhe::sinks::redis_streams {
namespace {

Result<std::unique_ptr<SinkWriter>> make_writer(const RedisStreamsConfig& c,
                                                const DeliveryContext& context) {
  auto s = make_settings(c, context.instance, context.header);
  if (!s) return s.error();
  // The cursors and duplicate windows of this gateway's logs (DeliveryContext::cursor_name).
  s->cursor_key = "tianhe:cursor:" + context.cursor_name;
  s->seen_key = "tianhe:seen:" + context.cursor_name;
  return std::unique_ptr<SinkWriter>(
      new RedisStreamsWriter(std::move(s.value()), context.gateway.registry));
}

/// The registry's first devices (at most `n`), each with its model's index and tenant.
std::vector<pipeline::DeviceEntry> first_devices(const pipeline::Registry& reg, size_t n) {
  std::vector<pipeline::DeviceEntry> out;
  const uint64_t limit = 1'000'000;  // ids are searched from 1; fleets start low
  for (uint64_t id = 1; id <= limit && out.size() < n && out.size() < reg.device_count(); ++id) {
    if (const pipeline::DeviceEntry* d = reg.find(id); d != nullptr) {
      out.push_back({id, id, d->model, d->tenant});
    }
  }
  return out;
}

/// One reading of `model`'s metrics, inside their ranges, varying with `i`.
void reading(const pipeline::Model& model, uint64_t i, std::vector<core::Metric>& out) {
  out.clear();
  for (const pipeline::ModelMetric& mm : model.metrics()) {
    core::Metric m;
    m.name = mm.name;
    m.value.type = mm.type;
    switch (mm.type) {
      case core::ValueType::kDouble: {
        const double lo = mm.min > -1e300 ? mm.min : 0.0;
        const double hi = mm.max < 1e300 ? mm.max : lo + 100.0;
        m.value.f64 = lo + (hi - lo) * static_cast<double>(i % 1000) / 1000.0;
        break;
      }
      case core::ValueType::kInt64: m.value.i64 = static_cast<int64_t>(i % 4096); break;
      case core::ValueType::kBool: m.value.b = (i & 1) != 0; break;
      case core::ValueType::kString: m.value.str = "ok"; break;
    }
    out.push_back(m);
  }
}

/// `tianhe bench --sinks`: pipelined XADDs of `reports` entries of the sink's layout to a
/// scratch stream, removed afterwards; no Tianhe consumer, no transaction.
Result<double> ceiling(const RedisStreamsConfig& c, const runtime::GatewayContext& gateway,
                       uint64_t reports) {
  auto s = make_settings(c, "redis_streams.ceiling", "sinks.redis_streams");
  if (!s) return s.error();
  auto conn = RedisConnection::open(s.value());
  if (!conn) return conn.error();
  redisContext* ctx = conn.value()->get();
  std::vector<pipeline::DeviceEntry> devices;
  if (gateway.registry) devices = first_devices(*gateway.registry, 1000);
  if (devices.empty()) return make_error("bench --sinks: the registry has no devices");
  const std::string key = "tianhe:ceiling:" + std::to_string(core::wall_ns());
  EntryBuilder entry(s->max_len, s->max_len_approximate);
  std::vector<core::Metric> metrics;
  constexpr uint64_t kChunk = 1000;  // commands in flight at once
  const int64_t now = core::wall_ns();
  const int64_t t0 = core::mono_ns();
  std::string error;
  for (uint64_t done = 0; done < reports && error.empty();) {
    const uint64_t n = std::min(kChunk, reports - done);
    for (uint64_t i = done; i < done + n; ++i) {
      const pipeline::DeviceEntry& d = devices[i % devices.size()];
      RecordFields f;
      f.device_id = d.first_id;
      f.seq = static_cast<uint32_t>(i / devices.size());
      f.time_ns = now + static_cast<int64_t>(i);
      f.received_ns = f.time_ns + 1000;
      f.protocol = "report";
      f.tenant = gateway.registry->tenant_name(d.tenant);
      const pipeline::Model& model = gateway.registry->model(d.model);
      f.model = model.name();
      reading(model, i, metrics);
      entry.build(key, f, metrics);
      redisAppendCommandArgv(ctx, entry.argc(), entry.argv(), entry.argvlen());
    }
    for (uint64_t i = 0; i < n; ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx, &raw) != REDIS_OK) {
        error = conn.value()->io_error();
        break;
      }
      auto* r = static_cast<redisReply*>(raw);
      if (r->type == REDIS_REPLY_ERROR && error.empty()) error = std::string(r->str, r->len);
      freeReplyObject(r);
    }
    done += n;
  }
  const double seconds = static_cast<double>(core::mono_ns() - t0) / 1e9;
  if (auto* r = static_cast<redisReply*>(redisCommand(ctx, "DEL %b", key.data(), key.size()));
      r != nullptr) {
    freeReplyObject(r);
  }
  if (!error.empty()) return make_error("bench --sinks: redis_streams: XADD failed: " + error);
  return static_cast<double>(reports) / std::max(seconds, 1e-9);
}

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  register_delivery_sink<RedisStreamsConfig>(extensions, "redis_streams", config_table(),
                                             make_writer, ceiling);
}

}  // namespace tianhe::sinks::redis_streams
