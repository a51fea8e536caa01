// `[protocols.lorawan]`: LoRaWAN through Semtech UDP packet forwarders; its settings and their
// field table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config_table.h"

namespace tianhe::protocols::lorawan {

/// `[[protocols.lorawan.gateways]]`: a packet forwarder allowed to send.
struct GatewayConfig {
  uint64_t eui = 0;  ///< its gateway EUI
};

/// `[protocols.lorawan]`.
struct LoRaWanConfig {
  bool enabled = false;                             ///< listen for packet forwarders
  config::Endpoint listen{"127.0.0.1", 1700};       ///< UDP address (shard 0 binds it)
  std::string keys_file = "lorawan-keys.toml";      ///< devices' keys and gateways; mode 0600
  int64_t dedup_window_ns = 200 * config::kMs;      ///< copies of a frame within it are merged
  uint32_t max_sessions = 1'000'000;                ///< active device sessions (ABP + joined)
  uint32_t max_pending_frames = 8192;               ///< frames waiting for their dedup window
  uint32_t max_gateways_per_frame = 8;              ///< gateways' radio metrics kept per frame
  uint32_t max_downlinks = 4096;                    ///< downlinks waiting to be sent
  uint32_t net_id = 0x000013;                       ///< NetID (24 bits) sent in Join-Accepts
  uint32_t dev_addr_base = 0x26000000;              ///< first DevAddr given to joined devices
  int64_t rx1_delay_ns = 1 * config::kSec;          ///< RECEIVE_DELAY1 (§2.4 regional: 1 s)
  int64_t join_accept_delay_ns = 5 * config::kSec;  ///< JOIN_ACCEPT_DELAY1 (5 s)
  int64_t gateway_pin_ns = 600 * config::kSec;      ///< a silent gateway's address pin expires
  double rx2_frequency_mhz = 869.525;               ///< RX2 frequency (RP002 EU868 default)
  uint32_t rx2_datarate = 0;                        ///< RX2 data rate (EU868 DR0: SF12BW125)
  int64_t downlink_lead_ns = 50 * config::kMs;      ///< a downlink needs this before its window
  uint32_t tx_power_dbm = 14;                       ///< txpk powe
  uint32_t recv_buffer_bytes = 8u << 20;            ///< SO_RCVBUF request
  uint32_t recv_batch = 64;                         ///< datagrams per recvmmsg
  bool journal_sync = true;  ///< fdatasync the session journal before relying on it
  uint64_t journal_compact_bytes = 4u << 20;  ///< compact past max(this, 4 x compacted size)
  int64_t journal_commit_delay_ns = 10 * config::kMs;  ///< due frames wait for one journal sync
  std::vector<GatewayConfig> gateways;  ///< allowed gateways (and any the keys file lists)
};

/// The `[protocols.lorawan]` table.
config::ConfigTable config_table();

}  // namespace tianhe::protocols::lorawan
