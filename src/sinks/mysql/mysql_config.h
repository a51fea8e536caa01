// `[sinks.mysql]` (and its instances `[sinks.mysql.<name>]`): the keys every delivering sink has
// (SinkOptions) and the MySQL sink's own, checked once into MysqlSettings without connecting.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/config_table.h"
#include "core/result.h"
#include "pipeline/registry.h"
#include "sinks/common/sink_options.h"

namespace tianhe::sinks::mysql {

/// The parsed table.
struct MysqlConfig {
  SinkOptions sink{.url = "mysql://tianhe@127.0.0.1:3306/tianhe"};
  std::string table = "{model}";                 ///< table template: {model}, {tenant}
  uint64_t max_statement_bytes = 4ull << 20;     ///< one INSERT's SQL text at most
  uint64_t max_transaction_bytes = 64ull << 20;  ///< SQL text of one transaction at most
};

/// The `[sinks.mysql]` table.
config::ConfigTable config_table();

/// What the writer connects with, checked.
struct MysqlSettings {
  std::string instance;  ///< "mysql" or "mysql.<name>": the metrics' label
  /// The cursors' key in tianhe_cursors: "<instance>@<log id>" (DeliveryContext::cursor_name);
  /// the instance alone when empty (tests).
  std::string cursor_name;
  std::string header;  ///< "sinks.mysql...": names keys in errors
  std::string host;
  uint16_t port = 3306;
  std::string user;
  std::string password;
  std::string database;
  std::string table;  ///< the template
  std::chrono::milliseconds timeout{10000};
  uint64_t max_statement_bytes = 4ull << 20;
  uint64_t max_transaction_bytes = 64ull << 20;
  uint32_t max_attempts = 5;
};

/// Checks `c` (URL, password source, table template against every tenant and model of
/// `registry`, which may be null) without connecting. Errors name the key (`header`.url) and
/// the fix.
Result<MysqlSettings> check_config(const MysqlConfig& c, std::string_view instance,
                                   std::string_view header, const pipeline::Registry* registry);

}  // namespace tianhe::sinks::mysql
