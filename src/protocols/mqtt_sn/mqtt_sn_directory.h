// Client-id ownership across the shards of one MQTT-SN gateway. Each shard owns the sessions of
// the addresses the kernel hashes to its socket (SO_REUSEPORT), so a client that moves address
// usually lands on another shard. The ClientDirectory, shared by every shard of the protocol
// instance, says which shard holds each client id, so a CONNECT for an id held elsewhere is
// refused (or, with allow_takeover, handed over) as it is within one shard; the ShardMail rings
// carry the hand-over between the two shards. Both are touched on CONNECT and on a session's
// end only: a PUBLISH never looks at them.
//
// Threads: any shard thread calls any ClientDirectory method (a mutex per stripe of buckets);
// ShardMail's ring from shard A to shard B is written by A's thread only and read by B's only.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

namespace tianhe::protocols::mqtt_sn {

/// Longest client id (MQTT-SN v1.2 §5.3.1: 1..23 characters); the directory keeps ids whole.
inline constexpr uint32_t kMaxClientIdBytes = 23;

/// Which shard holds which client id: a fixed table of buckets of 8 entries, each entry the
/// whole client id (so two ids are never mistaken for one, whatever their hashes) and its
/// owning shard. An id may live in either of two buckets (two hashes, seeded per process: ids
/// cannot be chosen to crowd one bucket); an insert takes the emptier. Bounded: when both
/// buckets are full the claim fails (kFull) and the caller keeps the session to its shard.
/// Memory is mapped untouched: pages become resident as entries land in them.
class ClientDirectory {
 public:
  /// What claim() found.
  enum class Claim : uint8_t {
    kClaimed,  ///< the id was free: `shard` holds it now
    kOwned,    ///< `shard` held it already
    kHeld,     ///< another shard holds it (`holder`)
    kFull,     ///< free, but both of its buckets are full: not recorded
  };

  /// Room for about `capacity` ids (the gateway's max_sessions) for `shards` shards (at most
  /// 65,535); `seed` seeds the bucket hashes.
  ClientDirectory(uint32_t capacity, uint32_t shards, uint64_t seed);
  ~ClientDirectory();
  ClientDirectory(const ClientDirectory&) = delete;
  ClientDirectory& operator=(const ClientDirectory&) = delete;

  /// Records that `shard` holds `id` unless another shard does (then `holder` names it).
  Claim claim(std::string_view id, uint32_t shard, uint32_t& holder) noexcept;
  /// Forgets `id` when `shard` holds it; false when it does not.
  bool release(std::string_view id, uint32_t shard) noexcept;
  /// Hands `id` from shard `from` to shard `to` when `from` holds it; false otherwise.
  bool transfer(std::string_view id, uint32_t from, uint32_t to) noexcept;
  /// The shard holding `id`, or false when none does.
  bool find(std::string_view id, uint32_t& holder) const noexcept;
  /// Ids recorded (any thread).
  uint32_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  /// Entries the table has room for (buckets × 8).
  uint32_t slots() const noexcept { return buckets_ * kWays; }
  /// Bytes the table maps (resident only where entries landed).
  size_t mapped_bytes() const noexcept { return static_cast<size_t>(buckets_) * sizeof(Bucket); }

 private:
  static constexpr uint32_t kWays = 8;
  static constexpr uint16_t kNoOwner = 0;  ///< owner is 1 + shard; 0 marks a free entry
  /// 8 entries: owners apart from the ids, so a bucket is 208 bytes (26 per entry).
  struct Bucket {
    uint16_t owner[kWays];                  ///< 1 + shard; 0: free
    char id[kWays][kMaxClientIdBytes + 1];  ///< length, then the id's bytes
  };

  /// An entry: its bucket (null when the id is in neither of its buckets) and way.
  struct Slot {
    Bucket* bucket;
    uint32_t way;
  };
  void buckets_of(std::string_view id, uint32_t& a, uint32_t& b) const noexcept;
  /// Where `id` is in bucket `b`, or kWays.
  static uint32_t way_of(const Bucket& b, std::string_view id) noexcept;
  /// Where `id` is in buckets a and b (their stripes locked by the caller).
  Slot locate(uint32_t a, uint32_t b, std::string_view id) const noexcept;
  /// Locks the stripes of buckets a and b (one when they share it), in order.
  class Guard;

  struct Unmap {
    size_t bytes;
    void operator()(Bucket* p) const noexcept;
  };
  std::unique_ptr<Bucket[], Unmap> table_;
  std::unique_ptr<std::mutex[]> stripes_;
  uint32_t buckets_ = 0;
  uint32_t stripe_mask_ = 0;
  uint64_t seed_ = 0;
  std::atomic<uint32_t> size_{0};
};

/// A message between two shards about a client id (MQTT-SN takeover across shards).
struct ShardLetter {
  enum class Kind : uint8_t {
    kTakeover,  ///< "end your session of `id` and hand its directory entry to me"
    kGranted,   ///< done: the entry is the asker's now
    kStale,     ///< the answerer does not hold `id` (any more): look again
  };
  Kind kind = Kind::kTakeover;
  uint8_t id_len = 0;
  char id[kMaxClientIdBytes] = {};
  uint16_t from = 0;    ///< the sending shard
  uint32_t token = 0;   ///< the asker's request (echoed in the answer)
  int64_t sent_ns = 0;  ///< core::mono_ns() when sent (the monotonic clock is the machine's)

  /// The client id it names.
  std::string_view client_id() const noexcept { return {id, id_len}; }
  /// A letter of `kind` about `client_id` (truncated at kMaxClientIdBytes), sent at `now_ns`.
  static ShardLetter make(Kind kind, std::string_view client_id, uint32_t from, uint32_t token,
                          int64_t now_ns = 0) noexcept;
};

/// The letter boxes of the shards of one protocol instance: for every ordered pair of shards a
/// bounded single-producer single-consumer ring, and for every shard an eventfd that wakes its
/// loop when a letter arrives, and a flag it checks once per loop turn (one relaxed load).
class ShardMail {
 public:
  /// Rings of `ring_letters` letters (rounded up to a power of two) between `shards` shards.
  ShardMail(uint32_t shards, uint32_t ring_letters);
  ~ShardMail();
  ShardMail(const ShardMail&) = delete;
  ShardMail& operator=(const ShardMail&) = delete;

  /// Whether the ring from `from` to `to` has room (only `from`'s thread fills it: room seen
  /// stays until it sends).
  bool has_room(uint32_t from, uint32_t to) const noexcept;
  /// Sends `letter` from `from` to `to` and wakes `to`; false (nothing sent) when the ring is
  /// full. `from`'s thread only.
  bool send(uint32_t from, uint32_t to, const ShardLetter& letter) noexcept;
  /// Whether letters may wait for `shard` (cheap: one relaxed load).
  bool pending(uint32_t shard) const noexcept {
    return boxes_[shard].flag.load(std::memory_order_relaxed);
  }
  /// Hands every letter waiting for `shard` to `f(letter)`, in order per sender; returns how
  /// many. `shard`'s thread only.
  template <typename F>
  uint32_t drain(uint32_t shard, F&& f) noexcept {
    Box& box = boxes_[shard];
    if (!box.flag.exchange(false, std::memory_order_acquire)) return 0;
    take_signal(shard);
    uint32_t n = 0;
    for (uint32_t from = 0; from < shards_; ++from) {
      if (from == shard) continue;
      Ring& r = ring(from, shard);
      uint32_t head = r.head.load(std::memory_order_relaxed);
      const uint32_t tail = r.tail.load(std::memory_order_acquire);
      for (; head != tail; ++head, ++n) {
        f(static_cast<const ShardLetter&>(r.letters[head & mask_]));
      }
      r.head.store(head, std::memory_order_release);
    }
    return n;
  }
  /// The eventfd that is readable while letters wait for `shard` (-1: none could be made; the
  /// loop still sees the flag on its next turn).
  int fd(uint32_t shard) const noexcept { return boxes_[shard].fd; }
  uint32_t shards() const noexcept { return shards_; }

 private:
  struct alignas(64) Ring {
    alignas(64) std::atomic<uint32_t> head{0};  ///< next letter to read (the receiver's)
    alignas(64) std::atomic<uint32_t> tail{0};  ///< next free place (the sender's)
    std::unique_ptr<ShardLetter[]> letters;
  };
  struct alignas(64) Box {
    std::atomic<bool> flag{false};
    int fd = -1;
  };
  Ring& ring(uint32_t from, uint32_t to) noexcept { return rings_[from * shards_ + to]; }
  const Ring& ring(uint32_t from, uint32_t to) const noexcept {
    return rings_[from * shards_ + to];
  }
  void take_signal(uint32_t shard) noexcept;

  uint32_t shards_;
  uint32_t mask_;
  std::unique_ptr<Ring[]> rings_;
  std::unique_ptr<Box[]> boxes_;
};

/// What the shards of one MQTT-SN instance share across shards: the client directory and the
/// letter boxes. Made once by the protocol instance when it runs on two shards or more.
struct MqttSnCluster {
  /// For `shards` shards and the gateway's `max_sessions`.
  MqttSnCluster(uint32_t shards, uint32_t max_sessions, uint64_t seed);
  ClientDirectory directory;  ///< client id -> shard
  ShardMail mail;             ///< takeover requests and their answers
};

}  // namespace tianhe::protocols::mqtt_sn
