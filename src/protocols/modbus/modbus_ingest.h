// The Modbus TCP poller on one shard: a client connection per device (the devices whose id
// modulo the shard count is this shard), poll cycles on each device's interval, read requests
// planned from its model's register map, strict checks of every response, reconnects with
// jittered back-off, and one report per cycle to the shard's validate-and-append. The shard's
// loop waits on one epoll descriptor for all connections, so thousands of devices cost one
// pollfd and no select() limit. Bounded: every buffer is sized at create(). Owned and called
// by its shard thread only.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <memory>
#include <vector>

#include "core/report.h"
#include "core/result.h"
#include "pipeline/registry.h"
#include "protocols/modbus/modbus_config.h"
#include "protocols/modbus/modbus_map.h"
#include "protocols/modbus/modbus_stats.h"
#include "runtime/session_mailbox.h"
#include "runtime/shard.h"

namespace tianhe::protocols::modbus {

/// The protocol id stored with Modbus reports.
inline constexpr core::Protocol kProtocolId = static_cast<core::Protocol>(4);

/// One device ready to poll: its config entry resolved against the registry.
struct PolledDevice {
  ModbusDevice config;
  sockaddr_storage addr{};  ///< resolved address
  socklen_t addr_len = 0;
  std::shared_ptr<const Plan> plan;  ///< its model's read plan
};

/// What every shard's poller shares: the config and the devices with their plans.
struct ModbusShared {
  ModbusConfig config;
  std::vector<PolledDevice> devices;
  /// Resolves the devices, checks each against the registry and plans each model's reads; an
  /// error names the config key and the fix.
  static Result<std::shared_ptr<const ModbusShared>> build(
      const ModbusConfig& config, const std::shared_ptr<const pipeline::Registry>& registry);
};

/// One shard's poller (shard thread only).
class ModbusIngest final : public runtime::Ingest {
 public:
  /// Takes the devices of `shared` that fall on shard `shard` of `shards`. `stats` outlives it.
  static Result<std::unique_ptr<ModbusIngest>> create(std::shared_ptr<const ModbusShared> shared,
                                                      uint32_t shard, uint32_t shards,
                                                      ModbusStats* stats);
  ~ModbusIngest() override;
  ModbusIngest(const ModbusIngest&) = delete;
  ModbusIngest& operator=(const ModbusIngest&) = delete;

  void watches(std::vector<runtime::Watch>& out, runtime::AckWait wait) const override;
  uint32_t poll_input(runtime::Shard& shard) noexcept override;
  uint32_t receive_batch() const noexcept override { return kEvents; }
  runtime::AckWait release_acks(uint64_t durable_offset) noexcept override;
  bool can_receive() const noexcept override { return true; }
  int64_t next_deadline_ns() const noexcept override;
  void on_timer(runtime::Shard& shard, int64_t now_ns) noexcept override;
  /// Devices this shard polls.
  size_t device_count() const noexcept;
  /// Where /debug/sessions asks for this shard's devices (any thread).
  runtime::SessionMailbox& mailbox() noexcept { return mailbox_; }

 private:
  static constexpr uint32_t kEvents = 256;
  struct Dev;
  ModbusIngest(std::shared_ptr<const ModbusShared> shared, uint32_t shard, uint32_t shards,
               ModbusStats* stats, int epoll_fd);

  void handle_timer(runtime::Shard& shard, Dev& d, int64_t now) noexcept;
  void connect(Dev& d, int64_t now) noexcept;
  void on_connected(runtime::Shard& shard, Dev& d, int64_t now) noexcept;
  void on_readable(runtime::Shard& shard, Dev& d, int64_t now) noexcept;
  void start_cycle(Dev& d, int64_t now) noexcept;
  void send_requests(Dev& d, int64_t now) noexcept;
  void finish_cycle(runtime::Shard& shard, Dev& d, int64_t now) noexcept;
  void emit_report(runtime::Shard& shard, Dev& d) noexcept;
  void reset(Dev& d, Disconnect why, int64_t now) noexcept;
  int64_t backoff_ns(uint32_t failures) noexcept;
  void flush(runtime::Shard& shard) noexcept;
  // The device timer heap (earliest deadline on top; each device is in it once).
  void reschedule(Dev& d) noexcept;
  void sift_up(uint32_t pos) noexcept;
  void sift_down(uint32_t pos) noexcept;

  /// Fills a /debug/sessions page: devices from index `after` (the cursor is a device index).
  void list_sessions(uint64_t after, uint32_t limit, runtime::SessionPage& page) const;

  std::shared_ptr<const ModbusShared> shared_;
  ModbusStats* stats_;
  runtime::SessionMailbox mailbox_;
  int epoll_fd_;
  std::vector<Dev> devs_;
  std::vector<core::Value> values_;  ///< each device's point values, at Dev::values
  std::vector<uint8_t> have_;        ///< whether values_[i] was read this cycle
  std::vector<uint32_t> heap_;       ///< device indexes
  epoll_event events_[kEvents];
  core::ReportBatch batch_;
  std::vector<uint8_t> status_;
  struct Pending {
    uint64_t durable_at;
    uint64_t reports;
  };
  std::vector<Pending> pending_;  ///< a ring of appends waiting for durability
  uint32_t pending_head_ = 0, pending_count_ = 0;
  uint64_t rng_;
  uint64_t up_ = 0;
};

}  // namespace tianhe::protocols::modbus
