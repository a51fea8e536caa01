#include "sinks/postgres/postgres_config.h"

#include <libpq-fe.h>

#include <algorithm>
#include <set>

#include "sinks/postgres/postgres_sql.h"

namespace tianhe::sinks::postgres {
namespace {

using config::Field;
using config::Kind;
using P = config::Parsed;

std::string check_schema(const P& p) {
  if (p.s.empty()) return "must not be empty; use \"public\" or the name of your schema";
  if (p.s.size() > kMaxIdentifierBytes) {
    return "is longer than 63 bytes (PostgreSQL would cut it); use a shorter name";
  }
  return "";
}

std::string check_table(const P& p) {
  return check_table_template(p.s);
}

constexpr Field<PostgresConfig> kFields[] = {
    {.key = "schema",
     .kind = Kind::kString,
     .default_text = "\"public\"",
     .doc = "The schema of the tables and of tianhe_cursors (it must exist).",
     .set = [](PostgresConfig& c, const P& p) { c.schema = p.s; },
     .check = check_schema},
    {.key = "table",
     .kind = Kind::kString,
     .default_text = "\"{model}\"",
     .doc = "The table of a report: a template of {model} and {tenant}; one table per model by "
            "default, created and migrated by the sink.",
     .set = [](PostgresConfig& c, const P& p) { c.table = p.s; },
     .check = check_table},
};

constexpr SinkTableSpec kSpec = {
    .header = "sinks.postgres",
    .doc =
        "Every report as a row of its model's PostgreSQL table (COPY, exactly once per "
        "reading; see docs/sinks/postgres.md).",
    .url_default = "\"postgresql://tianhe@127.0.0.1:5432/tianhe\"",
    .url_doc =
        "The server: postgresql://user@host:port/database[?libpq options such as "
        "sslmode=require] (postgres:// too)."};

constexpr std::string_view kSchemes[] = {"postgresql", "postgres"};

// The URL's own parts: an option in the query may not set them a second time.
constexpr std::string_view kUrlKeywords[] = {"host", "hostaddr", "port",    "dbname",
                                             "user", "password", "passfile"};

// The keywords this libpq knows (PQconndefaults reads no server).
std::set<std::string> libpq_keywords() {
  std::set<std::string> out;
  PQconninfoOption* opts = PQconndefaults();
  if (opts == nullptr) return out;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) out.insert(o->keyword);
  PQconninfoFree(opts);
  return out;
}

}  // namespace

const config::ConfigTable& config_table() {
  static const config::ConfigTable t = sink_table<PostgresConfig>(kSpec, kFields);
  return t;
}

std::string check_table_template(std::string_view tmpl) {
  if (tmpl.empty()) return "must not be empty; use \"{model}\" (one table per device model)";
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '}') return "has a '}' outside {model} or {tenant}; use only those placeholders";
    if (tmpl[i] != '{') continue;
    const std::string_view rest = tmpl.substr(i);
    if (rest.starts_with("{model}")) {
      i += 6;
    } else if (rest.starts_with("{tenant}")) {
      i += 7;
    } else {
      return "has an unknown placeholder at \"" + std::string(rest.substr(0, 12)) +
             "\"; the placeholders are {model} and {tenant}";
    }
  }
  return "";
}

std::string table_name(std::string_view tmpl, std::string_view tenant, std::string_view model) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const std::string_view rest = tmpl.substr(i);
    if (rest.starts_with("{model}")) {
      out += model;
      i += 6;
    } else if (rest.starts_with("{tenant}")) {
      out += tenant;
      i += 7;
    } else {
      out += tmpl[i];
    }
  }
  return out;
}

Result<ConnectSpec> connect_spec(const PostgresConfig& c, std::string_view header) {
  const std::string key = std::string(header) + ".url";
  auto url = parse_url(c.sink.url, kSchemes, key);
  if (!url) return url.error();
  if (url->user.empty()) {
    return make_error(key + ": no user; write postgresql://user@host:5432/database");
  }
  if (url->path.empty() || url->path.find('/') != std::string::npos) {
    return make_error(key +
                      ": no database (or a path with '/'); write "
                      "postgresql://user@host:5432/database");
  }
  auto password = resolve_password(c.sink, url->password, header);
  if (!password) return password.error();
  ConnectSpec spec;
  const uint16_t port = url->port == 0 ? 5432 : url->port;
  spec.params = {{"host", url->host},
                 {"port", std::to_string(port)},
                 {"dbname", url->path},
                 {"user", url->user},
                 {"application_name", "tianhe"},
                 // libpq's own wait is a fallback: the writer keeps its own deadline.
                 {"connect_timeout",
                  std::to_string(std::max<int64_t>(2, (c.sink.timeout.count() + 999) / 1000))}};
  if (!password->empty()) spec.params.emplace_back("password", *password);
  spec.where = url->user + "@" + url->host + ":" + std::to_string(port) + "/" + url->path;
  if (!url->query.empty()) {
    const std::set<std::string> known = libpq_keywords();
    std::string_view q = url->query;
    while (!q.empty()) {
      const size_t amp = q.find('&');
      const std::string_view item = q.substr(0, amp);
      q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
      if (item.empty()) continue;
      const size_t eq = item.find('=');
      std::string name, value;
      if (eq == std::string_view::npos || !percent_decode(item.substr(0, eq), name) ||
          !percent_decode(item.substr(eq + 1), value)) {
        return make_error(key + ": option \"" + std::string(item) +
                          "\" is not name=value; write e.g. ?sslmode=require");
      }
      if (std::find(std::begin(kUrlKeywords), std::end(kUrlKeywords), name) !=
          std::end(kUrlKeywords)) {
        std::string m = key + ": option \"";
        m += name;
        m += "\" is part of the URL itself (or, for a password, password_env/password_file); "
             "remove it from the query";
        return make_error(std::move(m));
      }
      if (known.count(name) == 0) {
        std::string m = key + ": \"";
        m += name;
        m += "\" is not a libpq connection option; see the PostgreSQL manual, libpq, "
             "\"Parameter Key Words\"";
        return make_error(std::move(m));
      }
      auto it = std::find_if(spec.params.begin(), spec.params.end(),
                             [&](const auto& kv) { return kv.first == name; });
      if (it != spec.params.end()) {
        it->second = value;
      } else {
        spec.params.emplace_back(name, value);
      }
    }
  }
  return spec;
}

std::string check_layout(const PostgresConfig& c, const pipeline::Registry& registry,
                         std::string_view header) {
  const bool per_tenant = c.table.find("{tenant}") != std::string::npos;
  for (size_t m = 0; m < registry.model_count(); ++m) {
    const pipeline::Model& model = registry.model(static_cast<uint32_t>(m));
    const size_t tenants = per_tenant ? registry.tenant_count() : 1;
    for (size_t t = 0; t < tenants; ++t) {
      const std::string tenant =
          per_tenant ? registry.tenant_name(static_cast<uint32_t>(t)) : std::string();
      const std::string name = table_name(c.table, tenant, model.name());
      if (name.size() > kMaxIdentifierBytes) {
        return std::string(header) + ".table: \"" + name + "\" (model " + model.name() +
               ") is longer than 63 bytes, which PostgreSQL would cut; use a shorter template";
      }
    }
    for (const pipeline::ModelMetric& metric : model.metrics()) {
      const bool fixed = std::find(std::begin(kFixedColumns), std::end(kFixedColumns),
                                   metric.name) != std::end(kFixedColumns) ||
                         (model.allow_unknown_metrics() && metric.name == kExtraColumn);
      if (fixed) {
        return std::string(header) + ": model " + model.name() + " has a metric \"" + metric.name +
               "\", which is one of the table's own columns; rename the metric";
      }
      if (metric.name.size() > kMaxIdentifierBytes) {
        return std::string(header) + ": model " + model.name() + " metric \"" + metric.name +
               "\" is longer than 63 bytes, too long for a PostgreSQL column; shorten it";
      }
    }
  }
  return "";
}

}  // namespace tianhe::sinks::postgres
