// The extension seam: what a protocol, a codec or a sink gives the gateway when it registers,
// and what the gateway gives it back. Each extension is one folder with a register.cpp that
// defines `void register_extension(runtime::Extensions&)` in the folder's namespace
// (src/protocols/report -> tianhe::protocols::report); src/extensions.cmake lists the folders,
// and CMake turns that list into explicit calls (build/<preset>/gen/extensions_registered.cpp).
// Nothing here names an extension.
#pragma once

#include <any>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config_table.h"
#include "core/http_api.h"
#include "core/metrics.h"
#include "core/report.h"
#include "core/result.h"
#include "log/log_config.h"
#include "pipeline/codec.h"
#include "pipeline/registry.h"
#include "runtime/ingest.h"
#include "runtime/session_mailbox.h"
#include "runtime/totals.h"

namespace tianhe::log {
class ShardLog;
}

namespace tianhe::runtime {

class CodecStage;
class Tracing;

/// What the gateway hands an extension when it starts it.
struct GatewayContext {
  std::string data_dir;                                ///< gateway.data_dir
  uint32_t shards = 1;                                 ///< shard count (threads, logs)
  log::LogConfig log;                                  ///< the shard logs' settings
  std::shared_ptr<const pipeline::Registry> registry;  ///< devices and models
  std::vector<log::ShardLog*> logs;  ///< shard i's log; outlives every protocol and sink
  /// This gateway's logs' identity: random, made when the log directory is first used and kept
  /// in <log.dir>/identity. A sink that keeps its cursors in a shared engine keys them by it
  /// too, so two gateways (or a gateway whose data directory was replaced) never read each
  /// other's log offsets.
  std::string log_id;
  /// The payload codecs (codec_stage.h): a protocol carrying opaque payloads makes one decoder
  /// per shard from it. Outlives every protocol.
  std::shared_ptr<CodecStage> codecs;
  /// Tracing and fates (tracing.h): sinks record their confirmations and spans in it. Null in
  /// tools that run a sink without a gateway.
  std::shared_ptr<Tracing> tracing;
};

/// Numbers of one shard for /debug/shards ({"datagrams_received", 12}, ...).
using DebugFields = std::vector<std::pair<std::string, uint64_t>>;

/// A protocol in a running gateway: makes its presence on each shard and reports its stats.
/// Created and called on the main thread, except collect() and debug() (the HTTP thread).
class ProtocolInstance {
 public:
  virtual ~ProtocolInstance() = default;
  /// Its ingest on shard `shard` (called for shards 0, 1, ... in order, before they start).
  virtual Result<std::unique_ptr<Ingest>> create_ingest(uint32_t shard) = 0;
  /// Its samples, every shard's (scrape thread). Metric names follow docs/metrics.md; the
  /// pipeline counters every protocol shares are written with collect_pipeline_stats().
  virtual void collect(core::PromWriter& w) const = 0;
  /// Shard `shard`'s numbers for /debug/shards.
  virtual void debug(uint32_t shard, DebugFields& out) const = 0;
  /// Adds its part to the totals: its accepted reports, input it lost, acks it dropped, its
  /// ack latency histogram (scrape thread).
  virtual void add_totals(Totals& t) const = 0;
  /// Lines for the start-up banner: where it listens and anything the operator should know
  /// (a receive buffer smaller than asked for).
  virtual std::string banner() const = 0;
  /// The port it listens on (0: none), for --ready-file and tests.
  virtual uint16_t port() const noexcept = 0;
  /// /debug/sessions?protocol=<name>: up to `limit` of shard `shard`'s sessions after cursor
  /// `after` (0: from the first). HTTP thread: an ingest answers through its SessionMailbox.
  /// The default: it keeps no per-peer sessions.
  virtual Result<SessionPage> sessions(uint32_t shard, uint64_t after, uint32_t limit) const {
    (void)shard;
    (void)after;
    (void)limit;
    return make_error("this protocol keeps no sessions");
  }
};

/// How `tianhe bench --protocols` drives a protocol: a gateway with its tables, and its own
/// simulator (`tianhe simulate --protocol <name>`) at full rate against it.
struct ProtocolBenchPlan {
  std::string what;  ///< the row's words, e.g. "QoS 1 PUBLISH, PUBACK after durability"
  /// Tables that enable it on 127.0.0.1:0 in the bench gateway, which already has the report
  /// protocol and `devices` env_sensor devices from id 1 (model "env_sensor", no codec).
  std::string toml;
  /// The simulator's arguments after `--target HOST:PORT --duration S --json` (the summary's
  /// keys are the report simulator's: acked_rate, ack_latency_ms.p50/p99).
  std::vector<std::string> simulate_args;
};

/// A registered protocol.
struct ProtocolSpec {
  std::string_view name;       ///< "report": its table [protocols.<name>], its `protocol` label
  core::Protocol id{};         ///< stored with each report; never reused for another protocol
  config::ConfigTable config;  ///< its table
  /// Whether its parsed table enables it.
  std::function<bool(const std::any& config)> enabled;
  /// Starts it (enabled only).
  std::function<Result<std::unique_ptr<ProtocolInstance>>(const std::any& config,
                                                          const GatewayContext& gateway)>
      create;
  /// `tianhe serve --<name>-port N`: sets its listen port (null: it listens on none).
  std::function<void(std::any& config, uint16_t port)> set_port;
  /// `tianhe simulate --protocol <name> ...`: a device fleet speaking it (null: none). Gets the
  /// command line without `--protocol <name>` (argv[1] is "simulate"); returns the exit status.
  std::function<int(int argc, char** argv)> simulate;
  /// `tianhe bench --protocols`: its row (null: none). `dir` is the bench's work directory for
  /// this protocol (for files its tables name, such as keys); `devices` the fleet size.
  std::function<Result<ProtocolBenchPlan>(const std::string& dir, uint64_t devices)> bench;
  /// Its key in every [[models.metrics]] entry: `<name> = { ... }` (an inline table) parsed with
  /// this table (header "models.metrics.<name>"); the struct is kept with the metric
  /// (MetricSpec::options, pipeline::ModelMetric::option()). Unset: none.
  std::optional<config::ConfigTable> metric_options;
};

/// A sink's state for `GET /api/v1/sinks` and `tianhe sinks` (scrape thread).
struct SinkStatus {
  std::string state = "running";  ///< "connected", "connecting", "retrying", "blocked", "running"
  bool connected = true;
  uint64_t lag_bytes = 0;
  uint64_t lag_reports = 0;  ///< estimated from the bytes per report read so far
  double lag_seconds = 0;
  uint64_t delivered = 0;        ///< reports the destination confirmed
  uint64_t retries = 0;          ///< writes or connects that failed and were retried
  uint64_t rejected = 0;         ///< reports skipped for good (a batch the sink cannot write)
  uint64_t dead_lettered = 0;    ///< reports written to the dead-letter file
  uint64_t dropped = 0;          ///< reports skipped by backlog_policy = "drop_oldest"
  std::string last_error;        ///< in words; "" when none yet
  int64_t last_error_ns = 0;     ///< wall clock of last_error
  std::string dead_letter_path;  ///< "" when the sink has none
};

/// A sink in a running gateway (see sinks/common/log_consumer.h for the shared log consumer
/// sinks are built on). Created on the main thread; collect() runs on the scrape thread.
class SinkInstance {
 public:
  virtual ~SinkInstance() = default;
  /// Its state now (scrape thread); the default knows only its lag.
  virtual SinkStatus status() const {
    SinkStatus s;
    s.lag_bytes = lag_bytes();
    return s;
  }
  /// Delivers what it holds, persists its cursors and stops its threads. Idempotent.
  virtual void stop() = 0;
  /// Its samples (scrape thread).
  virtual void collect(core::PromWriter& w) const = 0;
  /// Durable log bytes it has not delivered yet, over every shard.
  virtual uint64_t lag_bytes() const = 0;
  /// Adds its part to the totals (its lag; a sink with background work adds that too).
  virtual void add_totals(Totals& t) const { t.sink_lag_bytes += lag_bytes(); }
  /// Adds its HTTP routes (before the server starts); most sinks have none.
  virtual Result<void> add_routes(core::HttpRoutes& routes) {
    (void)routes;
    return {};
  }
};

/// A registered sink.
struct SinkSpec {
  std::string_view name;       ///< "store": its table [sinks.<name>], its `sink` label
  config::ConfigTable config;  ///< its table (config.instances: [sinks.<name>.<instance>] too)
  std::function<bool(const std::any& config)> enabled;
  /// Starts it (enabled only): registers its consumer with every log and starts its threads.
  /// `instance` is its name as a label and log consumer: "<name>", or "<name>.<instance>" for
  /// the table [sinks.<name>.<instance>].
  std::function<Result<std::unique_ptr<SinkInstance>>(
      const std::any& config, const GatewayContext& gateway, std::string_view instance)>
      start;
  /// `tianhe bench --sinks`: the engine's own ceiling, measured by a plain client (no Tianhe:
  /// the engine's fastest usual way, e.g. pipelined XADD, COPY, multi-row INSERT) writing
  /// `reports` rows of the sink's layout for the registry's first devices; rows per second.
  /// Null: the sink has none.
  std::function<Result<double>(const std::any& config, const GatewayContext& gateway,
                               uint64_t reports)>
      ceiling;
};

/// The budgets of user codecs (the [codecs] table): each call of a JavaScript or WebAssembly
/// codec runs within them.
struct CodecLimits {
  int64_t time_budget_ns = 10'000'000;    ///< per call; past it the call is stopped
  uint64_t memory_budget = 16u << 20;     ///< the codec's heap; past it the call is stopped
  uint64_t max_output_bytes = 64u << 10;  ///< names and strings of one result
};

/// A registered payload codec (a device model names it).
struct CodecSpec {
  std::string_view name;  ///< as a model names it ("report", "json", ...)
  std::function<std::unique_ptr<pipeline::Codec>()> create;  ///< one per shard
  /// A codec a model names by a file path ending in `file_extension` (".js"): `load` makes one
  /// per shard and file from the (absolute) path; an error says what is wrong with the file.
  /// Empty: the codec is named by `name` only.
  std::string_view file_extension;
  std::function<Result<std::unique_ptr<pipeline::Codec>>(const std::string& path,
                                                         const CodecLimits& limits)>
      load;
  /// Its own samples (scrape thread), beside the codec stage's tianhe_codec_*; null: none.
  std::function<void(core::PromWriter& w)> collect;
};

/// The codec that loads files like `path` (by its extension), or nullptr.
inline const CodecSpec* codec_for_file(const std::vector<CodecSpec>& codecs,
                                       std::string_view path) noexcept {
  for (const CodecSpec& c : codecs) {
    if (!c.file_extension.empty() && path.size() > c.file_extension.size() &&
        path.substr(path.size() - c.file_extension.size()) == c.file_extension) {
      return &c;
    }
  }
  return nullptr;
}

/// A command of the `tianhe` executable an extension adds (`tianhe query` reads the store).
/// What the executable gives an extension's command.
struct CommandContext {
  /// The extension table `header` ("sinks.store") of the configuration at `config_path` (empty:
  /// ./tianhe.toml when present, else the built-in defaults), with `data_dir` (when not empty)
  /// replacing gateway.data_dir; an error says what is wrong with the file.
  std::function<Result<std::any>(const std::string& config_path, const std::string& data_dir,
                                 std::string_view header)>
      load_table;
};

struct CommandSpec {
  std::string_view name;     ///< "query": `tianhe query`
  std::string_view summary;  ///< one line for `tianhe --help`
  /// Runs it: argv[1] is its name, options follow; returns the exit status (2: usage error).
  std::function<int(int argc, char** argv, const CommandContext& context)> run;
};

/// Everything registered. Built once on first use of builtin_extensions(), then read-only.
class Extensions {
 public:
  void add_protocol(ProtocolSpec spec);
  void add_sink(SinkSpec spec);
  void add_codec(CodecSpec spec);
  void add_command(CommandSpec spec);

  const std::vector<ProtocolSpec>& protocols() const noexcept { return protocols_; }
  const std::vector<SinkSpec>& sinks() const noexcept { return sinks_; }
  const std::vector<CodecSpec>& codecs() const noexcept { return codecs_; }
  const std::vector<CommandSpec>& commands() const noexcept { return commands_; }
  const ProtocolSpec* protocol(std::string_view name) const noexcept;
  const CodecSpec* codec(std::string_view name) const noexcept;
  const CommandSpec* command(std::string_view name) const noexcept;

 private:
  std::vector<ProtocolSpec> protocols_;
  std::vector<SinkSpec> sinks_;
  std::vector<CodecSpec> codecs_;
  std::vector<CommandSpec> commands_;
};

/// The extensions compiled in (src/extensions.cmake), registered by explicit calls on first use.
const Extensions& builtin_extensions();

}  // namespace tianhe::runtime
