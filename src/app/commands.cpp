#include "app/commands.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "app/gateway.h"
#include "control/config.h"
#include "control/config_fields.h"
#include "core/args.h"
#include "core/clock.h"
#include "core/http_get.h"
#include "pipeline/registry.h"
#include "runtime/extensions.h"

namespace tianhe::app {

using core::Args;
using core::usage_error;
using core::wants_help;
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

/// Loads --config (or ./tianhe.toml when present, else the built-in defaults) and applies
/// --data-dir, re-deriving the log and store directories that default to live under it.
/// The configuration at `path` (else ./tianhe.toml when present, else the built-in defaults),
/// with `data_dir` (when not empty) replacing gateway.data_dir.
Result<control::GatewayConfig> load_or_defaults(const std::string& path,
                                                const std::string& data_dir) {
  if (path.empty() && !std::filesystem::exists("tianhe.toml")) {
    return control::parse_config("", "<defaults>", runtime::builtin_extensions(), data_dir);
  }
  return control::load_config(path.empty() ? "tianhe.toml" : path, data_dir);
}

/// Loads --config and applies --data-dir (the directories that default to live under it follow).
Result<control::GatewayConfig> load(const Args& args) {
  return load_or_defaults(args.str("config"),
                          args.has("data-dir") ? args.str("data-dir") : std::string());
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(R"(tianhe serve — run the gateway

Options:
  --config FILE     configuration (default: ./tianhe.toml if present, else built-in defaults)
  --data-dir DIR    override gateway.data_dir (log and store live under it)
  --PROTOCOL-port N override a protocol's listen port, e.g. --report-port (0 picks a free one)
  --http-port N     override the HTTP port (0 picks a free one)
  --ready-file F    write "<first protocol's port> <http port> <name>=<port>..." to F once
                    serving, one <name>=<port> per running protocol (scripts, tests)

Stops cleanly on SIGINT/SIGTERM: pending durable acks are sent and the log is synced.

Example:
  tianhe serve --config examples/tianhe.toml)");
    return 0;
  }
  const runtime::Extensions& ext = runtime::builtin_extensions();
  std::set<std::string> keys = {"config", "data-dir", "http-port", "ready-file"};
  for (const auto& p : ext.protocols()) {
    if (p.set_port) keys.insert(std::string(p.name) + "-port");
  }
  auto args = Args::parse(argc, argv, 2, {}, keys);
  if (!args.ok()) return usage_error("serve", args.error().message);
  auto cfg = load(*args);
  if (!cfg.ok()) return usage_error("serve", cfg.error().message);
  for (const auto& p : ext.protocols()) {
    const std::string flag = std::string(p.name) + "-port";
    if (!p.set_port || !args->has(flag)) continue;
    auto port = args->u64(flag, 0, 0, 65535);
    if (!port.ok()) return usage_error("serve", port.error().message + " (0 picks a free port)");
    p.set_port(cfg->extensions.at("protocols." + std::string(p.name)),
               static_cast<uint16_t>(*port));
  }
  if (args->has("http-port")) {
    auto p = args->u64("http-port", 0, 0, 65535);
    if (!p.ok()) return usage_error("serve", p.error().message + " (0 picks a free port)");
    cfg->http.listen.port = static_cast<uint16_t>(*p);
  }
  if (args->has("ready-file") && args->str("ready-file").empty()) {
    return usage_error("serve", "--ready-file: give a file name");
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  // Opening recovers the logs and may finish a store merge a crash interrupted: say so first.
  std::printf("tianhe serve: opening %s\n", cfg->data_dir.c_str());
  std::fflush(stdout);
  const auto opening = std::chrono::steady_clock::now();
  auto gw = Gateway::start(*cfg);
  if (!gw.ok()) {
    std::fprintf(stderr, "tianhe serve: %s\n", gw.error().message.c_str());
    return 1;
  }
  Gateway& g = **gw;
  std::printf(
      "tianhe serving: %u shards, %zu devices registered, durability %s\n%s"
      "  http     http://%s:%u  (/metrics, /api/v1/devices/{id}/reports, /api/v1/stats)\n"
      "  data     %s (recovery: %s; opened in %.1f s)\n",
      g.shard_count(), g.registry().device_count(),
      std::string(log::durability_name(cfg->log.durability)).c_str(), g.protocols_banner().c_str(),
      cfg->http.listen.host.c_str(), g.http_port(), cfg->data_dir.c_str(),
      g.recovery_summary().c_str(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - opening).count());
  std::fflush(stdout);
  if (args->has("ready-file")) {
    const std::string f = args->str("ready-file"), tmp = f + ".tmp";
    FILE* out = std::fopen(tmp.c_str(), "w");
    std::string line = std::to_string(g.first_port()) + " " + std::to_string(g.http_port());
    for (const auto& p : ext.protocols()) {
      if (const uint16_t port = g.port(p.name); port != 0) {
        line += " " + std::string(p.name) + "=" + std::to_string(port);
      }
    }
    line += "\n";
    bool written = out != nullptr && std::fputs(line.c_str(), out) >= 0;
    written = (out != nullptr && std::fclose(out) == 0) && written;
    if (!written || std::rename(tmp.c_str(), f.c_str()) != 0) {
      // Whoever waits for the file would wait forever: stop instead.
      std::fprintf(stderr, "tianhe serve: --ready-file: cannot write %s: %s\n", f.c_str(),
                   errno_text(errno).c_str());
      g.stop();
      return 1;
    }
  }
  while (!g_stop.load()) pause();
  std::printf("tianhe: stopping\n");
  g.stop();
  return 0;
}

int cmd_simulate(int argc, char** argv) {
  // `--protocol NAME` picks the protocol's fleet (the first registered one with a simulator when
  // absent); the rest of the command line is that simulator's.
  const runtime::Extensions& ext = runtime::builtin_extensions();
  std::string name;
  std::vector<char*> rest(argv, argv + argc);
  for (size_t i = 2; i < rest.size(); ++i) {
    const std::string_view a = rest[i];
    if (a == "--protocol" && i + 1 < rest.size()) {
      name = rest[i + 1];
      rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(i),
                 rest.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      break;
    }
    if (a.starts_with("--protocol=")) {
      name = std::string(a.substr(11));
      rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  // A protocol is found with or without the underscores of its name ("ab" finds "a_b").
  const auto same = [](std::string_view a, std::string_view b) {
    std::string x, y;
    for (const char c : a) {
      if (c != '_') x += c;
    }
    for (const char c : b) {
      if (c != '_') y += c;
    }
    return x == y;
  };
  std::string known;
  const runtime::ProtocolSpec* chosen = nullptr;
  std::string_view first;  // the default: the first protocol with a simulator
  for (const auto& p : ext.protocols()) {
    if (!p.simulate) continue;
    if (first.empty()) first = p.name;
    known += (known.empty() ? "" : ", ") + std::string(p.name);
    if (chosen == nullptr && (name.empty() || same(p.name, name))) chosen = &p;
  }
  if (chosen == nullptr) {
    return usage_error("simulate", name.empty() ? "no protocol with a simulator is compiled in"
                                                : "--protocol: \"" + name +
                                                      "\" has no simulator; use one of: " + known);
  }
  if (wants_help(static_cast<int>(rest.size()), rest.data())) {
    std::printf(
        "tianhe simulate [--protocol NAME] ...: a device fleet speaking a protocol "
        "(protocols with a simulator: %s; default %s)\n\n",
        known.c_str(), std::string(first).c_str());
  }
  return chosen->simulate(static_cast<int>(rest.size()), rest.data());
}

int cmd_extension(const runtime::CommandSpec& command, int argc, char** argv) {
  runtime::CommandContext context;
  context.load_table = [](const std::string& config_path, const std::string& data_dir,
                          std::string_view header) -> Result<std::any> {
    auto cfg = load_or_defaults(config_path, data_dir);
    if (!cfg.ok()) return cfg.error();
    auto it = cfg->extensions.find(header);
    if (it == cfg->extensions.end()) {
      return make_error("[" + std::string(header) + "] is not compiled into this build");
    }
    return it->second;
  };
  return command.run(argc, argv, context);
}

int cmd_check_config(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(R"(tianhe check-config — validate a config without starting anything

Options:
  --config FILE   the file to check (default ./tianhe.toml)
  --reference     print the configuration reference (every key, type, default) as Markdown

Exit status 0 when valid; 2 with the key path and the fix when not.)");
    return 0;
  }
  auto args = Args::parse(argc, argv, 2, {"reference"}, {"config"});
  if (!args.ok()) return usage_error("check-config", args.error().message);
  if (args->has("reference")) {
    std::fputs(control::config_reference_markdown().c_str(), stdout);
    return 0;
  }
  const std::string path = args->str("config", "tianhe.toml");
  auto cfg = control::load_config(path);
  if (!cfg.ok()) return usage_error("check-config", cfg.error().message);
  auto reg = pipeline::Registry::build(cfg->registry, cfg->models, cfg->devices);
  if (!reg.ok()) return usage_error("check-config", reg.error().message);
  std::printf("%s: ok (%zu models, %zu devices, %s shards, durability %s)\n", path.c_str(),
              (*reg)->model_count(), (*reg)->device_count(),
              cfg->shards == 0 ? "auto" : std::to_string(cfg->shards).c_str(),
              std::string(log::durability_name(cfg->log.durability)).c_str());
  return 0;
}

int cmd_devices(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(R"(tianhe devices — the models and devices a config registers

Options:
  --config FILE   (default ./tianhe.toml, else built-in defaults)
  --json          machine-readable output)");
    return 0;
  }
  auto args = Args::parse(argc, argv, 2, {"json"}, {"config"});
  if (!args.ok()) return usage_error("devices", args.error().message);
  auto cfg = load(*args);
  if (!cfg.ok()) return usage_error("devices", cfg.error().message);
  nlohmann::json models = nlohmann::json::array();
  for (const auto& m : cfg->models) {
    nlohmann::json metrics = nlohmann::json::array();
    for (const auto& mm : m.metrics) {
      nlohmann::json x{{"name", mm.name},
                       {"type", std::string(core::value_type_name(mm.type))},
                       {"unit", mm.unit},
                       {"required", mm.required}};
      if (mm.min) x["min"] = *mm.min;
      if (mm.max) x["max"] = *mm.max;
      metrics.push_back(x);
    }
    models.push_back({{"name", m.name}, {"metrics", metrics}});
  }
  nlohmann::json devices = nlohmann::json::array();
  uint64_t total = 0;
  for (const auto& d : cfg->devices) {
    devices.push_back(
        {{"first_id", d.first_id}, {"count", d.count}, {"tenant", d.tenant}, {"model", d.model}});
    total += d.count;
  }
  if (args->has("json")) {
    std::printf(
        "%s\n",
        nlohmann::json{{"models", models}, {"devices", devices}, {"total", total}}.dump(2).c_str());
    return 0;
  }
  for (const auto& m : models) {
    std::printf("model %s\n", m["name"].get<std::string>().c_str());
    for (const auto& mm : m["metrics"]) std::printf("  %s\n", mm.dump().c_str());
  }
  std::printf("%-20s %-12s %-16s %s\n", "FIRST ID", "COUNT", "TENANT", "MODEL");
  for (const auto& d : cfg->devices) {
    std::printf("%-20llu %-12llu %-16s %s\n", static_cast<unsigned long long>(d.first_id),
                static_cast<unsigned long long>(d.count), d.tenant.c_str(), d.model.c_str());
  }
  std::printf("(%llu devices)\n", static_cast<unsigned long long>(total));
  return 0;
}

}  // namespace tianhe::app

namespace tianhe::app {

namespace {

// GET `path` from the running gateway: at --http, else at the config's http.listen. On failure
// prints why (naming the address and --config/--http) and returns the exit code; 0 and *out set
// otherwise.
int ask_gateway(const Args& args, std::string_view command, const std::string& path,
                core::HttpReply& out) {
  const std::string cmd(command);
  config::Endpoint at;
  if (args.has("http")) {
    auto ep = config::parse_endpoint(args.str("http"), "--http");
    if (!ep.ok()) return usage_error(cmd, ep.error().message);
    at = *ep;
  } else {
    auto cfg = load(args);
    if (!cfg.ok()) return usage_error(cmd, cfg.error().message);
    at = cfg->http.listen;
  }
  const std::string host = at.host == "0.0.0.0" ? "127.0.0.1" : at.host;
  auto reply = core::http_get(host, at.port, path, 5000);
  if (!reply.ok()) {
    std::fprintf(stderr,
                 "tianhe %s: %s; is the gateway running with the HTTP API on %s:%u? (pass "
                 "--config or --http)\n",
                 cmd.c_str(), reply.error().message.c_str(), host.c_str(), at.port);
    return 1;
  }
  out = std::move(reply.value());
  return 0;
}

}  // namespace

int cmd_sinks(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(R"(tianhe sinks — the running gateway's sinks: state, lag, deliveries, last error

Asks the gateway's HTTP API (GET /api/v1/sinks) at http.listen of the configuration.

Options:
  --config FILE   (default ./tianhe.toml, else built-in defaults): where the gateway listens
  --http HOST:PORT  ask this address instead
  --json          the API's JSON as it is)");
    return 0;
  }
  auto args = Args::parse(argc, argv, 2, {"json"}, {"config", "http"});
  if (!args.ok()) return usage_error("sinks", args.error().message);
  core::HttpReply reply_value;
  if (int rc = ask_gateway(*args, "sinks", "/api/v1/sinks", reply_value); rc != 0) return rc;
  const core::HttpReply* reply = &reply_value;
  if (reply->status != 200) {
    std::fprintf(stderr, "tianhe sinks: the gateway answered %d: %s\n", reply->status,
                 reply->body.c_str());
    return 1;
  }
  if (args->has("json")) {
    std::printf("%s\n", reply->body.c_str());
    return 0;
  }
  const auto j = nlohmann::json::parse(reply->body, nullptr, false);
  if (j.is_discarded() || !j.contains("sinks")) {
    std::fprintf(stderr, "tianhe sinks: the answer is not the sinks' JSON\n");
    return 1;
  }
  std::printf("%-20s %-11s %10s %8s %12s %8s %8s %8s  %s\n", "SINK", "STATE", "LAG", "LAG_S",
              "DELIVERED", "RETRIES", "DEAD", "DROPPED", "LAST ERROR");
  for (const auto& s : j["sinks"]) {
    std::string error = s.value("last_error", "");
    if (error.empty()) {
      error = "-";
    } else if (s.contains("last_error_age_seconds")) {
      error += " (" +
               std::to_string(static_cast<int64_t>(s["last_error_age_seconds"].get<double>())) +
               " s ago)";
    }
    std::printf("%-20s %-11s %10s %8.1f %12llu %8llu %8llu %8llu  %s\n",
                s.value("name", "").c_str(), s.value("state", "").c_str(),
                config::format_bytes_approx(s.value("lag_bytes", uint64_t{0})).c_str(),
                s.value("lag_seconds", 0.0),
                static_cast<unsigned long long>(s.value("delivered", uint64_t{0})),
                static_cast<unsigned long long>(s.value("retries", uint64_t{0})),
                static_cast<unsigned long long>(s.value("dead_lettered", uint64_t{0})),
                static_cast<unsigned long long>(s.value("dropped", uint64_t{0})), error.c_str());
  }
  return 0;
}

}  // namespace tianhe::app

namespace tianhe::app {

namespace {

std::string format_after(const nlohmann::json& t) {
  if (t.is_null()) return "not yet";
  if (t.is_string()) return t.get<std::string>();
  char buf[64];
  std::snprintf(buf, sizeof buf, "after %.3f ms", t.value("after_ms", 0.0));
  return buf;
}

}  // namespace

int cmd_trace(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(R"(tianhe trace DEVICE SEQ — where report SEQ of device DEVICE went

Asks the running gateway (GET /api/v1/devices/DEVICE/reports/SEQ/trace). Every copy the
gateway received recently: accepted (when its shard made it durable, when each sink delivered
it), rejected and why, refused by the log (busy) or dead-lettered by its codec; with the trace
id to look up in your tracing backend when it was sampled. Works for reports that were not
sampled: each shard keeps the last 4 fates of up to [tracing] fate_devices devices.

Options:
  --config FILE   (default ./tianhe.toml, else built-in defaults): where the gateway listens
  --http HOST:PORT  ask this address instead
  --json          the API's JSON as it is)");
    return 0;
  }
  auto args = Args::parse(argc, argv, 2, {"json"}, {"config", "http"});
  if (!args.ok()) return usage_error("trace", args.error().message);
  if (args->positional().size() != 2) {
    return usage_error("trace", "give a device id and a report seq: tianhe trace 1001 42");
  }
  const std::string& device = args->positional()[0];
  const std::string& seq = args->positional()[1];
  core::HttpReply reply_value;
  if (int rc = ask_gateway(*args, "trace",
                           "/api/v1/devices/" + device + "/reports/" + seq + "/trace", reply_value);
      rc != 0) {
    return rc;
  }
  const core::HttpReply* reply = &reply_value;
  const auto j = nlohmann::json::parse(reply->body, nullptr, false);
  if (reply->status == 404 && !j.is_discarded() && j.contains("found")) {
    std::fprintf(stderr,
                 "tianhe trace: no shard remembers report %s of device %s: not received "
                 "recently (each shard keeps a device's last 4 reports), or never\n",
                 seq.c_str(), device.c_str());
    return 1;
  }
  if (reply->status != 200 || j.is_discarded() || !j.contains("copies")) {
    std::fprintf(stderr, "tianhe trace: the gateway answered %d: %s\n", reply->status,
                 reply->body.c_str());
    return 1;
  }
  if (args->has("json")) {
    std::printf("%s\n", reply->body.c_str());
    return 0;
  }
  std::printf("device %s, report %s: %zu cop%s received\n", device.c_str(), seq.c_str(),
              j["copies"].size(), j["copies"].size() == 1 ? "y" : "ies");
  for (const auto& c : j["copies"]) {
    const std::string outcome = c.value("outcome", "");
    std::printf("- %s over %s on shard %d", outcome.c_str(), c.value("protocol", "").c_str(),
                c.value("shard", 0));
    if (c.contains("reason")) std::printf(": %s", c["reason"].get<std::string>().c_str());
    std::printf("\n  trace %s%s\n", c.value("trace_id", "(the sender's)").c_str(),
                c.value("traced", false) ? " (spans recorded)" : " (not sampled)");
    if (outcome == "accepted") {
      std::printf("  durable: %s\n", format_after(c["durable"]).c_str());
      for (const auto& s : c["sinks"]) {
        std::printf("  sink %-16s %s\n", s.value("sink", "").c_str(),
                    s.value("state", "") == "pending"
                        ? "pending"
                        : ("delivered " + format_after(s["delivered"])).c_str());
      }
    }
  }
  return 0;
}

}  // namespace tianhe::app
