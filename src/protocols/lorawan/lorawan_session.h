// Device sessions: every device of the keys file with its keys, frame counters and join state,
// indexed by DevAddr (uplinks) and DevEUI (joins); the keys file loader; and the durable journal
// of what a restart must not forget (frame counters, DevNonces, session keys after a join).
// Built on the main thread, then owned and used by the shard that runs the protocol.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "protocols/lorawan/lorawan_crypto.h"

namespace tianhe::protocols::lorawan {

/// What became of the confirmed uplink whose counter is `fcnt_up` (for its retransmissions).
enum class UpState : uint8_t {
  kNone,      ///< unconfirmed, or not settled yet: a repeat of it is refused as a replay
  kAcked,     ///< confirmed and ACKed: a retransmission is ACKed again, with no second report
  kUnstored,  ///< confirmed, and the log could not take it (no ACK): a retransmission is retried
};

/// Most retransmissions of one frame counter answered (LoRaWAN 1.0.4 §5.3: NbTrans <= 15).
inline constexpr uint8_t kMaxRetransmissions = 15;

/// One device and its session: 88 bytes, keys as plain bytes (no OpenSSL object).
struct Device {
  uint64_t dev_eui = 0;   ///< the device id (registry: pipeline::Registry::find(dev_eui))
  uint64_t join_eui = 0;  ///< OTAA: JoinEUI (AppEUI) the device joins with
  Key nwk_s_key{};        ///< session keys (ABP: from the keys file; OTAA: after a join)
  Key app_s_key{};
  Key app_key{};             ///< OTAA root key
  uint32_t dev_addr = 0;     ///< valid when has_session
  uint32_t fcnt_up = 0;      ///< last accepted uplink counter (valid when has_fcnt)
  uint32_t fcnt_down = 0;    ///< next downlink counter
  uint32_t join_nonce = 0;   ///< last JoinNonce sent (24 bits)
  uint16_t dev_nonce = 0;    ///< last DevNonce accepted (valid when has_dev_nonce)
  bool otaa = false;         ///< joins (has app_key)
  bool has_session = false;  ///< keys and DevAddr are set (ABP always; OTAA after a join)
  bool has_fcnt = false;     ///< an uplink was accepted in this session
  bool has_dev_nonce = false;
  UpState up_state = UpState::kNone;  ///< of fcnt_up's frame (not journalled)
  uint8_t retransmissions = 0;        ///< of fcnt_up's frame answered so far (not journalled)
};

/// A gateway allowed to send, from the keys file.
struct GatewayEntry {
  uint64_t eui = 0;
};

/// What the keys file holds.
struct KeysFile {
  std::vector<Device> devices;
  std::vector<GatewayEntry> gateways;
};

/// Reads the keys file: refused unless its mode is 0600 (or stricter); every error names the
/// entry and key (`devices[3].app_key: expected 32 hex digits`). `key` is the config key for
/// errors ("protocols.lorawan.keys_file").
Result<KeysFile> load_keys_file(const std::string& path, std::string_view key);

/// The devices and their indexes. Bounded: fixed at load; DevAddr index rebuilt when joins
/// leave too many stale slots. Shard thread only (after construction).
class SessionTable {
 public:
  /// Takes the devices (DevEUIs unique: checked by load_keys_file).
  explicit SessionTable(std::vector<Device> devices);

  /// Number of devices.
  uint32_t size() const noexcept { return static_cast<uint32_t>(devices_.size()); }
  Device& operator[](uint32_t i) noexcept { return devices_[i]; }
  const Device& operator[](uint32_t i) const noexcept { return devices_[i]; }
  /// Index of the device with `dev_eui`, or -1.
  int64_t find_eui(uint64_t dev_eui) const noexcept;
  /// Calls f(index) for every device whose session has `dev_addr` until f returns true; returns
  /// the index f accepted, or -1.
  template <typename F>
  int64_t find_addr(uint32_t dev_addr, F&& f) const noexcept {
    const uint32_t mask = static_cast<uint32_t>(addr_slots_.size() - 1);
    for (uint32_t s = hash32(dev_addr) & mask;; s = (s + 1) & mask) {
      const uint32_t v = addr_slots_[s];
      if (v == kEmpty) return -1;
      if (v != kStale && devices_[v - 1].dev_addr == dev_addr && devices_[v - 1].has_session &&
          f(v - 1)) {
        return v - 1;
      }
    }
  }
  /// Gives device `i` a (new) session address, replacing its old one in the index.
  void set_addr(uint32_t i, uint32_t dev_addr) noexcept;
  /// Sessions active (has_session).
  uint32_t sessions() const noexcept { return sessions_; }
  /// Recounts sessions and rebuilds the DevAddr index (after a journal replay).
  void rebuild() noexcept;
  /// Heap bytes held (devices and indexes).
  size_t bytes() const noexcept;

 private:
  static constexpr uint32_t kEmpty = 0;
  static constexpr uint32_t kStale = UINT32_MAX;
  static uint32_t hash32(uint64_t x) noexcept;
  void insert_addr(uint32_t i) noexcept;

  std::vector<Device> devices_;
  std::vector<uint32_t> addr_slots_;  ///< index + 1; kEmpty; kStale
  std::vector<uint32_t> eui_slots_;   ///< index + 1; kEmpty
  uint32_t stale_ = 0;
  uint32_t sessions_ = 0;
};

/// The session journal: an append-only file of CRC-framed records under
/// <data_dir>/lorawan/sessions.journal. Records are gathered in memory by the shard and written
/// (and fdatasync'ed when `sync`) by commit(), before what they record is relied on. Replayed
/// and compacted at start, and compacted again by commit() whenever the file outgrows
/// max(`compact_bytes`, 4 x its last compacted size). Shard thread only.
class SessionJournal {
 public:
  /// Opens (creating) the journal in `dir`, replays it into `table` (records of DevEUIs no
  /// longer in the keys file are dropped), and rewrites it compacted (one record per device).
  static Result<SessionJournal> open(const std::string& dir, SessionTable& table, bool sync,
                                     uint64_t compact_bytes = 4u << 20);
  SessionJournal(SessionJournal&& o) noexcept;
  SessionJournal& operator=(SessionJournal&& o) noexcept;
  ~SessionJournal();

  /// Records device `d`'s uplink counter / downlink counter / join state (in memory).
  void uplink(const Device& d) noexcept;
  void downlink(const Device& d) noexcept;
  void join(const Device& d) noexcept;
  /// Whether records wait for commit().
  bool dirty() const noexcept { return !pending_.empty(); }
  /// Makes the records gathered durable: appends them (one write, then fdatasync when sync);
  /// or, when the file has outgrown its threshold (or an earlier write failed), rewrites the
  /// journal from `table` (whose state includes every record gathered) with compact(). false
  /// on an I/O error (then nothing recorded since the last commit may be relied on, and the
  /// next commit compacts).
  bool commit(const SessionTable& table) noexcept;
  /// Rewrites the journal as one state record per device of `table`: a temporary file,
  /// fdatasync, rename over the journal, fsync of the directory. A crash at any point leaves
  /// the old journal or the new one, each complete. Drops the records gathered (the table holds
  /// them). Writes through a fixed 64 KiB buffer: no allocation. false on an I/O error (the old
  /// journal stays in use).
  bool compact(const SessionTable& table) noexcept;
  /// Bytes in the file.
  uint64_t file_bytes() const noexcept { return file_bytes_; }
  /// The size that makes commit() compact.
  uint64_t compact_threshold() const noexcept;
  /// commit() calls that reached the disk.
  uint64_t syncs() const noexcept { return syncs_; }
  /// Compactions done while running (not counting the one at open).
  uint64_t compactions() const noexcept { return compactions_; }
  /// Duration of the last compaction, nanoseconds.
  int64_t last_compaction_ns() const noexcept { return last_compaction_ns_; }

 private:
  SessionJournal() = default;
  void record(uint8_t type, const Device& d) noexcept;
  bool write_compacted(const SessionTable& table) noexcept;
  int fd_ = -1;
  bool sync_ = true;
  bool must_compact_ = false;  ///< a write failed: the file may end in a torn record
  std::string dir_, path_, tmp_path_;
  std::vector<uint8_t> pending_;
  std::unique_ptr<uint8_t[]> chunk_;  ///< compaction's write buffer (kChunkBytes)
  uint64_t file_bytes_ = 0;
  uint64_t compacted_bytes_ = 0;  ///< size right after the last compaction
  uint64_t compact_bytes_ = 4u << 20;
  uint64_t syncs_ = 0;
  uint64_t compactions_ = 0;
  int64_t last_compaction_ns_ = 0;
};

}  // namespace tianhe::protocols::lorawan
