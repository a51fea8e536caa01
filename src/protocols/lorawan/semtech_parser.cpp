#include "protocols/lorawan/semtech_parser.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/json_scan.h"

namespace tianhe::protocols::lorawan {
namespace {

constexpr std::string_view kStatusNames[] = {
    "ok", "too_short", "bad_version", "unknown_type", "server_type", "trailing_bytes", "no_json"};
static_assert(std::size(kStatusNames) == static_cast<size_t>(SemtechStatus::kCount));
constexpr std::string_view kRxpkNames[] = {
    "ok", "bad_json", "missing_field", "bad_field", "bad_base64", "size_mismatch", "too_many"};
static_assert(std::size(kRxpkNames) == static_cast<size_t>(RxpkStatus::kCount));

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// datr and codr are echoed into downlink JSON: letters, digits, '/' and '.' only.
bool safe_token(std::string_view t) {
  if (t.empty() || t.size() > 16) return false;
  for (char c : t) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '/' || c == '.';
    if (!ok) return false;
  }
  return true;
}

using core::JsonKind;
using core::JsonScanner;
using core::JsonToken;

// Reads one rxpk object whose '{' was just read. Returns false on a JSON syntax error (the
// whole datagram is refused then); sets `status` for field problems (the entry alone is).
bool read_rxpk(JsonScanner& s, Rxpk& r, uint8_t* buf, RxpkStatus& status) {
  r = Rxpk{};
  status = RxpkStatus::kOk;
  bool has_data = false, has_size = false;
  auto bad = [&](RxpkStatus st) {
    if (status == RxpkStatus::kOk) status = st;
  };
  JsonToken key;
  while (s.next_member(key)) {
    const JsonToken v = s.next();
    if (v.kind == JsonKind::kError) return false;
    const std::string_view k = key.escaped ? std::string_view{} : key.text;
    const bool num = v.kind == JsonKind::kNumber;
    const bool str = v.kind == JsonKind::kString && !v.escaped;
    if (k == "data") {
      if (!str) {
        bad(RxpkStatus::kBadField);
      } else {
        const int n = decode_base64(v.text, {buf, 256});
        if (n < 0 || n > 255) {
          bad(RxpkStatus::kBadBase64);
        } else {
          r.data = {buf, static_cast<size_t>(n)};
          has_data = true;
        }
      }
    } else if (k == "size") {
      if (!num || !v.number.fits_int64 || v.number.i64 < 0 || v.number.i64 > 255) {
        bad(RxpkStatus::kBadField);
      } else {
        r.size = static_cast<uint32_t>(v.number.i64);
        has_size = true;
      }
    } else if (k == "tmst") {
      if (!num || !v.number.fits_int64 || v.number.i64 < 0 || v.number.i64 > UINT32_MAX) {
        bad(RxpkStatus::kBadField);
      } else {
        r.tmst = static_cast<uint32_t>(v.number.i64);
        r.has_tmst = true;
      }
    } else if (k == "freq") {
      if (!num || v.number.f64 <= 0 || v.number.f64 > 10000) {
        bad(RxpkStatus::kBadField);
      } else {
        r.freq_mhz = v.number.f64;
      }
    } else if (k == "rfch") {
      if (!num || !v.number.fits_int64 || v.number.i64 < 0 || v.number.i64 > 255) {
        bad(RxpkStatus::kBadField);
      } else {
        r.rfch = static_cast<uint8_t>(v.number.i64);
      }
    } else if (k == "stat") {
      if (!num || !v.number.fits_int64 || v.number.i64 < -1 || v.number.i64 > 1) {
        bad(RxpkStatus::kBadField);
      } else {
        r.stat = static_cast<int8_t>(v.number.i64);
      }
    } else if (k == "modu") {
      if (!str || (v.text != "LORA" && v.text != "FSK")) {
        bad(RxpkStatus::kBadField);
      } else {
        r.lora = v.text == "LORA";
      }
    } else if (k == "datr") {
      // LoRa: "SF7BW125"; FSK: a number (bits per second).
      if (str && safe_token(v.text)) {
        r.datr = v.text;
      } else if (!num) {
        bad(RxpkStatus::kBadField);
      }
    } else if (k == "codr") {
      if (!str || !safe_token(v.text)) {
        bad(RxpkStatus::kBadField);
      } else {
        r.codr = v.text;
      }
    } else if (k == "rssi" || k == "lsnr") {
      if (!num || std::fabs(v.number.f64) > 1000) {
        bad(RxpkStatus::kBadField);
      } else {
        (k == "rssi" ? r.rssi : r.lsnr) = v.number.f64;
      }
    } else {
      // time, tmms, chan, brd, rsig, ...: not needed here.
      if (!s.skip(v)) return false;
    }
  }
  if (s.error() != core::JsonError::kNone) return false;
  if (status == RxpkStatus::kOk) {
    if (!has_data || !has_size) {
      status = RxpkStatus::kMissingField;
    } else if (r.size != r.data.size()) {
      status = RxpkStatus::kSizeMismatch;
    }
  }
  return true;
}

}  // namespace

std::string_view semtech_status_name(SemtechStatus s) noexcept {
  const auto i = static_cast<size_t>(s);
  return i < std::size(kStatusNames) ? kStatusNames[i] : "unknown";
}

std::string_view rxpk_status_name(RxpkStatus s) noexcept {
  const auto i = static_cast<size_t>(s);
  return i < std::size(kRxpkNames) ? kRxpkNames[i] : "unknown";
}

SemtechStatus parse_semtech(std::span<const uint8_t> b, SemtechDatagram& out) noexcept {
  if (b.size() < 4) return SemtechStatus::kTooShort;
  if (b[0] != kSemtechVersion) return SemtechStatus::kBadVersion;
  if (b[3] > static_cast<uint8_t>(SemtechType::kTxAck)) return SemtechStatus::kUnknownType;
  out.type = static_cast<SemtechType>(b[3]);
  out.token = static_cast<uint16_t>((b[1] << 8) | b[2]);
  out.json = {};
  switch (out.type) {
    case SemtechType::kPushAck:
    case SemtechType::kPullAck:
    case SemtechType::kPullResp: return SemtechStatus::kServerType;
    default: break;
  }
  if (b.size() < kSemtechHeaderBytes) return SemtechStatus::kTooShort;
  // The gateway EUI is sent most significant byte first (PROTOCOL.TXT §3: "Gateway unique
  // identifier (MAC address)").
  uint64_t eui = 0;
  for (size_t i = 4; i < 12; ++i) eui = (eui << 8) | b[i];
  out.gateway_eui = eui;
  out.json = b.subspan(kSemtechHeaderBytes);
  if (out.type == SemtechType::kPullData && !out.json.empty()) {
    return SemtechStatus::kTrailingBytes;
  }
  if (out.type == SemtechType::kPushData && out.json.empty()) return SemtechStatus::kNoJson;
  return SemtechStatus::kOk;
}

size_t encode_semtech_ack(SemtechType type, uint16_t token, std::span<uint8_t> out) noexcept {
  if (out.size() < 4) return 0;
  out[0] = kSemtechVersion;
  out[1] = static_cast<uint8_t>(token >> 8);
  out[2] = static_cast<uint8_t>(token);
  out[3] = static_cast<uint8_t>(type);
  return 4;
}

int decode_base64(std::string_view t, std::span<uint8_t> out) noexcept {
  if (t.size() % 4 != 0) return -1;
  size_t n = 0;
  for (size_t i = 0; i < t.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = t[i + j];
      if (c == '=' && i + 4 == t.size() && j >= 2) {
        v[j] = 0;
        ++pad;
      } else {
        if (pad != 0) return -1;  // data after '='
        v[j] = b64_value(c);
        if (v[j] < 0) return -1;
      }
    }
    const uint32_t w = (static_cast<uint32_t>(v[0]) << 18) | (static_cast<uint32_t>(v[1]) << 12) |
                       (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    const int bytes = 3 - pad;
    if (n + static_cast<size_t>(bytes) > out.size()) return -1;
    out[n++] = static_cast<uint8_t>(w >> 16);
    if (bytes > 1) out[n++] = static_cast<uint8_t>(w >> 8);
    if (bytes > 2) out[n++] = static_cast<uint8_t>(w);
  }
  return static_cast<int>(n);
}

size_t encode_base64(std::span<const uint8_t> in, std::span<char> out) noexcept {
  const size_t need = (in.size() + 2) / 3 * 4;
  if (need > out.size()) return 0;
  size_t o = 0;
  for (size_t i = 0; i < in.size(); i += 3) {
    const size_t left = in.size() - i;
    const uint32_t w = (static_cast<uint32_t>(in[i]) << 16) |
                       (left > 1 ? static_cast<uint32_t>(in[i + 1]) << 8 : 0) |
                       (left > 2 ? in[i + 2] : 0);
    out[o++] = kB64[(w >> 18) & 63];
    out[o++] = kB64[(w >> 12) & 63];
    out[o++] = left > 1 ? kB64[(w >> 6) & 63] : '=';
    out[o++] = left > 2 ? kB64[w & 63] : '=';
  }
  return o;
}

RxpkStatus parse_push_data(std::span<const uint8_t> json, PushData& out) noexcept {
  out.count = 0;
  out.has_stat = false;
  JsonScanner s({reinterpret_cast<const char*>(json.data()), json.size()}, 8);
  if (s.next().kind != JsonKind::kObjectBegin) return RxpkStatus::kBadJson;
  JsonToken key;
  while (s.next_member(key)) {
    const JsonToken v = s.next();
    if (v.kind == JsonKind::kError) return RxpkStatus::kBadJson;
    if (!key.escaped && key.text == "rxpk" && v.kind == JsonKind::kArrayBegin) {
      JsonToken e;
      while (s.next_element(e)) {
        const uint32_t i = out.count++;
        if (i >= kMaxRxpk || e.kind != JsonKind::kObjectBegin) {
          if (i < kMaxRxpk) out.status[i] = RxpkStatus::kBadField;
          if (!s.skip(e)) return RxpkStatus::kBadJson;
          continue;
        }
        if (!read_rxpk(s, out.rxpk[i], out.data[i], out.status[i])) return RxpkStatus::kBadJson;
      }
    } else {
      if (!key.escaped && key.text == "stat" && v.kind == JsonKind::kObjectBegin) {
        out.has_stat = true;
      }
      if (!s.skip(v)) return RxpkStatus::kBadJson;
    }
  }
  if (s.error() != core::JsonError::kNone) return RxpkStatus::kBadJson;
  if (s.next().kind != JsonKind::kEnd) return RxpkStatus::kBadJson;
  return out.count > kMaxRxpk ? RxpkStatus::kTooMany : RxpkStatus::kOk;
}

size_t encode_pull_resp(uint16_t token, const Txpk& t, std::span<uint8_t> out) noexcept {
  // PROTOCOL.TXT §6: PULL_RESP is version | token | 0x03 | JSON {"txpk":{...}}. (In v2 the
  // token is echoed in TX_ACK; the reference forwarder ignores it in PULL_RESP.)
  if (out.size() < 4 + 512 || t.data.size() > 255) return 0;
  out[0] = kSemtechVersion;
  out[1] = static_cast<uint8_t>(token >> 8);
  out[2] = static_cast<uint8_t>(token);
  out[3] = static_cast<uint8_t>(SemtechType::kPullResp);
  char b64[344];
  const size_t nb = encode_base64(t.data, b64);
  char* p = reinterpret_cast<char*>(out.data() + 4);
  const size_t room = out.size() - 4;
  char when[32];
  if (t.immediate) {
    std::snprintf(when, sizeof when, "\"imme\":true");
  } else {
    std::snprintf(when, sizeof when, "\"tmst\":%u", t.tmst);
  }
  const int n = std::snprintf(
      p, room,
      "{\"txpk\":{%s,\"freq\":%.6f,\"rfch\":%u,\"powe\":%d,\"modu\":\"LORA\",\"datr\":\"%.*s\","
      "\"codr\":\"%.*s\",\"ipol\":%s,\"size\":%zu,\"data\":\"%.*s\"}}",
      when, t.freq_mhz, static_cast<unsigned>(t.rfch), t.powe, static_cast<int>(t.datr.size()),
      t.datr.data(), static_cast<int>(t.codr.size()), t.codr.data(), t.ipol ? "true" : "false",
      t.data.size(), static_cast<int>(nb), b64);
  if (n < 0 || static_cast<size_t>(n) >= room) return 0;
  return 4 + static_cast<size_t>(n);
}

std::string_view tx_ack_error_name(TxAckError e) noexcept {
  static constexpr std::string_view kNames[] = {
      "none",     "too_late",     "too_early", "collision_packet", "collision_beacon", "tx_freq",
      "tx_power", "gps_unlocked", "other"};
  static_assert(std::size(kNames) == static_cast<size_t>(TxAckError::kCount));
  return kNames[static_cast<size_t>(e)];
}

TxAckError parse_tx_ack(std::span<const uint8_t> json) noexcept {
  // PROTOCOL.TXT v2 §5: {"txpk_ack":{"error":"..."}}; no JSON at all means NONE. Anything else
  // (bad JSON, no error string) is kOther: not retried, counted.
  if (json.empty()) return TxAckError::kNone;
  JsonScanner s({reinterpret_cast<const char*>(json.data()), json.size()}, 4);
  std::string_view error;
  bool found = false;
  for (JsonToken t = s.next(); t.kind != JsonKind::kEnd; t = s.next()) {
    if (t.kind == JsonKind::kError) return TxAckError::kOther;
    if (t.kind == JsonKind::kKey && !t.escaped && t.text == "error") {
      const JsonToken v = s.next();
      if (v.kind == JsonKind::kError) return TxAckError::kOther;
      if (v.kind == JsonKind::kString && !v.escaped) {
        error = v.text;
        found = true;
      }
    }
  }
  if (!found) return TxAckError::kOther;
  static constexpr std::string_view kWire[] = {
      "NONE",    "TOO_LATE", "TOO_EARLY",   "COLLISION_PACKET", "COLLISION_BEACON",
      "TX_FREQ", "TX_POWER", "GPS_UNLOCKED"};
  for (size_t i = 0; i < std::size(kWire); ++i) {
    if (error == kWire[i]) return static_cast<TxAckError>(i);
  }
  return TxAckError::kOther;
}

bool rx2_may_help(TxAckError e) noexcept {
  switch (e) {
    case TxAckError::kTooLate:
    case TxAckError::kTooEarly:
    case TxAckError::kCollisionPacket:
    case TxAckError::kCollisionBeacon:
    case TxAckError::kTxFreq:
    case TxAckError::kTxPower: return true;
    default: return false;
  }
}

}  // namespace tianhe::protocols::lorawan
