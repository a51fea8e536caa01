// The gateway: everything `tianhe serve` runs, assembled from a validated config — registry,
// shard logs, shards with their protocol ingests, the store sink, the HTTP server.
// Built and stopped on the main thread; each part runs on its own threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "control/config.h"
#include "control/http_server.h"
#include "control/metrics.h"
#include "control/registry.h"
#include "core/result.h"
#include "log/shard_log.h"
#include "runtime/ingest_stats.h"
#include "runtime/shard.h"

namespace tianhe::sinks::store {
class StoreSink;
class StoreReader;
}  // namespace tianhe::sinks::store

namespace tianhe::app {

/// A running gateway.
class Gateway {
 public:
  /// Starts everything; an error names the part and the cause (nothing is left running).
  static Result<std::unique_ptr<Gateway>> start(const control::GatewayConfig& config);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  /// Stops the HTTP server, the shards (pending durable acks are sent), the sinks, then closes
  /// the logs with a final sync.
  void stop() noexcept;

  /// The UDP port of the report protocol and the HTTP port actually bound.
  uint16_t report_port() const noexcept { return report_port_; }
  uint16_t http_port() const noexcept;
  uint32_t shard_count() const noexcept { return static_cast<uint32_t>(shards_.size()); }
  /// The receive buffer the kernel granted the report protocol's sockets (bytes; 0 if off).
  uint64_t report_recv_buffer_bytes() const noexcept {
    return report_stats_.empty() ? 0 : report_stats_[0]->recv_buffer_bytes.get();
  }
  /// The /metrics text.
  std::string metrics_text() const { return metrics_.render(); }
  const control::GatewayConfig& config() const noexcept { return config_; }
  const control::Registry& registry() const noexcept { return *registry_; }
  /// What start found on disk, for the start-up banner: a torn log tail cut at recovery (a
  /// crash mid-write) and how far the store is behind the logs (it catches up now); "clean".
  std::string recovery_summary() const;
  /// The store sink, when enabled (nullptr otherwise).
  sinks::store::StoreSink* store() noexcept { return store_.get(); }

 private:
  Gateway() = default;
  Result<void> start_http();
  void register_collectors();
  std::string debug_shards_json() const;

  control::GatewayConfig config_;
  std::shared_ptr<const control::Registry> registry_;
  std::vector<std::unique_ptr<log::LogStats>> log_stats_;
  std::vector<std::unique_ptr<runtime::IngestStats>> report_stats_;
  std::vector<std::unique_ptr<runtime::Shard>> shards_;
  std::unique_ptr<sinks::store::StoreSink> store_;
  std::unique_ptr<sinks::store::StoreReader> reader_;
  std::unique_ptr<control::HttpServer> http_;
  control::MetricsRegistry metrics_;
  uint16_t report_port_ = 0;
  int64_t started_ns_ = 0;
  bool stopped_ = false;
};

}  // namespace tianhe::app
