// Clocks: wall time in nanoseconds for report timestamps, monotonic for latencies.
#pragma once

#include <cstdint>
#include <ctime>

namespace tianhe::core {

/// Wall-clock time, nanoseconds since the Unix epoch (CLOCK_REALTIME).
inline int64_t wall_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC), for latencies and deadlines.
inline int64_t mono_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace tianhe::core
