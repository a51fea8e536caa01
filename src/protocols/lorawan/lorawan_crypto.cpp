#include "protocols/lorawan/lorawan_crypto.h"

#include <emmintrin.h>
#include <openssl/evp.h>
#include <wmmintrin.h>

#include <algorithm>
#include <cstring>

namespace tianhe::protocols::lorawan {
namespace {

EVP_CIPHER_CTX* ctx_of(void* p) {
  return static_cast<EVP_CIPHER_CTX*>(p);
}

// RFC 4493 §2.3: doubling in GF(2^128).
void dbl(const uint8_t in[16], uint8_t out[16]) {
  const uint8_t carry = in[0] >> 7;
  for (int i = 0; i < 15; ++i) out[i] = static_cast<uint8_t>((in[i] << 1) | (in[i + 1] >> 7));
  out[15] = static_cast<uint8_t>((in[15] << 1) ^ (carry ? 0x87 : 0));
}

void put_le32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

// AES-128 with the AES-NI instructions (FIPS-197 key expansion, §5.2; 10 rounds). Why by hand:
// OpenSSL's EVP re-keying (EVP_CipherInit_ex2) costs 550-850 ns here against ~60 ns for a block,
// and every uplink needs two keys (NwkSKey for its MIC, AppSKey for its payload) of whichever
// device sent it: through EVP the key setup was a third of an uplink's CPU (README, "Figures").
// The instructions are constant time; the results are checked against OpenSSL in the tests.
__attribute__((target("aes,sse2"))) inline __m128i expand_step(__m128i k, __m128i assist) {
  assist = _mm_shuffle_epi32(assist, 0xff);
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  return _mm_xor_si128(k, assist);
}

__attribute__((target("aes,sse2"))) void aesni_expand(const uint8_t key[16], uint8_t rk[176]) {
  __m128i k[11];
  k[0] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key));
  // The round constants must be immediates.
  k[1] = expand_step(k[0], _mm_aeskeygenassist_si128(k[0], 0x01));
  k[2] = expand_step(k[1], _mm_aeskeygenassist_si128(k[1], 0x02));
  k[3] = expand_step(k[2], _mm_aeskeygenassist_si128(k[2], 0x04));
  k[4] = expand_step(k[3], _mm_aeskeygenassist_si128(k[3], 0x08));
  k[5] = expand_step(k[4], _mm_aeskeygenassist_si128(k[4], 0x10));
  k[6] = expand_step(k[5], _mm_aeskeygenassist_si128(k[5], 0x20));
  k[7] = expand_step(k[6], _mm_aeskeygenassist_si128(k[6], 0x40));
  k[8] = expand_step(k[7], _mm_aeskeygenassist_si128(k[7], 0x80));
  k[9] = expand_step(k[8], _mm_aeskeygenassist_si128(k[8], 0x1b));
  k[10] = expand_step(k[9], _mm_aeskeygenassist_si128(k[9], 0x36));
  for (int i = 0; i < 11; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(rk + 16 * i), k[i]);
}

__attribute__((target("aes,sse2"))) void aesni_encrypt(const uint8_t rk[176], const uint8_t* in,
                                                       uint8_t* out, size_t blocks) {
  __m128i k[11];
  for (int i = 0; i < 11; ++i)
    k[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rk + 16 * i));
  for (size_t b = 0; b < blocks; ++b) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 16 * b));
    x = _mm_xor_si128(x, k[0]);
    for (int i = 1; i < 10; ++i) x = _mm_aesenc_si128(x, k[i]);
    x = _mm_aesenclast_si128(x, k[10]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16 * b), x);
  }
}

}  // namespace

LoRaWanCrypto::LoRaWanCrypto(bool allow_aesni)
    : aesni_(allow_aesni && __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse2")) {
  EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-128-ECB", nullptr);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (c == nullptr || ctx == nullptr) {
    EVP_CIPHER_free(c);
    EVP_CIPHER_CTX_free(ctx);
    return;
  }
  cipher_ = c;
  ctx_ = ctx;
}

LoRaWanCrypto::~LoRaWanCrypto() {
  EVP_CIPHER_CTX_free(ctx_of(ctx_));
  EVP_CIPHER_free(static_cast<EVP_CIPHER*>(cipher_));
}

void LoRaWanCrypto::set_key(const Key& key, bool encrypt) noexcept {
  EVP_CipherInit_ex2(ctx_of(ctx_), static_cast<EVP_CIPHER*>(cipher_), key.data(), nullptr,
                     encrypt ? 1 : 0, nullptr);
  EVP_CIPHER_CTX_set_padding(ctx_of(ctx_), 0);
}

void LoRaWanCrypto::key_encrypt(const Key& key) noexcept {
  if (aesni_) {
    aesni_expand(key.data(), round_keys_);
  } else {
    set_key(key, true);
  }
}

void LoRaWanCrypto::encrypt_keyed(const uint8_t* in, uint8_t* out, size_t blocks) noexcept {
  if (aesni_) {
    aesni_encrypt(round_keys_, in, out, blocks);
    return;
  }
  int n = 0;
  EVP_CipherUpdate(ctx_of(ctx_), out, &n, in, static_cast<int>(blocks * 16));
}

void LoRaWanCrypto::encrypt_blocks(const Key& key, const uint8_t* in, uint8_t* out,
                                   size_t blocks) noexcept {
  key_encrypt(key);
  encrypt_keyed(in, out, blocks);
}

void LoRaWanCrypto::cmac(const Key& key, std::span<const uint8_t> msg, uint8_t out[16]) noexcept {
  cmac2(key, {}, msg, out);
}

// RFC 4493 §2.4 over the concatenation head|msg. The CBC chain is run one ECB block at a time
// under one key schedule: cheaper than EVP_MAC's per-message init for the short messages of
// LoRaWAN (measured in lorawan_bench: see README).
void LoRaWanCrypto::cmac2(const Key& key, std::span<const uint8_t> head,
                          std::span<const uint8_t> msg, uint8_t out[16]) noexcept {
  key_encrypt(key);
  uint8_t l[16] = {0}, k1[16], k2[16];
  encrypt_keyed(l, l, 1);
  dbl(l, k1);
  dbl(k1, k2);
  const size_t total = head.size() + msg.size();
  const size_t blocks = total == 0 ? 1 : (total + 15) / 16;
  const bool complete = total != 0 && total % 16 == 0;
  uint8_t x[16] = {0};
  for (size_t b = 0; b < blocks; ++b) {
    // Block b of head|msg, copied in at most two pieces, then padded (10*) if short.
    uint8_t y[16];
    const size_t pos = 16 * b;
    size_t n = 0;
    if (pos < head.size()) {
      n = std::min<size_t>(16, head.size() - pos);
      std::memcpy(y, head.data() + pos, n);
    }
    if (n < 16 && pos + n < total) {
      const size_t from = pos + n - head.size();
      const size_t m = std::min<size_t>(16 - n, msg.size() - from);
      std::memcpy(y + n, msg.data() + from, m);
      n += m;
    }
    if (n < 16) {
      y[n] = 0x80;
      std::memset(y + n + 1, 0, 15 - n);
    }
    const uint8_t* sub = b + 1 < blocks ? nullptr : (complete ? k1 : k2);
    for (int i = 0; i < 16; ++i) y[i] ^= x[i] ^ (sub != nullptr ? sub[i] : 0);
    encrypt_keyed(y, x, 1);
  }
  std::memcpy(out, x, 16);
}

uint32_t LoRaWanCrypto::data_mic(const Key& nwk_s_key, Dir dir, uint32_t dev_addr, uint32_t fcnt,
                                 std::span<const uint8_t> msg) noexcept {
  // §4.4: B0 = 0x49 | 4 x 0x00 | Dir | DevAddr | FCntUp/Down (32 bits) | 0x00 | len(msg).
  uint8_t b0[16] = {0x49, 0, 0, 0, 0, static_cast<uint8_t>(dir)};
  put_le32(b0 + 6, dev_addr);
  put_le32(b0 + 10, fcnt);
  b0[14] = 0;
  b0[15] = static_cast<uint8_t>(msg.size());
  uint8_t mac[16];
  cmac2(nwk_s_key, b0, msg, mac);
  return load_mic(mac);
}

uint32_t LoRaWanCrypto::join_mic(const Key& app_key, std::span<const uint8_t> msg) noexcept {
  uint8_t mac[16];
  cmac2(app_key, {}, msg, mac);
  return load_mic(mac);
}

void LoRaWanCrypto::payload_crypt(const Key& key, Dir dir, uint32_t dev_addr, uint32_t fcnt,
                                  std::span<const uint8_t> in, uint8_t* out) noexcept {
  // §4.3.3.1: S = aes128(K, A1) | aes128(K, A2) | ..., Ai = 0x01 | 4 x 0x00 | Dir | DevAddr |
  // FCnt | 0x00 | i; FRMPayload XOR S, truncated. All Ai are built first and encrypted in one
  // call (up to 16 blocks for 255 bytes).
  const size_t blocks = (in.size() + 15) / 16;
  if (blocks == 0) return;
  uint8_t a[16 * 16];
  for (size_t i = 0; i < blocks; ++i) {
    uint8_t* ai = a + 16 * i;
    std::memset(ai, 0, 16);
    ai[0] = 0x01;
    ai[5] = static_cast<uint8_t>(dir);
    put_le32(ai + 6, dev_addr);
    put_le32(ai + 10, fcnt);
    ai[15] = static_cast<uint8_t>(i + 1);
  }
  encrypt_blocks(key, a, a, blocks);
  for (size_t i = 0; i < in.size(); ++i) out[i] = in[i] ^ a[i];
}

void LoRaWanCrypto::join_accept_crypt(const Key& app_key, const uint8_t* in, uint8_t* out,
                                      size_t len) noexcept {
  set_key(app_key, false);
  int n = 0;
  EVP_CipherUpdate(ctx_of(ctx_), out, &n, in, static_cast<int>(len));
}

void LoRaWanCrypto::join_accept_open(const Key& app_key, const uint8_t* in, uint8_t* out,
                                     size_t len) noexcept {
  encrypt_blocks(app_key, in, out, len / 16);
}

void LoRaWanCrypto::derive_session_keys(const Key& app_key, uint32_t join_nonce, uint32_t net_id,
                                        uint16_t dev_nonce, Key& nwk_s_key,
                                        Key& app_s_key) noexcept {
  uint8_t b[32] = {0};
  for (int k = 0; k < 2; ++k) {
    uint8_t* p = b + 16 * k;
    p[0] = static_cast<uint8_t>(k + 1);
    p[1] = static_cast<uint8_t>(join_nonce);
    p[2] = static_cast<uint8_t>(join_nonce >> 8);
    p[3] = static_cast<uint8_t>(join_nonce >> 16);
    p[4] = static_cast<uint8_t>(net_id);
    p[5] = static_cast<uint8_t>(net_id >> 8);
    p[6] = static_cast<uint8_t>(net_id >> 16);
    p[7] = static_cast<uint8_t>(dev_nonce);
    p[8] = static_cast<uint8_t>(dev_nonce >> 8);
  }
  uint8_t o[32];
  encrypt_blocks(app_key, b, o, 2);
  std::memcpy(nwk_s_key.data(), o, 16);
  std::memcpy(app_s_key.data(), o + 16, 16);
}

}  // namespace tianhe::protocols::lorawan
