// LoRaWAN on one shard: the UDP socket the packet forwarders talk to (Semtech protocol v2), the
// gateways' allow list and address pins, the device sessions, the dedup windows across
// gateways, reports to the shard's validate-and-append, and downlinks (ACKs of confirmed
// uplinks, Join-Accepts) through PULL_RESP. Runs on shard 0 only (see README: sessions are not
// handed across shards). Owned and called by its shard thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/report.h"
#include "core/result.h"
#include "pipeline/registry.h"
#include "protocols/lorawan/lorawan_config.h"
#include "protocols/lorawan/lorawan_crypto.h"
#include "protocols/lorawan/lorawan_phy.h"
#include "protocols/lorawan/lorawan_session.h"
#include "protocols/lorawan/lorawan_stats.h"
#include "protocols/lorawan/semtech_parser.h"
#include "runtime/codec_stage.h"
#include "runtime/session_mailbox.h"
#include "runtime/shard.h"
#include "transports/udp_socket.h"

namespace tianhe::protocols::lorawan {

/// Largest downlink PHYPayload sent (an ACK with 15 bytes of FOpts is 27; a Join-Accept 17).
inline constexpr size_t kMaxDownPhy = 64;

/// The protocol id stored with LoRaWAN reports.
inline constexpr core::Protocol kProtocolId = static_cast<core::Protocol>(3);

/// One shard's LoRaWAN endpoint (shard thread only).
class LoRaWanIngest final : public runtime::Ingest {
 public:
  /// Binds config.listen, takes the keys file's content and the journal (already replayed into
  /// `sessions`). `decoder` may be null (no payload codec compiled in: reports then carry only
  /// the radio metrics). `stats` outlives the ingest.
  static Result<std::unique_ptr<LoRaWanIngest>> create(
      const LoRaWanConfig& config, const KeysFile& keys, std::unique_ptr<SessionTable> sessions,
      SessionJournal journal, std::unique_ptr<runtime::PayloadDecoder> decoder,
      LoRaWanStats* stats);
  ~LoRaWanIngest() override;

  void watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const override;
  uint32_t poll_input(runtime::Shard& shard) noexcept override;
  uint32_t receive_batch() const noexcept override { return recv_batch_; }
  runtime::AckWait release_acks(uint64_t durable_offset) noexcept override;
  bool can_receive() const noexcept override { return true; }
  int64_t next_deadline_ns() const noexcept override;
  void on_timer(runtime::Shard& shard, int64_t now_ns) noexcept override;
  /// The UDP port bound.
  uint16_t port() const noexcept { return socket_.local_port(); }
  /// Where /debug/sessions asks for the device sessions (any thread).
  runtime::SessionMailbox& mailbox() noexcept { return mailbox_; }
  /// Heap bytes of the session table (for the memory-per-session figure).
  size_t session_bytes() const noexcept { return sessions_->bytes(); }

  /// A gateway of the allow list and what is known of it.
  struct Gateway {
    uint64_t eui = 0;
    bool pinned = false;
    sockaddr_storage pin{};    ///< the address it sends from (host only is compared)
    int64_t last_seen_ns = 0;  ///< mono
    bool has_pull = false;
    sockaddr_storage pull{};  ///< where PULL_RESP goes (its PULL_DATA's source)
    socklen_t pull_len = 0;
    uint16_t pull_token = 0;
    std::string rssi_name, snr_name;  ///< its report metrics: rssi_<eui>, snr_<eui>
  };

 private:
  struct Copy {  ///< one gateway's reception of a frame
    uint16_t gateway = 0;
    float rssi = 0, snr = 0;
  };
  struct Pending;  ///< a frame waiting for its dedup window
  struct Downlink;
  LoRaWanIngest(const LoRaWanConfig& config, transports::UdpSocket socket, const KeysFile& keys,
                std::unique_ptr<SessionTable> sessions, SessionJournal journal,
                std::unique_ptr<runtime::PayloadDecoder> decoder, LoRaWanStats* stats);

  void reject(Reject r) noexcept { stats_->rejected[static_cast<size_t>(r)].add(); }
  int32_t gateway_of(uint64_t eui, const sockaddr_storage& from, int64_t now) noexcept;
  void on_push(uint32_t gw, std::span<const uint8_t> json, int64_t now_mono,
               int64_t now_wall) noexcept;
  void on_frame(uint32_t gw, const Rxpk& rx, int64_t now_mono, int64_t now_wall) noexcept;
  bool merge_copy(uint64_t key, uint32_t mic, uint32_t gw, const Rxpk& rx) noexcept;
  Pending* new_pending(uint64_t key, uint32_t mic, uint32_t gw, const Rxpk& rx, int64_t now_mono,
                       int64_t now_wall) noexcept;
  void flush(runtime::Shard& shard, int64_t now_ns) noexcept;
  /// Commits the journal (compacting it past its threshold) and updates its counters.
  bool commit_journal() noexcept;
  void queue_downlink(const Pending& p, std::span<const uint8_t> phy, uint32_t delay_us,
                      uint64_t durable_at) noexcept;
  void send_answer(const sockaddr_storage& to, socklen_t len, SemtechType t,
                   uint16_t token) noexcept;
  enum class SendResult : uint8_t { kSent, kAgain, kFailed };
  /// Sends `dl` as a PULL_RESP for its window (RX1 or RX2) and keeps it until its TX_ACK.
  SendResult send_downlink(const Downlink& dl) noexcept;
  /// Mono time by which `dl` must be sent for `window` (1 or 2).
  int64_t send_by(const Downlink& dl, uint8_t window) const noexcept;
  /// A TX_ACK from gateway `gw`: an RX1 refusal sends the downlink again in RX2.
  void on_tx_ack(uint32_t gw, uint16_t token, std::span<const uint8_t> json) noexcept;
  void index_insert(uint64_t key, uint32_t slot) noexcept;
  void index_erase(uint64_t key, uint32_t slot) noexcept;
  int64_t index_find(uint64_t key) const noexcept;

  LoRaWanConfig config_;
  transports::UdpSocket socket_;
  transports::DatagramBatch rx_;
  std::vector<Gateway> gateways_;  ///< sorted by eui
  std::unique_ptr<SessionTable> sessions_;
  runtime::SessionMailbox mailbox_;
  /// Fills a /debug/sessions page: devices from index `after` (the cursor is a device index).
  void list_sessions(uint64_t after, uint32_t limit, runtime::SessionPage& page) const;
  SessionJournal journal_;
  std::unique_ptr<runtime::PayloadDecoder> decoder_;
  LoRaWanCrypto crypto_;
  std::unique_ptr<PushData> push_;  ///< scratch for one PUSH_DATA
  // Pending frames: a ring in arrival order (every window has the same length, so the ring is
  // also in deadline order), and an open-addressing index by frame key.
  std::vector<Pending> ring_;
  std::vector<Copy> copies_;  ///< ring slot i's copies at [i * max_gateways_per_frame, ...)
  uint32_t head_ = 0, count_ = 0;
  std::vector<uint64_t> index_keys_;
  std::vector<uint32_t> index_slots_;  ///< ring slot + 1; 0: empty
  std::vector<Downlink> downlinks_;    ///< a ring of downlinks waiting
  uint32_t dl_head_ = 0, dl_count_ = 0;
  std::vector<Downlink> inflight_;  ///< sent, until their TX_ACK: slot = token & mask
  uint32_t inflight_mask_;
  uint16_t next_token_ = 1;  ///< PULL_RESP tokens, one per downlink sent
  uint8_t tx_buf_[640];      ///< one PULL_RESP being sent
  uint32_t next_dev_addr_;
  uint64_t last_ack_durable_at_ = 0;  ///< the highest log offset an ACK has waited for
  core::ReportBatch batch_;
  std::vector<uint8_t> status_;
  std::vector<uint32_t> batch_slot_;  ///< per report: its ring slot
  LoRaWanStats* stats_;
  uint32_t recv_batch_;
};

}  // namespace tianhe::protocols::lorawan
