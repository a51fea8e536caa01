// The Modbus poller's counters on one shard (tianhe_protocol_modbus_*), declared once here and
// collected by modbus_protocol.cpp. Written by the shard thread only; summed across shards at
// scrape time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/counter.h"
#include "protocols/modbus/modbus_codec.h"
#include "runtime/pipeline_stats.h"

namespace tianhe::protocols::modbus {

/// Why a connection was closed (a metric label; see disconnect_name()).
enum class Disconnect : uint8_t {
  kConnectFailed,   ///< the TCP connect was refused or failed
  kConnectTimeout,  ///< not established within connect_timeout
  kPeerClosed,      ///< the slave closed the connection
  kReadError,       ///< recv failed (reset by peer)
  kWriteError,      ///< a request could not be sent whole
  kTimeout,         ///< a response did not arrive within request_timeout
  kMalformed,       ///< a malformed response (the stream is no longer trusted)
  kNoSocket,        ///< socket() failed (descriptor limit)
  kCount,
};

/// The snake_case name of a disconnect reason ("connect_failed", ...).
std::string_view disconnect_name(Disconnect d) noexcept;

/// Why a decoded value was left out of its report.
enum class DecodeDrop : uint8_t { kNotFinite, kOutOfRange, kCount };

/// The counters of the Modbus poller on one shard.
struct ModbusStats {
  runtime::PipelineStats pipeline;  ///< received, accepted, rejected: shared by every protocol
  core::Counter requests[4];        ///< read requests sent, by function code - 1
  core::Counter responses[4];       ///< normal responses, by function code - 1
  core::Counter exceptions[kExceptionSlots];  ///< exception responses, by exception_slot()
  core::Counter malformed[static_cast<size_t>(ResponseStatus::kCount)];  ///< by reason
  core::Counter timeouts;    ///< requests not answered in time
  core::Counter connects;    ///< connection attempts
  core::Counter reconnects;  ///< attempts after a device's first
  core::Counter disconnects[static_cast<size_t>(Disconnect::kCount)];
  core::Counter cycles_started;
  core::Counter cycles_completed;    ///< every block answered (normally or by an exception)
  core::Counter cycles_aborted;      ///< a connection lost mid-cycle: no report
  core::Counter cycles_skipped;      ///< cycles that could not start within their interval
  core::Counter exception_backoffs;  ///< cycles delayed because the last drew exceptions
  core::Counter decode_drops[static_cast<size_t>(DecodeDrop::kCount)];
  core::Counter reports_durable;  ///< reports whose log append became durable
  core::Counter bytes_in;
  core::Counter bytes_out;
  core::Counter devices;                 ///< gauge: devices this shard polls
  core::Counter devices_up;              ///< gauge: connected and answering
  core::Log2Histogram cycle_lag;         ///< how late a cycle started after its scheduled time
  core::Log2Histogram response_latency;  ///< request sent to its response received
};

}  // namespace tianhe::protocols::modbus
