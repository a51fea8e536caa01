// The MQTT client in a running Tianhe: one MqttIngest per shard (each with its own broker
// connection when a shared group splits the subscription, else shard 0's alone), its counters
// (tianhe_protocol_mqtt_*) and banner; and its registration (the one line in
// src/extensions.cmake).
#include <string>
#include <vector>

#include "core/config_table.h"
#include "protocols/mqtt/mqtt_config.h"
#include "protocols/mqtt/mqtt_ingest.h"
#include "runtime/codec_stage.h"
#include "runtime/extensions.h"

namespace tianhe::protocols::mqtt {
namespace {

constexpr std::string_view kName = "mqtt";

void collect_shard(core::PromWriter& w, const MqttStats& s, uint32_t shard) {
  const std::string p = "tianhe_protocol_mqtt_";
  for (size_t t = 0; t < 16; ++t) {
    const auto type = static_cast<PacketType>(t);
    if (s.packets_in[t].get() != 0 || type == PacketType::kPublish) {
      w.counter(p + "packets_received_total", "Well-formed packets received, by type.",
                {{"type", std::string(packet_type_name(type))}}, s.packets_in[t].get());
    }
    if (s.packets_out[t].get() != 0 || type == PacketType::kPuback) {
      w.counter(p + "packets_sent_total", "Packets sent, by type.",
                {{"type", std::string(packet_type_name(type))}}, s.packets_out[t].get());
    }
  }
  for (size_t q = 0; q < 2; ++q) {
    w.counter(p + "messages_total", "PUBLISH packets received, by QoS.",
              {{"qos", std::to_string(q)}}, s.messages[q].get());
  }
  for (size_t i = 1; i < kDropReasonCount; ++i) {
    w.counter(p + "packets_dropped_total",
              "Malformed packets from the broker (each closes the connection), by reason.",
              {{"reason", std::string(drop_reason_name(static_cast<DropReason>(i)))}},
              s.dropped[i].get());
  }
  for (size_t i = 0; i < static_cast<size_t>(Reject::kCount); ++i) {
    w.counter(p + "rejects_total",
              "PUBLISH packets that did not become a stored report, by reason "
              "(docs/protocols/mqtt.md).",
              {{"reason", std::string(reject_reason_name(static_cast<Reject>(i)))}},
              s.rejects[i].get());
  }
  for (size_t i = 0; i < static_cast<size_t>(ConnEnd::kCount); ++i) {
    w.counter(p + "connection_ends_total", "Broker connections (or attempts) ended, by why.",
              {{"reason", std::string(conn_end_name(static_cast<ConnEnd>(i)))}},
              s.conn_ends[i].get());
  }
  w.counter(p + "connects_total", "CONNECT packets sent (attempts that reached the broker).", {},
            s.connects.get());
  w.counter(p + "connected_total", "Sessions established (CONNACK and SUBACK granted).", {},
            s.connected.get());
  w.counter(p + "sessions_resumed_total", "CONNACKs that resumed a stored session.", {},
            s.session_present.get());
  w.counter(p + "reconnects_total", "Established connections that were lost (then retried).", {},
            s.reconnects.get());
  w.gauge(p + "broker_state",
          "Broker connection state: 0 idle (this shard does not connect), 1 waiting to retry, "
          "2 connecting, 3 subscribing, 4 connected.",
          {{"shard", std::to_string(shard)}}, s.state.get());
  w.gauge(p + "pending_acks", "PUBACKs waiting for the log sync or the socket.", {},
          s.pending_acks.get());
  w.gauge(p + "receive_maximum", "QoS 1 deliveries the broker may have unacknowledged (MQTT 5).",
          {{"shard", std::to_string(shard)}}, s.inflight_limit.get());
  w.counter(p + "received_bytes_total", "Bytes read from the broker.", {}, s.bytes_in.get());
  w.counter(p + "sent_bytes_total", "Bytes written to the broker.", {}, s.bytes_out.get());
  core::write_histogram(w, p + "puback_delay_seconds",
                        "Time from reading a QoS 1 PUBLISH to writing its PUBACK (after the "
                        "covering log sync).",
                        {}, s.puback_delay);
  const core::Labels pl{{"protocol", std::string(kName)}};
  core::write_histogram(w, "tianhe_ingest_batch_latency_seconds",
                        "Time from receiving a batch to its reports being appended to the log.", pl,
                        s.batch_latency);
  runtime::collect_pipeline_stats(w, s.pipeline, kName);
}

class MqttProtocol final : public runtime::ProtocolInstance {
 public:
  MqttProtocol(std::shared_ptr<const MqttShared> shared,
               std::shared_ptr<runtime::CodecStage> codecs)
      : shared_(std::move(shared)), codecs_(std::move(codecs)) {}

  Result<std::unique_ptr<runtime::Ingest>> create_ingest(uint32_t shard) override {
    if (!codecs_) return make_error("protocols.mqtt: the gateway has no codec stage");
    auto decoder = codecs_->decoder(shard, kName, shared_->config.codec);
    if (!decoder.ok()) return make_error("protocols.mqtt.codec: " + decoder.error().message);
    stats_.push_back(std::make_unique<MqttStats>());
    auto ingest =
        MqttIngest::create(shared_, stats_.back().get(), std::move(decoder.value()), shard);
    if (!ingest.ok()) return ingest.error();
    return std::unique_ptr<runtime::Ingest>(std::move(ingest.value()));
  }

  void collect(core::PromWriter& w) const override {
    // Samples of equal name and labels (one per shard) are added by the writer.
    for (size_t i = 0; i < stats_.size(); ++i) {
      collect_shard(w, *stats_[i], static_cast<uint32_t>(i));
    }
  }

  void debug(uint32_t shard, runtime::DebugFields& out) const override {
    if (shard >= stats_.size()) return;
    const MqttStats& s = *stats_[shard];
    out.emplace_back("mqtt_broker_state", s.state.get());
    out.emplace_back("mqtt_pending_acks", s.pending_acks.get());
    out.emplace_back("mqtt_reconnects", s.reconnects.get());
  }

  void add_totals(runtime::Totals& t) const override {
    for (const auto& s : stats_) {
      t.reports_accepted += s->pipeline.reports_accepted.get();
      runtime::Totals::add(t.ack_latency_us, s->puback_delay);
    }
  }

  std::string banner() const override {
    const MqttConfig& c = shared_->config;
    const std::string how = c.shared_group.empty()
                                ? "shard 0 subscribes"
                                : "shard 0 is a member of shared group " + c.shared_group;
    return "  mqtt     " + c.url + "   (MQTT " +
           std::string(c.version == Version::k5 ? "5" : "3.1.1") + ", QoS " +
           std::to_string(c.qos) + ", \"" + shared_->filter + "\", " + how + ", codec " + c.codec +
           ")\n";
  }

  uint16_t port() const noexcept override { return 0; }

 private:
  std::shared_ptr<const MqttShared> shared_;
  std::shared_ptr<runtime::CodecStage> codecs_;
  std::vector<std::unique_ptr<MqttStats>> stats_;  ///< per shard
};

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  runtime::ProtocolSpec spec;
  spec.name = kName;
  spec.id = kProtocolId;
  spec.config = config_table();
  spec.enabled = [](const std::any& c) { return std::any_cast<const MqttConfig&>(c).enabled; };
  spec.create =
      [](const std::any& c,
         const runtime::GatewayContext& g) -> Result<std::unique_ptr<runtime::ProtocolInstance>> {
    auto shared = MqttShared::build(std::any_cast<const MqttConfig&>(c), g.registry, g.shards);
    if (!shared.ok()) return shared.error();
    return std::unique_ptr<runtime::ProtocolInstance>(
        new MqttProtocol(std::move(shared.value()), g.codecs));
  };
  extensions.add_protocol(std::move(spec));
}

}  // namespace tianhe::protocols::mqtt
