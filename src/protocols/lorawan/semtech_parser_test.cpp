// The Semtech packet forwarder datagram and rxpk parsers (PROTOCOL.TXT v2) and the PULL_RESP
// encoder.
#include "protocols/lorawan/semtech_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/json_scan.h"

namespace tianhe::protocols::lorawan {
namespace {

std::vector<uint8_t> dgram(uint8_t type, std::string_view json = {}) {
  // Sized once and filled: GCC 12 at -O3 misreads an insert into a 12-byte vector as out of
  // bounds (-Warray-bounds, -Wstringop-overflow).
  const uint8_t header[] = {2, 0x12, 0x34, type, 1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<uint8_t> b(sizeof header + json.size());
  for (size_t i = 0; i < sizeof header; ++i) b[i] = header[i];
  for (size_t i = 0; i < json.size(); ++i) b[sizeof header + i] = static_cast<uint8_t>(json[i]);
  return b;
}

TEST(Semtech, Header) {
  SemtechDatagram d;
  auto b = dgram(0, "{}");
  ASSERT_EQ(parse_semtech(b, d), SemtechStatus::kOk);
  EXPECT_EQ(d.type, SemtechType::kPushData);
  EXPECT_EQ(d.token, 0x1234);
  EXPECT_EQ(d.gateway_eui, 0x0102030405060708ull);
  EXPECT_EQ(d.json.size(), 2u);
  b = dgram(2);
  EXPECT_EQ(parse_semtech(b, d), SemtechStatus::kOk);
  b.push_back(0);
  EXPECT_EQ(parse_semtech(b, d), SemtechStatus::kTrailingBytes);
  b = dgram(0);
  EXPECT_EQ(parse_semtech(b, d), SemtechStatus::kNoJson);
  b = dgram(1);
  EXPECT_EQ(parse_semtech(b, d), SemtechStatus::kServerType);
  b = dgram(9);
  EXPECT_EQ(parse_semtech(b, d), SemtechStatus::kUnknownType);
  b = dgram(0, "{}");
  b[0] = 1;
  EXPECT_EQ(parse_semtech(b, d), SemtechStatus::kBadVersion);
  b = {2, 0, 0};
  EXPECT_EQ(parse_semtech(b, d), SemtechStatus::kTooShort);
  b = {2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(parse_semtech(b, d), SemtechStatus::kTooShort);
}

TEST(Semtech, Base64RoundTrip) {
  for (size_t n = 0; n < 40; ++n) {
    std::vector<uint8_t> in(n);
    for (size_t i = 0; i < n; ++i) in[i] = static_cast<uint8_t>(i * 37 + 5);
    char text[64];
    const size_t t = encode_base64(in, text);
    uint8_t out[40];
    ASSERT_EQ(decode_base64({text, t}, out), static_cast<int>(n));
    EXPECT_EQ(std::vector<uint8_t>(out, out + n), in);
  }
  uint8_t out[8];
  EXPECT_EQ(decode_base64("QUJD", out), 3);
  EXPECT_EQ(decode_base64("QUI=", out), 2);
  EXPECT_EQ(decode_base64("QQ==", out), 1);
  EXPECT_EQ(decode_base64("QUJ", out), -1);
  EXPECT_EQ(decode_base64("Q=JD", out), -1);
  EXPECT_EQ(decode_base64("QUJ!", out), -1);
  EXPECT_EQ(decode_base64("QUJDQUJDQUJD", out), -1);  // 9 bytes do not fit
}

TEST(Semtech, PushDataRxpk) {
  const std::string j =
      R"({"rxpk":[{"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,"chan":2,"rfch":0,)"
      R"("freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/6","rssi":-35,)"
      R"("lsnr":5.1,"size":3,"data":"QUJD"},{"size":2,"data":"QUJD"},{"data":"QUJD"},)"
      R"({"size":3,"data":"QUJD","datr":"SF7\"x"}],"stat":{"rxnb":2}})";
  PushData p;
  ASSERT_EQ(parse_push_data({reinterpret_cast<const uint8_t*>(j.data()), j.size()}, p),
            RxpkStatus::kOk);
  ASSERT_EQ(p.count, 4u);
  EXPECT_TRUE(p.has_stat);
  EXPECT_EQ(p.status[0], RxpkStatus::kOk);
  EXPECT_EQ(p.rxpk[0].tmst, 3512348611u);
  EXPECT_DOUBLE_EQ(p.rxpk[0].rssi, -35);
  EXPECT_DOUBLE_EQ(p.rxpk[0].lsnr, 5.1);
  EXPECT_EQ(p.rxpk[0].datr, "SF7BW125");
  EXPECT_EQ(p.rxpk[0].codr, "4/6");
  EXPECT_EQ(p.rxpk[0].data.size(), 3u);
  EXPECT_EQ(p.status[1], RxpkStatus::kSizeMismatch);
  EXPECT_EQ(p.status[2], RxpkStatus::kMissingField);
  EXPECT_EQ(p.status[3], RxpkStatus::kBadField);  // datr with an escape
  const std::string bad = R"({"rxpk":[{"size":3,"data":"QUJD"}])";
  EXPECT_EQ(parse_push_data({reinterpret_cast<const uint8_t*>(bad.data()), bad.size()}, p),
            RxpkStatus::kBadJson);
}

TEST(Semtech, PullRespIsValidJson) {
  const uint8_t phy[] = {0x60, 1, 2, 3, 4, 0x20, 0, 0, 9, 9, 9, 9};
  Txpk t{.tmst = 1000000, .freq_mhz = 868.1, .datr = "SF7BW125", .codr = "4/5", .data = phy};
  uint8_t out[700];
  const size_t n = encode_pull_resp(0xBEEF, t, out);
  ASSERT_GT(n, 4u);
  EXPECT_EQ(out[3], 3);
  const std::string_view json(reinterpret_cast<const char*>(out + 4), n - 4);
  EXPECT_EQ(core::json_validate(json), core::JsonError::kNone) << json;
  EXPECT_NE(json.find("\"tmst\":1000000"), std::string_view::npos);
  EXPECT_NE(json.find("\"size\":12"), std::string_view::npos);
}

// TX_ACK (PROTOCOL.TXT v2 §5): no JSON or NONE is success; each error string; anything else is
// kOther. RX2 may help with timing, collision, frequency and power errors only.
TEST(Semtech, TxAck) {
  auto of = [](std::string_view j) {
    return parse_tx_ack({reinterpret_cast<const uint8_t*>(j.data()), j.size()});
  };
  EXPECT_EQ(of(""), TxAckError::kNone);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"NONE"}})"), TxAckError::kNone);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"TOO_LATE"}})"), TxAckError::kTooLate);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"TOO_EARLY"}})"), TxAckError::kTooEarly);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"COLLISION_PACKET"}})"), TxAckError::kCollisionPacket);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"COLLISION_BEACON"}})"), TxAckError::kCollisionBeacon);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"TX_FREQ"}})"), TxAckError::kTxFreq);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"TX_POWER"}})"), TxAckError::kTxPower);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"GPS_UNLOCKED"}})"), TxAckError::kGpsUnlocked);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":"SOMETHING"}})"), TxAckError::kOther);
  EXPECT_EQ(of(R"({"txpk_ack":{}})"), TxAckError::kOther);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":)"), TxAckError::kOther);
  EXPECT_EQ(of(R"({"txpk_ack":{"error":5}})"), TxAckError::kOther);
  EXPECT_EQ(tx_ack_error_name(TxAckError::kCollisionBeacon), "collision_beacon");
  EXPECT_TRUE(rx2_may_help(TxAckError::kTooLate));
  EXPECT_TRUE(rx2_may_help(TxAckError::kTxPower));
  EXPECT_FALSE(rx2_may_help(TxAckError::kGpsUnlocked));
  EXPECT_FALSE(rx2_may_help(TxAckError::kOther));
  EXPECT_FALSE(rx2_may_help(TxAckError::kNone));
}

}  // namespace
}  // namespace tianhe::protocols::lorawan
