#include "core/request_id.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>

#include "core/ascii.hpp"
#include "core/crypto.hpp"
#include "core/token.hpp"

namespace membraned::core {

namespace {

constexpr std::size_t kMaxClientRequestId = 64;

std::uint64_t seed() {
  std::uint64_t value = 0;
  if (auto bytes = random_bytes(sizeof value)) {
    std::memcpy(&value, bytes->data(), sizeof value);
    return value;
  }
  // Ids are no secret: should the CSPRNG fail, the clock still keeps threads' sequences apart.
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
         reinterpret_cast<std::uintptr_t>(&value);
}

// splitmix64 (Steele, Lea, Flood 2014): a Weyl sequence through a bijective mix, so one thread
// never repeats an id within 2^64 draws.
std::uint64_t next_random() {
  thread_local std::uint64_t state = seed();
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

RequestId RequestId::next() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t value = next_random();
  RequestId id;
  for (std::size_t i = kRequestIdSize; i-- > 0; value >>= 4) id.digits_[i] = kHex[value & 0xf];
  return id;
}

bool is_recordable_client_request_id(std::string_view value) {
  if (value.empty() || value.size() > kMaxClientRequestId) return false;
  if (value.starts_with(Token::kPrefix.substr(0, 6))) return false;  // "CPBLTY", any version
  for (char c : value) {
    if (!is_alnum(c) && c != '-' && c != '_' && c != '.' && c != ':') return false;
  }
  return true;
}

}  // namespace membraned::core
