// Encoders for the report protocol (proto/tianhe/v1/report.proto): Envelope datagrams (used by
// `tianhe simulate` and tests) and Ack datagrams (sent by the gateway), plus a strict Ack decoder
// (devices, simulator, tests). All write into caller buffers: no heap allocation, noexcept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/report.h"
#include "protocols/report/report_parser.h"

namespace tianhe::protocols::report {

/// One metric to encode: a name, or (when `name` is empty) the numeric `id`, and a value.
struct MetricIn {
  std::string_view name;  ///< metric name; empty to send `id` instead
  uint32_t id = 0;        ///< metric id, sent when `name` is empty
  core::Value value;      ///< the value (kString uses value.str)
};

/// Builds one Envelope datagram (version 1) in a caller-owned buffer, report by report. Not
/// thread-safe; reusable with reset(). The buffer must outlive the encoder.
class EnvelopeEncoder {
 public:
  /// Encodes into `buf`; writes the version field at once (if `buf` has 2 bytes).
  explicit EnvelopeEncoder(std::span<uint8_t> buf) noexcept;

  /// Appends one report; false (and nothing written) when it does not fit in the buffer. Values
  /// are encoded as given: the encoder does not apply the parser's limits or rules.
  bool add_report(uint64_t device_id, uint32_t seq, int64_t time_ns, bool ack,
                  std::span<const MetricIn> metrics, std::string_view traceparent = {}) noexcept;

  /// Bytes add_report() would append for these arguments (to plan datagrams).
  static size_t report_bytes(uint64_t device_id, uint32_t seq, int64_t time_ns, bool ack,
                             std::span<const MetricIn> metrics,
                             std::string_view traceparent = {}) noexcept;

  /// Bytes written so far (the datagram length).
  size_t size() const noexcept { return size_; }
  /// Reports appended since construction or the last reset().
  uint32_t report_count() const noexcept { return reports_; }
  /// The datagram so far.
  std::span<const uint8_t> bytes() const noexcept { return buf_.first(size_); }
  /// Starts a new datagram in the same buffer.
  void reset() noexcept;

 private:
  std::span<uint8_t> buf_;
  size_t size_ = 0;
  uint32_t reports_ = 0;
};

/// Outcome of one report, as carried in an Ack (AckEntry.Status).
enum class AckStatus : uint8_t { kOk = 0, kRejected = 1, kBusy = 2 };

/// One acknowledgement: the report (device_id, seq), its outcome and, for kRejected, a reason.
struct AckEntry {
  uint64_t device_id = 0;             ///< Report.device_id
  uint32_t seq = 0;                   ///< Report.seq
  AckStatus status = AckStatus::kOk;  ///< outcome
  std::string_view reason;            ///< short reason (e.g. a drop reason name); may be empty
};

/// Upper bound of the bytes one entry with a `reason_len`-byte reason adds to an Ack.
size_t max_ack_entry_bytes(size_t reason_len) noexcept;

/// Exact bytes encode_ack() writes for `acks`.
size_t ack_bytes(std::span<const AckEntry> acks) noexcept;

/// Encodes an Ack datagram into `out`; returns its length, or 0 if it does not fit (or `acks` is
/// empty: an empty Ack is never worth sending).
size_t encode_ack(std::span<const AckEntry> acks, std::span<uint8_t> out) noexcept;

/// Decodes an Ack datagram strictly (empty input, unknown fields, bad wire types, unknown
/// statuses and invalid UTF-8 are kMalformed) into `out`, setting `count`; reasons view into
/// `bytes`. kBatchFull when it has more entries than `out` holds. `count` is 0 unless kComplete.
ParseStatus decode_ack(std::span<const uint8_t> bytes, std::span<AckEntry> out,
                       size_t& count) noexcept;

}  // namespace tianhe::protocols::report
