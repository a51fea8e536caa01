#include "pipeline/codec.h"

namespace tianhe::pipeline {

std::string_view decode_status_name(DecodeStatus s) noexcept {
  switch (s) {
    case DecodeStatus::kOk: return "ok";
    case DecodeStatus::kMalformed: return "malformed";
    case DecodeStatus::kTooManyMetrics: return "too_many_metrics";
    case DecodeStatus::kTooLarge: return "too_large";
    case DecodeStatus::kTimeout: return "timeout";
    case DecodeStatus::kOutOfMemory: return "out_of_memory";
    case DecodeStatus::kThrown: return "thrown";
    case DecodeStatus::kOutputTooLarge: return "output_too_large";
    case DecodeStatus::kCount: break;
  }
  return "unknown";
}

}  // namespace tianhe::pipeline
