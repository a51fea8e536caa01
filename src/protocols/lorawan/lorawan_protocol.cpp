// LoRaWAN in a gateway: the keys file and session journal loaded at start, one LoRaWanIngest on
// shard 0 (the other shards get an idle placeholder: device sessions are not handed across
// shards yet, see README), its counters, banner, simulator and bench plan; and its
// registration (the one line in src/extensions.cmake).
#include <chrono>
#include <string>
#include <type_traits>
#include <vector>

#include "core/config_table.h"
#include "protocols/lorawan/lorawan_config.h"
#include "protocols/lorawan/lorawan_ingest.h"
#include "protocols/lorawan/lorawan_simulator.h"
#include "runtime/extensions.h"

namespace tianhe::protocols::lorawan {
namespace {

constexpr std::string_view kName = "lorawan";

// Shards other than 0 hold no LoRaWAN state and wait on nothing.
class IdleIngest final : public runtime::Ingest {
 public:
  void watches(std::vector<runtime::Watch>&, runtime::AckWait) const override {}
  uint32_t poll_input(runtime::Shard&) noexcept override { return 0; }
  uint32_t receive_batch() const noexcept override { return 1; }
  runtime::AckWait release_acks(uint64_t) noexcept override { return runtime::AckWait::kNothing; }
  bool can_receive() const noexcept override { return false; }
};

void collect_stats(core::PromWriter& w, const LoRaWanStats& s) {
  const core::Labels none{};
  constexpr std::string_view kDgram[] = {"push_data", "pull_data", "tx_ack"};
  for (size_t i = 0; i < std::size(kDgram); ++i) {
    w.counter("tianhe_protocol_lorawan_datagrams_received_total",
              "Datagrams received from allowed gateways, by Semtech type.",
              {{"type", std::string(kDgram[i])}}, s.datagrams_in[i].get());
  }
  w.counter("tianhe_protocol_lorawan_received_bytes_total", "Bytes received in datagrams.", none,
            s.bytes_in.get());
  for (size_t r = 0; r < static_cast<size_t>(Reject::kCount); ++r) {
    w.counter("tianhe_protocol_lorawan_rejected_total",
              "Datagrams, rxpk entries or frames refused, by reason.",
              {{"reason", std::string(reject_name(static_cast<Reject>(r)))}}, s.rejected[r].get());
  }
  w.counter("tianhe_protocol_lorawan_frames_received_total",
            "PHYPayloads read from rxpk entries (every gateway's copy).", none, s.frames_in.get());
  w.counter("tianhe_protocol_lorawan_uplinks_total",
            "Data frames that passed MIC and frame-counter checks (one per frame, not per copy).",
            none, s.uplinks.get());
  w.counter("tianhe_protocol_lorawan_duplicates_total",
            "Copies of a frame merged into it within the dedup window.", none, s.duplicates.get());
  w.counter("tianhe_protocol_lorawan_copies_dropped_total",
            "Copies beyond max_gateways_per_frame (merged without their radio metrics).", none,
            s.copies_dropped.get());
  w.counter("tianhe_protocol_lorawan_mac_only_total",
            "Frames without application payload (FPort absent or 0): no report.", none,
            s.mac_only.get());
  w.counter("tianhe_protocol_lorawan_joins_total", "Join-Accepts made.", none, s.joins.get());
  w.counter("tianhe_protocol_lorawan_frames_sent_total", "Datagrams sent to gateways, by type.",
            {{"type", "push_ack"}}, s.push_acks.get());
  w.counter("tianhe_protocol_lorawan_frames_sent_total", "Datagrams sent to gateways, by type.",
            {{"type", "pull_ack"}}, s.pull_acks.get());
  w.counter("tianhe_protocol_lorawan_frames_sent_total", "Datagrams sent to gateways, by type.",
            {{"type", "pull_resp"}}, s.downlinks_sent.get());
  w.counter("tianhe_protocol_lorawan_downlinks_dropped_total",
            "Downlinks not sent: queue full, no PULL_DATA address, or a send error.", none,
            s.downlinks_dropped.get());
  w.counter("tianhe_protocol_lorawan_acks_not_sent_total",
            "Confirmed uplinks the log could not take (or the journal not record): no ACK.", none,
            s.acks_not_sent.get());
  w.counter("tianhe_protocol_lorawan_acks_unstored_total",
            "ACKs of confirmed uplinks that made no stored report, by why.",
            {{"reason", "dead_lettered"}}, s.acks_dead_lettered.get());
  w.counter("tianhe_protocol_lorawan_acks_unstored_total",
            "ACKs of confirmed uplinks that made no stored report, by why.",
            {{"reason", "rejected"}}, s.acks_rejected.get());
  constexpr std::string_view kRetrans[] = {"acked", "retried"};
  static_assert(std::size(kRetrans) == std::extent_v<decltype(LoRaWanStats::retransmissions)>);
  for (size_t i = 0; i < std::size(kRetrans); ++i) {
    w.counter("tianhe_protocol_lorawan_retransmissions_total",
              "Confirmed uplinks sent again with their last FCnt (their ACK was lost, or never "
              "sent), by what was done: ACKed again, or stored now (the log had refused them).",
              {{"result", std::string(kRetrans[i])}}, s.retransmissions[i].get());
  }
  w.counter("tianhe_protocol_lorawan_tx_acks_total", "TX_ACKs from gateways, by result.",
            {{"result", "ok"}}, s.tx_ack_ok.get());
  w.counter("tianhe_protocol_lorawan_tx_acks_total", "TX_ACKs from gateways, by result.",
            {{"result", "error"}}, s.tx_ack_error.get());
  w.counter("tianhe_protocol_lorawan_tx_acks_unmatched_total",
            "TX_ACKs whose token is no downlink in flight (late, repeated, or not ours).", none,
            s.tx_ack_unmatched.get());
  w.counter("tianhe_protocol_lorawan_downlinks_rx2_total",
            "Downlinks sent for RX2, by why RX1 was not used.", {{"cause", "tx_ack"}},
            s.rx2_after_tx_ack.get());
  w.counter("tianhe_protocol_lorawan_downlinks_rx2_total",
            "Downlinks sent for RX2, by why RX1 was not used.", {{"cause", "late"}},
            s.rx2_late.get());
  for (size_t e = 1; e < static_cast<size_t>(TxAckError::kCount); ++e) {
    w.counter("tianhe_protocol_lorawan_downlinks_failed_total",
              "Downlinks not transmitted: refused by the gateway (TX_ACK error, after RX2 where "
              "RX2 may help) or too late for RX2.",
              {{"reason", std::string(tx_ack_error_name(static_cast<TxAckError>(e)))}},
              s.downlinks_failed[e].get());
  }
  w.counter("tianhe_protocol_lorawan_downlinks_failed_total",
            "Downlinks not transmitted: refused by the gateway (TX_ACK error, after RX2 where "
            "RX2 may help) or too late for RX2.",
            {{"reason", "late"}}, s.downlinks_late.get());
  w.counter("tianhe_protocol_lorawan_mac_commands_total", "Uplink MAC commands read.", none,
            s.mac_commands.get());
  constexpr std::string_view kMacStatus[] = {"ok", "unknown_command", "truncated"};
  static_assert(std::size(kMacStatus) == static_cast<size_t>(MacStatus::kCount));
  for (size_t m = 0; m < std::size(kMacStatus); ++m) {
    w.counter("tianhe_protocol_lorawan_mac_lists_total",
              "Uplink MAC command lists (FOpts or port 0) read, by how the reading ended.",
              {{"result", std::string(kMacStatus[m])}}, s.mac_status[m].get());
  }
  w.counter("tianhe_protocol_lorawan_mac_answers_total", "MAC answers sent in FOpts, by command.",
            {{"command", "link_check_ans"}}, s.link_check_answers.get());
  w.counter("tianhe_protocol_lorawan_mac_answers_total", "MAC answers sent in FOpts, by command.",
            {{"command", "device_time_ans"}}, s.device_time_answers.get());
  w.counter("tianhe_protocol_lorawan_gateway_stats_total", "Gateway `stat` objects received.", none,
            s.stats_received.get());
  w.counter("tianhe_protocol_lorawan_journal_syncs_total", "Session journal commits.", none,
            s.journal_syncs.get());
  w.counter("tianhe_protocol_lorawan_journal_compactions_total",
            "Session journal rewrites while running (past journal_compact_bytes).", none,
            s.journal_compactions.get());
  w.gauge("tianhe_protocol_lorawan_journal_bytes", "Size of the session journal file.", none,
          s.journal_bytes.get());
  core::write_histogram(w, "tianhe_protocol_lorawan_journal_compaction_seconds",
                        "Duration of one journal compaction (the shard's stall).", none,
                        s.journal_compaction_time);
  w.gauge("tianhe_protocol_lorawan_sessions", "Active device sessions (ABP and joined).", none,
          s.sessions.get());
  w.gauge("tianhe_protocol_lorawan_pending_frames", "Frames waiting for their dedup window.", none,
          s.pending_frames.get());
  w.gauge("tianhe_protocol_lorawan_pending_downlinks", "Downlinks waiting to be sent.", none,
          s.pending_downlinks.get());
  w.counter("tianhe_protocol_lorawan_udp_receive_drops_total",
            "Datagrams the kernel dropped because the socket's receive buffer was full.", none,
            s.kernel_drops.get());
  core::write_histogram(w, "tianhe_protocol_lorawan_uplink_latency_seconds",
                        "Time from a frame's first copy to its report's append (includes the "
                        "dedup window).",
                        none, s.uplink_latency);
  core::write_histogram(w, "tianhe_protocol_lorawan_downlink_latency_seconds",
                        "Time from an uplink to its downlink (ACK or Join-Accept) being sent.",
                        none, s.downlink_latency);
  runtime::collect_pipeline_stats(w, s.pipeline, kName);
}

class LoRaWanProtocol final : public runtime::ProtocolInstance {
 public:
  LoRaWanProtocol(const LoRaWanConfig& config, runtime::GatewayContext gateway)
      : config_(config), gateway_(std::move(gateway)) {}

  // Every device session lives on shard 0; the other shards hold none.
  Result<runtime::SessionPage> sessions(uint32_t shard, uint64_t after,
                                        uint32_t limit) const override {
    if (shard > 0 || ingest_ == nullptr) return runtime::SessionPage{};
    return ingest_->mailbox().ask(after, limit, std::chrono::seconds(2));
  }

  Result<std::unique_ptr<runtime::Ingest>> create_ingest(uint32_t shard) override {
    if (shard > 0) return std::unique_ptr<runtime::Ingest>(new IdleIngest());
    auto keys = load_keys_file(config_.keys_file, "protocols.lorawan.keys_file");
    if (!keys.ok()) return keys.error();
    // The main config's [[protocols.lorawan.gateways]] and the keys file's [[gateways]].
    for (const GatewayConfig& g : config_.gateways) {
      bool listed = std::any_of(keys->gateways.begin(), keys->gateways.end(),
                                [&](const GatewayEntry& e) { return e.eui == g.eui; });
      if (!listed) keys->gateways.push_back({g.eui});
    }
    devices_ = keys->devices.size();
    gateways_ = keys->gateways.size();
    uint32_t abp = 0;
    for (const Device& d : keys->devices) abp += d.otaa ? 0 : 1;
    if (abp > config_.max_sessions) {
      return make_error("protocols.lorawan.max_sessions: the keys file has " + std::to_string(abp) +
                        " ABP devices, more than max_sessions = " +
                        std::to_string(config_.max_sessions) + "; raise max_sessions");
    }
    auto sessions = std::make_unique<SessionTable>(keys->devices);
    auto journal = SessionJournal::open(gateway_.data_dir + "/lorawan", *sessions,
                                        config_.journal_sync, config_.journal_compact_bytes);
    if (!journal.ok()) return journal.error();
    std::unique_ptr<runtime::PayloadDecoder> decoder;
    if (gateway_.codecs) {
      auto d = gateway_.codecs->decoder(0, kName, "raw");
      if (d.ok()) {
        decoder = std::move(*d);
      } else {
        codec_note_ = "no payload codec \"raw\" compiled in: reports carry radio metrics only";
      }
    }
    auto ingest = LoRaWanIngest::create(config_, *keys, std::move(sessions), std::move(*journal),
                                        std::move(decoder), &stats_);
    if (!ingest.ok()) return ingest.error();
    port_ = ingest.value()->port();
    session_bytes_ = ingest.value()->session_bytes();
    ingest_ = ingest.value().get();
    return std::unique_ptr<runtime::Ingest>(std::move(ingest.value()));
  }

  void collect(core::PromWriter& w) const override { collect_stats(w, stats_); }

  void debug(uint32_t shard, runtime::DebugFields& out) const override {
    if (shard != 0) return;
    out.emplace_back("lorawan_sessions", stats_.sessions.get());
    out.emplace_back("lorawan_pending_frames", stats_.pending_frames.get());
    out.emplace_back("lorawan_pending_downlinks", stats_.pending_downlinks.get());
    out.emplace_back("lorawan_session_bytes", session_bytes_);
  }

  void add_totals(runtime::Totals& t) const override {
    t.reports_accepted += stats_.pipeline.reports_accepted.get();
    t.input_drops += stats_.kernel_drops.get();
  }

  std::string banner() const override {
    return "  lorawan  udp://" + config_.listen.host + ":" + std::to_string(port_) +
           "   (Semtech packet forwarder v2, LoRaWAN 1.0.4; " + std::to_string(devices_) +
           " devices, " + std::to_string(gateways_) + (gateways_ == 1 ? " gateway" : " gateways") +
           " allowed; shard 0 only" + (codec_note_.empty() ? "" : "; " + codec_note_) + ")\n";
  }

  uint16_t port() const noexcept override { return port_; }

 private:
  LoRaWanConfig config_;
  runtime::GatewayContext gateway_;
  LoRaWanStats stats_;
  uint16_t port_ = 0;
  size_t devices_ = 0, gateways_ = 0, session_bytes_ = 0;
  LoRaWanIngest* ingest_ = nullptr;  ///< shard 0's; owned by the shard, which outlives calls
  std::string codec_note_;
};

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  runtime::ProtocolSpec spec;
  spec.name = kName;
  spec.id = kProtocolId;
  spec.config = config_table();
  spec.enabled = [](const std::any& c) { return std::any_cast<const LoRaWanConfig&>(c).enabled; };
  spec.create =
      [](const std::any& c,
         const runtime::GatewayContext& g) -> Result<std::unique_ptr<runtime::ProtocolInstance>> {
    return std::unique_ptr<runtime::ProtocolInstance>(
        new LoRaWanProtocol(std::any_cast<const LoRaWanConfig&>(c), g));
  };
  spec.set_port = [](std::any& c, uint16_t port) {
    std::any_cast<LoRaWanConfig&>(c).listen.port = port;
  };
  spec.simulate = cmd_simulate;
  spec.bench = bench_plan;
  extensions.add_protocol(std::move(spec));
}

}  // namespace tianhe::protocols::lorawan
