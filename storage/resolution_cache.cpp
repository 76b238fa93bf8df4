#include "storage/resolution_cache.hpp"

#include "core/crypto.hpp"

namespace membraned::storage {

Result<std::int64_t> new_revocation_epoch() {
  auto bytes = core::random_bytes(8);
  if (!bytes) return bytes.error();
  std::uint64_t value = 0;
  for (unsigned char b : *bytes) value = (value << 8) | b;
  return static_cast<std::int64_t>(value);
}

std::optional<ResolutionCache::Entry> ResolutionCache::find(const std::string& digest) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(digest);
  if (it == entries_.end()) return std::nullopt;
  return Entry{it->second, *epoch_};
}

void ResolutionCache::store(const std::string& digest, const Resolved& resolved, std::int64_t epoch) {
  std::lock_guard lock(mutex_);
  if (epoch_ != epoch) {
    entries_.clear();
    epoch_ = epoch;
  }
  if (entries_.size() >= capacity_) entries_.clear();
  entries_.insert_or_assign(digest, resolved);
}

void ResolutionCache::clear() {
  std::lock_guard lock(mutex_);
  entries_.clear();
  epoch_.reset();
}

}  // namespace membraned::storage
