// The report protocol on one shard: its SO_REUSEPORT UDP socket, batched receive, parsing,
// hand-off to the shard's validate-and-append, and acks released after the covering log sync.
#pragma once

#include <memory>
#include <vector>

#include "core/report.h"
#include "core/result.h"
#include "protocols/report/report_config.h"
#include "protocols/report/report_encoder.h"
#include "protocols/report/report_parser.h"
#include "protocols/report/report_stats.h"
#include "runtime/ack_queue.h"
#include "runtime/shard.h"
#include "transports/udp_socket.h"

namespace tianhe::protocols::report {

/// One shard's report-protocol endpoint. Lives on (and is called only by) its shard thread.
class ReportIngest final : public runtime::Ingest {
 public:
  /// Binds the shard's socket to config.listen with SO_REUSEPORT (every shard binds the same
  /// address; the kernel spreads senders across them). The first shard's socket (`join` false)
  /// fails when another process already listens there; the others join it. `stats` outlives
  /// the ingest.
  static Result<std::unique_ptr<ReportIngest>> create(const ReportProtocolConfig& config,
                                                      ReportStats* stats, bool join);

  void watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const override;
  uint32_t poll_input(runtime::Shard& shard) noexcept override;
  uint32_t receive_batch() const noexcept override { return recv_batch_; }
  runtime::AckWait release_acks(uint64_t durable_offset) noexcept override;
  bool can_receive() const noexcept override;
  /// The UDP port bound (useful with port 0).
  uint16_t port() const noexcept { return socket_.local_port(); }

 private:
  ReportIngest(const ReportProtocolConfig& config, transports::UdpSocket socket,
               ReportStats* stats);
  void flush(runtime::Shard& shard, uint32_t first, uint32_t last, int64_t received_mono) noexcept;
  /// Ack entries gathered for one Ack datagram (one sender).
  struct AckGroup {
    uint32_t datagram = 0;  ///< a datagram of the sender (its address is the destination)
    uint32_t entries = 0;
    uint32_t ok = 0, rejected = 0, busy = 0;
    size_t bytes = 0;
  };
  bool same_peer(uint32_t a, uint32_t b) const noexcept;
  void add_acks(AckGroup& g, uint32_t first, uint32_t last,
                const runtime::AppendOutcome& outcome) noexcept;
  void emit_acks(const AckGroup& g, const runtime::AppendOutcome& outcome,
                 int64_t received_mono) noexcept;

  ParserLimits limits_;
  transports::UdpSocket socket_;
  transports::DatagramBatch rx_;
  core::ReportBatch batch_;
  std::vector<uint8_t> status_;         ///< per report: pipeline::RejectReason
  std::vector<uint32_t> first_report_;  ///< per datagram: index of its first report
  std::vector<uint8_t> datagram_ok_;    ///< per datagram: parsed
  std::vector<AckEntry> ack_entries_;   ///< scratch for one ack datagram
  runtime::AckQueue acks_;
  std::vector<mmsghdr> send_msgs_;
  std::vector<iovec> send_iovs_;
  ReportStats* stats_;
  uint32_t recv_batch_;
};

}  // namespace tianhe::protocols::report
