#include "protocols/modbus/modbus_simulator.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "core/args.h"
#include "core/clock.h"
#include "core/config_table.h"
#include "protocols/modbus/modbus_server.h"

namespace tianhe::protocols::modbus {
namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop.store(true);
}

}  // namespace

std::string simulator_config(const std::string& address, uint64_t first, uint64_t devices,
                             const std::string& interval) {
  // Values follow simulated_register(): holding 0 = 31*0 + 7*unit + 2000 + tick, and so on.
  std::string s =
      "[[models]]\nname = \"sim_plc\"\n"
      "[[models.metrics]]\nname = \"counter\"\ntype = \"int64\"\n"
      "modbus = { table = \"holding\", address = 0, type = \"uint16\" }\n"
      "[[models.metrics]]\nname = \"level\"\ntype = \"double\"\nunit = \"m\"\n"
      "modbus = { table = \"holding\", address = 10, type = \"int32\", scale = 0.001 }\n"
      "[[models.metrics]]\nname = \"raw\"\ntype = \"double\"\n"
      "modbus = { table = \"input\", address = 0, type = \"uint16\", scale = 0.1, offset = -40 }\n"
      "[[models.metrics]]\nname = \"pump\"\ntype = \"bool\"\n"
      "modbus = { table = \"coil\", address = 0 }\n"
      "[[devices]]\nid = " +
      std::to_string(first) + "\ncount = " + std::to_string(devices) +
      "\ntenant = \"demo\"\nmodel = \"sim_plc\"\n\n[protocols.modbus]\nenabled = true\n";
  for (uint64_t i = 0; i < devices; ++i) {
    s += "[[protocols.modbus.devices]]\ndevice = ";
    s += std::to_string(first + i);
    s += "\naddress = \"";
    s += address;
    s += "\"\nunit = ";
    s += std::to_string(1 + i % 247);
    s += "\ninterval = \"";
    s += interval;
    s += "\"\n";
  }
  return s;
}

int cmd_simulate(int argc, char** argv) {
  if (core::wants_help(argc, argv)) {
    std::puts(R"(tianhe simulate --protocol modbus — local Modbus TCP servers for N devices

Starts a Modbus TCP server (FC 1-4, every unit id, every address; register values change each
second) and prints its address and the config that polls N devices there (one connection and
one unit id each). Runs until --duration passes or Ctrl-C.

Options:
  --listen HOST:PORT   where to listen (default 127.0.0.1:0: a free port)
  --devices N          devices in the printed config (default 10); ids from --first-device (1)
  --interval D         their poll interval in the config (default 1s)
  --threads N          server threads sharing the port (default 1)
  --duration S         seconds to run (default 0: until interrupted)
  --config FILE        write the config snippet to FILE instead of printing it
  --json               print {"address", "requests", "elapsed_s"} when done
  --quiet              print only the address
Example:
  tianhe simulate --protocol modbus --devices 1000 --interval 100ms --config modbus.toml)");
    return 0;
  }
  auto args = core::Args::parse(
      argc, argv, 2, {"json", "quiet"},
      {"listen", "devices", "first-device", "interval", "threads", "duration", "config"});
  if (!args.ok()) return core::usage_error("simulate", args.error().message);
  auto ep = config::parse_endpoint(args->str("listen", "127.0.0.1:0"), "--listen");
  if (!ep.ok()) return core::usage_error("simulate", ep.error().message);
  auto devices = args->u64("devices", 10, 1, 1'000'000);
  auto first = args->u64("first-device", 1, 1);
  auto threads = args->u64("threads", 1, 1, 64);
  auto duration = args->seconds("duration", 0);
  for (const auto* r : {&devices, &first, &threads}) {
    if (!r->ok()) return core::usage_error("simulate", r->error().message);
  }
  if (!duration.ok()) return core::usage_error("simulate", duration.error().message);
  const std::string interval = args->str("interval", "1s");
  int64_t interval_ns = 0;
  if (std::string e = config::parse_duration(interval, interval_ns); !e.empty()) {
    return core::usage_error("simulate", "--interval: " + e);
  }
  auto server = ModbusServer::start(
      {.host = ep->host, .port = ep->port, .threads = static_cast<uint32_t>(*threads)});
  if (!server.ok()) {
    std::fprintf(stderr, "tianhe simulate: %s\n", server.error().message.c_str());
    return 1;
  }
  const std::string host =
      ep->host.find(':') != std::string::npos ? "[" + ep->host + "]" : ep->host;
  const std::string address = host + ":" + std::to_string((*server)->port());
  const std::string snippet = simulator_config(address, *first, *devices, interval);
  const bool quiet = args->has("quiet");
  std::printf("modbus server listening on %s (%llu thread(s))\n", address.c_str(),
              static_cast<unsigned long long>(*threads));
  if (args->has("config")) {
    std::FILE* f = std::fopen(args->str("config", "").c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "tianhe simulate: --config: cannot write %s\n",
                   args->str("config", "").c_str());
      return 1;
    }
    std::fputs(snippet.c_str(), f);
    std::fclose(f);
    if (!quiet)
      std::printf("config for %llu device(s) written to %s\n",
                  static_cast<unsigned long long>(*devices), args->str("config", "").c_str());
  } else if (!quiet) {
    std::printf("# config for %llu device(s):\n%s", static_cast<unsigned long long>(*devices),
                snippet.c_str());
  }
  std::fflush(stdout);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  const int64_t start = core::mono_ns();
  const int64_t end = *duration > 0 ? start + static_cast<int64_t>(*duration * 1e9) : INT64_MAX;
  while (!g_stop.load() && core::mono_ns() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  (*server)->stop();
  const double elapsed = static_cast<double>(core::mono_ns() - start) / 1e9;
  if (args->has("json")) {
    std::printf("{\"address\":\"%s\",\"requests\":%llu,\"elapsed_s\":%.3f}\n", address.c_str(),
                static_cast<unsigned long long>((*server)->requests()), elapsed);
  } else if (!quiet) {
    std::printf("answered %llu requests in %.1f s\n",
                static_cast<unsigned long long>((*server)->requests()), elapsed);
  }
  return 0;
}

}  // namespace tianhe::protocols::modbus
