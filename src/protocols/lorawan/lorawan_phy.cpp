#include "protocols/lorawan/lorawan_phy.h"

#include <cstring>

namespace tianhe::protocols::lorawan {
namespace {

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const uint8_t* p) {
  return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32);
}
void put_le(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

constexpr std::string_view kNames[] = {
    "ok",         "empty",          "too_short",        "too_long",     "bad_major",
    "not_uplink", "fopts_overflow", "fopts_with_port0", "reserved_port"};
static_assert(std::size(kNames) == static_cast<size_t>(PhyStatus::kCount));

// Header sizes (§4.3.1): MHDR 1 + DevAddr 4 + FCtrl 1 + FCnt 2, MIC 4.
constexpr size_t kFhdrEnd = 8;
constexpr size_t kMicBytes = 4;
constexpr size_t kJoinRequestBytes = 23;

// Builds MHDR | FHDR | [FPort | FRMPayload] and its MIC into out.
size_t encode_data(LoRaWanCrypto& crypto, const Key& nwk, const Key& app, MType mtype, Dir dir,
                   uint32_t dev_addr, uint32_t fcnt, uint8_t fctrl, std::span<const uint8_t> fopts,
                   bool has_port, uint8_t fport, std::span<const uint8_t> payload,
                   std::span<uint8_t> out) {
  if (fopts.size() > 15 || (has_port && fport == 0 && !fopts.empty())) return 0;
  if (!has_port && !payload.empty()) return 0;
  const size_t len = kFhdrEnd + fopts.size() + (has_port ? 1 + payload.size() : 0) + kMicBytes;
  if (len > kMaxPhyBytes || len > out.size()) return 0;
  uint8_t* p = out.data();
  p[0] = static_cast<uint8_t>(static_cast<uint8_t>(mtype) << 5);
  put_le(p + 1, dev_addr, 4);
  p[5] = static_cast<uint8_t>((fctrl & 0xF0) | fopts.size());
  put_le(p + 6, fcnt & 0xFFFF, 2);
  size_t at = kFhdrEnd;
  if (!fopts.empty()) std::memcpy(p + at, fopts.data(), fopts.size());
  at += fopts.size();
  if (has_port) {
    p[at++] = fport;
    // §4.3.3: port 0 carries MAC commands encrypted with NwkSKey.
    crypto.payload_crypt(fport == 0 ? nwk : app, dir, dev_addr, fcnt, payload, p + at);
    at += payload.size();
  }
  const uint32_t mic = crypto.data_mic(nwk, dir, dev_addr, fcnt, {p, at});
  std::memcpy(p + at, &mic, 4);
  return at + 4;
}

}  // namespace

std::string_view phy_status_name(PhyStatus s) noexcept {
  const auto i = static_cast<size_t>(s);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

PhyStatus parse_phy(std::span<const uint8_t> b, PhyFrame& out) noexcept {
  if (b.empty()) return PhyStatus::kEmpty;
  if (b.size() > kMaxPhyBytes) return PhyStatus::kTooLong;
  const uint8_t mhdr = b[0];
  // §4.2.2: Major 0 is LoRaWAN R1; the RFU bits 4..2 are ignored as the spec allows.
  if ((mhdr & 0x03) != 0) return PhyStatus::kBadMajor;
  out.mtype = static_cast<MType>(mhdr >> 5);
  switch (out.mtype) {
    case MType::kJoinRequest: {
      if (b.size() < kJoinRequestBytes) return PhyStatus::kTooShort;
      if (b.size() > kJoinRequestBytes) return PhyStatus::kTooLong;
      JoinRequest& j = out.join;
      j.join_eui = le64(&b[1]);
      j.dev_eui = le64(&b[9]);
      j.dev_nonce = static_cast<uint16_t>(b[17] | (b[18] << 8));
      j.signed_part = b.first(19);
      j.mic = load_mic(&b[19]);
      return PhyStatus::kOk;
    }
    case MType::kUnconfirmedUp:
    case MType::kConfirmedUp: break;
    default: return PhyStatus::kNotUplink;
  }
  if (b.size() < kFhdrEnd + kMicBytes) return PhyStatus::kTooShort;
  DataFrame& d = out.data;
  d.confirmed = out.mtype == MType::kConfirmedUp;
  d.dev_addr = le32(&b[1]);
  d.fctrl = b[5];
  d.fcnt16 = static_cast<uint16_t>(b[6] | (b[7] << 8));
  const size_t fopts_len = d.fctrl & 0x0F;
  const size_t mic_at = b.size() - kMicBytes;
  if (kFhdrEnd + fopts_len > mic_at) return PhyStatus::kFOptsOverflow;
  d.fopts = b.subspan(kFhdrEnd, fopts_len);
  size_t at = kFhdrEnd + fopts_len;
  d.has_port = at < mic_at;
  d.fport = 0;
  d.frm_payload = {};
  if (d.has_port) {
    d.fport = b[at++];
    if (d.fport == 0 && fopts_len != 0) return PhyStatus::kFOptsWithPort0;
    if (d.fport > 224) return PhyStatus::kReservedPort;
    d.frm_payload = b.subspan(at, mic_at - at);
  }
  d.signed_part = b.first(mic_at);
  d.mic = load_mic(&b[mic_at]);
  return PhyStatus::kOk;
}

uint32_t reconstruct_fcnt(uint32_t last, bool has_last, uint16_t fcnt16) noexcept {
  if (!has_last) return fcnt16;
  // §4.3.1.5: the counter only grows; the candidate in last's 64 Ki window, or the next window
  // when it would not be above last (a 16-bit rollover). MAX_FCNT_GAP no longer applies in
  // 1.0.4, so any forward distance below 2^16 is accepted.
  uint32_t c = (last & 0xFFFF0000u) | fcnt16;
  if (c <= last) c += 0x10000u;  // wraps to a small value only past 2^32: then c <= last
  return c;
}

size_t encode_data_down(LoRaWanCrypto& crypto, const Key& nwk_s_key, const Key& app_s_key,
                        const DownlinkData& d, std::span<uint8_t> out) noexcept {
  const uint8_t fctrl = d.ack ? 0x20 : 0x00;
  return encode_data(crypto, nwk_s_key, app_s_key,
                     d.confirmed ? MType::kConfirmedDown : MType::kUnconfirmedDown, Dir::kDown,
                     d.dev_addr, d.fcnt, fctrl, d.fopts, d.has_port, d.fport, d.payload, out);
}

size_t encode_data_up(LoRaWanCrypto& crypto, const Key& nwk_s_key, const Key& app_s_key,
                      const UplinkData& d, std::span<uint8_t> out) noexcept {
  return encode_data(crypto, nwk_s_key, app_s_key,
                     d.confirmed ? MType::kConfirmedUp : MType::kUnconfirmedUp, Dir::kUp,
                     d.dev_addr, d.fcnt, d.fctrl, d.fopts, d.has_port, d.fport, d.payload, out);
}

size_t encode_join_accept(LoRaWanCrypto& crypto, const Key& app_key, const JoinAcceptFields& f,
                          std::span<uint8_t> out) noexcept {
  constexpr size_t kLen = 17;
  if (out.size() < kLen) return 0;
  uint8_t plain[kLen];
  plain[0] = static_cast<uint8_t>(static_cast<uint8_t>(MType::kJoinAccept) << 5);
  put_le(plain + 1, f.join_nonce, 3);
  put_le(plain + 4, f.net_id, 3);
  put_le(plain + 7, f.dev_addr, 4);
  plain[11] = f.dl_settings;
  plain[12] = f.rx_delay;
  // §6.2.6: MIC = aes128_cmac(AppKey, MHDR | JoinNonce | NetID | DevAddr | DLSettings |
  // RxDelay); then everything after MHDR is aes128_decrypt'ed with AppKey.
  const uint32_t mic = crypto.join_mic(app_key, {plain, 13});
  std::memcpy(plain + 13, &mic, 4);
  out[0] = plain[0];
  crypto.join_accept_crypt(app_key, plain + 1, out.data() + 1, 16);
  return kLen;
}

size_t encode_join_request(LoRaWanCrypto& crypto, const Key& app_key, uint64_t join_eui,
                           uint64_t dev_eui, uint16_t dev_nonce, std::span<uint8_t> out) noexcept {
  if (out.size() < kJoinRequestBytes) return 0;
  uint8_t* p = out.data();
  p[0] = 0x00;
  put_le(p + 1, join_eui, 8);
  put_le(p + 9, dev_eui, 8);
  put_le(p + 17, dev_nonce, 2);
  const uint32_t mic = crypto.join_mic(app_key, {p, 19});
  std::memcpy(p + 19, &mic, 4);
  return kJoinRequestBytes;
}

MacStatus parse_mac_up(std::span<const uint8_t> bytes, MacRequests& out) noexcept {
  // Payload bytes after the CID of each end-device-to-server command (LoRaWAN 1.0.4 §5,
  // Table 4; class B §12-§14); -1: not defined in 1.0.x (1.1's ResetInd, RekeyInd, ... too).
  static constexpr int8_t kUpPayload[0x14] = {
      -1,  // 0x00
      -1,  // 0x01 ResetInd (1.1)
      0,   // 0x02 LinkCheckReq
      1,   // 0x03 LinkADRAns
      0,   // 0x04 DutyCycleAns
      1,   // 0x05 RXParamSetupAns
      2,   // 0x06 DevStatusAns
      1,   // 0x07 NewChannelAns
      0,   // 0x08 RXTimingSetupAns
      0,   // 0x09 TxParamSetupAns
      1,   // 0x0A DlChannelAns
      -1,  // 0x0B RekeyInd (1.1)
      -1,  // 0x0C ADRParamSetupAns (1.1)
      0,   // 0x0D DeviceTimeReq
      -1,  // 0x0E ForceRejoinReq (1.1, downlink)
      -1,  // 0x0F RejoinParamSetupAns (1.1)
      1,   // 0x10 PingSlotInfoReq
      1,   // 0x11 PingSlotChannelAns
      0,   // 0x12 BeaconTimingReq (deprecated)
      1,   // 0x13 BeaconFreqAns
  };
  out = MacRequests{};
  size_t at = 0;
  while (at < bytes.size()) {
    const uint8_t cid = bytes[at];
    const int n = cid < std::size(kUpPayload) ? kUpPayload[cid] : -1;
    if (n < 0) return MacStatus::kUnknownCommand;
    if (at + 1 + static_cast<size_t>(n) > bytes.size()) return MacStatus::kTruncated;
    if (cid == 0x02) out.link_check = true;
    if (cid == 0x0D) out.device_time = true;
    if (out.commands < UINT8_MAX) ++out.commands;
    at += 1 + static_cast<size_t>(n);
  }
  return MacStatus::kOk;
}

uint8_t link_margin(std::string_view datr, double best_snr_db) noexcept {
  // datr "SF<n>BW<k>": the spreading factor's demodulation floor (RP002-1.0.4, the table of
  // SNR limits: -7.5 dB at SF7, 2.5 dB lower for each step up to -20 dB at SF12).
  if (datr.size() < 3 || datr[0] != 'S' || datr[1] != 'F') return 0;
  int sf = 0;
  size_t i = 2;
  while (i < datr.size() && i < 4 && datr[i] >= '0' && datr[i] <= '9')
    sf = sf * 10 + (datr[i++] - '0');
  if (sf < 7 || sf > 12) return 0;
  const double floor_db = -7.5 - 2.5 * (sf - 7);
  const double m = best_snr_db - floor_db;
  if (!(m > 0)) return 0;  // also NaN
  return m >= 254 ? 254 : static_cast<uint8_t>(m);
}

size_t encode_link_check_ans(uint8_t margin, uint8_t gateways, std::span<uint8_t> out) noexcept {
  if (out.size() < 3) return 0;
  out[0] = 0x02;
  out[1] = margin;
  out[2] = gateways;
  return 3;
}

size_t encode_device_time_ans(int64_t unix_ns, std::span<uint8_t> out) noexcept {
  if (out.size() < 6) return 0;
  // §5.9: GPS time (seconds since 1980-01-06T00:00:00Z, no leap seconds: UTC + 18 s today),
  // 32 bits (it wraps in 2116), and the fractional second in 1/256 s steps.
  constexpr int64_t kGpsEpochUnix = 315'964'800;
  const int64_t unix_s = unix_ns / 1'000'000'000;
  const int64_t frac_ns = unix_ns % 1'000'000'000;
  const int64_t gps = unix_s - kGpsEpochUnix + kGpsLeapSeconds;
  out[0] = 0x0D;
  put_le(out.data() + 1, static_cast<uint64_t>(gps), 4);
  out[5] = static_cast<uint8_t>((frac_ns * 256) / 1'000'000'000);
  return 6;
}

}  // namespace tianhe::protocols::lorawan
