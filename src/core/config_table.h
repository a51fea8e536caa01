// Configuration tables declared once: a table of fields {key, type, default, doc, check} per
// TOML table fills a plain struct. It drives parsing, range checks, defaults (the doc's default
// column), error messages and the reference in docs/configuration.md. The gateway's own tables
// live in control/; each extension declares its own (its ConfigTable) in its folder, and the
// control plane reads every table through the type-erased SectionView.
#pragma once

#include <any>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace tianhe::config {

inline constexpr int64_t kKiB = 1024;
inline constexpr int64_t kMiB = kKiB << 10;
inline constexpr int64_t kGiB = kMiB << 10;
inline constexpr int64_t kTiB = kGiB << 10;
inline constexpr int64_t kUs = 1'000;
inline constexpr int64_t kMs = 1'000'000;
inline constexpr int64_t kSec = 1'000'000'000;
inline constexpr int64_t kDay = 86'400 * kSec;

/// A host:port to listen on or send to.
struct Endpoint {
  std::string host = "127.0.0.1";  ///< name or address; IPv6 without brackets
  uint16_t port = 0;               ///< 0 = any free port
};

/// Parses "host:port" ("[::1]:7700" for IPv6). `key` names the config key in errors.
Result<Endpoint> parse_endpoint(std::string_view text, std::string_view key);

/// How a field's TOML value is read and checked.
enum class Kind : uint8_t {
  kBool,       ///< true / false
  kString,     ///< any string (a check may restrict it)
  kInt,        ///< integer in [min, max]
  kIntOrAuto,  ///< "auto" (read as 0) or an integer in [min, max]
  kSize,       ///< byte count: integer or "64MiB"; in [min, max]
  kDuration,   ///< "500us", "1ms", "2s", "1h", "30d" or "0"; nanoseconds in [min, max]
  kEndpoint,   ///< "host:port"
  kEnum,       ///< one of `choices`
  kNumber,     ///< integer or float
  kEnumList,   ///< an array of distinct strings, each one of `choices`
};

/// The user-facing name of a kind ("size", "duration", ...), used in docs and errors.
std::string_view kind_name(Kind kind) noexcept;

/// A value read from TOML; the member matching the field's kind is set.
struct Parsed {
  bool b = false;
  int64_t i = 0;                  ///< kInt, kIntOrAuto, kSize; nanoseconds for kDuration
  double d = 0;                   ///< kNumber
  std::string s;                  ///< kString, kEnum
  std::vector<std::string> list;  ///< kEnumList
  Endpoint ep;                    ///< kEndpoint
};

/// What a field is, whatever struct it fills.
struct FieldInfo {
  std::string_view key;           ///< key inside its table, e.g. "flush_interval"
  Kind kind = Kind::kString;      ///< how the value is read
  std::string_view default_text;  ///< default as documented ("1ms"); empty when required
  std::string_view doc;           ///< one sentence for the reference
  std::string (*check)(const Parsed&) = nullptr;   ///< extra check: "" or the problem + fix
  int64_t min = 0;                                 ///< kInt/kIntOrAuto/kSize/kDuration
  int64_t max = INT64_MAX;                         ///< ditto (inclusive)
  std::span<const std::string_view> choices = {};  ///< kEnum, kEnumList
  std::string_view what = "a valid value";         ///< kEnum: "a type", "a policy"
  bool required = false;                           ///< must be present
  int64_t unit_ns = 1;  ///< kDuration: the value must be a whole multiple of this
};

/// One key of a TOML table that fills a `T` (the members of FieldInfo, plus how to store it).
template <typename T>
struct Field {
  std::string_view key;                      ///< key inside its table, e.g. "flush_interval"
  Kind kind = Kind::kString;                 ///< how the value is read
  std::string_view default_text;             ///< default as documented ("1ms"); empty when required
  std::string_view doc;                      ///< one sentence for the reference
  void (*set)(T&, const Parsed&) = nullptr;  ///< stores a checked value
  std::string (*check)(const Parsed&) = nullptr;   ///< extra check: "" or the problem + fix
  int64_t min = 0;                                 ///< kInt/kIntOrAuto/kSize/kDuration
  int64_t max = INT64_MAX;                         ///< ditto (inclusive)
  std::span<const std::string_view> choices = {};  ///< kEnum, kEnumList
  std::string_view what = "a valid value";         ///< kEnum: "a type", "a policy"
  bool required = false;                           ///< must be present
  int64_t unit_ns = 1;  ///< kDuration: the value must be a whole multiple of this

  FieldInfo info() const noexcept {
    return {key, kind, default_text, doc, check, min, max, choices, what, required, unit_ns};
  }
};

/// A TOML table and its fields. `header` is how it is written ("log", "[models]").
template <typename T>
struct Section {
  std::string_view header;                           ///< "log", "protocols.report", "[models]"
  std::string_view doc;                              ///< what the table configures
  std::span<const Field<T>> fields;                  ///< its keys
  std::span<const std::string_view> subtables = {};  ///< keys holding nested tables
};

/// A Section of any struct: what the parser and the reference read.
struct SectionView {
  std::string_view header;
  std::string_view doc;
  std::vector<FieldInfo> fields;
  std::span<const std::string_view> subtables;
  /// Stores a checked value of fields[i] into the struct at `target`.
  std::function<void(void* target, size_t i, const Parsed&)> set;
};

/// The view of a section (which must outlive it: field tables are constexpr statics).
template <typename T>
SectionView view(const Section<T>& s) {
  SectionView v{s.header, s.doc, {}, s.subtables, nullptr};
  for (const Field<T>& f : s.fields) v.fields.push_back(f.info());
  v.set = [&s](void* target, size_t i, const Parsed& p) {
    s.fields[i].set(*static_cast<T*>(target), p);
  };
  return v;
}

/// An array of tables inside an extension's table, [[<header>.<key>]]: each entry is parsed with
/// `section` into a new element appended to a std::vector member of the table's struct.
struct ArrayTable {
  std::string_view key;  ///< "devices"
  SectionView section;   ///< header "protocols.modbus.devices", its fields and doc
  std::function<void*(std::any& parent)> append;  ///< appends a default element; returns it
  size_t max_entries = 100000;                    ///< more entries are refused
};

/// An extension's TOML table ([protocols.<name>], [sinks.<name>]) with the struct it fills.
/// The parsed struct reaches the extension as a std::any holding exactly that type.
struct ConfigTable {
  SectionView section;                     ///< header, fields, docs
  std::function<std::any()> make_default;  ///< the struct with every default
  std::function<void*(std::any&)> target;  ///< the struct inside the any
  /// After parsing: derives defaults from gateway.data_dir; "" or the problem (key: the fix).
  std::function<std::string(std::any&, std::string_view data_dir)> finish;
  /// Named instances allowed: a nested table [<header>.<name>] (name: [a-z0-9_]) is another
  /// instance with the same keys, parsed into its own struct under header "<header>.<name>".
  bool instances = false;
  /// Its arrays of tables ([[<header>.<key>]]); parsed before `finish` runs.
  std::vector<ArrayTable> arrays;
};

/// The ConfigTable of a section filling `T`; `finish` (optional) derives defaults from the
/// data directory and checks fields against each other: "" or the problem.
template <typename T>
ConfigTable table(const Section<T>& s,
                  std::string (*finish)(T&, std::string_view data_dir) = nullptr) {
  ConfigTable t;
  t.section = view(s);
  t.make_default = [] { return std::any(T{}); };
  t.target = [](std::any& a) -> void* { return std::any_cast<T>(&a); };
  if (finish != nullptr) {
    t.finish = [finish](std::any& a, std::string_view dir) {
      return finish(*std::any_cast<T>(&a), dir);
    };
  }
  return t;
}

/// The ArrayTable filling `member` (a std::vector<E> of the table's struct T) from
/// [[<header>.<key>]]; `s` (a static, like every Section) describes one entry.
template <typename T, typename E>
ArrayTable array_table(std::string_view key, const Section<E>& s, std::vector<E> T::*member,
                       size_t max_entries = 100000) {
  ArrayTable a;
  a.key = key;
  a.section = view(s);
  a.append = [member](std::any& parent) -> void* {
    std::vector<E>& v = std::any_cast<T&>(parent).*member;
    v.emplace_back();
    return &v.back();
  };
  a.max_entries = max_entries;
  return a;
}

/// A check for path fields: "" or the problem and the fix.
std::string check_non_empty(const Parsed& p);

/// Converts a duration field's nanoseconds.
template <typename D>
D to_duration(int64_t ns) {
  return std::chrono::duration_cast<D>(std::chrono::nanoseconds(ns));
}

/// Formats a byte count with the largest exact binary unit ("64MiB", "1000").
std::string format_size(int64_t bytes);
/// Formats a byte count for people, to one decimal in the largest binary unit it reaches
/// ("512 B", "25.2 MiB", "1.5 GiB").
std::string format_bytes_approx(uint64_t bytes);
/// Formats nanoseconds with the largest exact unit ("1ms", "90s").
std::string format_duration(int64_t ns);
/// Parses a size ("64MiB", "4096", "10MB"); "" on success, else the problem.
std::string parse_size(std::string_view text, int64_t& bytes);
/// Parses a duration ("500us", "2s", "0"); "" on success, else the problem.
std::string parse_duration(std::string_view text, int64_t& ns);
/// Levenshtein distance (for "did you mean" suggestions).
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace tianhe::config
