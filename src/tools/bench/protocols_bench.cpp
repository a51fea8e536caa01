// `tianhe bench --protocols`: a row per protocol that gives a bench plan (ProtocolSpec::bench),
// each driven by its own simulator at full rate against a gateway of its own, next to the
// report protocol's single-report rate (acks on, durable) measured in the same run. The bench
// names no protocol but the report protocol, whose simulator it runs in-process as the
// reference.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/args.h"
#include "core/clock.h"
#include "runtime/extensions.h"
#include "tools/bench/bench_cmd.h"
#include "tools/bench/bench_gateway.h"

namespace tianhe::tools::bench {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

/// One protocol's figures.
struct ProtocolRow {
  std::string name;
  std::string what;
  double acked_rate = 0;   ///< reports acknowledged per second
  double stored_rate = 0;  ///< reports the gateway accepted into its log, per second
  uint64_t stored = 0;     ///< reports accepted during the run
  double p50_ms = 0, p99_ms = 0;
  uint64_t sent = 0, acked = 0, lost = 0;
  std::string error;  ///< "" when measured
};

/// Runs `tianhe simulate` as a child until it exits (or `timeout_s`), returns its JSON summary
/// (the last line of its output that parses as a JSON object).
Result<Json> run_simulate_child(const std::vector<std::string>& args, const std::string& log,
                                double timeout_s) {
  auto pid = spawn(args, log);
  if (!pid.ok()) return pid.error();
  Child child{*pid};
  const int64_t deadline = core::mono_ns() + static_cast<int64_t>(timeout_s * 1e9);
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(*pid, &status, WNOHANG);
    if (r == *pid) break;
    if (core::mono_ns() > deadline)
      return make_error("the simulator ran past its time; see " + log);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  child.pid = -1;  // reaped
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return make_error("the simulator failed (status " + std::to_string(status) + "); see " + log);
  }
  std::ifstream in(log);
  Json summary;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    Json j = Json::parse(line, nullptr, false);
    if (j.is_object()) summary = std::move(j);
  }
  if (!summary.is_object()) return make_error("the simulator printed no JSON summary; see " + log);
  return summary;
}

ProtocolRow run_protocol(const runtime::ProtocolSpec& p, const std::string& work, uint64_t devices,
                         uint32_t shards, double duration) {
  ProtocolRow row;
  row.name = std::string(p.name);
  const std::string dir = work + "/" + row.name;
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto plan = p.bench(dir, devices);
  if (!plan.ok()) {
    row.error = plan.error().message;
    return row;
  }
  row.what = plan->what;
  Gw gw;
  if (auto r = start_gateway(gw, work, row.name + "-gateway", devices, shards, "batch", plan->toml);
      !r.ok()) {
    row.error = r.error().message;
    return row;
  }
  const auto port = gw.ports.find(row.name);
  if (port == gw.ports.end() || port->second == 0) {
    row.error = "the gateway did not start " + row.name + "; see " + work + "/" + row.name +
                "-gateway/serve.log";
    return row;
  }
  char dur[32];
  std::snprintf(dur, sizeof dur, "%gs", duration);
  std::vector<std::string> args = {
      "tianhe",     "simulate", "--protocol",
      row.name,     "--target", "127.0.0.1:" + std::to_string(port->second),
      "--duration", dur,        "--json"};
  args.insert(args.end(), plan->simulate_args.begin(), plan->simulate_args.end());
  // What the gateway took in, beside what the simulator saw acknowledged: a protocol whose
  // acknowledgement is not its reports' durability (a packet forwarder's PUSH_ACK) is judged by
  // what became durable.
  const uint64_t accepted_before = totals_of(gw.http_port).reports_accepted;
  auto sum = run_simulate_child(args, dir + "/simulate.log", duration * 3 + 120);
  if (!sum.ok()) {
    row.error = sum.error().message;
    return row;
  }
  const Json& j = *sum;
  row.stored = totals_of(gw.http_port).reports_accepted - accepted_before;
  const double elapsed = j.value("elapsed_s", duration);
  row.stored_rate = elapsed > 0 ? static_cast<double>(row.stored) / elapsed : 0;
  row.acked_rate = j.value("acked_rate", 0.0);
  row.sent = j.value("sent", uint64_t{0});
  row.acked = j.value("acked", uint64_t{0});
  row.lost = j.value("lost", uint64_t{0});
  if (j.contains("ack_latency_ms")) {
    row.p50_ms = j["ack_latency_ms"].value("p50", 0.0);
    row.p99_ms = j["ack_latency_ms"].value("p99", 0.0);
  }
  return row;
}

}  // namespace

int cmd_bench_protocols(int argc, char** argv) {
  if (core::wants_help(argc, argv)) {
    std::puts(R"(tianhe bench --protocols — each protocol's rate next to the report protocol's

Measures, in one run: the report protocol's single-report rate (acks on, durability batch, the
store on), then for each protocol that has a bench plan a gateway of its own driven by that
protocol's simulator (`tianhe simulate --protocol NAME`) as fast as it goes, and prints each
rate as a ratio to the report protocol's.

Options:
  --duration S    seconds per phase (default 10)
  --devices N     registered devices (default 10000)
  --shards N      gateway shards (default: cores - 1, at least 1; the simulators get the rest)
  --protocol NAME only this protocol (repeatable as a comma list: mqtt_sn,lorawan)
  --work-dir DIR  where the gateways keep their data (default: a new temporary directory)
  --json          print the figures as JSON only

Example:
  tianhe bench --protocols --duration 10)");
    return 0;
  }
  auto args = core::Args::parse(argc, argv, 2, {"protocols", "json"},
                                {"duration", "devices", "shards", "protocol", "work-dir"});
  if (!args.ok()) return core::usage_error("bench", args.error().message);
  auto duration = args->seconds("duration", 10);
  auto devices = args->u64("devices", 10000, 1, 100'000'000);
  const uint32_t cores = std::max(1u, std::thread::hardware_concurrency());
  auto shards = args->u64("shards", std::max(1u, cores - 1), 1, 1024);
  if (!duration.ok()) return core::usage_error("bench", duration.error().message);
  if (!devices.ok()) return core::usage_error("bench", devices.error().message);
  if (!shards.ok()) return core::usage_error("bench", shards.error().message);
  const bool json_only = args->has("json");
  std::string work = args->str("work-dir");
  const bool remove_work = work.empty();
  if (work.empty()) {
    char tmpl[] = "/tmp/tianhe-bench-protocols-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return core::usage_error("bench", "cannot make a work dir");
    work = tmpl;
  }
  const std::string only = args->str("protocol");
  auto wanted = [&](std::string_view name) {
    if (only.empty()) return true;
    for (size_t b = 0; b <= only.size();) {
      size_t e = only.find(',', b);
      if (e == std::string::npos) e = only.size();
      if (only.compare(b, e - b, name) == 0) return true;
      b = e + 1;
    }
    return false;
  };
  auto say = [&](const std::string& s) {
    std::fprintf(json_only ? stderr : stdout, "%s\n", s.c_str());
    std::fflush(json_only ? stderr : stdout);
  };
  const auto n_devices = static_cast<uint64_t>(*devices);
  const auto n_shards = static_cast<uint32_t>(*shards);
  const double seconds = *duration;

  Json result;
  result["machine"] = {{"cores", cores}};
  result["shards"] = n_shards;
  result["devices"] = n_devices;
  say("[reference] report protocol, single-report datagrams, acks on, durability batch, " +
      std::to_string(static_cast<int>(seconds)) + " s ...");
  double reference = 0;
  {
    Gw gw;
    if (auto r = start_gateway(gw, work, "report-gateway", n_devices, n_shards); !r.ok()) {
      std::fprintf(stderr, "tianhe bench: %s\n", r.error().message.c_str());
      return 1;
    }
    auto single =
        protocols::report::run_simulator(sim(gw.report_port, n_devices, 0, seconds, 1, true));
    if (!single.ok()) {
      std::fprintf(stderr, "tianhe bench: report phase: %s\n", single.error().message.c_str());
      return 1;
    }
    reference = single->acked_rate;
    result["report"] = Json::parse(single->json());
  }
  std::vector<ProtocolRow> rows;
  for (const auto& p : runtime::builtin_extensions().protocols()) {
    if (!p.bench || !wanted(p.name)) continue;
    say("[" + std::string(p.name) + "] its simulator at full rate, " +
        std::to_string(static_cast<int>(seconds)) + " s ...");
    rows.push_back(run_protocol(p, work, n_devices, n_shards, seconds));
    const ProtocolRow& r = rows.back();
    Json j = {{"what", r.what},
              {"acked_rate", r.acked_rate},
              {"sent", r.sent},
              {"acked", r.acked},
              {"lost", r.lost},
              {"stored", r.stored},
              {"stored_rate", r.stored_rate},
              {"ack_latency_ms", {{"p50", r.p50_ms}, {"p99", r.p99_ms}}},
              {"ratio_to_report", reference > 0 ? r.stored_rate / reference : 0.0}};
    if (!r.error.empty()) j["error"] = r.error;
    result["protocols"][r.name] = j;
  }
  if (remove_work) fs::remove_all(work);
  if (json_only) {
    std::printf("%s\n", result.dump(2).c_str());
    return 0;
  }
  // "x report" compares what became durable: for most protocols that is what was acknowledged,
  // but a packet forwarder's PUSH_ACK only says a datagram arrived.
  std::printf("\n%-10s %12s %12s %9s %9s %9s  %s\n", "protocol", "acked/s", "stored/s", "x report",
              "p50 ms", "p99 ms", "what");
  std::printf("%-10s %12.0f %12.0f %9s %9.2f %9.2f  %s\n", "report", reference, reference, "1.00",
              result["report"]["ack_latency_ms"].value("p50", 0.0),
              result["report"]["ack_latency_ms"].value("p99", 0.0),
              "single-report datagrams, ack after durability");
  for (const ProtocolRow& r : rows) {
    if (!r.error.empty()) {
      std::printf("%-10s failed: %s\n", r.name.c_str(), r.error.c_str());
      continue;
    }
    std::printf("%-10s %12.0f %12.0f %9.2f %9.2f %9.2f  %s\n", r.name.c_str(), r.acked_rate,
                r.stored_rate, reference > 0 ? r.stored_rate / reference : 0.0, r.p50_ms, r.p99_ms,
                r.what.c_str());
  }
  std::printf("\n%s\n", result.dump().c_str());
  return 0;
}

}  // namespace tianhe::tools::bench
