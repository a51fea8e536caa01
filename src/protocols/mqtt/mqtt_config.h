// `[protocols.mqtt]`: Tianhe as an MQTT client subscribed to a broker; its settings, their
// field table and the broker address (mqtt:// host and port, or unix:// socket path).
#pragma once

#include <cstdint>
#include <string>

#include "core/config_table.h"
#include "core/result.h"
#include "protocols/mqtt/mqtt_packet.h"

namespace tianhe::protocols::mqtt {

/// Where the broker is: a TCP host and port, or a unix socket path.
struct BrokerAddress {
  std::string host;  ///< TCP (empty for a unix socket)
  uint16_t port = 1883;
  std::string path;  ///< unix socket (empty for TCP)
};

/// Parses `url`: "mqtt://host[:port]" (also "tcp://"), "[::1]" for IPv6, or "unix:///path".
Result<BrokerAddress> parse_broker_url(std::string_view url);

/// `[protocols.mqtt]`. Parsed once, shared by every shard.
struct MqttConfig {
  bool enabled = false;  ///< subscribe to the broker
  std::string url = "mqtt://127.0.0.1:1883";
  std::string topics = "{tenant}/{device}/telemetry";  ///< topic name -> device template
  uint32_t qos = 1;                                    ///< subscription QoS (0 or 1)
  std::string codec = "json";                          ///< payload codec for models naming none
  Version version = Version::k5;                       ///< protocol_version
  std::string client_id = "tianhe";                    ///< shard i connects as "<client_id>-<i>"
  bool clean_start = false;  ///< false: a persistent session (nothing lost while away)
  int64_t session_expiry_ns = 86400 * config::kSec;  ///< MQTT 5 Session Expiry Interval
  std::string shared_group;  ///< "": shard 0 subscribes alone; else every shard, $share/<group>/
  int64_t keep_alive_ns = 30 * config::kSec;
  int64_t connect_timeout_ns = 10 * config::kSec;
  int64_t reconnect_min_ns = 100 * config::kMs;
  int64_t reconnect_max_ns = 30 * config::kSec;
  std::string username;
  std::string password_env;      ///< environment variable holding the password
  uint32_t max_inflight = 1024;  ///< MQTT 5 Receive Maximum: unacknowledged QoS 1 deliveries
  uint32_t max_packet_bytes = 256 * 1024;  ///< MQTT 5 Maximum Packet Size; longer: refused
  uint32_t recv_batch = 256;               ///< PUBLISH packets handled per poll
};

/// The `[protocols.mqtt]` table.
config::ConfigTable config_table();

}  // namespace tianhe::protocols::mqtt
