// What `tianhe bench`'s phases share: gateways and helpers started as child processes of this
// executable (by PID only), their ready files and HTTP API, the benchmark's configuration.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/result.h"
#include "protocols/report/report_simulator.h"
#include "runtime/totals.h"
#include "transports/udp_socket.h"

namespace tianhe::tools::bench {

/// A child process we started; terminated by its PID only.
struct Child {
  pid_t pid = -1;
  /// SIGTERM, then SIGKILL after 6 s; waits.
  void terminate();
  ~Child() { terminate(); }
};

/// The CPU time a process has used so far (utime + stime of /proc/<pid>/stat), seconds.
struct CpuTimes {
  double process = -1;  ///< every thread, those that exited too; -1 when it cannot be read
  double shards = 0;    ///< the shard threads ("shard-N": receive to log append), live ones
  double exporter = 0;  ///< the OTLP exporter thread ("otlp-export"), while it runs
  std::map<std::string, double> threads;  ///< live threads by name (same names summed)
};
/// `pid`'s CPU times now.
CpuTimes cpu_times(pid_t pid);

/// A socket on 127.0.0.1 that nobody reads: the kernel drops what does not fit its small
/// buffer, nothing answers, and no process competes with a sender for the cores.
struct Discard {
  transports::UdpSocket socket;
  uint16_t port = 0;
};
/// Opens a Discard.
Result<Discard> open_discard();

/// `toml` with the value of its first `codec = ...` line (a [[models]] entry's) set to `codec`,
/// a built-in name or a file path, written as a TOML basic string; an error when it has none.
Result<std::string> with_codec(const std::string& toml, const std::string& codec);
/// The samples of the counter `name` in a Prometheus text page, summed by the value of their
/// label `label` (samples without it under "").
std::map<std::string, uint64_t> counter_by_label(const std::string& page, const std::string& name,
                                                 const std::string& label);
/// `s` split at whitespace (--simulate-args).
std::vector<std::string> split_words(const std::string& s);

/// Starts this executable with `args` (args[0] is a name), stdout and stderr to `log_path`.
Result<pid_t> spawn(const std::vector<std::string>& args, const std::string& log_path);
/// Waits for a "ready file" holding the ports a child bound.
Result<std::vector<uint32_t>> wait_ready(const std::string& path, pid_t pid, double timeout_s);
/// GET `path` from the gateway's HTTP port on loopback: the body of a 200, else "".
std::string http_get(uint16_t port, const std::string& path);
/// The gateway's running totals (GET /debug/totals), typed; empty totals (and a message) when
/// it cannot be read.
runtime::Totals totals_of(uint16_t http_port);
/// The benchmark gateway's configuration: `devices` env_sensor devices, the store on, and
/// `extra_toml` (more tables: sinks) appended.
std::string bench_config(const std::string& dir, uint64_t devices, uint32_t shards,
                         const std::string& durability = "batch",
                         const std::string& extra_toml = "");

struct Gw {
  Child child;
  uint16_t report_port = 0;
  uint16_t http_port = 0;
  std::map<std::string, uint16_t> ports;  ///< each running protocol's port, by name
};

/// Starts a gateway in work/name with bench_config(); fills `gw` with its PID and ports.
Result<void> start_gateway(Gw& gw, const std::string& work, const std::string& name,
                           uint64_t devices, uint32_t shards,
                           const std::string& durability = "batch",
                           const std::string& extra_toml = "");
/// Simulator options for a phase (no progress lines, 1 s drain).
protocols::report::SimulatorOptions sim(uint16_t port, uint64_t devices, double rate,
                                        double duration, uint32_t batch, bool ack);

}  // namespace tianhe::tools::bench
