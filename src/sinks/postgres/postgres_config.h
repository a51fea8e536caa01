// The `[sinks.postgres]` table (and its instances `[sinks.postgres.<name>]`): the keys every
// delivering sink has (SinkOptions), then the schema and the table name template. Parsed once
// into an immutable PostgresConfig; connect_spec() checks it without connecting.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config_table.h"
#include "core/result.h"
#include "pipeline/registry.h"
#include "sinks/common/sink_options.h"

namespace tianhe::sinks::postgres {

/// `[sinks.postgres]`
struct PostgresConfig {
  SinkOptions sink{.url = "postgresql://tianhe@127.0.0.1:5432/tianhe"};
  std::string schema = "public";  ///< where the tables and tianhe_cursors live
  std::string table = "{model}";  ///< table name template: {model}, {tenant}
};

/// The `[sinks.postgres]` table (a static: the registry keeps spans into it).
const config::ConfigTable& config_table();

/// How to reach the server: libpq keywords and values (PQconnectStartParams), checked.
struct ConnectSpec {
  std::vector<std::pair<std::string, std::string>> params;  ///< keyword, value
  std::string where;  ///< "user@host:port/db" for messages (never the password)
};

/// Checks the URL (postgresql:// or postgres://), the password's source and the query's libpq
/// options; `header` ("sinks.postgres.archive") names keys in errors. Does not connect.
Result<ConnectSpec> connect_spec(const PostgresConfig& c, std::string_view header);

/// Checks a table template: only {model} and {tenant} placeholders. "" or the problem.
std::string check_table_template(std::string_view tmpl);

/// The table of a report of `model` for `tenant` under template `tmpl`.
std::string table_name(std::string_view tmpl, std::string_view tenant, std::string_view model);

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer ones are cut silently.
inline constexpr size_t kMaxIdentifierBytes = 63;

/// Checks every table the registry's models (and tenants, for {tenant}) lead to and every
/// metric column name: length, and no clash with the fixed columns. "" or the problem.
std::string check_layout(const PostgresConfig& c, const pipeline::Registry& registry,
                         std::string_view header);

}  // namespace tianhe::sinks::postgres
