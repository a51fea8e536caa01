// Prometheus text exposition format 0.0.4:
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
#include "core/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/assert.h"

namespace tianhe::core {

namespace {

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

// Label names exclude ':' and names starting with "__" are reserved for Prometheus itself.
bool valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

// HELP escapes backslash and newline; label values also escape the double quote.
void append_escaped(std::string& out, std::string_view text, bool quote) {
  for (const char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '"':
        if (quote) {
          out += "\\\"";
        } else {
          out += c;
        }
        break;
      default: out += c;
    }
  }
}

// Sorted by label name, so the same labels given in another order name the same sample.
// Returns false (after TH_BUG) when a name is invalid or repeated.
bool canonical_labels(const Labels& in, Labels& out) {
  out = in;
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < out.size(); ++i) {
    const bool ok = valid_label_name(out[i].first) && (i == 0 || out[i].first != out[i - 1].first);
    TH_BUG(ok, "label names must match [a-zA-Z_][a-zA-Z0-9_]* and be unique per sample");
    if (!ok) return false;
  }
  return true;
}

void append_labels(std::string& out, const Labels& labels, std::string_view le = {}) {
  if (labels.empty() && le.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    append_escaped(out, v, true);
    out += '"';
  }
  if (!le.empty()) {
    if (!first) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

std::string read_file(const char* path) {
  std::ifstream in(path);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string format_prom_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == 0) return "0";  // also -0
  std::array<char, 400> buf{};
  // Integral values (counts, bytes) print as plain integers; everything else as the shortest
  // text that parses back to the same double.
  const bool integral = std::trunc(value) == value && std::fabs(value) < 1e21;
  const auto res =
      integral ? std::to_chars(buf.data(), buf.data() + buf.size(), value, std::chars_format::fixed)
               : std::to_chars(buf.data(), buf.data() + buf.size(), value);
  TH_CHECK(res.ec == std::errc(), "400 chars hold any double");
  return std::string(buf.data(), res.ptr);
}

struct PromWriter::Family {
  struct Sample {
    double value = 0;                  // counter, gauge
    std::vector<double> upper_bounds;  // histogram
    std::vector<uint64_t> counts;      // histogram, non-cumulative, upper_bounds.size() + 1
    double sum = 0;                    // histogram
  };
  std::string help;
  std::string type;
  std::map<Labels, Sample> samples;
};

PromWriter::Family* PromWriter::family(std::string_view name, std::string_view help,
                                       std::string_view type) {
  const bool name_ok = valid_metric_name(name);
  TH_BUG(name_ok, "metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  if (!name_ok) return nullptr;
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto f = std::make_shared<Family>();
    f->help = std::string(help);
    f->type = std::string(type);
    it = families_.emplace(std::string(name), std::move(f)).first;
  }
  const bool same_type = it->second->type == type;
  TH_BUG(same_type, "a metric family is registered with two different types");
  return same_type ? it->second.get() : nullptr;
}

void PromWriter::scalar(std::string_view type, std::string_view name, std::string_view help,
                        const Labels& labels, double value) {
  Family* f = family(name, help, type);
  Labels key;
  if (f == nullptr || !canonical_labels(labels, key)) return;
  f->samples[std::move(key)].value += value;
}

void PromWriter::counter(std::string_view name, std::string_view help, const Labels& labels,
                         double value) {
  scalar("counter", name, help, labels, value);
}

void PromWriter::gauge(std::string_view name, std::string_view help, const Labels& labels,
                       double value) {
  scalar("gauge", name, help, labels, value);
}

void PromWriter::histogram(std::string_view name, std::string_view help, const Labels& labels,
                           std::span<const double> upper_bounds, std::span<const uint64_t> counts,
                           double sum) {
  bool shape_ok = counts.size() == upper_bounds.size() + 1;
  for (size_t i = 0; shape_ok && i < upper_bounds.size(); ++i) {
    shape_ok = std::isfinite(upper_bounds[i]) && (i == 0 || upper_bounds[i - 1] < upper_bounds[i]);
  }
  TH_BUG(shape_ok, "histogram bounds must be finite and ascending, counts one longer");
  if (!shape_ok) return;
  Family* f = family(name, help, "histogram");
  Labels key;
  if (f == nullptr || !canonical_labels(labels, key)) return;
  for (const auto& [k, v] : key) {
    TH_BUG(k != "le", "'le' is reserved for histogram buckets");
    if (k == "le") return;
  }
  auto [it, inserted] = f->samples.try_emplace(std::move(key));
  Family::Sample& s = it->second;
  if (inserted) {
    s.upper_bounds.assign(upper_bounds.begin(), upper_bounds.end());
    s.counts.assign(counts.begin(), counts.end());
    s.sum = sum;
    return;
  }
  const bool same_bounds = std::equal(s.upper_bounds.begin(), s.upper_bounds.end(),
                                      upper_bounds.begin(), upper_bounds.end());
  TH_BUG(same_bounds, "histogram samples summed across shards must share their bounds");
  if (!same_bounds) return;
  for (size_t i = 0; i < counts.size(); ++i) s.counts[i] += counts[i];
  s.sum += sum;
}

std::string PromWriter::render() const {
  std::string out;
  out.reserve(families_.size() * 128);
  for (const auto& [name, f] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped(out, f->help, false);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += f->type;
    out += '\n';
    for (const auto& [labels, s] : f->samples) {
      if (f->type != "histogram") {
        out += name;
        append_labels(out, labels);
        out += ' ';
        out += format_prom_value(s.value);
        out += '\n';
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t i = 0; i < s.counts.size(); ++i) {
        cumulative += s.counts[i];
        out += name;
        out += "_bucket";
        const bool inf = i == s.upper_bounds.size();
        append_labels(out, labels, inf ? "+Inf" : format_prom_value(s.upper_bounds[i]));
        out += ' ';
        out += format_prom_value(static_cast<double>(cumulative));
        out += '\n';
      }
      out += name;
      out += "_sum";
      append_labels(out, labels);
      out += ' ';
      out += format_prom_value(s.sum);
      out += '\n';
      out += name;
      out += "_count";
      append_labels(out, labels);
      out += ' ';
      out += format_prom_value(static_cast<double>(cumulative));
      out += '\n';
    }
  }
  return out;
}

void MetricsRegistry::add(Collector collector) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(collector));
}

std::string MetricsRegistry::render() const {
  std::vector<Collector> collectors;
  {
    // Run the collectors outside the lock so that one may register another without deadlock.
    std::lock_guard lock(mu_);
    collectors = collectors_;
  }
  PromWriter w;
  for (const auto& c : collectors) c(w);
  write_process_metrics(w);
  return w.render();
}

void write_log2_us_histogram(PromWriter& w, std::string_view name, std::string_view help,
                             const Labels& labels, std::span<const uint64_t> buckets,
                             double sum_seconds) {
  if (buckets.empty()) return;
  // Bucket i counts values < 2^i us; the last bucket is the overflow (+Inf).
  std::vector<double> bounds(buckets.size() - 1);
  for (size_t i = 0; i < bounds.size(); ++i) bounds[i] = std::ldexp(1.0, static_cast<int>(i)) / 1e6;
  w.histogram(name, help, labels, bounds, buckets, sum_seconds);
}

uint64_t process_rss_bytes() noexcept {
  // statm: size resident shared text lib data dt, in pages.
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0;
  unsigned long long resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  const long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? resident * static_cast<uint64_t>(page) : 0;
}

void write_process_metrics(PromWriter& w) {
  w.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {},
          static_cast<double>(process_rss_bytes()));

  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  // proc(5) /proc/self/stat: fields after the parenthesised comm; utime (14), stime (15),
  // num_threads (20), starttime (22, clock ticks since boot).
  const std::string stat = read_file("/proc/self/stat");
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos && ticks > 0) {
    std::istringstream in(stat.substr(paren + 2));
    std::vector<std::string> f;
    for (std::string tok; in >> tok;) f.push_back(tok);
    // f[0] is field 3 (state).
    if (f.size() >= 20) {
      const double utime = std::strtod(f[11].c_str(), nullptr);
      const double stime = std::strtod(f[12].c_str(), nullptr);
      w.counter("process_cpu_seconds_total", "User and system CPU time spent in seconds.", {},
                (utime + stime) / ticks);
      w.gauge("process_threads", "Number of OS threads in the process.", {},
              std::strtod(f[17].c_str(), nullptr));
      const std::string proc_stat = read_file("/proc/stat");
      const size_t bt = proc_stat.find("\nbtime ");
      if (bt != std::string::npos) {
        const double boot = std::strtod(proc_stat.c_str() + bt + 7, nullptr);
        const double start = std::strtod(f[19].c_str(), nullptr) / ticks;
        w.gauge("process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.", {}, boot + start);
      }
    }
  }

  if (DIR* d = opendir("/proc/self/fd")) {
    int64_t n = 0;
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(d);
    // The directory stream itself holds one descriptor.
    w.gauge("process_open_fds", "Number of open file descriptors.", {},
            static_cast<double>(n > 0 ? n - 1 : 0));
  }
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    w.gauge("process_max_fds", "Maximum number of open file descriptors.", {},
            static_cast<double>(lim.rlim_cur));
  }
  w.counter("tianhe_bugs_total", "Internal invariant violations (TH_BUG) seen in release builds.",
            {}, static_cast<double>(core::bug_counter().load(std::memory_order_relaxed)));
}

double sum_samples(std::string_view text, std::string_view name, std::string_view filter) {
  double sum = 0;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (line.size() <= name.size() || line.substr(0, name.size()) != name) continue;
    const char next = line[name.size()];
    if (next != '{' && next != ' ') continue;
    if (!filter.empty() && line.find(filter) == std::string_view::npos) continue;
    const std::string value(line.substr(line.rfind(' ') + 1));
    sum += std::strtod(value.c_str(), nullptr);
  }
  return sum;
}

}  // namespace tianhe::core
