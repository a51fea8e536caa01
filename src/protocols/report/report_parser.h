// The report protocol's datagram parser: a hand-written, strict, bounded protobuf wire decoder
// for tianhe.v1.Envelope (proto/tianhe/v1/report.proto). Pure (bytes in, reports out), noexcept,
// no heap allocation: metric names and string values are views into the datagram bytes, so the
// datagram must outlive the batch's use of them. Safe on untrusted input (fuzzed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/report.h"
#include "core/trace_context.h"

namespace tianhe::protocols::report {

/// The report protocol's id, stored with each of its reports (see core::Protocol).
inline constexpr core::Protocol kProtocolId = static_cast<core::Protocol>(1);

/// Outcome of parsing one datagram.
enum class ParseStatus : uint8_t {
  kComplete,   ///< every report of the datagram was appended
  kMalformed,  ///< the datagram breaks the protocol or a limit; nothing was appended
  kBatchFull,  ///< the output batch has no room; nothing was appended: flush, then parse again
};

/// Why a datagram was dropped (a metric label; see drop_reason_name()).
enum class DropReason : uint8_t {
  kNone,              ///< not dropped
  kEmpty,             ///< zero-length datagram
  kOversized,         ///< longer than ParserLimits::max_datagram_bytes
  kTruncated,         ///< a varint, fixed field or length-delimited field runs past its end
  kBadVarint,         ///< a varint longer than 10 bytes or overflowing its field's type
  kBadTag,            ///< field number 0 or an invalid wire type (6, 7)
  kBadWireType,       ///< a known field with the wrong wire type
  kUnknownField,      ///< a field number this version does not define (rejected, never stored)
  kBadVersion,        ///< Envelope.version other than 0 or 1
  kNoReports,         ///< an envelope without reports
  kTooManyReports,    ///< more than ParserLimits::max_reports reports
  kMissingDeviceId,   ///< a report whose device_id is 0 or absent
  kMissingKey,        ///< a metric with neither name nor id, or with an empty name
  kConflictingKey,    ///< a metric with both a name and an id
  kMissingValue,      ///< a metric without a value
  kConflictingValue,  ///< a metric with two different value kinds
  kTooManyMetrics,    ///< more than ParserLimits::max_metrics_per_report metrics in a report
  kNameTooLong,       ///< a metric name longer than ParserLimits::max_name_bytes
  kStringTooLong,     ///< a string value longer than ParserLimits::max_string_bytes
  kBadUtf8,           ///< a metric name or string value that is not valid UTF-8
  kBatchFull,         ///< the output batch has no room (not the sender's fault)
};

/// Number of DropReason values (to size per-reason counter arrays).
inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kBatchFull) + 1;

/// The snake_case name of a drop reason, used as a metric label ("empty", "oversized", ...).
std::string_view drop_reason_name(DropReason reason) noexcept;

/// What parse_datagram() did with one datagram.
struct ParseResult {
  ParseStatus status = ParseStatus::kComplete;  ///< complete, malformed or batch full
  DropReason reason = DropReason::kNone;        ///< why it was dropped; kNone when complete
  uint32_t reports = 0;                         ///< reports appended (0 unless complete)
  uint32_t bad_traceparents = 0;  ///< invalid traceparents ignored (reports kept, no trace)
};

/// Bounds on one datagram. Immutable once built from config; shared by all shards.
struct ParserLimits {
  uint32_t max_datagram_bytes = 65507;   ///< largest UDP payload over IPv4
  uint32_t max_reports = 256;            ///< reports per datagram
  uint32_t max_metrics_per_report = 64;  ///< metrics per report (at most 65535)
  uint32_t max_name_bytes = 64;          ///< bytes of a metric name
  uint32_t max_string_bytes = 1024;      ///< bytes of a string value
};

/// Parses one datagram and appends its reports to `out` (protocol kReport, peer = `peer`,
/// received_ns = `received_ns`); metric names and strings view into `bytes`. All or nothing: on
/// kMalformed or kBatchFull nothing of this datagram stays in `out`.
ParseResult parse_datagram(std::span<const uint8_t> bytes, uint32_t peer, int64_t received_ns,
                           const ParserLimits& limits, core::ReportBatch& out) noexcept;

/// Parses one Report message (proto/tianhe/v1/report.proto) carried as a payload by another
/// transport (an MQTT publish) into `r`, the last report of `out` (no metrics yet): its metrics
/// are appended and
/// seq, time_ns, traceparent, ack and device_id (when the payload has one) set. All or nothing:
/// on an error `r` and `out` are as they were. The report_protobuf codec is built on it.
DropReason parse_report_message(std::span<const uint8_t> bytes, const ParserLimits& limits,
                                core::ReportBatch& out, core::Report& r) noexcept;

// The W3C traceparent helpers live in core (every protocol that carries one uses them).
using core::format_traceparent;
using core::kTraceparentLength;
using core::parse_traceparent;

/// True when `text` is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
bool is_valid_utf8(std::string_view text) noexcept;

}  // namespace tianhe::protocols::report
