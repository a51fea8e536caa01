// libFuzzer target: a received byte stream split into ADUs and each checked against a request
// taken from the input's first bytes (unit, function, quantity), as the poller does.
#include <cstddef>
#include <cstdint>
#include <span>

#include "protocols/modbus/modbus_codec.h"
#include "protocols/modbus/modbus_map.h"

using namespace tianhe::protocols::modbus;  // NOLINT(google-build-using-namespace)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  Expected e;
  e.unit = data[0];
  e.function = static_cast<uint8_t>(1 + data[1] % 4);
  e.quantity = static_cast<uint16_t>(1 + (((data[2] << 8) | data[3]) % kMaxReadBits));
  if (e.function > 2 && e.quantity > kMaxReadRegisters) e.quantity = kMaxReadRegisters;
  std::span<const uint8_t> in(data + 4, size - 4);
  while (!in.empty()) {
    MbapHeader h;
    size_t n = 0;
    if (split_adu(in, h, n) != ResponseStatus::kOk) break;
    Response r;
    if (check_response(h, in.first(n), e, r) == ResponseStatus::kOk) {
      // Decode every register / bit of the block as the poller would.
      const Table t = static_cast<Table>(e.function - 1);
      Block b{t, 0, e.quantity, 0, 1};
      for (uint16_t a = 0; a < e.quantity; ++a) {
        Point p{.table = t,
                .address = a,
                .type = is_bit_table(t) ? DataType::kBool : DataType::kUint16};
        tianhe::core::Value v;
        (void)decode_point(p, b, r.data, v);
      }
    }
    in = in.subspan(n);
  }
  return 0;
}
