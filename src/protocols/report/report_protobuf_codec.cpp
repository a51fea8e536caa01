#include "protocols/report/report_protobuf_codec.h"

namespace tianhe::protocols::report {

pipeline::DecodeStatus ReportProtobufCodec::decode(std::span<const uint8_t> payload,
                                                   const pipeline::CodecContext& context,
                                                   core::ReportBatch& batch,
                                                   core::Report& r) noexcept {
  if (r.device_id == 0) r.device_id = context.device_id;
  switch (parse_report_message(payload, limits_, batch, r)) {
    case DropReason::kNone: return pipeline::DecodeStatus::kOk;
    case DropReason::kBatchFull:
    case DropReason::kTooManyMetrics: return pipeline::DecodeStatus::kTooManyMetrics;
    default: return pipeline::DecodeStatus::kMalformed;
  }
}

}  // namespace tianhe::protocols::report
