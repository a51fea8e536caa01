// The shard log's settings (config `[log]`): what an acknowledged report survives, group commit,
// segment sizes and the backlog limit. Plain data, shared by every shard's log.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace tianhe::log {

/// Most recycled-segment slots a shard can keep (the range of log.recycle_segments).
inline constexpr uint32_t kMaxRecycledSegments = 32;

/// What an acknowledged report survives (config `log.durability`).
enum class Durability : uint8_t {
  kSync,   ///< fdatasync after every append batch, before its acks: survives power loss
  kBatch,  ///< group commit: one fdatasync per flush interval covers all appends; acks wait
           ///< for it: survives power loss (default)
  kNone,   ///< acks after write(2): survives a process crash (kill -9), not power loss
};

/// Parses "sync" | "batch" | "none".
Result<Durability> parse_durability(std::string_view s);
/// The config name of a durability mode ("sync", "batch", "none").
std::string_view durability_name(Durability d) noexcept;

/// Immutable log settings, shared by all shards.
struct LogConfig {
  std::string dir;  ///< root directory; shard N lives in dir/shard-N/
  Durability durability = Durability::kBatch;
  std::chrono::microseconds flush_interval{1000};  ///< longest wait before a group commit (an
                                                   ///< append normally starts one at once)
  /// Scheduler time slice the group-commit thread asks for (core::request_time_slice); 0 keeps
  /// the kernel's default.
  std::chrono::microseconds sync_time_slice{100};
  uint64_t segment_bytes = 64ull << 20;  ///< segment files are preallocated (zero-filled) to this
                                         ///< size; a segment rolls over before exceeding it
  uint64_t max_backlog_bytes = 8ull << 30;  ///< appends beyond the slowest cursor are refused
  uint32_t max_record_bytes = 4u << 20;     ///< largest record payload accepted
  /// Passed segments kept per shard to become later spares (renamed, nothing written), like a
  /// minimum WAL size; others are deleted. At most kMaxRecycledSegments.
  uint32_t recycle_segments = 4;
};

}  // namespace tianhe::log
