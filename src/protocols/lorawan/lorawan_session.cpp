#include "protocols/lorawan/lorawan_session.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <unordered_set>

#include "core/clock.h"
#include "core/crc32c.h"
#include "core/hash.h"

namespace tianhe::protocols::lorawan {
namespace {

// Journal record types.
constexpr uint8_t kUplink = 1;
constexpr uint8_t kDownlink = 2;
constexpr uint8_t kState = 3;
constexpr size_t kStateBytes = 8 + 4 + 4 + 4 + 4 + 2 + 1 + 16 + 16;
constexpr size_t kMaxRecordBytes = 2 + kStateBytes + 4;
constexpr size_t kChunkBytes = 64 * 1024;  // compaction's write buffer

bool parse_hex(std::string_view s, uint8_t* out, size_t bytes) {
  if (s.size() != 2 * bytes) return false;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned v = 0;
    for (int j = 0; j < 2; ++j) {
      const char c = s[2 * i + j];
      unsigned d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        return false;
      }
      v = v * 16 + d;
    }
    out[i] = static_cast<uint8_t>(v);
  }
  return true;
}

// An EUI or DevAddr as written (most significant digit first) into an integer.
bool parse_hex_int(std::string_view s, size_t bytes, uint64_t& v) {
  uint8_t b[8];
  if (!parse_hex(s, b, bytes)) return false;
  v = 0;
  for (size_t i = 0; i < bytes; ++i) v = (v << 8) | b[i];
  return true;
}

uint64_t get(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Applies one record's payload to the table.
void apply(SessionTable& t, uint8_t type, const uint8_t* p, size_t len) {
  if (len < 12) return;
  const int64_t i = t.find_eui(get(p, 8));
  if (i < 0) return;  // no longer in the keys file
  Device& d = t[static_cast<uint32_t>(i)];
  if (type == kUplink) {
    d.fcnt_up = static_cast<uint32_t>(get(p + 8, 4));
    d.has_fcnt = true;
  } else if (type == kDownlink) {
    d.fcnt_down = static_cast<uint32_t>(get(p + 8, 4));
  } else if (type == kState && len == kStateBytes) {
    const uint8_t flags = p[26];
    d.fcnt_up = static_cast<uint32_t>(get(p + 12, 4));
    d.fcnt_down = static_cast<uint32_t>(get(p + 16, 4));
    d.has_fcnt = (flags & 2) != 0;
    if (d.otaa) {
      // An OTAA session is what the journal says; an ABP session's keys and address are the
      // keys file's (only its counters are restored).
      d.dev_addr = static_cast<uint32_t>(get(p + 8, 4));
      d.join_nonce = static_cast<uint32_t>(get(p + 20, 4));
      d.dev_nonce = static_cast<uint16_t>(get(p + 24, 2));
      d.has_session = (flags & 1) != 0;
      d.has_dev_nonce = (flags & 4) != 0;
      std::memcpy(d.nwk_s_key.data(), p + 27, 16);
      std::memcpy(d.app_s_key.data(), p + 43, 16);
    }
  }
}

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// One record (type, length, payload, CRC-32C of type..payload) into `out` (kMaxRecordBytes);
// returns its size.
size_t encode_record(uint8_t type, const Device& d, uint8_t* out) noexcept {
  size_t n = 2;
  auto put_le = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out[n++] = static_cast<uint8_t>(v >> (8 * i));
  };
  out[0] = type;
  put_le(d.dev_eui, 8);
  if (type == kUplink) {
    put_le(d.fcnt_up, 4);
  } else if (type == kDownlink) {
    put_le(d.fcnt_down, 4);
  } else {
    put_le(d.dev_addr, 4);
    put_le(d.fcnt_up, 4);
    put_le(d.fcnt_down, 4);
    put_le(d.join_nonce, 4);
    put_le(d.dev_nonce, 2);
    out[n++] = static_cast<uint8_t>((d.has_session ? 1 : 0) | (d.has_fcnt ? 2 : 0) |
                                    (d.has_dev_nonce ? 4 : 0));
    std::memcpy(out + n, d.nwk_s_key.data(), 16);
    std::memcpy(out + n + 16, d.app_s_key.data(), 16);
    n += 32;
  }
  out[1] = static_cast<uint8_t>(n - 2);
  put_le(core::crc32c(out, n), 4);
  return n;
}

}  // namespace

Result<KeysFile> load_keys_file(const std::string& path, std::string_view key) {
  const std::string where = std::string(key) + ": " + path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return make_error(where + ": " + std::strerror(errno) +
                      "; create it with [[devices]] and [[gateways]] (docs/protocols/lorawan.md)");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return make_error(where + " has mode " + mode + "; it holds keys: run chmod 600 " + path);
  }
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return make_error(where + ": " + std::string(e.description()));
  }
  KeysFile out;
  for (auto&& [k, v] : root) {
    if (k.str() != "devices" && k.str() != "gateways") {
      return make_error(where + ": unknown key " + std::string(k.str()) +
                        "; the file holds [[devices]] and [[gateways]]");
    }
  }
  auto entries = [&](std::string_view name, std::vector<const toml::table*>& list) -> Result<void> {
    const toml::node* n = root.get(name);
    if (n == nullptr) return {};
    const toml::array* a = n->as_array();
    if (a == nullptr)
      return make_error(where + ": " + std::string(name) + ": write each as [[" +
                        std::string(name) + "]]");
    for (size_t i = 0; i < a->size(); ++i) {
      if (!a->get(i)->is_table()) {
        return make_error(where + ": " + std::string(name) + "[" + std::to_string(i) +
                          "]: expected a table; write each as [[" + std::string(name) + "]]");
      }
      list.push_back(a->get(i)->as_table());
    }
    return {};
  };
  std::vector<const toml::table*> devs, gws;
  if (auto r = entries("devices", devs); !r.ok()) return r.error();
  if (auto r = entries("gateways", gws); !r.ok()) return r.error();
  std::unordered_set<uint64_t> seen;
  for (size_t i = 0; i < devs.size(); ++i) {
    const toml::table& t = *devs[i];
    const std::string at = where + ": devices[" + std::to_string(i) + "].";
    auto str = [&](std::string_view f) -> std::optional<std::string> {
      return t[f].value<std::string>();
    };
    for (auto&& [k, v] : t) {
      static constexpr std::string_view kKeys[] = {"dev_eui",   "join_eui",  "dev_addr",
                                                   "nwk_s_key", "app_s_key", "app_key"};
      if (std::find(std::begin(kKeys), std::end(kKeys), k.str()) == std::end(kKeys)) {
        return make_error(at + std::string(k.str()) +
                          ": unknown key; known keys: dev_eui, join_eui, dev_addr, nwk_s_key, "
                          "app_s_key, app_key");
      }
    }
    Device d;
    uint64_t v = 0;
    auto eui = str("dev_eui");
    if (!eui || !parse_hex_int(*eui, 8, v))
      return make_error(at + "dev_eui: expected 16 hex digits");
    if (v == 0) return make_error(at + "dev_eui: 0 is not a device id; use the device's DevEUI");
    d.dev_eui = v;
    if (!seen.insert(v).second) return make_error(at + "dev_eui: " + *eui + " is listed twice");
    auto key16 = [&](std::string_view f, Key& k) -> Result<bool> {
      auto s = str(f);
      if (!s) return false;
      if (!parse_hex(*s, k.data(), 16))
        return make_error(at + std::string(f) + ": expected 32 hex digits");
      return true;
    };
    auto app_key = key16("app_key", d.app_key);
    if (!app_key.ok()) return app_key.error();
    auto nwk = key16("nwk_s_key", d.nwk_s_key);
    if (!nwk.ok()) return nwk.error();
    auto app = key16("app_s_key", d.app_s_key);
    if (!app.ok()) return app.error();
    auto addr = str("dev_addr");
    if (*app_key) {
      if (*nwk || *app || addr) {
        return make_error(at +
                          "app_key: give either app_key (OTAA) or dev_addr, nwk_s_key and "
                          "app_s_key (ABP), not both");
      }
      d.otaa = true;
      if (auto j = str("join_eui")) {
        if (!parse_hex_int(*j, 8, v)) return make_error(at + "join_eui: expected 16 hex digits");
        d.join_eui = v;
      }
    } else {
      if (!*nwk || !*app || !addr) {
        return make_error(at +
                          "dev_addr: an ABP device needs dev_addr, nwk_s_key and app_s_key "
                          "(or give app_key for OTAA)");
      }
      if (!parse_hex_int(*addr, 4, v)) return make_error(at + "dev_addr: expected 8 hex digits");
      d.dev_addr = static_cast<uint32_t>(v);
      d.has_session = true;
    }
    out.devices.push_back(d);
  }
  for (size_t i = 0; i < gws.size(); ++i) {
    const std::string at = where + ": gateways[" + std::to_string(i) + "].";
    auto eui = (*gws[i])["eui"].value<std::string>();
    uint64_t v = 0;
    if (!eui || !parse_hex_int(*eui, 8, v)) return make_error(at + "eui: expected 16 hex digits");
    out.gateways.push_back({v});
  }
  return out;
}

SessionTable::SessionTable(std::vector<Device> devices) : devices_(std::move(devices)) {
  size_t cap = 16;
  while (cap < devices_.size() * 2) cap <<= 1;
  addr_slots_.assign(cap, kEmpty);
  eui_slots_.assign(cap, kEmpty);
  const uint32_t mask = static_cast<uint32_t>(cap - 1);
  for (uint32_t i = 0; i < devices_.size(); ++i) {
    uint32_t s = hash32(devices_[i].dev_eui) & mask;
    while (eui_slots_[s] != kEmpty) s = (s + 1) & mask;
    eui_slots_[s] = i + 1;
  }
  rebuild();
}

uint32_t SessionTable::hash32(uint64_t x) noexcept {
  return static_cast<uint32_t>(core::mix64(x));
}

int64_t SessionTable::find_eui(uint64_t dev_eui) const noexcept {
  const uint32_t mask = static_cast<uint32_t>(eui_slots_.size() - 1);
  for (uint32_t s = hash32(dev_eui) & mask;; s = (s + 1) & mask) {
    const uint32_t v = eui_slots_[s];
    if (v == kEmpty) return -1;
    if (devices_[v - 1].dev_eui == dev_eui) return v - 1;
  }
}

void SessionTable::insert_addr(uint32_t i) noexcept {
  const uint32_t mask = static_cast<uint32_t>(addr_slots_.size() - 1);
  uint32_t s = hash32(devices_[i].dev_addr) & mask;
  while (addr_slots_[s] != kEmpty && addr_slots_[s] != kStale) s = (s + 1) & mask;
  if (addr_slots_[s] == kStale) --stale_;
  addr_slots_[s] = i + 1;
}

void SessionTable::set_addr(uint32_t i, uint32_t dev_addr) noexcept {
  Device& d = devices_[i];
  if (d.has_session) {
    const uint32_t mask = static_cast<uint32_t>(addr_slots_.size() - 1);
    for (uint32_t s = hash32(d.dev_addr) & mask; addr_slots_[s] != kEmpty; s = (s + 1) & mask) {
      if (addr_slots_[s] == i + 1) {
        addr_slots_[s] = kStale;
        ++stale_;
        break;
      }
    }
  } else {
    ++sessions_;
  }
  d.dev_addr = dev_addr;
  d.has_session = true;
  // Stale slots lengthen probes; past a quarter of the table, rebuild (rare: joins only).
  if (stale_ > addr_slots_.size() / 4) {
    rebuild();
  } else {
    insert_addr(i);
  }
}

void SessionTable::rebuild() noexcept {
  std::fill(addr_slots_.begin(), addr_slots_.end(), kEmpty);
  stale_ = 0;
  sessions_ = 0;
  for (uint32_t i = 0; i < devices_.size(); ++i) {
    if (!devices_[i].has_session) continue;
    ++sessions_;
    insert_addr(i);
  }
}

size_t SessionTable::bytes() const noexcept {
  return devices_.capacity() * sizeof(Device) +
         (addr_slots_.capacity() + eui_slots_.capacity()) * sizeof(uint32_t);
}

Result<SessionJournal> SessionJournal::open(const std::string& dir, SessionTable& table, bool sync,
                                            uint64_t compact_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error("protocols.lorawan: cannot create " + dir + ": " + ec.message());
  const std::string path = dir + "/sessions.journal";
  // Replay: records up to the first torn or corrupt one (a crash mid-write leaves at most the
  // last commit's records incomplete, and those were never relied on). A temporary file left
  // by a compaction that did not finish is ignored: until its rename the journal is the old
  // file, complete; it is overwritten below.
  {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      std::vector<uint8_t> buf;
      uint8_t chunk[65536];
      for (;;) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n <= 0) break;
        buf.insert(buf.end(), chunk, chunk + n);
      }
      ::close(fd);
      size_t at = 0;
      while (at + 2 + 4 <= buf.size()) {
        const uint8_t type = buf[at], len = buf[at + 1];
        if (at + 2 + len + 4 > buf.size()) break;
        const uint32_t crc = static_cast<uint32_t>(get(&buf[at + 2 + len], 4));
        if (core::crc32c(&buf[at], 2 + len) != crc) break;
        apply(table, type, &buf[at + 2], len);
        at += 2 + len + 4;
      }
    }
  }
  table.rebuild();
  SessionJournal j;
  j.sync_ = sync;
  j.dir_ = dir;
  j.path_ = path;
  j.tmp_path_ = path + ".tmp";
  j.compact_bytes_ = compact_bytes;
  j.chunk_ = std::make_unique<uint8_t[]>(kChunkBytes);
  j.pending_.reserve(64 * 1024);
  if (!j.write_compacted(table)) {
    return make_error("protocols.lorawan: cannot write " + j.tmp_path_ + " and rename it to " +
                      path + ": " + std::strerror(errno) +
                      "; check that gateway.data_dir is writable and has space");
  }
  return j;
}

bool SessionJournal::write_compacted(const SessionTable& table) noexcept {
  // One state record per device into a new file. The descriptor is opened with O_APPEND and,
  // once renamed, is the journal's: no reopen that could fail after the rename.
  const int fd = ::open(tmp_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  uint64_t bytes = 0;
  size_t used = 0;
  bool ok = true;
  for (uint32_t i = 0; i < table.size() && ok; ++i) {
    const Device& d = table[i];
    if (!(d.has_session || d.has_dev_nonce || d.fcnt_down != 0)) continue;
    if (used + kMaxRecordBytes > kChunkBytes) {
      ok = write_all(fd, chunk_.get(), used);
      bytes += used;
      used = 0;
    }
    used += encode_record(kState, d, chunk_.get() + used);
  }
  ok = ok && write_all(fd, chunk_.get(), used);
  bytes += used;
  // Durable before the rename makes it the journal; the rename durable (the directory synced)
  // before anything relies on what only the new file holds.
  ok = ok && (!sync_ || ::fdatasync(fd) == 0);
  ok = ok && ::rename(tmp_path_.c_str(), path_.c_str()) == 0;
  if (ok && sync_) {
    const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok = dfd >= 0 && ::fsync(dfd) == 0;
    if (dfd >= 0) ::close(dfd);
  }
  if (!ok) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp_path_.c_str());  // harmless when renamed: the name is gone then
    errno = err;
    return false;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  file_bytes_ = compacted_bytes_ = bytes;
  return true;
}

uint64_t SessionJournal::compact_threshold() const noexcept {
  return std::max(compact_bytes_, 4 * compacted_bytes_);
}

bool SessionJournal::compact(const SessionTable& table) noexcept {
  const int64_t t0 = core::mono_ns();
  const bool ok = write_compacted(table);
  last_compaction_ns_ = core::mono_ns() - t0;
  // The records gathered are in the table's state, hence in the new file when ok; when not,
  // they were never durable (commit() reports it) and the next commit compacts again.
  pending_.clear();
  must_compact_ = !ok;
  if (ok) {
    ++compactions_;
    ++syncs_;
  }
  return ok;
}

SessionJournal::SessionJournal(SessionJournal&& o) noexcept {
  *this = std::move(o);
}

SessionJournal& SessionJournal::operator=(SessionJournal&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
    sync_ = o.sync_;
    must_compact_ = o.must_compact_;
    dir_ = std::move(o.dir_);
    path_ = std::move(o.path_);
    tmp_path_ = std::move(o.tmp_path_);
    pending_ = std::move(o.pending_);
    chunk_ = std::move(o.chunk_);
    file_bytes_ = o.file_bytes_;
    compacted_bytes_ = o.compacted_bytes_;
    compact_bytes_ = o.compact_bytes_;
    syncs_ = o.syncs_;
    compactions_ = o.compactions_;
    last_compaction_ns_ = o.last_compaction_ns_;
  }
  return *this;
}

SessionJournal::~SessionJournal() {
  if (fd_ >= 0) ::close(fd_);
}

void SessionJournal::record(uint8_t type, const Device& d) noexcept {
  uint8_t r[kMaxRecordBytes];
  const size_t n = encode_record(type, d, r);
  pending_.insert(pending_.end(), r, r + n);
}

void SessionJournal::uplink(const Device& d) noexcept {
  record(kUplink, d);
}
void SessionJournal::downlink(const Device& d) noexcept {
  record(kDownlink, d);
}
void SessionJournal::join(const Device& d) noexcept {
  record(kState, d);
}

bool SessionJournal::commit(const SessionTable& table) noexcept {
  if (pending_.empty() && !must_compact_) return true;
  // Bounded file: past its threshold (or after a failed write, which may have left a torn
  // record that would hide every later one from replay) the journal is rewritten instead.
  if (must_compact_ || file_bytes_ + pending_.size() > compact_threshold()) return compact(table);
  const bool ok =
      write_all(fd_, pending_.data(), pending_.size()) && (!sync_ || ::fdatasync(fd_) == 0);
  file_bytes_ += pending_.size();
  pending_.clear();
  if (ok) {
    ++syncs_;
  } else {
    must_compact_ = true;
  }
  return ok;
}

}  // namespace tianhe::protocols::lorawan
