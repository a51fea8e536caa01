// Fuzz target: parse_http_request must stay bounded and never crash on any bytes, and a
// complete request must account for the bytes it consumed.
#include <cstddef>
#include <cstdint>

#include "control/http_server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tianhe::control::HttpParseStatus;
  tianhe::control::HttpRequest req;
  size_t consumed = 0;
  const auto status = tianhe::control::parse_http_request({data, size}, req, consumed);
  if (status == HttpParseStatus::kComplete) {
    if (consumed == 0 || consumed > size) __builtin_trap();
    if (req.body.size() > tianhe::control::kMaxHttpBodyBytes) __builtin_trap();
    if (req.method.empty() || req.path.empty()) __builtin_trap();
    // One byte less of a complete request is an incomplete request, never an error: the
    // server must not reject a request that merely arrived in pieces.
    size_t consumed2 = 0;
    tianhe::control::HttpRequest req2;
    const auto st2 = tianhe::control::parse_http_request({data, consumed - 1}, req2, consumed2);
    if (st2 != HttpParseStatus::kNeedMore) __builtin_trap();
    (void)req.query_param("a");
  } else if (consumed != 0) {
    __builtin_trap();
  }
  return 0;
}
