#include "sinks/common/cursor_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tianhe::sinks {

Result<CursorState> load_cursor_file(const std::string& path, uint32_t shards) {
  CursorState st;
  st.shards.assign(shards, 0);
  std::ifstream in(path);
  if (!in) {
    if (std::filesystem::exists(path)) return make_error("cannot read cursor file " + path);
    return st;
  }
  std::string word;
  while (in >> word) {
    if (word == "shard") {
      uint32_t i = 0;
      uint64_t off = 0;
      if (!(in >> i >> off)) return make_error("cursor file " + path + " is malformed");
      if (i < shards) st.shards[i] = off;
    } else {
      uint64_t v = 0;
      if (!(in >> v)) return make_error("cursor file " + path + " is malformed");
      st.values[word] = v;
    }
  }
  return st;
}

Result<void> save_cursor_file(const std::string& path, std::span<const ShardCursor> cursors,
                              const std::map<std::string, uint64_t>& values) {
  std::ostringstream os;
  for (const auto& [k, v] : values) os << k << " " << v << "\n";
  for (const ShardCursor& c : cursors) os << "shard " << c.shard << " " << c.offset << "\n";
  const std::string text = os.str();
  const std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error("cannot write " + tmp + ": " + std::strerror(errno));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fdatasync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return make_error("cannot write " + path + ": " + std::strerror(errno));
  }
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

}  // namespace tianhe::sinks
