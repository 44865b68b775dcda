// Result types for expected failures (bad input, peer gone, ENOSPC): the caller must look.
// Exceptions are kept for what is truly exceptional and never cross a C callback.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace postern {

struct Error {
  std::string message;
};

template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

// A result with no value: success, or an Error.
using Status = Result<std::monostate>;
inline Status ok_status() {
  return std::monostate{};
}
inline Error make_error(std::string message) {
  return Error{std::move(message)};
}

}  // namespace postern
