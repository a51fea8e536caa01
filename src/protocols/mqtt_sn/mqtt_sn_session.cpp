#include "protocols/mqtt_sn/mqtt_sn_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>
#include <string>

#include "core/assert.h"
#include "core/hash.h"

namespace tianhe::protocols::mqtt_sn {
namespace {

// Anonymous mappings start as shared zero pages: a table sized for max_sessions costs resident
// memory only for the slots sessions have used (the memory-per-idle-session figure).
void* map_zeroed(size_t bytes) {
  void* p = ::mmap(nullptr, std::max<size_t>(bytes, 1), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  TH_CHECK(p != MAP_FAILED, "mmap of the MQTT-SN session table failed");
  return p;
}

}  // namespace

bool PeerKey::operator==(const PeerKey& o) const noexcept {
  return std::memcmp(this, &o, sizeof *this) == 0;
}

PeerKey peer_key(const sockaddr_storage& addr, socklen_t len) noexcept {
  PeerKey k{};
  if (addr.ss_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    std::memcpy(k.addr, &a.sin_addr, 4);
    k.port = a.sin_port;
    k.family = 4;
  } else if (addr.ss_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    std::memcpy(k.addr, &a.sin6_addr, 16);
    k.port = a.sin6_port;
    k.family = 6;
  }
  return k;
}

PeerKey forwarded_key(const PeerKey& forwarder, std::span<const uint8_t> node_id) noexcept {
  PeerKey k = forwarder;
  const size_t n = std::min<size_t>(node_id.size(), kMaxNodeIdBytes);
  std::memset(k.node, 0, sizeof k.node);
  if (n > 0) std::memcpy(k.node, node_id.data(), n);
  k.node_len = static_cast<uint8_t>(n);
  return k;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// One entry: an IPv4 or IPv6 literal, with an optional port ("a.b.c.d:p", "[v6]:p").
bool parse_forwarder(std::string_view e, ForwarderRule& out) {
  std::string host(e);
  std::string port;
  if (!e.empty() && e.front() == '[') {
    const size_t close = e.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(e.substr(1, close - 1));
    const std::string_view rest = e.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || rest.size() == 1) return false;
      port = std::string(rest.substr(1));
    }
  } else if (std::count(e.begin(), e.end(), ':') == 1) {
    const size_t colon = e.find(':');
    host = std::string(e.substr(0, colon));
    port = std::string(e.substr(colon + 1));
    if (port.empty()) return false;
  }
  out = ForwarderRule{};
  if (inet_pton(AF_INET, host.c_str(), out.addr.addr) == 1) {
    out.addr.family = 4;
  } else if (inet_pton(AF_INET6, host.c_str(), out.addr.addr) == 1) {
    out.addr.family = 6;
  } else {
    return false;
  }
  out.any_port = port.empty();
  if (!out.any_port) {
    uint32_t p = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return false;
      p = p * 10 + static_cast<uint32_t>(c - '0');
      if (p > 65535) return false;
    }
    if (p == 0) return false;
    out.addr.port = htons(static_cast<uint16_t>(p));
  }
  return true;
}

}  // namespace

Result<std::vector<ForwarderRule>> parse_forwarders(std::string_view list) {
  std::vector<ForwarderRule> rules;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view e = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (e.empty()) continue;
    ForwarderRule r;
    if (!parse_forwarder(e, r)) {
      return make_error("protocols.mqtt_sn.forwarders: \"" + std::string(e) +
                        "\" is not an IP address with an optional port; write e.g. "
                        "\"10.0.0.5\", \"10.0.0.5:1885\" or \"[fd00::5]:1885\"");
    }
    if (rules.size() == kMaxForwarders) {
      return make_error("protocols.mqtt_sn.forwarders: more than " +
                        std::to_string(kMaxForwarders) +
                        " entries; list fewer, or set allow_all_forwarders = true");
    }
    rules.push_back(r);
  }
  return rules;
}

bool forwarder_allowed(std::span<const ForwarderRule> rules, const PeerKey& peer) noexcept {
  for (const ForwarderRule& r : rules) {
    if (r.addr.family == peer.family && std::memcmp(r.addr.addr, peer.addr, 16) == 0 &&
        (r.any_port || r.addr.port == peer.port)) {
      return true;
    }
  }
  return false;
}

void peer_address(const PeerKey& key, sockaddr_storage& out, socklen_t& len) noexcept {
  out = sockaddr_storage{};
  if (key.family == 6) {
    auto& a = reinterpret_cast<sockaddr_in6&>(out);
    a.sin6_family = AF_INET6;
    std::memcpy(&a.sin6_addr, key.addr, 16);
    a.sin6_port = key.port;
    len = sizeof a;
  } else {
    auto& a = reinterpret_cast<sockaddr_in&>(out);
    a.sin_family = AF_INET;
    std::memcpy(&a.sin_addr, key.addr, 4);
    a.sin_port = key.port;
    len = sizeof a;
  }
}

const TopicSlot* MqttSnSession::topic(uint16_t topic_id) const noexcept {
  for (uint32_t i = 0; i < topic_count; ++i) {
    if (topics[i].id == topic_id) return &topics[i];
  }
  return nullptr;
}

Qos2Slot* MqttSnSession::qos2_slot(uint16_t msg_id) noexcept {
  for (Qos2Slot& q : qos2) {
    if (q.used != 0 && q.msg_id == msg_id) return &q;
  }
  return nullptr;
}

Qos2Slot* MqttSnSession::free_qos2() noexcept {
  for (Qos2Slot& q : qos2) {
    if (q.used == 0) return &q;
  }
  return nullptr;
}

void SessionTable::Unmap::operator()(void* p) const noexcept {
  ::munmap(p, std::max<size_t>(bytes, 1));
}

SessionTable::SessionTable(uint32_t capacity)
    : capacity_(std::clamp<uint32_t>(capacity, 1, kMaxShardSessions)) {
  // Load at most 1/2: short probe runs, and a miss (a new client) ends quickly.
  const uint32_t slots = std::bit_ceil(capacity_ * 2);
  mask_ = slots - 1;
  const size_t session_bytes = sizeof(MqttSnSession) * capacity_;
  const size_t index_bytes = sizeof(uint32_t) * slots;
  slots_ = std::unique_ptr<MqttSnSession[], Unmap>(
      static_cast<MqttSnSession*>(map_zeroed(session_bytes)), Unmap{session_bytes});
  by_peer_ = std::unique_ptr<uint32_t[], Unmap>(static_cast<uint32_t*>(map_zeroed(index_bytes)),
                                                Unmap{index_bytes});
  by_client_ = std::unique_ptr<uint32_t[], Unmap>(static_cast<uint32_t*>(map_zeroed(index_bytes)),
                                                  Unmap{index_bytes});
}

uint64_t SessionTable::hash_peer(const PeerKey& p) noexcept {
  uint64_t a = 0;
  uint64_t b = 0;
  std::memcpy(&a, p.addr, 8);
  std::memcpy(&b, p.addr + 8, 8);
  uint64_t h = core::mix64(a ^ core::mix64(b ^ (static_cast<uint64_t>(p.port) << 8 | p.family)));
  static_assert(kMaxNodeIdBytes == 16, "the node id is hashed as two 8-byte words");
  if (p.node_len != 0) {  // clients behind one forwarder differ only in their node ids
    uint64_t c = 0;
    uint64_t d = 0;
    std::memcpy(&c, p.node, 8);
    std::memcpy(&d, p.node + 8, 8);
    h = core::mix64(h ^ c ^ core::mix64(d ^ p.node_len));
  }
  return h;
}

uint64_t SessionTable::hash_id(std::string_view id) noexcept {
  // FNV-1a over at most 23 bytes, then mixed: client ids often differ in their last digits.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : id) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
  return core::mix64(h);
}

uint32_t SessionTable::find_peer(const PeerKey& peer) const noexcept {
  for (uint32_t i = static_cast<uint32_t>(hash_peer(peer)) & mask_;; i = (i + 1) & mask_) {
    const uint32_t e = by_peer_[i];
    if (e == 0) return kNoSession;
    if (slots_[e - 1].peer == peer) return e - 1;
  }
}

uint32_t SessionTable::find_client(std::string_view client_id) const noexcept {
  for (uint32_t i = static_cast<uint32_t>(hash_id(client_id)) & mask_;; i = (i + 1) & mask_) {
    const uint32_t e = by_client_[i];
    if (e == 0) return kNoSession;
    if (slots_[e - 1].id() == client_id) return e - 1;
  }
}

void SessionTable::index_insert(uint32_t* table, uint64_t h, uint32_t index) noexcept {
  uint32_t i = static_cast<uint32_t>(h) & mask_;
  while (table[i] != 0) i = (i + 1) & mask_;
  table[i] = index + 1;
}

void SessionTable::index_erase(uint32_t* table, uint32_t index, bool by_peer) noexcept {
  const MqttSnSession& s = slots_[index];
  auto home = [&](uint32_t e) noexcept {
    const MqttSnSession& o = slots_[e - 1];
    return static_cast<uint32_t>(by_peer ? hash_peer(o.peer) : hash_id(o.id())) & mask_;
  };
  uint32_t i = static_cast<uint32_t>(by_peer ? hash_peer(s.peer) : hash_id(s.id())) & mask_;
  while (table[i] != index + 1) {
    if (table[i] == 0) return;  // not indexed (cannot happen for a live session)
    i = (i + 1) & mask_;
  }
  // Backward-shift deletion: move later entries of the run into the hole when their home
  // position allows, so lookups never need tombstones.
  uint32_t hole = i;
  for (uint32_t j = (i + 1) & mask_; table[j] != 0; j = (j + 1) & mask_) {
    const uint32_t h = home(table[j]);
    const bool movable = hole <= j ? (h <= hole || h > j) : (h <= hole && h > j);
    if (movable) {
      table[hole] = table[j];
      hole = j;
    }
  }
  table[hole] = 0;
}

uint32_t SessionTable::add(const PeerKey& peer, std::string_view client_id) noexcept {
  if (size_ == capacity_) return kNoSession;
  uint32_t index = 0;
  if (free_head_ != 0) {
    index = free_head_ - 1;
    free_head_ = slots_[index].next_free;
  } else {
    index = high_water_++;
  }
  MqttSnSession& s = slots_[index];
  const uint8_t generation = static_cast<uint8_t>((s.generation + 1) & 0x7F);
  s = MqttSnSession{};
  s.generation = generation;
  s.peer = peer;
  s.client_id_len = static_cast<uint8_t>(std::min<size_t>(client_id.size(), 23));
  std::memcpy(s.client_id, client_id.data(), s.client_id_len);
  s.state = SessionState::kActive;
  s.next_topic_id = 1;
  s.clean = true;
  index_insert(by_peer_.get(), hash_peer(peer), index);
  index_insert(by_client_.get(), hash_id(s.id()), index);
  ++size_;
  return index;
}

void SessionTable::remove(uint32_t index) noexcept {
  MqttSnSession& s = slots_[index];
  if (s.state == SessionState::kFree) return;
  index_erase(by_peer_.get(), index, true);
  index_erase(by_client_.get(), index, false);
  const uint8_t generation = s.generation;
  s = MqttSnSession{};
  s.generation = generation;
  s.next_free = free_head_;
  free_head_ = index + 1;
  --size_;
}

uint32_t SessionTable::ref(uint32_t index) const noexcept {
  return index | (static_cast<uint32_t>(slots_[index].generation) << 23);
}

uint32_t SessionTable::resolve(uint32_t ref) const noexcept {
  const uint32_t index = ref & (kMaxShardSessions - 1);
  if (index >= high_water_) return kNoSession;
  const MqttSnSession& s = slots_[index];
  if (s.state == SessionState::kFree || s.generation != ((ref >> 23) & 0x7F)) return kNoSession;
  return index;
}

BufferPool::BufferPool(uint32_t count, uint32_t bytes)
    : pool_(std::make_unique_for_overwrite<uint8_t[]>(static_cast<size_t>(count) * bytes)),
      free_(std::make_unique<uint32_t[]>(count)),
      count_(count),
      bytes_(bytes),
      free_count_(count) {
  for (uint32_t i = 0; i < count; ++i) free_[i] = count - i;
}

uint32_t BufferPool::take() noexcept {
  if (free_count_ == 0 || bytes_ == 0) return 0;
  ++in_use_;
  return free_[--free_count_];
}

void BufferPool::give_back(uint32_t handle) noexcept {
  if (handle == 0 || handle > count_ || free_count_ == count_) return;
  free_[free_count_++] = handle;
  --in_use_;
}

std::span<uint8_t> BufferPool::data(uint32_t handle) noexcept {
  return {pool_.get() + static_cast<size_t>(handle - 1) * bytes_, bytes_};
}

// A will buffer: [flags][topic length][message length, big-endian 16][topic][message]. The
// topic length fits one octet: the parser bounds topic names at ParserLimits::max_topic_bytes.
bool will_set_topic(std::span<uint8_t> buf, uint8_t flags, std::string_view topic) noexcept {
  if (buf.size() < kWillHeaderBytes || topic.size() > 255) return false;
  const WillView old = will_view(buf);
  const size_t msg = old.message.size();
  if (kWillHeaderBytes + topic.size() + msg > buf.size()) return false;
  // The message moves to follow the new topic (memmove: the two may overlap).
  std::memmove(buf.data() + kWillHeaderBytes + topic.size(), old.message.data(), msg);
  if (!topic.empty()) std::memcpy(buf.data() + kWillHeaderBytes, topic.data(), topic.size());
  buf[0] = flags;
  buf[1] = static_cast<uint8_t>(topic.size());
  return true;
}

void will_reset(std::span<uint8_t> buf) noexcept {
  std::memset(buf.data(), 0, std::min<size_t>(buf.size(), kWillHeaderBytes));
}

bool will_set_message(std::span<uint8_t> buf, std::span<const uint8_t> message) noexcept {
  if (buf.size() < kWillHeaderBytes) return false;
  const size_t topic = buf[1];
  if (kWillHeaderBytes + topic + message.size() > buf.size()) return false;
  if (!message.empty()) {
    std::memcpy(buf.data() + kWillHeaderBytes + topic, message.data(), message.size());
  }
  buf[2] = static_cast<uint8_t>(message.size() >> 8);
  buf[3] = static_cast<uint8_t>(message.size());
  return true;
}

WillView will_view(std::span<const uint8_t> buf) noexcept {
  WillView w;
  if (buf.size() < kWillHeaderBytes) return w;
  const size_t topic = buf[1];
  const size_t msg = static_cast<size_t>((buf[2] << 8) | buf[3]);
  if (kWillHeaderBytes + topic + msg > buf.size()) return w;  // cannot happen: written bounded
  w.flags = buf[0];
  w.topic = {reinterpret_cast<const char*>(buf.data()) + kWillHeaderBytes, topic};
  w.message = buf.subspan(kWillHeaderBytes + topic, msg);
  return w;
}

}  // namespace tianhe::protocols::mqtt_sn
