#include "protocols/modbus/modbus_ingest.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/clock.h"
#include "transports/udp_socket.h"

namespace tianhe::protocols::modbus {

namespace {

enum class State : uint8_t { kBackoff, kConnecting, kConnected };

// Bytes a connection buffers: one whole ADU (260) plus what follows it in the same read.
constexpr uint32_t kRxBytes = 2 * kMaxAduBytes;
constexpr uint32_t kBatchReports = 512;

std::string at(size_t i) {
  return "protocols.modbus.devices[" + std::to_string(i) + "]";
}

}  // namespace

struct ModbusIngest::Dev {
  const PolledDevice* cfg = nullptr;
  const Plan* plan = nullptr;
  int fd = -1;
  State state = State::kBackoff;
  bool ever_connected = false;
  bool up = false;
  bool in_cycle = false;
  uint32_t gen = 0;       ///< bumped on every new socket: stale epoll events are ignored
  uint32_t failures = 0;  ///< consecutive failed connections
  uint32_t heap_pos = 0;
  uint32_t values = 0;  ///< first index in values_ / have_
  uint32_t in_flight = 1;
  int64_t timeout_ns = 0;
  int64_t interval_ns = 0;
  int64_t when = 0;  ///< its timer (heap key)
  int64_t due = 0;   ///< the next cycle's scheduled start
  int64_t exception_backoff_ns = 0;
  int64_t last_rx_wall = 0;
  uint32_t cycle = 0;  ///< the report's seq
  uint16_t next_block = 0;
  uint16_t answered = 0;
  uint16_t ok_blocks = 0;
  uint16_t exceptions = 0;  ///< exception responses this cycle
  uint16_t next_tid = 0;
  uint8_t outstanding = 0;
  struct Slot {
    uint16_t tid = 0;
    uint16_t block = 0;
    bool used = false;
    int64_t sent_ns = 0;
    int64_t deadline_ns = 0;
  };
  Slot slots[kMaxInFlight];
  uint32_t rx_len = 0;
  uint8_t rx[kRxBytes];
};

std::string_view disconnect_name(Disconnect d) noexcept {
  switch (d) {
    case Disconnect::kConnectFailed: return "connect_failed";
    case Disconnect::kConnectTimeout: return "connect_timeout";
    case Disconnect::kPeerClosed: return "peer_closed";
    case Disconnect::kReadError: return "read_error";
    case Disconnect::kWriteError: return "write_error";
    case Disconnect::kTimeout: return "timeout";
    case Disconnect::kMalformed: return "malformed";
    case Disconnect::kNoSocket: return "no_socket";
    default: return "unknown";
  }
}

Result<std::shared_ptr<const ModbusShared>> ModbusShared::build(
    const ModbusConfig& config, const std::shared_ptr<const pipeline::Registry>& registry) {
  auto shared = std::make_shared<ModbusShared>();
  shared->config = config;
  const PlanLimits limits{.max_registers = static_cast<uint16_t>(config.max_registers),
                          .max_bits = static_cast<uint16_t>(config.max_bits),
                          .max_gap_registers = static_cast<uint16_t>(config.max_gap),
                          .max_gap_bits = static_cast<uint16_t>(config.max_gap_bits)};
  std::map<uint32_t, std::shared_ptr<const Plan>> plans;  // by model index
  shared->devices.reserve(config.devices.size());
  for (size_t i = 0; i < config.devices.size(); ++i) {
    const ModbusDevice& d = config.devices[i];
    const pipeline::DeviceEntry* entry = registry->find(d.device);
    if (entry == nullptr) {
      return make_error(at(i) + ".device: device " + std::to_string(d.device) +
                        " is not registered; add it to a [[devices]] range");
    }
    auto& plan = plans[entry->model];
    if (!plan) {
      const pipeline::Model& model = registry->model(entry->model);
      std::vector<Point> points;
      for (size_t m = 0; m < model.metrics().size(); ++m) {
        const pipeline::ModelMetric& mm = model.metrics()[m];
        const std::any* opt = mm.option("modbus");
        if (opt == nullptr) continue;
        const auto* o = std::any_cast<ModbusMetricOptions>(opt);
        if (o == nullptr) continue;
        if (mm.type == core::ValueType::kString) {
          return make_error("models." + model.name() + ".metrics." + mm.name +
                            ".modbus: a string metric cannot be read from registers; use type "
                            "\"double\", \"int64\" or \"bool\"");
        }
        Point p;
        p.table = o->table;
        p.address = static_cast<uint16_t>(o->address);
        p.type = o->has_type              ? o->type
                 : is_bit_table(o->table) ? DataType::kBool
                                          : DataType::kUint16;
        p.word_order = o->word_order;
        p.byte_order = o->byte_order;
        p.scale = o->scale;
        p.offset = o->offset;
        p.out = mm.type;
        p.metric = static_cast<uint32_t>(m);
        points.push_back(p);
      }
      if (points.empty()) {
        return make_error(at(i) + ".device: model \"" + model.name() + "\" of device " +
                          std::to_string(d.device) +
                          " has no metric with `modbus = { table, address, type }`; add them "
                          "to its [[models.metrics]]");
      }
      auto planned = plan_reads(std::move(points), limits);
      if (!planned.ok()) {
        return make_error("models." + model.name() + ".metrics: " + planned.error().message);
      }
      if (planned->blocks.size() > UINT16_MAX) {
        return make_error("models." + model.name() + ".metrics: too many read blocks");
      }
      plan = std::make_shared<const Plan>(std::move(planned.value()));
    }
    auto addr = transports::resolve(d.address.host, d.address.port);
    if (!addr.ok()) return make_error(at(i) + ".address: " + addr.error().message);
    PolledDevice pd;
    pd.config = d;
    pd.addr = addr->addr;
    pd.addr_len = addr->len;
    pd.plan = plan;
    shared->devices.push_back(std::move(pd));
  }
  return std::shared_ptr<const ModbusShared>(std::move(shared));
}

Result<std::unique_ptr<ModbusIngest>> ModbusIngest::create(
    std::shared_ptr<const ModbusShared> shared, uint32_t shard, uint32_t shards,
    ModbusStats* stats) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return make_error(std::string("protocols.modbus: epoll_create1: ") + strerror(errno));
  return std::unique_ptr<ModbusIngest>(
      new ModbusIngest(std::move(shared), shard, shards, stats, ep));
}

ModbusIngest::ModbusIngest(std::shared_ptr<const ModbusShared> shared, uint32_t shard,
                           uint32_t shards, ModbusStats* stats, int epoll_fd)
    : shared_(std::move(shared)),
      stats_(stats),
      epoll_fd_(epoll_fd),
      batch_(kBatchReports, kBatchReports * 64),
      status_(kBatchReports),
      pending_(1024),
      rng_(0x9E3779B97F4A7C15ull ^ (uint64_t{shard} + 1) * 0xBF58476D1CE4E5B9ull) {
  const ModbusConfig& c = shared_->config;
  size_t count = 0;
  for (const PolledDevice& p : shared_->devices) count += p.config.device % shards == shard;
  devs_.resize(count);
  const int64_t now = core::mono_ns();
  uint32_t values = 0;
  size_t k = 0;
  for (const PolledDevice& p : shared_->devices) {
    if (p.config.device % shards != shard) continue;
    Dev& d = devs_[k++];
    d.cfg = &p;
    d.plan = p.plan.get();
    d.values = values;
    values += static_cast<uint32_t>(p.plan->points.size());
    d.in_flight = p.config.in_flight != 0 ? p.config.in_flight : c.in_flight;
    d.timeout_ns =
        p.config.request_timeout_ns != 0 ? p.config.request_timeout_ns : c.request_timeout_ns;
    d.interval_ns = p.config.interval_ns;
    // First cycles are spread over one interval by device id, so that thousands of devices
    // configured alike do not all send in the same millisecond.
    d.due = now + static_cast<int64_t>((p.config.device * 0x9E3779B97F4A7C15ull >> 11) %
                                       static_cast<uint64_t>(d.interval_ns));
    d.when = now;  // connect at once
  }
  values_.resize(values);
  have_.resize(values);
  heap_.reserve(devs_.size());
  for (uint32_t i = 0; i < devs_.size(); ++i) {
    devs_[i].heap_pos = i;
    heap_.push_back(i);
  }
  stats_->devices.set(devs_.size());
}

ModbusIngest::~ModbusIngest() {
  for (Dev& d : devs_) {
    if (d.fd >= 0) ::close(d.fd);
  }
  ::close(epoll_fd_);
}

void ModbusIngest::watches(std::vector<runtime::Watch>& out, runtime::AckWait) const {
  // One descriptor however many connections: the shard's poll() never sees thousands of fds.
  out.push_back({epoll_fd_, POLLIN});
  if (mailbox_.fd() >= 0) out.push_back({mailbox_.fd(), POLLIN});
}

void ModbusIngest::list_sessions(uint64_t after, uint32_t limit, runtime::SessionPage& page) const {
  const int64_t now_wall = core::wall_ns();
  page.total = devs_.size();
  uint64_t i = after;
  for (; i < devs_.size() && page.sessions.size() < limit; ++i) {
    const Dev& d = devs_[i];
    const ModbusDevice& c = d.cfg->config;
    std::string_view state = d.state == State::kConnected    ? "connected"
                             : d.state == State::kConnecting ? "connecting"
                                                             : "backoff";
    nlohmann::json j{{"device_id", c.device},
                     {"address", c.address.host + ":" + std::to_string(c.address.port)},
                     {"unit", c.unit},
                     {"state", state},
                     {"up", d.up},
                     {"interval_s", static_cast<double>(d.interval_ns) / 1e9},
                     {"in_flight", d.in_flight},
                     {"cycle", d.cycle},
                     {"failed_connects", d.failures}};
    if (d.last_rx_wall > 0) {
      j["last_response_age_s"] = static_cast<double>(now_wall - d.last_rx_wall) / 1e9;
    }
    page.sessions.push_back(j.dump());
  }
  page.next = i;
  page.more = i < devs_.size();
}

size_t ModbusIngest::device_count() const noexcept {
  return devs_.size();
}

int64_t ModbusIngest::next_deadline_ns() const noexcept {
  return heap_.empty() ? runtime::kNoDeadline : devs_[heap_[0]].when;
}

// --- timer heap ---------------------------------------------------------------------------

void ModbusIngest::sift_up(uint32_t pos) noexcept {
  const uint32_t idx = heap_[pos];
  const int64_t key = devs_[idx].when;
  while (pos > 0) {
    const uint32_t parent = (pos - 1) / 2;
    if (devs_[heap_[parent]].when <= key) break;
    heap_[pos] = heap_[parent];
    devs_[heap_[pos]].heap_pos = pos;
    pos = parent;
  }
  heap_[pos] = idx;
  devs_[idx].heap_pos = pos;
}

void ModbusIngest::sift_down(uint32_t pos) noexcept {
  const uint32_t n = static_cast<uint32_t>(heap_.size());
  const uint32_t idx = heap_[pos];
  const int64_t key = devs_[idx].when;
  for (;;) {
    uint32_t child = 2 * pos + 1;
    if (child >= n) break;
    if (child + 1 < n && devs_[heap_[child + 1]].when < devs_[heap_[child]].when) ++child;
    if (devs_[heap_[child]].when >= key) break;
    heap_[pos] = heap_[child];
    devs_[heap_[pos]].heap_pos = pos;
    pos = child;
  }
  heap_[pos] = idx;
  devs_[idx].heap_pos = pos;
}

void ModbusIngest::reschedule(Dev& d) noexcept {
  int64_t when = d.when;
  switch (d.state) {
    case State::kBackoff:
    case State::kConnecting: break;  // set when the state was entered
    case State::kConnected:
      if (d.outstanding > 0) {
        when = runtime::kNoDeadline;
        for (const Dev::Slot& s : d.slots) {
          if (s.used) when = std::min(when, s.deadline_ns);
        }
      } else {
        when = d.due;
      }
      break;
  }
  d.when = when;
  sift_up(d.heap_pos);
  sift_down(d.heap_pos);
}

// --- connections --------------------------------------------------------------------------

int64_t ModbusIngest::backoff_ns(uint32_t failures) noexcept {
  const ModbusConfig& c = shared_->config;
  int64_t delay = c.backoff_min_ns;
  for (uint32_t i = 1; i < failures && delay < c.backoff_max_ns; ++i) delay *= 2;
  delay = std::min(delay, c.backoff_max_ns);
  // Jitter: between half and all of the delay, so devices that failed together (a gateway
  // restarting) do not reconnect together.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const int64_t half = delay / 2;
  return half + static_cast<int64_t>(rng_ % static_cast<uint64_t>(delay - half + 1));
}

void ModbusIngest::connect(Dev& d, int64_t now) noexcept {
  stats_->connects.add();
  if (d.ever_connected) stats_->reconnects.add();
  const sockaddr_storage& a = d.cfg->addr;
  const int fd = ::socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    reset(d, Disconnect::kNoSocket, now);
    return;
  }
  // Requests are 12 bytes and the next waits for the answer: Nagle would hold them.
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  d.fd = fd;
  ++d.gen;
  const int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), d.cfg->addr_len);
  if (r != 0 && errno != EINPROGRESS) {
    reset(d, Disconnect::kConnectFailed, now);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u64 = (uint64_t{d.gen} << 32) | static_cast<uint32_t>(&d - devs_.data());
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    reset(d, Disconnect::kNoSocket, now);
    return;
  }
  d.state = State::kConnecting;
  d.when = now + shared_->config.connect_timeout_ns;
}

void ModbusIngest::on_connected(runtime::Shard&, Dev& d, int64_t now) noexcept {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(d.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    reset(d, Disconnect::kConnectFailed, now);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = (uint64_t{d.gen} << 32) | static_cast<uint32_t>(&d - devs_.data());
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, d.fd, &ev);
  d.state = State::kConnected;
  d.ever_connected = true;
  if (d.due <= now) start_cycle(d, now);
}

void ModbusIngest::reset(Dev& d, Disconnect why, int64_t now) noexcept {
  stats_->disconnects[static_cast<size_t>(why)].add();
  if (d.fd >= 0) {
    ::close(d.fd);  // also leaves the epoll set
    d.fd = -1;
  }
  if (d.in_cycle) {
    stats_->cycles_aborted.add();
    d.in_cycle = false;
  }
  for (Dev::Slot& s : d.slots) s.used = false;
  d.outstanding = 0;
  d.rx_len = 0;
  if (d.up) {
    d.up = false;
    --up_;
    stats_->devices_up.set(up_);
  }
  ++d.failures;
  d.state = State::kBackoff;
  d.when = now + backoff_ns(d.failures);
}

// --- poll cycles --------------------------------------------------------------------------

void ModbusIngest::start_cycle(Dev& d, int64_t now) noexcept {
  stats_->cycle_lag.observe_ns(now - d.due);
  stats_->cycles_started.add();
  d.in_cycle = true;
  d.next_block = 0;
  d.answered = 0;
  d.ok_blocks = 0;
  d.exceptions = 0;
  ++d.cycle;
  std::fill_n(have_.begin() + d.values, d.plan->points.size(), uint8_t{0});
  d.due += d.interval_ns;
  if (d.due <= now) {
    // Cycles that could not start within their interval (a slow slave, a reconnect) are
    // skipped, not run back to back: the schedule keeps its phase.
    const int64_t missed = (now - d.due) / d.interval_ns + 1;
    stats_->cycles_skipped.add(static_cast<uint64_t>(missed));
    d.due += missed * d.interval_ns;
  }
  send_requests(d, now);
}

void ModbusIngest::send_requests(Dev& d, int64_t now) noexcept {
  uint8_t buf[kMaxInFlight * kReadRequestBytes];
  uint32_t n = 0;
  const uint16_t blocks = static_cast<uint16_t>(d.plan->blocks.size());
  while (d.outstanding < d.in_flight && d.next_block < blocks) {
    Dev::Slot* slot = nullptr;
    for (Dev::Slot& s : d.slots) {
      if (!s.used) {
        slot = &s;
        break;
      }
    }
    const Block& b = d.plan->blocks[d.next_block];
    // Transaction ids count up per connection; a response must echo one still in flight.
    slot->tid = ++d.next_tid;
    slot->block = d.next_block++;
    slot->used = true;
    slot->sent_ns = now;
    slot->deadline_ns = now + d.timeout_ns;
    ++d.outstanding;
    encode_read_request(
        {.transaction = slot->tid,
         .unit = static_cast<uint8_t>(d.cfg->config.unit),
         .table = b.table,
         .address = b.address,
         .quantity = b.quantity},
        std::span<uint8_t, kReadRequestBytes>(buf + n * kReadRequestBytes, kReadRequestBytes));
    stats_->requests[static_cast<size_t>(b.table)].add();
    ++n;
  }
  if (n == 0) return;
  // At most in_flight requests are unanswered, so the socket's send buffer cannot be full: a
  // short write means the connection is broken.
  const size_t bytes = n * kReadRequestBytes;
  const ssize_t w = ::send(d.fd, buf, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w != static_cast<ssize_t>(bytes)) {
    reset(d, Disconnect::kWriteError, now);
    return;
  }
  stats_->bytes_out.add(bytes);
}

void ModbusIngest::on_readable(runtime::Shard& shard, Dev& d, int64_t now) noexcept {
  const ssize_t n = ::recv(d.fd, d.rx + d.rx_len, kRxBytes - d.rx_len, MSG_DONTWAIT);
  if (n == 0) {
    reset(d, Disconnect::kPeerClosed, now);
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      reset(d, Disconnect::kReadError, now);
    }
    return;
  }
  stats_->bytes_in.add(static_cast<uint64_t>(n));
  d.rx_len += static_cast<uint32_t>(n);
  const int64_t wall = core::wall_ns();
  uint32_t off = 0;
  for (;;) {
    const std::span<const uint8_t> in(d.rx + off, d.rx_len - off);
    MbapHeader h;
    size_t adu = 0;
    ResponseStatus s = split_adu(in, h, adu);
    if (s == ResponseStatus::kNeedMore) break;
    Dev::Slot* slot = nullptr;
    if (s == ResponseStatus::kOk) {
      for (Dev::Slot& sl : d.slots) {
        if (sl.used && sl.tid == h.transaction) slot = &sl;
      }
      if (slot == nullptr) s = ResponseStatus::kUnknownTransaction;
    }
    Response resp;
    const Block* b = nullptr;
    if (slot != nullptr) {
      b = &d.plan->blocks[slot->block];
      s = check_response(
          h, in.first(adu),
          {static_cast<uint8_t>(d.cfg->config.unit), read_function(b->table), b->quantity}, resp);
    }
    if (is_malformed(s)) {
      // The stream cannot be trusted past a bad frame (framing or pairing is lost): drop it
      // and start a new connection.
      stats_->malformed[static_cast<size_t>(s)].add();
      reset(d, Disconnect::kMalformed, now);
      return;
    }
    stats_->response_latency.observe_ns(now - slot->sent_ns);
    if (s == ResponseStatus::kException) {
      stats_->exceptions[exception_slot(resp.exception_code)].add();
      ++d.exceptions;
    } else {
      stats_->responses[static_cast<size_t>(b->table)].add();
      ++d.ok_blocks;
      for (uint32_t i = b->first_point; i < b->first_point + b->point_count; ++i) {
        const DecodeStatus ds =
            decode_point(d.plan->points[i], *b, resp.data, values_[d.values + i]);
        if (ds == DecodeStatus::kOk) {
          have_[d.values + i] = 1;
        } else {
          stats_->decode_drops[ds == DecodeStatus::kNotFinite ? 0 : 1].add();
        }
      }
    }
    slot->used = false;
    --d.outstanding;
    ++d.answered;
    d.last_rx_wall = wall;
    d.failures = 0;  // the slave answers: the next reconnect starts from backoff_min
    if (!d.up) {
      d.up = true;
      ++up_;
      stats_->devices_up.set(up_);
    }
    off += static_cast<uint32_t>(adu);
  }
  if (off > 0) {
    std::memmove(d.rx, d.rx + off, d.rx_len - off);
    d.rx_len -= off;
  }
  if (d.in_cycle && d.answered == d.plan->blocks.size()) {
    finish_cycle(shard, d, now);
  } else if (d.in_cycle) {
    send_requests(d, now);
  }
}

void ModbusIngest::finish_cycle(runtime::Shard& shard, Dev& d, int64_t now) noexcept {
  d.in_cycle = false;
  stats_->cycles_completed.add();
  if (d.ok_blocks > 0) emit_report(shard, d);
  const ModbusConfig& c = shared_->config;
  if (d.exceptions > 0) {
    // A slave answering exceptions (busy, gateway target not answering) is given time, not
    // asked again at full rate: the next cycle waits, longer each time it persists.
    d.exception_backoff_ns = d.exception_backoff_ns == 0
                                 ? c.exception_backoff_ns
                                 : std::min(d.exception_backoff_ns * 2, c.backoff_max_ns);
    if (d.due < now + d.exception_backoff_ns) {
      stats_->exception_backoffs.add();
      d.due = now + d.exception_backoff_ns;
    }
  } else {
    d.exception_backoff_ns = 0;
  }
}

void ModbusIngest::emit_report(runtime::Shard& shard, Dev& d) noexcept {
  const uint32_t points = static_cast<uint32_t>(d.plan->points.size());
  if (batch_.reports_free() == 0 || batch_.metrics_free() < points) flush(shard);
  core::Report* r = batch_.add_report();
  if (r == nullptr) return;
  r->device_id = d.cfg->config.device;
  r->seq = d.cycle;
  // The device has no clock of its own in Modbus: the reading is as of its response.
  r->device_time_ns = d.last_rx_wall;
  r->received_ns = d.last_rx_wall;
  r->protocol = kProtocolId;
  for (uint32_t i = 0; i < points; ++i) {
    if (!have_[d.values + i]) continue;
    core::Metric* m = batch_.add_metric(*r);
    if (m == nullptr) break;
    m->id = d.plan->points[i].metric;  // the validator names it from the model
    m->value = values_[d.values + i];
  }
}

void ModbusIngest::flush(runtime::Shard& shard) noexcept {
  if (batch_.empty()) return;
  stats_->pipeline.reports_received.add(batch_.size());
  const runtime::AppendOutcome out = shard.validate_and_append(batch_, status_, stats_->pipeline);
  if (out.ok) {
    uint64_t accepted = 0;
    for (uint32_t i = 0; i < batch_.size(); ++i) accepted += status_[i] == 0;
    if (accepted > 0) {
      // There is no peer to acknowledge; a report counts as delivered once the log sync covers
      // it. A full ring merges into its newest entry (that offset covers both).
      const uint32_t cap = static_cast<uint32_t>(pending_.size());
      if (pending_count_ == cap) {
        Pending& last = pending_[(pending_head_ + cap - 1) % cap];
        last.durable_at = out.durable_at;
        last.reports += accepted;
      } else {
        pending_[(pending_head_ + pending_count_) % cap] = {out.durable_at, accepted};
        ++pending_count_;
      }
    }
  }
  batch_.clear();
}

runtime::AckWait ModbusIngest::release_acks(uint64_t durable_offset) noexcept {
  const uint32_t cap = static_cast<uint32_t>(pending_.size());
  while (pending_count_ > 0 && pending_[pending_head_].durable_at <= durable_offset) {
    stats_->reports_durable.add(pending_[pending_head_].reports);
    pending_head_ = (pending_head_ + 1) % cap;
    --pending_count_;
  }
  return pending_count_ == 0 ? runtime::AckWait::kNothing : runtime::AckWait::kDurability;
}

// --- the shard's calls --------------------------------------------------------------------

uint32_t ModbusIngest::poll_input(runtime::Shard& shard) noexcept {
  mailbox_.serve([this](uint64_t after, uint32_t limit, runtime::SessionPage& page) {
    list_sessions(after, limit, page);
  });
  const int n = ::epoll_wait(epoll_fd_, events_, kEvents, 0);
  if (n <= 0) return 0;
  const int64_t now = core::mono_ns();
  for (int i = 0; i < n; ++i) {
    const uint32_t idx = static_cast<uint32_t>(events_[i].data.u64);
    const uint32_t gen = static_cast<uint32_t>(events_[i].data.u64 >> 32);
    if (idx >= devs_.size()) continue;
    Dev& d = devs_[idx];
    if (d.gen != gen || d.fd < 0) continue;  // a socket closed earlier in this batch
    if (d.state == State::kConnecting) {
      on_connected(shard, d, now);
    } else if (d.state == State::kConnected) {
      on_readable(shard, d, now);
    }
    reschedule(d);
  }
  flush(shard);
  return static_cast<uint32_t>(n);
}

void ModbusIngest::handle_timer(runtime::Shard&, Dev& d, int64_t now) noexcept {
  switch (d.state) {
    case State::kBackoff: connect(d, now); break;
    case State::kConnecting: reset(d, Disconnect::kConnectTimeout, now); break;
    case State::kConnected:
      if (d.outstanding > 0) {
        // A response overdue: count it and start over on a new connection (an answer that
        // still comes could be taken for the next request's).
        stats_->timeouts.add();
        reset(d, Disconnect::kTimeout, now);
      } else if (!d.in_cycle && d.due <= now) {
        start_cycle(d, now);
      }
      break;
  }
}

void ModbusIngest::on_timer(runtime::Shard& shard, int64_t now_ns) noexcept {
  // Bounded per call: the loop reads input between rounds even when thousands are due.
  for (uint32_t k = 0; k < 4096 && !heap_.empty(); ++k) {
    Dev& d = devs_[heap_[0]];
    if (d.when > now_ns) break;
    handle_timer(shard, d, now_ns);
    reschedule(d);
    if (d.when <= now_ns) {
      // Nothing moved it forward (cannot happen: every branch sets a later deadline); keep
      // the loop from spinning on it.
      d.when = now_ns + 1;
      reschedule(d);
    }
  }
  flush(shard);
}

}  // namespace tianhe::protocols::modbus
