#include "protocols/mqtt_sn/mqtt_sn_ingest.h"

#include <arpa/inet.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "core/clock.h"
#include "pipeline/validator.h"

namespace tianhe::protocols::mqtt_sn {
namespace {

constexpr uint32_t kReplyQueueEntries = 16384;
constexpr uint32_t kReplyArenaBytes = 2u << 20;
constexpr uint32_t kMaxRepliesPerSend = 256;
// Room a PUBLISH's payload may need in the batch's metric storage; the batch is appended
// before a PUBLISH that might not fit (a codec finding no room would dead-letter it).
constexpr uint32_t kMetricsPerPublish = 256;
// The reaper looks at this many slots per timer tick and sweeps all of them once a second.
constexpr uint32_t kSweepSlots = 16384;
constexpr int64_t kSweepPeriodNs = 1'000'000'000;
// A QoS 2 id whose report is in the batch being built (durable offset not known yet).
constexpr uint64_t kDurablePending = UINT64_MAX;

// Reply tags: the session (stale-checked reference) in the low 30 bits, and two flags.
constexpr uint32_t kRefMask = (1u << 30) - 1;
constexpr uint32_t kTagInflight = 1u << 30;  // a PUBACK/PUBREC: its session's inflight drops
constexpr uint32_t kTagDirect = 1u << 31;    // sent even to a sleeping client
constexpr uint32_t kNoRef = kMaxShardSessions - 1;

// A CONNECT resumed after another shard answered: no datagram of the batch is its cause.
constexpr uint32_t kResumed = UINT32_MAX;
// How long a CONNECT waits for another shard to hand its client id over before it is answered
// "congestion" (a stopped shard, a full ring), and how often it may ask (the id moved again).
constexpr int64_t kTakeoverWaitNs = 2'000'000'000;
constexpr uint8_t kMaxTakeoverRounds = 4;

// §6.13-style grace: a client is lost after 1.5 keep-alive periods of silence (as in MQTT).
int64_t grace_ns(uint32_t seconds) {
  return static_cast<int64_t>(seconds) * 1'500'000'000;
}

// Whether a reply was encapsulated for a forwarder (§5.5); then b[0] is its header's length.
bool wrapped(std::span<const uint8_t> b) {
  return b.size() >= 2 && b[0] != 0x01 && b[1] == static_cast<uint8_t>(MsgType::kEncapsulated);
}

// The message a reply carries (inside its encapsulation, if any).
std::span<const uint8_t> unwrapped(std::span<const uint8_t> b) {
  return wrapped(b) && b[0] < b.size() ? b.subspan(b[0]) : b;
}

MsgType reply_type(std::span<const uint8_t> b) {
  if (b.size() >= 4 && b[0] == 0x01) return static_cast<MsgType>(b[3]);
  return b.size() >= 2 ? static_cast<MsgType>(b[1]) : MsgType::kEncapsulated;
}

// A message's length per its own header (§5.2.1), 0 when it cannot be read.
size_t plain_length(std::span<const uint8_t> b) {
  if (b.empty()) return 0;
  if (b[0] != 0x01) return b[0];
  return b.size() >= 3 ? static_cast<size_t>((b[1] << 8) | b[2]) : 0;
}

// A held reply's length: its encapsulation header (§5.5) and the message inside, or the message.
size_t message_length(std::span<const uint8_t> b) {
  if (!wrapped(b)) return plain_length(b);
  const size_t head = b[0];
  if (head >= b.size()) return 0;
  const size_t inner = plain_length(b.subspan(head));
  return inner == 0 ? 0 : head + inner;
}

uint32_t topic_hash(std::string_view name) {
  uint32_t h = 2166136261u;
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  return h;
}

uint32_t batch_metrics(uint32_t recv_batch) {
  return recv_batch * 32 + kMetricsPerPublish;
}

}  // namespace

std::string_view reject_reason_name(Reject r) noexcept {
  constexpr std::string_view kNames[] = {
      "congestion",        "sessions_full",   "takeover_refused",  "no_session",
      "unexpected",        "unknown_topic",   "topic_mismatch",    "tenant_mismatch",
      "no_device",         "topics_full",     "pending_full",      "qos_minus1_topic",
      "sleep_buffer_full", "no_sleep_buffer", "reply_queue_full",  "batch_full",
      "will_too_large",    "wills_full",      "forwarder_refused", "takeover_busy"};
  static_assert(std::size(kNames) == static_cast<size_t>(Reject::kCount));
  const auto i = static_cast<size_t>(r);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

std::string_view session_end_name(SessionEnd e) noexcept {
  constexpr std::string_view kNames[] = {"disconnect", "keep_alive", "sleep_lapsed",
                                         "takeover",   "replaced",   "refused"};
  static_assert(std::size(kNames) == static_cast<size_t>(SessionEnd::kCount));
  const auto i = static_cast<size_t>(e);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

std::string_view will_discard_name(WillDiscard d) noexcept {
  constexpr std::string_view kNames[] = {"disconnect", "replaced", "deleted", "unresolved"};
  static_assert(std::size(kNames) == static_cast<size_t>(WillDiscard::kCount));
  const auto i = static_cast<size_t>(d);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

Result<std::shared_ptr<const MqttSnShared>> MqttSnShared::build(
    const MqttSnConfig& config, std::shared_ptr<const pipeline::Registry> registry,
    uint32_t shards) {
  auto s = std::make_shared<MqttSnShared>();
  s->config = config;
  s->registry = std::move(registry);
  s->shards = std::max<uint32_t>(shards, 1);
  s->limits.max_frame_bytes = config.max_frame_bytes;
  auto fw = parse_forwarders(config.forwarders);
  if (!fw.ok()) return fw.error();
  s->forwarders = std::move(fw.value());
  auto t = TopicTemplate::parse(config.topics);
  if (!t.ok()) return t.error();
  s->topics = std::move(t.value());
  auto pre = parse_predefined_topics(config.predefined_topics);
  if (!pre.ok()) return pre.error();
  for (const PredefinedTopic& p : pre.value()) {
    ResolvedTopic r{p.id, 0, p.name};
    const TopicMatch m = s->topics.match(p.name);
    if (m.matched) {
      r.device_id = m.device_id;
      const pipeline::DeviceEntry* e = s->registry ? s->registry->find(m.device_id) : nullptr;
      if (e != nullptr && !m.tenant.empty() && s->registry->tenant_name(e->tenant) != m.tenant) {
        return make_error("protocols.mqtt_sn.predefined_topics: topic " + std::to_string(p.id) +
                          " (" + p.name + ") names tenant \"" + std::string(m.tenant) +
                          "\" but device " + std::to_string(m.device_id) + " belongs to \"" +
                          s->registry->tenant_name(e->tenant) + "\"; fix the topic name");
      }
    }
    s->predefined.push_back(std::move(r));
  }
  std::sort(s->predefined.begin(), s->predefined.end(),
            [](const ResolvedTopic& a, const ResolvedTopic& b) { return a.id < b.id; });
  return std::shared_ptr<const MqttSnShared>(std::move(s));
}

const ResolvedTopic* MqttSnShared::predefined_topic(uint16_t id) const noexcept {
  auto it = std::lower_bound(predefined.begin(), predefined.end(), id,
                             [](const ResolvedTopic& t, uint16_t v) { return t.id < v; });
  return it != predefined.end() && it->id == id ? &*it : nullptr;
}

Result<std::unique_ptr<MqttSnIngest>> MqttSnIngest::create(
    std::shared_ptr<const MqttSnShared> shared, MqttSnStats* stats,
    std::unique_ptr<runtime::PayloadDecoder> decoder, bool join, bool advertise, uint32_t shard,
    std::shared_ptr<MqttSnCluster> cluster) {
  const MqttSnConfig& c = shared->config;
  auto addr = transports::resolve(c.listen.host, c.listen.port);
  if (!addr.ok()) return make_error("protocols.mqtt_sn.listen: " + addr.error().message);
  auto socket = transports::UdpSocket::bind(
      *addr, transports::UdpOptions{.reuse_port = true,
                                    .exclusive = !join,
                                    .recv_buffer_bytes = c.recv_buffer_bytes,
                                    .send_buffer_bytes = c.send_buffer_bytes});
  if (!socket.ok()) return make_error("protocols.mqtt_sn.listen: " + socket.error().message);
  transports::enable_drop_counter(socket->fd());
  if (cluster != nullptr && shard >= cluster->mail.shards()) {
    return make_error("protocols.mqtt_sn: shard " + std::to_string(shard) +
                      " is beyond the cluster's " + std::to_string(cluster->mail.shards()));
  }
  std::unique_ptr<MqttSnIngest> in(new MqttSnIngest(std::move(shared), std::move(*socket), stats,
                                                    std::move(decoder), shard, std::move(cluster)));
  if (advertise && in->config_.advertise_interval_ns > 0 && !in->config_.advertise_to.empty()) {
    auto ep = config::parse_endpoint(in->config_.advertise_to, "protocols.mqtt_sn.advertise_to");
    if (!ep.ok()) return ep.error();
    auto to = transports::resolve(ep->host, ep->port);
    if (!to.ok()) return make_error("protocols.mqtt_sn.advertise_to: " + to.error().message);
    in->advertise_addr_ = to->addr;
    in->advertise_len_ = to->len;
    in->next_advertise_ns_ = core::mono_ns();
  }
  return in;
}

MqttSnIngest::MqttSnIngest(std::shared_ptr<const MqttSnShared> shared, transports::UdpSocket socket,
                           MqttSnStats* stats, std::unique_ptr<runtime::PayloadDecoder> decoder,
                           uint32_t shard, std::shared_ptr<MqttSnCluster> cluster)
    : shared_(std::move(shared)),
      config_(shared_->config),
      socket_(std::move(socket)),
      rx_(config_.recv_batch, config_.max_frame_bytes),
      batch_(config_.recv_batch, batch_metrics(config_.recv_batch)),
      status_(config_.recv_batch),
      pubs_(config_.recv_batch),
      node_len_(config_.recv_batch),
      replies_(kReplyQueueEntries, kReplyArenaBytes),
      send_msgs_(kMaxRepliesPerSend),
      send_iovs_(kMaxRepliesPerSend),
      sessions_(std::min(kMaxShardSessions - 1,
                         (config_.max_sessions + shared_->shards - 1) / shared_->shards)),
      sleep_buffers_((config_.max_sleeping_clients + shared_->shards - 1) / shared_->shards,
                     config_.max_sleep_buffer_bytes),
      will_buffers_((config_.max_wills + shared_->shards - 1) / shared_->shards,
                    config_.max_will_bytes + kWillHeaderBytes),
      shard_index_(shard),
      cluster_(std::move(cluster)),
      decoder_(std::move(decoder)),
      stats_(stats),
      recv_batch_(config_.recv_batch) {
  // Each shard admits its share of the gateway's rate: the kernel spreads clients evenly.
  const double shards = shared_->shards;
  rate_per_ns_ = config_.connect_rate / shards / 1e9;
  burst_ = std::max(1.0, config_.connect_burst / shards);
  tokens_ = burst_;
  tokens_at_ns_ = core::mono_ns();
  next_sweep_ns_ = tokens_at_ns_ + kSweepPeriodNs;
  stats_->recv_buffer_bytes.set(socket_.recv_buffer_bytes());
}

void MqttSnIngest::watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const {
  // The mailbox is served from poll_input, which runs only while the ingest can receive.
  if (mailbox_.fd() >= 0 && can_receive()) out.push_back({mailbox_.fd(), POLLIN});
  if (cluster_ != nullptr && cluster_->mail.fd(shard_index_) >= 0 && can_receive()) {
    out.push_back({cluster_->mail.fd(shard_index_), POLLIN});
  }
  out.push_back(
      {socket_.fd(), static_cast<short>((can_receive() ? POLLIN : 0) |
                                        (wait == runtime::AckWait::kSocket ? POLLOUT : 0))});
}

bool MqttSnIngest::can_receive() const noexcept {
  // A datagram can cause a few replies (a wake-up flushes a sleep buffer): keep room for a
  // whole batch's worth, else let the kernel buffer hold the input (push back).
  return replies_.size() + recv_batch_ * 4 <= kReplyQueueEntries;
}

int64_t MqttSnIngest::next_deadline_ns() const noexcept {
  return std::min(next_sweep_ns_, next_advertise_ns_);
}

void MqttSnIngest::on_timer(runtime::Shard& shard, int64_t now_ns) noexcept {
  shard_ = &shard;
  if (parked_count_ > 0) expire_parked(now_ns);
  if (now_ns >= next_advertise_ns_) {
    // §6.1: ADVERTISE carries the time until the next one.
    const auto d = static_cast<uint16_t>(config_.advertise_interval_ns / 1'000'000'000);
    const size_t n = encode_advertise(static_cast<uint8_t>(config_.gateway_id), d, scratch_);
    reply_to({scratch_, n}, advertise_addr_, advertise_len_, 0, now_ns, kNoRef | kTagDirect);
    next_advertise_ns_ = now_ns + config_.advertise_interval_ns;
  }
  if (now_ns >= next_sweep_ns_) {
    // The last receive batch was appended already: the wills of reaped sessions start a
    // batch of their own, appended below.
    batch_.clear();
    pub_count_ = 0;
    const uint32_t end = std::min(sessions_.high_water(), sweep_cursor_ + kSweepSlots);
    for (uint32_t i = sweep_cursor_; i < end; ++i) {
      const MqttSnSession& s = sessions_.at(i);
      if (s.state == SessionState::kFree || s.deadline_ns > now_ns) continue;
      end_session(
          i, s.state == SessionState::kAsleep ? SessionEnd::kSleepLapsed : SessionEnd::kKeepAlive);
    }
    if (end >= sessions_.high_water()) {
      sweep_cursor_ = 0;
      next_sweep_ns_ = now_ns + kSweepPeriodNs;
    } else {
      sweep_cursor_ = end;  // more to look at: continue on the next loop turn
    }
    if (!batch_.empty()) flush(shard, now_ns);
    batch_.clear();
    stats_->wills_held.set(will_buffers_.in_use());
    stats_->sessions.set(sessions_.size());
    stats_->sleeping.set(sleeping_);
  }
}

namespace {

std::string_view state_name(SessionState s) noexcept {
  switch (s) {
    case SessionState::kAwaitWillTopic: return "await_will_topic";
    case SessionState::kAwaitWillMsg: return "await_will_msg";
    case SessionState::kActive: return "active";
    case SessionState::kAsleep: return "asleep";
    case SessionState::kAwake: return "awake";
    default: return "free";
  }
}

std::string peer_text(const PeerKey& p) {
  char buf[INET6_ADDRSTRLEN] = "?";
  inet_ntop(p.family == 6 ? AF_INET6 : AF_INET, p.addr, buf, sizeof buf);
  const uint16_t port = ntohs(p.port);  // kept in network order
  return p.family == 6 ? "[" + std::string(buf) + "]:" + std::to_string(port)
                       : std::string(buf) + ":" + std::to_string(port);
}

std::string node_text(const PeerKey& p) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint32_t i = 0; i < p.node_len; ++i) {
    out += kHex[p.node[i] >> 4];
    out += kHex[p.node[i] & 0x0F];
  }
  return out;
}

}  // namespace

void MqttSnIngest::list_sessions(uint64_t after, uint32_t limit, runtime::SessionPage& page) const {
  const int64_t now = core::mono_ns();
  page.total = sessions_.size();
  uint64_t i = after;
  for (; i < sessions_.high_water(); ++i) {
    const MqttSnSession& s = sessions_.at(static_cast<uint32_t>(i));
    if (s.state == SessionState::kFree) continue;
    if (page.sessions.size() == limit) break;
    nlohmann::json j{{"client_id", std::string(s.id())},
                     {"peer", peer_text(s.peer)},
                     {"state", state_name(s.state)},
                     {"device_id", s.device_id},
                     {"keep_alive_s", s.keep_alive_s},
                     {"sleep_s", s.sleep_s},
                     {"inflight", s.inflight},
                     {"topics", s.topic_count},
                     {"sleep_buffer_bytes", s.sleep_bytes},
                     {"clean", s.clean},
                     {"will", s.will != 0},
                     {"node_id", node_text(s.peer)},
                     {"shard", shard_index_},
                     {"expires_in_s", static_cast<double>(s.deadline_ns - now) / 1e9}};
    // A client id is bytes from the network: invalid UTF-8 is replaced, never thrown on.
    page.sessions.push_back(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  page.next = i;
  page.more = i < sessions_.high_water();
}

uint32_t MqttSnIngest::poll_input(runtime::Shard& shard) noexcept {
  shard_ = &shard;
  mailbox_.serve([this](uint64_t after, uint32_t limit, runtime::SessionPage& page) {
    list_sessions(after, limit, page);
  });
  if (cluster_ != nullptr && cluster_->mail.pending(shard_index_)) read_mail(shard);
  const int n = rx_.receive(socket_.fd());
  if (n <= 0) return 0;
  const int64_t now_wall = core::wall_ns();
  const int64_t now_mono = core::mono_ns();
  stats_->kernel_drops.set(rx_.kernel_drops());
  stats_->recv_batches.add();
  stats_->datagrams_received.add(rx_.size());
  batch_.clear();
  pub_count_ = 0;
  Frame f;
  for (uint32_t i = 0; i < rx_.size(); ++i) {
    const auto bytes = rx_.data(i);
    stats_->bytes_in.add(bytes.size());
    if (rx_.truncated(i)) {
      stats_->frames_dropped[static_cast<size_t>(DropReason::kOversized)].add();
      continue;
    }
    node_len_[i] = 0;
    const ParseResult res = parse_frame(bytes, shared_->limits, f);
    if (res.status != ParseStatus::kComplete) {
      stats_->frames_dropped[static_cast<size_t>(res.reason)].add();
      continue;
    }
    stats_->frames_in[type_slot(f.type)].add();
    if (!f.node_id.empty()) {
      // §5.5: whoever sends an encapsulation speaks for any node id: only the forwarders
      // configured (or any, when allowed) may. Refused ones are not answered.
      if (!config_.allow_all_forwarders &&
          !forwarder_allowed(shared_->forwarders, peer_key(rx_.peer(i), rx_.peer_len(i)))) {
        stats_->rejects[static_cast<size_t>(Reject::kForwarderRefused)].add();
        continue;
      }
      stats_->encapsulated_in.add();
      node_len_[i] = static_cast<uint8_t>(f.node_id.size());
    }
    handle(shard, f, i, now_mono, now_wall);
  }
  flush(shard, now_mono);
  stats_->batch_latency.observe_ns(core::mono_ns() - now_mono);
  stats_->sessions.set(sessions_.size());
  stats_->sleeping.set(sleeping_);
  stats_->pending_replies.set(replies_.size());
  stats_->wills_held.set(will_buffers_.in_use());
  return rx_.size();
}

template <typename F>
void MqttSnIngest::send_now(uint32_t datagram, uint32_t tag, F&& encode) noexcept {
  const size_t n = encode(std::span<uint8_t>(scratch_));
  if (n > 0) reply({scratch_, n}, datagram, 0, core::mono_ns(), tag);
}

PeerKey MqttSnIngest::key_of(uint32_t datagram) const noexcept {
  const PeerKey direct = peer_key(rx_.peer(datagram), rx_.peer_len(datagram));
  if (node_len_[datagram] == 0) return direct;
  // The header is [Length, 0xFE, Ctrl, node id...]: the parser checked it in this datagram.
  return forwarded_key(direct, rx_.data(datagram).subspan(3, node_len_[datagram]));
}

void MqttSnIngest::reply(std::span<const uint8_t> bytes, uint32_t datagram, uint64_t durable_at,
                         int64_t received_mono, uint32_t tag) noexcept {
  if (node_len_[datagram] != 0) {
    // §5.5: a reply to a client behind a forwarder goes back to the forwarder, encapsulated
    // with the client's node id (and the Ctrl radius it came with).
    const auto d = rx_.data(datagram);
    const size_t n = encode_encapsulated(d[2], d.subspan(3, node_len_[datagram]), bytes, wrapped_);
    if (n == 0) return;  // cannot happen: wrapped_ holds the largest reply and header
    bytes = {wrapped_, n};
  }
  reply_to(bytes, rx_.peer(datagram), rx_.peer_len(datagram), durable_at, received_mono, tag);
}

void MqttSnIngest::reply_to(std::span<const uint8_t> bytes, const sockaddr_storage& to,
                            socklen_t to_len, uint64_t durable_at, int64_t received_mono,
                            uint32_t tag) noexcept {
  uint8_t* out = replies_.reserve(static_cast<uint32_t>(bytes.size()));
  if (out == nullptr) {
    // Dropping a reply loses no data: a PUBLISH's report is in the log and the client
    // retransmits after its retry timer (§6.13).
    stats_->rejects[static_cast<size_t>(Reject::kReplyQueueFull)].add();
    if ((tag & kTagInflight) != 0) {
      const uint32_t s = sessions_.resolve(tag & kRefMask);
      if (s != kNoSession && sessions_.at(s).inflight > 0) --sessions_.at(s).inflight;
    }
    return;
  }
  std::memcpy(out, bytes.data(), bytes.size());
  replies_.commit(static_cast<uint32_t>(bytes.size()), durable_at, received_mono, &to, to_len, tag);
}

void MqttSnIngest::touch(uint32_t s, int64_t now) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  ss.deadline_ns = now + grace_ns(ss.state == SessionState::kAsleep ? ss.sleep_s : ss.keep_alive_s);
}

void MqttSnIngest::end_session(uint32_t s, SessionEnd why) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  if (ss.will != 0) {
    // MQTT-SN v1.2 §6.3 keeps MQTT's will semantics (MQTT 3.1.1 §3.1.2.5): published when the
    // session is lost (keep-alive or sleep lapsed, its client id taken over, its address
    // reused), discarded on a clean DISCONNECT. A will whose handshake did not finish was never
    // accepted (no CONNACK): it is released unpublished.
    const bool connected =
        ss.state != SessionState::kAwaitWillTopic && ss.state != SessionState::kAwaitWillMsg;
    if (!connected || why == SessionEnd::kRefused) {
      will_buffers_.give_back(ss.will);
      ss.will = 0;
    } else if (why == SessionEnd::kDisconnect) {
      drop_will(s, WillDiscard::kDisconnect);
    } else {
      publish_will(s);
    }
  }
  if (ss.listed && cluster_ != nullptr) {
    cluster_->directory.release(ss.id(), shard_index_);  // the id is free for any shard again
  }
  if (ss.state == SessionState::kAsleep && sleeping_ > 0) --sleeping_;
  if (ss.sleep_buffer != 0) sleep_buffers_.give_back(ss.sleep_buffer);
  stats_->sessions_ended[static_cast<size_t>(why)].add();
  sessions_.remove(s);
}

bool MqttSnIngest::admit_connect(int64_t now) noexcept {
  tokens_ = std::min(burst_, tokens_ + static_cast<double>(now - tokens_at_ns_) * rate_per_ns_);
  tokens_at_ns_ = now;
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

void MqttSnIngest::handle(runtime::Shard& shard, const Frame& f, uint32_t datagram,
                          int64_t now_mono, int64_t now_wall) noexcept {
  const PeerKey key = key_of(datagram);
  const uint32_t s = f.type == MsgType::kConnect ? kNoSession : sessions_.find_peer(key);
  auto reject = [&](Reject r) noexcept { stats_->rejects[static_cast<size_t>(r)].add(); };
  const uint32_t ref = s == kNoSession ? kNoRef : sessions_.ref(s);
  if (s != kNoSession) touch(s, now_mono);
  switch (f.type) {
    case MsgType::kSearchGw:  // §6.1: a gateway answers SEARCHGW with its GWINFO
      send_now(datagram, kNoRef | kTagDirect, [&](std::span<uint8_t> o) noexcept {
        return encode_gwinfo(static_cast<uint8_t>(config_.gateway_id), o);
      });
      return;
    case MsgType::kConnect: on_connect(f, datagram, key, now_mono); return;
    case MsgType::kWillTopic:  // §6.3: WILLTOPIC answers WILLTOPICREQ
      if (s == kNoSession || sessions_.at(s).state != SessionState::kAwaitWillTopic) {
        reject(Reject::kUnexpected);
        return;
      }
      on_will_topic(f, datagram, s);
      return;
    case MsgType::kWillMsg:
      if (s == kNoSession || sessions_.at(s).state != SessionState::kAwaitWillMsg) {
        reject(Reject::kUnexpected);
        return;
      }
      on_will_msg(f, datagram, s);
      return;
    case MsgType::kWillTopicUpd:
    case MsgType::kWillMsgUpd:
      if (s == kNoSession) {
        reject(Reject::kSessionless);
        return;
      }
      on_will_update(f, datagram, s);
      return;
    case MsgType::kRegister:
      if (s == kNoSession || sessions_.at(s).state != SessionState::kActive) {
        reject(Reject::kSessionless);
        // §6.2: a client the gateway does not know is told to connect again.
        send_now(datagram, kNoRef | kTagDirect,
                 [](std::span<uint8_t> o) noexcept { return encode_disconnect(0, o); });
        return;
      }
      on_register(f, datagram, s);
      return;
    case MsgType::kPublish: on_publish(shard, f, datagram, s, now_mono, now_wall); return;
    case MsgType::kPubrel: {  // §6.7: releases a QoS 2 id; PUBCOMP once its report is durable
      if (s == kNoSession) {
        reject(Reject::kSessionless);
        send_now(datagram, kNoRef | kTagDirect, [&](std::span<uint8_t> o) noexcept {
          return encode_msg_id_only(MsgType::kPubcomp, f.msg_id, o);
        });
        return;
      }
      Qos2Slot* q = sessions_.at(s).qos2_slot(f.msg_id);
      if (q != nullptr && q->durable_at == kDurablePending) {
        flush(shard, now_mono);  // its PUBLISH is in this batch: append it first
        batch_.clear();
        pub_count_ = 0;
      }
      const uint64_t at = q != nullptr ? q->durable_at : 0;
      if (q != nullptr) *q = Qos2Slot{};
      const size_t n = encode_msg_id_only(MsgType::kPubcomp, f.msg_id, scratch_);
      reply({scratch_, n}, datagram, at, now_mono, ref);
      return;
    }
    case MsgType::kSubscribe:  // §6.9: this gateway ingests; it has nothing to deliver
      send_now(datagram, ref, [&](std::span<uint8_t> o) noexcept {
        return encode_suback(f.flags, 0, f.msg_id, ReturnCode::kNotSupported, o);
      });
      return;
    case MsgType::kUnsubscribe:
      send_now(datagram, ref,
               [&](std::span<uint8_t> o) noexcept { return encode_unsuback(f.msg_id, o); });
      return;
    case MsgType::kPingReq: on_pingreq(f, datagram, s, now_mono); return;
    case MsgType::kDisconnect: on_disconnect(f, datagram, s, now_mono); return;
    case MsgType::kGwInfo:  // another gateway or a client answering SEARCHGW: nothing to do
    case MsgType::kPingResp:
    case MsgType::kRegack:  // the gateway sends no REGISTER or PUBLISH: nothing to confirm
    case MsgType::kPuback:
    case MsgType::kPubrec:
    case MsgType::kPubcomp:
    default: reject(Reject::kUnexpected); return;
  }
}

void MqttSnIngest::on_connect(const Frame& f, uint32_t datagram, const PeerKey& key,
                              int64_t now) noexcept {
  // A reconnect storm is admitted at connect_rate: the rest are told to come back (§5.3.10
  // "rejected: congestion"; clients retry after T_WAIT), and hold no state meanwhile.
  if (!admit_connect(now)) {
    stats_->rejects[static_cast<size_t>(Reject::kCongestion)].add();
    send_now(datagram, kNoRef | kTagDirect, [](std::span<uint8_t> o) noexcept {
      return encode_connack(ReturnCode::kCongestion, o);
    });
    return;
  }
  ConnectRequest c;
  c.key = key;
  c.datagram = datagram;
  c.ctrl = node_len_[datagram] != 0 ? rx_.data(datagram)[2] : 0;
  c.will = f.flags.will;
  c.clean = f.flags.clean_session;
  c.duration = f.duration;
  c.id_len = static_cast<uint8_t>(std::min<size_t>(f.client_id.size(), kMaxClientIdBytes));
  std::memcpy(c.id, f.client_id.data(), c.id_len);
  connect(c, now);
}

template <typename F>
void MqttSnIngest::answer(const ConnectRequest& c, uint32_t tag, F&& encode) noexcept {
  if (c.datagram != kResumed) {
    send_now(c.datagram, tag, std::forward<F>(encode));
    return;
  }
  // Resumed: the datagram is gone; the key has the address and (§5.5) the node id.
  const size_t n = encode(std::span<uint8_t>(scratch_));
  if (n == 0) return;
  std::span<const uint8_t> bytes{scratch_, n};
  if (c.key.node_len != 0) {
    const size_t w = encode_encapsulated(c.ctrl, {c.key.node, c.key.node_len}, bytes, wrapped_);
    if (w == 0) return;  // cannot happen: wrapped_ holds the largest reply and header
    bytes = {wrapped_, w};
  }
  sockaddr_storage to{};
  socklen_t len = 0;
  peer_address(c.key, to, len);
  reply_to(bytes, to, len, 0, core::mono_ns(), tag);
}

void MqttSnIngest::connect(const ConnectRequest& c, int64_t now) noexcept {
  auto refuse = [&](Reject why, ReturnCode rc) noexcept {
    stats_->rejects[static_cast<size_t>(why)].add();
    answer(c, kNoRef | kTagDirect,
           [&](std::span<uint8_t> o) noexcept { return encode_connack(rc, o); });
  };
  const std::string_view id = c.client_id();
  uint32_t s = sessions_.find_peer(c.key);
  const uint32_t holder = sessions_.find_client(id);
  bool listed = false;   // the new session holds the id's directory entry
  bool claimed = false;  // the entry was taken here: given back if no session results
  if (holder != kNoSession && holder != s) {
    if (!config_.allow_takeover) {
      refuse(Reject::kTakeoverRefused, ReturnCode::kNotSupported);
      return;
    }
    // The id stays on this shard: the new session keeps the old one's directory entry.
    listed = sessions_.at(holder).listed;
    sessions_.at(holder).listed = false;
    end_session(holder, SessionEnd::kTakeover);
  } else if (holder == kNoSession && cluster_ != nullptr) {
    // Not held here: another shard may hold it (the client moved to an address the kernel
    // hashes elsewhere). Refused or taken over exactly as on one shard.
    uint32_t owner = 0;
    switch (cluster_->directory.claim(id, shard_index_, owner)) {
      case ClientDirectory::Claim::kClaimed:
      case ClientDirectory::Claim::kOwned:  // handed to this shard by a granted takeover
        listed = claimed = true;
        break;
      case ClientDirectory::Claim::kHeld:
        if (!config_.allow_takeover) {
          refuse(Reject::kTakeoverRefused, ReturnCode::kNotSupported);
          return;
        }
        ask_takeover(c, owner, now);
        return;
      case ClientDirectory::Claim::kFull:
        // No room for the id: the session is kept to this shard, as without a directory.
        stats_->directory_full.add();
        break;
    }
  }
  bool woke = false;
  if (s != kNoSession && sessions_.at(s).id() != id) {
    end_session(s, SessionEnd::kReplaced);  // the address now speaks for another client
    s = kNoSession;
  }
  if (s == kNoSession) {
    s = sessions_.add(c.key, id);
    if (s == kNoSession) {
      if (claimed) cluster_->directory.release(id, shard_index_);
      refuse(Reject::kSessionsFull, ReturnCode::kCongestion);
      return;
    }
    sessions_.at(s).listed = listed;
    stats_->sessions_created.add();
  } else {
    MqttSnSession& ss = sessions_.at(s);
    if (ss.state == SessionState::kAsleep) {
      if (sleeping_ > 0) --sleeping_;
      woke = true;
    }
    // §6.3: a CONNECT sets the will afresh (its Will flag asks for one, or there is none).
    drop_will(s, WillDiscard::kReplaced);
    if (c.clean) {
      // §6.3: CleanSession drops the registrations (and held QoS 2 ids) of the old session.
      ss.topic_count = 0;
      ss.next_topic_id = 1;
      for (Qos2Slot& q : ss.qos2) q = Qos2Slot{};
    }
  }
  MqttSnSession& ss = sessions_.at(s);
  ss.clean = c.clean;
  ss.device_id = device_from_client_id(id);
  // §6.13: the gateway supervises the keep-alive; 0 (none) and anything longer than the
  // configured maximum are held to it, so no idle session lives for ever.
  const auto max_s = static_cast<uint32_t>(config_.max_keep_alive_ns / 1'000'000'000);
  uint32_t ka = c.duration;
  if (ka == 0 || ka > max_s) {
    ka = max_s;
    stats_->keep_alive_clamped.add();
  }
  ss.keep_alive_s = static_cast<uint16_t>(ka);
  ss.state = c.will ? SessionState::kAwaitWillTopic : SessionState::kActive;
  touch(s, now);
  const uint32_t ref = sessions_.ref(s);
  if (c.will) {
    answer(c, ref,
           [](std::span<uint8_t> o) noexcept { return encode_empty(MsgType::kWillTopicReq, o); });
    return;
  }
  answer(c, ref,
         [](std::span<uint8_t> o) noexcept { return encode_connack(ReturnCode::kAccepted, o); });
  if (woke) wake(s);
}

void MqttSnIngest::ask_takeover(const ConnectRequest& c, uint32_t owner, int64_t now) noexcept {
  auto busy = [&]() noexcept {
    // §5.4.5 "rejected: congestion": the client retries, by when the id has settled.
    stats_->rejects[static_cast<size_t>(Reject::kTakeoverBusy)].add();
    answer(c, kNoRef | kTagDirect, [](std::span<uint8_t> o) noexcept {
      return encode_connack(ReturnCode::kCongestion, o);
    });
  };
  if (c.rounds >= kMaxTakeoverRounds) {  // the id keeps moving between shards: later
    busy();
    return;
  }
  Parked* p = nullptr;
  for (Parked& q : parked_) {
    if (!q.used) {
      p = &q;
      break;
    }
  }
  if (p == nullptr) {
    busy();
    return;
  }
  const uint32_t token = ++next_token_;
  const ShardLetter ask =
      ShardLetter::make(ShardLetter::Kind::kTakeover, c.client_id(), shard_index_, token, now);
  if (!cluster_->mail.send(shard_index_, owner, ask)) {
    stats_->letters_dropped.add();
    busy();
    return;
  }
  stats_->takeover_requests.add();
  // The session is made only once the owner has ended its own and handed the id over: a
  // client id is never held on two shards at once.
  p->request = c;
  p->request.datagram = kResumed;
  ++p->request.rounds;
  p->token = token;
  p->deadline_ns = now + kTakeoverWaitNs;
  p->used = true;
  ++parked_count_;
}

void MqttSnIngest::read_mail(runtime::Shard& shard) noexcept {
  // Letters can end sessions (their wills become reports) and resume CONNECTs: a batch of
  // their own, appended before the socket is read.
  batch_.clear();
  pub_count_ = 0;
  const int64_t now = core::mono_ns();
  cluster_->mail.drain(shard_index_, [&](const ShardLetter& l) noexcept { on_letter(l, now); });
  if (!batch_.empty() || pub_count_ > 0) flush(shard, now);
  batch_.clear();
  pub_count_ = 0;
}

void MqttSnIngest::on_letter(const ShardLetter& l, int64_t now) noexcept {
  const std::string_view id = l.client_id();
  if (l.from >= cluster_->mail.shards() || l.from == shard_index_) return;
  if (l.kind == ShardLetter::Kind::kTakeover) {
    // Another shard serves a CONNECT for an id held here (allow_takeover): end the session
    // as a takeover on one shard would (its will is published), hand the entry over, answer.
    // With no room for the answer nothing is done: the asker times out, nothing is lost.
    if (!cluster_->mail.has_room(shard_index_, l.from)) {
      stats_->letters_dropped.add();
      return;
    }
    // A request past half its CONNECT's wait is not honoured: the answer could arrive after
    // the CONNECT was answered "congestion", and the session would have ended for nothing.
    // It stays; the client's retry asks again.
    ShardLetter::Kind result = ShardLetter::Kind::kStale;
    if (now - l.sent_ns < kTakeoverWaitNs / 2 &&
        cluster_->directory.transfer(id, shard_index_, l.from)) {
      const uint32_t s = sessions_.find_client(id);
      if (s != kNoSession) {
        sessions_.at(s).listed = false;  // handed over, not released
        end_session(s, SessionEnd::kTakeover);
      }
      result = ShardLetter::Kind::kGranted;
    }
    cluster_->mail.send(shard_index_, l.from,
                        ShardLetter::make(result, id, shard_index_, l.token, now));
    return;
  }
  for (Parked& p : parked_) {
    if (p.used && p.token == l.token) {
      p.used = false;
      --parked_count_;
      // Granted: the directory names this shard now. Stale: the owner let the id go (or it
      // moved on): the CONNECT looks again, at most kMaxTakeoverRounds times.
      const ConnectRequest c = p.request;
      connect(c, now);
      return;
    }
  }
  // Its CONNECT was answered "congestion" meanwhile: an entry handed over for no session
  // is given back.
  if (l.kind == ShardLetter::Kind::kGranted && sessions_.find_client(id) == kNoSession) {
    cluster_->directory.release(id, shard_index_);
  }
}

void MqttSnIngest::expire_parked(int64_t now) noexcept {
  for (Parked& p : parked_) {
    if (!p.used || p.deadline_ns > now) continue;
    p.used = false;
    --parked_count_;
    stats_->rejects[static_cast<size_t>(Reject::kTakeoverBusy)].add();
    answer(p.request, kNoRef | kTagDirect, [](std::span<uint8_t> o) noexcept {
      return encode_connack(ReturnCode::kCongestion, o);
    });
  }
}

uint64_t MqttSnIngest::resolve_topic(std::string_view name, uint64_t session_device,
                                     Reject& why) const noexcept {
  // The topic name names the device (the `topics` template), checked against the registry;
  // a template without {device} leaves it to the client id.
  const TopicMatch m = shared_->topics.match(name);
  if (!m.matched) {
    why = Reject::kTopicMismatch;
    return 0;
  }
  const uint64_t device = m.device_id != 0 ? m.device_id : session_device;
  if (device == 0) {
    why = Reject::kNoDevice;
    return 0;
  }
  if (!m.tenant.empty()) {
    // A device the registry does not know is left to the validator (it rejects it or registers
    // it, per the tenant policy); a known one must be in the tenant the topic names.
    const pipeline::DeviceEntry* e = shared_->registry->find(device);
    if (e != nullptr && shared_->registry->tenant_name(e->tenant) != m.tenant) {
      why = Reject::kTenantMismatch;
      return 0;
    }
  }
  return device;
}

std::span<uint8_t> MqttSnIngest::will_buffer(uint32_t s) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  if (ss.will == 0) {
    ss.will = will_buffers_.take();
    if (ss.will == 0) return {};
    will_reset(will_buffers_.data(ss.will));
  }
  return will_buffers_.data(ss.will);
}

void MqttSnIngest::drop_will(uint32_t s, WillDiscard why) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  if (ss.will == 0) return;
  will_buffers_.give_back(ss.will);
  ss.will = 0;
  stats_->wills_discarded[static_cast<size_t>(why)].add();
}

void MqttSnIngest::on_will_topic(const Frame& f, uint32_t datagram, uint32_t s) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  auto refuse = [&](Reject why) noexcept {
    // §5.4.5: the CONNECT is answered "rejected: congestion"; the client may retry (with a
    // smaller will, or later). The half-made session ends.
    stats_->rejects[static_cast<size_t>(why)].add();
    send_now(datagram, kNoRef | kTagDirect, [](std::span<uint8_t> o) noexcept {
      return encode_connack(ReturnCode::kCongestion, o);
    });
    end_session(s, SessionEnd::kRefused);
  };
  if (f.topic.empty()) {  // §5.4.7: an empty WILLTOPIC: no will after all
    ss.state = SessionState::kActive;
    send_now(datagram, sessions_.ref(s), [](std::span<uint8_t> o) noexcept {
      return encode_connack(ReturnCode::kAccepted, o);
    });
    wake(s);  // a sleeper that reconnected with a will: what it was owed follows
    return;
  }
  if (f.topic.size() > config_.max_will_bytes) {
    refuse(Reject::kWillTooLarge);
    return;
  }
  const std::span<uint8_t> buf = will_buffer(s);
  if (buf.empty()) {
    refuse(Reject::kWillsFull);
    return;
  }
  will_reset(buf);  // a fresh handshake: no message yet
  if (!will_set_topic(buf, encode_flags(f.flags), f.topic)) {
    refuse(Reject::kWillTooLarge);
    return;
  }
  ss.state = SessionState::kAwaitWillMsg;
  send_now(datagram, sessions_.ref(s),
           [](std::span<uint8_t> o) noexcept { return encode_empty(MsgType::kWillMsgReq, o); });
}

void MqttSnIngest::on_will_msg(const Frame& f, uint32_t datagram, uint32_t s) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  if (ss.will == 0 || !will_set_message(will_buffers_.data(ss.will), f.data)) {
    stats_->rejects[static_cast<size_t>(Reject::kWillTooLarge)].add();
    send_now(datagram, kNoRef | kTagDirect, [](std::span<uint8_t> o) noexcept {
      return encode_connack(ReturnCode::kCongestion, o);
    });
    end_session(s, SessionEnd::kRefused);
    return;
  }
  stats_->wills.add();
  ss.state = SessionState::kActive;
  send_now(datagram, sessions_.ref(s),
           [](std::span<uint8_t> o) noexcept { return encode_connack(ReturnCode::kAccepted, o); });
  wake(s);
}

void MqttSnIngest::on_will_update(const Frame& f, uint32_t datagram, uint32_t s) noexcept {
  // §6.4: WILLTOPICUPD / WILLMSGUPD change the will during the session; an empty WILLTOPICUPD
  // deletes it. A refused update leaves the will as it was.
  MqttSnSession& ss = sessions_.at(s);
  const bool topic = f.type == MsgType::kWillTopicUpd;
  const MsgType resp = topic ? MsgType::kWillTopicResp : MsgType::kWillMsgResp;
  auto answer = [&](ReturnCode rc) noexcept {
    send_now(datagram, sessions_.ref(s),
             [&](std::span<uint8_t> o) noexcept { return encode_return_code(resp, rc, o); });
  };
  auto refuse = [&](Reject why, ReturnCode rc) noexcept {
    stats_->rejects[static_cast<size_t>(why)].add();
    answer(rc);
  };
  if (topic && f.topic.empty()) {
    drop_will(s, WillDiscard::kDeleted);
    answer(ReturnCode::kAccepted);
    return;
  }
  if (!topic && ss.will == 0) {  // a message for a will that has no topic: nothing to update
    refuse(Reject::kUnexpected, ReturnCode::kNotSupported);
    return;
  }
  const size_t size = topic ? f.topic.size() : f.data.size();
  if (size > config_.max_will_bytes) {
    refuse(Reject::kWillTooLarge, ReturnCode::kCongestion);
    return;
  }
  const bool fresh = ss.will == 0;
  const std::span<uint8_t> buf = will_buffer(s);
  if (buf.empty()) {
    refuse(Reject::kWillsFull, ReturnCode::kCongestion);
    return;
  }
  const bool ok =
      topic ? will_set_topic(buf, encode_flags(f.flags), f.topic) : will_set_message(buf, f.data);
  if (!ok) {
    if (fresh) {
      will_buffers_.give_back(ss.will);
      ss.will = 0;
    }
    refuse(Reject::kWillTooLarge, ReturnCode::kCongestion);
    return;
  }
  answer(ReturnCode::kAccepted);
}

void MqttSnIngest::make_room() noexcept {
  if (batch_.reports_free() == 0 || batch_.metrics_free() < kMetricsPerPublish ||
      pub_count_ == pubs_.size()) {
    flush(*shard_, core::mono_ns());
    batch_.clear();
    pub_count_ = 0;
  }
}

void MqttSnIngest::publish_will(uint32_t s) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  const WillView w = will_view(will_buffers_.data(ss.will));
  // The will becomes what a PUBLISH of its message on its topic would: the topic names the
  // device, the device model's codec decodes the message, the report is validated, appended
  // and delivered to sinks like any other (no acknowledgement: the client is gone).
  Reject why = Reject::kCount;
  const uint64_t device = resolve_topic(w.topic, ss.device_id, why);
  if (device == 0 || shard_ == nullptr) {
    drop_will(s, WillDiscard::kUnresolved);
    return;
  }
  make_room();
  core::Report* r = batch_.add_report();
  if (r == nullptr) {  // cannot happen after make_room()
    stats_->rejects[static_cast<size_t>(Reject::kBatchFull)].add();
    drop_will(s, WillDiscard::kUnresolved);
    return;
  }
  const int64_t now_wall = core::wall_ns();
  r->device_id = device;
  r->protocol = kProtocolId;
  r->received_ns = now_wall;
  r->device_time_ns = now_wall;
  r->ack_requested = false;
  r->peer = 0;
  uint32_t seq = static_cast<uint32_t>(now_wall / 1000);
  if (static_cast<int32_t>(seq - ss.last_seq) <= 0) seq = ss.last_seq + 1;
  ss.last_seq = seq;
  r->seq = seq;
  const pipeline::CodecContext ctx{.device_id = device, .received_ns = now_wall, .topic = w.topic};
  if (decoder_->decode(w.message, ctx, batch_, *r) == runtime::PayloadOutcome::kDeadLettered) {
    batch_.pop_report();
    stats_->dead_lettered.add();
  }
  stats_->wills_published.add();
  will_buffers_.give_back(ss.will);
  ss.will = 0;
}

void MqttSnIngest::on_register(const Frame& f, uint32_t datagram, uint32_t s) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  const uint32_t ref = sessions_.ref(s);
  auto answer = [&](uint16_t topic_id, ReturnCode rc) noexcept {
    send_now(datagram, ref, [&](std::span<uint8_t> o) noexcept {
      return encode_regack(topic_id, f.msg_id, rc, o);
    });
  };
  auto refuse = [&](Reject why, ReturnCode rc) noexcept {
    stats_->rejects[static_cast<size_t>(why)].add();
    answer(0, rc);
  };
  Reject why = Reject::kCount;
  const uint64_t device = resolve_topic(f.topic, ss.device_id, why);
  if (device == 0) {
    refuse(why, ReturnCode::kInvalidTopicId);
    return;
  }
  const uint32_t h = topic_hash(f.topic);
  for (uint32_t i = 0; i < ss.topic_count; ++i) {
    if (ss.topics[i].name_hash == h && ss.topics[i].device_id == device) {
      answer(ss.topics[i].id, ReturnCode::kAccepted);  // §6.5: the same name, the same id
      return;
    }
  }
  if (ss.topic_count >= config_.max_topics_per_session) {
    refuse(Reject::kTopicsFull, ReturnCode::kCongestion);
    return;
  }
  TopicSlot& t = ss.topics[ss.topic_count++];
  t = TopicSlot{};
  t.device_id = device;
  t.name_hash = h;
  t.id = ss.next_topic_id++;
  if (ss.next_topic_id == 0xFFFF) ss.next_topic_id = 1;  // 0x0000 and 0xFFFF are reserved
  answer(t.id, ReturnCode::kAccepted);
}

void MqttSnIngest::on_publish(runtime::Shard& shard, const Frame& f, uint32_t datagram, uint32_t s,
                              int64_t now_mono, int64_t now_wall) noexcept {
  auto reject = [&](Reject r) noexcept { stats_->rejects[static_cast<size_t>(r)].add(); };
  const bool minus1 = f.flags.qos == Qos::kQosMinus1;
  const uint32_t ref = s == kNoSession ? kNoRef : sessions_.ref(s);
  auto puback = [&](ReturnCode rc) noexcept {
    if (minus1) return;  // §6.8: QoS -1 is never answered
    send_now(datagram, ref, [&](std::span<uint8_t> o) noexcept {
      return encode_puback(f.topic_id, f.msg_id, rc, o);
    });
  };
  const bool active = s != kNoSession && sessions_.at(s).state == SessionState::kActive;
  if (!minus1 && !active) {
    reject(Reject::kSessionless);
    send_now(datagram, kNoRef | kTagDirect,
             [](std::span<uint8_t> o) noexcept { return encode_disconnect(0, o); });
    return;
  }
  // Which device: a registered topic id, a predefined topic, or (short topic names and
  // predefined names without {device}) the client id's digits.
  uint64_t device = 0;
  std::string_view topic;
  const uint64_t session_device = s != kNoSession ? sessions_.at(s).device_id : 0;
  switch (f.flags.topic_id_type) {
    case TopicIdType::kNormal: {
      if (minus1) {
        reject(Reject::kQosMinus1Topic);
        return;
      }
      const TopicSlot* t = sessions_.at(s).topic(f.topic_id);
      if (t == nullptr) {
        reject(Reject::kUnknownTopic);
        puback(ReturnCode::kInvalidTopicId);  // §6.5: also for QoS 0
        return;
      }
      device = t->device_id;
      break;
    }
    case TopicIdType::kPredefined: {
      const ResolvedTopic* t = shared_->predefined_topic(f.topic_id);
      if (t == nullptr) {
        reject(Reject::kUnknownTopic);
        puback(ReturnCode::kInvalidTopicId);
        return;
      }
      device = t->device_id != 0 ? t->device_id : session_device;
      topic = t->name;
      break;
    }
    case TopicIdType::kShort:
      device = session_device;
      topic = f.topic;
      break;
  }
  if (device == 0) {
    reject(Reject::kNoDevice);
    puback(ReturnCode::kInvalidTopicId);
    return;
  }
  const bool acked = f.flags.qos == Qos::kQos1 || f.flags.qos == Qos::kQos2;
  if (acked) {
    MqttSnSession& ss = sessions_.at(s);
    if (f.flags.qos == Qos::kQos2) {
      if (const Qos2Slot* q = ss.qos2_slot(f.msg_id); q != nullptr) {
        // §6.7: a retransmitted QoS 2 PUBLISH whose id is still held is not delivered again;
        // its PUBREC goes once the first copy is durable.
        stats_->duplicates.add();
        Pub& p = pubs_[pub_count_++];
        p = Pub{-1, datagram, ref, f.topic_id, f.msg_id, f.flags.qos, true};
        if (pub_count_ == pubs_.size()) {
          flush(shard, now_mono);
          batch_.clear();
          pub_count_ = 0;
        }
        return;
      }
    }
    if (ss.inflight >= config_.max_pending_per_session ||
        (f.flags.qos == Qos::kQos2 && ss.free_qos2() == nullptr)) {
      reject(Reject::kPendingFull);
      puback(ReturnCode::kCongestion);
      return;
    }
  }
  if (batch_.reports_free() == 0 || batch_.metrics_free() < kMetricsPerPublish ||
      pub_count_ == pubs_.size()) {
    flush(shard, now_mono);
    batch_.clear();
    pub_count_ = 0;
  }
  core::Report* r = batch_.add_report();
  if (r == nullptr) {  // cannot happen after a flush; answered "congestion" so it retries
    reject(Reject::kBatchFull);
    puback(ReturnCode::kCongestion);
    return;
  }
  r->device_id = device;
  r->protocol = kProtocolId;
  r->received_ns = now_wall;
  r->device_time_ns = now_wall;
  r->ack_requested = acked;
  r->peer = datagram;
  // A per-device seq the store's duplicate windows accept: the payload's own when the codec
  // finds one, else one newer than the session's last and than the clock's microseconds, so
  // it keeps rising across reconnects and restarts.
  uint32_t seq = static_cast<uint32_t>(now_wall / 1000);
  if (s != kNoSession) {
    MqttSnSession& ss = sessions_.at(s);
    if (static_cast<int32_t>(seq - ss.last_seq) <= 0) seq = ss.last_seq + 1;
    ss.last_seq = seq;
  }
  r->seq = seq;
  const pipeline::CodecContext ctx{.device_id = device, .received_ns = now_wall, .topic = topic};
  const runtime::PayloadOutcome outcome = decoder_->decode(f.data, ctx, batch_, *r);
  int32_t report = static_cast<int32_t>(batch_.size() - 1);
  if (outcome == runtime::PayloadOutcome::kDeadLettered) {
    batch_.pop_report();
    stats_->dead_lettered.add();
    report = -1;
  }
  if (!acked) return;  // QoS 0 and -1: nothing to answer
  MqttSnSession& ss = sessions_.at(s);
  ++ss.inflight;
  if (f.flags.qos == Qos::kQos2) {
    Qos2Slot* q = ss.free_qos2();
    q->used = 1;
    q->msg_id = f.msg_id;
    q->durable_at = kDurablePending;
  }
  Pub& p = pubs_[pub_count_++];
  p = Pub{report, datagram, ref, f.topic_id, f.msg_id, f.flags.qos, false};
}

void MqttSnIngest::flush(runtime::Shard& shard, int64_t received_mono) noexcept {
  runtime::AppendOutcome outcome;
  outcome.ok = true;
  if (!batch_.empty()) {
    stats_->pipeline.reports_received.add(batch_.size());
    outcome = shard.validate_and_append(batch_, status_, stats_->pipeline);
  }
  decoder_->batch_done();
  for (uint32_t i = 0; i < pub_count_; ++i) {
    const Pub& p = pubs_[i];
    const uint32_t s = sessions_.resolve(p.ref);
    Qos2Slot* q =
        s != kNoSession && p.qos == Qos::kQos2 ? sessions_.at(s).qos2_slot(p.msg_id) : nullptr;
    if (p.duplicate) {
      if (q == nullptr) continue;  // the first copy was refused: nothing holds the id
      const size_t n = encode_msg_id_only(MsgType::kPubrec, p.msg_id, scratch_);
      reply({scratch_, n}, p.datagram, q->durable_at == kDurablePending ? 0 : q->durable_at,
            received_mono, p.ref);
      continue;
    }
    // The answer follows what became of the report: accepted once durable (a dead-lettered
    // payload is kept, so it is accepted too), "not supported" when the model refused it (a
    // retry would fail the same way), "congestion" when the log pushed back (retry later).
    ReturnCode rc = ReturnCode::kAccepted;
    if (p.report >= 0 &&
        static_cast<pipeline::RejectReason>(status_[p.report]) != pipeline::RejectReason::kNone) {
      rc = ReturnCode::kNotSupported;
    } else if (!outcome.ok) {
      rc = ReturnCode::kCongestion;
    }
    const uint64_t at = rc == ReturnCode::kAccepted ? outcome.durable_at : 0;
    size_t n = 0;
    if (p.qos == Qos::kQos2 && rc == ReturnCode::kAccepted) {
      if (q != nullptr) q->durable_at = at;
      n = encode_msg_id_only(MsgType::kPubrec, p.msg_id, scratch_);
    } else {
      if (q != nullptr) *q = Qos2Slot{};  // refused: the id is not held
      n = encode_puback(p.topic_id, p.msg_id, rc, scratch_);
    }
    reply({scratch_, n}, p.datagram, at, received_mono, p.ref | kTagInflight);
  }
}

void MqttSnIngest::on_pingreq(const Frame& f, uint32_t datagram, uint32_t s, int64_t now) noexcept {
  // §6.14: a sleeping client wakes with PINGREQ carrying its client id; the gateway sends what
  // it held for it, then PINGRESP, and the client sleeps again.
  uint32_t who = s;
  if (!f.client_id.empty()) who = sessions_.find_client(f.client_id);
  if (who != kNoSession && sessions_.at(who).state == SessionState::kAsleep) {
    if (!(sessions_.at(who).peer == key_of(datagram))) {
      who = kNoSession;  // another address naming this client: not its wake-up
    }
  }
  if (who != kNoSession) {
    touch(who, now);
    if (sessions_.at(who).state == SessionState::kAsleep) wake(who);
  }
  send_now(datagram, (who == kNoSession ? kNoRef : sessions_.ref(who)) | kTagDirect,
           [](std::span<uint8_t> o) noexcept { return encode_empty(MsgType::kPingResp, o); });
}

void MqttSnIngest::wake(uint32_t s) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  if (ss.sleep_buffer == 0) return;
  sockaddr_storage to{};
  socklen_t len = 0;
  peer_address(ss.peer, to, len);
  const auto buf = sleep_buffers_.data(ss.sleep_buffer);
  const uint32_t ref = sessions_.ref(s) | kTagDirect;
  size_t at = 0;
  while (at < ss.sleep_bytes) {
    const size_t n = message_length(buf.subspan(at, ss.sleep_bytes - at));
    if (n == 0 || at + n > ss.sleep_bytes) break;
    reply_to(buf.subspan(at, n), to, len, 0, core::mono_ns(), ref);
    stats_->sleep_delivered.add();
    at += n;
  }
  sleep_buffers_.give_back(ss.sleep_buffer);
  ss.sleep_buffer = 0;
  ss.sleep_bytes = 0;
}

void MqttSnIngest::on_disconnect(const Frame& f, uint32_t datagram, uint32_t s,
                                 int64_t now) noexcept {
  // §6.12: DISCONNECT is answered with DISCONNECT; with a duration the client sleeps (§6.14)
  // and its session stays, else the session ends.
  send_now(datagram, (s == kNoSession ? kNoRef : sessions_.ref(s)) | kTagDirect,
           [](std::span<uint8_t> o) noexcept { return encode_disconnect(0, o); });
  if (s == kNoSession) return;
  MqttSnSession& ss = sessions_.at(s);
  if (f.has_duration && f.duration > 0) {
    const auto max_s = static_cast<uint32_t>(config_.max_sleep_ns / 1'000'000'000);
    if (ss.state != SessionState::kAsleep) ++sleeping_;
    ss.state = SessionState::kAsleep;
    ss.sleep_s = static_cast<uint16_t>(std::min<uint32_t>(f.duration, max_s));
    touch(s, now);
    return;
  }
  end_session(s, SessionEnd::kDisconnect);
}

bool MqttSnIngest::buffer_for_sleeper(uint32_t s, std::span<const uint8_t> bytes) noexcept {
  MqttSnSession& ss = sessions_.at(s);
  if (ss.sleep_buffer == 0) {
    ss.sleep_buffer = sleep_buffers_.take();
    if (ss.sleep_buffer == 0) {
      stats_->rejects[static_cast<size_t>(Reject::kNoSleepBuffer)].add();
      return false;
    }
  }
  if (ss.sleep_bytes + bytes.size() > sleep_buffers_.buffer_bytes()) {
    stats_->rejects[static_cast<size_t>(Reject::kSleepBufferFull)].add();
    return false;
  }
  std::memcpy(sleep_buffers_.data(ss.sleep_buffer).data() + ss.sleep_bytes, bytes.data(),
              bytes.size());
  ss.sleep_bytes += static_cast<uint32_t>(bytes.size());
  stats_->sleep_buffered.add();
  return true;
}

void MqttSnIngest::count_out(std::span<const uint8_t> bytes) noexcept {
  if (wrapped(bytes)) stats_->encapsulated_out.add();
  stats_->frames_out[type_slot(reply_type(unwrapped(bytes)))].add();
  stats_->bytes_out.add(bytes.size());
}

runtime::AckWait MqttSnIngest::release_acks(uint64_t durable_offset) noexcept {
  bool socket_full = false;
  auto done = [&](const runtime::PendingAck& e, int64_t now) noexcept {
    if ((e.tag & kTagInflight) == 0) return;
    const uint32_t s = sessions_.resolve(e.tag & kRefMask);
    if (s != kNoSession && sessions_.at(s).inflight > 0) --sessions_.at(s).inflight;
    stats_->ack_latency.observe_ns(now - e.received_mono_ns);
  };
  while (!replies_.empty() && replies_.at(0).durable_at <= durable_offset) {
    // A reply that becomes due while its client sleeps is held for its wake-up (§6.14).
    const runtime::PendingAck& head = replies_.at(0);
    if ((head.tag & kTagDirect) == 0) {
      const uint32_t s = sessions_.resolve(head.tag & kRefMask);
      if (s != kNoSession && sessions_.at(s).state == SessionState::kAsleep) {
        buffer_for_sleeper(s, replies_.bytes(head));
        done(head, core::mono_ns());
        replies_.pop(1);
        continue;
      }
    }
    // A run of replies that go out now, in one sendmmsg.
    uint32_t n = 0;
    while (n < replies_.size() && n < kMaxRepliesPerSend &&
           replies_.at(n).durable_at <= durable_offset) {
      const runtime::PendingAck& e = replies_.at(n);
      if (n > 0 && (e.tag & kTagDirect) == 0) {
        const uint32_t s = sessions_.resolve(e.tag & kRefMask);
        if (s != kNoSession && sessions_.at(s).state == SessionState::kAsleep) break;
      }
      auto bytes = replies_.bytes(e);
      send_iovs_[n].iov_base = const_cast<uint8_t*>(bytes.data());
      send_iovs_[n].iov_len = bytes.size();
      msghdr& h = send_msgs_[n].msg_hdr;
      h = msghdr{};
      h.msg_name = const_cast<sockaddr_in6*>(&e.peer);
      h.msg_namelen = e.peer_len;
      h.msg_iov = &send_iovs_[n];
      h.msg_iovlen = 1;
      ++n;
    }
    int sent = transports::send_batch(socket_.fd(), send_msgs_.data(), n);
    if (sent == -EAGAIN || sent == -EWOULDBLOCK || sent == -ENOBUFS) {
      socket_full = true;
      break;
    }
    const int64_t now = core::mono_ns();
    if (sent <= 0) {
      // The first reply cannot be sent (an unreachable peer): drop it, count it, go on.
      stats_->send_errors.add();
      done(replies_.at(0), now);
      sent = 1;
    } else {
      for (int i = 0; i < sent; ++i) {
        const runtime::PendingAck& e = replies_.at(static_cast<uint32_t>(i));
        count_out(replies_.bytes(e));
        done(e, now);
      }
    }
    replies_.pop(static_cast<uint32_t>(sent));
  }
  stats_->pending_replies.set(replies_.size());
  if (replies_.empty()) return runtime::AckWait::kNothing;
  return socket_full ? runtime::AckWait::kSocket : runtime::AckWait::kDurability;
}

}  // namespace tianhe::protocols::mqtt_sn
