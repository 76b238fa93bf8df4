// Typed results for every parser and builder in core/: callers get either a value or an Error
// that says which field was wrong, never an exception they would have to guess about.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace membraned::core {

enum class ErrorKind {
  invalid_input,  // the caller's data is wrong: answered 400 by the API layer
  unauthorized,   // a token or signature that does not authorise anything: 401
  not_found,      // a referenced object does not exist (or no longer): 404
  conflict,       // the object exists already: 409
  quota,          // the tenant's stored data reached a limit the operator set: 507
  unavailable,    // storage or a dependency is down for now: 503
  internal,       // a failure inside (OpenSSL, RNG, storage corruption): 500, without detail
};

struct Error {
  ErrorKind kind = ErrorKind::invalid_input;
  std::string field;    // dotted path of the offending field ("hmac.aws4-hmac-sha256.region"), may be empty
  std::string message;  // for a person; never contains a secret
  // Why a capability was refused, for the audit log and metrics (contract §12: unknown, revoked,
  // expired, used-up, rate, address); never sent to the client, whose 401 is the same for all.
  std::string reason;

  static Error invalid(std::string field, std::string message) {
    return {ErrorKind::invalid_input, std::move(field), std::move(message), {}};
  }
  static Error unauthorized(std::string message, std::string why = "unknown") {
    return {ErrorKind::unauthorized, {}, std::move(message), std::move(why)};
  }
  static Error not_found(std::string message) { return {ErrorKind::not_found, {}, std::move(message), {}}; }
  static Error conflict(std::string message) { return {ErrorKind::conflict, {}, std::move(message), {}}; }
  static Error quota(std::string message) { return {ErrorKind::quota, {}, std::move(message), {}}; }
  static Error unavailable(std::string message) {
    return {ErrorKind::unavailable, {}, std::move(message), {}};
  }
  static Error internal(std::string message) { return {ErrorKind::internal, {}, std::move(message), {}}; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

// For operations that produce nothing but may fail.
struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() { return Unit{}; }

}  // namespace membraned::core
