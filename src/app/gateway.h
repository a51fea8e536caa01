// The gateway: everything `tianhe serve` runs, assembled from a validated config: the registry,
// the data plane (runtime/data_plane.h: logs, shards, protocols, sinks) and the HTTP server.
// Built and stopped on the main thread; each part runs on its own threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "control/config.h"
#include "control/http_server.h"
#include "control/otlp/otlp_exporter.h"
#include "core/metrics.h"
#include "core/result.h"
#include "runtime/data_plane.h"

namespace tianhe::app {

/// A running gateway.
class Gateway {
 public:
  /// Starts everything; an error names the part and the cause (nothing is left running).
  static Result<std::unique_ptr<Gateway>> start(const control::GatewayConfig& config);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  /// Stops the HTTP server, then the data plane: the shards (pending durable acks are sent),
  /// the sinks, then the logs with a final sync.
  void stop() noexcept;

  /// The port protocol `name` listens on (0: not running) and the HTTP port actually bound.
  uint16_t port(std::string_view protocol) const noexcept { return data_->port(protocol); }
  /// The port of the first running protocol (for --ready-file).
  uint16_t first_port() const noexcept { return data_->first_port(); }
  uint16_t http_port() const noexcept;
  uint32_t shard_count() const noexcept { return data_->shard_count(); }
  /// The running protocols' banner lines.
  std::string protocols_banner() const { return data_->banner(); }
  /// The /metrics text.
  std::string metrics_text() const { return metrics_.render(); }
  const control::GatewayConfig& config() const noexcept { return config_; }
  const pipeline::Registry& registry() const noexcept { return data_->registry(); }
  /// What start found on disk, for the start-up banner: a torn log tail cut at recovery (a
  /// crash mid-write) and how far the sinks are behind the logs (they catch up now); "clean".
  std::string recovery_summary() const { return data_->recovery_summary(); }
  /// True when every running sink has written everything durable.
  bool sinks_caught_up() const { return data_->sinks_caught_up(); }

 private:
  Gateway() = default;
  Result<void> start_http();
  void register_collectors();
  std::string debug_shards_json() const;
  /// GET /api/v1/sinks: every running sink's state, lag, counts and last error.
  std::string sinks_json() const;
  control::HttpResponse debug_sessions(const control::HttpRequest& req) const;

  control::GatewayConfig config_;
  std::unique_ptr<runtime::DataPlane> data_;
  std::unique_ptr<control::HttpServer> http_;
  std::unique_ptr<control::otlp::OtlpExporter> exporter_;  ///< when [tracing] endpoint is set
  core::MetricsRegistry metrics_;
  int64_t started_ns_ = 0;
  bool stopped_ = false;
};

}  // namespace tianhe::app
