// `tianhe bench --sinks`: each sink's sustained delivery rate next to its engine's own ceiling
// (a plain client writing the same rows, measured in the same run), and the gateway's ingest
// rate with every sink on next to the store alone. The engines must be running; the sinks'
// tables come from --sinks-config (bench/sinks.sh starts local servers and writes one).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/args.h"
#include "core/clock.h"
#include "pipeline/registry.h"
#include "runtime/extensions.h"
#include "tools/bench/bench_gateway.h"

namespace tianhe::tools::bench {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
using protocols::report::run_simulator;

/// One enabled sink table of --sinks-config.
struct SinkTable {
  std::string header;    ///< "sinks.mysql.archive"
  std::string instance;  ///< "mysql.archive"
  std::string text;      ///< the table as written (header line and keys)
  const runtime::SinkSpec* spec = nullptr;
  std::any config;
};

/// The tables of `text` by header, each with its lines ("[sinks.x]" up to the next header).
std::vector<std::pair<std::string, std::string>> split_tables(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const size_t b = line.find_first_not_of(" \t");
    if (b != std::string::npos && line[b] == '[' && line.find(']') != std::string::npos) {
      const std::string header = line.substr(b + 1, line.find(']') - b - 1);
      out.emplace_back(header, line + "\n");
      continue;
    }
    if (!out.empty()) out.back().second += line + "\n";
  }
  return out;
}

/// The registry the benchmark gateways use (bench_config's model and devices).
Result<std::shared_ptr<const pipeline::Registry>> bench_registry(uint64_t devices) {
  pipeline::ModelSpec m;
  m.name = "env_sensor";
  auto metric = [&](const char* name, core::ValueType t, std::optional<double> lo,
                    std::optional<double> hi, bool required) {
    pipeline::MetricSpec x;
    x.name = name;
    x.type = t;
    x.min = lo;
    x.max = hi;
    x.required = required;
    m.metrics.push_back(x);
  };
  metric("temperature", core::ValueType::kDouble, -40, 85, true);
  metric("humidity", core::ValueType::kDouble, 0, 100, false);
  metric("pressure", core::ValueType::kDouble, 300, 1100, false);
  metric("battery_mv", core::ValueType::kInt64, 0, 5000, false);
  metric("door_open", core::ValueType::kBool, std::nullopt, std::nullopt, false);
  pipeline::DeviceRange d;
  d.first_id = 1;
  d.count = devices;
  d.tenant = "bench";
  d.model = "env_sensor";
  pipeline::RegistryConfig rc;
  return pipeline::Registry::build(rc, std::span(&m, 1), std::span(&d, 1));
}

/// The sink's entry of GET /api/v1/sinks (null when absent).
Json sink_state(uint16_t http_port, const std::string& instance) {
  const auto j = Json::parse(http_get(http_port, "/api/v1/sinks"), nullptr, false);
  if (j.is_discarded() || !j.contains("sinks")) return nullptr;
  for (const auto& s : j["sinks"]) {
    if (s.value("name", "") == instance) return s;
  }
  return nullptr;
}

struct Delivery {
  double ingest_rate = 0;  ///< reports/s the gateway accepted while the sink delivered
  double drain_rate = 0;   ///< reports/s the sink delivered while catching up (its sustained rate)
  bool kept_up = false;    ///< no backlog formed: drain_rate is a lower bound (= ingest rate)
  double backlog_s = 0;    ///< how long the catch-up took
  std::string error;
};

/// Ingests `reports` as fast as the gateway takes them, then times the sink's catch-up.
Delivery delivery_rate(const std::string& work, const SinkTable& t, uint64_t devices,
                       uint32_t shards, uint64_t reports) {
  Delivery d;
  Gw gw;
  const std::string name = "sink-" + t.instance;
  if (auto r = start_gateway(gw, work, name, devices, shards, "batch", t.text); !r.ok()) {
    d.error = r.error().message;
    return d;
  }
  Json s0 = nullptr;
  for (int i = 0; i < 300 && (s0 = sink_state(gw.http_port, t.instance)).is_null(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const uint64_t before = s0.is_null() ? 0 : s0.value("delivered", uint64_t{0});
  auto o = sim(gw.report_port, devices, 0, 600, 32, true);
  o.max_reports = reports;
  const int64_t t0 = core::mono_ns();
  auto run = run_simulator(o);
  const int64_t t1 = core::mono_ns();
  if (!run.ok()) {
    d.error = run.error().message;
    return d;
  }
  const double accepted = static_cast<double>(totals_of(gw.http_port).reports_accepted);
  d.ingest_rate = accepted / ((t1 - t0) / 1e9);
  const Json at_end = sink_state(gw.http_port, t.instance);
  const double delivered_at_end =
      at_end.is_null() ? 0 : static_cast<double>(at_end.value("delivered", uint64_t{0}) - before);
  const int64_t deadline = core::mono_ns() + 600'000'000'000;
  double delivered = delivered_at_end;
  while (core::mono_ns() < deadline) {
    const Json s = sink_state(gw.http_port, t.instance);
    if (!s.is_null()) delivered = static_cast<double>(s.value("delivered", uint64_t{0}) - before);
    if (!s.is_null() && s.value("lag_bytes", uint64_t{1}) == 0 && delivered >= accepted * 0.999) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int64_t t2 = core::mono_ns();
  d.backlog_s = (t2 - t1) / 1e9;
  const double backlog = delivered - delivered_at_end;
  if (backlog < accepted * 0.1 || d.backlog_s < 0.2) {
    d.kept_up = true;
    d.drain_rate = delivered / ((t2 - t0) / 1e9);
  } else {
    d.drain_rate = backlog / d.backlog_s;
  }
  return d;
}

/// The acknowledged single-report ingest rate of a gateway with `extra_toml` for `duration`.
Result<double> ingest_rate(const std::string& work, const std::string& name,
                           const std::string& extra_toml, uint64_t devices, uint32_t shards,
                           double duration) {
  Gw gw;
  if (auto r = start_gateway(gw, work, name, devices, shards, "batch", extra_toml); !r.ok()) {
    return r.error();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto run = run_simulator(sim(gw.report_port, devices, 0, duration, 1, true));
  if (!run.ok()) return run.error();
  return run->acked_rate;
}

/// The engines' own load at a given rate: each sink's plain ceiling client writes `rate` rows a
/// second (in one-second chunks, then waits out the second) until stopped. With it running, a
/// store-only gateway's ingest rate is the floor under the ingest rate with every sink on: the
/// machine's cores also run the engines there, at the same delivery rate, and this is what the
/// gateway can ingest beside them when it does no delivery work itself.
class EngineLoad {
 public:
  EngineLoad(const std::vector<SinkTable>& sinks, const runtime::GatewayContext& gateway,
             double rate) {
    const uint64_t chunk = std::max<uint64_t>(1000, static_cast<uint64_t>(rate));
    for (const SinkTable& t : sinks) {
      if (!t.spec->ceiling) continue;
      threads_.emplace_back([this, &t, &gateway, chunk, rate] {
        while (!stop_.load()) {
          const int64_t t0 = core::mono_ns();
          auto c = t.spec->ceiling(t.config, gateway, chunk);
          if (!c.ok()) {
            std::lock_guard lock(mu_);
            errors_ += t.instance + ": " + c.error().message + "; ";
            return;
          }
          rows_.fetch_add(chunk);
          const int64_t due = t0 + static_cast<int64_t>(1e9 * static_cast<double>(chunk) / rate);
          while (!stop_.load() && core::mono_ns() < due) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
        }
      });
    }
    start_ns_ = core::mono_ns();
  }
  ~EngineLoad() { stop(); }
  /// Stops the clients (each finishes its chunk).
  void stop() {
    stop_.store(true);
    for (auto& th : threads_) {
      if (th.joinable()) th.join();
    }
    if (end_ns_ == 0) end_ns_ = core::mono_ns();
  }
  /// Rows the engines took per second, over every engine.
  double rows_per_s() const {
    const int64_t end = end_ns_ != 0 ? end_ns_ : core::mono_ns();
    return static_cast<double>(rows_.load()) / ((end - start_ns_) / 1e9);
  }
  std::string errors() const {
    std::lock_guard lock(mu_);
    return errors_;
  }

 private:
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> rows_{0};
  mutable std::mutex mu_;
  std::string errors_;
  int64_t start_ns_ = 0, end_ns_ = 0;
};

}  // namespace

int cmd_bench_sinks(int argc, char** argv, const runtime::CommandContext& context) {
  if (core::wants_help(argc, argv)) {
    std::puts(R"(tianhe bench --sinks — each sink's delivery rate next to its engine's ceiling

Needs the engines running; --sinks-config names a TOML file with their [sinks.<kind>] tables
(bench/sinks.sh starts local servers and writes one). For each enabled sink:
  ceiling   a plain client writing the same rows the engine's fastest usual way
  delivery  a gateway (store + that sink) ingests --reports as fast as it can; the sink's
            catch-up rate over the backlog is its sustained delivery rate
Then the acked ingest rate with the store alone and with the store and every sink, and the
floor under the latter: the store alone while every engine takes the same rows per second
from its own plain client (the cores the engines need at that rate).

Options:
  --sinks-config FILE  the sinks' tables (required)
  --reports N          reports per sink phase and per ceiling (default 200000)
  --duration S         seconds of each ingest phase (default 10)
  --devices N          devices (default 10000)
  --shards N           gateway shards (default 1)
  --work-dir DIR       where gateways keep data (default: a new directory under /tmp, removed)
  --ceilings-only      only each engine's ceiling, as JSON
  --json               JSON only)");
    return 0;
  }
  auto args =
      core::Args::parse(argc, argv, 2, {"sinks", "json", "ceilings-only"},
                        {"sinks-config", "reports", "duration", "devices", "shards", "work-dir"});
  if (!args.ok()) return core::usage_error("bench", args.error().message);
  if (!args->has("sinks-config")) {
    return core::usage_error("bench", "--sinks needs --sinks-config FILE with the sinks' tables");
  }
  const std::string path = args->str("sinks-config");
  const uint64_t reports = args->has("reports") ? std::stoull(args->str("reports")) : 200000;
  const double duration = args->has("duration") ? std::stod(args->str("duration")) : 10;
  const uint64_t devices = args->has("devices") ? std::stoull(args->str("devices")) : 10000;
  const uint32_t shards =
      args->has("shards") ? static_cast<uint32_t>(std::stoul(args->str("shards"))) : 1;
  const bool json_only = args->has("json");
  std::string work = args->has("work-dir") ? args->str("work-dir") : "";
  const bool remove_work = work.empty();
  if (work.empty()) {
    char tmpl[] = "/tmp/tianhe-bench-sinks-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return core::usage_error("bench", "cannot create a work dir");
    work = tmpl;
  }
  auto say = [&](const std::string& s) {
    std::fprintf(json_only ? stderr : stdout, "%s\n", s.c_str());
    std::fflush(json_only ? stderr : stdout);
  };

  std::ifstream in(path);
  if (!in) return core::usage_error("bench", "--sinks-config: cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  const runtime::Extensions& ext = runtime::builtin_extensions();
  std::vector<SinkTable> sinks;
  std::string all_tables;
  for (auto& [header, body] : split_tables(text.str())) {
    if (header.rfind("sinks.", 0) != 0) continue;
    SinkTable t;
    t.header = header;
    t.instance = header.substr(6);
    const std::string kind = t.instance.substr(0, t.instance.find('.'));
    for (const auto& s : ext.sinks()) {
      if (s.name == kind) t.spec = &s;
    }
    if (t.spec == nullptr) {
      std::string problem = path;
      problem.append(": [").append(header).append("]: no sink \"");
      problem.append(kind).append("\" is compiled in");
      return core::usage_error("bench", problem);
    }
    auto table = context.load_table(path, work, header);
    if (!table.ok()) return core::usage_error("bench", table.error().message);
    t.config = std::move(table.value());
    if (!t.spec->enabled(t.config)) continue;
    t.text = body;
    all_tables += body;
    sinks.push_back(std::move(t));
  }
  if (sinks.empty()) {
    return core::usage_error("bench", path + " enables no sink; add enabled = true to a table");
  }
  auto registry = bench_registry(devices);
  if (!registry.ok()) return core::usage_error("bench", registry.error().message);
  runtime::GatewayContext gateway;
  gateway.data_dir = work;
  gateway.registry = *registry;

  if (args->has("ceilings-only")) {
    // Only the engines' ceilings, as JSON: bench/sinks_bench.py measures them beside a gateway
    // ingesting, for the floor under the catch-up rate after an outage.
    Json c = Json::object();
    for (const SinkTable& t : sinks) {
      if (!t.spec->ceiling) continue;
      auto r = t.spec->ceiling(t.config, gateway, reports);
      c[t.instance] = r.ok() ? Json(*r) : Json(r.error().message);
    }
    std::printf("%s\n", Json{{"ceilings", c}}.dump().c_str());
    if (remove_work) fs::remove_all(work);
    return 0;
  }
  Json result;
  result["reports"] = reports;
  result["devices"] = devices;
  result["shards"] = shards;
  Json rows = Json::array();
  for (const SinkTable& t : sinks) {
    Json row{{"sink", t.instance}};
    if (t.spec->ceiling) {
      say("[" + t.instance + "] the engine's ceiling: a plain client writing " +
          std::to_string(reports) + " rows ...");
      auto c = t.spec->ceiling(t.config, gateway, reports);
      if (c.ok()) {
        row["ceiling_per_s"] = *c;
      } else {
        row["ceiling_error"] = c.error().message;
      }
    }
    say("[" + t.instance + "] delivery: " + std::to_string(reports) +
        " reports ingested at full speed, then the sink's catch-up ...");
    const Delivery d = delivery_rate(work, t, devices, shards, reports);
    if (!d.error.empty()) {
      row["delivery_error"] = d.error;
    } else {
      row["delivery_per_s"] = d.drain_rate;
      row["kept_up_with_ingest"] = d.kept_up;
      row["ingest_per_s"] = d.ingest_rate;
      row["catch_up_s"] = d.backlog_s;
      if (row.contains("ceiling_per_s")) {
        row["ratio_to_ceiling"] = d.drain_rate / row["ceiling_per_s"].get<double>();
      }
    }
    rows.push_back(row);
  }
  result["sinks"] = rows;

  say("[ingest] acked single-report rate, store only, " +
      std::to_string(static_cast<int>(duration)) + " s ...");
  auto alone = ingest_rate(work, "store-only", "", devices, shards, duration);
  say("[ingest] the same with the store and every sink above ...");
  auto with_all = ingest_rate(work, "all-sinks", all_tables, devices, shards, duration);
  if (alone.ok()) result["ingest_store_only_per_s"] = *alone;
  if (with_all.ok()) result["ingest_all_sinks_per_s"] = *with_all;
  if (alone.ok() && with_all.ok() && *alone > 0) result["ingest_ratio"] = *with_all / *alone;
  if (with_all.ok() && *with_all > 0) {
    say("[ingest] the floor: store only, while every engine takes " +
        std::to_string(static_cast<int>(*with_all)) +
        " rows/s from its own plain client (the engines' share of the cores) ...");
    EngineLoad load(sinks, gateway, *with_all);
    auto floor = ingest_rate(work, "store-beside-engines", "", devices, shards, duration);
    load.stop();
    result["engines_rows_per_s"] = load.rows_per_s();
    if (!load.errors().empty()) result["engines_error"] = load.errors();
    if (floor.ok() && *floor > 0) {
      result["ingest_floor_per_s"] = *floor;
      result["ingest_ratio_to_floor"] = *with_all / *floor;
    }
  }
  if (remove_work) fs::remove_all(work);

  if (json_only) {
    std::printf("%s\n", result.dump(2).c_str());
    return 0;
  }
  std::printf("\n%-22s %14s %14s %8s %14s\n", "SINK", "DELIVERY/s", "CEILING/s", "RATIO",
              "CATCH-UP s");
  for (const auto& r : rows) {
    const bool ok = r.contains("delivery_per_s");
    std::printf("%-22s %13.0f%s %14.0f %8.2f %14.1f\n", r["sink"].get<std::string>().c_str(),
                ok ? r["delivery_per_s"].get<double>() : 0.0,
                ok && r["kept_up_with_ingest"].get<bool>() ? "+" : " ",
                r.value("ceiling_per_s", 0.0), r.value("ratio_to_ceiling", 0.0),
                r.value("catch_up_s", 0.0));
    if (r.contains("delivery_error")) {
      std::printf("    delivery failed: %s\n", r["delivery_error"].get<std::string>().c_str());
    }
    if (r.contains("ceiling_error")) {
      std::printf("    ceiling failed: %s\n", r["ceiling_error"].get<std::string>().c_str());
    }
  }
  std::printf("(+: the sink kept up with ingest, so its rate is at least this)\n");
  if (result.contains("ingest_ratio")) {
    std::printf("ingest, store only: %.0f reports/s; store + every sink: %.0f reports/s (%.2fx)\n",
                result["ingest_store_only_per_s"].get<double>(),
                result["ingest_all_sinks_per_s"].get<double>(),
                result["ingest_ratio"].get<double>());
  }
  if (result.contains("ingest_ratio_to_floor")) {
    std::printf(
        "floor: store only beside the engines taking %.0f rows/s from their own clients: "
        "%.0f reports/s; store + every sink is %.2fx that floor\n",
        result["engines_rows_per_s"].get<double>(), result["ingest_floor_per_s"].get<double>(),
        result["ingest_ratio_to_floor"].get<double>());
  }
  return 0;
}

}  // namespace tianhe::tools::bench
