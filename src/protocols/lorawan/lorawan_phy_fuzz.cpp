// Fuzz target: parse_phy() never reads outside its input, and whatever it accepts is
// self-consistent (views inside the input, lengths adding up); parse_mac_up() reads the same
// bytes as a MAC command list.
#include <cstddef>
#include <cstdint>
#include <span>

#include "protocols/lorawan/lorawan_phy.h"

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
bool inside(std::span<const uint8_t> v, std::span<const uint8_t> in) {
  return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + in.size());
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tianhe::protocols::lorawan;  // NOLINT(google-build-using-namespace)
  const std::span<const uint8_t> in(data, size);
  // The same bytes as a MAC command list: bounded, and never more commands than bytes.
  MacRequests mac;
  (void)parse_mac_up(in, mac);
  check(mac.commands <= size);
  PhyFrame f;
  if (parse_phy(in, f) != PhyStatus::kOk) return 0;
  if (f.mtype == MType::kJoinRequest) {
    check(size == 23 && f.join.signed_part.size() == 19);
    return 0;
  }
  const DataFrame& d = f.data;
  check(inside(d.fopts, in) && inside(d.frm_payload, in) && inside(d.signed_part, in));
  check(d.signed_part.size() + 4 == size);
  check(8 + d.fopts.size() + (d.has_port ? 1 + d.frm_payload.size() : 0) + 4 == size);
  check(d.fopts.size() == (d.fctrl & 0x0F));
  return 0;
}
