// Result<T>: the control plane's error type (config, registry, API, start-up).
// The hot path never uses it: it returns small status enums instead (see status.h).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace tianhe {

struct Error;

namespace detail {
/// Prints the error's message to stderr and aborts: reading the value
/// of a Result that holds an error is a bug in the caller, who must check ok() first.
[[noreturn]] void result_holds_error(const Error& error) noexcept;
/// Prints a fatal message and aborts: error() of a Result that holds a value.
[[noreturn]] void result_holds_value() noexcept;
}  // namespace detail

/// An error that names what failed (a config key path, a file, a request field) and the fix.
struct Error {
  std::string message;  ///< one sentence: cause and, where known, the fix
};

/// Either a value or an Error; a small std::expected stand-in (C++20). Reading the value of an
/// error (or the error of a value) is a caller's bug: it aborts with the error's message rather
/// than throwing, so check ok() first.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  /// True when a value is held.
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  /// The value; only when ok() (aborts with the error's message otherwise).
  T& value() & noexcept { return *held(); }
  const T& value() const& noexcept { return *held(); }
  T&& value() && noexcept { return std::move(*held()); }
  T* operator->() noexcept { return held(); }
  const T* operator->() const noexcept { return held(); }
  T& operator*() & noexcept { return *held(); }
  const T& operator*() const& noexcept { return *held(); }
  /// The error; only when !ok() (aborts otherwise).
  const Error& error() const& noexcept {
    const Error* e = std::get_if<1>(&v_);
    if (e == nullptr) [[unlikely]]
      detail::result_holds_value();
    return *e;
  }

 private:
  /// The value, or abort naming the error held instead.
  T* held() noexcept {
    T* v = std::get_if<0>(&v_);
    if (v == nullptr) [[unlikely]]
      detail::result_holds_error(*std::get_if<1>(&v_));
    return v;
  }
  const T* held() const noexcept {
    const T* v = std::get_if<0>(&v_);
    if (v == nullptr) [[unlikely]]
      detail::result_holds_error(*std::get_if<1>(&v_));
    return v;
  }

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
  /// The error; only when !ok() (empty otherwise).
  const Error& error() const& noexcept { return error_; }

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
