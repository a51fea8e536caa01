// The receiver child process: posix_spawn with stdout on a pipe for the port line, the spans in
// a file under a temporary directory, SIGTERM and waitpid on the way out.
#include "control/otlp/otlp_test_receiver.h"

#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/clock.h"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX spells it so

namespace tianhe::control::otlp {

OtlpTestReceiver::OtlpTestReceiver(std::vector<std::string> options) {
  char tmpl[] = "/tmp/tianhe-otlp-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return;
  dir_ = tmpl;
  out_ = dir_ + "/spans.jsonl";
  std::vector<std::string> args = {TH_PYTHON, TH_OTLP_RECEIVER, "--out", out_};
  args.insert(args.end(), options.begin(), options.end());
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) return;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    pid_ = -1;
    close(fds[0]);
    return;
  }
  // The first line is {"port": N}; protoc runs first, so allow a slow machine a minute.
  std::string line;
  const int64_t deadline = core::mono_ns() + 60'000'000'000;
  while (line.find('\n') == std::string::npos) {
    const int64_t left_ms = (deadline - core::mono_ns()) / 1'000'000;
    if (left_ms <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left_ms)) <= 0) continue;
    char buf[256];
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  const nlohmann::json j = nlohmann::json::parse(line.substr(0, line.find('\n')), nullptr, false);
  if (j.is_object() && j.contains("port")) port_ = j["port"].get<uint16_t>();
}

OtlpTestReceiver::~OtlpTestReceiver() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string OtlpTestReceiver::endpoint() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/v1/traces";
}

std::vector<nlohmann::json> OtlpTestReceiver::rows(const std::string& type) const {
  std::vector<nlohmann::json> out;
  std::ifstream in(out_);
  std::string line;
  while (std::getline(in, line)) {
    // A line still being written has no newline yet: getline returns it at EOF; skip it.
    if (in.eof()) break;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("type", "") == type) out.push_back(std::move(j));
  }
  return out;
}

std::vector<nlohmann::json> OtlpTestReceiver::wait_rows(const std::string& type, size_t n,
                                                        std::chrono::seconds deadline) const {
  const int64_t until = core::mono_ns() + std::chrono::nanoseconds(deadline).count();
  while (true) {
    std::vector<nlohmann::json> r = rows(type);
    if (r.size() >= n || core::mono_ns() >= until) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a file: no event
  }
}

}  // namespace tianhe::control::otlp
