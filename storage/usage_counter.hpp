// How often each grant was used and when last (contract §12, the inventory's uses and
// lastUsedAt): counted in memory on the hot path, written in batches by the store's flusher, so
// that a use does no write. The counts in the database lag by up to one flush interval, and a
// crash loses what was not flushed yet.
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "storage/store.hpp"

namespace membraned::storage {

class UsageCounter {
 public:
  struct Pending {
    std::int64_t uses = 0;
    std::int64_t last_used_ms = 0;
  };
  using Batch = std::unordered_map<CapabilityRow, Pending>;

  // One use of every grant of `chain` at `now_ms` (Unix milliseconds).
  void count(const std::vector<ChainGrant>& chain, std::int64_t now_ms);
  // What was counted since the last take.
  Batch take();
  // A batch that could not be written, counted again for the next flush.
  void put_back(const Batch& batch);

 private:
  std::mutex mutex_;
  Batch pending_;
};

}  // namespace membraned::storage
