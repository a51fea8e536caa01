// The PHYPayload parser, MIC, payload encryption, Join-Accept and session keys, checked against
// frames built by npm lora-packet (lorawan_test_vectors.h) and CMAC against OpenSSL's EVP_MAC
// and RFC 4493's examples.
#include "protocols/lorawan/lorawan_phy.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstring>
#include <random>
#include <vector>

#include "protocols/lorawan/lorawan_crypto.h"
#include "protocols/lorawan/lorawan_test_vectors.h"

namespace tianhe::protocols::lorawan {
namespace {

Key key_of(const uint8_t (&k)[16]) {
  Key out;
  std::memcpy(out.data(), k, 16);
  return out;
}

const vectors::Vector& vec(std::string_view name) {
  for (const auto& v : vectors::kVectors) {
    if (name == v.name) return v;
  }
  ADD_FAILURE() << "no vector " << name;
  return vectors::kVectors[0];
}

// OpenSSL's own CMAC: the independent reference for LoRaWanCrypto::cmac.
std::vector<uint8_t> evp_cmac(const Key& key, std::span<const uint8_t> msg) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "CMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char cipher[] = "AES-128-CBC";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                         OSSL_PARAM_construct_end()};
  EXPECT_EQ(EVP_MAC_init(ctx, key.data(), 16, params), 1);
  EVP_MAC_update(ctx, msg.data(), msg.size());
  std::vector<uint8_t> out(16);
  size_t n = 0;
  EVP_MAC_final(ctx, out.data(), &n, out.size());
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  return out;
}

// Both implementations: AES-NI (where the CPU has it) and OpenSSL's cipher alone.
class LoRaWanCryptoBoth : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Impl, LoRaWanCryptoBoth, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "AesNi" : "OpenSsl"; });

TEST_P(LoRaWanCryptoBoth, AesMatchesFips197AndOpenSsl) {
  LoRaWanCrypto c(GetParam());
  ASSERT_TRUE(c.ok());
  if (GetParam() && !c.uses_aesni()) GTEST_SKIP() << "this CPU has no AES-NI";
  // FIPS-197 Appendix B: 2b7e1516... encrypts 3243f6a8... to 3925841d...
  const Key k = key_of(vectors::kAppKey);
  const uint8_t in[16] = {0x32, 0x43, 0xf6, 0xa8, 0x88, 0x5a, 0x30, 0x8d,
                          0x31, 0x31, 0x98, 0xa2, 0xe0, 0x37, 0x07, 0x34};
  const uint8_t want[16] = {0x39, 0x25, 0x84, 0x1d, 0x02, 0xdc, 0x09, 0xfb,
                            0xdc, 0x11, 0x85, 0x97, 0x19, 0x6a, 0x0b, 0x32};
  uint8_t out[16];
  c.encrypt_blocks(k, in, out, 1);
  EXPECT_EQ(0, std::memcmp(out, want, 16));
  // Random keys and 1..16 blocks against AES-128-ECB through EVP; in place too.
  EVP_CIPHER_CTX* ref = EVP_CIPHER_CTX_new();
  std::mt19937 rng(11);
  for (size_t blocks = 1; blocks <= 16; ++blocks) {
    Key key;
    for (auto& b : key) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> plain(16 * blocks), got(16 * blocks), expect(16 * blocks);
    for (auto& b : plain) b = static_cast<uint8_t>(rng());
    ASSERT_EQ(EVP_EncryptInit_ex2(ref, EVP_aes_128_ecb(), key.data(), nullptr, nullptr), 1);
    EVP_CIPHER_CTX_set_padding(ref, 0);
    int n = 0;
    ASSERT_EQ(
        EVP_EncryptUpdate(ref, expect.data(), &n, plain.data(), static_cast<int>(plain.size())), 1);
    c.encrypt_blocks(key, plain.data(), got.data(), blocks);
    EXPECT_EQ(got, expect) << blocks << " blocks";
    c.encrypt_blocks(key, plain.data(), plain.data(), blocks);
    EXPECT_EQ(plain, expect) << blocks << " blocks in place";
  }
  EVP_CIPHER_CTX_free(ref);
}

TEST_P(LoRaWanCryptoBoth, CmacMatchesRfc4493AndEvpMac) {
  LoRaWanCrypto c(GetParam());
  ASSERT_TRUE(c.ok());
  const Key k = key_of(vectors::kAppKey);  // RFC 4493's example key
  // RFC 4493 §4 example 2: 16 bytes -> 070a16b4 6b4d4144 f79bdd9d d04a287c.
  const uint8_t m16[] = {0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96,
                         0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a};
  uint8_t out[16];
  c.cmac(k, m16, out);
  const uint8_t want[] = {0x07, 0x0a, 0x16, 0xb4, 0x6b, 0x4d, 0x41, 0x44,
                          0xf7, 0x9b, 0xdd, 0x9d, 0xd0, 0x4a, 0x28, 0x7c};
  EXPECT_EQ(0, std::memcmp(out, want, 16));
  // Every length 0..80 against EVP_MAC, with random keys and bytes.
  std::mt19937 rng(7);
  for (size_t len = 0; len <= 80; ++len) {
    Key key;
    for (auto& b : key) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> msg(len);
    for (auto& b : msg) b = static_cast<uint8_t>(rng());
    c.cmac(key, msg, out);
    EXPECT_EQ(std::vector<uint8_t>(out, out + 16), evp_cmac(key, msg)) << "length " << len;
    // Split at every point: cmac2 over head|msg is the CMAC of the concatenation.
    for (size_t cut = 0; cut <= len; cut += 7) {
      uint8_t out2[16];
      c.cmac2(key, std::span(msg).first(cut), std::span(msg).subspan(cut), out2);
      EXPECT_EQ(0, std::memcmp(out, out2, 16)) << "length " << len << " cut " << cut;
    }
  }
}

TEST(LoRaWanPhy, ParsesVerifiesAndDecryptsLoraPacketUplinks) {
  LoRaWanCrypto c;
  const Key nwk = key_of(vectors::kNwkSKey), app = key_of(vectors::kAppSKey);
  int checked = 0;
  for (const auto& v : vectors::kVectors) {
    if (v.dev_addr == 0) continue;
    SCOPED_TRACE(v.name);
    PhyFrame f;
    ASSERT_EQ(parse_phy(v.phy, f), PhyStatus::kOk);
    const DataFrame& d = f.data;
    EXPECT_EQ(d.dev_addr, v.dev_addr);
    EXPECT_EQ(d.fcnt16, v.fcnt & 0xFFFF);
    EXPECT_TRUE(d.has_port);
    EXPECT_EQ(d.fport, v.fport);
    const uint32_t fcnt =
        reconstruct_fcnt(v.fcnt > 0xFFFF ? 0x10000 : 0, v.fcnt > 0xFFFF, d.fcnt16);
    EXPECT_EQ(fcnt, v.fcnt);
    EXPECT_EQ(c.data_mic(nwk, Dir::kUp, d.dev_addr, fcnt, d.signed_part), d.mic);
    EXPECT_NE(c.data_mic(nwk, Dir::kUp, d.dev_addr, fcnt + 1, d.signed_part), d.mic);
    std::vector<uint8_t> plain(d.frm_payload.size());
    c.payload_crypt(d.fport == 0 ? nwk : app, Dir::kUp, d.dev_addr, fcnt, d.frm_payload,
                    plain.data());
    EXPECT_EQ(plain, v.plain);
    // Our encoder builds the same bytes.
    uint8_t out[kMaxPhyBytes];
    UplinkData u{.confirmed = d.confirmed,
                 .dev_addr = d.dev_addr,
                 .fcnt = fcnt,
                 .fctrl = d.fctrl,
                 .fopts = d.fopts,
                 .has_port = true,
                 .fport = d.fport,
                 .payload = v.plain};
    const size_t n = encode_data_up(c, nwk, app, u, out);
    EXPECT_EQ(std::vector<uint8_t>(out, out + n), v.phy);
    ++checked;
  }
  EXPECT_EQ(checked, 7);
}

TEST(LoRaWanPhy, JoinRequestAcceptAndKeysMatchLoraPacket) {
  LoRaWanCrypto c;
  const Key app_key = key_of(vectors::kAppKey);
  PhyFrame f;
  const auto& jr = vec("join_request");
  ASSERT_EQ(parse_phy(jr.phy, f), PhyStatus::kOk);
  EXPECT_EQ(f.mtype, MType::kJoinRequest);
  EXPECT_EQ(f.join.join_eui, 0x70b3d57ed0000001ull);
  EXPECT_EQ(f.join.dev_eui, 0x0004a30b001c0530ull);
  EXPECT_EQ(f.join.dev_nonce, 0x1a2b);
  EXPECT_EQ(c.join_mic(app_key, f.join.signed_part), f.join.mic);
  uint8_t out[32];
  EXPECT_EQ(encode_join_request(c, app_key, f.join.join_eui, f.join.dev_eui, 0x1a2b, out), 23u);
  EXPECT_EQ(std::vector<uint8_t>(out, out + 23), jr.phy);

  JoinAcceptFields ja{.join_nonce = 0x000102,
                      .net_id = 0x13,
                      .dev_addr = 0x26000001,
                      .dl_settings = 0,
                      .rx_delay = 1};
  ASSERT_EQ(encode_join_accept(c, app_key, ja, out), 17u);
  EXPECT_EQ(std::vector<uint8_t>(out, out + 17), vec("join_accept").phy);

  Key nwk, app;
  c.derive_session_keys(app_key, 0x000102, 0x13, 0x1a2b, nwk, app);
  std::vector<uint8_t> both(nwk.begin(), nwk.end());
  both.insert(both.end(), app.begin(), app.end());
  EXPECT_EQ(both, vec("join_keys_nwk_app").phy);
}

TEST(LoRaWanPhy, RejectsMalformedFrames) {
  PhyFrame f;
  std::vector<uint8_t> b;
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kEmpty);
  b = {0x40, 1, 2, 3, 4, 0, 0, 0, 1, 2, 3};  // 11 bytes
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kTooShort);
  b.push_back(4);
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kOk);
  EXPECT_FALSE(f.data.has_port);
  b[0] = 0x41;
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kBadMajor);
  b[0] = 0x60;  // unconfirmed down
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kNotUplink);
  b[0] = 0x40;
  b[5] = 0x01;  // FOptsLen 1 but nothing before the MIC
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kFOptsOverflow);
  b = {0x40, 1, 2, 3, 4, 0x01, 0, 0, 0xAA, 0x00, 1, 2, 3, 4};  // FOpts + FPort 0
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kFOptsWithPort0);
  b = {0x40, 1, 2, 3, 4, 0x00, 0, 0, 225, 1, 2, 3, 4};
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kReservedPort);
  b.assign(256, 0x40);
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kTooLong);
  b.assign(22, 0x00);
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kTooShort);
  b.assign(24, 0x00);
  EXPECT_EQ(parse_phy(b, f), PhyStatus::kTooLong);
}

TEST(LoRaWanPhy, FrameCounterReconstructionRollsOver) {
  EXPECT_EQ(reconstruct_fcnt(0, false, 5), 5u);
  EXPECT_EQ(reconstruct_fcnt(5, true, 6), 6u);
  EXPECT_EQ(reconstruct_fcnt(5, true, 5), 0x10005u);  // same low bits: the next window
  EXPECT_EQ(reconstruct_fcnt(0xFFFE, true, 0x0001), 0x10001u);
  EXPECT_EQ(reconstruct_fcnt(0x1FFFF, true, 0x0000), 0x20000u);
  EXPECT_EQ(reconstruct_fcnt(0x12345, true, 0x2346), 0x12346u);
  // Past 2^32 the counter would wrap: the result is not above last and is rejected.
  EXPECT_LE(reconstruct_fcnt(0xFFFFFFF0u, true, 0x0005), 0xFFFFFFF0u);
}

TEST(LoRaWanPhy, DownlinkRoundTrip) {
  LoRaWanCrypto c;
  const Key nwk = key_of(vectors::kNwkSKey), app = key_of(vectors::kAppSKey);
  uint8_t out[64];
  const uint8_t pl[] = {1, 2, 3};
  DownlinkData d{.dev_addr = 0x26011bda,
                 .fcnt = 0x10002,
                 .ack = true,
                 .has_port = true,
                 .fport = 4,
                 .payload = pl};
  const size_t n = encode_data_down(c, nwk, app, d, out);
  ASSERT_EQ(n, 8u + 1 + 3 + 4);
  EXPECT_EQ(out[0], 0x60);
  EXPECT_EQ(out[5], 0x20);  // ACK
  EXPECT_EQ(c.data_mic(nwk, Dir::kDown, d.dev_addr, d.fcnt, {out, n - 4}), load_mic(out + n - 4));
}

// Uplink MAC commands (LoRaWAN 1.0.4 §5): payload sizes per CID, LinkCheckReq and DeviceTimeReq
// found among others, and the reading stops at an unknown CID or a short command.
TEST(LoRaWanMac, ParsesUplinkCommands) {
  MacRequests m;
  const uint8_t both[] = {0x02, 0x0D};
  EXPECT_EQ(parse_mac_up(both, m), MacStatus::kOk);
  EXPECT_TRUE(m.link_check);
  EXPECT_TRUE(m.device_time);
  EXPECT_EQ(m.commands, 2);
  // LinkADRAns(1) DevStatusAns(2) RXParamSetupAns(1) LinkCheckReq: sizes skip their payloads
  // (0x02 and 0x0D inside them are not commands).
  const uint8_t mixed[] = {0x03, 0x0D, 0x06, 0xFE, 0x02, 0x05, 0x07, 0x02};
  EXPECT_EQ(parse_mac_up(mixed, m), MacStatus::kOk);
  EXPECT_TRUE(m.link_check);
  EXPECT_FALSE(m.device_time);
  EXPECT_EQ(m.commands, 4);
  const uint8_t none[] = {0x03, 0x07};
  EXPECT_EQ(parse_mac_up(none, m), MacStatus::kOk);
  EXPECT_FALSE(m.link_check);
  const uint8_t truncated[] = {0x02, 0x06, 0xFE};
  EXPECT_EQ(parse_mac_up(truncated, m), MacStatus::kTruncated);
  EXPECT_TRUE(m.link_check);  // what precedes the bad command is kept
  const uint8_t unknown[] = {0x0D, 0x80, 0x02};
  EXPECT_EQ(parse_mac_up(unknown, m), MacStatus::kUnknownCommand);
  EXPECT_TRUE(m.device_time);
  EXPECT_FALSE(m.link_check);
  EXPECT_EQ(parse_mac_up({}, m), MacStatus::kOk);
  EXPECT_EQ(m.commands, 0);
}

TEST(LoRaWanMac, LinkCheckAndDeviceTimeAnswers) {
  // Floors: SF7 -7.5 dB, SF12 -20 dB.
  EXPECT_EQ(link_margin("SF7BW125", 7.5), 15);
  EXPECT_EQ(link_margin("SF12BW125", -10.0), 10);
  EXPECT_EQ(link_margin("SF10BW125", -15.0), 0);
  EXPECT_EQ(link_margin("SF9BW125", -20.0), 0);  // below the floor
  EXPECT_EQ(link_margin("SF7BW125", 1000.0), 254);
  EXPECT_EQ(link_margin("SF6BW125", 5.0), 0);
  EXPECT_EQ(link_margin("50000", 5.0), 0);  // FSK
  uint8_t out[6];
  ASSERT_EQ(encode_link_check_ans(12, 3, out), 3u);
  EXPECT_EQ(out[0], 0x02);
  EXPECT_EQ(out[1], 12);
  EXPECT_EQ(out[2], 3);
  EXPECT_EQ(encode_link_check_ans(1, 1, std::span<uint8_t>(out, 2)), 0u);
  // 2024-01-01T00:00:00.5Z is Unix 1704067200.5: GPS seconds 1704067200 - 315964800 + 18.
  ASSERT_EQ(encode_device_time_ans(1'704'067'200'500'000'000LL, out), 6u);
  const uint32_t gps = 1'704'067'200u - 315'964'800u + 18u;
  EXPECT_EQ(out[0], 0x0D);
  EXPECT_EQ(out[1] | (out[2] << 8) | (out[3] << 16) | (static_cast<uint32_t>(out[4]) << 24), gps);
  EXPECT_EQ(out[5], 128);  // half a second in 1/256 s
}

}  // namespace
}  // namespace tianhe::protocols::lorawan
