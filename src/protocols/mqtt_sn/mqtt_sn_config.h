// `[protocols.mqtt_sn]`: the MQTT-SN gateway's settings and their field table.
#pragma once

#include <cstdint>
#include <string>

#include "core/config_table.h"

namespace tianhe::protocols::mqtt_sn {

/// `[protocols.mqtt_sn]`: MQTT-SN v1.2 clients over UDP. Parsed once, shared by every shard.
struct MqttSnConfig {
  // The listen port is set in the constructor: GCC 12 at -O3 warns (maybe-uninitialized, a
  // false positive) on a std::any of this struct when the endpoint has a member initialiser.
  MqttSnConfig() { listen.port = 1884; }

  bool enabled = false;     ///< serve MQTT-SN clients
  config::Endpoint listen;  ///< UDP address every shard binds (SO_REUSEPORT)
  std::string topics = "{tenant}/{device}/telemetry";  ///< topic name -> device template
  std::string codec = "json";                          ///< payload codec for models that name none
  std::string predefined_topics;                       ///< "1=acme/7/telemetry, 2=status" (§2.2)
  uint32_t recv_buffer_bytes = 8u << 20;               ///< SO_RCVBUF(FORCE) request per socket
  uint32_t send_buffer_bytes = 8u << 20;               ///< SO_SNDBUF request per socket
  uint32_t recv_batch = 256;                           ///< datagrams per recvmmsg
  uint32_t max_frame_bytes = 1024;                     ///< longer datagrams are dropped (counted)
  uint32_t max_sessions = 100000;                      ///< sessions held, over every shard
  uint32_t max_pending_per_session = 8;                ///< QoS 1/2 messages in flight per session
  uint32_t max_topics_per_session = 8;                 ///< registered topic ids per session
  uint32_t max_sleep_buffer_bytes = 512;               ///< replies buffered per sleeping client
  uint32_t max_sleeping_clients = 4096;  ///< sleeping clients with buffered replies, gateway
  int64_t max_keep_alive_ns = 3600 * config::kSec;  ///< CONNECT durations are clamped to it
  int64_t max_sleep_ns = 18 * 3600 * config::kSec;  ///< DISCONNECT sleep durations likewise
  uint32_t connect_rate = 2000;                     ///< CONNECTs admitted per second, gateway-wide
  uint32_t connect_burst = 2000;      ///< CONNECTs admitted at once after a quiet spell
  bool allow_takeover = false;        ///< a client id may move to another address
  uint32_t max_will_bytes = 256;      ///< a will's topic name plus message, at most (§6.3)
  uint32_t max_wills = 10000;         ///< wills held at once, over every shard
  std::string forwarders;             ///< addresses that may send encapsulated messages (§5.5)
  bool allow_all_forwarders = false;  ///< any address may (off: only `forwarders`)
  uint32_t gateway_id = 1;            ///< GwId in GWINFO and ADVERTISE (0..255)
  int64_t advertise_interval_ns = 0;  ///< ADVERTISE period (0: never)
  std::string advertise_to;           ///< "host:port" ADVERTISE is sent to ("": nowhere)
};

/// The `[protocols.mqtt_sn]` table.
config::ConfigTable config_table();

}  // namespace tianhe::protocols::mqtt_sn
