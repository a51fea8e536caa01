// Test and benchmark helper: runs test/tracing/otlp_receiver.py (a real OTLP/HTTP receiver that
// decodes with python3-protobuf's classes of the official schema) as a child process and reads
// the spans it decoded. Not part of the gateway.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tianhe::control::otlp {

/// One receiver process on a kernel-chosen loopback port, stopped by the destructor.
class OtlpTestReceiver {
 public:
  /// Starts the receiver with extra command-line options (e.g. {"--fail-first", "2"}); waits
  /// (up to 60 s) for the port line. ok() says whether it started.
  explicit OtlpTestReceiver(std::vector<std::string> options = {});
  ~OtlpTestReceiver();
  OtlpTestReceiver(const OtlpTestReceiver&) = delete;
  OtlpTestReceiver& operator=(const OtlpTestReceiver&) = delete;

  /// True when the process runs and reported its port.
  bool ok() const noexcept { return port_ != 0; }
  /// The port it listens on.
  uint16_t port() const noexcept { return port_; }
  /// "http://127.0.0.1:PORT/v1/traces".
  std::string endpoint() const;
  /// Every line written so far with "type" equal to `type` ("span" or "request").
  std::vector<nlohmann::json> rows(const std::string& type) const;
  /// Waits until at least `n` rows of `type` were written or `deadline` passed; returns them.
  std::vector<nlohmann::json> wait_rows(
      const std::string& type, size_t n,
      std::chrono::seconds deadline = std::chrono::seconds(60)) const;

 private:
  pid_t pid_ = -1;     ///< the python process
  uint16_t port_ = 0;  ///< 0: not started
  std::string dir_;    ///< temporary directory holding the output file
  std::string out_;    ///< the JSON lines file
};

}  // namespace tianhe::control::otlp
