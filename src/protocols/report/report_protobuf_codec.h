// The report protobuf as a payload codec ("report"): a payload that is one Report
// message (proto/tianhe/v1/report.proto) becomes the report's metrics. For devices that publish
// the report protobuf over another transport (MQTT, MQTT-SN); the first pipeline::Codec.
#pragma once

#include "pipeline/codec.h"
#include "protocols/report/report_parser.h"

namespace tianhe::protocols::report {

class ReportProtobufCodec final : public pipeline::Codec {
 public:
  explicit ReportProtobufCodec(ParserLimits limits = {}) : limits_(limits) {}
  pipeline::DecodeStatus decode(std::span<const uint8_t> payload,
                                const pipeline::CodecContext& context, core::ReportBatch& batch,
                                core::Report& r) noexcept override;

 private:
  ParserLimits limits_;
};

}  // namespace tianhe::protocols::report
