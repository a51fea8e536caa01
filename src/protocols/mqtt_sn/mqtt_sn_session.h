// Per-peer MQTT-SN state on one shard: a bounded table of sessions (keyed by client address and
// by client id), each with its registered topics and its QoS 2 message ids; and the pool of
// buffers that hold replies for sleeping clients (MQTT-SN v1.2 §6.14). Everything is allocated
// once at start; a session is a fixed-size slot (sizeof(MqttSnSession) bytes) and a full table
// refuses. Owned and used only by its shard thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "protocols/mqtt_sn/mqtt_sn_parser.h"

namespace tianhe::protocols::mqtt_sn {

/// Topics a session may register, and QoS 2 ids it may hold, at most (config caps).
inline constexpr uint32_t kMaxTopics = 8;
inline constexpr uint32_t kMaxPending = 8;
/// Sessions one shard may hold at most (a session reference packs its index in 23 bits).
inline constexpr uint32_t kMaxShardSessions = 1u << 23;
/// No session.
inline constexpr uint32_t kNoSession = UINT32_MAX;

/// A client address, compact: 16 address bytes (IPv4 in the first 4), port, family; for a
/// client behind a forwarder (§5.5), the forwarder's address and the client's Wireless Node Id.
struct PeerKey {
  uint8_t addr[16];
  uint16_t port;
  uint8_t family;                 ///< 4 or 6
  uint8_t node_len;               ///< the Wireless Node Id's length (0: a direct client)
  uint8_t node[kMaxNodeIdBytes];  ///< the Wireless Node Id, zero beyond node_len
  bool operator==(const PeerKey& o) const noexcept;
};

/// The key of a socket address (IPv4 or IPv6); family 0 for anything else.
PeerKey peer_key(const sockaddr_storage& addr, socklen_t len) noexcept;
/// The key of the client `node_id` (1..kMaxNodeIdBytes octets) behind forwarder `forwarder`.
PeerKey forwarded_key(const PeerKey& forwarder, std::span<const uint8_t> node_id) noexcept;
/// A forwarder allowed to send encapsulated messages (§5.5): an address, one port or any.
struct ForwarderRule {
  PeerKey addr{};         ///< family, address and (network-order) port; no node id
  bool any_port = false;  ///< the rule names no port
};

/// Forwarder rules a config may list, at most.
inline constexpr size_t kMaxForwarders = 64;

/// Parses a `forwarders` list: "10.0.0.5, 10.0.0.6:1885, fd00::1, [fd00::2]:1885" (IP
/// literals; no port: any port). An error names the entry and the fix.
Result<std::vector<ForwarderRule>> parse_forwarders(std::string_view list);
/// Whether `rules` allow the direct address `peer` to forward.
bool forwarder_allowed(std::span<const ForwarderRule> rules, const PeerKey& peer) noexcept;

/// The socket address of a key (for sending; a forwarded client's is its forwarder's), its
/// length in `len`.
void peer_address(const PeerKey& key, sockaddr_storage& out, socklen_t& len) noexcept;

/// Where a session is in its life (§6.14 figure 4; the will handshake of §6.3).
enum class SessionState : uint8_t {
  kFree,
  kAwaitWillTopic,  ///< CONNECT with Will: WILLTOPICREQ sent
  kAwaitWillMsg,    ///< WILLMSGREQ sent
  kActive,
  kAsleep,  ///< DISCONNECT with a duration: replies are buffered
  kAwake,   ///< PINGREQ with its client id: buffered replies are being sent
};

/// A registered topic id and the device its name resolved to.
struct TopicSlot {
  uint64_t device_id;
  uint32_t name_hash;  ///< the topic name's hash (a second REGISTER gets the same id)
  uint16_t id;
  uint16_t pad;
};

/// A QoS 2 message id received and not yet released by PUBREL (§6.7 method B).
struct Qos2Slot {
  uint64_t durable_at;  ///< the log offset its report needs durable (PUBREC, PUBCOMP)
  uint16_t msg_id;
  uint8_t used;
  uint8_t topic_type;
  uint16_t topic_id;
  uint16_t pad;
};

/// One client's session: a fixed-size slot, no heap. A trivial type: all-zero bytes are a free
/// slot, so the table's pages are only touched as sessions arrive.
struct MqttSnSession {
  PeerKey peer;
  SessionState state;
  uint8_t generation;  ///< bumped on every reuse of the slot (stale references)
  uint8_t client_id_len;
  uint8_t topic_count;
  char client_id[24];
  uint64_t device_id;   ///< from the client id's trailing digits (0: none)
  int64_t deadline_ns;  ///< reaped when the monotonic clock passes it
  uint16_t keep_alive_s;
  uint16_t sleep_s;
  uint16_t inflight;  ///< QoS 1/2 acks not sent yet
  uint16_t next_topic_id;
  uint32_t last_seq;      ///< the seq of its last report (each report gets a newer one)
  uint32_t sleep_buffer;  ///< 1 + index in SleepBuffers (0: none)
  uint32_t sleep_bytes;   ///< bytes buffered there
  uint32_t next_free;     ///< free list link (free slots only)
  bool clean;
  bool listed;    ///< its client id is in the cross-shard ClientDirectory; fills padding
  uint32_t will;  ///< 1 + index of its will in the will pool (0: none); fills padding
  TopicSlot topics[kMaxTopics];
  Qos2Slot qos2[kMaxPending];

  /// Its client id.
  std::string_view id() const noexcept { return {client_id, client_id_len}; }
  /// The slot of registered topic `id`, or nullptr.
  const TopicSlot* topic(uint16_t id) const noexcept;
  /// The QoS 2 slot holding `msg_id`, or nullptr.
  Qos2Slot* qos2_slot(uint16_t msg_id) noexcept;
  /// A free QoS 2 slot, or nullptr.
  Qos2Slot* free_qos2() noexcept;
};

/// The sessions of one shard: fixed slots plus two open-addressing indexes (by address, by
/// client id). No allocation after construction; slots not used yet cost no resident memory.
class SessionTable {
 public:
  /// Room for `capacity` sessions (at most kMaxShardSessions).
  explicit SessionTable(uint32_t capacity);

  /// The session of `peer`, or kNoSession.
  uint32_t find_peer(const PeerKey& peer) const noexcept;
  /// The session holding `client_id`, or kNoSession.
  uint32_t find_client(std::string_view client_id) const noexcept;
  /// A new session for `peer` and `client_id` (neither held by another), or kNoSession when
  /// the table is full.
  uint32_t add(const PeerKey& peer, std::string_view client_id) noexcept;
  /// Ends session `index` (its slot becomes free; references to it go stale).
  void remove(uint32_t index) noexcept;
  /// Session `index` (a slot below high_water()).
  MqttSnSession& at(uint32_t index) noexcept { return slots_[index]; }
  const MqttSnSession& at(uint32_t index) const noexcept { return slots_[index]; }
  /// Sessions held.
  uint32_t size() const noexcept { return size_; }
  uint32_t capacity() const noexcept { return capacity_; }
  /// Slots ever used: every live session is below it (the reaper's sweep bound).
  uint32_t high_water() const noexcept { return high_water_; }

  /// A reference to session `index` that goes stale when the slot is reused (23 bits of index,
  /// 7 of generation).
  uint32_t ref(uint32_t index) const noexcept;
  /// The session a reference names, or kNoSession when it went stale.
  uint32_t resolve(uint32_t ref) const noexcept;

 private:
  static uint64_t hash_peer(const PeerKey& p) noexcept;
  static uint64_t hash_id(std::string_view id) noexcept;
  void index_insert(uint32_t* table, uint64_t h, uint32_t index) noexcept;
  void index_erase(uint32_t* table, uint32_t index, bool by_peer) noexcept;

  struct Unmap {
    size_t bytes;
    void operator()(void* p) const noexcept;
  };
  std::unique_ptr<MqttSnSession[], Unmap> slots_;
  std::unique_ptr<uint32_t[], Unmap> by_peer_;    ///< 1 + session index; 0: empty
  std::unique_ptr<uint32_t[], Unmap> by_client_;  ///< likewise
  uint32_t mask_ = 0;
  uint32_t capacity_ = 0;
  uint32_t size_ = 0;
  uint32_t high_water_ = 0;
  uint32_t free_head_ = 0;  ///< 1 + first free slot below high_water_; 0: none
};

// A session without a will costs nothing for it: the will is a pool handle in the slot's
// padding, and so is the flag saying its client id is in the cross-shard directory. The forwarded
// client's node id (§5.5) is inline in its key: 16 bytes. The budget is 512 bytes per idle session,
// indexes included (docs/protocols/mqtt_sn.md).
static_assert(sizeof(MqttSnSession) == 368, "the session slot grew: recheck the memory budget");

/// Fixed-size byte buffers, allocated once: replies held for sleeping clients (§6.14) and wills
/// (§6.3). Shard thread only.
class BufferPool {
 public:
  /// `count` buffers of `bytes` each (either may be 0: nothing is buffered).
  BufferPool(uint32_t count, uint32_t bytes);
  /// A free buffer (1 + index), or 0 when none is left.
  uint32_t take() noexcept;
  /// Returns buffer `handle` (1 + index) to the pool.
  void give_back(uint32_t handle) noexcept;
  /// The bytes of buffer `handle`.
  std::span<uint8_t> data(uint32_t handle) noexcept;
  uint32_t buffer_bytes() const noexcept { return bytes_; }
  /// Buffers in use.
  uint32_t in_use() const noexcept { return in_use_; }

 private:
  std::unique_ptr<uint8_t[]> pool_;
  std::unique_ptr<uint32_t[]> free_;
  uint32_t count_;
  uint32_t bytes_;
  uint32_t free_count_;
  uint32_t in_use_ = 0;
};

/// The pool of sleeping clients' reply buffers.
using SleepBuffers = BufferPool;

/// Bytes a will buffer spends on its own header: flags, topic length, message length (2).
inline constexpr uint32_t kWillHeaderBytes = 4;

/// A will as it is kept (MQTT-SN v1.2 §5.4.7, §5.4.9): WILLTOPIC's flags and topic name, and
/// WILLMSG's message; views into its buffer.
struct WillView {
  uint8_t flags = 0;  ///< the WILLTOPIC flags octet (QoS, retain)
  std::string_view topic;
  std::span<const uint8_t> message;
};

/// Makes will buffer `buf` empty (no topic, no message): a pool buffer holds old bytes.
void will_reset(std::span<uint8_t> buf) noexcept;
/// Writes `flags` and `topic` into will buffer `buf`, keeping the message it holds (all-zero
/// bytes: none). False, and `buf` unchanged, when topic and message exceed the buffer.
bool will_set_topic(std::span<uint8_t> buf, uint8_t flags, std::string_view topic) noexcept;
/// Writes `message` into will buffer `buf` after its topic; false (unchanged) when too long.
bool will_set_message(std::span<uint8_t> buf, std::span<const uint8_t> message) noexcept;
/// The will buffer `buf` holds.
WillView will_view(std::span<const uint8_t> buf) noexcept;

}  // namespace tianhe::protocols::mqtt_sn
