// The report protocol in a gateway: one ReportIngest per shard on one shared UDP port, its
// counters and its banner; and its registration (the one line in src/extensions.cmake).
#include <string>
#include <vector>

#include "core/config_table.h"
#include "protocols/report/report_config.h"
#include "protocols/report/report_ingest.h"
#include "protocols/report/report_protobuf_codec.h"
#include "protocols/report/report_simulator.h"
#include "runtime/extensions.h"

namespace tianhe::protocols::report {
namespace {

constexpr std::string_view kName = "report";
constexpr std::string_view kAckStatusNames[] = {"ok", "rejected", "busy"};
static_assert(std::size(kAckStatusNames) == static_cast<size_t>(runtime::AckKind::kCount));

void collect_shard(core::PromWriter& w, const ReportStats& s, uint32_t shard) {
  const std::string p(kName);
  const core::Labels pl{{"protocol", p}};
  w.counter("tianhe_datagrams_received_total", "Datagrams received.", pl,
            s.datagrams_received.get());
  w.counter("tianhe_received_bytes_total", "Bytes received in datagrams.", pl,
            s.bytes_received.get());
  w.counter("tianhe_receive_batches_total",
            "Receive calls (recvmmsg) that returned datagrams: datagrams / batches is the batch "
            "size (see gateway.receive_window).",
            pl, s.recv_batches.get());
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    w.counter(
        "tianhe_datagrams_dropped_total",
        "Datagrams dropped before any report was read, by reason.",
        {{"protocol", p}, {"reason", std::string(drop_reason_name(static_cast<DropReason>(r)))}},
        s.datagrams_dropped[r].get());
  }
  runtime::collect_pipeline_stats(w, s.pipeline, kName);
  for (int k = 0; k < static_cast<int>(runtime::AckKind::kCount); ++k) {
    w.counter("tianhe_reports_acked_total", "Reports acknowledged, by ack status.",
              {{"protocol", p}, {"status", std::string(kAckStatusNames[k])}}, s.acks_sent[k].get());
  }
  w.counter("tianhe_ack_datagrams_sent_total", "Ack datagrams sent.", pl,
            s.ack_datagrams_sent.get());
  w.counter("tianhe_ack_send_errors_total", "Ack datagrams that could not be sent.", pl,
            s.ack_send_errors.get());
  w.counter("tianhe_acks_dropped_total",
            "Acks not sent because the pending-ack queue was full (the reports are stored).",
            {{"protocol", p}, {"reason", "queue_full"}}, s.ack_queue_full.get());
  w.counter("tianhe_udp_receive_drops_total",
            "Datagrams the kernel dropped because a socket's receive buffer was full.", pl,
            s.kernel_drops.get());
  const core::Labels sl{{"protocol", p}, {"shard", std::to_string(shard)}};
  w.gauge("tianhe_udp_receive_buffer_bytes", "Receive buffer granted by the kernel per socket.", sl,
          s.recv_buffer_bytes.get());
  w.gauge("tianhe_queue_depth", "Items waiting in a bounded queue.",
          {{"queue", "pending_acks"}, {"protocol", p}, {"shard", std::to_string(shard)}},
          s.pending_acks.get());
  core::write_histogram(w, "tianhe_ack_latency_seconds",
                        "Time from receiving a report to sending its ack.", pl, s.ack_latency);
  core::write_histogram(
      w, "tianhe_receive_queue_delay_seconds",
      "Time the oldest datagram of each receive waited in the socket's buffer (arrival to read): "
      "input waiting for its shard.",
      pl, s.receive_queue_delay);
  core::write_histogram(w, "tianhe_ingest_batch_latency_seconds",
                        "Time from receiving a batch to its reports being appended to the log.", pl,
                        s.batch_latency);
}

class ReportProtocol final : public runtime::ProtocolInstance {
 public:
  explicit ReportProtocol(const ReportProtocolConfig& config) : config_(config) {}

  Result<std::unique_ptr<runtime::Ingest>> create_ingest(uint32_t shard) override {
    stats_.push_back(std::make_unique<ReportStats>());
    ReportProtocolConfig c = config_;
    // Port 0: the first shard picks a port, the others join it (SO_REUSEPORT).
    if (shard > 0) c.listen.port = port_;
    auto ingest = ReportIngest::create(c, stats_.back().get(), shard > 0);
    if (!ingest.ok()) return ingest.error();
    port_ = ingest.value()->port();
    return std::unique_ptr<runtime::Ingest>(std::move(ingest.value()));
  }

  void collect(core::PromWriter& w) const override {
    for (uint32_t i = 0; i < stats_.size(); ++i) collect_shard(w, *stats_[i], i);
  }

  void debug(uint32_t shard, runtime::DebugFields& out) const override {
    if (shard >= stats_.size()) return;
    const ReportStats& s = *stats_[shard];
    out.emplace_back("datagrams_received", s.datagrams_received.get());
    out.emplace_back("reports_accepted", s.pipeline.reports_accepted.get());
    out.emplace_back("pending_acks", s.pending_acks.get());
    out.emplace_back("kernel_drops", s.kernel_drops.get());
    out.emplace_back("recv_buffer_bytes", s.recv_buffer_bytes.get());
  }

  void add_totals(runtime::Totals& t) const override {
    for (const auto& s : stats_) {
      t.reports_accepted += s->pipeline.reports_accepted.get();
      t.input_drops += s->kernel_drops.get();
      t.acks_dropped += s->ack_queue_full.get();
      runtime::Totals::add(t.ack_latency_us, s->ack_latency);
    }
  }

  std::string banner() const override {
    const uint64_t granted = stats_.empty() ? 0 : stats_[0]->recv_buffer_bytes.get();
    const std::string where = config_.listen.host + ":" + std::to_string(port_);
    return "  reports  udp://" + where +
           "   (protobuf, see proto/tianhe/v1/report.proto; receive buffer " +
           config::format_bytes_approx(granted) + " per socket" +
           (granted < config_.recv_buffer_bytes
                ? ", less than requested: raise net.core.rmem_max or run privileged"
                : "") +
           ")\n" + "  try:     tianhe simulate --target " + where +
           " --devices 1000 --rate 2000 --duration 5 --ack\n";
  }

  uint16_t port() const noexcept override { return port_; }

 private:
  ReportProtocolConfig config_;
  std::vector<std::unique_ptr<ReportStats>> stats_;  ///< per shard
  uint16_t port_ = 0;
};

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  runtime::ProtocolSpec spec;
  spec.name = kName;
  spec.id = kProtocolId;
  spec.config = config_table();
  spec.enabled = [](const std::any& c) {
    return std::any_cast<const ReportProtocolConfig&>(c).enabled;
  };
  spec.create =
      [](const std::any& c,
         const runtime::GatewayContext&) -> Result<std::unique_ptr<runtime::ProtocolInstance>> {
    return std::unique_ptr<runtime::ProtocolInstance>(
        new ReportProtocol(std::any_cast<const ReportProtocolConfig&>(c)));
  };
  spec.set_port = [](std::any& c, uint16_t port) {
    std::any_cast<ReportProtocolConfig&>(c).listen.port = port;
  };
  spec.simulate = cmd_simulate;
  extensions.add_protocol(std::move(spec));
  // The report protobuf as a payload codec, for devices that publish it over other transports.
  extensions.add_codec({.name = "report", .create = [] {
                          return std::unique_ptr<pipeline::Codec>(new ReportProtobufCodec());
                        }});
}

}  // namespace tianhe::protocols::report
