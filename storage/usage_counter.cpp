#include "storage/usage_counter.hpp"

#include <algorithm>

namespace membraned::storage {

void UsageCounter::count(const std::vector<ChainGrant>& chain, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  for (const ChainGrant& grant : chain) {
    Pending& pending = pending_[grant.row];
    ++pending.uses;
    pending.last_used_ms = std::max(pending.last_used_ms, now_ms);
  }
}

UsageCounter::Batch UsageCounter::take() {
  std::lock_guard lock(mutex_);
  Batch batch;
  batch.swap(pending_);
  return batch;
}

void UsageCounter::put_back(const Batch& batch) {
  std::lock_guard lock(mutex_);
  for (const auto& [row, more] : batch) {
    Pending& pending = pending_[row];
    pending.uses += more.uses;
    pending.last_used_ms = std::max(pending.last_used_ms, more.last_used_ms);
  }
}

}  // namespace membraned::storage
