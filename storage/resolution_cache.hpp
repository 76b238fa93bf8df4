// Resolutions by token digest, each valid only under the revocation epoch it was made under.
// Every revoke and deleteSelf writes a new random epoch in its own transaction (in any process
// sharing the database), so a resolution is used only while the database's epoch of the moment
// equals the one it was cached under. Creations need no new epoch: they never make an existing
// capability die.
//
// Epochs are random, not counted: a counter can come back to a value it had (a database file or
// dump restored under a running instance, a standby promoted behind its primary) with other
// revocations behind it, and a cache made under that value would pass for current. With 64
// random bits the odds of meeting a cached epoch again are 2^-64.
//
// A cached resolution of a uri capability holds its export configuration, secrets included, in
// memory, as the resolution handed to every invocation does; they never leave the process.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "storage/store.hpp"

namespace membraned::storage {

// A fresh random epoch (internal error if the CSPRNG fails).
Result<std::int64_t> new_revocation_epoch();

class ResolutionCache {
 public:
  explicit ResolutionCache(std::size_t capacity = 65536) : capacity_(capacity) {}

  struct Entry {
    Resolved resolved;
    std::int64_t epoch;
  };
  std::optional<Entry> find(const std::string& digest) const;
  // The cache follows the epoch of the latest walk stored: entries of another epoch go.
  void store(const std::string& digest, const Resolved& resolved, std::int64_t epoch);
  void clear();

 private:
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::optional<std::int64_t> epoch_;
  std::unordered_map<std::string, Resolved> entries_;
};

}  // namespace membraned::storage
