#include "codecs/raw/raw_codec.h"

#include <algorithm>

namespace tianhe::codecs::raw {

using pipeline::DecodeStatus;

RawCodec::RawCodec(RawCodecLimits limits)
    : limits_(limits), text_(new char[std::max<uint32_t>(limits.text_bytes, 1)]) {}

DecodeStatus RawCodec::decode(std::span<const uint8_t> payload,
                              const pipeline::CodecContext& context, core::ReportBatch& batch,
                              core::Report& r) noexcept {
  (void)context;
  if (payload.size() > limits_.max_payload_bytes) return DecodeStatus::kTooLarge;
  const size_t hex_size = payload.size() * 2;
  if (limits_.text_bytes - text_used_ < hex_size) return DecodeStatus::kTooLarge;
  if (batch.metrics_free() < 2) return DecodeStatus::kTooManyMetrics;
  // A 16-entry table: two lookups per byte, no formatting call, nothing allocated.
  static constexpr char kHex[] = "0123456789abcdef";
  char* out = text_.get() + text_used_;
  for (size_t i = 0; i < payload.size(); ++i) {
    out[2 * i] = kHex[payload[i] >> 4];
    out[2 * i + 1] = kHex[payload[i] & 0x0F];
  }
  core::Metric* hex = batch.add_metric(r);
  core::Metric* size = hex == nullptr ? nullptr : batch.add_metric(r);
  if (size == nullptr) {
    batch.truncate_metrics(r);
    return DecodeStatus::kTooManyMetrics;
  }
  text_used_ += static_cast<uint32_t>(hex_size);
  hex->name = "payload";
  hex->value.type = core::ValueType::kString;
  hex->value.str = {out, hex_size};
  size->name = "payload_bytes";
  size->value.type = core::ValueType::kInt64;
  size->value.i64 = static_cast<int64_t>(payload.size());
  return DecodeStatus::kOk;
}

}  // namespace tianhe::codecs::raw
