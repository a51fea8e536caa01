// The disk's floor under the acknowledgement latency: what a group-committed log on this disk
// would give with no other work on the machine. `tianhe bench` measures it beside the gateway's
// ack latency, so a run shows how much of that latency is the disk's and how much the gateway's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tianhe::tools::bench {

/// One fdatasync: when it began and ended (ns on any one clock).
struct Flush {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
};

/// The ack latency that a sequence of group-commit flushes gives by itself. A report written at
/// time t is durable at the end of the first flush that starts at or after t (one that started
/// before t may not cover it), so over arrivals spread evenly between the first and the last
/// flush's start, its latency is end(j) - t for t in (start(j-1), start(j)]. Returns the
/// `q`-quantile (0 < q < 1) of that latency in ms, computed exactly; 0 with fewer than two
/// flushes. `flushes` must be in order, each starting at or after the previous one's start.
double ack_floor_quantile_ms(const std::vector<Flush>& flushes, double q);

/// Fills the first `bytes` of `fd` with real zeros and syncs them, as the log preallocates a
/// segment (an overwrite then needs no metadata in its fdatasync); stops at the first error.
void write_zeros_and_sync(int fd, int64_t bytes);

/// Measured by probe_disk_floor().
struct DiskFloor {
  double bytes_per_s = 0;  ///< written
  double flushes = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;  ///< ack_floor_quantile_ms of the flushes
  double share_over_2ms = 0;                   ///< of the time, in flushes longer than 2 ms
  double max_flush_ms = 0;
};

/// The disk under a log's write pattern, with nothing else running: for `seconds`, one thread
/// appends `bytes_per_s` in small writes to a preallocated, zero-filled file in `dir` (as a
/// shard appends its receive batches), another runs a group-commit loop (an fdatasync as soon as
/// anything was written since the previous one began), and every flush is timed. The file is
/// removed afterwards. All zeros when the file cannot be created.
DiskFloor probe_disk_floor(const std::string& dir, double bytes_per_s, double seconds);

}  // namespace tianhe::tools::bench
