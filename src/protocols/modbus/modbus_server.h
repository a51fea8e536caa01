// A fast Modbus TCP server for `tianhe simulate --protocol modbus`, the demo and the benchmark:
// every unit id answers FC 1-4 for every address with values that are a function of (unit,
// table, address, second), pipelined requests are answered in order. Epoll threads sharing one
// port (SO_REUSEPORT). Not a test peer: the tests use pymodbus, an independent implementation.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
#include "protocols/modbus/modbus_codec.h"

namespace tianhe::protocols::modbus {

/// How the simulator's server listens.
struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;     ///< 0: a free port
  uint32_t threads = 1;  ///< epoll threads (each its own SO_REUSEPORT listener)
};

/// The value a simulated register holds at second `tick` (FC 3 and 4).
uint16_t simulated_register(uint8_t unit, Table table, uint16_t address, uint32_t tick) noexcept;
/// The value a simulated coil or discrete input holds at second `tick`.
bool simulated_bit(uint8_t unit, Table table, uint16_t address, uint32_t tick) noexcept;

/// Answers a request stream: the responses to every whole request at the front of `in` are
/// appended to `out` (at most `out_cap` bytes); returns the bytes of `in` consumed, or -1 when
/// the stream is not Modbus (close the connection). Pure.
long serve_requests(const uint8_t* in, size_t len, uint8_t* out, size_t out_cap, size_t& out_len,
                    uint32_t tick, uint64_t& answered) noexcept;

/// The running server; stop() (or the destructor) joins its threads.
class ModbusServer {
 public:
  /// Binds and starts the threads.
  static Result<std::unique_ptr<ModbusServer>> start(const ServerOptions& options);
  ~ModbusServer();
  ModbusServer(const ModbusServer&) = delete;
  ModbusServer& operator=(const ModbusServer&) = delete;
  /// The port bound.
  uint16_t port() const noexcept { return port_; }
  /// Requests answered so far (any thread).
  uint64_t requests() const noexcept;
  /// Stops and joins the threads. Idempotent.
  void stop() noexcept;

 private:
  ModbusServer() = default;
  struct Worker;
  void run(Worker& w) noexcept;

  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
};

}  // namespace tianhe::protocols::modbus
