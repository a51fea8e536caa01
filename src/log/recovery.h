// Recovery of a shard log's last segment at open: every frame is validated, and a torn or
// never-synced tail is ended (format version 2) or zeroed (version 1). Internal to the log.
#pragma once

#include <cstdint>
#include <string>

#include "core/result.h"
#include "log/shard_log.h"

namespace tianhe::log::detail {

/// What recovery found in the last segment.
struct Recovered {
  uint64_t end = 0;                    ///< file position just past the last valid record
  uint64_t file_bytes = 0;             ///< size of the file (preallocated: larger than `end`)
  uint32_t version = kSegmentVersion;  ///< the segment's format version
  /// Version 2: bytes after `end` are not zeros (a torn write, or what a recycled file held
  /// before). The segment takes no more records: the next append starts a new segment at `end`.
  bool ended = false;
};

/// Scans the last segment (starting at offset `start`) from its header, validating every frame.
/// The records end at the first frame that is not valid: an all-zero header in a preallocated
/// segment, a bad frame, or the end of the file. Non-zero bytes after that point are a torn or
/// never-synced write, or (version 2) the old contents of a recycled file. Version 2 leaves them
/// and ends the segment there (Recovered::ended). Version 1 overwrites them with zeros (so that
/// they can never be mistaken for records later) and counts them.
Result<Recovered> recover_segment(int fd, const std::string& path, uint64_t start,
                                  uint32_t max_record_bytes, LogStats& stats);

}  // namespace tianhe::log::detail
