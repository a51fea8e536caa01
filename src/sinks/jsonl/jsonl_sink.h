// The JSON-lines file sink: every report as one JSON object per line, appended to a file. Useful
// on its own (feed a log shipper, keep a plain-text archive, debug a codec) and the worked
// example of docs/extending.md: one folder, one registration line.
//
// Delivery: each batch is appended and fsynced together with a cursor file ("<path>.cursor":
// the shards' log offsets and the data file's length at that point, replaced atomically). After
// a crash the file is cut back to the recorded length and the log replays from the recorded
// cursors, so every report is in the file exactly once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config_table.h"
#include "core/result.h"
#include "log/log_config.h"
#include "pipeline/registry.h"
#include "sinks/common/log_consumer.h"

namespace tianhe::sinks::jsonl {

/// `[sinks.jsonl]`
struct JsonlConfig {
  bool enabled = false;  ///< off by default: the store is the default sink
  std::string path;      ///< default: <data_dir>/reports.jsonl
  uint32_t batch_reports = 16384;
  std::chrono::milliseconds commit_interval{100};
};

/// The `[sinks.jsonl]` table.
config::ConfigTable config_table();

/// The sink's writer on the shared log consumer.
class JsonlWriter final : public SinkWriter {
 public:
  JsonlWriter(std::string path, std::shared_ptr<const pipeline::Registry> registry);
  ~JsonlWriter() override;
  Result<std::vector<uint64_t>> open(uint32_t shards) override;
  WriteStatus write(const Batch& batch, bool durable, std::string& error) override;
  void close() noexcept override;

 private:
  Result<void> save_cursors(std::span<const ShardCursor> cursors);

  std::string path_;
  std::shared_ptr<const pipeline::Registry> registry_;
  int fd_ = -1;
  uint64_t size_ = 0;  ///< bytes of the data file written so far
  std::string buffer_;
};

}  // namespace tianhe::sinks::jsonl
