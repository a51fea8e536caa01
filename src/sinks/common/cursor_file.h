// A sink's cursors in a local file, for destinations that cannot hold them in the same
// transaction as the data (a NATS stream, a webhook): "<key> <value>" lines ("shard 0 1234",
// and any named numbers the sink keeps beside them), replaced atomically (write, fsync, rename,
// fsync of the directory), so after a crash the file holds either the old or the new cursors.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"
#include "sinks/common/log_consumer.h"

namespace tianhe::sinks {

struct CursorState {
  std::vector<uint64_t> shards;            ///< offset per shard (0: from the start)
  std::map<std::string, uint64_t> values;  ///< the sink's own numbers ("posted 77")
};

/// Reads `path` for `shards` shards; a missing file is the start of every log.
Result<CursorState> load_cursor_file(const std::string& path, uint32_t shards);
/// Replaces `path` atomically with `cursors` and `values`.
Result<void> save_cursor_file(const std::string& path, std::span<const ShardCursor> cursors,
                              const std::map<std::string, uint64_t>& values = {});

}  // namespace tianhe::sinks
