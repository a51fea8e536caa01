// The MQTT-SN gateway on one shard: its SO_REUSEPORT UDP socket (the kernel hashes a client's
// address to one shard, so its session lives here), batched receive, the session state machine
// (CONNECT/WILL*/REGISTER/PUBLISH QoS -1..2/PUBREL/PINGREQ/DISCONNECT/SEARCHGW), hand-off of
// payloads to the codec stage and of reports to validate-and-append, and replies released in
// order once the log covers them (PUBACK, PUBREC and PUBCOMP only after the report is durable).
#pragma once

#include <memory>
#include <vector>

#include "core/report.h"
#include "core/result.h"
#include "pipeline/registry.h"
#include "protocols/mqtt_sn/mqtt_sn_config.h"
#include "protocols/mqtt_sn/mqtt_sn_directory.h"
#include "protocols/mqtt_sn/mqtt_sn_parser.h"
#include "protocols/mqtt_sn/mqtt_sn_session.h"
#include "protocols/mqtt_sn/mqtt_sn_stats.h"
#include "protocols/mqtt_sn/mqtt_sn_topics.h"
#include "runtime/ack_queue.h"
#include "runtime/codec_stage.h"
#include "runtime/session_mailbox.h"
#include "runtime/shard.h"
#include "transports/udp_socket.h"

namespace tianhe::protocols::mqtt_sn {

/// A predefined topic with what its name says (device 0: the client id names it).
struct ResolvedTopic {
  uint16_t id = 0;
  uint64_t device_id = 0;
  std::string name;
};

/// What every shard's ingest shares: the validated config and what was compiled from it.
/// Built once on the main thread, then read-only.
struct MqttSnShared {
  MqttSnConfig config;
  TopicTemplate topics;
  std::vector<ResolvedTopic> predefined;  ///< sorted by id
  std::vector<ForwarderRule> forwarders;  ///< who may send encapsulated messages (§5.5)
  std::shared_ptr<const pipeline::Registry> registry;
  ParserLimits limits;
  uint32_t shards = 1;

  /// Compiles `config` against the registry; an error names the key and the fix.
  static Result<std::shared_ptr<const MqttSnShared>> build(
      const MqttSnConfig& config, std::shared_ptr<const pipeline::Registry> registry,
      uint32_t shards);
  /// The predefined topic `id`, or nullptr.
  const ResolvedTopic* predefined_topic(uint16_t id) const noexcept;
};

/// One shard's MQTT-SN endpoint. Lives on (and is called only by) its shard thread.
class MqttSnIngest final : public runtime::Ingest {
 public:
  /// Binds the shard's socket to config.listen with SO_REUSEPORT; the first shard (`join`
  /// false) fails when another process listens there. `stats` outlives the ingest; `decoder`
  /// is the shard's payload decoder; `advertise` makes this shard send ADVERTISE. `shard` is
  /// this shard's index; `cluster` (null with one shard) what the shards share about client
  /// ids.
  static Result<std::unique_ptr<MqttSnIngest>> create(
      std::shared_ptr<const MqttSnShared> shared, MqttSnStats* stats,
      std::unique_ptr<runtime::PayloadDecoder> decoder, bool join, bool advertise,
      uint32_t shard = 0, std::shared_ptr<MqttSnCluster> cluster = nullptr);

  void watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const override;
  uint32_t poll_input(runtime::Shard& shard) noexcept override;
  uint32_t receive_batch() const noexcept override { return recv_batch_; }
  runtime::AckWait release_acks(uint64_t durable_offset) noexcept override;
  bool can_receive() const noexcept override;
  int64_t next_deadline_ns() const noexcept override;
  void on_timer(runtime::Shard& shard, int64_t now_ns) noexcept override;
  /// The UDP port bound (useful with port 0).
  uint16_t port() const noexcept { return socket_.local_port(); }
  /// Where /debug/sessions asks for this shard's sessions (any thread).
  runtime::SessionMailbox& mailbox() noexcept { return mailbox_; }

 private:
  MqttSnIngest(std::shared_ptr<const MqttSnShared> shared, transports::UdpSocket socket,
               MqttSnStats* stats, std::unique_ptr<runtime::PayloadDecoder> decoder, uint32_t shard,
               std::shared_ptr<MqttSnCluster> cluster);

  /// A CONNECT being served: from the receive batch, or resumed once another shard handed its
  /// client id over. Holds what its answer needs (the batch's datagram may be gone).
  struct ConnectRequest {
    PeerKey key{};
    uint32_t datagram = 0;  ///< index in the receive batch, or kResumed
    uint8_t ctrl = 0;       ///< the encapsulation's Ctrl octet to answer with (§5.5)
    bool will = false;
    bool clean = false;
    uint8_t rounds = 0;  ///< times another shard was asked for the id already
    uint16_t duration = 0;
    uint8_t id_len = 0;
    char id[kMaxClientIdBytes] = {};
    /// Its client id.
    std::string_view client_id() const noexcept { return {id, id_len}; }
  };
  /// A CONNECT waiting for another shard to hand its client id over (bounded: kMaxParked).
  struct Parked {
    ConnectRequest request;
    int64_t deadline_ns = 0;  ///< answered "congestion" if the other shard has not answered
    uint32_t token = 0;       ///< echoed by the answer
    bool used = false;
  };
  /// CONNECTs one shard keeps waiting on other shards, at most.
  static constexpr uint32_t kMaxParked = 64;

  /// A QoS 1/2 (or 0) PUBLISH of the batch being built, answered after its append.
  struct Pub {
    int32_t report = -1;  ///< index in batch_ (-1: dead-lettered, no report)
    uint32_t datagram = 0;
    uint32_t ref = 0;  ///< session reference
    uint16_t topic_id = 0;
    uint16_t msg_id = 0;
    Qos qos = Qos::kQos0;
    bool duplicate = false;  ///< QoS 2 id already held: resend PUBREC only
  };

  void handle(runtime::Shard& shard, const Frame& f, uint32_t datagram, int64_t now_mono,
              int64_t now_wall) noexcept;
  void on_connect(const Frame& f, uint32_t datagram, const PeerKey& key, int64_t now) noexcept;
  /// Serves an admitted CONNECT: takeover checks (this shard, then the directory), the
  /// session, the answer.
  void connect(const ConnectRequest& c, int64_t now) noexcept;
  /// Parks `c` and asks shard `owner` to hand its client id over (allow_takeover).
  void ask_takeover(const ConnectRequest& c, uint32_t owner, int64_t now) noexcept;
  /// Encodes a reply to CONNECT `c` with `encode` and parks it.
  template <typename F>
  void answer(const ConnectRequest& c, uint32_t tag, F&& encode) noexcept;
  /// Reads the letters other shards sent this one (takeover requests and answers).
  void read_mail(runtime::Shard& shard) noexcept;
  void on_letter(const ShardLetter& letter, int64_t now) noexcept;
  /// Answers "congestion" to the parked CONNECTs no other shard answered in time.
  void expire_parked(int64_t now) noexcept;
  void on_register(const Frame& f, uint32_t datagram, uint32_t s) noexcept;
  void on_publish(runtime::Shard& shard, const Frame& f, uint32_t datagram, uint32_t s,
                  int64_t now_mono, int64_t now_wall) noexcept;
  void on_pingreq(const Frame& f, uint32_t datagram, uint32_t s, int64_t now) noexcept;
  void on_disconnect(const Frame& f, uint32_t datagram, uint32_t s, int64_t now) noexcept;
  void flush(runtime::Shard& shard, int64_t received_mono) noexcept;
  void touch(uint32_t s, int64_t now) noexcept;
  /// Ends session `s`: a lost session's will is published first, a closed one's discarded.
  void end_session(uint32_t s, SessionEnd why) noexcept;
  /// The device a topic name names (the `topics` template; `session_device` when it has no
  /// {device}), or 0 with the reason in `why`.
  uint64_t resolve_topic(std::string_view name, uint64_t session_device,
                         Reject& why) const noexcept;
  /// Appends session `s`'s will to the batch as the report its PUBLISH would be (§6.3).
  void publish_will(uint32_t s) noexcept;
  /// Returns session `s`'s will buffer to the pool, counted as discarded for `why`.
  void drop_will(uint32_t s, WillDiscard why) noexcept;
  /// Session `s`'s will buffer, taken from the pool (empty) when it has none; empty span
  /// when the pool is exhausted.
  std::span<uint8_t> will_buffer(uint32_t s) noexcept;
  void on_will_topic(const Frame& f, uint32_t datagram, uint32_t s) noexcept;
  void on_will_msg(const Frame& f, uint32_t datagram, uint32_t s) noexcept;
  void on_will_update(const Frame& f, uint32_t datagram, uint32_t s) noexcept;
  /// Makes room in the batch for one report (flushing it first when full).
  void make_room() noexcept;
  void wake(uint32_t s) noexcept;
  bool admit_connect(int64_t now) noexcept;
  /// Parks a reply to datagram `datagram`'s sender (or to `to` when given).
  void reply(std::span<const uint8_t> bytes, uint32_t datagram, uint64_t durable_at,
             int64_t received_mono, uint32_t tag) noexcept;
  void reply_to(std::span<const uint8_t> bytes, const sockaddr_storage& to, socklen_t to_len,
                uint64_t durable_at, int64_t received_mono, uint32_t tag) noexcept;
  /// The key of datagram `datagram`'s client: its address, and its node id when a forwarder
  /// encapsulated it (§5.5).
  PeerKey key_of(uint32_t datagram) const noexcept;
  /// Encodes a reply with `encode` into scratch and parks it.
  template <typename F>
  void send_now(uint32_t datagram, uint32_t tag, F&& encode) noexcept;
  bool buffer_for_sleeper(uint32_t s, std::span<const uint8_t> bytes) noexcept;
  void count_out(std::span<const uint8_t> bytes) noexcept;

  std::shared_ptr<const MqttSnShared> shared_;
  const MqttSnConfig& config_;
  transports::UdpSocket socket_;
  transports::DatagramBatch rx_;
  core::ReportBatch batch_;
  std::vector<uint8_t> status_;    ///< per report: pipeline::RejectReason
  std::vector<Pub> pubs_;          ///< the batch's publishes, in arrival order
  std::vector<uint8_t> node_len_;  ///< per datagram: its node id's length (0: not encapsulated)
  uint32_t pub_count_ = 0;
  runtime::AckQueue replies_;
  std::vector<mmsghdr> send_msgs_;
  std::vector<iovec> send_iovs_;
  SessionTable sessions_;
  runtime::SessionMailbox mailbox_;
  /// Fills a /debug/sessions page: live slots from index `after` (the cursor is a slot index).
  void list_sessions(uint64_t after, uint32_t limit, runtime::SessionPage& page) const;
  SleepBuffers sleep_buffers_;
  BufferPool will_buffers_;          ///< wills: max_will_bytes (+ header) each, max_wills / shard
  runtime::Shard* shard_ = nullptr;  ///< the shard being served (set by poll_input, on_timer)
  uint32_t shard_index_ = 0;
  std::shared_ptr<MqttSnCluster> cluster_;  ///< null with one shard
  Parked parked_[kMaxParked];
  uint32_t parked_count_ = 0;
  uint32_t next_token_ = 0;
  std::unique_ptr<runtime::PayloadDecoder> decoder_;
  MqttSnStats* stats_;
  uint32_t recv_batch_;
  uint32_t sleeping_ = 0;
  // Connect admission (a token bucket of this shard's share of connect_rate).
  double tokens_ = 0;
  double rate_per_ns_ = 0;
  double burst_ = 0;
  int64_t tokens_at_ns_ = 0;
  // Timers: the keep-alive reaper sweeps the slots a part at a time; ADVERTISE.
  uint32_t sweep_cursor_ = 0;
  int64_t next_sweep_ns_ = 0;
  int64_t next_advertise_ns_ = runtime::kNoDeadline;
  sockaddr_storage advertise_addr_{};
  socklen_t advertise_len_ = 0;
  uint8_t scratch_[kMaxReplyBytes] = {};
  uint8_t wrapped_[kMaxReplyBytes + kMaxEncapsulationBytes] = {};  ///< a reply, encapsulated
};

}  // namespace tianhe::protocols::mqtt_sn
