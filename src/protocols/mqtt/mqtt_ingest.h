// The MQTT client on one shard: one non-blocking connection to the broker (TCP or a unix
// socket) served by the shard's loop, its state machine (connect, CONNECT/CONNACK,
// SUBSCRIBE/SUBACK, PUBLISH in, PUBACK out, PINGREQ keep-alive, reconnect with backoff), the
// hand-off of payloads to the codec stage and of reports to validate-and-append, and PUBACKs
// released in order through the shard's AckQueue only once the log covers their reports.
#pragma once

#include <sys/socket.h>

#include <bitset>
#include <memory>
#include <string>
#include <vector>

#include "core/report.h"
#include "core/result.h"
#include "pipeline/registry.h"
#include "protocols/mqtt/mqtt_config.h"
#include "protocols/mqtt/mqtt_packet.h"
#include "protocols/mqtt/mqtt_stats.h"
#include "protocols/mqtt/mqtt_topics.h"
#include "runtime/ack_queue.h"
#include "runtime/codec_stage.h"
#include "runtime/shard.h"

namespace tianhe::protocols::mqtt {

/// The protocol id stored with every report (never reused).
inline constexpr core::Protocol kProtocolId = static_cast<core::Protocol>(5);

/// What every shard's ingest shares: the validated config and what was compiled from it.
/// Built once on the main thread (the broker's name is resolved here), then read-only.
struct MqttShared {
  MqttConfig config;
  BrokerAddress broker;
  sockaddr_storage addr{};  ///< the broker, resolved
  socklen_t addr_len = 0;
  TopicTemplate topics;
  std::string filter;    ///< what each connection subscribes to
  std::string password;  ///< read from password_env
  std::shared_ptr<const pipeline::Registry> registry;
  uint32_t shards = 1;

  /// Compiles `config`; an error names the key and the fix.
  static Result<std::shared_ptr<const MqttShared>> build(
      const MqttConfig& config, std::shared_ptr<const pipeline::Registry> registry,
      uint32_t shards);
};

/// One shard's broker connection. Lives on (and is called only by) its shard thread.
class MqttIngest final : public runtime::Ingest {
 public:
  /// The ingest of shard `shard`: it connects when the config has a shared group, or when it
  /// is shard 0 (otherwise it stays idle). `stats` outlives it.
  static Result<std::unique_ptr<MqttIngest>> create(
      std::shared_ptr<const MqttShared> shared, MqttStats* stats,
      std::unique_ptr<runtime::PayloadDecoder> decoder, uint32_t shard);
  ~MqttIngest() override;
  MqttIngest(const MqttIngest&) = delete;
  MqttIngest& operator=(const MqttIngest&) = delete;

  void watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const override;
  uint32_t poll_input(runtime::Shard& shard) noexcept override;
  uint32_t receive_batch() const noexcept override { return config_.recv_batch; }
  runtime::AckWait release_acks(uint64_t durable_offset) noexcept override;
  bool can_receive() const noexcept override;
  int64_t next_deadline_ns() const noexcept override;
  void on_timer(runtime::Shard& shard, int64_t now_ns) noexcept override;
  /// Whether this shard holds a broker connection at all.
  bool active() const noexcept { return active_; }

 private:
  MqttIngest(std::shared_ptr<const MqttShared> shared, MqttStats* stats,
             std::unique_ptr<runtime::PayloadDecoder> decoder, uint32_t shard);

  enum class State : uint8_t { kWaiting, kConnecting, kAwaitConnack, kAwaitSuback, kConnected };

  /// A PUBLISH of the batch being built, answered after its append.
  struct Pub {
    int32_t report = -1;  ///< index in batch_ (-1: none: dropped or dead-lettered)
    uint16_t packet_id = 0;
    uint8_t qos = 0;
    uint8_t reason = 0;  ///< PUBACK reason (MQTT 5) when there is no report
    int64_t received_mono = 0;
  };

  void start_connect(int64_t now) noexcept;
  void on_transport_up(int64_t now) noexcept;
  void close_connection(ConnEnd why, int64_t now) noexcept;
  void set_state(State s) noexcept;
  bool queue_out(std::span<const uint8_t> bytes) noexcept;
  bool write_out() noexcept;
  /// Handles one packet; false when the connection must close (`why`).
  bool handle(runtime::Shard& shard, const Packet& p, int64_t now_mono, int64_t now_wall,
              ConnEnd& why) noexcept;
  bool on_publish(runtime::Shard& shard, const Packet& p, int64_t now_mono,
                  int64_t now_wall) noexcept;
  /// Appends the batch and parks its PUBACKs; false when the log refused it (push back).
  bool flush(runtime::Shard& shard) noexcept;
  bool park_puback(uint16_t packet_id, uint8_t reason, uint64_t durable_at,
                   int64_t received_mono) noexcept;
  void mark_unacked() noexcept;
  uint32_t next_seq(int64_t now_wall) noexcept;

  std::shared_ptr<const MqttShared> shared_;
  const MqttConfig& config_;
  MqttStats* stats_;
  std::unique_ptr<runtime::PayloadDecoder> decoder_;
  uint32_t shard_;
  bool active_;
  std::string client_id_;
  ParserLimits limits_;

  int fd_ = -1;
  State state_ = State::kWaiting;
  uint32_t generation_ = 1;  ///< the connection a parked PUBACK belongs to
  int64_t next_attempt_ns_ = 0;
  int64_t backoff_ns_ = 0;
  int64_t deadline_ns_ = 0;  ///< connect / CONNACK / SUBACK timeout
  int64_t keep_alive_ns_ = 0;
  int64_t last_in_ns_ = 0;
  int64_t last_out_ns_ = 0;
  uint64_t rng_ = 0;
  bool push_back_ = false;  ///< the log or the ack queue refused: reconnect for redelivery

  std::unique_ptr<uint8_t[]> in_;  ///< received bytes: max_packet_bytes + one read
  size_t in_cap_ = 0;
  size_t in_len_ = 0;
  std::unique_ptr<uint8_t[]> out_;  ///< bytes not yet written to the socket
  size_t out_cap_ = 0;
  size_t out_at_ = 0;
  size_t out_len_ = 0;
  size_t out_pkt_ = 0;  ///< start of the first packet not wholly written

  core::ReportBatch batch_;
  std::vector<uint8_t> status_;  ///< per report: pipeline::RejectReason
  std::vector<Pub> pubs_;
  uint32_t pub_count_ = 0;
  runtime::AckQueue acks_;
  uint32_t ack_entries_ = 0;
  uint64_t last_durable_at_ = 0;  ///< the latest append's durable point
  uint32_t last_seq_ = 0;
  /// Packet ids whose message is in the log but whose PUBACK never left, from the connection
  /// before: their redelivery (DUP) is acknowledged, not appended again.
  std::bitset<65536> unacked_;
  uint32_t unacked_count_ = 0;
  uint64_t unacked_durable_at_ = 0;
};

}  // namespace tianhe::protocols::mqtt
