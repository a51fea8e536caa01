// The LoRaWAN protocol's counters on one shard (tianhe_protocol_lorawan_*), declared once here
// and collected by lorawan_protocol.cpp. Written by the shard thread only; read at scrape time.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/counter.h"
#include "protocols/lorawan/lorawan_phy.h"
#include "protocols/lorawan/semtech_parser.h"
#include "runtime/pipeline_stats.h"

namespace tianhe::protocols::lorawan {

/// Why a datagram, an rxpk entry or a frame was refused (label `reason` of
/// tianhe_protocol_lorawan_rejected_total). One list, one name each.
#define TH_LORAWAN_REJECTS(X)                            \
  X(kSemtechTooShort, "semtech_too_short")               \
  X(kSemtechBadVersion, "semtech_bad_version")           \
  X(kSemtechUnknownType, "semtech_unknown_type")         \
  X(kSemtechServerType, "semtech_server_type")           \
  X(kSemtechTrailingBytes, "semtech_trailing_bytes")     \
  X(kSemtechNoJson, "semtech_no_json")                   \
  X(kOversized, "oversized")                             \
  X(kUnknownGateway, "unknown_gateway")                  \
  X(kGatewayAddressMismatch, "gateway_address_mismatch") \
  X(kBadJson, "bad_json")                                \
  X(kRxpkMissingField, "rxpk_missing_field")             \
  X(kRxpkBadField, "rxpk_bad_field")                     \
  X(kRxpkBadBase64, "rxpk_bad_base64")                   \
  X(kRxpkSizeMismatch, "rxpk_size_mismatch")             \
  X(kRxpkTooMany, "rxpk_too_many")                       \
  X(kCrcBad, "crc_bad")                                  \
  X(kPhyEmpty, "phy_empty")                              \
  X(kPhyTooShort, "phy_too_short")                       \
  X(kPhyTooLong, "phy_too_long")                         \
  X(kPhyBadMajor, "phy_bad_major")                       \
  X(kPhyNotUplink, "phy_not_uplink")                     \
  X(kPhyFOptsOverflow, "phy_fopts_overflow")             \
  X(kPhyFOptsWithPort0, "phy_fopts_with_port0")          \
  X(kPhyReservedPort, "phy_reserved_port")               \
  X(kUnknownDevAddr, "unknown_dev_addr")                 \
  X(kBadMic, "bad_mic")                                  \
  X(kReplay, "replay")                                   \
  X(kFcntExhausted, "fcnt_exhausted")                    \
  X(kUnknownDevEui, "unknown_dev_eui")                   \
  X(kNotOtaa, "not_otaa")                                \
  X(kJoinEuiMismatch, "join_eui_mismatch")               \
  X(kDevNonceReplay, "dev_nonce_replay")                 \
  X(kSessionLimit, "session_limit")                      \
  X(kPendingFull, "pending_full")                        \
  X(kJournalError, "journal_error")

/// A rejection reason.
enum class Reject : uint8_t {
#define TH_X(e, n) e,
  TH_LORAWAN_REJECTS(TH_X)
#undef TH_X
      kCount,
};

/// The label of a reason ("bad_mic").
inline std::string_view reject_name(Reject r) noexcept {
  static constexpr std::string_view kNames[] = {
#define TH_X(e, n) n,
      TH_LORAWAN_REJECTS(TH_X)
#undef TH_X
  };
  return kNames[static_cast<size_t>(r)];
}

/// What was done with a confirmed uplink sent again with its device's last accepted counter
/// (any other repeat of the last counter is a replay).
enum class Retransmission : uint8_t {
  kAcked,    ///< already ACKed: ACKed again, no second report
  kRetried,  ///< the log could not take the first copy: stored now, and ACKed
};

/// Kinds of datagram received (by Semtech identifier) and sent.
enum class Dgram : uint8_t { kPushData, kPullData, kTxAck, kCount };

/// The counters of the LoRaWAN protocol on one shard.
struct LoRaWanStats {
  runtime::PipelineStats pipeline;  ///< received, accepted, rejected: shared by every protocol
  core::Counter datagrams_in[static_cast<size_t>(Dgram::kCount)];
  core::Counter bytes_in;
  core::Counter rejected[static_cast<size_t>(Reject::kCount)];
  core::Counter frames_in;           ///< uplink PHYPayloads read from rxpk entries
  core::Counter uplinks;             ///< data frames that passed MIC and counter checks
  core::Counter duplicates;          ///< copies merged into a pending frame
  core::Counter copies_dropped;      ///< copies beyond max_gateways_per_frame (merged, no metrics)
  core::Counter mac_only;            ///< frames without application payload (no report)
  core::Counter joins;               ///< Join-Accepts queued
  core::Counter push_acks;           ///< PUSH_ACK sent
  core::Counter pull_acks;           ///< PULL_ACK sent
  core::Counter downlinks_sent;      ///< PULL_RESP sent
  core::Counter downlinks_dropped;   ///< queue full, no pull address, or send error
  core::Counter acks_not_sent;       ///< confirmed uplinks the log could not take (no ACK)
  core::Counter acks_dead_lettered;  ///< ACKs of confirmed uplinks whose payload was dead-lettered
  core::Counter acks_rejected;       ///< ACKs of confirmed uplinks the validator refused
  /// Frames sent again with the last accepted counter, by what was done (Retransmission).
  core::Counter retransmissions[2];
  core::Counter tx_ack_ok;         ///< TX_ACK with error NONE (or none given)
  core::Counter tx_ack_error;      ///< TX_ACK reporting an error
  core::Counter tx_ack_unmatched;  ///< TX_ACK whose token is no downlink in flight
  core::Counter downlinks_rx2;     ///< PULL_RESP sent for RX2
  core::Counter rx2_after_tx_ack;  ///< RX1 refused by the gateway: sent again for RX2
  core::Counter rx2_late;          ///< ready too late for RX1: sent for RX2
  core::Counter downlinks_late;    ///< too late for RX2 as well: not sent
  /// Downlinks the gateway refused for good, by TX_ACK error (kNone unused).
  core::Counter downlinks_failed[static_cast<size_t>(TxAckError::kCount)];
  core::Counter mac_commands;                                        ///< uplink MAC commands read
  core::Counter mac_status[static_cast<size_t>(MacStatus::kCount)];  ///< MAC command lists read
  core::Counter link_check_answers;                                  ///< LinkCheckAns sent
  core::Counter device_time_answers;                                 ///< DeviceTimeAns sent
  core::Counter stats_received;                                      ///< PUSH_DATA `stat` objects
  core::Counter journal_syncs;                                       ///< session journal commits
  core::Counter journal_compactions;            ///< journal rewrites while running
  core::Counter journal_bytes;                  ///< gauge: the journal file's size
  core::Counter sessions;                       ///< gauge: active sessions
  core::Counter pending_frames;                 ///< gauge
  core::Counter pending_downlinks;              ///< gauge
  core::Counter kernel_drops;                   ///< gauge: SO_RXQ_OVFL
  core::Counter recv_buffer_bytes;              ///< gauge
  core::Log2Histogram uplink_latency;           ///< first copy received to report appended
  core::Log2Histogram downlink_latency;         ///< uplink received to its downlink sent
  core::Log2Histogram journal_compaction_time;  ///< one compaction (the shard's stall)
};

}  // namespace tianhe::protocols::lorawan
