// The LoRaWAN PHYPayload (LoRaWAN L2 1.0.4 §4): a pure, bounded parser of uplink frames (data
// frames and Join-Requests) and the encoders of the downlinks the gateway sends (data frames
// carrying an ACK, Join-Accepts). No I/O, no allocation: the parsed frame views its input.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "protocols/lorawan/lorawan_crypto.h"

namespace tianhe::protocols::lorawan {

/// MHDR.MType (§4.2.1).
enum class MType : uint8_t {
  kJoinRequest = 0,
  kJoinAccept = 1,
  kUnconfirmedUp = 2,
  kUnconfirmedDown = 3,
  kConfirmedUp = 4,
  kConfirmedDown = 5,
  kRejoinRequest = 6,
  kProprietary = 7,
};

/// Largest PHYPayload (§4: 255 bytes at most on any region's largest data rate).
inline constexpr size_t kMaxPhyBytes = 255;

/// Why a PHYPayload was not parsed.
enum class PhyStatus : uint8_t {
  kOk = 0,
  kEmpty,           ///< zero bytes
  kTooShort,        ///< shorter than its MType's minimum (data 12, Join-Request 23)
  kTooLong,         ///< longer than kMaxPhyBytes, or a Join-Request longer than 23
  kBadMajor,        ///< MHDR.Major is not LoRaWAN R1 (0)
  kNotUplink,       ///< a downlink, Join-Accept, Rejoin-Request or proprietary frame
  kFOptsOverflow,   ///< FOptsLen runs past the MIC
  kFOptsWithPort0,  ///< FOpts present while FPort is 0 (§4.3.1.6)
  kReservedPort,    ///< FPort 225..255 (§4.3.2: reserved for future use)
  kCount,
};

/// Snake-case name of a status (a metric label).
std::string_view phy_status_name(PhyStatus s) noexcept;

/// A parsed uplink data frame (§4.3). Views into the input bytes.
struct DataFrame {
  bool confirmed = false;  ///< MType ConfirmedDataUp
  uint32_t dev_addr = 0;
  uint8_t fctrl = 0;  ///< ADR(7) ADRACKReq(6) ACK(5) ClassB(4) FOptsLen(3..0)
  uint16_t fcnt16 = 0;
  std::span<const uint8_t> fopts;  ///< MAC commands (plaintext in 1.0.x)
  bool has_port = false;
  uint8_t fport = 0;
  std::span<const uint8_t> frm_payload;  ///< encrypted
  std::span<const uint8_t> signed_part;  ///< MHDR .. FRMPayload: what the MIC covers
  uint32_t mic = 0;                      ///< see load_mic()
};

/// A parsed Join-Request (§6.2.5).
struct JoinRequest {
  uint64_t join_eui = 0;  ///< AppEUI in 1.0.x
  uint64_t dev_eui = 0;
  uint16_t dev_nonce = 0;
  std::span<const uint8_t> signed_part;  ///< MHDR .. DevNonce
  uint32_t mic = 0;
};

/// What parse_phy() read.
struct PhyFrame {
  MType mtype = MType::kProprietary;
  DataFrame data;    ///< for kUnconfirmedUp / kConfirmedUp
  JoinRequest join;  ///< for kJoinRequest
};

/// Parses one uplink PHYPayload. Pure and bounded: reads only `bytes`.
PhyStatus parse_phy(std::span<const uint8_t> bytes, PhyFrame& out) noexcept;

/// The 32-bit frame counter nearest above `last` whose low 16 bits are `fcnt16` (§4.3.1.5:
/// devices send the low 16 bits of a 32-bit counter). `has_last` false: the session's first
/// frame, taken as is. Returns the 32-bit value; the caller rejects one <= last.
uint32_t reconstruct_fcnt(uint32_t last, bool has_last, uint16_t fcnt16) noexcept;

/// Fields of a downlink data frame the gateway sends (an ACK of a confirmed uplink).
struct DownlinkData {
  uint32_t dev_addr = 0;
  uint32_t fcnt = 0;  ///< NFCntDown / AFCntDown, 32 bits (low 16 sent)
  bool ack = true;
  bool confirmed = false;
  std::span<const uint8_t> fopts;  ///< MAC commands (at most 15 bytes)
  bool has_port = false;
  uint8_t fport = 0;
  std::span<const uint8_t> payload;  ///< plaintext FRMPayload
};

/// Writes a signed (and encrypted) downlink data frame into `out`; returns its length, 0 when
/// it does not fit or the fields are invalid.
size_t encode_data_down(LoRaWanCrypto& crypto, const Key& nwk_s_key, const Key& app_s_key,
                        const DownlinkData& d, std::span<uint8_t> out) noexcept;

/// Why parse_mac_up() stopped before the end of its input.
enum class MacStatus : uint8_t {
  kOk = 0,
  kUnknownCommand,  ///< a CID this version does not define (the rest cannot be read, §5)
  kTruncated,       ///< a command shorter than its CID's payload
  kCount,
};

/// The uplink MAC commands the network server answers, read from FOpts or a port-0 payload.
struct MacRequests {
  bool link_check = false;   ///< LinkCheckReq (CID 0x02, §5.2)
  bool device_time = false;  ///< DeviceTimeReq (CID 0x0D, §5.9)
  uint8_t commands = 0;      ///< commands read (any CID)
};

/// Reads the MAC commands of an uplink (LoRaWAN 1.0.4 §5, the end-device-to-server CIDs and
/// their payload sizes, plus the class B ones 0x10..0x13). Pure and bounded.
MacStatus parse_mac_up(std::span<const uint8_t> bytes, MacRequests& out) noexcept;

/// The LinkCheckAns margin (§5.2): dB of the best SNR above the demodulation floor of the
/// uplink's spreading factor (RP002: SF7 -7.5 dB .. SF12 -20 dB, 2.5 dB a step), 0..254;
/// 0 when `datr` names no SF7..SF12.
uint8_t link_margin(std::string_view datr, double best_snr_db) noexcept;

/// Writes LinkCheckAns (0x02, Margin, GwCnt) into `out`; returns 3, or 0 when it does not fit.
size_t encode_link_check_ans(uint8_t margin, uint8_t gateways, std::span<uint8_t> out) noexcept;

/// GPS minus UTC seconds (leap seconds since 1980-01-06; 18 since 2017-01-01).
inline constexpr int64_t kGpsLeapSeconds = 18;

/// Writes DeviceTimeAns (§5.9: 0x0D, seconds since the GPS epoch as u32 little endian, then the
/// fraction in 1/256 s) for the wall-clock time `unix_ns`; returns 6, or 0 when it does not fit.
size_t encode_device_time_ans(int64_t unix_ns, std::span<uint8_t> out) noexcept;

/// Fields of a Join-Accept (§6.2.6, 1.0.x, no CFList).
struct JoinAcceptFields {
  uint32_t join_nonce = 0;  ///< 24 bits (AppNonce)
  uint32_t net_id = 0;      ///< 24 bits
  uint32_t dev_addr = 0;
  uint8_t dl_settings = 0;  ///< RX1DRoffset(6..4) RX2DataRate(3..0)
  uint8_t rx_delay = 1;     ///< seconds (0 means 1)
};

/// Writes the encrypted Join-Accept (17 bytes) into `out`; returns 17, or 0 when it does not fit.
size_t encode_join_accept(LoRaWanCrypto& crypto, const Key& app_key, const JoinAcceptFields& f,
                          std::span<uint8_t> out) noexcept;

/// Fields of an uplink a device sends, for the simulator and tests.
struct UplinkData {
  bool confirmed = false;
  uint32_t dev_addr = 0;
  uint32_t fcnt = 0;
  uint8_t fctrl = 0;  ///< FOptsLen bits are set from fopts
  std::span<const uint8_t> fopts;
  bool has_port = true;
  uint8_t fport = 1;
  std::span<const uint8_t> payload;  ///< plaintext
};

/// Writes a signed, encrypted uplink (as a device does); returns its length or 0.
size_t encode_data_up(LoRaWanCrypto& crypto, const Key& nwk_s_key, const Key& app_s_key,
                      const UplinkData& d, std::span<uint8_t> out) noexcept;

/// Writes a signed Join-Request (23 bytes), as a device does; returns 23 or 0.
size_t encode_join_request(LoRaWanCrypto& crypto, const Key& app_key, uint64_t join_eui,
                           uint64_t dev_eui, uint16_t dev_nonce, std::span<uint8_t> out) noexcept;

}  // namespace tianhe::protocols::lorawan
