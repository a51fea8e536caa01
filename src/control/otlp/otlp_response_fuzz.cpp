// Fuzz target: the receiver's answer is network input. parse_export_response() and
// parse_retry_after() must never crash, read out of bounds or report more than they were given
// (a rejected count is never negative, an error message never longer than its cap).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "control/otlp/otlp_encoder.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tianhe::control::otlp;  // NOLINT(google-build-using-namespace)
  ExportResponse r;
  const ResponseStatus st = parse_export_response(std::span(data, size), r);
  check(r.error_message.size() <= 256);
  if (st != ResponseStatus::kOk) check(r.rejected_spans == 0 && r.error_message.empty());
  check((st == ResponseStatus::kTooLarge) == (size > kMaxResponseBytes));
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto delay = parse_retry_after(text, 1'700'000'000);
  if (delay) check(delay->count() >= 0 && delay->count() <= 86400);
  return 0;
}
