// The id of one request (the X-Request-Id of its answer and the requestId of its audit record).
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace membraned::core {

inline constexpr std::size_t kRequestIdSize = 16;

// 16 lower-case hex digits of a random 64-bit value. Each thread draws from a generator of its
// own (splitmix64, seeded once from RAND_bytes): no lock and no system call per request, and,
// unlike a counter, nothing about how many requests the service handles. Not a secret and not
// unpredictable: an id only names a request. Held by value, so that a request costs no
// allocation for it.
class RequestId {
 public:
  static RequestId next();
  std::string_view text() const { return {digits_.data(), digits_.size()}; }

 private:
  std::array<char, kRequestIdSize> digits_{};
};
inline std::string new_request_id() { return std::string(RequestId::next().text()); }

// Whether a requester's own X-Request-Id may be recorded beside ours (never trusted as ours):
// 1 to 64 characters of letters, digits and `-_.:` (UUIDs, trace ids), not starting with a
// capability token's prefix, so that a token pasted there by mistake is never written down.
bool is_recordable_client_request_id(std::string_view value);

}  // namespace membraned::core
