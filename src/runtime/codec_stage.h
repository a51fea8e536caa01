// The codec stage: protocols that carry opaque payloads hand each one to the codec its device's
// model names (`[[models]] codec = "<name>"`); a payload the codec cannot
// decode is dead-lettered (one JSON line with the raw bytes in hex and the reason, under
// <data_dir>/dead-letter/codecs/) and counted per codec, reason and device, and the shard goes on.
// One CodecStage per gateway (DataPlane builds it; GatewayContext::codecs); one PayloadDecoder per
// protocol ingest, owned and called by its shard thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/counter.h"
#include "core/metrics.h"
#include "core/report.h"
#include "core/result.h"
#include "pipeline/codec.h"
#include "pipeline/registry.h"
#include "runtime/extensions.h"
#include "runtime/tracing.h"

namespace tianhe::runtime {

class CodecStage;

/// What a protocol learns from PayloadDecoder::decode().
enum class PayloadOutcome : uint8_t {
  kDecoded,        ///< the report holds the payload's metrics: validate and append it
  kUnknownDevice,  ///< no model to decode with: leave the report (no metrics) for the
                   ///< validator, which rejects it and counts it as an unknown device
  kDeadLettered,   ///< the codec failed: the payload is in the dead-letter file and counted;
                   ///< pop the report (the sender may be told it was accepted: it is kept)
};

/// Per-codec counters of one shard (written by the shard thread, read at scrape).
struct CodecCounters {
  core::Counter decoded;
  std::array<core::Counter, static_cast<size_t>(pipeline::DecodeStatus::kCount)> failed;
  core::Counter dead_letter_lost;  ///< failures the dead-letter file had no room for
  core::Log2Histogram decode_time;
};

/// One codec's numbers summed over every shard and protocol (self-diagnosis, scrape thread).
struct CodecUsage {
  std::string codec;
  uint64_t calls = 0;     ///< decode calls, decoded or failed
  uint64_t failures = 0;  ///< calls that failed (dead-lettered)
  std::array<uint64_t, core::Log2Histogram::kBuckets> time_buckets{};  ///< of decode_time
  uint64_t time_ns = 0;  ///< decode time summed: the codec's CPU time on the shard threads
};

/// Failures counted by device for one decoder: a fixed table of the first devices that fail
/// (written by its shard thread, read at scrape), the rest together.
struct CodecDeviceCounts {
  static constexpr size_t kTracked = 64;
  struct Entry {
    std::atomic<uint64_t> device_id{0};  ///< 0: free
    core::Counter failures;
  };
  std::string protocol;
  std::array<Entry, kTracked> top;
  core::Counter other;
};

/// One shard's codec stage for one protocol. Shard thread only (except what collect() reads).
class PayloadDecoder {
 public:
  ~PayloadDecoder();
  PayloadDecoder(const PayloadDecoder&) = delete;
  PayloadDecoder& operator=(const PayloadDecoder&) = delete;

  /// Decodes `payload` into report `r` (the batch's last report; r.device_id set) with the
  /// codec of the device's model (of the default model when unknown devices are registered on
  /// arrival; the protocol's default codec when the model names none). On failure r's metrics
  /// are removed and the payload dead-lettered. noexcept, no allocation in steady state.
  PayloadOutcome decode(std::span<const uint8_t> payload, const pipeline::CodecContext& context,
                        core::ReportBatch& batch, core::Report& r) noexcept;
  /// The batch the decoded metrics went into was appended or dropped: the codecs may reuse
  /// their text storage. Call after every validate_and_append() (or batch.clear()).
  void batch_done() noexcept;
  /// Writes what decode() dead-lettered to the file (one write, no fsync: a crash of the
  /// process keeps it; a power loss may not). Called by decode() when its buffer fills and by
  /// batch_done(); a protocol need not call it.
  void flush_dead_letters() noexcept;

 private:
  friend class CodecStage;
  PayloadDecoder(CodecStage& stage, uint32_t shard, std::string protocol);

  struct Slot {  ///< one codec this decoder uses
    std::string name;
    std::unique_ptr<pipeline::Codec> codec;
    CodecCounters* counters = nullptr;  ///< owned by the stage
  };
  void dead_letter(const Slot& slot, std::span<const uint8_t> payload,
                   const pipeline::CodecContext& context, pipeline::DecodeStatus status) noexcept;
  void count_device(uint64_t device_id) noexcept;

  CodecStage& stage_;
  uint32_t shard_;
  std::string protocol_;
  std::vector<Slot> slots_;
  std::vector<int32_t> slot_of_model_;    ///< model index -> slot
  CodecDeviceCounts* devices_ = nullptr;  ///< owned by the stage
  int32_t default_slot_ = -1;             ///< the protocol's default codec
  std::string pending_;                   ///< dead-letter lines not yet written
  std::string path_;
  int fd_ = -1;
  uint64_t file_bytes_ = 0;
};

/// The gateway's codecs: creates each shard's decoders, owns their counters and serves them.
class CodecStage {
 public:
  /// Checks that every codec a model names is registered, or is a file a registered codec
  /// loads (CodecSpec::file_extension; loaded once here to report its errors); an error names
  /// the model and the problem. `max_dead_letter_bytes` bounds each decoder's file; `limits`
  /// are the budgets of user codecs (the [codecs] table).
  static Result<std::shared_ptr<CodecStage>> create(
      std::string data_dir, std::shared_ptr<const pipeline::Registry> registry,
      const Extensions& extensions, uint64_t max_dead_letter_bytes = 256ull << 20,
      const CodecLimits& limits = {});

  /// A decoder for protocol `protocol` (its registered name) on shard `shard`, using codec
  /// `default_codec` for models that name none. Main thread, before the shards start; an error
  /// names an unknown default codec.
  Result<std::unique_ptr<PayloadDecoder>> decoder(uint32_t shard, std::string_view protocol,
                                                  std::string_view default_codec);

  /// Fates and spans of dead-lettered payloads go to `tracing` (main thread, before decoders
  /// are made; null: none).
  void set_tracing(std::shared_ptr<Tracing> tracing) { tracing_ = std::move(tracing); }
  /// tianhe_codec_* samples, every decoder's (scrape thread).
  void collect(core::PromWriter& w) const;
  /// Every codec in use, summed over shards and protocols, by codec name (scrape thread).
  std::vector<CodecUsage> usage() const;
  /// Payloads dead-lettered so far, over every decoder.
  uint64_t dead_lettered() const noexcept;
  /// The directory the dead-letter files are in.
  std::string dead_letter_dir() const;

 private:
  friend class PayloadDecoder;
  CodecStage() = default;
  /// The counters of codec `codec` for `protocol` on `shard`, made on first use (main thread).
  CodecCounters* counters(std::string_view codec, std::string_view protocol, uint32_t shard);

  struct Counters {
    std::string codec, protocol;
    uint32_t shard = 0;
    CodecCounters c;
  };

  std::string data_dir_;
  std::shared_ptr<const pipeline::Registry> registry_;
  const Extensions* extensions_ = nullptr;
  uint64_t max_dead_letter_bytes_ = 0;
  CodecLimits limits_;
  std::shared_ptr<Tracing> tracing_;
  mutable std::mutex mu_;  ///< guards the two lists below (grown on the main thread only)
  std::vector<std::unique_ptr<Counters>> counters_;
  std::vector<std::unique_ptr<CodecDeviceCounts>> devices_;
  std::atomic<uint64_t> write_errors_{0};  ///< dead-letter opens or writes that failed
};

}  // namespace tianhe::runtime
