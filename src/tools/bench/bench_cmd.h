// `tianhe bench`: the end-to-end benchmark of the report protocol's path (raw loopback
// ceiling, then gateways under the same load), and its hidden `bench-receiver`. Registered as
// commands by this folder's line in src/extensions.cmake (it needs protocols/report).
#pragma once

#include "runtime/extensions.h"

namespace tianhe::tools::bench {

/// `tianhe bench` (argv[1] is "bench"); returns the exit status.
int cmd_bench(int argc, char** argv, const runtime::CommandContext& context);
/// `tianhe bench --sinks` (sinks_bench.cpp): each sink's delivery rate next to its engine's
/// ceiling, and ingest with every sink on next to the store alone.
int cmd_bench_sinks(int argc, char** argv, const runtime::CommandContext& context);
/// `tianhe bench --protocols`: each protocol's rate next to the report protocol's.
int cmd_bench_protocols(int argc, char** argv);
/// `tianhe bench --tracing` (tracing_bench.cpp): what tracing costs per report and per span.
int cmd_bench_tracing(int argc, char** argv);
/// `tianhe bench-receiver`: a bare recvmmsg receiver that discards.
int cmd_bench_receiver(int argc, char** argv);

}  // namespace tianhe::tools::bench
