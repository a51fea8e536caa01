#include "protocols/report/report_ingest.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/clock.h"
#include "pipeline/validator.h"
#include "protocols/report/report_encoder.h"

namespace tianhe::protocols::report {
namespace {

constexpr uint32_t kAckQueueEntries = 16384;
constexpr uint32_t kAckArenaBytes = 8u << 20;
constexpr uint32_t kMaxAcksPerSend = 256;
// Entries per coalesced Ack datagram (about 1.3 KB: fits a 1500-byte MTU). A single datagram
// with more reports still gets all its acks in one Ack datagram.
constexpr uint32_t kMaxAckEntriesCoalesced = 64;

// tag packs the entry counts of one ack datagram by status, 10 bits each.
uint32_t pack_counts(uint32_t ok, uint32_t rejected, uint32_t busy) {
  return ok | (rejected << 10) | (busy << 20);
}

// Batch capacity: room for a typical receive batch; a fuller one is flushed part-way
// (ParseStatus::kBatchFull). The largest single datagram (max_reports reports of
// max_metrics_per_report metrics) always fits an empty batch.
uint32_t batch_reports(const ReportProtocolConfig& c) {
  return std::max<uint32_t>(ParserLimits{}.max_reports, c.recv_batch * 16);
}
uint32_t batch_metrics(const ReportProtocolConfig& c) {
  return std::max<uint32_t>(ParserLimits{}.max_reports * ParserLimits{}.max_metrics_per_report,
                            batch_reports(c) * 8);
}

}  // namespace

Result<std::unique_ptr<ReportIngest>> ReportIngest::create(const ReportProtocolConfig& config,
                                                           ReportStats* stats, bool join) {
  auto addr = transports::resolve(config.listen.host, config.listen.port);
  if (!addr.ok()) return make_error("protocols.report.listen: " + addr.error().message);
  auto socket = transports::UdpSocket::bind(
      *addr, transports::UdpOptions{.reuse_port = true,
                                    .exclusive = !join,
                                    .recv_buffer_bytes = config.recv_buffer_bytes,
                                    .send_buffer_bytes = config.send_buffer_bytes});
  if (!socket.ok()) return make_error("protocols.report.listen: " + socket.error().message);
  transports::enable_drop_counter(socket->fd());
  // The oldest datagram's arrival time per receive: how long input waited for the shard.
  transports::enable_receive_timestamps(socket->fd());
  return std::unique_ptr<ReportIngest>(new ReportIngest(config, std::move(*socket), stats));
}

ReportIngest::ReportIngest(const ReportProtocolConfig& config, transports::UdpSocket socket,
                           ReportStats* stats)
    : socket_(std::move(socket)),
      rx_(config.recv_batch, config.max_datagram_bytes),
      batch_(batch_reports(config), batch_metrics(config)),
      status_(batch_reports(config)),
      first_report_(config.recv_batch + 1),
      datagram_ok_(config.recv_batch),
      ack_entries_(ParserLimits{}.max_reports + kMaxAckEntriesCoalesced),
      acks_(kAckQueueEntries, kAckArenaBytes),
      send_msgs_(kMaxAcksPerSend),
      send_iovs_(kMaxAcksPerSend),
      stats_(stats),
      recv_batch_(config.recv_batch) {
  limits_.max_datagram_bytes = config.max_datagram_bytes;
  rx_.set_first_arrival_only(true);
  stats_->recv_buffer_bytes.set(socket_.recv_buffer_bytes());
}

void ReportIngest::watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const {
  out.push_back(
      {socket_.fd(), static_cast<short>((can_receive() ? POLLIN : 0) |
                                        (wait == runtime::AckWait::kSocket ? POLLOUT : 0))});
}

bool ReportIngest::can_receive() const noexcept {
  // Push back when the acks of a further batch might not fit: the kernel buffer then absorbs
  // the burst, and its overflow is counted by SO_RXQ_OVFL.
  return acks_.size() + recv_batch_ <= kAckQueueEntries;
}

uint32_t ReportIngest::poll_input(runtime::Shard& shard) noexcept {
  const int n = rx_.receive(socket_.fd());
  if (n <= 0) return 0;
  const int64_t now_wall = core::wall_ns();
  const int64_t now_mono = core::mono_ns();
  stats_->recv_batches.add();
  if (const int64_t arrived = rx_.arrival_wall_ns(0); arrived != 0) {
    stats_->receive_queue_delay.observe_ns(std::max<int64_t>(0, now_wall - arrived));
  }
  stats_->kernel_drops.set(rx_.kernel_drops());
  batch_.clear();
  uint32_t first_datagram = 0;  // first datagram of the batch being built
  for (uint32_t i = 0; i < rx_.size(); ++i) {
    first_report_[i] = batch_.size();
    auto bytes = rx_.data(i);
    datagram_ok_[i] = 0;
    if (rx_.truncated(i)) {
      stats_->datagrams_received.add();
      stats_->bytes_received.add(bytes.size());
      stats_->datagrams_dropped[static_cast<int>(DropReason::kOversized)].add();
      continue;
    }
    ParseResult res = parse_datagram(bytes, i, now_wall, limits_, batch_);
    if (res.status == ParseStatus::kBatchFull && !batch_.empty()) {
      // The batch is full: flush what it holds, then parse this datagram again.
      flush(shard, first_datagram, i, now_mono);
      batch_.clear();
      first_datagram = i;
      first_report_[i] = 0;
      res = parse_datagram(bytes, i, now_wall, limits_, batch_);
    }
    stats_->datagrams_received.add();
    stats_->bytes_received.add(bytes.size());
    if (res.bad_traceparents) stats_->pipeline.bad_traceparents.add(res.bad_traceparents);
    if (res.status != ParseStatus::kComplete) {
      stats_->datagrams_dropped[static_cast<int>(res.reason)].add();
      continue;
    }
    datagram_ok_[i] = 1;
  }
  flush(shard, first_datagram, rx_.size(), now_mono);
  stats_->pending_acks.set(acks_.size());
  return rx_.size();
}

void ReportIngest::flush(runtime::Shard& shard, uint32_t first, uint32_t last,
                         int64_t received_mono) noexcept {
  first_report_[last] = batch_.size();
  stats_->pipeline.reports_received.add(batch_.size());
  const runtime::AppendOutcome outcome =
      shard.validate_and_append(batch_, status_, stats_->pipeline);
  stats_->batch_latency.observe_ns(core::mono_ns() - received_mono);
  // Acks for consecutive datagrams from one sender share an Ack datagram (the protocol's Ack
  // carries a list of entries): an edge gateway or a NAT in front of many devices gets one
  // datagram back per batch instead of one per report.
  AckGroup group;
  for (uint32_t i = first; i < last; ++i) {
    if (!datagram_ok_[i]) continue;
    const uint32_t n = first_report_[i + 1] - first_report_[i];
    if (group.entries > 0 &&
        (!same_peer(group.datagram, i) || group.entries + n > kMaxAckEntriesCoalesced)) {
      emit_acks(group, outcome, received_mono);
      group = AckGroup{};
    }
    if (group.entries == 0) group.datagram = i;
    add_acks(group, first_report_[i], first_report_[i + 1], outcome);
  }
  emit_acks(group, outcome, received_mono);
}

bool ReportIngest::same_peer(uint32_t a, uint32_t b) const noexcept {
  return rx_.peer_len(a) == rx_.peer_len(b) &&
         std::memcmp(&rx_.peer(a), &rx_.peer(b), rx_.peer_len(a)) == 0;
}

void ReportIngest::add_acks(AckGroup& g, uint32_t first, uint32_t last,
                            const runtime::AppendOutcome& outcome) noexcept {
  for (uint32_t j = first; j < last; ++j) {
    const core::Report& r = batch_[j];
    if (!r.ack_requested) continue;
    AckEntry& e = ack_entries_[g.entries++];
    e.device_id = r.device_id;
    e.seq = r.seq;
    const auto reason = static_cast<pipeline::RejectReason>(status_[j]);
    if (reason != pipeline::RejectReason::kNone) {
      e.status = AckStatus::kRejected;
      e.reason = pipeline::reject_reason_name(reason);
      ++g.rejected;
    } else if (!outcome.ok) {
      e.status = AckStatus::kBusy;
      e.reason = runtime::busy_reason_name(outcome.busy);
      ++g.busy;
    } else {
      e.status = AckStatus::kOk;
      e.reason = {};
      ++g.ok;
    }
    g.bytes += max_ack_entry_bytes(e.reason.size());
  }
}

void ReportIngest::emit_acks(const AckGroup& g, const runtime::AppendOutcome& outcome,
                             int64_t received_mono) noexcept {
  if (g.entries == 0) return;
  const size_t bytes = g.bytes + 16;
  uint8_t* out = acks_.reserve(static_cast<uint32_t>(bytes));
  if (out == nullptr) {
    // Dropping an ack never loses data: the report is in the log; the device retries and the
    // store drops the duplicate.
    stats_->ack_queue_full.add();
    return;
  }
  const size_t size = encode_ack(std::span<const AckEntry>(ack_entries_.data(), g.entries),
                                 std::span<uint8_t>(out, bytes));
  if (size == 0) {
    stats_->ack_send_errors.add();
    return;
  }
  // An ack that carries an OK waits for the covering sync; REJECTED/BUSY-only acks go at once.
  const uint64_t durable_at = g.ok > 0 ? outcome.durable_at : 0;
  acks_.commit(static_cast<uint32_t>(size), durable_at, received_mono, &rx_.peer(g.datagram),
               rx_.peer_len(g.datagram), pack_counts(g.ok, g.rejected, g.busy));
}

runtime::AckWait ReportIngest::release_acks(uint64_t durable_offset) noexcept {
  bool socket_full = false;
  while (!acks_.empty()) {
    uint32_t n = 0;
    while (n < acks_.size() && n < kMaxAcksPerSend && acks_.at(n).durable_at <= durable_offset) {
      const runtime::PendingAck& e = acks_.at(n);
      auto bytes = acks_.bytes(e);
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
    if (n == 0) break;
    int sent = transports::send_batch(socket_.fd(), send_msgs_.data(), n);
    if (sent == -EAGAIN || sent == -EWOULDBLOCK || sent == -ENOBUFS) {
      socket_full = true;  // retry when the socket has room
      break;
    }
    if (sent <= 0) {
      // The first ack cannot be sent (e.g. unreachable peer): drop it, count it, go on.
      stats_->ack_send_errors.add();
      sent = 1;
    } else {
      const int64_t now = core::mono_ns();
      for (int i = 0; i < sent; ++i) {
        const runtime::PendingAck& e = acks_.at(static_cast<uint32_t>(i));
        stats_->acks_sent[0].add(e.tag & 1023);
        stats_->acks_sent[1].add((e.tag >> 10) & 1023);
        stats_->acks_sent[2].add((e.tag >> 20) & 1023);
        stats_->ack_latency.observe_ns(now - e.received_mono_ns);
      }
      stats_->ack_datagrams_sent.add(static_cast<uint64_t>(sent));
    }
    acks_.pop(static_cast<uint32_t>(sent));
  }
  stats_->pending_acks.set(acks_.size());
  if (acks_.empty()) return runtime::AckWait::kNothing;
  return socket_full ? runtime::AckWait::kSocket : runtime::AckWait::kDurability;
}

}  // namespace tianhe::protocols::report
