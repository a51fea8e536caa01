// tianhe: the telemetry gateway's single executable.
#include <cstdio>
#include <cstring>
#include <string>

#include "app/commands.h"

namespace {

constexpr const char* kUsage = R"(tianhe — telemetry gateway for device fleets

Usage: tianhe <command> [options]     (tianhe <command> --help for a command's options)

Commands:
  serve          run the gateway (UDP reports in, durable log, embedded store, HTTP API)
  simulate       run a device fleet against a gateway and report what came back
%s  devices        list the device models and devices a config registers
  sinks          a running gateway's sinks: state, lag, deliveries, last error
  top            a running gateway's shards, slowest stages, codecs and sinks, live
  trace          where one report went: durable, delivered by each sink, or why not
  check-config   validate a config file without starting anything
  version        print the version

Examples:
  tianhe serve --config examples/tianhe.toml
  tianhe simulate --target 127.0.0.1:7700 --devices 1000 --rate 5000 --duration 10 --ack
  tianhe query --data-dir ./data --device 42 --from -1h
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    // The extensions' commands (`tianhe query` is the store's) are listed where they belong.
    std::string commands;
    for (const auto& c : tianhe::runtime::builtin_extensions().commands()) {
      if (c.summary.empty()) continue;  // hidden
      char line[160];
      std::snprintf(line, sizeof line, "  %-14s %.*s\n", std::string(c.name).c_str(),
                    static_cast<int>(c.summary.size()), c.summary.data());
      commands += line;
    }
    std::printf(kUsage, commands.c_str());
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "serve") return tianhe::app::cmd_serve(argc, argv);
  if (cmd == "simulate") return tianhe::app::cmd_simulate(argc, argv);
  if (cmd == "devices") return tianhe::app::cmd_devices(argc, argv);
  if (cmd == "sinks") return tianhe::app::cmd_sinks(argc, argv);
  if (cmd == "top") return tianhe::app::cmd_top(argc, argv);
  if (cmd == "trace") return tianhe::app::cmd_trace(argc, argv);
  if (cmd == "check-config") return tianhe::app::cmd_check_config(argc, argv);
  if (cmd == "version" || cmd == "--version") {
    std::printf("tianhe %s\n", TH_VERSION);
    return 0;
  }
  if (const auto* c = tianhe::runtime::builtin_extensions().command(cmd); c != nullptr) {
    return tianhe::app::cmd_extension(*c, argc, argv);
  }
  std::fprintf(stderr, "tianhe: unknown command '%s'; run 'tianhe --help' for the list\n",
               cmd.c_str());
  return 2;
}
