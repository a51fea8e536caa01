#include "tools/bench/bench_gateway.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "core/clock.h"
#include "core/http_get.h"

namespace tianhe::tools::bench {

namespace fs = std::filesystem;
using protocols::report::SimulatorOptions;

void Child::terminate() {
  if (pid > 0) {
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 300; ++i) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    pid = -1;
  }
}

namespace {

/// The command and utime + stime (seconds) of a /proc stat file; false when it cannot be read.
bool read_stat(const std::string& path, std::string& comm, double& seconds) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // proc(5): field 2, the command, is in parentheses and may hold spaces, so fields are counted
  // from the last ')'; utime and stime are fields 14 and 15, in clock ticks (a process's are
  // the sum of its threads', the exited ones too).
  const size_t open = text.find('('), close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  comm = text.substr(open + 1, close - open - 1);
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  for (int i = 3; i < 14; ++i) rest >> field;
  unsigned long long utime = 0, stime = 0;
  if (!(rest >> utime >> stime)) return false;
  seconds = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return true;
}

}  // namespace

CpuTimes cpu_times(pid_t pid) {
  CpuTimes t;
  const std::string dir = "/proc/" + std::to_string(pid);
  std::string comm;
  double s = 0;
  if (read_stat(dir + "/stat", comm, s)) t.process = s;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator(dir + "/task", ec)) {
    if (!read_stat(task.path().string() + "/stat", comm, s)) continue;
    if (comm.rfind("shard-", 0) == 0) t.shards += s;
    if (comm == "otlp-export") t.exporter += s;
    t.threads[comm] += s;
  }
  return t;
}

Result<Discard> open_discard() {
  auto addr = transports::resolve("127.0.0.1", 0);
  if (!addr.ok()) return addr.error();
  auto sock = transports::UdpSocket::bind(
      *addr, transports::UdpOptions{.reuse_port = false, .recv_buffer_bytes = 64u << 10});
  if (!sock.ok()) return make_error("the discarding socket: " + sock.error().message);
  Discard d{std::move(*sock)};
  d.port = d.socket.local_port();
  return d;
}

Result<std::string> with_codec(const std::string& toml, const std::string& codec) {
  size_t at = 0;
  while (at < toml.size()) {
    const size_t eol = std::min(toml.find('\n', at), toml.size());
    if (toml.compare(at, 8, "codec = ") == 0) {
      std::string quoted = "\"";
      for (const char c : codec) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
      }
      quoted += '"';
      return toml.substr(0, at) + "codec = " + quoted + toml.substr(eol);
    }
    at = eol + 1;
  }
  return make_error("--codec: this protocol's bench plan names no model codec");
}

std::map<std::string, uint64_t> counter_by_label(const std::string& page, const std::string& name,
                                                 const std::string& label) {
  std::map<std::string, double> sums;
  std::istringstream in(page);
  const std::string key = label + "=\"";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;  // another metric whose name starts with `name`
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    std::string value;
    const size_t brace = line.find('}');
    if (next == '{' && brace != std::string::npos) {
      // The label, matched at a label boundary ({ or ,) so "reason" is not "season".
      for (size_t at = line.find(key); at != std::string::npos && at < brace;
           at = line.find(key, at + 1)) {
        if (line[at - 1] != '{' && line[at - 1] != ',') continue;
        const size_t b = at + key.size(), e = line.find('"', b);
        if (e != std::string::npos) value = line.substr(b, e - b);
        break;
      }
    }
    sums[value] += std::strtod(line.c_str() + sp + 1, nullptr);
  }
  std::map<std::string, uint64_t> out;
  for (const auto& [v, n] : sums) out[v] = static_cast<uint64_t>(n);
  return out;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

Result<pid_t> spawn(const std::vector<std::string>& args, const std::string& log_path) {
  pid_t pid = fork();
  if (pid < 0) return make_error("cannot start '" + args.at(1) + "': fork: " + errno_text(errno));
  if (pid == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  return pid;
}

/// Waits for a "ready file" holding the ports a child bound.
Result<std::vector<uint32_t>> wait_ready(const std::string& path, pid_t pid, double timeout_s) {
  const int64_t deadline = core::mono_ns() + static_cast<int64_t>(timeout_s * 1e9);
  while (core::mono_ns() < deadline) {
    std::ifstream in(path);
    std::vector<uint32_t> ports;
    uint32_t p = 0;
    while (in >> p) ports.push_back(p);
    if (!ports.empty()) return ports;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return make_error("the child process exited before writing " + path);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return make_error("timed out waiting for " + path);
}

std::string http_get(uint16_t port, const std::string& path) {
  auto r = core::http_get("127.0.0.1", port, path);
  return r.ok() && r->status == 200 ? r->body : "";
}

/// The gateway's running totals (GET /debug/totals), typed; empty totals (and a message) when
/// it cannot be read.
runtime::Totals totals_of(uint16_t http_port) {
  auto t = runtime::Totals::parse(http_get(http_port, "/debug/totals"));
  if (t.ok()) return *t;
  std::fprintf(stderr, "tianhe bench: GET /debug/totals: %s\n", t.error().message.c_str());
  return {};
}

std::string bench_config(const std::string& dir, uint64_t devices, uint32_t shards,
                         const std::string& durability, const std::string& extra_toml) {
  std::ostringstream c;
  c << "[gateway]\ndata_dir = \"" << dir << "\"\nshards = " << shards << "\n"
    << "[log]\ndurability = \"" << durability << "\"\n"
    << "[protocols.report]\nlisten = \"127.0.0.1:0\"\n"
    << "[http]\nlisten = \"127.0.0.1:0\"\n"
    << "[sinks.store]\nenabled = true\n"
    << extra_toml << "\n"
    << "[registry]\nunknown_devices = \"reject\"\n"
    << "[[models]]\nname = \"env_sensor\"\n"
    << "[[models.metrics]]\nname = \"temperature\"\ntype = \"double\"\nmin = -40\nmax = 85\n"
    << "required = true\n"
    << "[[models.metrics]]\nname = \"humidity\"\ntype = \"double\"\nmin = 0\nmax = 100\n"
    << "[[models.metrics]]\nname = \"pressure\"\ntype = \"double\"\nmin = 300\nmax = 1100\n"
    << "[[models.metrics]]\nname = \"battery_mv\"\ntype = \"int64\"\nmin = 0\nmax = 5000\n"
    << "[[models.metrics]]\nname = \"door_open\"\ntype = \"bool\"\n"
    << "[[devices]]\nid = 1\ncount = " << devices
    << "\ntenant = \"bench\"\nmodel = \"env_sensor\"\n";
  return c.str();
}

Result<void> start_gateway(Gw& gw, const std::string& work, const std::string& name,
                           uint64_t devices, uint32_t shards, const std::string& durability,
                           const std::string& extra_toml) {
  const std::string dir = work + "/" + name;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error("cannot create " + dir + ": " + ec.message());
  const std::string cfg = dir + "/tianhe.toml";
  std::ofstream out(cfg);
  out << bench_config(dir + "/data", devices, shards, durability, extra_toml);
  out.close();
  if (!out) return make_error("cannot write " + cfg);
  const std::string ready = dir + "/ready";
  auto pid = spawn({"tianhe", "serve", "--config", cfg, "--ready-file", ready}, dir + "/serve.log");
  if (!pid.ok()) return pid.error();
  gw.child.pid = *pid;
  auto ports = wait_ready(ready, *pid, 60);
  if (!ports.ok() || ports->size() < 2) {
    // The log's last line says why (a config error names its key): the work directory may be
    // gone when the message is read.
    std::string why =
        ports.ok() ? std::string("its ready file lacks the ports") : ports.error().message;
    std::ifstream log(dir + "/serve.log");
    std::string last;
    for (std::string line; std::getline(log, line);) {
      if (!line.empty()) last = line;
    }
    if (!last.empty()) why += "; it said: " + last;
    return make_error("the gateway did not start (" + why + "): see " + dir + "/serve.log");
  }
  gw.report_port = static_cast<uint16_t>((*ports)[0]);
  gw.http_port = static_cast<uint16_t>((*ports)[1]);
  // Then "name=port" per running protocol (serve --ready-file).
  std::ifstream in(ready);
  for (std::string word; in >> word;) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) continue;
    gw.ports[word.substr(0, eq)] =
        static_cast<uint16_t>(std::strtoul(word.c_str() + eq + 1, nullptr, 10));
  }
  return {};
}

SimulatorOptions sim(uint16_t port, uint64_t devices, double rate, double duration, uint32_t batch,
                     bool ack) {
  SimulatorOptions o;
  o.port = port;
  o.devices = devices;
  o.rate = rate;
  o.duration_s = duration;
  o.batch = batch;
  o.ack = ack;
  o.progress = false;
  o.drain_s = 1;
  return o;
}

}  // namespace tianhe::tools::bench
