#include "sinks/mysql/mysql_config.h"

#include "sinks/mysql/mysql_sql.h"

namespace tianhe::sinks::mysql {
namespace {

using config::Field;
using config::Kind;
using P = config::Parsed;

std::string check_template(const P& p) {
  return check_table_template(p.s);
}

constexpr Field<MysqlConfig> kFields[] = {
    {.key = "table",
     .kind = Kind::kString,
     .default_text = "\"{model}\"",
     .doc = "The table of a device model's reports: a template where {model} and {tenant} are "
            "replaced (created when missing, columns added when the model gains metrics).",
     .set = [](MysqlConfig& c, const P& p) { c.table = p.s; },
     .check = check_template},
    {.key = "max_statement_bytes",
     .kind = Kind::kSize,
     .default_text = "\"4MiB\"",
     .doc = "SQL text of one multi-row INSERT at most (kept below the server's "
            "max_allowed_packet).",
     .set = [](MysqlConfig& c, const P& p) { c.max_statement_bytes = static_cast<uint64_t>(p.i); },
     .min = 64 * config::kKiB,
     .max = config::kGiB},
    {.key = "max_transaction_bytes",
     .kind = Kind::kSize,
     .default_text = "\"64MiB\"",
     .doc = "SQL text of one transaction at most; a larger batch commits in several, the last "
            "with the cursors (TiDB's txn-total-size-limit is 100 MB by default).",
     .set = [](MysqlConfig& c,
               const P& p) { c.max_transaction_bytes = static_cast<uint64_t>(p.i); },
     .min = config::kMiB,
     .max = 16 * config::kGiB},
};

constexpr SinkTableSpec kSpec = {
    .header = "sinks.mysql",
    .doc =
        "Every report as a row of its model's table in MySQL, MariaDB or TiDB, with the "
        "cursors in the same transaction (docs/sinks/mysql.md).",
    .url_default = "\"mysql://tianhe@127.0.0.1:3306/tianhe\"",
    .url_doc =
        "The server and database: mysql://user@host:port/database (also mariadb:// and "
        "tidb://, whose default port is 4000); the password comes from password_env or "
        "password_file."};

std::string finish(MysqlConfig& c, std::string_view) {
  if (c.max_statement_bytes > c.max_transaction_bytes) {
    return "max_statement_bytes (" +
           config::format_size(static_cast<int64_t>(c.max_statement_bytes)) +
           ") is larger than max_transaction_bytes (" +
           config::format_size(static_cast<int64_t>(c.max_transaction_bytes)) +
           "): lower it or raise max_transaction_bytes";
  }
  return "";
}

constexpr std::string_view kSchemes[] = {"mysql", "mariadb", "tidb"};

Error table_error(const std::string& header, const std::string& tmpl, const std::string& problem) {
  return make_error(header + ".table: \"" + tmpl + "\" " + problem);
}

}  // namespace

config::ConfigTable config_table() {
  return sink_table<MysqlConfig>(kSpec, kFields, finish);
}

Result<MysqlSettings> check_config(const MysqlConfig& c, std::string_view instance,
                                   std::string_view header, const pipeline::Registry* registry) {
  const std::string h(header);
  auto url = parse_url(c.sink.url, kSchemes, h + ".url");
  if (!url) return url.error();
  MysqlSettings s;
  s.instance = std::string(instance);
  s.cursor_name = s.instance;
  s.header = h;
  s.host = url->host;
  s.port = url->port != 0 ? url->port : (url->scheme == "tidb" ? 4000 : 3306);
  s.user = url->user;
  s.database = url->path;
  if (s.user.empty()) {
    return make_error(h + ".url: \"" + c.sink.url +
                      "\" names no user; write mysql://user@host:port/database");
  }
  if (s.database.empty() || s.database.find('/') != std::string::npos) {
    return make_error(h + ".url: \"" + c.sink.url +
                      "\" names no database; write mysql://user@host:port/database");
  }
  if (!url->query.empty()) {
    return make_error(h + ".url: options after '?' (\"" + url->query +
                      "\") are not supported; remove them");
  }
  auto password = resolve_password(c.sink, url->password, header);
  if (!password) return password.error();
  s.password = std::move(password.value());
  if (std::string e = check_table_template(c.table); !e.empty()) {
    return make_error(h + ".table: " + e);
  }
  s.table = c.table;
  if (registry != nullptr) {
    // Every table the template can name, checked now rather than at the first report.
    const size_t tenants = c.table.find("{tenant}") == std::string::npos
                               ? 1
                               : std::max<size_t>(registry->tenant_count(), 1);
    for (size_t m = 0; m < registry->model_count(); ++m) {
      for (size_t t = 0; t < tenants; ++t) {
        const std::string_view tenant =
            t < registry->tenant_count()
                ? std::string_view(registry->tenant_name(static_cast<uint32_t>(t)))
                : std::string_view();
        const std::string name =
            expand_table(c.table, tenant, registry->model(static_cast<uint32_t>(m)).name());
        std::string problem = check_table_name(name);
        if (problem.empty() && name == kCursorTable) {
          problem = "gives \"";
          problem += name;
          problem += "\", the cursor table; choose another name";
        }
        if (!problem.empty()) return table_error(h, c.table, problem);
      }
    }
  }
  s.timeout = c.sink.timeout;
  s.max_statement_bytes = c.max_statement_bytes;
  s.max_transaction_bytes = c.max_transaction_bytes;
  s.max_attempts = c.sink.max_attempts;
  return s;
}

}  // namespace tianhe::sinks::mysql
