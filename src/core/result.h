// Result<T>: the control plane's error type (config, registry, API, start-up).
// The hot path never uses it: it returns small status enums instead (see status.h).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace tianhe {

/// An error that names what failed (a config key path, a file, a request field) and the fix.
struct Error {
  std::string message;  ///< one sentence: cause and, where known, the fix
};

/// Either a value or an Error; a small std::expected stand-in (C++20).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  /// True when a value is held.
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  /// The value; only when ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  /// The error; only when !ok().
  const Error& error() const& { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation that yields no value.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

/// Builds an Error from a message.
inline Error make_error(std::string message) {
  return Error{std::move(message)};
}

/// The system's message for an errno value ("No space left on device"), for error texts.
/// Thread-safe.
std::string errno_text(int err);

}  // namespace tianhe
