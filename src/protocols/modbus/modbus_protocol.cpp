// The Modbus poller in a running Tianhe: one ModbusIngest per shard (devices spread by id), its
// counters (tianhe_protocol_modbus_*) and banner, `tianhe simulate --protocol modbus`; and its
// registration (the one line in src/extensions.cmake).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "core/config_table.h"
#include "protocols/modbus/modbus_config.h"
#include "protocols/modbus/modbus_ingest.h"
#include "protocols/modbus/modbus_simulator.h"
#include "runtime/extensions.h"

namespace tianhe::protocols::modbus {
namespace {

constexpr std::string_view kName = "modbus";

void collect_shard(core::PromWriter& w, const ModbusStats& s) {
  const std::string p = "tianhe_protocol_modbus_";
  for (size_t i = 0; i < 4; ++i) {
    const core::Labels l{{"function", std::to_string(i + 1)}};
    w.counter(p + "requests_total", "Read requests sent, by function code.", l,
              s.requests[i].get());
    w.counter(p + "responses_total", "Normal responses received, by function code.", l,
              s.responses[i].get());
  }
  for (size_t i = 0; i < kExceptionSlots; ++i) {
    if (i == 9) continue;  // no exception code 0x09 is defined
    w.counter(p + "exceptions_total", "Exception responses received, by exception code.",
              {{"code", std::string(exception_name(i))}}, s.exceptions[i].get());
  }
  for (size_t i = static_cast<size_t>(ResponseStatus::kBadProtocolId);
       i < static_cast<size_t>(ResponseStatus::kCount); ++i) {
    w.counter(p + "malformed_total",
              "Malformed responses dropped (the connection reset), by reason.",
              {{"reason", std::string(response_status_name(static_cast<ResponseStatus>(i)))}},
              s.malformed[i].get());
  }
  for (size_t i = 0; i < static_cast<size_t>(Disconnect::kCount); ++i) {
    w.counter(p + "disconnects_total", "Connections closed or failed, by why.",
              {{"reason", std::string(disconnect_name(static_cast<Disconnect>(i)))}},
              s.disconnects[i].get());
  }
  w.counter(p + "timeouts_total", "Requests not answered within request_timeout.", {},
            s.timeouts.get());
  w.counter(p + "connects_total", "TCP connection attempts.", {}, s.connects.get());
  w.counter(p + "reconnects_total", "Connection attempts after a device's first.", {},
            s.reconnects.get());
  w.counter(p + "cycles_started_total", "Poll cycles started.", {}, s.cycles_started.get());
  w.counter(p + "cycles_completed_total", "Poll cycles with every block answered.", {},
            s.cycles_completed.get());
  w.counter(p + "cycles_aborted_total", "Poll cycles cut short by a lost connection (no report).",
            {}, s.cycles_aborted.get());
  w.counter(p + "cycles_skipped_total", "Poll cycles that could not start within their interval.",
            {}, s.cycles_skipped.get());
  w.counter(p + "exception_backoffs_total",
            "Cycles delayed because the previous one drew exception responses.", {},
            s.exception_backoffs.get());
  w.counter(p + "values_dropped_total", "Decoded values left out of their report, by why.",
            {{"reason", "not_finite"}}, s.decode_drops[0].get());
  w.counter(p + "values_dropped_total", "Decoded values left out of their report, by why.",
            {{"reason", "out_of_range"}}, s.decode_drops[1].get());
  w.counter(p + "reports_durable_total", "Reports whose log append is durable.", {},
            s.reports_durable.get());
  w.counter(p + "received_bytes_total", "Bytes received from devices.", {}, s.bytes_in.get());
  w.counter(p + "sent_bytes_total", "Bytes sent to devices.", {}, s.bytes_out.get());
  w.gauge(p + "devices_up", "Devices connected and answering.", {}, s.devices_up.get());
  w.gauge(p + "devices_down", "Devices not connected or not answering yet.", {},
          s.devices.get() - std::min(s.devices.get(), s.devices_up.get()));
  core::write_histogram(w, p + "cycle_lag_seconds",
                        "How late a poll cycle started after its scheduled time.", {}, s.cycle_lag);
  core::write_histogram(w, p + "response_latency_seconds",
                        "Time from sending a request to receiving its response.", {},
                        s.response_latency);
  runtime::collect_pipeline_stats(w, s.pipeline, kName);
}

// The poller holds a descriptor per device: the soft limit (often 1024) is raised to the hard
// one, once, on the main thread before the shards start. Returns the limit now in force.
uint64_t raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit want = lim;
    want.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) lim = want;
  }
  return lim.rlim_cur == RLIM_INFINITY ? UINT64_MAX : lim.rlim_cur;
}

class ModbusProtocol final : public runtime::ProtocolInstance {
 public:
  ModbusProtocol(std::shared_ptr<const ModbusShared> shared, uint32_t shards, uint64_t fd_limit)
      : shared_(std::move(shared)), shards_(shards), fd_limit_(fd_limit) {}

  Result<std::unique_ptr<runtime::Ingest>> create_ingest(uint32_t shard) override {
    stats_.push_back(std::make_unique<ModbusStats>());
    auto ingest = ModbusIngest::create(shared_, shard, shards_, stats_.back().get());
    if (!ingest.ok()) return ingest.error();
    ingests_.push_back(ingest.value().get());
    return std::unique_ptr<runtime::Ingest>(std::move(ingest.value()));
  }

  Result<runtime::SessionPage> sessions(uint32_t shard, uint64_t after,
                                        uint32_t limit) const override {
    if (shard >= ingests_.size()) return make_error("no such shard");
    return ingests_[shard]->mailbox().ask(after, limit, std::chrono::seconds(2));
  }

  void collect(core::PromWriter& w) const override {
    for (const auto& s : stats_) collect_shard(w, *s);
  }

  void debug(uint32_t shard, runtime::DebugFields& out) const override {
    if (shard >= stats_.size()) return;
    const ModbusStats& s = *stats_[shard];
    out.emplace_back("modbus_devices", s.devices.get());
    out.emplace_back("modbus_devices_up", s.devices_up.get());
    out.emplace_back("modbus_timeouts", s.timeouts.get());
  }

  void add_totals(runtime::Totals& t) const override {
    for (const auto& s : stats_) t.reports_accepted += s->pipeline.reports_accepted.get();
  }

  std::string banner() const override {
    std::string b = "  modbus   polling " + std::to_string(shared_->devices.size()) +
                    " device(s) over Modbus TCP (FC 1-4)";
    if (fd_limit_ < shared_->devices.size() + 256) {
      b += "; WARNING: the descriptor limit (" + std::to_string(fd_limit_) +
           ") is below the device count: raise `ulimit -n`";
    }
    return b + "\n";
  }

  uint16_t port() const noexcept override { return 0; }

 private:
  std::shared_ptr<const ModbusShared> shared_;
  uint32_t shards_;
  uint64_t fd_limit_;
  std::vector<std::unique_ptr<ModbusStats>> stats_;  ///< per shard
  std::vector<ModbusIngest*> ingests_;  ///< per shard; owned by the shards, which outlive calls
};

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  runtime::ProtocolSpec spec;
  spec.name = kName;
  spec.id = kProtocolId;
  spec.config = config_table();
  spec.metric_options = metric_options_table();
  spec.enabled = [](const std::any& c) { return std::any_cast<const ModbusConfig&>(c).enabled; };
  spec.create =
      [](const std::any& c,
         const runtime::GatewayContext& g) -> Result<std::unique_ptr<runtime::ProtocolInstance>> {
    const auto& config = std::any_cast<const ModbusConfig&>(c);
    if (config.devices.empty()) {
      return make_error(
          "protocols.modbus: enabled with no [[protocols.modbus.devices]]; list the devices to "
          "poll or set enabled = false");
    }
    auto shared = ModbusShared::build(config, g.registry);
    if (!shared.ok()) return shared.error();
    const uint64_t limit = raise_fd_limit();
    return std::unique_ptr<runtime::ProtocolInstance>(
        new ModbusProtocol(std::move(shared.value()), std::max<uint32_t>(1, g.shards), limit));
  };
  spec.simulate = cmd_simulate;
  extensions.add_protocol(std::move(spec));
}

}  // namespace tianhe::protocols::modbus
