// Fuzz target: parse_semtech() and parse_push_data() (rxpk JSON through core/json_scan) never
// read outside their input; accepted rxpk entries decode to at most 255 bytes whose length is
// the claimed size, and every PHYPayload they carry goes through parse_phy() too; a TX_ACK's
// JSON goes through parse_tx_ack().
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "protocols/lorawan/lorawan_phy.h"
#include "protocols/lorawan/semtech_parser.h"

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tianhe::protocols::lorawan;  // NOLINT(google-build-using-namespace)
  static auto push = std::make_unique<PushData>();
  SemtechDatagram d;
  const std::span<const uint8_t> in(data, size);
  if (parse_semtech(in, d) != SemtechStatus::kOk) return 0;
  if (d.type == SemtechType::kTxAck) {
    check(parse_tx_ack(d.json) < TxAckError::kCount);
    return 0;
  }
  if (d.type != SemtechType::kPushData) return 0;
  if (parse_push_data(d.json, *push) == RxpkStatus::kBadJson) return 0;
  for (uint32_t i = 0; i < push->count && i < kMaxRxpk; ++i) {
    if (push->status[i] != RxpkStatus::kOk) continue;
    const Rxpk& r = push->rxpk[i];
    check(r.data.size() <= 255 && r.data.size() == r.size);
    PhyFrame f;
    (void)parse_phy(r.data, f);
  }
  return 0;
}
