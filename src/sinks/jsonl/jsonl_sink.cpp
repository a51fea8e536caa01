#include "sinks/jsonl/jsonl_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/extensions.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/common/record.h"

namespace tianhe::sinks::jsonl {
namespace {

using config::Field;
using config::Kind;
using config::kMs;
using config::kSec;
using P = config::Parsed;

constexpr Field<JsonlConfig> kFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Append every report as a JSON line to `path`.",
     .set = [](JsonlConfig& c, const P& p) { c.enabled = p.b; }},
    {.key = "path",
     .kind = Kind::kString,
     .default_text = "\"<data_dir>/reports.jsonl\"",
     .doc = "The file; its cursor file is path + \".cursor\".",
     .set = [](JsonlConfig& c, const P& p) { c.path = p.s; },
     .check = config::check_non_empty},
    {.key = "batch_reports",
     .kind = Kind::kInt,
     .default_text = "16384",
     .doc = "Reports appended per write (one fsync) at most.",
     .set = [](JsonlConfig& c, const P& p) { c.batch_reports = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 1 << 20},
    {.key = "commit_interval",
     .kind = Kind::kDuration,
     .default_text = "\"100ms\"",
     .doc = "A partial batch waits this long to fill.",
     .set =
         [](JsonlConfig& c, const P& p) {
           c.commit_interval = config::to_duration<std::chrono::milliseconds>(p.i);
         },
     .min = 0,
     .max = 10 * kSec,
     .unit_ns = kMs},
};

constexpr config::Section<JsonlConfig> kSection = {
    .header = "sinks.jsonl",
    .doc = "A JSON-lines file of every report (off by default; see docs/extending.md).",
    .fields = kFields};

std::string finish(JsonlConfig& c, std::string_view data_dir) {
  if (c.path.empty()) c.path = (std::filesystem::path(data_dir) / "reports.jsonl").string();
  return "";
}

std::string errno_message(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

}  // namespace

config::ConfigTable config_table() {
  return config::table(kSection, finish);
}

JsonlWriter::JsonlWriter(std::string path, std::shared_ptr<const pipeline::Registry> registry)
    : path_(std::move(path)), registry_(std::move(registry)) {}

JsonlWriter::~JsonlWriter() {
  close();
}

Result<std::vector<uint64_t>> JsonlWriter::open(uint32_t shards) {
  close();
  std::vector<uint64_t> cursors(shards, 0);
  uint64_t length = 0;
  std::ifstream in(path_ + ".cursor");
  if (in) {
    // "length <bytes>" then "shard <index> <offset>" lines.
    std::string word;
    while (in >> word) {
      if (word == "length") {
        in >> length;
      } else if (word == "shard") {
        uint32_t i = 0;
        uint64_t off = 0;
        in >> i >> off;
        if (i < shards) cursors[i] = off;
      }
    }
  }
  const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return make_error(errno_message("sinks.jsonl.path: cannot open " + path_));
  // Lines written after the last saved cursor are replayed from the log: cut them off.
  if (::ftruncate(fd_, static_cast<off_t>(length)) != 0 ||
      ::lseek(fd_, static_cast<off_t>(length), SEEK_SET) < 0) {
    return make_error(errno_message("sinks.jsonl.path: cannot truncate " + path_));
  }
  size_ = length;
  return cursors;
}

Result<void> JsonlWriter::save_cursors(std::span<const ShardCursor> cursors) {
  std::ostringstream os;
  os << "length " << size_ << "\n";
  for (const ShardCursor& c : cursors) os << "shard " << c.shard << " " << c.offset << "\n";
  const std::string tmp = path_ + ".cursor.tmp";
  const std::string text = os.str();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(errno_message("cannot write " + tmp));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fdatasync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), (path_ + ".cursor").c_str()) != 0) {
    return make_error(errno_message("cannot write " + path_ + ".cursor"));
  }
  return {};
}

WriteStatus JsonlWriter::write(const Batch& batch, bool durable, std::string& error) {
  buffer_.clear();
  for (const core::Report& r : batch.reports) {
    append_record_json(buffer_, r, registry_.get());
    buffer_ += '\n';
  }
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = errno_message("write " + path_);
      return WriteStatus::kRetry;  // reopen: the file is cut back to the saved length
    }
    done += static_cast<size_t>(n);
  }
  size_ += buffer_.size();
  // The cursors are saved with every write, after the data is on disk: the file never holds a
  // line whose cursor is not saved, except past `length`, which open() cuts off.
  (void)durable;
  if (::fdatasync(fd_) != 0) {
    error = errno_message("fdatasync " + path_);
    return WriteStatus::kRetry;
  }
  if (auto r = save_cursors(batch.cursors); !r.ok()) {
    error = r.error().message;
    return WriteStatus::kRetry;
  }
  return WriteStatus::kAccepted;
}

void JsonlWriter::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void register_extension(runtime::Extensions& extensions) {
  runtime::SinkSpec spec;
  spec.name = "jsonl";
  spec.config = config_table();
  spec.enabled = [](const std::any& c) { return std::any_cast<const JsonlConfig&>(c).enabled; };
  spec.start = [](const std::any& c, const runtime::GatewayContext& gateway,
                  std::string_view instance) -> Result<std::unique_ptr<runtime::SinkInstance>> {
    const auto& cfg = std::any_cast<const JsonlConfig&>(c);
    ConsumerOptions o;
    o.name = std::string(instance);
    o.batch_reports = cfg.batch_reports;
    o.commit_interval = cfg.commit_interval;
    o.tracing = gateway.tracing;
    auto consumer = LogConsumer::start(std::move(o), gateway.log, gateway.logs,
                                       std::make_unique<JsonlWriter>(cfg.path, gateway.registry));
    if (!consumer) return consumer.error();
    return std::unique_ptr<runtime::SinkInstance>(
        new ConsumerSinkInstance(std::move(consumer.value())));
  };
  extensions.add_sink(std::move(spec));
}

}  // namespace tianhe::sinks::jsonl
