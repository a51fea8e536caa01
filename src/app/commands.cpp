#include "app/commands.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "app/args.h"
#include "app/gateway.h"
#include "app/simulator.h"
#include "control/config.h"
#include "control/config_fields.h"
#include "core/clock.h"
#include "pipeline/registry.h"
#include "runtime/extensions.h"
#include "sinks/store/store.h"
#include "sinks/store/store_config.h"

namespace tianhe::app {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

int usage_error(const std::string& cmd, const std::string& message) {
  std::fprintf(stderr, "tianhe %s: %s\n", cmd.c_str(), message.c_str());
  return 2;
}

bool wants_help(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return true;
  }
  return false;
}

/// Loads --config (or ./tianhe.toml when present, else the built-in defaults) and applies
/// --data-dir, re-deriving the log and store directories that default to live under it.
Result<control::GatewayConfig> load(const Args& args) {
  const std::string path = args.str("config");
  const std::string dir = args.has("data-dir") ? args.str("data-dir") : std::string();
  if (path.empty() && !std::filesystem::exists("tianhe.toml")) {
    return control::parse_config("", "<defaults>", runtime::builtin_extensions(), dir);
  }
  return control::load_config(path.empty() ? "tianhe.toml" : path, dir);
}

Result<std::pair<std::string, uint16_t>> split_target(const std::string& t) {
  auto ep = control::parse_endpoint(t, "--target");
  if (!ep.ok()) return ep.error();
  return std::make_pair(ep->host, ep->port);
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
  --ready-file F    write "<first protocol's port> <http port>" to F once serving (scripts, tests)

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
  auto port_flag = [&](const std::string& flag) -> Result<uint16_t> {
    auto p = args->u64(flag, 0);
    if (!p.ok() || *p > 65535) return make_error("--" + flag + ": use 0..65535");
    return static_cast<uint16_t>(*p);
  };
  for (const auto& p : ext.protocols()) {
    const std::string flag = std::string(p.name) + "-port";
    if (!p.set_port || !args->has(flag)) continue;
    auto port = port_flag(flag);
    if (!port.ok()) return usage_error("serve", port.error().message);
    p.set_port(cfg->extensions.at("protocols." + std::string(p.name)), *port);
  }
  if (args->has("http-port")) {
    auto port = port_flag("http-port");
    if (!port.ok()) return usage_error("serve", port.error().message);
    cfg->http.listen.port = *port;
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
    if (out != nullptr) {
      std::fprintf(out, "%u %u\n", g.first_port(), g.http_port());
      std::fclose(out);
      std::rename(tmp.c_str(), f.c_str());
    }
  }
  while (!g_stop.load()) pause();
  std::printf("tianhe: stopping\n");
  g.stop();
  return 0;
}

int cmd_simulate(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(R"(tianhe simulate — a device fleet sending reports over UDP

Options:
  --target HOST:PORT   gateway report endpoint (default 127.0.0.1:7700)
  --devices N          fleet size (default 500000); device ids start at --first-device (1)
  --rate R             reports per second in all (default 10000; 0 = as fast as possible)
  --duration S         seconds to send (default 10; also 500ms, 2m)
  --batch K            reports per datagram, like an edge gateway (default 1)
  --ack                request acks and measure them (latency, lost)
  --sockets N          source sockets (default 64)
  --invalid-every N    make every Nth report break the model (tests rejection)
  --acked-out FILE     write "device seq" of every OK-acked report
  --drain S            wait this long for outstanding acks at the end (default 2s)
  --seed N             random seed (device order, values)
  --json               print the summary as JSON
  --quiet              no progress lines

Example:
  tianhe simulate --target 127.0.0.1:7700 --devices 500000 --rate 100000 --duration 30 --ack)");
    return 0;
  }
  auto args = Args::parse(argc, argv, 2, {"ack", "json", "quiet"},
                          {"target", "devices", "rate", "duration", "batch", "sockets",
                           "invalid-every", "acked-out", "drain", "seed", "first-device"});
  if (!args.ok()) return usage_error("simulate", args.error().message);
  SimulatorOptions o;
  auto target = split_target(args->str("target", "127.0.0.1:7700"));
  if (!target.ok()) return usage_error("simulate", target.error().message);
  o.host = target->first;
  o.port = target->second;
  auto devices = args->u64("devices", 500'000);
  auto rate = args->f64("rate", 10'000);
  auto duration = parse_seconds(args->str("duration", "10"), "--duration");
  auto drain = parse_seconds(args->str("drain", "2"), "--drain");
  auto batch = args->u64("batch", 1);
  auto sockets = args->u64("sockets", 64);
  auto invalid = args->u64("invalid-every", 0);
  auto seed = args->u64("seed", 1);
  auto first = args->u64("first-device", 1);
  for (const auto* r : {&devices, &batch, &sockets, &invalid, &seed, &first}) {
    if (!r->ok()) return usage_error("simulate", r->error().message);
  }
  if (!rate.ok()) return usage_error("simulate", rate.error().message);
  if (!duration.ok()) return usage_error("simulate", duration.error().message);
  if (!drain.ok()) return usage_error("simulate", drain.error().message);
  o.devices = *devices;
  o.rate = *rate;
  o.duration_s = *duration;
  o.drain_s = *drain;
  o.batch = static_cast<uint32_t>(*batch);
  o.sockets = static_cast<uint32_t>(*sockets);
  o.invalid_every = static_cast<uint32_t>(*invalid);
  o.seed = *seed;
  o.first_device_id = *first;
  o.ack = args->has("ack");
  o.acked_out = args->str("acked-out");
  o.progress = !args->has("quiet");
  const bool json = args->has("json");
  o.progress_sink = [json](const std::string& line) {
    std::fprintf(json ? stderr : stdout, "%s\n", line.c_str());
    std::fflush(json ? stderr : stdout);
  };
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  auto sum = run_simulator(o, &g_stop);
  if (!sum.ok()) {
    std::fprintf(stderr, "tianhe simulate: %s\n", sum.error().message.c_str());
    return 1;
  }
  if (json) {
    std::printf("%s\n", sum->json().c_str());
  } else {
    std::printf("%s", sum->text().c_str());
  }
  return 0;
}

int cmd_query(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(R"(tianhe query — read the embedded store (works while the gateway runs)

Options:
  --data-dir DIR     the gateway's data directory (default: from --config, else ./data)
  --config FILE      take the store location from this config
  --device ID        history of one device (with --from/--to/--limit/--order);
                     a range A-B reads each device in turn
  --from T --to T    time range: RFC 3339 (2026-11-22T03:00:00Z), ns since epoch, now, -15m
  --limit N          at most N reports (default 100)
  --order asc|desc   oldest or newest first (default asc)
  --latest           the latest report (of --device, or of every device with --all)
  --all              with --latest: every device, in device order (paginate with --after ID)
  --count            count reports (of --device in the range, or of the whole store)
  --format F         table (default), json or csv

Examples:
  tianhe query --device 42 --from -1h
  tianhe query --latest --all --limit 20 --format csv
  tianhe query --count)");
    return 0;
  }
  auto args = Args::parse(
      argc, argv, 2, {"latest", "all", "count"},
      {"data-dir", "config", "device", "from", "to", "limit", "order", "format", "after"});
  if (!args.ok()) return usage_error("query", args.error().message);
  std::string dir;
  if (args->has("config") || !args->has("data-dir")) {
    auto cfg = load(*args);
    if (!cfg.ok()) return usage_error("query", cfg.error().message);
    const auto* store = cfg->extension<sinks::store::StoreConfig>("sinks.store");
    if (store == nullptr) return usage_error("query", "the store is compiled out of this build");
    dir = store->dir;
  } else {
    dir = args->str("data-dir") + "/store";
  }
  const std::string format = args->str("format", "table");
  if (format != "table" && format != "json" && format != "csv") {
    return usage_error("query", "--format: use table, json or csv");
  }
  auto reader = sinks::store::StoreReader::open(dir);
  if (!reader.ok()) {
    std::fprintf(stderr, "tianhe query: %s\n", reader.error().message.c_str());
    return 1;
  }
  auto limit = args->u64("limit", 100);
  // --device takes one id or a range "A-B" (history of each device in turn).
  uint64_t range_last = 0;
  std::string device_text = args->str("device");
  if (auto dash = device_text.find('-'); dash != std::string::npos && dash > 0) {
    range_last = std::strtoull(device_text.c_str() + dash + 1, nullptr, 10);
    device_text = device_text.substr(0, dash);
  }
  auto device =
      Result<uint64_t>(device_text.empty() ? 0 : std::strtoull(device_text.c_str(), nullptr, 10));
  auto after = args->u64("after", 0);
  if (!limit.ok()) return usage_error("query", limit.error().message);
  if (!device.ok()) return usage_error("query", device.error().message);
  if (!after.ok()) return usage_error("query", after.error().message);
  const int64_t now = core::wall_ns();
  int64_t from = INT64_MIN, to = INT64_MAX;
  if (args->has("from")) {
    auto t = parse_time(args->str("from"), now, "--from");
    if (!t.ok()) return usage_error("query", t.error().message);
    from = *t;
  }
  if (args->has("to")) {
    auto t = parse_time(args->str("to"), now, "--to");
    if (!t.ok()) return usage_error("query", t.error().message);
    to = *t;
  }

  if (args->has("count")) {
    if (*device != 0) {
      auto n = (*reader)->count_device(*device, from, to);
      if (!n.ok()) return std::fprintf(stderr, "tianhe query: %s\n", n.error().message.c_str()), 1;
      if (format == "json")
        std::printf("{\"device_id\":%llu,\"reports\":%llu}\n",
                    static_cast<unsigned long long>(*device), static_cast<unsigned long long>(*n));
      else
        std::printf("%llu\n", static_cast<unsigned long long>(*n));
      return 0;
    }
    auto c = (*reader)->counts();
    if (!c.ok()) return std::fprintf(stderr, "tianhe query: %s\n", c.error().message.c_str()), 1;
    if (format == "json") {
      std::printf("%s\n", nlohmann::json{{"reports", c->reports},
                                         {"devices", c->devices},
                                         {"chunks", c->chunks},
                                         {"bytes", c->bytes}}
                              .dump()
                              .c_str());
    } else if (format == "csv") {
      std::printf(
          "reports,devices,chunks,bytes\n%llu,%llu,%llu,%llu\n",
          static_cast<unsigned long long>(c->reports), static_cast<unsigned long long>(c->devices),
          static_cast<unsigned long long>(c->chunks), static_cast<unsigned long long>(c->bytes));
    } else {
      std::printf(
          "reports  %llu\ndevices  %llu\nchunks   %llu\nbytes    %llu (%s)\n",
          static_cast<unsigned long long>(c->reports), static_cast<unsigned long long>(c->devices),
          static_cast<unsigned long long>(c->chunks), static_cast<unsigned long long>(c->bytes),
          control::config_fields::format_bytes_approx(c->bytes).c_str());
    }
    return 0;
  }

  std::vector<sinks::store::StoredReport> rows;
  if (args->has("latest")) {
    if (args->has("all")) {
      auto r = (*reader)->latest_all(*after, static_cast<uint32_t>(*limit));
      if (!r.ok()) return std::fprintf(stderr, "tianhe query: %s\n", r.error().message.c_str()), 1;
      rows = std::move(*r);
    } else {
      if (*device == 0) return usage_error("query", "--latest needs --device ID or --all");
      auto r = (*reader)->latest(*device);
      if (!r.ok()) return std::fprintf(stderr, "tianhe query: %s\n", r.error().message.c_str()), 1;
      if (r->has_value()) rows.push_back(std::move(**r));
    }
  } else {
    if (*device == 0) {
      return usage_error("query", "say what to read: --device ID, --latest, or --count");
    }
    const uint64_t last = std::max(range_last, *device);
    for (uint64_t id = *device; id <= last; ++id) {
      sinks::store::HistoryQuery q;
      q.device_id = id;
      q.from_ns = from;
      q.to_ns = to;
      q.limit = static_cast<uint32_t>(std::min<uint64_t>(*limit, UINT32_MAX));
      q.newest_first = args->str("order", "asc") == "desc";
      auto r = (*reader)->history(q);
      if (!r.ok()) return std::fprintf(stderr, "tianhe query: %s\n", r.error().message.c_str()), 1;
      for (auto& row : *r) rows.push_back(std::move(row));
    }
  }

  if (format == "json") {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) {
      arr.push_back(
          {{"device_id", r.device_id},
           {"seq", r.seq},
           {"time", format_time(r.device_time_ns)},
           {"time_ns", r.device_time_ns},
           {"received_ns", r.received_ns},
           {"protocol", std::string(core::protocol_name(r.protocol))},
           {"metrics", nlohmann::json::parse(sinks::store::metrics_json(r.raw_metrics))}});
    }
    std::printf("%s\n", arr.dump(2).c_str());
  } else if (format == "csv") {
    std::printf("device_id,seq,time,received_ns,protocol,metrics\n");
    for (const auto& r : rows) {
      std::string m = sinks::store::metrics_json(r.raw_metrics);
      std::string quoted = "\"";
      for (char c : m) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
      quoted += "\"";
      std::printf("%llu,%u,%s,%lld,%s,%s\n", static_cast<unsigned long long>(r.device_id), r.seq,
                  format_time(r.device_time_ns).c_str(), static_cast<long long>(r.received_ns),
                  std::string(core::protocol_name(r.protocol)).c_str(), quoted.c_str());
    }
  } else {
    std::printf("%-12s %-10s %-32s %s\n", "DEVICE", "SEQ", "TIME", "METRICS");
    for (const auto& r : rows) {
      std::printf("%-12llu %-10u %-32s %s\n", static_cast<unsigned long long>(r.device_id), r.seq,
                  format_time(r.device_time_ns).c_str(),
                  sinks::store::metrics_json(r.raw_metrics).c_str());
    }
    std::printf("(%zu reports)\n", rows.size());
  }
  return 0;
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
