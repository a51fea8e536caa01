// The dead-letter file of a sink: records its destination refused for good (a row out of a
// column's range, a 4xx the endpoint repeats), one JSON line each under
// <data_dir>/dead-letter/<sink>.jsonl with the reason and the attempts made, so nothing
// acknowledged disappears silently and the rest of the flow goes on. Bounded: beyond
// max_bytes further records are counted as lost from the file, never buffered.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/report.h"
#include "core/result.h"
#include "pipeline/registry.h"

namespace tianhe::sinks {

class DeadLetter {
 public:
  /// The file for sink `sink_name` ("mysql.archive") under `data_dir`/dead-letter/.
  DeadLetter(const std::string& data_dir, const std::string& sink_name,
             uint64_t max_bytes = 256ull << 20);
  ~DeadLetter();
  DeadLetter(const DeadLetter&) = delete;
  DeadLetter& operator=(const DeadLetter&) = delete;

  /// Appends `r` with `reason` (the destination's words) and `attempts` (buffered until
  /// sync()). Call on the sink's thread only.
  void add(const core::Report& r, const pipeline::Registry* registry, std::string_view reason,
           uint32_t attempts);
  /// Writes and fsyncs what add() buffered. A sink calls it before it commits the cursors that
  /// pass the dead-lettered records, so a crash between the two loses none of them.
  Result<void> sync();

  const std::string& path() const noexcept { return path_; }
  /// Records written to the file (scrape thread may read).
  uint64_t records() const noexcept { return records_.load(std::memory_order_relaxed); }
  /// Records not written because the file reached max_bytes.
  uint64_t overflowed() const noexcept { return overflowed_.load(std::memory_order_relaxed); }

 private:
  std::string path_;
  uint64_t max_bytes_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string buffer_;
  uint64_t buffered_ = 0;
  std::atomic<uint64_t> records_{0};
  std::atomic<uint64_t> overflowed_{0};
};

}  // namespace tianhe::sinks
