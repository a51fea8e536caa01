// `tianhe bench --storm`: a reconnect storm of MQTT-SN devices and a webhook sink outage at the
// same time, against one gateway child, sampled once a second (storm_bench.cpp says why).
#pragma once

namespace tianhe::tools::bench {

/// `tianhe bench --storm` (argv[1] is "bench"); returns the exit status.
int cmd_bench_storm(int argc, char** argv);

}  // namespace tianhe::tools::bench
