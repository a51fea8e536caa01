// The raw payload codec ("raw"): any payload becomes two metrics, "payload" (its bytes as a
// lower-case hex string) and "payload_bytes" (its size, int64), for devices whose format the
// gateway does not know yet: the bytes are stored and a later decoder can read them. One RawCodec
// per shard (its thread only); the hex text lives in its storage until batch_done().
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "pipeline/codec.h"

namespace tianhe::codecs::raw {

/// The limits of the raw codec.
struct RawCodecLimits {
  uint32_t max_payload_bytes = 4096;  ///< a longer payload is kTooLarge (8 KiB of hex)
  uint32_t text_bytes = 256 * 1024;   ///< hex text composed per batch (before batch_done)
};

/// Stores a payload as hex (see the file comment).
class RawCodec final : public pipeline::Codec {
 public:
  /// A codec with its text storage allocated once, here.
  explicit RawCodec(RawCodecLimits limits = {});
  /// Appends "payload" and "payload_bytes" to `r` (both or neither).
  pipeline::DecodeStatus decode(std::span<const uint8_t> payload,
                                const pipeline::CodecContext& context, core::ReportBatch& batch,
                                core::Report& r) noexcept override;
  /// Reuses the text storage once the batch is appended.
  void batch_done() noexcept override { text_used_ = 0; }
  /// Bytes of text storage in use (tests).
  uint32_t text_used() const noexcept { return text_used_; }

 private:
  RawCodecLimits limits_;
  std::unique_ptr<char[]> text_;
  uint32_t text_used_ = 0;
};

}  // namespace tianhe::codecs::raw
