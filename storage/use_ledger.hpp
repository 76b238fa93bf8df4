// The uses of grants with maxUses (contract §11), exact across instances and crashes.
//
// An instance never hands out a use the database has not given it: it reserves uses in blocks
// (a write that keeps the reserved total within maxUses, under a row lock) and hands them out
// from memory, so most uses cost no I/O. A crash loses what was reserved and not yet handed
// out; it can never add uses. Blocks grow while a grant is busy (fewer writes) and stay small
// when little is left (an instance does not sit on uses another could give). The argument is in
// docs/architecture.md, "Uses".
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "storage/store.hpp"

namespace membraned::storage {

class UseLedger {
 public:
  // Reserves up to `wanted` uses of the grant in the database: how many it got (0: used up).
  using Reserve = std::function<Result<std::int64_t>(CapabilityRow grant, std::int64_t wanted)>;

  static constexpr std::int64_t kFirstBlock = 8;
  static constexpr std::int64_t kLargestBlock = 65536;

  explicit UseLedger(Reserve reserve) : reserve_(std::move(reserve)) {}

  // One use of every grant of `chain` that has maxUses, from what this instance holds: true when
  // each had one (all taken), false when one is used up for good (none taken), nullopt when the
  // database must be asked (take()).
  std::optional<bool> take_in_hand(const std::vector<ChainGrant>& chain);
  // The same, reserving from the database where nothing is in hand.
  Result<bool> take(const std::vector<ChainGrant>& chain);

 private:
  struct Account {
    std::int64_t in_hand = 0;
    std::int64_t next_block = kFirstBlock;
    std::optional<std::chrono::steady_clock::time_point> last_reserved;
    bool used_up = false;  // the database has no more to give: maxUses never grows
    // Held while one taker reserves for this grant: the others wait for its block instead of
    // each reserving one (which would leave more in hand, for a crash to lose).
    std::shared_ptr<std::mutex> refilling = std::make_shared<std::mutex>();
  };
  std::optional<bool> take_locked(const std::vector<ChainGrant>& chain);
  Status refill(CapabilityRow grant);

  Reserve reserve_;
  std::mutex mutex_;
  std::unordered_map<CapabilityRow, Account> accounts_;
};

}  // namespace membraned::storage
