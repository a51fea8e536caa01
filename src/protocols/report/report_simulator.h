// A device fleet for tests, demos and benchmarks: N devices send report datagrams at a target
// rate over UDP, optionally requesting acks, and the fleet measures what came back.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/result.h"

namespace tianhe::protocols::report {

/// What to simulate.
struct SimulatorOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7700;
  uint64_t devices = 500'000;
  uint64_t first_device_id = 1;
  double rate = 100'000;  ///< reports per second; 0 = as fast as possible
  double duration_s = 10;
  /// Stop once this many reports are sent, even before duration_s (0 = no limit): a test that
  /// needs an exact count whatever the scheduling sets this and a generous duration.
  uint64_t max_reports = 0;
  uint32_t batch = 1;     ///< reports per datagram (an edge gateway batching)
  bool ack = false;       ///< request acks
  uint32_t sockets = 64;  ///< source sockets (each is one "address" the gateway sees)
  double drain_s = 2;     ///< how long to wait for outstanding acks at the end
  uint64_t seed = 1;
  uint32_t invalid_every = 0;  ///< every Nth report breaks the model (0 = never)
  std::string acked_out;       ///< if set, write "device seq" of every OK-acked report here
  bool progress = true;        ///< print a line every second
  std::function<void(const std::string&)> progress_sink;  ///< where progress lines go
};

/// What the fleet saw.
struct SimulatorSummary {
  uint64_t sent = 0;  ///< reports sent
  uint64_t datagrams = 0;
  uint64_t ack_requested = 0;
  uint64_t acked_ok = 0;
  uint64_t rejected = 0;
  uint64_t busy = 0;
  uint64_t lost = 0;         ///< ack requested, never answered
  uint64_t send_errors = 0;  ///< sendmmsg refused (e.g. buffer full): not sent, not counted
  double elapsed_s = 0;
  double rate = 0;        ///< reports sent per second
  double acked_rate = 0;  ///< OK acks per second
  /// Ack latency: from the send to the ack's arrival at the device's socket (the kernel's
  /// receive timestamp), whenever the fleet's receiving thread got to read it.
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
  /// The same to the moment the fleet's receiving thread read the ack: adds the fleet's own
  /// scheduling delay (it shares the cores with the gateway in benchmarks).
  double read_p50_ms = 0, read_p99_ms = 0, read_p999_ms = 0, read_max_ms = 0;
  /// JSON object with every field.
  std::string json() const;
  /// Human-readable table.
  std::string text() const;
};

/// `tianhe simulate` for the report protocol (argv[1] is "simulate"); returns the exit status.
int cmd_simulate(int argc, char** argv);

/// Runs the fleet until duration elapses (or `stop` becomes true), then waits drain_s for acks.
Result<SimulatorSummary> run_simulator(const SimulatorOptions& options,
                                       const std::atomic<bool>* stop = nullptr);

}  // namespace tianhe::protocols::report
