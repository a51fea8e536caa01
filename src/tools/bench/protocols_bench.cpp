// `tianhe bench --protocols`: a row per protocol that gives a bench plan (ProtocolSpec::bench),
// each driven by its own simulator at full rate against a gateway of its own, next to the
// report protocol's single-report rate (acks on, durable) measured in the same run. The bench
// names no protocol but the report protocol, whose simulator it runs in-process as the
// reference. On a small machine the simulators share the cores with the gateway, so each row
// also carries the gateway's own CPU time (stored reports per gateway CPU-second) and its
// simulator's floor (its sending rate with nothing answering); `--codec FILE` adds, per
// protocol, the same row with the model's codec set to a user codec file.
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/args.h"
#include "core/clock.h"
#include "runtime/extensions.h"
#include "tools/bench/bench_cmd.h"
#include "tools/bench/bench_gateway.h"
#include "tools/bench/udp_floor.h"

namespace tianhe::tools::bench {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

/// One protocol's figures (one row of the table).
struct ProtocolRow {
  std::string name;   ///< the protocol
  std::string label;  ///< the row's first column: the protocol, and its codec when set
  std::string codec;  ///< the model codec the row ran with ("" : the plan's own)
  std::string what;
  double acked_rate = 0;        ///< reports acknowledged per second
  double stored_rate = 0;       ///< reports the gateway accepted into its log, per second
  uint64_t stored = 0;          ///< reports accepted during the run
  double gateway_cpu_s = 0;     ///< the gateway process's CPU seconds (every thread) meanwhile
  double shard_cpu_s = 0;       ///< of which its shard threads'
  uint64_t codec_failures = 0;  ///< payloads its codec could not decode (dead-lettered)
  std::map<std::string, uint64_t> failures_by_reason;  ///< the same by reason (timeout, ...)
  double p50_ms = 0, p99_ms = 0;
  uint64_t sent = 0, acked = 0, lost = 0;
  std::string error;  ///< "" when measured
  /// Stored reports per second of gateway CPU: what one core of the gateway turns into
  /// durable reports, whatever share of the machine the simulator took.
  double per_core_s() const {
    return gateway_cpu_s > 0 ? static_cast<double>(stored) / gateway_cpu_s : 0;
  }
  /// The same per CPU-second of the shard threads alone (receive to log append: the pipeline
  /// without the sinks, the HTTP server and the log's sync threads).
  double per_shard_core_s() const {
    return shard_cpu_s > 0 ? static_cast<double>(stored) / shard_cpu_s : 0;
  }
};

/// A simulator's floor: how fast it sends against a socket that discards, nothing answering.
struct Floor {
  double rate = 0;  ///< reports (uplinks, PUBLISHes) sent per second
  uint64_t sent = 0;
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

/// `tianhe simulate --protocol NAME --target 127.0.0.1:PORT --duration S --json` and the plan's
/// arguments, then `extra` (--simulate-args).
std::vector<std::string> simulate_command(const std::string& name, uint16_t port, double duration,
                                          const std::vector<std::string>& plan_args,
                                          const std::vector<std::string>& extra) {
  char dur[32];
  std::snprintf(dur, sizeof dur, "%gs", duration);
  std::vector<std::string> args = {"tianhe",     "simulate", "--protocol",
                                   name,         "--target", "127.0.0.1:" + std::to_string(port),
                                   "--duration", dur,        "--json"};
  args.insert(args.end(), plan_args.begin(), plan_args.end());
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

/// The protocol's simulator, as the row runs it, against a socket that discards (nothing
/// answers, so it sends as fast as it can make its frames: signed and encrypted uplinks, or
/// PUBLISHes). A simulator that cannot send without answers (a session first) gets no floor.
Floor run_floor(const std::string& name, const std::vector<std::string>& plan_args,
                const std::vector<std::string>& extra, const std::string& dir, double duration) {
  Floor f;
  auto d = open_discard();
  if (!d.ok()) {
    f.error = d.error().message;
    return f;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  // A simulator that waits for answers before it sends (a CONNACK) would wait past this.
  auto sum = run_simulate_child(simulate_command(name, d->port, duration, plan_args, extra),
                                dir + "/floor-simulate.log", duration + 15);
  if (!sum.ok()) {
    f.error = "its simulator does not send with nothing answering (" + sum.error().message + ")";
    return f;
  }
  f.sent = sum->value("sent", uint64_t{0});
  f.rate = sum->value("rate", 0.0);
  if (f.sent == 0) f.error = "its simulator sends nothing until it is answered (a session first)";
  return f;
}

/// The gateway's counters a row reads before and after its simulator.
struct Snapshot {
  uint64_t accepted = 0;
  std::map<std::string, uint64_t> codec_failures;  ///< by reason
  CpuTimes cpu;
};

Snapshot snapshot(const Gw& gw) {
  return {
      totals_of(gw.http_port).reports_accepted,
      counter_by_label(http_get(gw.http_port, "/metrics"), "tianhe_codec_failures_total", "reason"),
      cpu_times(gw.child.pid)};
}

/// Runs one row: a gateway with the plan's tables (the model's codec set to `codec` unless
/// empty), its simulator at full rate against it.
ProtocolRow run_protocol(const runtime::ProtocolSpec& p, const runtime::ProtocolBenchPlan& plan,
                         const std::string& work, uint64_t devices, uint32_t shards,
                         double duration, const std::string& codec,
                         const std::vector<std::string>& extra) {
  ProtocolRow row;
  row.name = std::string(p.name);
  row.codec = codec;
  row.label = codec.empty() ? row.name : row.name + " " + fs::path(codec).filename().string();
  row.what = plan.what;
  std::string toml = plan.toml;
  if (!codec.empty()) {
    auto t = with_codec(plan.toml, codec);
    if (!t.ok()) {
      row.error = t.error().message;
      return row;
    }
    toml = std::move(*t);
  }
  // A gateway of its own per row: a codec row starts from the same empty log and sessions.
  std::string gw_name = row.name + "-gateway";
  for (const char c : codec.empty() ? std::string() : "-" + fs::path(codec).filename().string()) {
    gw_name += std::isalnum(static_cast<unsigned char>(c)) != 0 ? c : '_';
  }
  Gw gw;
  if (auto r = start_gateway(gw, work, gw_name, devices, shards, "batch", toml); !r.ok()) {
    row.error = r.error().message;
    return row;
  }
  const auto port = gw.ports.find(row.name);
  if (port == gw.ports.end() || port->second == 0) {
    row.error =
        "the gateway did not start " + row.name + "; see " + work + "/" + gw_name + "/serve.log";
    return row;
  }
  // What the gateway took in, beside what the simulator saw acknowledged: a protocol whose
  // acknowledgement is not its reports' durability (a packet forwarder's PUSH_ACK) is judged by
  // what became durable. Its CPU time over the same span gives the per-core figure.
  const Snapshot before = snapshot(gw);
  auto sum = run_simulate_child(
      simulate_command(row.name, port->second, duration, plan.simulate_args, extra),
      work + "/" + gw_name + "/simulate.log", duration * 3 + 120);
  if (!sum.ok()) {
    row.error = sum.error().message;
    return row;
  }
  const Snapshot after = snapshot(gw);
  const Json& j = *sum;
  row.stored = after.accepted - before.accepted;
  for (const auto& [reason, n] : after.codec_failures) {
    const auto b = before.codec_failures.find(reason);
    const uint64_t d = n - (b == before.codec_failures.end() ? 0 : b->second);
    if (d == 0) continue;
    row.failures_by_reason[reason] = d;
    row.codec_failures += d;
  }
  row.gateway_cpu_s = after.cpu.process - before.cpu.process;
  row.shard_cpu_s = after.cpu.shards - before.cpu.shards;
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

/// A row as JSON (`reference`: the report protocol's rate; `floor`: its simulator's).
Json row_json(const ProtocolRow& r, double reference, const Floor& floor) {
  Json j = {{"what", r.what},
            {"acked_rate", r.acked_rate},
            {"sent", r.sent},
            {"acked", r.acked},
            {"lost", r.lost},
            {"stored", r.stored},
            {"stored_rate", r.stored_rate},
            {"gateway_cpu_s", r.gateway_cpu_s},
            {"stored_per_gateway_cpu_s", r.per_core_s()},
            {"shard_cpu_s", r.shard_cpu_s},
            {"stored_per_shard_cpu_s", r.per_shard_core_s()},
            {"codec_failures", r.codec_failures},
            {"codec_failures_by_reason", r.failures_by_reason},
            {"ack_latency_ms", {{"p50", r.p50_ms}, {"p99", r.p99_ms}}},
            {"ratio_to_report", reference > 0 ? r.stored_rate / reference : 0.0}};
  if (!r.codec.empty()) j["codec"] = r.codec;
  if (floor.error.empty()) {
    j["ratio_to_simulator_floor"] = floor.rate > 0 ? r.stored_rate / floor.rate : 0.0;
  }
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

Json floor_json(const Floor& f) {
  Json j = {{"sent", f.sent}, {"sent_per_s", f.rate}};
  if (!f.error.empty()) j["error"] = f.error;
  return j;
}

/// The table: one line per row, then the codec comparison when one ran.
void print_rows(const std::vector<ProtocolRow>& rows, const std::map<std::string, Floor>& floors,
                const ProtocolRow& report, const Floor& report_floor, const UdpFloor& udp) {
  std::printf("\n%-22s %9s %9s %6s %6s %6s %10s %10s %9s %6s %8s %8s\n", "protocol", "acked/s",
              "stored/s", "x rep", "gw CPU", "shards", "per gw s", "per shd s", "floor/s", "x flr",
              "p50 ms", "p99 ms");
  auto line = [](const ProtocolRow& r, const Floor& f, double reference) {
    if (!r.error.empty()) {
      std::printf("%-22s failed: %s\n", r.label.c_str(), r.error.c_str());
      return;
    }
    char floor_rate[32] = "-", floor_ratio[32] = "-";
    if (f.error.empty() && f.rate > 0) {
      std::snprintf(floor_rate, sizeof floor_rate, "%.0f", f.rate);
      std::snprintf(floor_ratio, sizeof floor_ratio, "%.2f", r.stored_rate / f.rate);
    }
    std::printf("%-22s %9.0f %9.0f %6.2f %6.2f %6.2f %10.0f %10.0f %9s %6s %8.2f %8.2f\n",
                r.label.c_str(), r.acked_rate, r.stored_rate,
                reference > 0 ? r.stored_rate / reference : 0.0, r.gateway_cpu_s, r.shard_cpu_s,
                r.per_core_s(), r.per_shard_core_s(), floor_rate, floor_ratio, r.p50_ms, r.p99_ms);
    std::printf("%-22s   %s\n", "", r.what.c_str());
  };
  line(report, report_floor, report.stored_rate);
  for (const ProtocolRow& r : rows) line(r, floors.at(r.name), report.stored_rate);
  std::printf(
      "(stored/s per gateway CPU-second, all threads, and per shard-thread CPU-second; "
      "x flr: stored/s over the simulator's own sending rate to a discarding socket)\n");
  for (const auto& [name, f] : floors) {
    if (!f.error.empty()) std::printf("  %s floor: %s\n", name.c_str(), f.error.c_str());
  }
  if (!udp.error.empty()) {
    std::printf("  UDP request/reply floor: %s\n", udp.error.c_str());
  } else {
    // What a protocol that answers every message with a datagram of its own can reach here.
    std::printf(
        "  UDP request/reply floor (the kernel alone: one datagram in, one reply out, %.1f us "
        "of the answering thread per exchange): %.0f/s\n",
        udp.server_us_per_exchange(), udp.exchanges_per_s);
    for (const ProtocolRow& r : rows) {
      if (r.error.empty() && udp.exchanges_per_s > 0) {
        std::printf("    %s: x %.2f of it\n", r.label.c_str(), r.stored_rate / udp.exchanges_per_s);
      }
    }
  }
  for (const ProtocolRow& r : rows) {
    if (r.error.empty() && r.codec_failures > 0) {
      std::string why;
      for (const auto& [reason, n] : r.failures_by_reason) {
        why += (why.empty() ? "" : ", ") + reason + " " + std::to_string(n);
      }
      std::printf("  %s: %llu payloads its codec could not decode, dead-lettered (%s)\n",
                  r.label.c_str(), static_cast<unsigned long long>(r.codec_failures), why.c_str());
    }
  }
}

/// What the command line asked for.
struct ProtocolsOptions {
  double seconds = 10;
  uint64_t devices = 10000;
  uint32_t shards = 1, cores = 1;
  bool json_only = false, remove_work = false;
  std::string work, only, codec, versus;
  std::vector<std::string> simulate_extra;
  /// Whether `name` is one of --protocol's (all when it is empty).
  bool wanted(std::string_view name) const {
    if (only.empty()) return true;
    for (size_t b = 0; b <= only.size();) {
      size_t e = only.find(',', b);
      if (e == std::string::npos) e = only.size();
      if (only.compare(b, e - b, name) == 0) return true;
      b = e + 1;
    }
    return false;
  }
};

constexpr const char* kHelp =
    R"(tianhe bench --protocols — each protocol's rate next to the report protocol's

Measures, in one run: the report protocol's single-report rate (acks on, durability batch, the
store on), then for each protocol that has a bench plan a gateway of its own driven by that
protocol's simulator (`tianhe simulate --protocol NAME`) as fast as it goes, and prints each
rate as a ratio to the report protocol's. For every row it also prints the gateway process's CPU
seconds during the run (utime + stime, every thread) and the reports stored per gateway
CPU-second, and it measures each simulator's floor first: the same simulator against a socket
that discards (nothing answers), whose sending rate bounds the row on a machine the simulator
shares with the gateway ("x floor" = stored/s over that rate).

Options:
  --duration S        seconds per phase (default 10)
  --devices N         registered devices (default 10000)
  --shards N          gateway shards (default: cores - 1, at least 1; the simulators get the rest)
  --protocol NAME     only this protocol (repeatable as a comma list: mqtt_sn,lorawan)
  --codec FILE        also run each chosen protocol's row with its model's codec set to FILE
                      (a .js file, or any file type a registered codec loads, e.g. .wasm), next
                      to the same row with the --versus codec, in the same run
  --versus NAME       the codec of the comparison row (default: the plan's own, e.g. raw)
  --simulate-args "A" more arguments for every run of the protocols' simulators (floors too),
                      e.g. a payload format the codecs expect
  --work-dir DIR      where the gateways keep their data (default: a new temporary directory)
  --json              print the figures as JSON only

Examples:
  tianhe bench --protocols --duration 10
  tianhe bench --protocols --protocol lorawan --codec test/codecs/js/bench_th12.js)";

/// Parses the command line into `o`; returns -1 to go on, else the exit status.
int protocols_options(int argc, char** argv, ProtocolsOptions& o) {
  if (core::wants_help(argc, argv)) {
    std::puts(kHelp);
    return 0;
  }
  auto args = core::Args::parse(argc, argv, 2, {"protocols", "json"},
                                {"duration", "devices", "shards", "protocol", "work-dir", "codec",
                                 "versus", "simulate-args"});
  if (!args.ok()) return core::usage_error("bench", args.error().message);
  auto duration = args->seconds("duration", 10);
  auto devices = args->u64("devices", 10000, 1, 100'000'000);
  o.cores = std::max(1u, std::thread::hardware_concurrency());
  auto shards = args->u64("shards", std::max(1u, o.cores - 1), 1, 1024);
  if (!duration.ok()) return core::usage_error("bench", duration.error().message);
  if (!devices.ok()) return core::usage_error("bench", devices.error().message);
  if (!shards.ok()) return core::usage_error("bench", shards.error().message);
  o.seconds = *duration;
  o.devices = *devices;
  o.shards = static_cast<uint32_t>(*shards);
  o.json_only = args->has("json");
  o.only = args->str("protocol");
  o.versus = args->str("versus");
  o.simulate_extra = split_words(args->str("simulate-args"));
  if (const std::string codec = args->str("codec"); !codec.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(codec, ec)) {
      return core::usage_error("bench", "--codec " + codec + ": no such file");
    }
    o.codec = fs::absolute(codec, ec).lexically_normal().string();
  } else if (!o.versus.empty()) {
    return core::usage_error("bench", "--versus needs --codec FILE (the row it is compared to)");
  }
  o.work = args->str("work-dir");
  o.remove_work = o.work.empty();
  if (o.work.empty()) {
    char tmpl[] = "/tmp/tianhe-bench-protocols-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return core::usage_error("bench", "cannot make a work dir");
    o.work = tmpl;
  }
  return -1;
}

/// The reference: the report protocol's single-report rate against a gateway of its own, and
/// its simulator's floor against a socket that discards.
Result<ProtocolRow> reference_row(const ProtocolsOptions& o, Floor& floor, Json& result) {
  {
    auto d = open_discard();
    if (!d.ok()) {
      floor.error = d.error().message;
    } else {
      auto s = protocols::report::run_simulator(sim(d->port, o.devices, 0, o.seconds, 1, true));
      if (s.ok()) {
        floor.sent = s->sent;
        floor.rate = s->rate;
      } else {
        floor.error = s.error().message;
      }
    }
  }
  ProtocolRow row;
  row.name = row.label = "report";
  row.what = "single-report datagrams, ack after durability";
  Gw gw;
  if (auto r = start_gateway(gw, o.work, "report-gateway", o.devices, o.shards); !r.ok()) {
    return r.error();
  }
  const Snapshot before = snapshot(gw);
  auto single =
      protocols::report::run_simulator(sim(gw.report_port, o.devices, 0, o.seconds, 1, true));
  if (!single.ok()) return make_error("report phase: " + single.error().message);
  const Snapshot after = snapshot(gw);
  row.stored = after.accepted - before.accepted;
  row.gateway_cpu_s = after.cpu.process - before.cpu.process;
  row.shard_cpu_s = after.cpu.shards - before.cpu.shards;
  // The reference's rate is what was acknowledged: every ack follows durability.
  row.acked_rate = row.stored_rate = single->acked_rate;
  row.sent = single->sent;
  row.acked = single->acked_ok;
  row.lost = single->lost;
  row.p50_ms = single->p50_ms;
  row.p99_ms = single->p99_ms;
  result["report"] = Json::parse(single->json());
  result["report"]["stored"] = row.stored;
  result["report"]["gateway_cpu_s"] = row.gateway_cpu_s;
  result["report"]["stored_per_gateway_cpu_s"] = row.per_core_s();
  result["report"]["shard_cpu_s"] = row.shard_cpu_s;
  result["report"]["stored_per_shard_cpu_s"] = row.per_shard_core_s();
  result["report"]["simulator_floor"] = floor_json(floor);
  if (floor.error.empty() && floor.rate > 0) {
    result["report"]["ratio_to_simulator_floor"] = row.stored_rate / floor.rate;
  }
  return row;
}

/// The codec comparison of one protocol: the user codec's row over the --versus row.
Json codec_comparison(const ProtocolRow& user, const ProtocolRow& builtin) {
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  return {{"codec", user.codec},
          {"versus", builtin.codec},
          {"stored_rate", user.stored_rate},
          {"versus_stored_rate", builtin.stored_rate},
          {"stored_per_gateway_cpu_s", user.per_core_s()},
          {"versus_stored_per_gateway_cpu_s", builtin.per_core_s()},
          {"stored_per_shard_cpu_s", user.per_shard_core_s()},
          {"versus_stored_per_shard_cpu_s", builtin.per_shard_core_s()},
          {"ratio_per_shard_cpu_s", ratio(user.per_shard_core_s(), builtin.per_shard_core_s())},
          {"ratio_end_to_end", ratio(user.stored_rate, builtin.stored_rate)},
          {"ratio_per_gateway_cpu_s", ratio(user.per_core_s(), builtin.per_core_s())}};
}

}  // namespace

int cmd_bench_protocols(int argc, char** argv) {
  ProtocolsOptions o;
  if (const int status = protocols_options(argc, argv, o); status >= 0) return status;
  auto say = [&](const std::string& s) {
    std::fprintf(o.json_only ? stderr : stdout, "%s\n", s.c_str());
    std::fflush(o.json_only ? stderr : stdout);
  };
  const std::string secs = std::to_string(static_cast<int>(o.seconds)) + " s";
  Json result;
  result["machine"] = {{"cores", o.cores}};
  result["shards"] = o.shards;
  result["devices"] = o.devices;
  say("[reference] report protocol: its simulator against a discarding socket, then a gateway "
      "(single-report datagrams, acks on, durability batch), " +
      secs + " each ...");
  Floor report_floor;
  auto report = reference_row(o, report_floor, result);
  if (!report.ok()) {
    std::fprintf(stderr, "tianhe bench: %s\n", report.error().message.c_str());
    return 1;
  }
  // The kernel's floor for protocols that answer each message with its own datagram.
  say("[reference] the kernel's UDP request/reply floor (one reply datagram per request), " + secs +
      " ...");
  UdpFloorOptions udp_options;
  udp_options.seconds = o.seconds;
  const UdpFloor udp = probe_udp_request_reply(udp_options);
  result["udp_request_reply_floor"] = {{"exchanges_per_s", udp.exchanges_per_s},
                                       {"exchanges", udp.exchanges},
                                       {"requests", udp.requests},
                                       {"resent_windows", udp.resent_windows},
                                       {"server_cpu_s", udp.server_cpu_s},
                                       {"client_cpu_s", udp.client_cpu_s},
                                       {"server_us_per_exchange", udp.server_us_per_exchange()}};
  if (!udp.error.empty()) result["udp_request_reply_floor"]["error"] = udp.error;
  std::vector<ProtocolRow> rows;
  std::map<std::string, Floor> floors;
  for (const auto& p : runtime::builtin_extensions().protocols()) {
    if (!p.bench || !o.wanted(p.name)) continue;
    const std::string name(p.name);
    const std::string dir = o.work + "/" + name;
    std::error_code ec;
    fs::create_directories(dir, ec);
    auto plan = p.bench(dir, o.devices);
    if (!plan.ok()) {
      ProtocolRow failed;
      failed.name = failed.label = name;
      failed.error = plan.error().message;
      floors[name].error = "no plan";
      rows.push_back(failed);
      continue;
    }
    // "[name] what, N s ...": one progress line per phase.
    auto phase = [&](const std::string& what) {
      std::string line = "[";
      line += name;
      line += "] ";
      line += what;
      line += ", ";
      line += secs;
      line += " ...";
      say(line);
    };
    phase("its simulator against a discarding socket (its floor)");
    const Floor& floor = floors[name] =
        run_floor(name, plan->simulate_args, o.simulate_extra, dir + "/floor", o.seconds);
    result["protocols"][name]["simulator_floor"] = floor_json(floor);
    std::string what = "its simulator at full rate against a gateway";
    if (!o.codec.empty()) {
      what += ", model codec ";
      what += o.versus.empty() ? "as planned" : o.versus;
    }
    phase(what);
    rows.push_back(
        run_protocol(p, *plan, o.work, o.devices, o.shards, o.seconds, o.versus, o.simulate_extra));
    result["protocols"][name].update(row_json(rows.back(), report->stored_rate, floor));
    if (udp.exchanges_per_s > 0) {
      result["protocols"][name]["ratio_to_udp_request_reply_floor"] =
          rows.back().stored_rate / udp.exchanges_per_s;
    }
    if (o.codec.empty()) continue;
    if (!with_codec(plan->toml, o.codec).ok()) {
      say("[" + name + "] its bench plan names no model codec: no --codec row");
      continue;
    }
    const size_t versus_at = rows.size() - 1;
    phase("the same with the model codec " + o.codec);
    rows.push_back(
        run_protocol(p, *plan, o.work, o.devices, o.shards, o.seconds, o.codec, o.simulate_extra));
    if (rows[versus_at].codec.empty()) rows[versus_at].codec = "(plan's own)";
    if (!rows.back().error.empty() || !rows[versus_at].error.empty()) {
      const std::string& e = rows.back().error.empty() ? rows[versus_at].error : rows.back().error;
      result["codecs"][name] = {{"codec", o.codec}, {"error", e}};
      continue;
    }
    result["codecs"][name] = codec_comparison(rows.back(), rows[versus_at]);
    result["codecs"][name]["row"] = row_json(rows.back(), report->stored_rate, floor);
  }
  if (o.remove_work) fs::remove_all(o.work);
  if (o.json_only) {
    std::printf("%s\n", result.dump(2).c_str());
    return 0;
  }
  // "x report" compares what became durable: for most protocols that is what was acknowledged,
  // but a packet forwarder's PUSH_ACK only says a datagram arrived.
  print_rows(rows, floors, *report, report_floor, udp);
  bool compared = false;
  if (result.contains("codecs")) {
    const Json& codecs = result["codecs"];
    for (auto it = codecs.begin(); it != codecs.end(); ++it) {
      compared = compared || !it->contains("error");
    }
  }
  if (compared) {
    std::printf("\n%-10s %-20s %10s %12s %12s   %s\n", "protocol", "model codec", "stored/s",
                "per gw CPU-s", "per shard-s",
                "(user codec over the built-in: end to end, per gw "
                "CPU-s, per shard CPU-s)");
    for (const auto& [name, c] : result["codecs"].items()) {
      if (c.contains("error")) continue;  // its row above says why
      std::printf("%-10s %-20s %10.0f %12.0f %12.0f   x %.2f, x %.2f, x %.2f\n", name.c_str(),
                  fs::path(c["codec"].get<std::string>()).filename().c_str(),
                  c["stored_rate"].get<double>(), c["stored_per_gateway_cpu_s"].get<double>(),
                  c["stored_per_shard_cpu_s"].get<double>(), c["ratio_end_to_end"].get<double>(),
                  c["ratio_per_gateway_cpu_s"].get<double>(),
                  c["ratio_per_shard_cpu_s"].get<double>());
      std::printf("%-10s %-20s %10.0f %12.0f %12.0f\n", "", c["versus"].get<std::string>().c_str(),
                  c["versus_stored_rate"].get<double>(),
                  c["versus_stored_per_gateway_cpu_s"].get<double>(),
                  c["versus_stored_per_shard_cpu_s"].get<double>());
    }
  }
  std::printf("\n%s\n", result.dump().c_str());
  return 0;
}

}  // namespace tianhe::tools::bench
