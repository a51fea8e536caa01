#include "protocols/mqtt/mqtt_ingest.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/clock.h"
#include "core/trace_context.h"
#include "pipeline/validator.h"
#include "transports/udp_socket.h"

namespace tianhe::protocols::mqtt {
namespace {

constexpr uint32_t kMetricsPerPublish = 256;
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kOutBytes = 64 * 1024;
constexpr uint32_t kReadsPerPoll = 16;
constexpr uint16_t kSubscribeId = 1;
// MQTT 5 PUBACK reason codes (§3.4.2.1) for messages that are acknowledged but not stored.
constexpr uint8_t kReasonUnspecified = 0x80;
constexpr uint8_t kReasonTopicInvalid = 0x90;
constexpr uint8_t kReasonPayloadInvalid = 0x99;

// The size of the packet we encoded at `p` (fixed header included); 0 when incomplete.
size_t packet_size_at(const uint8_t* p, size_t avail) {
  uint32_t v = 0;
  for (size_t i = 1; i < 5 && i < avail; ++i) {
    v |= uint32_t{p[i] & 0x7Fu} << (7 * (i - 1));
    if ((p[i] & 0x80) == 0) return i + 1 + v;
  }
  return 0;
}

}  // namespace

std::string_view reject_reason_name(Reject r) noexcept {
  constexpr std::string_view kNames[] = {"unknown_topic",  "tenant_mismatch", "codec_failure",
                                         "qos2",           "duplicate",       "log_busy",
                                         "ack_queue_full", "stale_ack"};
  static_assert(std::size(kNames) == static_cast<size_t>(Reject::kCount));
  const auto i = static_cast<size_t>(r);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

std::string_view conn_end_name(ConnEnd e) noexcept {
  constexpr std::string_view kNames[] = {
      "connect_failed", "timeout",   "refused",    "subscribe_failed", "closed",
      "disconnect",     "malformed", "keep_alive", "push_back",        "protocol"};
  static_assert(std::size(kNames) == static_cast<size_t>(ConnEnd::kCount));
  const auto i = static_cast<size_t>(e);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

Result<std::shared_ptr<const MqttShared>> MqttShared::build(
    const MqttConfig& config, std::shared_ptr<const pipeline::Registry> registry, uint32_t shards) {
  auto s = std::make_shared<MqttShared>();
  s->config = config;
  s->registry = std::move(registry);
  s->shards = std::max<uint32_t>(shards, 1);
  auto broker = parse_broker_url(config.url);
  if (!broker.ok()) return broker.error();
  s->broker = broker.value();
  if (!s->broker.path.empty()) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, s->broker.path.data(), s->broker.path.size());
    std::memcpy(&s->addr, &un, sizeof un);
    s->addr_len =
        static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + s->broker.path.size() + 1);
  } else {
    // Resolved once, here on the main thread: a shard never blocks on a name lookup.
    auto a = transports::resolve(s->broker.host, s->broker.port);
    if (!a.ok()) return make_error("protocols.mqtt.url: " + a.error().message);
    s->addr = a->addr;
    s->addr_len = a->len;
  }
  auto t = TopicTemplate::parse(config.topics);
  if (!t.ok()) return t.error();
  s->topics = std::move(t.value());
  s->filter = subscription_filter(s->topics, config.shared_group);
  if (!config.password_env.empty()) {
    const char* p = std::getenv(config.password_env.c_str());
    if (p == nullptr) {
      return make_error("protocols.mqtt.password_env: the environment variable " +
                        config.password_env + " is not set; export it before starting");
    }
    s->password = p;
  }
  return std::shared_ptr<const MqttShared>(std::move(s));
}

Result<std::unique_ptr<MqttIngest>> MqttIngest::create(
    std::shared_ptr<const MqttShared> shared, MqttStats* stats,
    std::unique_ptr<runtime::PayloadDecoder> decoder, uint32_t shard) {
  return std::unique_ptr<MqttIngest>(
      new MqttIngest(std::move(shared), stats, std::move(decoder), shard));
}

MqttIngest::MqttIngest(std::shared_ptr<const MqttShared> shared, MqttStats* stats,
                       std::unique_ptr<runtime::PayloadDecoder> decoder, uint32_t shard)
    : shared_(std::move(shared)),
      config_(shared_->config),
      stats_(stats),
      decoder_(std::move(decoder)),
      shard_(shard),
      // One subscriber per gateway, shared group or not: a device's messages then stay in
      // order on one shard. Members on several shards would each get some of a device's
      // messages; their clock-based seqs interleave and the store's per-device window would
      // drop the late ones. Several gateways split a shared group between them.
      active_(shard == 0),
      client_id_(shared_->config.client_id + "-" + std::to_string(shard)),
      in_(std::make_unique_for_overwrite<uint8_t[]>(shared_->config.max_packet_bytes + kReadChunk)),
      in_cap_(shared_->config.max_packet_bytes + kReadChunk),
      out_(std::make_unique_for_overwrite<uint8_t[]>(kOutBytes)),
      out_cap_(kOutBytes),
      batch_(shared_->config.recv_batch, shared_->config.recv_batch * 32 + kMetricsPerPublish),
      status_(shared_->config.recv_batch),
      pubs_(shared_->config.recv_batch),
      // Room for every delivery the broker may have in flight (Receive Maximum), twice over
      // (the PUBACKs of a connection that closed wait for durability beside the next one's),
      // plus a batch.
      acks_(2 * shared_->config.max_inflight + 2 * shared_->config.recv_batch + 64,
            (2 * shared_->config.max_inflight + 2 * shared_->config.recv_batch + 64) * 8),
      ack_entries_(2 * shared_->config.max_inflight + 2 * shared_->config.recv_batch + 64) {
  limits_.version = config_.version;
  limits_.max_packet_bytes = config_.max_packet_bytes;
  backoff_ns_ = config_.reconnect_min_ns;
  rng_ = 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(core::mono_ns()) + shard);
  next_attempt_ns_ = core::mono_ns();  // connect at once
  stats_->state.set(static_cast<uint64_t>(active_ ? BrokerState::kWaiting : BrokerState::kIdle));
  stats_->inflight_limit.set(config_.version == Version::k5 ? config_.max_inflight : 0);
}

MqttIngest::~MqttIngest() {
  if (fd_ >= 0) {
    // A normal DISCONNECT (best effort): MQTT 5 keeps the session for session_expiry, and the
    // broker does not publish a will for us.
    if (state_ == State::kConnected) {
      uint8_t b[2];
      const size_t n = encode_disconnect(config_.version, b);
      [[maybe_unused]] const ssize_t w = ::send(fd_, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    ::close(fd_);
  }
}

void MqttIngest::set_state(State s) noexcept {
  state_ = s;
  BrokerState b = BrokerState::kWaiting;
  switch (s) {
    case State::kWaiting: b = BrokerState::kWaiting; break;
    case State::kConnecting:
    case State::kAwaitConnack: b = BrokerState::kConnecting; break;
    case State::kAwaitSuback: b = BrokerState::kSubscribing; break;
    case State::kConnected: b = BrokerState::kConnected; break;
  }
  stats_->state.set(static_cast<uint64_t>(b));
}

void MqttIngest::watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const {
  if (fd_ < 0) return;
  short ev = 0;
  if (state_ == State::kConnecting) {
    ev = POLLOUT;
  } else {
    if (can_receive()) ev |= POLLIN;
    if (out_len_ > out_at_ || wait == runtime::AckWait::kSocket) ev |= POLLOUT;
  }
  out.push_back({fd_, ev});
}

bool MqttIngest::can_receive() const noexcept {
  // A poll can park a PUBACK per PUBLISH it reads: keep room for a whole poll, else leave the
  // bytes in the socket (the TCP window closes: the broker holds the rest).
  return acks_.size() + config_.recv_batch <= ack_entries_;
}

int64_t MqttIngest::next_deadline_ns() const noexcept {
  if (!active_) return runtime::kNoDeadline;
  switch (state_) {
    case State::kWaiting: return next_attempt_ns_;
    case State::kConnecting:
    case State::kAwaitConnack:
    case State::kAwaitSuback: return deadline_ns_;
    case State::kConnected:
      // MQTT 3.1.1 §3.1.2.10: a PINGREQ once nothing was sent for a keep-alive; the broker is
      // taken as gone after 1.5 keep-alives without a packet from it.
      return std::min(last_out_ns_ + keep_alive_ns_, last_in_ns_ + keep_alive_ns_ * 3 / 2);
  }
  return runtime::kNoDeadline;
}

void MqttIngest::on_timer(runtime::Shard&, int64_t now) noexcept {
  switch (state_) {
    case State::kWaiting:
      if (now >= next_attempt_ns_) start_connect(now);
      return;
    case State::kConnecting:
    case State::kAwaitConnack:
    case State::kAwaitSuback:
      if (now >= deadline_ns_) close_connection(ConnEnd::kTimeout, now);
      return;
    case State::kConnected:
      if (now - last_in_ns_ >= keep_alive_ns_ * 3 / 2) {
        close_connection(ConnEnd::kKeepAlive, now);
        return;
      }
      if (now - last_out_ns_ >= keep_alive_ns_) {
        uint8_t b[2];
        queue_out({b, encode_pingreq(b)});
        stats_->packets_out[static_cast<size_t>(PacketType::kPingreq)].add();
        if (!write_out()) close_connection(ConnEnd::kClosed, now);
      }
      return;
  }
}

void MqttIngest::start_connect(int64_t now) noexcept {
  const int family = shared_->addr.ss_family;
  fd_ = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    close_connection(ConnEnd::kConnectFailed, now);
    return;
  }
  if (family != AF_UNIX) {
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  deadline_ns_ = now + config_.connect_timeout_ns;
  const int rc =
      ::connect(fd_, reinterpret_cast<const sockaddr*>(&shared_->addr), shared_->addr_len);
  if (rc == 0) {
    on_transport_up(now);
  } else if (errno == EINPROGRESS) {
    set_state(State::kConnecting);
  } else {
    close_connection(ConnEnd::kConnectFailed, now);
  }
}

void MqttIngest::on_transport_up(int64_t now) noexcept {
  // MQTT 5 §3.1.2.11: Receive Maximum bounds the QoS 1 deliveries the broker has unacknowledged
  // to us (our PUBACKs wait for the log); Maximum Packet Size makes the broker drop, not send,
  // what we would refuse. Topic Alias Maximum is left at 0: the broker never sends an alias.
  ConnectOptions o;
  o.version = config_.version;
  o.client_id = client_id_;
  o.clean_start = config_.clean_start;
  o.keep_alive_s = static_cast<uint16_t>(config_.keep_alive_ns / 1'000'000'000);
  o.session_expiry_s = static_cast<uint32_t>(config_.session_expiry_ns / 1'000'000'000);
  o.receive_maximum = static_cast<uint16_t>(config_.max_inflight);
  o.maximum_packet_size = config_.max_packet_bytes;
  o.username = config_.username;
  o.password = shared_->password;
  const size_t n = encode_connect(o, {out_.get(), out_cap_});
  out_at_ = 0;
  out_len_ = n;
  keep_alive_ns_ = config_.keep_alive_ns;
  last_in_ns_ = now;
  stats_->connects.add();
  stats_->packets_out[static_cast<size_t>(PacketType::kConnect)].add();
  set_state(State::kAwaitConnack);
  deadline_ns_ = now + config_.connect_timeout_ns;
  if (!write_out()) close_connection(ConnEnd::kClosed, now);
}

void MqttIngest::mark_unacked() noexcept {
  // The PUBACKs of this connection that never reached the socket: their messages are in the
  // log (or will be once durable), and the broker redelivers them with DUP set and the same
  // packet id on the next connection of this session (3.1.1 §4.4, MQTT 5 §4.4). Written
  // PUBACKs the broker may not have read are not known here: their redelivery is stored
  // again (at least once; a payload seq lets the store drop the copy).
  for (uint32_t i = 0; i < acks_.size(); ++i) {
    const runtime::PendingAck& e = acks_.at(i);
    if (e.tag != generation_) continue;
    const auto b = acks_.bytes(e);
    const uint16_t id = static_cast<uint16_t>((b[2] << 8) | b[3]);
    if (!unacked_.test(id)) ++unacked_count_;
    unacked_.set(id);
    unacked_durable_at_ = std::max(unacked_durable_at_, e.durable_at);
  }
  // Unsent bytes: from the first packet not wholly written (out_pkt_), walked by headers.
  size_t at = out_pkt_;
  while (at < out_len_) {
    const size_t size = packet_size_at(out_.get() + at, out_len_ - at);
    if (size == 0) break;
    if ((out_[at] >> 4) == static_cast<uint8_t>(PacketType::kPuback) && at + 4 <= out_len_) {
      const uint16_t id = static_cast<uint16_t>((out_[at + 2] << 8) | out_[at + 3]);
      if (!unacked_.test(id)) ++unacked_count_;
      unacked_.set(id);
      unacked_durable_at_ = std::max(unacked_durable_at_, last_durable_at_);
    }
    at += size;
  }
}

void MqttIngest::close_connection(ConnEnd why, int64_t now) noexcept {
  stats_->conn_ends[static_cast<size_t>(why)].add();
  if (state_ == State::kConnected) stats_->reconnects.add();
  if (fd_ >= 0) {
    mark_unacked();
    ::close(fd_);
    fd_ = -1;
  }
  ++generation_;
  in_len_ = 0;
  out_at_ = out_len_ = out_pkt_ = 0;
  push_back_ = false;
  set_state(State::kWaiting);
  // Exponential backoff with jitter (half fixed, half random) so that nodes that lost one
  // broker do not come back in step.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const int64_t half = backoff_ns_ / 2;
  next_attempt_ns_ = now + half + static_cast<int64_t>(rng_ % static_cast<uint64_t>(half + 1));
  backoff_ns_ = std::min(backoff_ns_ * 2, config_.reconnect_max_ns);
}

bool MqttIngest::queue_out(std::span<const uint8_t> bytes) noexcept {
  if (out_at_ == out_len_) out_at_ = out_len_ = out_pkt_ = 0;
  if (out_cap_ - out_len_ < bytes.size() && out_pkt_ > 0) {
    // Keep the packet being written whole in the buffer (mark_unacked() walks from it).
    std::memmove(out_.get(), out_.get() + out_pkt_, out_len_ - out_pkt_);
    out_len_ -= out_pkt_;
    out_at_ -= out_pkt_;
    out_pkt_ = 0;
  }
  if (out_cap_ - out_len_ < bytes.size()) return false;
  std::memcpy(out_.get() + out_len_, bytes.data(), bytes.size());
  out_len_ += bytes.size();
  return true;
}

bool MqttIngest::write_out() noexcept {
  while (out_at_ < out_len_) {
    const ssize_t n =
        ::send(fd_, out_.get() + out_at_, out_len_ - out_at_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      return false;
    }
    out_at_ += static_cast<size_t>(n);
    stats_->bytes_out.add(static_cast<uint64_t>(n));
    last_out_ns_ = core::mono_ns();
  }
  // The first packet not wholly written.
  while (out_pkt_ < out_at_) {
    const size_t size = packet_size_at(out_.get() + out_pkt_, out_len_ - out_pkt_);
    if (size == 0 || out_pkt_ + size > out_at_) break;
    out_pkt_ += size;
  }
  if (out_at_ == out_len_) out_at_ = out_len_ = out_pkt_ = 0;
  return true;
}

uint32_t MqttIngest::next_seq(int64_t now_wall) noexcept {
  // A seq the store's duplicate windows accept when the payload carries none: newer than the
  // last one this shard gave and than the clock's microseconds, so it keeps rising per device
  // across reconnects and restarts. A shared subscription spreads one device's messages over
  // the shards: each shard keeps to its own residue modulo the shard count, so two shards never
  // give one device the same seq.
  const uint32_t shards = shared_->shards;
  uint32_t seq = static_cast<uint32_t>(now_wall / 1000);
  seq = seq - seq % shards + shard_;
  if (static_cast<int32_t>(seq - last_seq_) <= 0) seq = last_seq_ + shards;
  last_seq_ = seq;
  return seq;
}

bool MqttIngest::park_puback(uint16_t packet_id, uint8_t reason, uint64_t durable_at,
                             int64_t received_mono) noexcept {
  uint8_t* p = acks_.reserve(8);
  if (p == nullptr) {
    stats_->rejects[static_cast<size_t>(Reject::kAckQueueFull)].add();
    return false;
  }
  const size_t n = encode_puback(config_.version, packet_id, reason, {p, 8});
  static const sockaddr_in6 no_peer{};
  acks_.commit(static_cast<uint32_t>(n), durable_at, received_mono, &no_peer, 0, generation_);
  return true;
}

bool MqttIngest::on_publish(runtime::Shard& shard, const Packet& p, int64_t now_mono,
                            int64_t now_wall) noexcept {
  stats_->messages[p.qos].add();
  // A redelivery of a message whose PUBACK never left: it is in the log already.
  if (p.qos == 1 && unacked_count_ > 0 && unacked_.test(p.packet_id)) {
    unacked_.reset(p.packet_id);
    --unacked_count_;
    if (p.dup) {
      stats_->rejects[static_cast<size_t>(Reject::kDuplicate)].add();
      if (!park_puback(p.packet_id, 0, unacked_durable_at_, now_mono)) push_back_ = true;
      return true;
    }
  }
  auto drop = [&](Reject why, uint8_t reason) noexcept {
    stats_->rejects[static_cast<size_t>(why)].add();
    if (p.qos == 1) pubs_[pub_count_++] = Pub{-1, p.packet_id, 1, reason, now_mono};
  };
  if (batch_.reports_free() == 0 || batch_.metrics_free() < kMetricsPerPublish ||
      pub_count_ == pubs_.size()) {
    if (!flush(shard)) return false;
  }
  const TopicMatch m = shared_->topics.match(p.topic);
  if (!m.matched) {
    drop(Reject::kUnknownTopic, kReasonTopicInvalid);
    return true;
  }
  if (!m.tenant.empty()) {
    // A device the registry does not know is left to the validator (it rejects it or registers
    // it, per the tenant policy); a known one must be in the tenant the topic names.
    const pipeline::DeviceEntry* e =
        shared_->registry ? shared_->registry->find(m.device_id) : nullptr;
    if (e != nullptr && shared_->registry->tenant_name(e->tenant) != m.tenant) {
      drop(Reject::kTenantMismatch, kReasonTopicInvalid);
      return true;
    }
  }
  core::Report* r = batch_.add_report();
  if (r == nullptr) return false;  // cannot happen after the flush above
  r->device_id = m.device_id;
  r->protocol = kProtocolId;
  r->received_ns = now_wall;
  r->device_time_ns = now_wall;
  r->ack_requested = p.qos == 1;
  r->seq = next_seq(now_wall);
  if (!p.traceparent.empty() && !core::parse_traceparent(p.traceparent, r->trace)) {
    stats_->pipeline.bad_traceparents.add();
    r->trace = core::TraceContext{};
  } else if (r->trace.present && !p.tracestate.empty() &&
             !core::parse_tracestate(p.tracestate, r->trace)) {
    // A malformed ot entry: the traceparent still holds, sampled by its flag alone.
    stats_->pipeline.bad_tracestates.add();
  }
  const pipeline::CodecContext ctx{
      .device_id = m.device_id, .received_ns = now_wall, .topic = p.topic};
  const runtime::PayloadOutcome outcome = decoder_->decode(p.payload, ctx, batch_, *r);
  int32_t report = static_cast<int32_t>(batch_.size() - 1);
  if (outcome == runtime::PayloadOutcome::kDeadLettered) {
    batch_.pop_report();
    report = -1;
    stats_->rejects[static_cast<size_t>(Reject::kCodecFailure)].add();
  }
  if (p.qos == 1)
    pubs_[pub_count_++] = Pub{report, p.packet_id, 1, kReasonPayloadInvalid, now_mono};
  return true;
}

bool MqttIngest::flush(runtime::Shard& shard) noexcept {
  runtime::AppendOutcome outcome;
  outcome.ok = true;
  int64_t oldest = 0;
  if (!batch_.empty()) {
    stats_->pipeline.reports_received.add(batch_.size());
    outcome = shard.validate_and_append(batch_, status_, stats_->pipeline);
    if (outcome.ok) last_durable_at_ = std::max(last_durable_at_, outcome.durable_at);
  }
  decoder_->batch_done();
  bool ok = true;
  for (uint32_t i = 0; i < pub_count_; ++i) {
    const Pub& p = pubs_[i];
    if (oldest == 0) oldest = p.received_mono;
    if (!outcome.ok && p.report >= 0) {
      // The log refused: no PUBACK. The connection is closed after this poll and the broker
      // redelivers (the session keeps the message) once the log has room again.
      stats_->rejects[static_cast<size_t>(Reject::kLogBusy)].add();
      ok = false;
      continue;
    }
    uint8_t reason = 0;
    if (p.report < 0) {
      reason = p.reason;
    } else if (static_cast<pipeline::RejectReason>(status_[p.report]) !=
               pipeline::RejectReason::kNone) {
      reason = kReasonUnspecified;  // the model refused it (counted by reason): not stored
    }
    // Every answer waits for the batch's append to be durable, so PUBACKs leave in order.
    if (!park_puback(p.packet_id, reason, outcome.ok ? outcome.durable_at : last_durable_at_,
                     p.received_mono)) {
      ok = false;
    }
  }
  if (oldest != 0) stats_->batch_latency.observe_ns(core::mono_ns() - oldest);
  batch_.clear();
  pub_count_ = 0;
  if (!ok) push_back_ = true;
  return ok;
}

bool MqttIngest::handle(runtime::Shard& shard, const Packet& p, int64_t now_mono, int64_t now_wall,
                        ConnEnd& why) noexcept {
  stats_->packets_in[static_cast<size_t>(p.type)].add();
  switch (p.type) {
    case PacketType::kConnack: {
      if (state_ != State::kAwaitConnack) break;
      if (p.reason != 0) {
        why = ConnEnd::kRefused;
        return false;
      }
      if (p.session_present) {
        stats_->session_present.add();
      } else if (unacked_count_ > 0) {
        unacked_.reset();  // a new session: nothing will be redelivered
        unacked_count_ = 0;
      }
      if (p.server_keep_alive > 0) {
        keep_alive_ns_ = int64_t{p.server_keep_alive} * 1'000'000'000;  // MQTT 5 §3.2.2.3.14
      }
      uint8_t b[512];
      const size_t n = encode_subscribe(config_.version, kSubscribeId, shared_->filter,
                                        static_cast<uint8_t>(config_.qos), b);
      if (n == 0 || !queue_out({b, n})) {
        why = ConnEnd::kProtocol;
        return false;
      }
      stats_->packets_out[static_cast<size_t>(PacketType::kSubscribe)].add();
      set_state(State::kAwaitSuback);
      return true;
    }
    case PacketType::kSuback:
      if (state_ != State::kAwaitSuback || p.packet_id != kSubscribeId) break;
      if (p.reason_codes[0] >= 0x80) {
        why = ConnEnd::kSubscribeFailed;
        return false;
      }
      set_state(State::kConnected);
      stats_->connected.add();
      backoff_ns_ = config_.reconnect_min_ns;
      return true;
    case PacketType::kPublish:
      // A stored session's messages may come before the SUBACK (its subscription exists).
      if (state_ != State::kAwaitSuback && state_ != State::kConnected) break;
      if (p.qos == 2) {
        stats_->rejects[static_cast<size_t>(Reject::kQos2)].add();
        break;
      }
      return on_publish(shard, p, now_mono, now_wall);
    case PacketType::kPingresp: return true;
    case PacketType::kDisconnect: why = ConnEnd::kDisconnect; return false;
    default: break;
  }
  why = ConnEnd::kProtocol;
  return false;
}

uint32_t MqttIngest::poll_input(runtime::Shard& shard) noexcept {
  if (fd_ < 0) return 0;
  int64_t now = core::mono_ns();
  if (state_ == State::kConnecting) {
    pollfd pf{fd_, POLLOUT, 0};
    if (::poll(&pf, 1, 0) <= 0) return 0;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      close_connection(ConnEnd::kConnectFailed, now);
      return 0;
    }
    on_transport_up(now);
    if (fd_ < 0) return 0;
  }
  uint32_t handled = 0;
  size_t parsed = 0;
  ConnEnd why = ConnEnd::kClosed;
  bool fail = false;
  const int64_t now_wall = core::wall_ns();
  for (uint32_t reads = 0; reads < kReadsPerPoll && handled < config_.recv_batch; ++reads) {
    if (in_cap_ - in_len_ < kReadChunk / 4 && parsed > 0) {
      // The reports of the batch view into the buffer: append them before moving bytes.
      if (!flush(shard)) break;
      std::memmove(in_.get(), in_.get() + parsed, in_len_ - parsed);
      in_len_ -= parsed;
      parsed = 0;
    }
    if (in_len_ == in_cap_) break;  // cannot happen: a packet longer than this is refused
    const ssize_t n = ::recv(fd_, in_.get() + in_len_, in_cap_ - in_len_, MSG_DONTWAIT);
    if (n == 0) {
      fail = true;
      break;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      fail = true;
      break;
    }
    stats_->bytes_in.add(static_cast<uint64_t>(n));
    in_len_ += static_cast<size_t>(n);
    last_in_ns_ = now;
    while (parsed < in_len_) {
      Packet p;
      const ParseResult r = parse_packet({in_.get() + parsed, in_len_ - parsed}, limits_, p);
      if (r.status == ParseStatus::kNeedMore) break;
      if (r.status == ParseStatus::kMalformed) {
        stats_->dropped[static_cast<size_t>(r.reason)].add();
        why = ConnEnd::kMalformed;
        fail = true;
        break;
      }
      parsed += r.size;
      ++handled;
      if (!handle(shard, p, now, now_wall, why)) {
        fail = true;
        break;
      }
    }
    if (fail || push_back_) break;
  }
  if (!flush(shard) && !fail) {
    fail = true;
    why = ConnEnd::kPushBack;
  }
  if (push_back_ && !fail) {
    fail = true;
    why = ConnEnd::kPushBack;
  }
  now = core::mono_ns();
  if (!fail) {
    if (parsed > 0) {
      std::memmove(in_.get(), in_.get() + parsed, in_len_ - parsed);
      in_len_ -= parsed;
    }
    if (!write_out()) {
      fail = true;
      why = ConnEnd::kClosed;
    }
  }
  if (fail) close_connection(why, now);
  return handled;
}

runtime::AckWait MqttIngest::release_acks(uint64_t durable_offset) noexcept {
  const int64_t now = core::mono_ns();
  bool full = false;
  uint32_t n = 0;
  while (n < acks_.size() && acks_.at(n).durable_at <= durable_offset) {
    const runtime::PendingAck& e = acks_.at(n);
    if (e.tag != generation_ || state_ == State::kWaiting || fd_ < 0) {
      // Its connection has closed: the broker redelivers the message on the next one.
      stats_->rejects[static_cast<size_t>(Reject::kStaleAck)].add();
    } else {
      if (!queue_out(acks_.bytes(e))) {
        full = true;
        break;
      }
      stats_->packets_out[static_cast<size_t>(PacketType::kPuback)].add();
      stats_->puback_delay.observe_ns(now - e.received_mono_ns);
    }
    ++n;
  }
  acks_.pop(n);
  if (fd_ >= 0 && state_ != State::kConnecting && out_len_ > out_at_) {
    if (!write_out()) close_connection(ConnEnd::kClosed, now);
  }
  stats_->pending_acks.set(acks_.size());
  if (fd_ >= 0 && (full || out_len_ > out_at_)) return runtime::AckWait::kSocket;
  if (acks_.empty()) return runtime::AckWait::kNothing;
  return acks_.at(0).durable_at <= durable_offset ? runtime::AckWait::kSocket
                                                  : runtime::AckWait::kDurability;
}

}  // namespace tianhe::protocols::mqtt
