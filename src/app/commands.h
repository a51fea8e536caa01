// The subcommands of the tianhe executable. Each takes argc/argv (argv[1] is its name) and
// returns the process exit code: 0 ok, 1 runtime failure, 2 usage or configuration error.
#pragma once

#include "runtime/extensions.h"

namespace tianhe::app {

int cmd_serve(int argc, char** argv);
int cmd_simulate(int argc, char** argv);
int cmd_check_config(int argc, char** argv);
int cmd_devices(int argc, char** argv);
/// `tianhe sinks`: asks a running gateway for its sinks' state (GET /api/v1/sinks).
int cmd_sinks(int argc, char** argv);
/// `tianhe top`: a running gateway's self-diagnosis (GET /debug/top), redrawn every second.
int cmd_top(int argc, char** argv);
/// `tianhe trace DEVICE SEQ`: where a report went (the running gateway's fate tables).
int cmd_trace(int argc, char** argv);
/// A command an extension registered (runtime::CommandSpec), with the configuration loader.
int cmd_extension(const runtime::CommandSpec& command, int argc, char** argv);

}  // namespace tianhe::app
