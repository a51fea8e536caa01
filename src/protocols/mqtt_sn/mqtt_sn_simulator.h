// A fleet of MQTT-SN clients for tests, demos and benchmarks: each client CONNECTs (retrying
// after "rejected: congestion"), REGISTERs its device's topic and PUBLISHes JSON readings at its
// share of a target rate with QoS -1, 0, 1 or 2; the fleet measures what came back (acked,
// rejected, lost, ack latency). Many clients share a socket: each client is one source address
// (127.x.y.z, chosen per datagram with IP_PKTINFO) on one of a few local ports.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "core/result.h"

namespace tianhe::protocols::mqtt_sn {

/// What to simulate.
struct MqttSnSimOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 1884;
  uint64_t clients = 1000;       ///< one session each
  uint64_t first_device_id = 1;  ///< client i is device first_device_id + i
  std::string tenant = "demo";   ///< {tenant} of the topic
  std::string topics = "{tenant}/{device}/telemetry";
  int qos = 1;                  ///< -1, 0, 1, 2
  double rate = 1000;           ///< PUBLISHes per second over the fleet (0: as fast as acks allow)
  bool report_payload = false;  ///< tianhe.v1.Report payloads (codec "report") instead of JSON
  double duration_s = 10;
  uint64_t max_reports = 0;  ///< stop after this many PUBLISHes (0: no limit)
  uint16_t keep_alive_s = 60;
  uint32_t window = 1;            ///< QoS 1/2 messages a client has unanswered (1..4)
  uint32_t sockets = 64;          ///< local ports; clients = sockets x addresses
  double drain_s = 2;             ///< how long to wait for outstanding acks at the end
  double connect_timeout_s = 30;  ///< how long clients keep retrying CONNECT
  bool progress = true;
};

/// What the fleet saw (the report simulator's summary, plus sessions).
struct MqttSnSimSummary {
  uint64_t connects_sent = 0;
  uint64_t connected = 0;
  uint64_t congestion = 0;  ///< CONNACK "rejected: congestion" (retried)
  uint64_t refused = 0;     ///< CONNACK or REGACK refusing for good (not retried)
  uint64_t sent = 0;        ///< PUBLISHes sent
  uint64_t ack_requested = 0;
  uint64_t acked_ok = 0;  ///< PUBACK accepted (QoS 1) / PUBCOMP (QoS 2)
  uint64_t rejected = 0;  ///< PUBACK with another return code
  uint64_t lost = 0;      ///< ack requested, never answered
  double elapsed_s = 0;
  double connect_s = 0;  ///< until every client was connected (or gave up)
  double rate = 0;       ///< PUBLISHes per second
  double acked_rate = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;  ///< send to ack read
  /// JSON object with every field.
  std::string json() const;
  /// Human-readable table.
  std::string text() const;
};

/// Runs the fleet: connects every client, publishes for duration_s (or until `stop`), drains.
Result<MqttSnSimSummary> run_mqtt_sn_simulator(const MqttSnSimOptions& options,
                                               const std::atomic<bool>* stop = nullptr);

/// `tianhe simulate --protocol mqtt_sn` (argv[1] is "simulate"); returns the exit status.
int cmd_simulate(int argc, char** argv);

}  // namespace tianhe::protocols::mqtt_sn
