// `tianhe top`: the running gateway's self-diagnosis (GET /debug/top) as a terminal view,
// redrawn every interval: a header, the shards, the slowest stages, the codecs, the sinks.
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "app/commands.h"
#include "control/config.h"
#include "core/args.h"
#include "core/clock.h"
#include "core/config_table.h"
#include "core/http_get.h"

namespace tianhe::app {
namespace {

using Json = nlohmann::json;

std::atomic<bool> g_quit{false};

void on_quit_signal(int) {
  g_quit.store(true);
}

/// Puts a terminal into "one key at a time, no echo" for reading q, and back on destruction.
class RawKeys {
 public:
  RawKeys() {
    if (::isatty(STDIN_FILENO) == 0 || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);  // ISIG stays: Ctrl-C is a signal
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawKeys() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawKeys(const RawKeys&) = delete;
  RawKeys& operator=(const RawKeys&) = delete;
  bool active() const { return active_; }

 private:
  termios saved_{};
  bool active_ = false;
};

double num(const Json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string fmt(const char* format, double a) {
  char b[64];
  std::snprintf(b, sizeof b, format, a);
  return b;
}

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  char b[64];
  if (s >= 3600) {
    std::snprintf(b, sizeof b, "%lldh%02lldm%02llds", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(b, sizeof b, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return b;
}

void line(std::string& out, const char* format, ...) __attribute__((format(printf, 2, 3)));
void line(std::string& out, const char* format, ...) {
  char b[512];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(b, sizeof b, format, ap);
  va_end(ap);
  out += b;
  out += '\n';
}

/// The view of one /debug/top answer.
std::string render(const Json& j, const std::string& address) {
  std::string out;
  const Json& sum = j.contains("summary") ? j["summary"] : Json::object();
  line(out, "tianhe top  %s  up %s  rates over %.1f s", address.c_str(),
       duration_text(num(j, "uptime_seconds")).c_str(), num(j, "window_seconds"));
  line(out, "reports/s  in %.0f  accepted %.0f  rejected %.0f   log backlog %s   shards %.0f",
       num(sum, "reports_in_per_second"), num(sum, "reports_accepted_per_second"),
       num(sum, "reports_rejected_per_second"),
       config::format_bytes_approx(static_cast<uint64_t>(num(sum, "log_backlog_bytes"))).c_str(),
       num(sum, "shards"));
  out += '\n';
  line(out, "SHARDS");
  line(out, "%-6s %6s %6s %9s %15s %15s %11s %10s", "SHARD", "BUSY%", "CPU%", "TURNS/S",
       "RECV mean/p99", "APPEND mean/p99", "ACCEPTED/S", "BACKLOG");
  for (const Json& s : j.value("shards", Json::array())) {
    const Json& rb = s.contains("receive_batch") ? s["receive_batch"] : Json::object();
    const Json& ab = s.contains("append_batch") ? s["append_batch"] : Json::object();
    line(out, "%-6.0f %6.1f %6.1f %9.0f %15s %15s %11.0f %10s", num(s, "shard"),
         num(s, "busy_percent"), 100 * num(s, "cpu_seconds_per_second"),
         num(s, "loop_turns_per_second"),
         (fmt("%.1f", num(rb, "mean")) + "/" + fmt("%.0f", num(rb, "p99"))).c_str(),
         (fmt("%.1f", num(ab, "mean")) + "/" + fmt("%.0f", num(ab, "p99"))).c_str(),
         num(s, "reports_accepted_per_second"),
         config::format_bytes_approx(static_cast<uint64_t>(num(s, "log_backlog_bytes"))).c_str());
  }
  out += '\n';
  line(out, "SLOWEST STAGES (last %.1f s)", num(j, "stage_window_seconds"));
  line(out, "%-28s %9s %9s %9s %10s", "STAGE", "P50_MS", "P99_MS", "MAX_MS", "COUNT");
  for (const Json& s : j.value("stages", Json::array())) {
    line(out, "%-28s %9.3f %9.3f %9.3f %10.0f", s.value("stage", "").c_str(), num(s, "p50_ms"),
         num(s, "p99_ms"), num(s, "max_ms"), num(s, "count"));
  }
  out += '\n';
  line(out, "CODECS");
  const Json codecs = j.value("codecs", Json::array());
  if (codecs.empty()) line(out, "(none in use)");
  if (!codecs.empty()) {
    line(out, "%-20s %10s %10s %7s", "CODEC", "CALLS/S", "FAILS/S", "CPU%");
  }
  for (const Json& c : codecs) {
    line(out, "%-20s %10.0f %10.0f %7.1f", c.value("codec", "").c_str(), num(c, "calls_per_second"),
         num(c, "failures_per_second"), 100 * num(c, "cpu_seconds_per_second"));
  }
  out += '\n';
  line(out, "SINKS");
  const Json sinks = j.value("sinks", Json::array());
  if (sinks.empty()) line(out, "(none running)");
  if (!sinks.empty()) {
    line(out, "%-20s %-11s %12s %10s %8s %7s", "SINK", "STATE", "DELIVERED/S", "LAG", "LAG_S",
         "CPU%");
  }
  for (const Json& s : sinks) {
    const bool cpu =
        s.contains("cpu_seconds_per_second") && s["cpu_seconds_per_second"].is_number();
    line(out, "%-20s %-11s %12.0f %10s %8.1f %7s", s.value("name", "").c_str(),
         s.value("state", "").c_str(), num(s, "delivered_per_second"),
         config::format_bytes_approx(static_cast<uint64_t>(num(s, "lag_bytes"))).c_str(),
         num(s, "lag_seconds"),
         cpu ? fmt("%.1f", 100 * num(s, "cpu_seconds_per_second")).c_str() : "-");
  }
  return out;
}

/// Waits up to `ms` for q (or Ctrl-C); true when the view should end.
bool wait_or_quit(int ms, bool keys) {
  const int64_t deadline = core::mono_ns() + int64_t{ms} * 1'000'000;
  while (!g_quit.load()) {
    const int64_t left_ms = (deadline - core::mono_ns()) / 1'000'000;
    if (left_ms <= 0) return false;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    const int r = ::poll(&p, keys ? 1 : 0, static_cast<int>(left_ms));
    if (r > 0 && (p.revents & POLLIN) != 0) {
      char c = 0;
      if (::read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q')) return true;
    }
  }
  return true;
}

}  // namespace

int cmd_top(int argc, char** argv) {
  if (core::wants_help(argc, argv)) {
    std::puts(R"(tianhe top — a running gateway's self-diagnosis, redrawn every second

Asks the gateway's HTTP API (GET /debug/top) at http.listen of the configuration and shows:
the reports per second in, accepted and rejected, the log backlog; per shard the busy share of
its loop, its CPU, loop turns, receive and append batch sizes and backlog; the slowest stages of
the last seconds (p50/p99/max); each codec's calls, failures and CPU; each sink's deliveries,
lag, state and CPU. q or Ctrl-C ends it.

Options:
  --config FILE     (default ./tianhe.toml, else built-in defaults): where the gateway listens
  --http HOST:PORT  ask this address instead
  --once            print one view as plain text and exit
  --interval 1s     time between two views (at least 100ms)

Examples:
  tianhe top --config examples/tianhe.toml
  tianhe top --http 127.0.0.1:8080 --once)");
    return 0;
  }
  auto args = core::Args::parse(argc, argv, 2, {"once"}, {"config", "http", "interval"});
  if (!args.ok()) return core::usage_error("top", args.error().message);
  auto interval = args->seconds("interval", 1.0, 0.1);
  if (!interval.ok()) return core::usage_error("top", interval.error().message);
  config::Endpoint at;
  if (args->has("http")) {
    auto ep = config::parse_endpoint(args->str("http"), "--http");
    if (!ep.ok()) return core::usage_error("top", ep.error().message);
    at = *ep;
  } else {
    const std::string path = args->str("config");
    auto cfg = path.empty() && !std::filesystem::exists("tianhe.toml")
                   ? control::parse_config("", "<defaults>", runtime::builtin_extensions(), "")
                   : control::load_config(path.empty() ? "tianhe.toml" : path, "");
    if (!cfg.ok()) return core::usage_error("top", cfg.error().message);
    at = cfg->http.listen;
  }
  const std::string host = at.host == "0.0.0.0" ? "127.0.0.1" : at.host;
  const std::string address = host + ":" + std::to_string(at.port);
  const bool once = args->has("once");
  const bool tty = !once && ::isatty(STDOUT_FILENO) != 0;
  // Fetches one view; an error says where it asked and what to pass instead.
  const auto fetch = [&](std::string& view) -> bool {
    auto reply = core::http_get(host, at.port, "/debug/top", 5000);
    if (!reply.ok()) {
      view = "tianhe top: " + reply.error().message + "; is the gateway running with the HTTP " +
             "API on " + address + "? (pass --config or --http)";
      return false;
    }
    if (reply->status != 200) {
      view = "tianhe top: the gateway at " + address + " answered " +
             std::to_string(reply->status) + ": " + reply->body;
      return false;
    }
    const Json j = Json::parse(reply->body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("shards")) {
      view = "tianhe top: the answer of " + address + " is not /debug/top's JSON";
      return false;
    }
    view = render(j, address);
    return true;
  };
  std::string view;
  if (!fetch(view)) {
    std::fprintf(stderr, "%s\n", view.c_str());
    return 1;
  }
  if (once) {
    std::fputs(view.c_str(), stdout);
    return 0;
  }
  g_quit.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_quit_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  RawKeys keys;
  // The alternate screen keeps the user's scrollback; left (and the cursor shown) on any exit.
  if (tty) std::fputs("\x1b[?1049h\x1b[?25l", stdout);
  const auto interval_ms = static_cast<int>(std::lround(*interval * 1000));
  bool first = true;
  while (true) {
    if (tty) {
      std::fputs("\x1b[H\x1b[2J", stdout);
    } else if (!first) {
      std::fputs("\n", stdout);
    }
    first = false;
    std::fputs(view.c_str(), stdout);
    if (tty) std::fputs(keys.active() ? "\nq: quit\n" : "\nCtrl-C: quit\n", stdout);
    std::fflush(stdout);
    if (wait_or_quit(interval_ms, keys.active())) break;
    // A gateway that stops answering is shown as such; top keeps asking.
    fetch(view);
  }
  if (tty) std::fputs("\x1b[?25h\x1b[?1049l", stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace tianhe::app
