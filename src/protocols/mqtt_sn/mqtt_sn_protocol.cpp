// The MQTT-SN gateway in a running Tianhe: one MqttSnIngest per shard on one shared UDP port,
// its counters (tianhe_protocol_mqtt_sn_*) and banner; and its registration (the one line in
// src/extensions.cmake).
#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "core/config_table.h"
#include "protocols/mqtt_sn/mqtt_sn_config.h"
#include "protocols/mqtt_sn/mqtt_sn_ingest.h"
#include "protocols/mqtt_sn/mqtt_sn_simulator.h"
#include "runtime/codec_stage.h"
#include "runtime/extensions.h"

namespace tianhe::protocols::mqtt_sn {
namespace {

constexpr std::string_view kName = "mqtt_sn";

constexpr std::string_view type_name(size_t slot) {
  switch (static_cast<MsgType>(slot)) {
    case MsgType::kAdvertise: return "advertise";
    case MsgType::kSearchGw: return "searchgw";
    case MsgType::kGwInfo: return "gwinfo";
    case MsgType::kConnect: return "connect";
    case MsgType::kConnack: return "connack";
    case MsgType::kWillTopicReq: return "willtopicreq";
    case MsgType::kWillTopic: return "willtopic";
    case MsgType::kWillMsgReq: return "willmsgreq";
    case MsgType::kWillMsg: return "willmsg";
    case MsgType::kRegister: return "register";
    case MsgType::kRegack: return "regack";
    case MsgType::kPublish: return "publish";
    case MsgType::kPuback: return "puback";
    case MsgType::kPubcomp: return "pubcomp";
    case MsgType::kPubrec: return "pubrec";
    case MsgType::kPubrel: return "pubrel";
    case MsgType::kSubscribe: return "subscribe";
    case MsgType::kSuback: return "suback";
    case MsgType::kUnsubscribe: return "unsubscribe";
    case MsgType::kUnsuback: return "unsuback";
    case MsgType::kPingReq: return "pingreq";
    case MsgType::kPingResp: return "pingresp";
    case MsgType::kDisconnect: return "disconnect";
    case MsgType::kWillTopicUpd: return "willtopicupd";
    case MsgType::kWillTopicResp: return "willtopicresp";
    case MsgType::kWillMsgUpd: return "willmsgupd";
    case MsgType::kWillMsgResp: return "willmsgresp";
    default: return "";
  }
}

void collect_shard(core::PromWriter& w, const MqttSnStats& s) {
  const std::string p = "tianhe_protocol_mqtt_sn_";
  for (size_t i = 0; i < kTypeSlots; ++i) {
    const std::string_view n = type_name(i);
    if (n.empty()) continue;
    w.counter(p + "frames_received_total", "Well-formed MQTT-SN messages received, by type.",
              {{"type", std::string(n)}}, s.frames_in[i].get());
  }
  for (size_t i = 0; i < kTypeSlots; ++i) {
    const std::string_view n = type_name(i);
    if (n.empty()) continue;
    w.counter(p + "frames_sent_total", "MQTT-SN messages sent, by type.",
              {{"type", std::string(n)}}, s.frames_out[i].get());
  }
  for (size_t i = 1; i < kDropReasonCount; ++i) {
    w.counter(p + "frames_dropped_total", "Malformed datagrams dropped, by reason.",
              {{"reason", std::string(drop_reason_name(static_cast<DropReason>(i)))}},
              s.frames_dropped[i].get());
  }
  for (size_t i = 0; i < static_cast<size_t>(Reject::kCount); ++i) {
    w.counter(p + "rejects_total",
              "Well-formed messages refused or ignored, by reason (docs/protocols/mqtt_sn.md).",
              {{"reason", std::string(reject_reason_name(static_cast<Reject>(i)))}},
              s.rejects[i].get());
  }
  for (size_t i = 0; i < static_cast<size_t>(SessionEnd::kCount); ++i) {
    w.counter(p + "sessions_ended_total", "Sessions ended, by why.",
              {{"reason", std::string(session_end_name(static_cast<SessionEnd>(i)))}},
              s.sessions_ended[i].get());
  }
  w.counter(p + "received_bytes_total", "Bytes received in datagrams.", {}, s.bytes_in.get());
  w.counter(p + "sent_bytes_total", "Bytes sent in datagrams.", {}, s.bytes_out.get());
  w.counter(p + "sessions_created_total", "Sessions created by an admitted CONNECT.", {},
            s.sessions_created.get());
  w.gauge(p + "sessions", "Client sessions held.", {}, s.sessions.get());
  w.gauge(p + "sessions_sleeping", "Sessions of sleeping clients.", {}, s.sleeping.get());
  w.gauge(p + "pending_replies", "Replies waiting for the log or the socket.", {},
          s.pending_replies.get());
  w.counter(p + "keep_alive_clamped_total", "CONNECTs whose keep-alive was held to max_keep_alive.",
            {}, s.keep_alive_clamped.get());
  w.counter(p + "duplicates_total",
            "QoS 2 PUBLISHes whose message id was still held: not delivered again.", {},
            s.duplicates.get());
  w.counter(p + "wills_total", "Will handshakes completed.", {}, s.wills.get());
  w.counter(p + "wills_published_total",
            "Wills published as their device's report when a session was lost.", {},
            s.wills_published.get());
  for (size_t i = 0; i < static_cast<size_t>(WillDiscard::kCount); ++i) {
    w.counter(p + "wills_discarded_total", "Wills thrown away unpublished, by reason.",
              {{"reason", std::string(will_discard_name(static_cast<WillDiscard>(i)))}},
              s.wills_discarded[i].get());
  }
  w.gauge(p + "wills", "Wills held.", {}, s.wills_held.get());
  w.counter(p + "dead_lettered_total",
            "PUBLISH payloads the codec could not decode (dead-lettered, acknowledged).", {},
            s.dead_lettered.get());
  w.counter(p + "sleep_buffered_total", "Replies held for sleeping clients.", {},
            s.sleep_buffered.get());
  w.counter(p + "sleep_delivered_total", "Held replies sent when their client woke.", {},
            s.sleep_delivered.get());
  w.counter(p + "send_errors_total", "Replies that could not be sent.", {}, s.send_errors.get());
  w.counter(p + "encapsulated_received_total",
            "Messages received encapsulated by an allowed forwarder (MQTT-SN §5.5).", {},
            s.encapsulated_in.get());
  w.counter(p + "encapsulated_sent_total", "Replies sent encapsulated to a forwarder.", {},
            s.encapsulated_out.get());
  w.counter(p + "directory_full_total",
            "Sessions whose client id found no room in the cross-shard directory (kept to their "
            "shard).",
            {}, s.directory_full.get());
  w.counter(p + "takeover_requests_total",
            "CONNECTs that asked another shard to hand their client id over (allow_takeover).", {},
            s.takeover_requests.get());
  w.counter(p + "letters_dropped_total",
            "Cross-shard takeover letters not sent because the ring to the other shard was full.",
            {}, s.letters_dropped.get());
  w.counter("tianhe_udp_receive_drops_total",
            "Datagrams the kernel dropped because a socket's receive buffer was full.",
            {{"protocol", std::string(kName)}}, s.kernel_drops.get());
  core::write_histogram(w, p + "ack_latency_seconds",
                        "Time from receiving a QoS 1/2 PUBLISH to sending its PUBACK or PUBREC "
                        "(after the covering log sync).",
                        {}, s.ack_latency);
  // The series every UDP protocol shares (the scenario runner settles on them).
  const core::Labels pl{{"protocol", std::string(kName)}};
  w.counter("tianhe_datagrams_received_total", "Datagrams received.", pl,
            s.datagrams_received.get());
  w.counter("tianhe_receive_batches_total",
            "Receive calls (recvmmsg) that returned datagrams: datagrams / batches is the batch "
            "size (see gateway.receive_window).",
            pl, s.recv_batches.get());
  core::write_histogram(w, "tianhe_ingest_batch_latency_seconds",
                        "Time from receiving a batch to its reports being appended to the log.", pl,
                        s.batch_latency);
  runtime::collect_pipeline_stats(w, s.pipeline, kName);
}

class MqttSnProtocol final : public runtime::ProtocolInstance {
 public:
  MqttSnProtocol(std::shared_ptr<const MqttSnShared> shared,
                 std::shared_ptr<runtime::CodecStage> codecs)
      : shared_(std::move(shared)), codecs_(std::move(codecs)) {
    // Two shards or more: a client id may arrive on any of them, so they share a directory
    // of who holds which id (seeded per process: ids cannot be chosen to collide).
    if (shared_->shards > 1) {
      std::random_device rd;
      const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
      cluster_ =
          std::make_shared<MqttSnCluster>(shared_->shards, shared_->config.max_sessions, seed);
    }
  }

  Result<std::unique_ptr<runtime::Ingest>> create_ingest(uint32_t shard) override {
    if (!codecs_) return make_error("protocols.mqtt_sn: the gateway has no codec stage");
    auto decoder = codecs_->decoder(shard, kName, shared_->config.codec);
    if (!decoder.ok()) return make_error("protocols.mqtt_sn.codec: " + decoder.error().message);
    stats_.push_back(std::make_unique<MqttSnStats>());
    auto shared = shared_;
    if (shard > 0) {
      // Port 0: the first shard picks a port, the others join it (SO_REUSEPORT).
      auto c = std::make_shared<MqttSnShared>(*shared_);
      c->config.listen.port = port_;
      shared = std::move(c);
    }
    auto ingest =
        MqttSnIngest::create(std::move(shared), stats_.back().get(), std::move(decoder.value()),
                             shard > 0, shard == 0, shard, cluster_);
    if (!ingest.ok()) return ingest.error();
    port_ = ingest.value()->port();
    ingests_.push_back(ingest.value().get());
    return std::unique_ptr<runtime::Ingest>(std::move(ingest.value()));
  }

  Result<runtime::SessionPage> sessions(uint32_t shard, uint64_t after,
                                        uint32_t limit) const override {
    if (shard >= ingests_.size()) return make_error("no such shard");
    return ingests_[shard]->mailbox().ask(after, limit, std::chrono::seconds(2));
  }

  void collect(core::PromWriter& w) const override {
    // Samples of equal name and labels (one per shard) are added by the writer.
    for (const auto& s : stats_) collect_shard(w, *s);
    w.gauge("tianhe_protocol_mqtt_sn_directory_entries",
            "Client ids in the cross-shard directory (0 with one shard: none is kept).", {},
            cluster_ ? static_cast<double>(cluster_->directory.size()) : 0.0);
  }

  void debug(uint32_t shard, runtime::DebugFields& out) const override {
    if (shard >= stats_.size()) return;
    const MqttSnStats& s = *stats_[shard];
    out.emplace_back("mqtt_sn_sessions", s.sessions.get());
    out.emplace_back("mqtt_sn_sleeping", s.sleeping.get());
    out.emplace_back("mqtt_sn_pending_replies", s.pending_replies.get());
    out.emplace_back("mqtt_sn_kernel_drops", s.kernel_drops.get());
  }

  void add_totals(runtime::Totals& t) const override {
    for (const auto& s : stats_) {
      t.reports_accepted += s->pipeline.reports_accepted.get();
      t.input_drops += s->kernel_drops.get();
      t.acks_dropped += s->rejects[static_cast<size_t>(Reject::kReplyQueueFull)].get();
      runtime::Totals::add(t.ack_latency_us, s->ack_latency);
    }
  }

  std::string banner() const override {
    const std::string where = shared_->config.listen.host + ":" + std::to_string(port_);
    return "  mqtt_sn  udp://" + where + "   (MQTT-SN v1.2; topics \"" + shared_->config.topics +
           "\", codec " + shared_->config.codec + ")\n";
  }

  uint16_t port() const noexcept override { return port_; }

 private:
  std::shared_ptr<const MqttSnShared> shared_;
  std::shared_ptr<runtime::CodecStage> codecs_;
  std::vector<std::unique_ptr<MqttSnStats>> stats_;  ///< per shard
  std::vector<MqttSnIngest*> ingests_;      ///< per shard; owned by the shards, which outlive calls
  std::shared_ptr<MqttSnCluster> cluster_;  ///< the cross-shard directory (null: one shard)
  uint16_t port_ = 0;
};

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  runtime::ProtocolSpec spec;
  spec.name = kName;
  spec.id = kProtocolId;
  spec.config = config_table();
  spec.enabled = [](const std::any& c) { return std::any_cast<const MqttSnConfig&>(c).enabled; };
  spec.create =
      [](const std::any& c,
         const runtime::GatewayContext& g) -> Result<std::unique_ptr<runtime::ProtocolInstance>> {
    auto shared = MqttSnShared::build(std::any_cast<const MqttSnConfig&>(c), g.registry, g.shards);
    if (!shared.ok()) return shared.error();
    return std::unique_ptr<runtime::ProtocolInstance>(
        new MqttSnProtocol(std::move(shared.value()), g.codecs));
  };
  spec.set_port = [](std::any& c, uint16_t port) {
    std::any_cast<MqttSnConfig&>(c).listen.port = port;
  };
  spec.simulate = cmd_simulate;
  spec.bench = [](const std::string&, uint64_t devices) -> Result<runtime::ProtocolBenchPlan> {
    // One session per simulated client (at most 10,000 of the bench's devices), every CONNECT
    // admitted at once so the row measures PUBLISH, not admission.
    const uint64_t clients = std::min<uint64_t>(devices, 10'000);
    runtime::ProtocolBenchPlan plan;
    plan.what = "MQTT-SN QoS 1 PUBLISH (JSON), PUBACK after durability, " +
                std::to_string(clients) + " sessions";
    plan.toml =
        "[protocols.mqtt_sn]\nenabled = true\nlisten = \"127.0.0.1:0\"\n"
        "connect_rate = 10000000\nconnect_burst = 10000000\nrecv_buffer_bytes = \"32MiB\"\n";
    plan.simulate_args = {
        "--clients", std::to_string(clients), "--tenant", "bench", "--qos", "1", "--rate", "0",
        "--quiet"};
    return plan;
  };
  extensions.add_protocol(std::move(spec));
}

}  // namespace tianhe::protocols::mqtt_sn
