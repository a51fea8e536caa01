// The MQTT-SN gateway's counters on one shard (tianhe_protocol_mqtt_sn_*), declared once here and
// collected by mqtt_sn_protocol.cpp. Written by the shard thread only; summed across shards at
// scrape time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/counter.h"
#include "protocols/mqtt_sn/mqtt_sn_parser.h"
#include "runtime/pipeline_stats.h"

namespace tianhe::protocols::mqtt_sn {

/// Why a well-formed message was refused or ignored (a metric label; see reject_reason_name()).
enum class Reject : uint8_t {
  kCongestion,        ///< CONNECT beyond connect_rate: CONNACK "rejected: congestion"
  kSessionsFull,      ///< CONNECT with max_sessions held: "rejected: congestion"
  kTakeoverRefused,   ///< CONNECT with a client id held at another address (on any shard)
  kSessionless,       ///< a message that needs a session from an address without one
  kUnexpected,        ///< a message the session's state does not expect (ignored)
  kUnknownTopic,      ///< PUBLISH to a topic id never registered: "invalid topic ID"
  kTopicMismatch,     ///< a topic name that does not follow the `topics` template
  kTenantMismatch,    ///< a topic's {tenant} is not its device's tenant
  kNoDevice,          ///< no device could be named (no {device}, no digits in the client id)
  kTopicsFull,        ///< REGISTER beyond max_topics_per_session
  kPendingFull,       ///< QoS 1/2 PUBLISH beyond max_pending_per_session
  kQosMinus1Topic,    ///< QoS -1 with a normal topic id (§6.8: predefined or short only)
  kSleepBufferFull,   ///< a reply for a sleeping client beyond max_sleep_buffer_bytes (dropped)
  kNoSleepBuffer,     ///< max_sleeping_clients hold buffers already (dropped)
  kReplyQueueFull,    ///< the shard's reply queue was full (dropped; the client retries)
  kBatchFull,         ///< no room in the receive batch for the report (retry)
  kWillTooLarge,      ///< a will beyond max_will_bytes: CONNACK / WILL*RESP "rejected"
  kWillsFull,         ///< max_wills are held: CONNACK / WILL*RESP "rejected: congestion"
  kForwarderRefused,  ///< an encapsulated message (§5.5) from an address not in `forwarders`
  kTakeoverBusy,      ///< a takeover from another shard could not be done now: "congestion"
  kCount,
};

/// The snake_case name of a reject reason ("congestion", "sessions_full", ...).
std::string_view reject_reason_name(Reject r) noexcept;

/// Why a session ended. A will is published for kKeepAlive, kSleepLapsed, kTakeover and
/// kReplaced (the session was lost, not closed: MQTT-SN v1.2 §6.3, MQTT 3.1.1 §3.1.2.5).
enum class SessionEnd : uint8_t {
  kDisconnect,   ///< DISCONNECT without a duration
  kKeepAlive,    ///< silent for 1.5 keep-alive periods
  kSleepLapsed,  ///< a sleeper silent for 1.5 sleep durations
  kTakeover,     ///< its client id CONNECTed from another address (allow_takeover)
  kReplaced,     ///< another client id CONNECTed from its address
  kRefused,      ///< its CONNECT's will handshake was refused (CONNACK "rejected")
  kCount
};

/// The snake_case name of a session end ("disconnect", "keep_alive", ...).
std::string_view session_end_name(SessionEnd e) noexcept;

/// Why a will was not published (a metric label; see will_discard_name()).
enum class WillDiscard : uint8_t {
  kDisconnect,  ///< DISCONNECT without a duration (§6.12: a clean end)
  kReplaced,    ///< a new CONNECT of the same client on its session (with or without a will)
  kDeleted,     ///< WILLTOPICUPD with an empty topic (§6.4)
  kUnresolved,  ///< its topic names no device (the `topics` template, the registry's tenant)
  kCount
};

/// The snake_case name of a will discard reason ("disconnect", "replaced", ...).
std::string_view will_discard_name(WillDiscard d) noexcept;

/// Message types as counter indexes (MsgType values are below 0x1E; 0xFE counts as 0x1F).
inline constexpr size_t kTypeSlots = 32;
/// The counter index of a message type.
inline constexpr size_t type_slot(MsgType t) noexcept {
  return static_cast<uint8_t>(t) < 0x1F ? static_cast<uint8_t>(t) : 0x1F;
}

/// The counters of the MQTT-SN gateway on one shard.
struct MqttSnStats {
  runtime::PipelineStats pipeline;       ///< received, accepted, rejected: shared by every protocol
  core::Counter frames_in[kTypeSlots];   ///< well-formed messages received, by type
  core::Counter frames_out[kTypeSlots];  ///< messages sent, by type
  core::Counter datagrams_received;      ///< tianhe_datagrams_received_total{protocol="mqtt_sn"}
  core::Counter recv_batches;            ///< receive calls that returned datagrams
  core::Log2Histogram batch_latency;     ///< receive to the batch's log append done
  core::Counter bytes_in;
  core::Counter bytes_out;
  core::Counter frames_dropped[kDropReasonCount];  ///< malformed datagrams, by DropReason
  core::Counter rejects[static_cast<size_t>(Reject::kCount)];
  core::Counter sessions_ended[static_cast<size_t>(SessionEnd::kCount)];
  core::Counter sessions_created;
  core::Counter sessions;            ///< gauge
  core::Counter sleeping;            ///< gauge: sessions asleep
  core::Counter keep_alive_clamped;  ///< CONNECTs whose duration was held to max_keep_alive
  core::Counter duplicates;          ///< QoS 2 PUBLISHes whose message id was held (not delivered)
  core::Counter wills;               ///< will handshakes completed (WILLMSG received)
  core::Counter wills_published;     ///< wills that became reports (a session lost)
  core::Counter wills_discarded[static_cast<size_t>(WillDiscard::kCount)];
  core::Counter wills_held;       ///< gauge: wills kept
  core::Counter dead_lettered;    ///< payloads the codec failed on (acknowledged: kept)
  core::Counter sleep_buffered;   ///< replies held for sleeping clients
  core::Counter sleep_delivered;  ///< held replies sent on wake
  core::Counter send_errors;
  core::Counter encapsulated_in;    ///< encapsulated messages accepted from forwarders (§5.5)
  core::Counter encapsulated_out;   ///< replies sent encapsulated to forwarders
  core::Counter directory_full;     ///< sessions kept out of the full cross-shard directory
  core::Counter takeover_requests;  ///< CONNECTs that asked another shard for their client id
  core::Counter letters_dropped;    ///< cross-shard letters not sent: the ring was full
  core::Counter pending_replies;    ///< gauge
  core::Counter kernel_drops;       ///< gauge: the socket's SO_RXQ_OVFL count
  core::Counter recv_buffer_bytes;  ///< gauge: receive buffer granted by the kernel
  core::Log2Histogram ack_latency;  ///< PUBLISH received to PUBACK / PUBREC sent
};

}  // namespace tianhe::protocols::mqtt_sn
