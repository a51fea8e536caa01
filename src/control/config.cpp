#include "control/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <numeric>
#include <sstream>

#include "control/config_fields.h"
#include "runtime/extensions.h"

namespace tianhe::control {
namespace {

using config::FieldInfo;
using config::SectionView;
using config_fields::Kind;
using config_fields::Parsed;
using config_fields::Section;

constexpr std::string_view kTopLevelKeys[] = {"gateway", "log",      "protocols", "http",
                                              "sinks",   "registry", "codecs",    "tracing",
                                              "models",  "devices"};

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

std::string join_path(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

std::string indexed(std::string_view path, size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

// The closest known key, when it is close enough to be a likely typo.
std::string suggest(std::string_view key,
                    std::initializer_list<std::span<const std::string_view>> candidate_lists) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (auto list : candidate_lists) {
    for (std::string_view c : list) {
      size_t d = config_fields::edit_distance(key, c);
      if (d < best_distance) {
        best_distance = d;
        best = c;
      }
    }
  }
  size_t limit = std::max<size_t>(1, std::min<size_t>(3, key.size() / 3));
  return best_distance <= limit ? best : std::string();
}

std::string describe(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "string " + in_quotes(n.as_string()->get());
    case toml::node_type::integer: return "integer " + std::to_string(n.as_integer()->get());
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return n.as_boolean()->get() ? "true" : "false";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date/time";
  }
}

std::string join_choices(std::span<const std::string_view> choices) {
  std::string out;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i) out += ", ";
    out += choices[i];
  }
  return out;
}

}  // namespace

namespace {

// The tables of the extensions compiled in: protocols, then sinks, in registration order; then
// the user codecs' budgets.
std::vector<const config::ConfigTable*> extension_tables(const runtime::Extensions& ext) {
  std::vector<const config::ConfigTable*> out;
  for (const auto& p : ext.protocols()) out.push_back(&p.config);
  for (const auto& s : ext.sinks()) out.push_back(&s.config);
  out.push_back(&config_fields::codecs_table());
  out.push_back(&config_fields::tracing_table());
  return out;
}

// Errors: "<origin>:<line>:<column>: <key path>: <problem and fix>".
class Parser {
 public:
  Parser(std::string_view origin, std::string_view data_dir_override)
      : origin_(origin), data_dir_override_(data_dir_override) {}

  // The table at a dotted header ("protocols.report" lives at root["protocols"]["report"]);
  // nullptr when absent.
  Result<const toml::table*> table_at_header(const toml::table& root,
                                             std::string_view header) const {
    const toml::table* t = &root;
    std::string_view rest = header;
    std::string walked;
    while (t != nullptr && !rest.empty()) {
      size_t dot = rest.find('.');
      std::string_view part = rest.substr(0, dot);
      walked = join_path(walked, part);
      auto sub = table_at(*t, part, walked);
      if (!sub.ok()) return sub.error();
      t = *sub;
      rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    }
    return t;
  }

  Error error(const toml::node* at, std::string_view path, std::string_view problem) const {
    std::string msg(origin_);
    if (at != nullptr && at->source().begin.line > 0) {
      msg += ":" + std::to_string(at->source().begin.line) + ":" +
             std::to_string(at->source().begin.column);
    }
    msg += ": ";
    msg += path;
    msg += ": ";
    msg += problem;
    return make_error(std::move(msg));
  }

  // Reads one value per its field's kind; "" on success, else the problem and the fix.
  static std::string read(const FieldInfo& f, const toml::node& n, Parsed& out) {
    switch (f.kind) {
      case Kind::kBool:
        if (!n.is_boolean()) return "expected a boolean (true or false); got " + describe(n);
        out.b = n.as_boolean()->get();
        return "";
      case Kind::kString:
        if (!n.is_string()) return "expected a string; got " + describe(n);
        out.s = n.as_string()->get();
        return "";
      case Kind::kIntOrAuto:
        if (n.is_string() && n.as_string()->get() == "auto") {
          out.i = 0;
          return "";
        }
        if (!n.is_integer()) {
          return "expected \"auto\" or an integer " + std::to_string(f.min) + ".." +
                 std::to_string(f.max) + "; got " + describe(n);
        }
        return range(f, n.as_integer()->get(), out);
      case Kind::kInt:
        if (!n.is_integer()) return "expected an integer; got " + describe(n);
        return range(f, n.as_integer()->get(), out);
      case Kind::kSize: {
        int64_t v = 0;
        if (n.is_integer()) {
          v = n.as_integer()->get();
        } else if (n.is_string()) {
          std::string e = config_fields::parse_size(n.as_string()->get(), v);
          if (!e.empty()) {
            return in_quotes(n.as_string()->get()) + " is not a size (" + e +
                   "); use a byte count or a number with a unit B, KiB, MiB, GiB, TiB, KB, MB, "
                   "GB, TB, e.g. \"64MiB\"";
          }
        } else {
          return "expected a size (an integer byte count or a string like \"64MiB\"); got " +
                 describe(n);
        }
        return range(f, v, out);
      }
      case Kind::kDuration: {
        int64_t v = 0;
        if (n.is_integer() && n.as_integer()->get() == 0) {
          v = 0;
        } else if (n.is_string()) {
          std::string e = config_fields::parse_duration(n.as_string()->get(), v);
          if (!e.empty()) {
            return in_quotes(n.as_string()->get()) + " is not a duration (" + e +
                   "); use a number with a unit ns, us, ms, s, m, h, d, e.g. \"500us\", \"2s\"";
          }
        } else {
          return "expected a duration string like \"500us\", \"1ms\", \"2s\"; got " + describe(n);
        }
        if (f.unit_ns > 1 && v % f.unit_ns != 0) {
          return in_quotes(n.as_string()->get()) + " is not a whole number of " +
                 config_fields::format_duration(f.unit_ns) + "; round it";
        }
        return range(f, v, out);
      }
      case Kind::kEndpoint: {
        if (!n.is_string()) {
          return "expected a string \"host:port\", e.g. \"127.0.0.1:7700\"; got " + describe(n);
        }
        auto ep = parse_endpoint(n.as_string()->get(), "");
        if (!ep.ok()) return ep.error().message.substr(2);  // drop the empty key's ": "
        out.ep = *ep;
        return "";
      }
      case Kind::kEnum: {
        std::string choices = join_choices(f.choices);
        if (!n.is_string()) return "expected one of " + choices + "; got " + describe(n);
        out.s = n.as_string()->get();
        if (std::find(f.choices.begin(), f.choices.end(), out.s) == f.choices.end()) {
          return in_quotes(out.s) + " is not " + std::string(f.what) + "; use one of " + choices;
        }
        return "";
      }
      case Kind::kEnumList: {
        const std::string choices = join_choices(f.choices);
        const toml::array* a = n.as_array();
        if (a == nullptr)
          return "expected an array of strings from " + choices + "; got " + describe(n);
        out.list.clear();
        for (const toml::node& e : *a) {
          if (!e.is_string()) return "expected strings from " + choices + "; got " + describe(e);
          std::string v = e.as_string()->get();
          if (std::find(f.choices.begin(), f.choices.end(), v) == f.choices.end()) {
            return in_quotes(v) + " is not " + std::string(f.what) + "; use any of " + choices;
          }
          if (std::find(out.list.begin(), out.list.end(), v) != out.list.end()) {
            return in_quotes(v) + " is listed twice; list each once";
          }
          out.list.push_back(std::move(v));
        }
        return "";
      }
      case Kind::kNumber:
        if (n.is_integer()) {
          out.d = static_cast<double>(n.as_integer()->get());
        } else if (n.is_floating_point()) {
          out.d = n.as_floating_point()->get();
          if (!std::isfinite(out.d)) return "must be a finite number";
        } else {
          return "expected a number; got " + describe(n);
        }
        return "";
    }
    return "unsupported field kind";
  }

  static std::string range(const FieldInfo& f, int64_t v, Parsed& out) {
    if (v < f.min || v > f.max) {
      auto fmt = [&](int64_t x) {
        if (f.kind == Kind::kSize) return config_fields::format_size(x);
        if (f.kind == Kind::kDuration) return config_fields::format_duration(x);
        return std::to_string(x);
      };
      std::string limits = f.max == INT64_MAX ? "at least " + fmt(f.min)
                                              : "between " + fmt(f.min) + " and " + fmt(f.max);
      return "must be " + limits + "; got " + fmt(v);
    }
    out.i = v;
    return "";
  }

  // Applies every field of `section` found in `table` to `target`; rejects unknown keys.
  // `extra_keys` are keys read by the caller (arrays of tables, protocols' metric options).
  Result<void> apply(const toml::table& table, std::string_view path, const SectionView& section,
                     void* target, bool instance_tables = false,
                     std::span<const std::string_view> extra_keys = {}) const {
    std::vector<std::string_view> keys;
    for (const FieldInfo& f : section.fields) keys.push_back(f.key);
    keys.insert(keys.end(), extra_keys.begin(), extra_keys.end());
    for (auto&& [k, v] : table) {
      std::string_view key = k.str();
      if (instance_tables && v.is_table()) continue;  // [<path>.<instance>]
      bool known = std::find(keys.begin(), keys.end(), key) != keys.end() ||
                   std::find(section.subtables.begin(), section.subtables.end(), key) !=
                       section.subtables.end();
      if (!known) return unknown_key(&v, path, key, {keys, section.subtables});
    }
    for (size_t i = 0; i < section.fields.size(); ++i) {
      const FieldInfo& f = section.fields[i];
      const toml::node* n = table.get(f.key);
      std::string key_path = join_path(path, f.key);
      if (n == nullptr) {
        if (f.required) {
          std::string example =
              f.kind == Kind::kEnum
                  ? in_quotes(f.choices[0]) + " (one of " + join_choices(f.choices) + ")"
                  : "<" + std::string(config_fields::kind_name(f.kind)) + ">";
          return error(&table, path,
                       "missing key " + std::string(f.key) + "; add " + std::string(f.key) + " = " +
                           example);
        }
        continue;
      }
      Parsed p;
      std::string problem = read(f, *n, p);
      if (problem.empty() && f.check != nullptr) problem = f.check(p);
      if (!problem.empty()) return error(n, key_path, problem);
      section.set(target, i, p);
    }
    return {};
  }

  Error unknown_key(const toml::node* at, std::string_view path, std::string_view key,
                    std::initializer_list<std::span<const std::string_view>> known) const {
    std::string s = suggest(key, known);
    std::string fix;
    if (!s.empty()) {
      fix = "; did you mean " + s + "?";
    } else {
      std::vector<std::string_view> all;
      for (auto list : known) all.insert(all.end(), list.begin(), list.end());
      fix = "; known keys: " + join_choices(all);
    }
    return error(at, join_path(path, key), "unknown key" + fix);
  }

  // The table at `path` (nullptr when absent) or an error when it is not a table.
  Result<const toml::table*> table_at(const toml::table& parent, std::string_view key,
                                      std::string_view path) const {
    const toml::node* n = parent.get(key);
    if (n == nullptr) return static_cast<const toml::table*>(nullptr);
    if (!n->is_table()) {
      return error(n, path, "expected a table ([" + std::string(path) + "]); got " + describe(*n));
    }
    return n->as_table();
  }

  // The tables of an array of tables ([[path]]), or an error.
  Result<std::vector<const toml::table*>> tables_at(const toml::table& parent, std::string_view key,
                                                    std::string_view path) const {
    std::vector<const toml::table*> out;
    const toml::node* n = parent.get(key);
    if (n == nullptr) return out;
    const toml::array* arr = n->as_array();
    if (arr == nullptr) {
      return error(n, path,
                   "expected an array of tables; write each entry as [[" + std::string(path) +
                       "]]; got " + describe(*n));
    }
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::node* e = arr->get(i);
      if (!e->is_table()) {
        return error(e, indexed(path, i),
                     "expected a table; write each entry as [[" + std::string(path) + "]]; got " +
                         describe(*e));
      }
      out.push_back(e->as_table());
    }
    return out;
  }

  // An extension's table `t` (at `path`) into `value`: its keys, then its arrays of tables.
  Result<void> apply_extension(const toml::table& t, std::string_view path,
                               const config::ConfigTable& table, std::any& value,
                               bool instance_tables) const {
    std::vector<std::string_view> array_keys;
    for (const config::ArrayTable& a : table.arrays) array_keys.push_back(a.key);
    if (auto r = apply(t, path, table.section, table.target(value), instance_tables, array_keys);
        !r.ok()) {
      return r;
    }
    for (const config::ArrayTable& a : table.arrays) {
      std::string apath = join_path(path, a.key);
      auto entries = tables_at(t, a.key, apath);
      if (!entries.ok()) return entries.error();
      if (entries->size() > a.max_entries) {
        return error(t.get(a.key), apath,
                     std::to_string(entries->size()) + " entries; at most " +
                         std::to_string(a.max_entries) + " are allowed");
      }
      for (size_t i = 0; i < entries->size(); ++i) {
        if (auto r = apply(*(*entries)[i], indexed(apath, i), a.section, a.append(value));
            !r.ok()) {
          return r;
        }
      }
    }
    return {};
  }

  Result<GatewayConfig> parse(const toml::table& root, const runtime::Extensions& ext) const;

 private:
  Result<void> parse_models(const toml::table& root, GatewayConfig& c,
                            const runtime::Extensions& ext) const;
  Result<void> check_codecs(const toml::table& root, GatewayConfig& c,
                            const runtime::Extensions& ext) const;
  Result<void> parse_devices(const toml::table& root, GatewayConfig& c) const;
  Result<void> cross_check(const toml::table& root, GatewayConfig& c) const;

  std::string_view origin_;
  std::string_view data_dir_override_;  ///< --data-dir: replaces gateway.data_dir
};

Result<GatewayConfig> Parser::parse(const toml::table& root, const runtime::Extensions& ext) const {
  GatewayConfig c;
  c.source = origin_;
  for (auto&& [k, v] : root) {
    std::string_view key = k.str();
    if (std::find(std::begin(kTopLevelKeys), std::end(kTopLevelKeys), key) ==
        std::end(kTopLevelKeys)) {
      return unknown_key(&v, "", key, {kTopLevelKeys});
    }
  }
  // Nested section containers hold only the tables of extensions compiled in.
  std::vector<std::string_view> protocol_keys, sink_keys;
  for (const auto& p : ext.protocols()) protocol_keys.push_back(p.name);
  for (const auto& s : ext.sinks()) sink_keys.push_back(s.name);
  for (auto [key, subkeys] :
       {std::pair{std::string_view("protocols"), std::span<const std::string_view>(protocol_keys)},
        std::pair{std::string_view("sinks"), std::span<const std::string_view>(sink_keys)}}) {
    auto t = table_at(root, key, key);
    if (!t.ok()) return t.error();
    if (*t == nullptr) continue;
    for (auto&& [k, v] : **t) {
      if (std::find(subkeys.begin(), subkeys.end(), k.str()) == subkeys.end()) {
        return unknown_key(&v, key, k.str(), {subkeys});
      }
    }
  }
  for (const Section<GatewayConfig>& s : config_fields::gateway_sections()) {
    auto t = table_at_header(root, s.header);
    if (!t.ok()) return t.error();
    if (*t == nullptr) continue;
    if (auto r = apply(**t, s.header, config::view(s), &c); !r.ok()) return r.error();
  }
  if (!data_dir_override_.empty()) c.data_dir = std::string(data_dir_override_);
  // Each extension's table (its defaults when absent), then what derives from data_dir.
  for (const config::ConfigTable* table : extension_tables(ext)) {
    const SectionView& s = table->section;
    std::any value = table->make_default();
    auto t = table_at_header(root, s.header);
    if (!t.ok()) return t.error();
    if (*t != nullptr) {
      if (auto r = apply_extension(**t, s.header, *table, value, table->instances); !r.ok()) {
        return r.error();
      }
    }
    if (table->finish) {
      if (std::string problem = table->finish(value, c.data_dir); !problem.empty()) {
        return error(*t, s.header, problem);
      }
    }
    c.extensions.emplace(std::string(s.header), std::move(value));
    if (!table->instances || *t == nullptr) continue;
    // Named instances: [<header>.<name>], each a whole table of the same keys.
    for (auto&& [k, v] : **t) {
      if (!v.is_table()) continue;
      const std::string name(k.str());
      const std::string header = std::string(s.header) + "." + name;
      const bool valid = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
      });
      if (!valid) {
        return error(
            &v, header,
            "an instance name is lower-case letters, digits and '_'; rename [" + header + "]");
      }
      std::any inst = table->make_default();
      if (auto r = apply_extension(*v.as_table(), header, *table, inst, false); !r.ok()) {
        return r.error();
      }
      if (table->finish) {
        if (std::string problem = table->finish(inst, c.data_dir); !problem.empty()) {
          return error(v.as_table(), header, problem);
        }
      }
      c.extensions.emplace(header, std::move(inst));
    }
  }
  if (auto r = parse_models(root, c, ext); !r.ok()) return r.error();
  if (auto r = check_codecs(root, c, ext); !r.ok()) return r.error();
  if (auto r = parse_devices(root, c); !r.ok()) return r.error();
  if (auto r = cross_check(root, c); !r.ok()) return r.error();
  return c;
}

// A model's codec must be one compiled in, or a file a codec compiled in loads (a path ending
// in its extension, relative to the config file's directory, made absolute here so the gateway
// finds it whatever its working directory); the error lists the codecs there are.
Result<void> Parser::check_codecs(const toml::table& root, GatewayConfig& c,
                                  const runtime::Extensions& ext) const {
  auto models = tables_at(root, "models", "models");
  if (!models.ok()) return models.error();
  for (size_t i = 0; i < c.models.size(); ++i) {
    std::string& name = c.models[i].codec;
    if (name.empty()) continue;
    if (const runtime::CodecSpec* named = ext.codec(name); named != nullptr && named->create) {
      continue;
    }
    if (const runtime::CodecSpec* file = runtime::codec_for_file(ext.codecs(), name);
        file != nullptr) {
      std::filesystem::path path(name);
      if (path.is_relative()) {
        std::error_code ec;
        const std::filesystem::path origin(origin_);
        const bool from_file = std::filesystem::is_regular_file(origin, ec);
        path = std::filesystem::absolute(
            (from_file ? origin.parent_path() : std::filesystem::path()) / path, ec);
      }
      std::error_code ec;
      if (!std::filesystem::is_regular_file(path, ec)) {
        return error((*models)[i]->get("codec"), indexed("models", i) + ".codec",
                     "no codec file " + in_quotes(path.string()) +
                         " (a relative path starts at the config file's directory); check the "
                         "path, or name a built-in codec");
      }
      name = path.lexically_normal().string();
      continue;
    }
    std::string known;
    std::string files;
    for (const auto& k : ext.codecs()) {
      if (k.create) known += (known.empty() ? "" : ", ") + std::string(k.name);
      if (!k.file_extension.empty()) files += " or a " + std::string(k.file_extension) + " file";
    }
    known += files;
    return error((*models)[i]->get("codec"), indexed("models", i) + ".codec",
                 "no codec called " + in_quotes(name) + "; use one of: " +
                     (known.empty() ? std::string("(none compiled in)") : known));
  }
  return {};
}

Result<void> Parser::parse_models(const toml::table& root, GatewayConfig& c,
                                  const runtime::Extensions& ext) const {
  auto models = tables_at(root, "models", "models");
  if (!models.ok()) return models.error();
  // Protocols' keys in [[models.metrics]] (`modbus = { ... }`).
  std::vector<std::string_view> option_keys;
  for (const auto& p : ext.protocols()) {
    if (p.metric_options) option_keys.push_back(p.name);
  }
  std::map<std::string, size_t, std::less<>> seen;
  for (size_t i = 0; i < models->size(); ++i) {
    const toml::table& mt = *(*models)[i];
    std::string path = indexed("models", i);
    ModelSpec m;
    if (auto r = apply(mt, path, config::view(config_fields::model_section()), &m); !r.ok()) {
      return r;
    }
    if (auto [it, fresh] = seen.emplace(m.name, i); !fresh) {
      return error(mt.get("name"), path + ".name",
                   in_quotes(m.name) + " is already the name of models[" +
                       std::to_string(it->second) + "]; model names must be unique");
    }
    auto metrics = tables_at(mt, "metrics", path + ".metrics");
    if (!metrics.ok()) return metrics.error();
    if (metrics->size() > config_fields::kMaxModelMetrics) {
      return error(mt.get("metrics"), path + ".metrics",
                   std::to_string(metrics->size()) + " metrics; a model has at most " +
                       std::to_string(config_fields::kMaxModelMetrics) +
                       " (split it into several models)");
    }
    std::map<std::string, size_t, std::less<>> names;
    for (size_t j = 0; j < metrics->size(); ++j) {
      const toml::table& xt = *(*metrics)[j];
      std::string mpath = indexed(path + ".metrics", j);
      MetricSpec x;
      if (auto r = apply(xt, mpath, config::view(config_fields::metric_section()), &x, false,
                         option_keys);
          !r.ok()) {
        return r;
      }
      for (const auto& p : ext.protocols()) {
        const toml::node* n = p.metric_options ? xt.get(p.name) : nullptr;
        if (n == nullptr) continue;
        std::string opath = join_path(mpath, p.name);
        if (!n->is_table()) {
          return error(n, opath,
                       "expected an inline table, e.g. " + std::string(p.name) +
                           " = { ... }; got " + describe(*n));
        }
        const config::ConfigTable& opts = *p.metric_options;
        std::any value = opts.make_default();
        if (auto r = apply(*n->as_table(), opath, opts.section, opts.target(value)); !r.ok()) {
          return r;
        }
        if (opts.finish) {
          if (std::string problem = opts.finish(value, c.data_dir); !problem.empty()) {
            return error(n, opath, problem);
          }
        }
        x.options.emplace_back(std::string(p.name), std::move(value));
      }
      if (auto [it, fresh] = names.emplace(x.name, j); !fresh) {
        return error(xt.get("name"), mpath + ".name",
                     in_quotes(x.name) + " is already the name of " + path + ".metrics[" +
                         std::to_string(it->second) + "]; metric names must be unique in a model");
      }
      bool numeric = x.type == core::ValueType::kDouble || x.type == core::ValueType::kInt64;
      for (const char* bound : {"min", "max"}) {
        if (!numeric && xt.get(bound) != nullptr) {
          return error(xt.get(bound), mpath + "." + bound,
                       "a " + std::string(core::value_type_name(x.type)) +
                           " metric has no range; remove " + bound +
                           " (only double and int64 metrics have min and max)");
        }
      }
      if (x.min && x.max && *x.min > *x.max) {
        std::ostringstream os;
        os << "min " << *x.min << " is greater than max " << *x.max << "; swap or fix them";
        return error(xt.get("max"), mpath + ".max", os.str());
      }
      m.metrics.push_back(std::move(x));
    }
    c.models.push_back(std::move(m));
  }
  return {};
}

Result<void> Parser::parse_devices(const toml::table& root, GatewayConfig& c) const {
  auto devices = tables_at(root, "devices", "devices");
  if (!devices.ok()) return devices.error();
  uint64_t total = 0;
  for (size_t i = 0; i < devices->size(); ++i) {
    const toml::table& dt = *(*devices)[i];
    std::string path = indexed("devices", i);
    DeviceRange d;
    if (auto r = apply(dt, path, config::view(config_fields::device_section()), &d); !r.ok()) {
      return r;
    }
    auto model = std::find_if(c.models.begin(), c.models.end(),
                              [&](const ModelSpec& m) { return m.name == d.model; });
    if (model == c.models.end()) {
      std::string fix = "define it with [[models]] name = " + in_quotes(d.model);
      for (const ModelSpec& m : c.models) {
        if (config_fields::edit_distance(m.name, d.model) <= 2) {
          fix = "did you mean " + in_quotes(m.name) + "?";
          break;
        }
      }
      return error(dt.get("model"), path + ".model",
                   in_quotes(d.model) + " is not a model; " + fix);
    }
    total += d.count;
    if (total > config_fields::kMaxDevices) {
      return error(&dt, path + ".count",
                   "brings the device total to " + std::to_string(total) + "; at most " +
                       std::to_string(config_fields::kMaxDevices) +
                       " devices can be declared (use unknown_devices = \"auto_register\" for "
                       "larger fleets)");
    }
    c.devices.push_back(std::move(d));
  }
  // Ranges must be disjoint: sort by first id, then neighbours must not touch.
  std::vector<size_t> order(c.devices.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return c.devices[a].first_id < c.devices[b].first_id; });
  auto last_id = [&](size_t i) { return c.devices[i].first_id + c.devices[i].count - 1; };
  auto ids = [&](size_t i) {
    return "ids " + std::to_string(c.devices[i].first_id) + ".." + std::to_string(last_id(i));
  };
  for (size_t k = 1; k < order.size(); ++k) {
    size_t prev = order[k - 1];
    size_t cur = order[k];
    if (c.devices[cur].first_id <= last_id(prev)) {
      size_t a = std::min(prev, cur);
      size_t b = std::max(prev, cur);
      return error((*devices)[b], indexed("devices", b),
                   ids(b) + " overlap " + indexed("devices", a) + " (" + ids(a) +
                       "); make the ranges disjoint");
    }
  }
  return {};
}

Result<void> Parser::cross_check(const toml::table& root, GatewayConfig& c) const {
  // Relative paths stay relative: they resolve against the working directory at start.
  if (c.log.dir.empty()) c.log.dir = (std::filesystem::path(c.data_dir) / "log").string();
  const toml::node* reg = root.get("registry");
  const RegistryConfig& r = c.registry;
  if (r.unknown_devices == UnknownDevicePolicy::kAutoRegister && r.default_model.empty()) {
    return error(reg, "registry.default_model",
                 "missing; unknown_devices = \"auto_register\" needs the model new devices get, "
                 "e.g. default_model = \"env_sensor\"");
  }
  if (!r.default_model.empty() &&
      std::none_of(c.models.begin(), c.models.end(),
                   [&](const ModelSpec& m) { return m.name == r.default_model; })) {
    const toml::node* at = reg != nullptr ? reg->as_table()->get("default_model") : nullptr;
    return error(at, "registry.default_model",
                 in_quotes(r.default_model) + " is not a model; define it with [[models]] name = " +
                     in_quotes(r.default_model));
  }
  return {};
}

}  // namespace

Result<GatewayConfig> parse_config(std::string_view toml_text, std::string_view origin) {
  return parse_config(toml_text, origin, runtime::builtin_extensions());
}

Result<GatewayConfig> parse_config(std::string_view toml_text, std::string_view origin,
                                   const runtime::Extensions& extensions,
                                   std::string_view data_dir_override) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    // Only this thin wrapper touches exceptions: the TOML library reports syntax errors so.
    return make_error(std::string(origin) + ":" + std::to_string(e.source().begin.line) + ":" +
                      std::to_string(e.source().begin.column) +
                      ": TOML syntax error: " + std::string(e.description()));
  }
  return Parser(origin, data_dir_override).parse(root, extensions);
}

Result<GatewayConfig> load_config(const std::string& path, std::string_view data_dir_override) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(path + ": cannot open (" + errno_text(errno) +
                      "); pass the path of a TOML config file, e.g. examples/tianhe.toml");
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(path + ": cannot read (" + errno_text(errno) + ")");
  return parse_config(text.str(), path, runtime::builtin_extensions(), data_dir_override);
}

namespace {

std::string escape_cell(std::string_view s) {
  std::string out;
  for (char ch : s) {
    if (ch == '|') out += '\\';
    out += ch;
  }
  return out;
}

std::string type_cell(const FieldInfo& f) {
  std::string t(config_fields::kind_name(f.kind));
  auto fmt = [&](int64_t x) {
    if (f.kind == Kind::kSize) return config_fields::format_size(x);
    if (f.kind == Kind::kDuration) return config_fields::format_duration(x);
    return std::to_string(x);
  };
  switch (f.kind) {
    case Kind::kInt:
    case Kind::kIntOrAuto:
    case Kind::kSize:
    case Kind::kDuration:
      if (f.max == INT64_MAX) {
        t += " >= " + fmt(f.min);
      } else {
        t += " " + fmt(f.min) + " .. " + fmt(f.max);
      }
      break;
    case Kind::kEnum:
      t = "one of ";
      for (size_t i = 0; i < f.choices.size(); ++i) {
        t += (i ? ", `\"" : "`\"") + std::string(f.choices[i]) + "\"`";
      }
      break;
    default: break;
  }
  return t;
}

void render(std::string& out, const SectionView& s, std::string_view heading) {
  out += "## `" + std::string(heading) + "`\n\n" + std::string(s.doc) + "\n\n";
  out += "| Key | Type | Default | Description |\n|---|---|---|---|\n";
  for (const FieldInfo& f : s.fields) {
    out += "| `" + std::string(f.key) + "` | " + escape_cell(type_cell(f)) + " | " +
           (f.required ? std::string("required") : "`" + escape_cell(f.default_text) + "`") +
           " | " + escape_cell(f.doc) + " |\n";
  }
  out += "\n";
}

}  // namespace

std::string config_reference_markdown() {
  const runtime::Extensions& ext = runtime::builtin_extensions();
  std::string out;
  // Document order: the gateway's tables, the protocols' after [log], the sinks' after [http].
  for (const Section<GatewayConfig>& s : config_fields::gateway_sections()) {
    render(out, config::view(s), "[" + std::string(s.header) + "]");
    if (s.header == "log") {
      for (const auto& p : ext.protocols()) {
        render(out, p.config.section, "[" + std::string(p.config.section.header) + "]");
        for (const config::ArrayTable& a : p.config.arrays) {
          render(out, a.section, "[[" + std::string(a.section.header) + "]]");
        }
      }
    }
    if (s.header == "http") {
      for (const auto& k : ext.sinks()) {
        render(out, k.config.section, "[" + std::string(k.config.section.header) + "]");
        for (const config::ArrayTable& a : k.config.arrays) {
          render(out, a.section, "[[" + std::string(a.section.header) + "]]");
        }
      }
    }
  }
  render(out, config_fields::codecs_table().section, "[codecs]");
  render(out, config_fields::tracing_table().section, "[tracing]");
  render(out, config::view(config_fields::model_section()), "[[models]]");
  render(out, config::view(config_fields::metric_section()), "[[models.metrics]]");
  for (const auto& p : ext.protocols()) {
    if (!p.metric_options) continue;
    render(out, p.metric_options->section,
           "[[models.metrics]] " + std::string(p.name) + " = { ... }");
  }
  render(out, config::view(config_fields::device_section()), "[[devices]]");
  out +=
      "Sizes are an integer byte count or a string with a unit: `B`, `KiB`, `MiB`, `GiB`, "
      "`TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000), e.g. `\"64MiB\"`.\n"
      "Durations are a string with a unit: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, e.g. "
      "`\"500us\"`, `\"2s\"`, `\"30d\"`; `\"0\"` is zero.\n";
  return out;
}

}  // namespace tianhe::control
