// Fuzz target: the json codec must never crash or read out of bounds on any payload; a decode is
// all or nothing; what it accepts is a valid JSON text (json_validate agrees), within every
// limit, with unique names and strings of valid length; its text storage never overflows.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "codecs/json/json_codec.h"
#include "core/json_scan.h"

namespace {

namespace core = tianhe::core;
using tianhe::codecs::json::JsonCodec;
using tianhe::codecs::json::JsonCodecLimits;
using tianhe::pipeline::DecodeStatus;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static JsonCodecLimits limits = [] {
    JsonCodecLimits l;
    l.text_bytes = 4096;  // small, so that running out of it is reached too
    return l;
  }();
  static JsonCodec codec(limits);
  static core::ReportBatch batch(4, 128);
  batch.clear();
  codec.batch_done();
  for (int round = 0; round < 2; ++round) {  // the second decode starts with text in use
    core::Report* r = batch.add_report();
    r->seq = 9;
    const uint32_t used = codec.text_used();
    const uint32_t free_before = batch.metrics_free();
    const DecodeStatus st = codec.decode({data, size}, {.device_id = 1}, batch, *r);
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (st != DecodeStatus::kOk) {
      check(r->metric_count == 0 && batch.metrics_free() == free_before && r->seq == 9);
      check(codec.text_used() == used);
      continue;
    }
    check(core::json_validate(text, limits.max_depth) == core::JsonError::kNone);
    check(r->metric_count <= limits.max_metrics && codec.text_used() <= limits.text_bytes);
    const auto ms = batch.metrics(*r);
    for (size_t i = 0; i < ms.size(); ++i) {
      check(!ms[i].name.empty() && ms[i].name.size() <= limits.max_name_bytes);
      if (ms[i].value.type == core::ValueType::kString) {
        check(ms[i].value.str.size() <= limits.max_string_bytes);
      }
      for (size_t k = 0; k < i; ++k) check(ms[i].name != ms[k].name);
    }
  }
  return 0;
}
