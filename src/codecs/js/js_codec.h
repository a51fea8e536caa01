// The JavaScript payload codec ("js"): a device model names a `.js` file
// (`codec = "codecs/acme-th.js"`) holding a LoRa Alliance TS013 payload codec
// (`decodeUplink(input)` returning {data, warnings, errors}) or one of the legacy forms many
// published codecs use when `decodeUplink` is absent: `Decoder(bytes, port)` (The Things Network
// v2) and `Decode(fPort, bytes, variables)` (ChirpStack v3). `data` becomes the report's metrics,
// nested objects flattened with dotted names as the json codec does. Each call runs within a time
// budget, a memory budget and an output cap; a call that breaks one fails with its own status
// (the codec stage dead-letters the payload) and the shard goes on. README.md has the contract.
// One JsCodec per shard: made on the main thread (which compiles the file once to report its
// errors), bound on first decode() to the engine of the thread that calls it (js_engine.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "codecs/js/js_engine.h"
#include "core/counter.h"
#include "core/result.h"
#include "pipeline/codec.h"

namespace tianhe::codecs::js {

/// The budgets and limits of one codec (the [codecs] table gives the first three).
struct JsCodecLimits {
  std::chrono::nanoseconds time_budget = std::chrono::milliseconds(10);  ///< per call
  uint64_t memory_budget = 16u << 20;     ///< GC heap bytes of the codec's realm
  uint64_t max_output_bytes = 64u << 10;  ///< names and string values of one result
  uint32_t max_metrics = 64;              ///< metrics of one result (a model's limit)
  uint32_t max_name_bytes = 64;           ///< a flattened name
  uint32_t max_string_bytes = 1024;       ///< a string value
  uint32_t max_payload_bytes = 65536;     ///< a payload (a UDP datagram's maximum)
  size_t text_bytes = 256u << 10;         ///< name and string storage per batch
  /// How often decode() looks whether the file changed (0: never; hot reload).
  std::chrono::nanoseconds reload_check = std::chrono::seconds(1);
};

/// Counters of one codec on one shard (written by its thread, read at scrape).
struct JsCodecStats {
  core::Counter calls;                  ///< calls into the script (decode and tools)
  core::Counter timeouts;               ///< stopped by the time budget
  core::Counter out_of_memory;          ///< stopped by the memory budget or the engine's OOM
  core::Counter thrown;                 ///< the script threw (including too much recursion)
  core::Counter codec_errors;           ///< decodeUplink returned errors, or no data object
  core::Counter output_too_large;       ///< a result over max_output_bytes
  core::Counter warnings;               ///< warnings decodeUplink returned (the report is kept)
  core::Counter cpu_ns;                 ///< time spent in the script (the shard thread's CPU)
  core::Counter reloads;                ///< changed files compiled and swapped in
  core::Counter reload_failures;        ///< changed files that failed to compile (old one kept)
  std::atomic<uint64_t> heap_bytes{0};  ///< the realm's GC heap after the last call
};

/// A JavaScript codec (see the file comment). decode() runs on one thread only.
class JsCodec final : public pipeline::Codec {
 public:
  /// Reads and compiles `path` on the calling thread (to report its errors: the file, line
  /// and message); the shard thread compiles it again on first use. `name` labels it.
  static Result<std::unique_ptr<JsCodec>> from_file(const std::string& path,
                                                    JsCodecLimits limits = {});
  /// The same from source text (tests, benchmarks); `name` stands for the file in errors.
  static Result<std::unique_ptr<JsCodec>> from_source(std::string name, std::string source,
                                                      JsCodecLimits limits = {});
  ~JsCodec() override;
  JsCodec(const JsCodec&) = delete;
  JsCodec& operator=(const JsCodec&) = delete;

  /// Calls the script's uplink decoder and appends `data` as metrics (all or nothing).
  pipeline::DecodeStatus decode(std::span<const uint8_t> payload,
                                const pipeline::CodecContext& context, core::ReportBatch& batch,
                                core::Report& r) noexcept override;
  /// Reuses the text storage of the metrics decode() wrote.
  void batch_done() noexcept override;

  /// The outcome of call_json().
  struct JsonResult {
    pipeline::DecodeStatus status = pipeline::DecodeStatus::kOk;
    std::string json;   ///< the entry's result as JSON ({data, warnings, errors}, ...)
    std::string error;  ///< why it failed, in words
  };
  /// For the tools (control plane): calls `entry` ("decodeUplink", "encodeDownlink" or
  /// "decodeDownlink"; a legacy form stands in for decodeUplink) with `input_json` as its
  /// input (recvTime, when given, in ISO 8601 or ms) within the same budgets.
  JsonResult call_json(std::string_view entry, std::string_view input_json);

  /// Its counters.
  const JsCodecStats& stats() const noexcept { return *stats_; }
  /// The same, kept alive for the scrape thread after the codec goes.
  std::shared_ptr<const JsCodecStats> shared_stats() const noexcept { return stats_; }
  /// Why the last call failed (thrown message, budget), or the last reload's error; "" if none.
  std::string_view last_error() const noexcept { return last_error_; }
  /// The name it was made with (the file's path).
  const std::string& name() const noexcept { return name_; }
  /// Which contract form the script uses: "decodeUplink", "Decoder" or "Decode" (once bound).
  std::string_view form() const noexcept;

 private:
  JsCodec(std::string name, std::string source, JsCodecLimits limits);
  /// Compiles source_ into a new realm of the calling thread's engine; "" or the error.
  std::string bind(std::string_view source);
  void check_reload() noexcept;
  pipeline::DecodeStatus finish_call(bool ok) noexcept;
  void set_error(std::string_view text) noexcept;

  std::string name_;
  std::string path_;    ///< the file, for hot reload ("" for from_source)
  std::string source_;  ///< the text bound last
  JsCodecLimits limits_;
  std::shared_ptr<JsEngine> engine_;
  std::shared_ptr<RealmHandle> realm_;
  int mode_ = 0;            ///< 1 decodeUplink, 2 Decoder, 3 Decode
  std::string text_;        ///< names and strings of the current batch
  std::string last_error_;  ///< capacity reserved: set without allocating
  std::shared_ptr<JsCodecStats> stats_ = std::make_shared<JsCodecStats>();
  int64_t next_reload_check_ns_ = 0;
  int64_t file_mtime_ns_ = 0;
  uint64_t file_size_ = 0;
};

}  // namespace tianhe::codecs::js
