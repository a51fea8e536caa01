#include "protocols/mqtt_sn/mqtt_sn_directory.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/assert.h"
#include "core/hash.h"

namespace tianhe::protocols::mqtt_sn {
namespace {

// Multiply-shift onto [0, n): the table need not be a power of two, so its size follows
// max_sessions instead of doubling past it.
uint32_t reduce(uint32_t h, uint32_t n) noexcept {
  return static_cast<uint32_t>((static_cast<uint64_t>(h) * n) >> 32);
}

}  // namespace

class ClientDirectory::Guard {
 public:
  Guard(const ClientDirectory& d, uint32_t a, uint32_t b) noexcept {
    uint32_t sa = a & d.stripe_mask_;
    uint32_t sb = b & d.stripe_mask_;
    if (sa > sb) std::swap(sa, sb);
    first_ = &d.stripes_[sa];
    second_ = sa == sb ? nullptr : &d.stripes_[sb];
    first_->lock();
    if (second_ != nullptr) second_->lock();
  }
  ~Guard() {
    if (second_ != nullptr) second_->unlock();
    first_->unlock();
  }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  std::mutex* first_;
  std::mutex* second_;
};

void ClientDirectory::Unmap::operator()(Bucket* p) const noexcept {
  ::munmap(p, std::max<size_t>(bytes, 1));
}

ClientDirectory::ClientDirectory(uint32_t capacity, uint32_t shards, uint64_t seed) : seed_(seed) {
  TH_CHECK(shards < UINT16_MAX, "the MQTT-SN client directory names at most 65,534 shards");
  // 1.25 entries per session: two choices of an 8-entry bucket keep the fullest bucket a few
  // entries above the mean, so a table at 80 % of its entries rarely refuses an id.
  const uint64_t entries = std::max<uint64_t>(capacity, 1) * 5 / 4 + kWays;
  buckets_ = static_cast<uint32_t>(std::min<uint64_t>((entries + kWays - 1) / kWays, UINT32_MAX));
  const size_t bytes = mapped_bytes();
  // Anonymous memory reads as zero (every entry free) and costs resident pages only where
  // entries land: the memory-per-idle-session figure counts what sessions use.
  void* p = ::mmap(nullptr, std::max<size_t>(bytes, 1), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  TH_CHECK(p != MAP_FAILED, "mmap of the MQTT-SN client directory failed");
  table_ = std::unique_ptr<Bucket[], Unmap>(static_cast<Bucket*>(p), Unmap{bytes});
  // One mutex per stripe of buckets: CONNECTs on different shards rarely meet on one.
  const uint32_t stripes = std::min<uint32_t>(std::bit_ceil(buckets_), 4096);
  stripe_mask_ = stripes - 1;
  stripes_ = std::make_unique<std::mutex[]>(stripes);
}

ClientDirectory::~ClientDirectory() = default;

void ClientDirectory::buckets_of(std::string_view id, uint32_t& a, uint32_t& b) const noexcept {
  uint64_t h = 0xcbf29ce484222325ULL ^ seed_;
  for (char c : id) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
  h = core::mix64(h ^ seed_);
  a = reduce(static_cast<uint32_t>(h), buckets_);
  b = reduce(static_cast<uint32_t>(h >> 32), buckets_);
  if (b == a && buckets_ > 1) b = a + 1 == buckets_ ? 0 : a + 1;
}

uint32_t ClientDirectory::way_of(const Bucket& b, std::string_view id) noexcept {
  for (uint32_t w = 0; w < kWays; ++w) {
    if (b.owner[w] != kNoOwner && static_cast<uint8_t>(b.id[w][0]) == id.size() &&
        std::memcmp(b.id[w] + 1, id.data(), id.size()) == 0) {
      return w;
    }
  }
  return kWays;
}

ClientDirectory::Slot ClientDirectory::locate(uint32_t a, uint32_t b,
                                              std::string_view id) const noexcept {
  for (Bucket* bk : {&table_[a], &table_[b]}) {
    const uint32_t w = way_of(*bk, id);
    if (w != kWays) return {bk, w};
  }
  return {nullptr, kWays};
}

ClientDirectory::Claim ClientDirectory::claim(std::string_view id, uint32_t shard,
                                              uint32_t& holder) noexcept {
  if (id.empty() || id.size() > kMaxClientIdBytes) return Claim::kFull;
  uint32_t a = 0;
  uint32_t b = 0;
  buckets_of(id, a, b);
  Guard guard(*this, a, b);
  if (const Slot s = locate(a, b, id); s.bucket != nullptr) {
    holder = s.bucket->owner[s.way] - 1u;
    return holder == shard ? Claim::kOwned : Claim::kHeld;
  }
  Bucket* both[2] = {&table_[a], &table_[b]};
  // Free: into the emptier bucket.
  uint32_t free_way[2] = {kWays, kWays};
  uint32_t used[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    for (uint32_t w = 0; w < kWays; ++w) {
      if (both[i]->owner[w] == kNoOwner) {
        if (free_way[i] == kWays) free_way[i] = w;
      } else {
        ++used[i];
      }
    }
  }
  const int pick = free_way[0] == kWays ? 1 : (free_way[1] == kWays || used[0] <= used[1] ? 0 : 1);
  if (free_way[pick] == kWays) return Claim::kFull;
  Bucket& bk = *both[pick];
  const uint32_t w = free_way[pick];
  bk.id[w][0] = static_cast<char>(id.size());
  std::memcpy(bk.id[w] + 1, id.data(), id.size());
  bk.owner[w] = static_cast<uint16_t>(shard + 1);
  size_.fetch_add(1, std::memory_order_relaxed);
  holder = shard;
  return Claim::kClaimed;
}

bool ClientDirectory::release(std::string_view id, uint32_t shard) noexcept {
  if (id.empty() || id.size() > kMaxClientIdBytes) return false;
  uint32_t a = 0;
  uint32_t b = 0;
  buckets_of(id, a, b);
  Guard guard(*this, a, b);
  const Slot s = locate(a, b, id);
  if (s.bucket == nullptr || s.bucket->owner[s.way] != shard + 1) return false;
  s.bucket->owner[s.way] = kNoOwner;
  std::memset(s.bucket->id[s.way], 0, sizeof s.bucket->id[s.way]);
  size_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool ClientDirectory::transfer(std::string_view id, uint32_t from, uint32_t to) noexcept {
  if (id.empty() || id.size() > kMaxClientIdBytes) return false;
  uint32_t a = 0;
  uint32_t b = 0;
  buckets_of(id, a, b);
  Guard guard(*this, a, b);
  const Slot s = locate(a, b, id);
  if (s.bucket == nullptr || s.bucket->owner[s.way] != from + 1) return false;
  s.bucket->owner[s.way] = static_cast<uint16_t>(to + 1);
  return true;
}

bool ClientDirectory::find(std::string_view id, uint32_t& holder) const noexcept {
  if (id.empty() || id.size() > kMaxClientIdBytes) return false;
  uint32_t a = 0;
  uint32_t b = 0;
  buckets_of(id, a, b);
  Guard guard(*this, a, b);
  const Slot s = locate(a, b, id);
  if (s.bucket == nullptr) return false;
  holder = s.bucket->owner[s.way] - 1u;
  return true;
}

ShardLetter ShardLetter::make(Kind kind, std::string_view client_id, uint32_t from, uint32_t token,
                              int64_t now_ns) noexcept {
  ShardLetter l;
  l.kind = kind;
  l.id_len = static_cast<uint8_t>(std::min<size_t>(client_id.size(), kMaxClientIdBytes));
  std::memcpy(l.id, client_id.data(), l.id_len);
  l.from = static_cast<uint16_t>(from);
  l.token = token;
  l.sent_ns = now_ns;
  return l;
}

ShardMail::ShardMail(uint32_t shards, uint32_t ring_letters)
    : shards_(std::max<uint32_t>(shards, 1)),
      mask_(std::bit_ceil(std::max<uint32_t>(ring_letters, 2)) - 1),
      rings_(std::make_unique<Ring[]>(static_cast<size_t>(shards_) * shards_)),
      boxes_(std::make_unique<Box[]>(shards_)) {
  for (uint32_t from = 0; from < shards_; ++from) {
    for (uint32_t to = 0; to < shards_; ++to) {
      if (from != to) ring(from, to).letters = std::make_unique<ShardLetter[]>(mask_ + 1);
    }
  }
  for (uint32_t i = 0; i < shards_; ++i) boxes_[i].fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

ShardMail::~ShardMail() {
  for (uint32_t i = 0; i < shards_; ++i) {
    if (boxes_[i].fd >= 0) ::close(boxes_[i].fd);
  }
}

bool ShardMail::has_room(uint32_t from, uint32_t to) const noexcept {
  if (from >= shards_ || to >= shards_ || from == to) return false;
  const Ring& r = ring(from, to);
  return r.tail.load(std::memory_order_relaxed) - r.head.load(std::memory_order_acquire) <= mask_;
}

bool ShardMail::send(uint32_t from, uint32_t to, const ShardLetter& letter) noexcept {
  if (!has_room(from, to)) return false;
  Ring& r = ring(from, to);
  Box& box = boxes_[to];
  // The eventfd first, the letter and the flag after: a receiver that reads the eventfd and
  // finds no flag yet only turns its loop once more, and one that took the flag has read the
  // eventfd's count too, so the eventfd is never left readable with nothing to read (a loop
  // that would spin).
  if (box.fd >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t w = ::write(box.fd, &one, sizeof one);
  }
  const uint32_t tail = r.tail.load(std::memory_order_relaxed);
  r.letters[tail & mask_] = letter;
  r.tail.store(tail + 1, std::memory_order_release);
  box.flag.store(true, std::memory_order_release);
  return true;
}

void ShardMail::take_signal(uint32_t shard) noexcept {
  const int fd = boxes_[shard].fd;
  if (fd < 0) return;
  uint64_t n = 0;
  [[maybe_unused]] const ssize_t r = ::read(fd, &n, sizeof n);
}

MqttSnCluster::MqttSnCluster(uint32_t shards, uint32_t max_sessions, uint64_t seed)
    : directory(max_sessions, shards, seed), mail(shards, 256) {}

}  // namespace tianhe::protocols::mqtt_sn
