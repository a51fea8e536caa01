// The binary form of reports inside a shard-log record (and of a report's metrics in the store).
// Little-endian, versioned, bounded; decoding untrusted bytes never reads out of bounds.
//
//   payload := u8 version(=1) u16 count report*count
//   report  := u64 device_id u32 tenant u32 seq i64 device_time_ns i64 received_ns
//              u8 protocol u8 flags(bit0 ack_requested, bit1 trace,
//              bit2 traced) [trace_id(16) span_id(8) u8]
//              metrics
//   metrics := u8 count metric*count
//   metric  := u8 name_len name[name_len] [u32 id when name_len == 0] u8 type value
//   value   := f64 | i64 (8 bytes) | u8 bool | u16 len bytes[len] (string)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/report.h"

namespace tianhe::core {

/// Version byte written at the start of every payload.
inline constexpr uint8_t kReportCodecVersion = 1;
/// Bounds enforced by encoder and decoder.
inline constexpr size_t kMaxMetricsPerReport = 255;
inline constexpr size_t kMaxMetricNameBytes = 255;
inline constexpr size_t kMaxStringValueBytes = 65535;

/// Outcome of decoding a payload.
enum class RecordStatus : uint8_t { kOk, kMalformed, kBatchFull };

/// Bytes that encode_report() will write for report `r` of `batch`.
size_t encoded_report_size(const ReportBatch& batch, const Report& r) noexcept;

/// Writes the payload header for `count` reports; returns bytes written (3) or 0 if no room.
size_t encode_payload_header(uint16_t count, std::span<uint8_t> out) noexcept;

/// Encodes report `r` (with its metrics) at `out`; returns bytes written, or 0 if it does not fit
/// or breaks a bound above (more than 255 metrics, a longer name or string).
size_t encode_report(const ReportBatch& batch, const Report& r, std::span<uint8_t> out) noexcept;

/// Decodes a whole payload, appending its reports to `out` (strings and raw_metrics point into
/// `payload`, which must outlive the batch's use). On kMalformed or kBatchFull the reports of
/// this payload already appended are removed again.
RecordStatus decode_payload(std::span<const uint8_t> payload, ReportBatch& out) noexcept;

/// Decodes an encoded metrics section (Report::raw_metrics) into `out`'s last report.
RecordStatus decode_metrics(std::span<const uint8_t> raw, ReportBatch& out, Report& r) noexcept;

}  // namespace tianhe::core
