// LoRaWAN 1.0.x cryptography (LoRaWAN L2 1.0.4 §4.3.3, §4.4, §6.2): AES-128 (AES-NI, or one
// reused OpenSSL context where the CPU lacks it), AES-CMAC message integrity codes, FRMPayload
// encryption, Join-Accept encryption and session key derivation. One LoRaWanCrypto per thread (a
// shard owns one); the keys live in the sessions as plain bytes, so no OpenSSL object exists per
// session.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace tianhe::protocols::lorawan {

/// An AES-128 key (NwkSKey, AppSKey, AppKey).
using Key = std::array<uint8_t, 16>;

/// Frame direction as the B0/Ai blocks encode it (§4.3.3.1, §4.4).
enum class Dir : uint8_t { kUp = 0, kDown = 1 };

/// AES-128 and AES-CMAC, re-keyed by every call (a key per session would cost hundreds of bytes
/// each): encryption by the AES-NI instructions, whose key schedule costs tens of nanoseconds
/// (OpenSSL's EVP re-keying costs ~600 ns); decryption (Join-Accepts only), and every operation
/// on a CPU without AES-NI, by one OpenSSL cipher context. Not thread-safe: one per thread.
class LoRaWanCrypto {
 public:
  /// `allow_aesni = false` uses OpenSSL for everything (the tests compare the two).
  explicit LoRaWanCrypto(bool allow_aesni = true);
  ~LoRaWanCrypto();
  LoRaWanCrypto(const LoRaWanCrypto&) = delete;
  LoRaWanCrypto& operator=(const LoRaWanCrypto&) = delete;

  /// False when OpenSSL could not provide AES-128-ECB (nothing else works then).
  bool ok() const noexcept { return ctx_ != nullptr; }
  /// Whether encryption runs on the AES-NI instructions.
  bool uses_aesni() const noexcept { return aesni_; }
  /// AES-128-CMAC (RFC 4493) of `msg` under `key`.
  void cmac(const Key& key, std::span<const uint8_t> msg, uint8_t out[16]) noexcept;
  /// AES-CMAC of `head` followed by `msg` (B0 then the frame) without copying them together.
  void cmac2(const Key& key, std::span<const uint8_t> head, std::span<const uint8_t> msg,
             uint8_t out[16]) noexcept;
  /// The 4-byte MIC of a data frame (§4.4): CMAC(NwkSKey, B0 | MHDR..FRMPayload)[0..3], as the
  /// bytes appear on the air read into a uint32_t in memory order (compare with load_mic()).
  uint32_t data_mic(const Key& nwk_s_key, Dir dir, uint32_t dev_addr, uint32_t fcnt,
                    std::span<const uint8_t> msg) noexcept;
  /// The MIC of a Join-Request or Join-Accept (§6.2.5, §6.2.6): CMAC(AppKey, msg)[0..3].
  uint32_t join_mic(const Key& app_key, std::span<const uint8_t> msg) noexcept;
  /// Encrypts or decrypts FRMPayload (§4.3.3.1: the same keystream both ways); `out` may be
  /// `in`. At most 255 bytes.
  void payload_crypt(const Key& key, Dir dir, uint32_t dev_addr, uint32_t fcnt,
                     std::span<const uint8_t> in, uint8_t* out) noexcept;
  /// Encrypts a Join-Accept body after MHDR (§6.2.6: the network server *decrypts* with
  /// AppKey so the device only needs AES encrypt). `len` is a multiple of 16.
  void join_accept_crypt(const Key& app_key, const uint8_t* in, uint8_t* out, size_t len) noexcept;
  /// Inverse of join_accept_crypt (AES encrypt), as a device does it; for tests and simulators.
  void join_accept_open(const Key& app_key, const uint8_t* in, uint8_t* out, size_t len) noexcept;
  /// Session keys after a join (§6.2.6, 1.0.x): NwkSKey = aes(AppKey, 01|JoinNonce|NetID|
  /// DevNonce|pad), AppSKey the same with 02.
  void derive_session_keys(const Key& app_key, uint32_t join_nonce, uint32_t net_id,
                           uint16_t dev_nonce, Key& nwk_s_key, Key& app_s_key) noexcept;
  /// AES-128 encryption of `blocks` 16-byte blocks (ECB) under `key`.
  void encrypt_blocks(const Key& key, const uint8_t* in, uint8_t* out, size_t blocks) noexcept;

 private:
  void set_key(const Key& key, bool encrypt) noexcept;  ///< keys the OpenSSL context
  void key_encrypt(const Key& key) noexcept;            ///< keys encrypt_keyed()
  /// Encrypts `blocks` blocks under the key of the last key_encrypt().
  void encrypt_keyed(const uint8_t* in, uint8_t* out, size_t blocks) noexcept;
  bool aesni_ = false;
  alignas(16) uint8_t round_keys_[176] = {};  ///< AES-NI: the expanded key (11 round keys)
  void* ctx_ = nullptr;                       ///< EVP_CIPHER_CTX*
  void* cipher_ = nullptr;                    ///< EVP_CIPHER* (AES-128-ECB, fetched once)
};

/// The MIC bytes at `p` (4 bytes, wire order) as a uint32_t comparable with data_mic().
inline uint32_t load_mic(const uint8_t* p) noexcept {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

}  // namespace tianhe::protocols::lorawan
