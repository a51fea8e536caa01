// The MQTT client's counters on one shard (tianhe_protocol_mqtt_*), declared once here and
// collected by mqtt_protocol.cpp. Written by the shard thread only; summed across shards at
// scrape time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/counter.h"
#include "protocols/mqtt/mqtt_packet.h"
#include "runtime/pipeline_stats.h"

namespace tianhe::protocols::mqtt {

/// Why a well-formed PUBLISH did not become a report, or a connection ended.
enum class Reject : uint8_t {
  kUnknownTopic,    ///< a topic that does not follow `topics` (acknowledged, dropped)
  kTenantMismatch,  ///< a topic's {tenant} is not its device's tenant (acknowledged, dropped)
  kCodecFailure,    ///< the codec could not decode the payload (dead-lettered, acknowledged)
  kQos2,            ///< a QoS 2 PUBLISH to a QoS <= 1 subscription (protocol error: closed)
  kDuplicate,       ///< a redelivery (DUP) of a message already in the log: acknowledged only
  kLogBusy,         ///< the log refused the batch: not acknowledged, reconnected (redelivery)
  kAckQueueFull,    ///< no room for the PUBACK: reconnected so the broker redelivers
  kStaleAck,        ///< a PUBACK due on a connection that has since closed (redelivered)
  kCount,
};

/// The snake_case name of a reject reason ("unknown_topic", ...).
std::string_view reject_reason_name(Reject r) noexcept;

/// Why a connection to the broker ended (or an attempt failed).
enum class ConnEnd : uint8_t {
  kConnectFailed,    ///< TCP / unix connect refused or failed
  kTimeout,          ///< connect, CONNACK or SUBACK took longer than connect_timeout
  kRefused,          ///< CONNACK with a refusal code
  kSubscribeFailed,  ///< SUBACK with a failure code
  kClosed,           ///< the broker closed the connection (or a read/write failed)
  kDisconnect,       ///< the broker sent DISCONNECT (MQTT 5)
  kMalformed,        ///< the broker sent a packet the parser refused
  kKeepAlive,        ///< no packet from the broker for 1.5 keep-alives
  kPushBack,         ///< Tianhe closed it: the log or the ack queue refused (redelivery)
  kProtocol,         ///< a well-formed packet out of order (a PUBLISH before CONNACK, QoS 2)
  kCount,
};

/// The snake_case name of a connection end ("connect_failed", ...).
std::string_view conn_end_name(ConnEnd e) noexcept;

/// The state of a shard's broker connection (the gauge tianhe_protocol_mqtt_broker_state).
enum class BrokerState : uint8_t { kIdle = 0, kWaiting, kConnecting, kSubscribing, kConnected };

/// The counters of the MQTT client on one shard.
struct MqttStats {
  runtime::PipelineStats pipeline;  ///< received, accepted, rejected: shared by every protocol
  core::Counter packets_in[16];     ///< well-formed packets received, by type
  core::Counter packets_out[16];    ///< packets sent, by type
  core::Counter messages[2];        ///< PUBLISH received, by QoS (0, 1)
  core::Counter dropped[kDropReasonCount];  ///< malformed packets (connection closed), by reason
  core::Counter rejects[static_cast<size_t>(Reject::kCount)];
  core::Counter conn_ends[static_cast<size_t>(ConnEnd::kCount)];
  core::Counter connects;         ///< CONNECT sent (attempts that reached the broker)
  core::Counter connected;        ///< sessions established (SUBACK granted)
  core::Counter session_present;  ///< CONNACKs that resumed a stored session
  core::Counter reconnects;       ///< connections lost after being established
  core::Counter state;            ///< gauge: BrokerState
  core::Counter bytes_in;
  core::Counter bytes_out;
  core::Counter pending_acks;         ///< gauge: PUBACKs waiting for the log
  core::Counter inflight_limit;       ///< gauge: the Receive Maximum in force
  core::Log2Histogram puback_delay;   ///< PUBLISH received to PUBACK written
  core::Log2Histogram batch_latency;  ///< read to the batch's log append done
};

}  // namespace tianhe::protocols::mqtt
