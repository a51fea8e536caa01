// Fuzz target: the cayenne_lpp codec must never crash or read out of bounds; a decode is all or
// nothing; what it accepts is a whole sequence of known readings whose metrics it can account
// for, and re-encoding them gives back the payload (when no reading repeats).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "codecs/cayenne_lpp/cayenne_lpp_codec.h"

namespace {

namespace core = tianhe::core;
using namespace tianhe::codecs::cayenne_lpp;  // NOLINT(google-build-using-namespace)
using tianhe::pipeline::DecodeStatus;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static CayenneLppCodec codec;
  static core::ReportBatch batch(2, 256);
  batch.clear();
  core::Report* r = batch.add_report();
  const DecodeStatus st = codec.decode({data, size}, {}, batch, *r);
  if (st != DecodeStatus::kOk) {
    check(r->metric_count == 0 && batch.metrics_free() == 256);
    return 0;
  }
  // Walk the payload as the reference describes it and count the readings' metrics.
  size_t i = 0;
  size_t metrics = 0;
  bool repeats = false;
  std::vector<uint16_t> seen;
  while (i < size) {
    check(size - i >= 2);
    const LppType* type = lpp_type(data[i + 1]);
    check(type != nullptr);
    const uint16_t key = static_cast<uint16_t>(data[i] << 8 | data[i + 1]);
    for (uint16_t k : seen) repeats = repeats || k == key;
    seen.push_back(key);
    metrics += type->components;
    i += 2 + static_cast<size_t>(type->components) * type->component_bytes;
  }
  check(i == size);
  check(repeats ? r->metric_count < metrics : r->metric_count == metrics);
  for (const core::Metric& m : batch.metrics(*r)) {
    check(!m.name.empty() && m.name.size() <= 64);
    if (m.value.type == core::ValueType::kDouble) check(m.value.f64 == m.value.f64);
  }
  return 0;
}
