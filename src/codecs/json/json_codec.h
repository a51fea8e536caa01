// The json payload codec ("json"): a payload that is one JSON object becomes the report's
// metrics, nested objects flattened to dotted names ("env.temp") and arrays to indexed ones
// ("vals.0"). README.md in this folder gives the rules. One JsonCodec per shard (its thread
// only); its text storage (dotted names, unescaped strings) lives until batch_done().
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "core/json_scan.h"
#include "pipeline/codec.h"

namespace tianhe::codecs::json {

/// The limits of one decode (defaults: the device model's limits).
struct JsonCodecLimits {
  uint32_t max_depth = 16;           ///< nested objects and arrays, the top object included
  uint32_t max_metrics = 64;         ///< metrics in one report (a model has at most 64)
  uint32_t max_name_bytes = 64;      ///< a flattened name's bytes
  uint32_t max_string_bytes = 1024;  ///< a string value's bytes, unescaped
  uint32_t text_bytes = 256 * 1024;  ///< names and strings composed per batch (before batch_done)
};

/// Flattens one JSON object per payload into metrics (see the file comment).
class JsonCodec final : public pipeline::Codec {
 public:
  /// A codec with its text storage allocated once, here.
  explicit JsonCodec(JsonCodecLimits limits = {});
  /// Appends the payload's metrics to `r` (all or nothing).
  pipeline::DecodeStatus decode(std::span<const uint8_t> payload,
                                const pipeline::CodecContext& context, core::ReportBatch& batch,
                                core::Report& r) noexcept override;
  /// Reuses the text storage: the names and strings of the batch just appended are no longer
  /// read.
  void batch_done() noexcept override { text_used_ = 0; }
  /// Bytes of text storage in use (tests).
  uint32_t text_used() const noexcept { return text_used_; }

 private:
  /// One open object or array: the length of its path prefix and, for an array, the next index.
  struct Level {
    uint32_t prefix = 0;
    uint32_t index = 0;
    bool array = false;
  };

  pipeline::DecodeStatus walk(std::string_view text, core::ReportBatch& batch,
                              core::Report& r) noexcept;
  pipeline::DecodeStatus emit(const core::JsonToken& v, std::string_view name,
                              core::ReportBatch& batch, core::Report& r) noexcept;
  /// Copies `s` into the text storage; empty view (and false) when it is full.
  bool keep(std::string_view s, std::string_view& out) noexcept;

  JsonCodecLimits limits_;
  std::unique_ptr<char[]> text_;
  uint32_t text_used_ = 0;
  static constexpr uint32_t kMaxPath = 256;
  char path_[kMaxPath];  ///< the dotted name being built
  Level levels_[core::JsonScanner::kMaxDepth + 1];
};

}  // namespace tianhe::codecs::json
