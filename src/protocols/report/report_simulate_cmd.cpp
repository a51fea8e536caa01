// `tianhe simulate --protocol report`: a fleet of devices sending report datagrams, the report
// protocol's simulator (registered in report_protocol.cpp).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>

#include "core/args.h"
#include "core/config_table.h"
#include "protocols/report/report_simulator.h"

namespace tianhe::protocols::report {
namespace {

using core::Args;
using core::usage_error;
using core::wants_help;

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

Result<std::pair<std::string, uint16_t>> split_target(const std::string& t) {
  auto ep = config::parse_endpoint(t, "--target");
  if (!ep.ok()) return ep.error();
  return std::make_pair(ep->host, ep->port);
}

}  // namespace

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

}  // namespace tianhe::protocols::report
