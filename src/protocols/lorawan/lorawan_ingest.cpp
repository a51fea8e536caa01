#include "protocols/lorawan/lorawan_ingest.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "core/clock.h"
#include "core/crc32c.h"
#include "core/hash.h"

namespace tianhe::protocols::lorawan {

struct LoRaWanIngest::Pending {
  uint64_t key = 0;  ///< crc32c of the PHYPayload with its length
  uint32_t mic = 0;
  int64_t deadline_ns = 0;
  int64_t received_mono = 0;
  int64_t received_wall = 0;
  uint32_t device = 0;
  uint32_t fcnt = 0;
  bool join = false;
  bool confirmed = false;
  bool has_port = false;
  bool dead_lettered = false;   ///< its payload went to the dead-letter file (no report)
  bool retransmission = false;  ///< a confirmed frame already ACKed: only its ACK again
  uint8_t fport = 0;
  uint16_t dev_nonce = 0;
  bool mac_link_check = false;   ///< LinkCheckReq to answer
  bool mac_device_time = false;  ///< DeviceTimeReq to answer
  uint8_t copies = 0;
  // The copy with the best RSSI among gateways that can take a downlink: its RX1 parameters.
  int32_t best_gw = -1;
  float best_rssi = -1e9F;
  uint32_t tmst = 0;
  double freq = 0;
  uint8_t rfch = 0;
  char datr[17] = {};
  char codr[9] = {};
  uint8_t len = 0;
  uint8_t payload[256] = {};  ///< decrypted FRMPayload
};

struct LoRaWanIngest::Downlink {
  uint64_t durable_at = 0;  ///< sent once the log is durable here (0: at once)
  int64_t received_mono = 0;
  uint32_t tmst = 0;      ///< the uplink's tmst at the chosen gateway
  uint32_t delay_us = 0;  ///< RECEIVE_DELAY1 or JOIN_ACCEPT_DELAY1 (RX2: one second more)
  double freq = 0;        ///< RX1: the uplink's frequency
  uint16_t gateway = 0;
  uint16_t token = 0;  ///< in flight: its PULL_RESP's token (echoed by TX_ACK)
  uint8_t window = 1;  ///< 1: RX1, 2: RX2
  bool in_flight = false;
  uint8_t len = 0;
  char datr[17] = {};  ///< RX1: the uplink's data rate (RX1DROffset 0)
  char codr[9] = {};
  uint8_t phy[kMaxDownPhy] = {};  ///< the PHYPayload (ACK with FOpts, or Join-Accept)
};

namespace {

constexpr uint32_t kBatchReports = 1024;
constexpr uint32_t kRx2ExtraUs =
    1'000'000;  // RECEIVE_DELAY2 = RECEIVE_DELAY1 + 1 s (same for joins)

// Downlinks remembered until their TX_ACK: a power of two (indexed by token), at most the
// 16-bit token space.
size_t inflight_capacity(uint32_t max_downlinks) {
  size_t cap = 16;
  while (cap < max_downlinks && cap < 65536) cap <<= 1;
  return cap;
}

// RP002-1.0.4 EU863-870 data rates DR0..DR6 (LoRa) as txpk datr.
constexpr std::string_view kEuDatr[] = {"SF12BW125", "SF11BW125", "SF10BW125", "SF9BW125",
                                        "SF8BW125",  "SF7BW125",  "SF7BW250"};

bool same_host(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in&>(b).sin_addr.s_addr;
  }
  if (a.ss_family == AF_INET6) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr,
                       &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr, 16) == 0;
  }
  return false;
}

void copy_text(char* dst, size_t cap, std::string_view s) {
  const size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = 0;
}

Reject phy_reject(PhyStatus s) {
  switch (s) {
    case PhyStatus::kEmpty: return Reject::kPhyEmpty;
    case PhyStatus::kTooShort: return Reject::kPhyTooShort;
    case PhyStatus::kTooLong: return Reject::kPhyTooLong;
    case PhyStatus::kBadMajor: return Reject::kPhyBadMajor;
    case PhyStatus::kNotUplink: return Reject::kPhyNotUplink;
    case PhyStatus::kFOptsOverflow: return Reject::kPhyFOptsOverflow;
    case PhyStatus::kFOptsWithPort0: return Reject::kPhyFOptsWithPort0;
    default: return Reject::kPhyReservedPort;
  }
}

Reject semtech_reject(SemtechStatus s) {
  switch (s) {
    case SemtechStatus::kTooShort: return Reject::kSemtechTooShort;
    case SemtechStatus::kBadVersion: return Reject::kSemtechBadVersion;
    case SemtechStatus::kUnknownType: return Reject::kSemtechUnknownType;
    case SemtechStatus::kServerType: return Reject::kSemtechServerType;
    case SemtechStatus::kTrailingBytes: return Reject::kSemtechTrailingBytes;
    default: return Reject::kSemtechNoJson;
  }
}

Reject rxpk_reject(RxpkStatus s) {
  switch (s) {
    case RxpkStatus::kBadJson: return Reject::kBadJson;
    case RxpkStatus::kMissingField: return Reject::kRxpkMissingField;
    case RxpkStatus::kBadBase64: return Reject::kRxpkBadBase64;
    case RxpkStatus::kSizeMismatch: return Reject::kRxpkSizeMismatch;
    case RxpkStatus::kTooMany: return Reject::kRxpkTooMany;
    default: return Reject::kRxpkBadField;
  }
}

}  // namespace

Result<std::unique_ptr<LoRaWanIngest>> LoRaWanIngest::create(
    const LoRaWanConfig& config, const KeysFile& keys, std::unique_ptr<SessionTable> sessions,
    SessionJournal journal, std::unique_ptr<runtime::PayloadDecoder> decoder, LoRaWanStats* stats) {
  auto addr = transports::resolve(config.listen.host, config.listen.port);
  if (!addr.ok()) return make_error("protocols.lorawan.listen: " + addr.error().message);
  auto socket = transports::UdpSocket::bind(
      *addr, transports::UdpOptions{.reuse_port = false,
                                    .recv_buffer_bytes = config.recv_buffer_bytes,
                                    .send_buffer_bytes = 4u << 20});
  if (!socket.ok()) return make_error("protocols.lorawan.listen: " + socket.error().message);
  transports::enable_drop_counter(socket->fd());
  auto ingest = std::unique_ptr<LoRaWanIngest>(
      new LoRaWanIngest(config, std::move(*socket), keys, std::move(sessions), std::move(journal),
                        std::move(decoder), stats));
  if (!ingest->crypto_.ok()) return make_error("protocols.lorawan: OpenSSL has no AES-128-ECB");
  return ingest;
}

LoRaWanIngest::LoRaWanIngest(const LoRaWanConfig& config, transports::UdpSocket socket,
                             const KeysFile& keys, std::unique_ptr<SessionTable> sessions,
                             SessionJournal journal,
                             std::unique_ptr<runtime::PayloadDecoder> decoder, LoRaWanStats* stats)
    : config_(config),
      socket_(std::move(socket)),
      rx_(config.recv_batch, 4096),
      sessions_(std::move(sessions)),
      journal_(std::move(journal)),
      decoder_(std::move(decoder)),
      push_(std::make_unique<PushData>()),
      ring_(config.max_pending_frames),
      copies_(static_cast<size_t>(config.max_pending_frames) * config.max_gateways_per_frame),
      downlinks_(config.max_downlinks),
      inflight_(inflight_capacity(config.max_downlinks)),
      inflight_mask_(static_cast<uint32_t>(inflight_.size() - 1)),
      next_dev_addr_(config.dev_addr_base),
      batch_(kBatchReports, kBatchReports * (2 * config.max_gateways_per_frame + 80)),
      status_(kBatchReports),
      batch_slot_(kBatchReports),
      stats_(stats),
      recv_batch_(config.recv_batch) {
  for (const GatewayEntry& g : keys.gateways) {
    Gateway gw;
    gw.eui = g.eui;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(g.eui));
    gw.rssi_name = std::string("rssi_") + hex;
    gw.snr_name = std::string("snr_") + hex;
    gateways_.push_back(std::move(gw));
  }
  std::sort(gateways_.begin(), gateways_.end(),
            [](const Gateway& a, const Gateway& b) { return a.eui < b.eui; });
  size_t cap = 16;
  while (cap < ring_.size() * 2) cap <<= 1;
  index_keys_.assign(cap, 0);
  index_slots_.assign(cap, 0);
  // Joined devices keep their addresses across restarts: new ones start above them.
  for (uint32_t i = 0; i < sessions_->size(); ++i) {
    const Device& d = (*sessions_)[i];
    if (d.otaa && d.has_session && d.dev_addr >= next_dev_addr_) next_dev_addr_ = d.dev_addr + 1;
  }
  stats_->recv_buffer_bytes.set(socket_.recv_buffer_bytes());
  stats_->sessions.set(sessions_->sessions());
}

LoRaWanIngest::~LoRaWanIngest() = default;

void LoRaWanIngest::watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const {
  if (mailbox_.fd() >= 0) out.push_back({mailbox_.fd(), POLLIN});
  out.push_back({socket_.fd(),
                 static_cast<short>(POLLIN | (wait == runtime::AckWait::kSocket ? POLLOUT : 0))});
}

int64_t LoRaWanIngest::next_deadline_ns() const noexcept {
  if (count_ == 0) return runtime::kNoDeadline;
  // Group commit of the session journal: a sync (one per flush of due frames) blocks the
  // shard, so the oldest due frame waits journal_commit_delay for more to come due, unless a
  // whole batch is due already. The ring is in deadline order.
  const int64_t oldest =
      ring_[head_].deadline_ns + (config_.journal_sync ? config_.journal_commit_delay_ns : 0);
  if (count_ < kBatchReports) return oldest;
  const uint32_t ring_size = static_cast<uint32_t>(ring_.size());
  return std::min(oldest, ring_[(head_ + kBatchReports - 1) % ring_size].deadline_ns);
}

int32_t LoRaWanIngest::gateway_of(uint64_t eui, const sockaddr_storage& from,
                                  int64_t now) noexcept {
  auto it = std::lower_bound(gateways_.begin(), gateways_.end(), eui,
                             [](const Gateway& g, uint64_t e) { return g.eui < e; });
  if (it == gateways_.end() || it->eui != eui) {
    reject(Reject::kUnknownGateway);
    return -1;
  }
  // Pinned to the host it first sent from; a pin lapses after gateway_pin of silence (a
  // gateway behind a NAT whose address changed).
  if (it->pinned && !same_host(it->pin, from) && now - it->last_seen_ns < config_.gateway_pin_ns) {
    reject(Reject::kGatewayAddressMismatch);
    return -1;
  }
  if (!it->pinned || !same_host(it->pin, from)) {
    it->pin = from;
    it->pinned = true;
    it->has_pull = false;
  }
  it->last_seen_ns = now;
  return static_cast<int32_t>(it - gateways_.begin());
}

void LoRaWanIngest::send_answer(const sockaddr_storage& to, socklen_t len, SemtechType t,
                                uint16_t token) noexcept {
  // PUSH_ACK / PULL_ACK: 4 bytes, fewer than the 12 the gateway sent.
  uint8_t b[4];
  encode_semtech_ack(t, token, b);
  const ssize_t n =
      ::sendto(socket_.fd(), b, 4, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to), len);
  if (n == 4) (t == SemtechType::kPushAck ? stats_->push_acks : stats_->pull_acks).add();
}

void LoRaWanIngest::list_sessions(uint64_t after, uint32_t limit,
                                  runtime::SessionPage& page) const {
  auto hex = [](uint64_t v, int digits) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%0*llx", digits, static_cast<unsigned long long>(v));
    return std::string(buf);
  };
  const SessionTable& t = *sessions_;
  page.total = t.size();
  uint64_t i = after;
  for (; i < t.size() && page.sessions.size() < limit; ++i) {
    const Device& d = t[static_cast<uint32_t>(i)];
    nlohmann::json j{{"dev_eui", hex(d.dev_eui, 16)},
                     {"device_id", d.dev_eui},
                     {"activation", d.otaa ? "otaa" : "abp"},
                     {"joined", d.has_session}};
    if (d.has_session) j["dev_addr"] = hex(d.dev_addr, 8);
    if (d.has_fcnt) j["fcnt_up"] = d.fcnt_up;
    j["fcnt_down"] = d.fcnt_down;
    if (d.has_dev_nonce) j["last_dev_nonce"] = d.dev_nonce;
    page.sessions.push_back(j.dump());  // no key material: keys never leave the table
  }
  page.next = i;
  page.more = i < t.size();
}

uint32_t LoRaWanIngest::poll_input(runtime::Shard& shard) noexcept {
  mailbox_.serve([this](uint64_t after, uint32_t limit, runtime::SessionPage& page) {
    list_sessions(after, limit, page);
  });
  const int n = rx_.receive(socket_.fd());
  if (n <= 0) return 0;
  const int64_t now_mono = core::mono_ns();
  const int64_t now_wall = core::wall_ns();
  stats_->kernel_drops.set(rx_.kernel_drops());
  for (uint32_t i = 0; i < rx_.size(); ++i) {
    const auto bytes = rx_.data(i);
    stats_->bytes_in.add(bytes.size());
    if (rx_.truncated(i)) {
      reject(Reject::kOversized);
      continue;
    }
    SemtechDatagram d;
    const SemtechStatus st = parse_semtech(bytes, d);
    if (st != SemtechStatus::kOk) {
      reject(semtech_reject(st));
      continue;
    }
    const int32_t gw = gateway_of(d.gateway_eui, rx_.peer(i), now_mono);
    if (gw < 0) continue;  // unverified: no answer at all
    switch (d.type) {
      case SemtechType::kPushData:
        stats_->datagrams_in[static_cast<size_t>(Dgram::kPushData)].add();
        send_answer(rx_.peer(i), rx_.peer_len(i), SemtechType::kPushAck, d.token);
        on_push(static_cast<uint32_t>(gw), d.json, now_mono, now_wall);
        break;
      case SemtechType::kPullData: {
        stats_->datagrams_in[static_cast<size_t>(Dgram::kPullData)].add();
        Gateway& g = gateways_[static_cast<size_t>(gw)];
        g.pull = rx_.peer(i);
        g.pull_len = rx_.peer_len(i);
        g.pull_token = d.token;
        g.has_pull = true;
        send_answer(rx_.peer(i), rx_.peer_len(i), SemtechType::kPullAck, d.token);
        break;
      }
      case SemtechType::kTxAck:
        stats_->datagrams_in[static_cast<size_t>(Dgram::kTxAck)].add();
        on_tx_ack(static_cast<uint32_t>(gw), d.token, d.json);
        break;
      default: break;
    }
  }
  stats_->pending_frames.set(count_);
  // Frames whose window closed while the socket was busy.
  if (count_ > 0 && ring_[head_].deadline_ns <= now_mono) flush(shard, now_mono);
  return rx_.size();
}

void LoRaWanIngest::on_push(uint32_t gw, std::span<const uint8_t> json, int64_t now_mono,
                            int64_t now_wall) noexcept {
  PushData& p = *push_;
  const RxpkStatus st = parse_push_data(json, p);
  if (st == RxpkStatus::kBadJson) {
    reject(Reject::kBadJson);
    return;
  }
  if (st == RxpkStatus::kTooMany) {
    for (uint32_t i = kMaxRxpk; i < p.count; ++i) reject(Reject::kRxpkTooMany);
  }
  if (p.has_stat) stats_->stats_received.add();
  for (uint32_t i = 0; i < std::min(p.count, kMaxRxpk); ++i) {
    if (p.status[i] != RxpkStatus::kOk) {
      reject(rxpk_reject(p.status[i]));
      continue;
    }
    // PROTOCOL.TXT §4: stat -1 is a bad CRC, 0 no CRC; only CRC-checked packets are used.
    if (p.rxpk[i].stat != 1) {
      reject(Reject::kCrcBad);
      continue;
    }
    on_frame(gw, p.rxpk[i], now_mono, now_wall);
  }
}

int64_t LoRaWanIngest::index_find(uint64_t key) const noexcept {
  const size_t mask = index_keys_.size() - 1;
  for (size_t s = core::mix64(key) & mask; index_slots_[s] != 0; s = (s + 1) & mask) {
    if (index_keys_[s] == key) return index_slots_[s] - 1;
  }
  return -1;
}

void LoRaWanIngest::index_insert(uint64_t key, uint32_t slot) noexcept {
  const size_t mask = index_keys_.size() - 1;
  size_t s = core::mix64(key) & mask;
  while (index_slots_[s] != 0) s = (s + 1) & mask;
  index_keys_[s] = key;
  index_slots_[s] = slot + 1;
}

void LoRaWanIngest::index_erase(uint64_t key, uint32_t slot) noexcept {
  // Linear probing with backward-shift deletion (no tombstones: probes stay short).
  const size_t mask = index_keys_.size() - 1;
  size_t s = core::mix64(key) & mask;
  while (index_slots_[s] != 0 && !(index_keys_[s] == key && index_slots_[s] == slot + 1)) {
    s = (s + 1) & mask;
  }
  if (index_slots_[s] == 0) return;
  size_t hole = s;
  for (size_t j = (s + 1) & mask; index_slots_[j] != 0; j = (j + 1) & mask) {
    const size_t home = core::mix64(index_keys_[j]) & mask;
    // Move j into the hole when its home is not in (hole, j] cyclically.
    const bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!between) {
      index_keys_[hole] = index_keys_[j];
      index_slots_[hole] = index_slots_[j];
      hole = j;
    }
  }
  index_slots_[hole] = 0;
}

bool LoRaWanIngest::merge_copy(uint64_t key, uint32_t mic, uint32_t gw, const Rxpk& rx) noexcept {
  const int64_t slot = index_find(key);
  if (slot < 0) return false;
  Pending& p = ring_[static_cast<size_t>(slot)];
  if (p.mic != mic) return false;
  stats_->duplicates.add();
  for (uint32_t c = 0; c < p.copies; ++c) {
    // The same gateway again (a forwarder retrying a PUSH_DATA): nothing new.
    if (copies_[static_cast<size_t>(slot) * config_.max_gateways_per_frame + c].gateway == gw) {
      return true;
    }
  }
  if (p.copies == config_.max_gateways_per_frame) {
    stats_->copies_dropped.add();
    return true;
  }
  copies_[static_cast<size_t>(slot) * config_.max_gateways_per_frame + p.copies++] = {
      static_cast<uint16_t>(gw), static_cast<float>(rx.rssi), static_cast<float>(rx.lsnr)};
  if (rx.has_tmst && static_cast<float>(rx.rssi) > p.best_rssi) {
    p.best_gw = static_cast<int32_t>(gw);
    p.best_rssi = static_cast<float>(rx.rssi);
    p.tmst = rx.tmst;
    p.freq = rx.freq_mhz;
    p.rfch = rx.rfch;
    copy_text(p.datr, sizeof p.datr, rx.datr);
    copy_text(p.codr, sizeof p.codr, rx.codr);
  }
  return true;
}

LoRaWanIngest::Pending* LoRaWanIngest::new_pending(uint64_t key, uint32_t mic, uint32_t gw,
                                                   const Rxpk& rx, int64_t now_mono,
                                                   int64_t now_wall) noexcept {
  if (count_ == ring_.size()) {
    reject(Reject::kPendingFull);
    return nullptr;
  }
  const uint32_t slot = (head_ + count_) % static_cast<uint32_t>(ring_.size());
  ++count_;
  Pending& p = ring_[slot];
  p.key = key;
  p.mic = mic;
  p.deadline_ns = now_mono + config_.dedup_window_ns;
  p.received_mono = now_mono;
  p.received_wall = now_wall;
  p.join = false;
  p.confirmed = false;
  p.has_port = false;
  p.dead_lettered = false;
  p.mac_link_check = false;
  p.mac_device_time = false;
  p.len = 0;
  p.copies = 1;
  copies_[static_cast<size_t>(slot) * config_.max_gateways_per_frame] = {
      static_cast<uint16_t>(gw), static_cast<float>(rx.rssi), static_cast<float>(rx.lsnr)};
  p.best_gw = rx.has_tmst ? static_cast<int32_t>(gw) : -1;
  p.best_rssi = rx.has_tmst ? static_cast<float>(rx.rssi) : -1e9F;
  p.tmst = rx.tmst;
  p.freq = rx.freq_mhz;
  p.rfch = rx.rfch;
  copy_text(p.datr, sizeof p.datr, rx.datr);
  copy_text(p.codr, sizeof p.codr, rx.codr);
  index_insert(key, slot);
  return &p;
}

void LoRaWanIngest::on_frame(uint32_t gw, const Rxpk& rx, int64_t now_mono,
                             int64_t now_wall) noexcept {
  stats_->frames_in.add();
  PhyFrame f;
  const PhyStatus ps = parse_phy(rx.data, f);
  if (ps != PhyStatus::kOk) {
    reject(phy_reject(ps));
    return;
  }
  const uint64_t key =
      (static_cast<uint64_t>(core::crc32c(rx.data.data(), rx.data.size())) << 8) | rx.data.size();
  if (f.mtype == MType::kJoinRequest) {
    const JoinRequest& j = f.join;
    if (merge_copy(key, j.mic, gw, rx)) return;
    const int64_t idx = sessions_->find_eui(j.dev_eui);
    if (idx < 0) {
      reject(Reject::kUnknownDevEui);
      return;
    }
    const Device& d = (*sessions_)[static_cast<uint32_t>(idx)];
    if (!d.otaa) {
      reject(Reject::kNotOtaa);
      return;
    }
    if (d.join_eui != 0 && d.join_eui != j.join_eui) {
      reject(Reject::kJoinEuiMismatch);
      return;
    }
    if (crypto_.join_mic(d.app_key, j.signed_part) != j.mic) {
      reject(Reject::kBadMic);
      return;
    }
    // LoRaWAN 1.0.4 §6.2.5: DevNonce is a counter; a value not above the last one is a replay.
    if (d.has_dev_nonce && j.dev_nonce <= d.dev_nonce) {
      reject(Reject::kDevNonceReplay);
      return;
    }
    if (!d.has_session && sessions_->sessions() >= config_.max_sessions) {
      reject(Reject::kSessionLimit);
      return;
    }
    Pending* p = new_pending(key, j.mic, gw, rx, now_mono, now_wall);
    if (p == nullptr) return;
    p->join = true;
    p->device = static_cast<uint32_t>(idx);
    p->dev_nonce = j.dev_nonce;
    return;
  }
  const DataFrame& df = f.data;
  if (merge_copy(key, df.mic, gw, rx)) return;
  // Which session: every device with this DevAddr whose MIC verifies (§4.4). The 32-bit
  // counter is first tried in the last counter's 64 Ki window: a MIC that verifies there with
  // a counter not above the last is a replay; then in the next window (a 16-bit rollover).
  // The last counter itself is a repeat of the last frame: a retransmission (below).
  bool addr_known = false, replay = false, exhausted = false, repeat = false;
  uint32_t fcnt = 0;
  const int64_t idx = sessions_->find_addr(df.dev_addr, [&](uint32_t i) {
    addr_known = true;
    const Device& d = (*sessions_)[i];
    const uint32_t c0 = d.has_fcnt ? ((d.fcnt_up & 0xFFFF0000u) | df.fcnt16) : df.fcnt16;
    if (crypto_.data_mic(d.nwk_s_key, Dir::kUp, df.dev_addr, c0, df.signed_part) == df.mic) {
      if (d.has_fcnt && c0 < d.fcnt_up) {
        replay = true;
        return false;
      }
      repeat = d.has_fcnt && c0 == d.fcnt_up;
      fcnt = c0;
      return true;
    }
    if (!d.has_fcnt || c0 > d.fcnt_up) return false;
    if (c0 > 0xFFFEFFFFu) {
      exhausted = true;
      return false;
    }
    const uint32_t c1 = c0 + 0x10000u;
    if (crypto_.data_mic(d.nwk_s_key, Dir::kUp, df.dev_addr, c1, df.signed_part) == df.mic) {
      fcnt = c1;
      return true;
    }
    return false;
  });
  if (idx < 0) {
    reject(!addr_known ? Reject::kUnknownDevAddr
           : replay    ? Reject::kReplay
           : exhausted ? Reject::kFcntExhausted
                       : Reject::kBadMic);
    return;
  }
  Device& d = (*sessions_)[static_cast<uint32_t>(idx)];
  // LoRaWAN 1.0.4 §4.3.1.2, §5.3: a device sends a confirmed uplink again with the same FCnt
  // when it got no ACK. It is never a second report: one already ACKed is ACKed again (the ACK
  // was lost), one the log could not take is stored now. At most kMaxRetransmissions per
  // counter (a captured frame replayed costs at most that many downlinks). Any other repeat of
  // the last counter (an unconfirmed frame sent NbTrans > 1 times, a replay) is refused.
  if (repeat &&
      (!df.confirmed || d.up_state == UpState::kNone || d.retransmissions >= kMaxRetransmissions)) {
    reject(Reject::kReplay);
    return;
  }
  Pending* p = new_pending(key, df.mic, gw, rx, now_mono, now_wall);
  if (p == nullptr) return;
  if (repeat) {
    ++d.retransmissions;
    p->retransmission = d.up_state == UpState::kAcked;
    stats_
        ->retransmissions[static_cast<size_t>(p->retransmission ? Retransmission::kAcked
                                                                : Retransmission::kRetried)]
        .add();
    d.up_state = UpState::kNone;  // settled again by this copy's flush
  } else {
    d.fcnt_up = fcnt;
    d.has_fcnt = true;
    d.up_state = UpState::kNone;
    d.retransmissions = 0;
    journal_.uplink(d);
    stats_->uplinks.add();
  }
  p->device = static_cast<uint32_t>(idx);
  p->fcnt = fcnt;
  p->confirmed = df.confirmed;
  p->has_port = df.has_port && df.fport != 0 && !p->retransmission;
  p->fport = df.fport;
  // MAC commands: FOpts (plain in 1.0.x), or FRMPayload on port 0 encrypted with NwkSKey
  // (§4.3.1.6, §4.3.3). LinkCheckReq and DeviceTimeReq are answered in the downlink's FOpts;
  // the others are read (to find those two) and not acted on. A frame carrying only MAC
  // commands makes no report.
  std::span<const uint8_t> mac = df.fopts;
  if (df.has_port && df.fport == 0 && !df.frm_payload.empty()) {
    crypto_.payload_crypt(d.nwk_s_key, Dir::kUp, df.dev_addr, fcnt, df.frm_payload, p->payload);
    mac = {p->payload, df.frm_payload.size()};
  }
  if (!mac.empty()) {
    MacRequests req;
    const MacStatus ms = parse_mac_up(mac, req);
    stats_->mac_status[static_cast<size_t>(ms)].add();
    stats_->mac_commands.add(req.commands);
    p->mac_link_check = req.link_check;
    p->mac_device_time = req.device_time;
  }
  if (p->has_port) {
    // §4.3.3: FRMPayload on ports 1..224 is encrypted with AppSKey.
    crypto_.payload_crypt(d.app_s_key, Dir::kUp, df.dev_addr, fcnt, df.frm_payload, p->payload);
    p->len = static_cast<uint8_t>(df.frm_payload.size());
  } else if (!p->retransmission) {
    stats_->mac_only.add();
  }
}

void LoRaWanIngest::queue_downlink(const Pending& p, std::span<const uint8_t> phy,
                                   uint32_t delay_us, uint64_t durable_at) noexcept {
  if (p.best_gw < 0 || !gateways_[static_cast<size_t>(p.best_gw)].has_pull ||
      dl_count_ == downlinks_.size() || phy.empty() || phy.size() > kMaxDownPhy) {
    stats_->downlinks_dropped.add();
    return;
  }
  // RX1 (RP002 EU868 style, RX1DROffset 0): the uplink's frequency and data rate, the delay
  // after the uplink's end (tmst). The txpk is written when it is sent: RX1 or, when it is too
  // late for RX1 by then, RX2.
  Downlink& dl = downlinks_[(dl_head_ + dl_count_) % downlinks_.size()];
  dl.durable_at = durable_at;
  dl.received_mono = p.received_mono;
  dl.tmst = p.tmst;
  dl.delay_us = delay_us;
  dl.freq = p.freq;
  dl.gateway = static_cast<uint16_t>(p.best_gw);
  dl.window = 1;
  dl.in_flight = false;
  dl.len = static_cast<uint8_t>(phy.size());
  std::memcpy(dl.datr, p.datr, sizeof dl.datr);
  std::memcpy(dl.codr, p.codr, sizeof dl.codr);
  std::memcpy(dl.phy, phy.data(), phy.size());
  ++dl_count_;
}

int64_t LoRaWanIngest::send_by(const Downlink& dl, uint8_t window) const noexcept {
  // The PULL_RESP must reach the gateway before the window opens: counted from the uplink's
  // arrival here (the gateway's tmst is its own clock), less downlink_lead for the way there
  // and the forwarder's scheduling.
  const int64_t delay_ns =
      static_cast<int64_t>(dl.delay_us + (window == 2 ? kRx2ExtraUs : 0)) * 1000;
  return dl.received_mono + delay_ns - config_.downlink_lead_ns;
}

LoRaWanIngest::SendResult LoRaWanIngest::send_downlink(const Downlink& dl) noexcept {
  const Gateway& g = gateways_[dl.gateway];
  if (!g.has_pull) {
    stats_->downlinks_dropped.add();
    return SendResult::kFailed;
  }
  // RX2 (LoRaWAN 1.0.4 §3.3.2): RECEIVE_DELAY2 = RECEIVE_DELAY1 + 1 s (JOIN_ACCEPT_DELAY2 =
  // JOIN_ACCEPT_DELAY1 + 1 s), on the configured RX2 frequency and data rate.
  const bool rx2 = dl.window == 2;
  const uint16_t token = next_token_;
  const Txpk t{.immediate = false,
               .tmst = dl.tmst + dl.delay_us + (rx2 ? kRx2ExtraUs : 0u),
               .freq_mhz = rx2 ? config_.rx2_frequency_mhz : dl.freq,
               .rfch = 0,
               .powe = static_cast<int>(config_.tx_power_dbm),
               .datr = rx2 ? kEuDatr[config_.rx2_datarate] : std::string_view(dl.datr),
               .codr = dl.codr[0] != 0 ? std::string_view(dl.codr) : std::string_view("4/5"),
               .ipol = true,
               .data = {dl.phy, dl.len}};
  const size_t n = encode_pull_resp(token, t, tx_buf_);
  if (n == 0) {
    stats_->downlinks_dropped.add();
    return SendResult::kFailed;
  }
  const ssize_t w = ::sendto(socket_.fd(), tx_buf_, n, MSG_DONTWAIT,
                             reinterpret_cast<const sockaddr*>(&g.pull), g.pull_len);
  if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
    return SendResult::kAgain;
  }
  if (w != static_cast<ssize_t>(n)) {
    stats_->downlinks_dropped.add();
    return SendResult::kFailed;
  }
  ++next_token_;
  stats_->downlinks_sent.add();
  if (rx2) stats_->downlinks_rx2.add();
  stats_->downlink_latency.observe_ns(core::mono_ns() - dl.received_mono);
  // Kept until its TX_ACK (PROTOCOL.TXT v2 §5 echoes the token): a refusal may send it again
  // in RX2. An entry never answered is overwritten 2^k tokens later.
  Downlink& f = inflight_[token & inflight_mask_];
  f = dl;
  f.token = token;
  f.in_flight = true;
  return SendResult::kSent;
}

void LoRaWanIngest::on_tx_ack(uint32_t gw, uint16_t token, std::span<const uint8_t> json) noexcept {
  const TxAckError e = parse_tx_ack(json);
  (e == TxAckError::kNone ? stats_->tx_ack_ok : stats_->tx_ack_error).add();
  Downlink& f = inflight_[token & inflight_mask_];
  if (!f.in_flight || f.token != token || f.gateway != gw) {
    stats_->tx_ack_unmatched.add();
    return;
  }
  f.in_flight = false;
  if (e == TxAckError::kNone) return;
  // Refused for RX1 for its time, frequency or power: RX2 once (another second later, the
  // RX2 frequency and data rate). A refusal of RX2, or of anything else, is final.
  if (f.window == 1 && rx2_may_help(e)) {
    if (core::mono_ns() > send_by(f, 2)) {
      stats_->downlinks_late.add();
      return;
    }
    Downlink retry = f;
    retry.window = 2;
    stats_->rx2_after_tx_ack.add();
    if (send_downlink(retry) == SendResult::kAgain) stats_->downlinks_dropped.add();
    return;
  }
  stats_->downlinks_failed[static_cast<size_t>(e)].add();
}

bool LoRaWanIngest::commit_journal() noexcept {
  // A commit may compact the journal (its file past the threshold): the shard stalls for the
  // rewrite, measured here (README: 100,000 sessions take about 13 ms).
  const uint64_t before = journal_.compactions();
  const bool ok = journal_.commit(*sessions_);
  if (journal_.compactions() != before) {
    stats_->journal_compactions.add();
    stats_->journal_compaction_time.observe_ns(journal_.last_compaction_ns());
  }
  stats_->journal_syncs.set(journal_.syncs());
  stats_->journal_bytes.set(journal_.file_bytes());
  return ok;
}

void LoRaWanIngest::on_timer(runtime::Shard& shard, int64_t now_ns) noexcept {
  flush(shard, now_ns);
}

void LoRaWanIngest::flush(runtime::Shard& shard, int64_t now_ns) noexcept {
  while (count_ > 0 && ring_[head_].deadline_ns <= now_ns) {
    // 1. The frames whose window closed (at most one batch): joins take their session now.
    const uint32_t ring_size = static_cast<uint32_t>(ring_.size());
    uint32_t due = 0;
    while (due < count_ && due < kBatchReports &&
           ring_[(head_ + due) % ring_size].deadline_ns <= now_ns) {
      ++due;
    }
    batch_.clear();
    uint32_t reports = 0;
    for (uint32_t k = 0; k < due; ++k) {
      const uint32_t slot = (head_ + k) % ring_size;
      Pending& p = ring_[slot];
      Device& d = (*sessions_)[p.device];
      if (p.join) {
        if ((d.has_dev_nonce && p.dev_nonce <= d.dev_nonce) ||
            (!d.has_session && sessions_->sessions() >= config_.max_sessions)) {
          reject(d.has_session ? Reject::kDevNonceReplay : Reject::kSessionLimit);
          p.join = false;
          p.confirmed = false;
          continue;
        }
        // §6.2.6 (1.0.x): a new JoinNonce, address and session keys; counters restart.
        d.join_nonce = (d.join_nonce + 1) & 0xFFFFFFu;
        d.dev_nonce = p.dev_nonce;
        d.has_dev_nonce = true;
        crypto_.derive_session_keys(d.app_key, d.join_nonce, config_.net_id, d.dev_nonce,
                                    d.nwk_s_key, d.app_s_key);
        sessions_->set_addr(p.device, next_dev_addr_++);
        d.fcnt_up = 0;
        d.has_fcnt = false;
        d.fcnt_down = 0;
        journal_.join(d);
        continue;
      }
      if (!p.has_port) continue;
      core::Report* r = batch_.add_report();
      if (r == nullptr) break;
      r->device_id = d.dev_eui;
      r->seq = p.fcnt;
      r->received_ns = p.received_wall;
      r->device_time_ns = p.received_wall;
      r->protocol = kProtocolId;
      r->ack_requested = p.confirmed;
      if (decoder_ != nullptr) {
        const auto out = decoder_->decode(
            {p.payload, p.len},
            {.device_id = d.dev_eui, .fport = p.fport, .received_ns = p.received_wall}, batch_, *r);
        if (out == runtime::PayloadOutcome::kDeadLettered) {
          // Kept (in the dead-letter file) and counted: a confirmed uplink is still ACKed.
          batch_.pop_report();
          p.dead_lettered = true;
          continue;
        }
      }
      // Radio metrics: the number of gateways that heard it and each one's RSSI and SNR.
      if (core::Metric* m = batch_.add_metric(*r)) {
        m->name = "lorawan_gateways";
        m->value.type = core::ValueType::kInt64;
        m->value.i64 = p.copies;
      }
      if (core::Metric* m = batch_.add_metric(*r)) {
        m->name = "lorawan_fport";
        m->value.type = core::ValueType::kInt64;
        m->value.i64 = p.fport;
      }
      for (uint32_t c = 0; c < p.copies; ++c) {
        const Copy& cp = copies_[static_cast<size_t>(slot) * config_.max_gateways_per_frame + c];
        const Gateway& g = gateways_[cp.gateway];
        if (core::Metric* m = batch_.add_metric(*r)) {
          m->name = g.rssi_name;
          m->value.type = core::ValueType::kDouble;
          m->value.f64 = cp.rssi;
        }
        if (core::Metric* m = batch_.add_metric(*r)) {
          m->name = g.snr_name;
          m->value.type = core::ValueType::kDouble;
          m->value.f64 = cp.snr;
        }
      }
      batch_slot_[reports++] = slot;
    }
    // 2. What the session journal records is durable before anything relies on it: the
    // reports' counters before they are stored, the keys before a Join-Accept goes out.
    const bool journal_ok = commit_journal();
    if (!journal_ok) reject(Reject::kJournalError);
    // 3. Store the reports.
    runtime::AppendOutcome outcome;
    outcome.ok = false;
    if (!batch_.empty() && journal_ok) {
      stats_->pipeline.reports_received.add(batch_.size());
      outcome = shard.validate_and_append(batch_, status_, stats_->pipeline);
      if (outcome.ok) last_ack_durable_at_ = std::max(last_ack_durable_at_, outcome.durable_at);
      stats_->uplink_latency.observe_ns(core::mono_ns() - ring_[head_].received_mono);
    } else if (!batch_.empty()) {
      reject(Reject::kJournalError);
    }
    if (decoder_ != nullptr) decoder_->batch_done();
    // 4. Downlinks: Join-Accepts at once (the journal is synced), ACKs once their report is.
    uint32_t report_i = 0;
    for (uint32_t k = 0; k < due; ++k) {
      const uint32_t slot = (head_ + k) % ring_size;
      Pending& p = ring_[slot];
      Device& d = (*sessions_)[p.device];
      uint8_t phy[kMaxPhyBytes];
      if (p.join && journal_ok) {
        // DLSettings: RX1DROffset 0, RX2DataRate = rx2_datarate (the device's RX2 from now).
        JoinAcceptFields ja{.join_nonce = d.join_nonce,
                            .net_id = config_.net_id,
                            .dev_addr = d.dev_addr,
                            .dl_settings = static_cast<uint8_t>(config_.rx2_datarate & 0x0F),
                            .rx_delay = static_cast<uint8_t>(config_.rx1_delay_ns / config::kSec)};
        const size_t n = encode_join_accept(crypto_, d.app_key, ja, phy);
        queue_downlink(p, {phy, n}, static_cast<uint32_t>(config_.join_accept_delay_ns / 1000), 0);
        stats_->joins.add();
      } else if (!p.join) {
        // The ACK says the frame was received (LoRaWAN 1.0.4 §4.3.1.2), and its counter is in
        // the journal: it goes once the frame's fate is settled, whatever that fate is. Stored:
        // once the log is durable. Dead-lettered (the codec failed; the payload is in the
        // dead-letter file, written by batch_done() above) or refused by the validator (counted
        // by reason): at once. Without it the device would retransmit (each copy refused as a
        // replay) and in the end rejoin. Only a frame the log could not take is not ACKed.
        bool ack = false, wait_log = false;
        if (p.confirmed) {
          bool settled = !p.has_port || p.dead_lettered;  // no payload: nothing to store
          if (p.has_port && report_i < reports && batch_slot_[report_i] == slot) {
            const bool refused = status_[report_i] != 0;
            wait_log = !refused;
            settled = refused || outcome.ok;
          }
          ack = settled && journal_ok;
          // What a retransmission of this counter will get (if it is still the last one).
          if (d.fcnt_up == p.fcnt) d.up_state = ack ? UpState::kAcked : UpState::kUnstored;
          if (!ack) {
            stats_->acks_not_sent.add();
          } else if (p.dead_lettered) {
            stats_->acks_dead_lettered.add();
          } else if (p.has_port && !wait_log) {
            stats_->acks_rejected.add();
          }
        }
        // MAC answers go in FOpts (plain in 1.0.x, §4.3.1.6) of the same downlink, which they
        // make even for an unconfirmed uplink.
        uint8_t fopts[15];
        size_t nf = 0;
        if (journal_ok && p.mac_link_check) {
          // §5.2: the margin of the best copy's SNR over the SF's floor; the gateways that
          // heard the frame.
          float best_snr = -1e9F;
          for (uint32_t c = 0; c < p.copies; ++c) {
            best_snr = std::max(
                best_snr,
                copies_[static_cast<size_t>(slot) * config_.max_gateways_per_frame + c].snr);
          }
          nf += encode_link_check_ans(link_margin(p.datr, best_snr), p.copies,
                                      std::span<uint8_t>(fopts).subspan(nf));
          stats_->link_check_answers.add();
        }
        if (journal_ok && p.mac_device_time) {
          // §5.9: the time the uplink was received (its first copy, our clock).
          nf += encode_device_time_ans(p.received_wall, std::span<uint8_t>(fopts).subspan(nf));
          stats_->device_time_answers.add();
        }
        if (ack || nf > 0) {
          DownlinkData dd{
              .dev_addr = d.dev_addr, .fcnt = d.fcnt_down, .ack = ack, .fopts = {fopts, nf}};
          const size_t n = encode_data_down(crypto_, d.nwk_s_key, d.app_s_key, dd, phy);
          ++d.fcnt_down;
          journal_.downlink(d);
          // A retransmission's ACK waits for every report ACKed so far (its first copy's
          // among them) to be durable: already so, but cheap to be sure.
          const uint64_t durable_at = ack && wait_log    ? outcome.durable_at
                                      : p.retransmission ? last_ack_durable_at_
                                                         : 0;
          queue_downlink(p, {phy, n}, static_cast<uint32_t>(config_.rx1_delay_ns / 1000),
                         durable_at);
        }
      }
      if (p.has_port && report_i < reports && batch_slot_[report_i] == slot) ++report_i;
    }
    // The downlink counters just used are durable before those downlinks go (a reused
    // counter would reuse a keystream).
    if (journal_.dirty() && !commit_journal()) reject(Reject::kJournalError);
    for (uint32_t k = 0; k < due; ++k) {
      const uint32_t slot = (head_ + k) % ring_size;
      index_erase(ring_[slot].key, slot);
    }
    head_ = (head_ + due) % ring_size;
    count_ -= due;
  }
  stats_->pending_frames.set(count_);
  stats_->sessions.set(sessions_->sessions());
  stats_->pending_downlinks.set(dl_count_);
}

runtime::AckWait LoRaWanIngest::release_acks(uint64_t durable_offset) noexcept {
  while (dl_count_ > 0) {
    Downlink& dl = downlinks_[dl_head_];
    if (dl.durable_at > durable_offset) break;
    // Too late for RX1 by now (the log's sync, a busy shard): RX2; too late for that too:
    // dropped and counted.
    const int64_t now = core::mono_ns();
    if (dl.window == 1 && now > send_by(dl, 1)) {
      dl.window = 2;
      stats_->rx2_late.add();
    }
    if (dl.window == 2 && now > send_by(dl, 2)) {
      stats_->downlinks_late.add();
    } else if (send_downlink(dl) == SendResult::kAgain) {
      stats_->pending_downlinks.set(dl_count_);
      return runtime::AckWait::kSocket;
    }
    dl_head_ = (dl_head_ + 1) % static_cast<uint32_t>(downlinks_.size());
    --dl_count_;
  }
  stats_->pending_downlinks.set(dl_count_);
  return dl_count_ == 0 ? runtime::AckWait::kNothing : runtime::AckWait::kDurability;
}

}  // namespace tianhe::protocols::lorawan
