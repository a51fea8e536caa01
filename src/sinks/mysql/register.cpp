// Registration of the MySQL sink: its table, the writer factory (checks the config without
// connecting) and its ceiling for `tianhe bench --sinks`.
#include <unistd.h>

#include <chrono>
#include <memory>

#include "runtime/extensions.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/mysql/mysql_config.h"
#include "sinks/mysql/mysql_sql.h"
#include "sinks/mysql/mysql_writer.h"

namespace tianhe::sinks::mysql {
namespace {

Result<std::unique_ptr<SinkWriter>> make_writer(const MysqlConfig& c, const DeliveryContext& ctx) {
  auto s = check_config(c, ctx.instance, ctx.header, ctx.gateway.registry.get());
  if (!s) return s.error();
  s->cursor_name = ctx.cursor_name;
  return std::unique_ptr<SinkWriter>(new MysqlWriter(std::move(s.value()), ctx.gateway.registry));
}

// The engine's ceiling: a plain client (no log, no consumer) inserting `reports` rows of the
// sink's layout for the registry's first devices, in multi-row INSERTs of batch_reports rows,
// one transaction each, into a scratch table it drops afterwards.
Result<double> ceiling(const MysqlConfig& c, const runtime::GatewayContext& gateway,
                       uint64_t reports) {
  const pipeline::Registry* reg = gateway.registry.get();
  if (reg == nullptr || reg->model_count() == 0) return make_error("mysql ceiling: no models");
  auto s = check_config(c, "mysql", "sinks.mysql", reg);
  if (!s) return s.error();
  std::vector<std::pair<uint64_t, uint32_t>> devices;  // id, tenant
  uint32_t model_index = 0;
  for (uint64_t id = 1; id < 10'000'000 && devices.size() < 1000; ++id) {
    const pipeline::DeviceEntry* d = reg->find(id);
    if (d == nullptr) continue;
    if (devices.empty()) model_index = d->model;
    if (d->model == model_index) devices.emplace_back(id, d->tenant);
  }
  if (devices.empty()) return make_error("mysql ceiling: the registry has no devices (ids 1-)");
  const pipeline::Model& model = reg->model(model_index);
  const TableLayout layout = table_layout(model);
  const std::string table = "tianhe_ceiling_" + std::to_string(::getpid());
  Connection conn;
  if (auto r = conn.connect(s.value()); !r) return r.error();
  std::string drop = "DROP TABLE IF EXISTS ";
  append_identifier(drop, table);
  if (!conn.query(drop) || !conn.query(create_table_sql(table, layout))) {
    return make_error("mysql ceiling: cannot create `" + table + "`: " + conn.message());
  }
  // One report's metrics, a value of each model metric's type.
  std::vector<core::Metric> metrics(model.metrics().size());
  for (size_t i = 0; i < metrics.size(); ++i) {
    metrics[i].name = model.metrics()[i].name;
    metrics[i].value.type = model.metrics()[i].type;
    metrics[i].value.str = "ok";
  }
  const std::string prefix = insert_prefix(table, layout);
  const uint64_t batch = std::max<uint32_t>(1, c.sink.batch_reports);
  std::vector<const core::Value*> slots;
  std::string sql, why, error;
  const int64_t base_ns = 1'700'000'000'000'000'000;
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t done = 0; done < reports && error.empty();) {
    const uint64_t n = std::min(batch, reports - done);
    sql.assign(prefix);
    size_t in_statement = 0;
    for (uint64_t k = 0; k < n; ++k) {
      const uint64_t i = done + k;
      const auto& [id, tenant] = devices[i % devices.size()];
      RecordFields f;
      f.tenant = reg->tenant_name(tenant);
      f.device_id = id;
      f.seq = static_cast<uint32_t>(i / devices.size() + 1);
      f.time_ns = base_ns + static_cast<int64_t>(i) * 1000;
      f.received_ns = f.time_ns + 1000;
      f.protocol = "report";
      for (core::Metric& m : metrics) {
        m.value.f64 = 0;
        if (m.value.type == core::ValueType::kDouble)
          m.value.f64 = 20.0 + static_cast<double>(i % 100) / 10;
        if (m.value.type == core::ValueType::kInt64)
          m.value.i64 = 3000 + static_cast<int64_t>(i % 1000);
        if (m.value.type == core::ValueType::kBool) m.value.b = (i & 1) != 0;
      }
      const size_t before = sql.size();
      if (in_statement > 0) sql += ',';
      append_row(sql, f, metrics, model, layout, slots, why);
      if (in_statement > 0 && sql.size() + kInsertSuffix.size() > s->max_statement_bytes) {
        std::string row = sql.substr(before + 1);
        sql.resize(before);
        sql += kInsertSuffix;
        if (!conn.query(sql)) error = conn.message();
        sql.assign(prefix);
        sql += row;
        in_statement = 0;
      }
      ++in_statement;
    }
    sql += kInsertSuffix;
    if (error.empty() && (!conn.query(sql) || !conn.query("COMMIT"))) error = conn.message();
    done += n;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  conn.query("ROLLBACK");
  conn.query(drop);
  if (!error.empty()) return make_error("mysql ceiling: insert into `" + table + "`: " + error);
  return seconds > 0 ? static_cast<double>(reports) / seconds : 0.0;
}

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  register_delivery_sink<MysqlConfig>(extensions, "mysql", config_table(), make_writer, ceiling);
}

}  // namespace tianhe::sinks::mysql
