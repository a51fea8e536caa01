#include "pipeline/codec.h"

namespace tianhe::pipeline {

std::string_view decode_status_name(DecodeStatus s) noexcept {
  switch (s) {
    case DecodeStatus::kOk: return "ok";
    case DecodeStatus::kMalformed: return "malformed";
    case DecodeStatus::kTooManyMetrics: return "too_many_metrics";
    case DecodeStatus::kTooLarge: return "too_large";
    case DecodeStatus::kCount: break;
  }
  return "unknown";
}

}  // namespace tianhe::pipeline
