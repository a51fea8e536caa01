// Fuzz target: the log payload decoder must never read out of bounds or crash on any bytes.
#include <cstddef>
#include <cstdint>

#include "core/record_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tianhe::core::ReportBatch batch(256, 4096);
  batch.clear();
  auto status = tianhe::core::decode_payload({data, size}, batch);
  if (status == tianhe::core::RecordStatus::kOk) {
    // Everything decoded must re-encode to the same size.
    size_t total = 3;
    for (const auto& r : batch) total += tianhe::core::encoded_report_size(batch, r);
    if (total != size) __builtin_trap();
  }
  return 0;
}
