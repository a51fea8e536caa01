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
    bool written =
        out != nullptr && std::fprintf(out, "%u %u\n", g.first_port(), g.http_port()) > 0;
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
  auto devices = args->u64("devices", 500'000, 1);
  auto rate = args->f64("rate", 10'000, 0);
  auto duration = args->seconds("duration", 10);
  auto drain = args->seconds("drain", 2);
  auto batch = args->u64("batch", 1, 1, 256);
  auto sockets = args->u64("sockets", 64, 1, 4096);
  auto invalid = args->u64("invalid-every", 0, 0, UINT32_MAX);
  auto seed = args->u64("seed", 1);
  auto first = args->u64("first-device", 1, 1);
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
                     a range A-B reads each device in turn (at most 1000000)
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
  // Every value is checked before the store is opened: a typo is a usage error (exit 2).
  const std::string format = args->str("format", "table");
  if (format != "table" && format != "json" && format != "csv") {
    return usage_error("query",
                       "--format: \"" + format + "\" is not a format; use table, json or csv");
  }
  const std::string order = args->str("order", "asc");
  if (order != "asc" && order != "desc") {
    return usage_error("query", "--order: \"" + order + "\" is not an order; use asc or desc");
  }
  const bool newest_first = order == "desc";
  auto limit_arg = args->u64("limit", 100, 1, UINT32_MAX);
  if (!limit_arg.ok()) return usage_error("query", limit_arg.error().message);
  const auto limit = static_cast<uint32_t>(*limit_arg);
  // --device takes one id or a range "A-B" (history of each device in turn); 0: none given.
  uint64_t device = 0, range_last = 0;
  if (args->has("device")) {
    auto range = parse_device_range(args->str("device"), "--device");
    if (!range.ok()) return usage_error("query", range.error().message);
    device = range->first;
    range_last = range->last;
  }
  auto after_arg = args->u64("after", 0);
  if (!after_arg.ok()) return usage_error("query", after_arg.error().message);
  const uint64_t after = *after_arg;
  const bool count = args->has("count"), latest = args->has("latest"), all = args->has("all");
  if (count && latest) return usage_error("query", "--count and --latest: choose one");
  if (all && !latest) {
    return usage_error("query", "--all goes with --latest (the latest report of every device)");
  }
  if (all && device != 0) return usage_error("query", "--all reads every device: drop --device");
  if (args->has("after") && !all) {
    return usage_error("query", "--after goes with --latest --all (the next page of devices)");
  }
  if (range_last != device && (count || latest)) {
    return usage_error("query", "--count and --latest take one --device, not a range");
  }
  if (device == 0 && !count && !all) {
    return usage_error("query", latest ? "--latest needs --device ID or --all"
                                       : "say what to read: --device ID, --latest, or --count");
  }
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
  if (from > to) {
    return usage_error("query", "--from " + args->str("from") + " is after --to " +
                                    args->str("to") + "; swap them");
  }
  auto reader = sinks::store::StoreReader::open(dir);
  if (!reader.ok()) {
    std::fprintf(stderr, "tianhe query: %s\n", reader.error().message.c_str());
    return 1;
  }

  if (count) {
    if (device != 0) {
      auto n = (*reader)->count_device(device, from, to);
      if (!n.ok()) return std::fprintf(stderr, "tianhe query: %s\n", n.error().message.c_str()), 1;
      if (format == "json")
        std::printf("{\"device_id\":%llu,\"reports\":%llu}\n",
                    static_cast<unsigned long long>(device), static_cast<unsigned long long>(*n));
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
  if (latest) {
    if (all) {
      auto r = (*reader)->latest_all(after, limit);
      if (!r.ok()) return std::fprintf(stderr, "tianhe query: %s\n", r.error().message.c_str()), 1;
      rows = std::move(*r);
    } else {
      auto r = (*reader)->latest(device);
      if (!r.ok()) return std::fprintf(stderr, "tianhe query: %s\n", r.error().message.c_str()), 1;
      if (r->has_value()) rows.push_back(std::move(**r));
    }
  } else {
    for (uint64_t id = device; id <= range_last; ++id) {
      sinks::store::HistoryQuery q;
      q.device_id = id;
      q.from_ns = from;
      q.to_ns = to;
      q.limit = limit;
      q.newest_first = newest_first;
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
