// Fuzz target: the raw codec stores any payload (within its limits) as hex that decodes back to
// the same bytes, and never overruns its text storage.
#include <cstddef>
#include <cstdint>

#include "codecs/raw/raw_codec.h"

namespace {

namespace core = tianhe::core;
using tianhe::codecs::raw::RawCodec;
using tianhe::codecs::raw::RawCodecLimits;
using tianhe::pipeline::DecodeStatus;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

int nibble(char c) {
  return c <= '9' ? c - '0' : c - 'a' + 10;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static RawCodec codec(RawCodecLimits{.max_payload_bytes = 4096, .text_bytes = 6000});
  static core::ReportBatch batch(8, 16);
  if (batch.reports_free() == 0) {
    batch.clear();
    codec.batch_done();
  }
  core::Report* r = batch.add_report();
  const uint32_t used = codec.text_used();
  const DecodeStatus st = codec.decode({data, size}, {}, batch, *r);
  if (st != DecodeStatus::kOk) {
    check(st == DecodeStatus::kTooLarge && r->metric_count == 0 && codec.text_used() == used);
    check(size > 4096 || used + 2 * size > 6000);
    return 0;
  }
  const auto ms = batch.metrics(*r);
  check(ms.size() == 2 && ms[1].value.i64 == static_cast<int64_t>(size));
  const std::string_view hex = ms[0].value.str;
  check(hex.size() == 2 * size);
  for (size_t i = 0; i < size; ++i) {
    check(((nibble(hex[2 * i]) << 4) | nibble(hex[2 * i + 1])) == data[i]);
  }
  return 0;
}
