// The NATS JetStream sink's writer: publishes each batch asynchronously (every report one
// message: the record as JSON, headers Nats-Msg-Id, Tianhe-Log-Position and traceparent),
// awaits every PubAck, and only then saves the cursors in a local file. A crash between the two
// replays the batch; JetStream drops the replays (and a device's retransmissions) by their
// Nats-Msg-Id within the stream's duplicate window. Lives on its consumer's thread; collect()
// runs on the scrape thread and reads atomics only. libnats calls the PubAck handler on its own
// thread, which touches only the mutex-guarded AckState.
#pragma once

#include <nats/nats.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/result.h"
#include "pipeline/registry.h"
#include "runtime/extensions.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/common/log_consumer.h"
#include "sinks/nats/nats_config.h"

namespace tianhe::sinks::nats {

/// The sink's own counters (consumer thread and libnats' thread write, scrape thread reads).
struct NatsStats {
  std::atomic<uint64_t> published{0};   ///< messages handed to the client, replays included
  std::atomic<uint64_t> duplicates{0};  ///< PubAcks saying JetStream already had the message
  std::atomic<uint64_t> pub_errors{0};  ///< PubAcks with an error, or none in time
  std::atomic<uint64_t> poison{0};      ///< records the stream refused for good (dead-lettered)
  std::atomic<uint64_t> streams_created{0};     ///< streams this sink created
  std::atomic<int64_t> duplicate_window_ns{0};  ///< the stream's, as found at the last open()
};

/// What the PubAck handler gathers for one batch.
struct AckState {
  /// A PubAck with an error: the record's log position (its header) and the engine's words.
  struct Failure {
    std::string position;
    int js_code = 0;
    std::string text;
  };
  std::mutex mu;
  std::condition_variable cv;
  uint64_t answered = 0;  ///< PubAcks (good or not) of the current batch
  uint64_t duplicates = 0;
  std::vector<Failure> failures;
};

/// The writer of one sink instance (`sinks.nats` or `sinks.nats.<name>`).
class NatsWriter final : public SinkWriter {
 public:
  /// `servers` from parse_servers(); `cursor_path` is <data_dir>/sinks/<instance>.cursor.
  NatsWriter(const NatsConfig& config, NatsServers servers, SubjectTemplate subject,
             std::string cursor_path, std::string header,
             std::shared_ptr<const pipeline::Registry> registry);
  ~NatsWriter() override;
  NatsWriter(const NatsWriter&) = delete;
  NatsWriter& operator=(const NatsWriter&) = delete;

  Result<std::vector<uint64_t>> open(uint32_t shards) override;
  WriteStatus write(const Batch& batch, bool durable, std::string& error) override;
  void close() noexcept override;
  void collect(core::PromWriter& w, const core::Labels& sink) const override;

 private:
  /// Publishes every report of `batch` and waits for its PubAcks; kAccepted when all came.
  WriteStatus publish(const Batch& batch, std::string& error);
  /// After every PubAck: decides on the failures (retry, blocked, dead-letter the poison).
  WriteStatus settle(const Batch& batch, std::string& error);
  Result<void> save_cursors(const Batch& batch);

  NatsConfig config_;
  NatsServers servers_;
  SubjectTemplate subject_;
  std::string cursor_path_;
  std::string header_;
  std::shared_ptr<const pipeline::Registry> registry_;

  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  AckState acks_;
  NatsStats stats_;

  // Reused across batches.
  MessageParts parts_;
  /// Failed attempts per record refused for good, by its log position.
  std::map<std::string, uint32_t> poison_attempts_;
  std::vector<uint64_t> last_saved_;  ///< cursors in the file, to skip saving the same again
  bool warned_window_ = false;        ///< said once that the stream's window is shorter
};

/// Makes the writer of an instance from its parsed table (checks it; does not connect).
Result<std::unique_ptr<SinkWriter>> make_writer(const NatsConfig& config,
                                                const DeliveryContext& context);

/// `tianhe bench --sinks`: JetStream async publish of `reports` messages of the same layout to
/// a scratch stream (removed afterwards), every PubAck awaited; messages per second.
Result<double> ceiling(const NatsConfig& config, const runtime::GatewayContext& gateway,
                       uint64_t reports);

}  // namespace tianhe::sinks::nats
