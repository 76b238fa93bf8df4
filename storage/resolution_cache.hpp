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
// The cache is bounded by the memory its entries take (an estimate of their heap bytes): beyond
// it, the least recently used go. Many holders each presenting their own token then keep the
// tokens in use cached instead of emptying the cache whenever it fills. Resolutions whose export
// configurations are the same (one owner's grants of one function) share one copy of it, counted
// once: an entry is then a few hundred bytes.
//
// A cached resolution of a uri capability holds its export configuration, secrets included, in
// memory, as the resolution handed to every invocation does; they never leave the process, and
// are wiped when the last resolution holding them goes (core::share_wiped).
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "storage/store.hpp"

namespace membraned::storage {

// A fresh random epoch (internal error if the CSPRNG fails).
Result<std::int64_t> new_revocation_epoch();

// What a cached resolution is counted as taking when it shares its configuration with no other:
// its heap bytes, its share of the index, and its configuration's.
std::size_t cached_bytes(std::string_view digest, const Resolved& resolved);

class ResolutionCache {
 public:
  explicit ResolutionCache(std::size_t max_bytes = kDefaultResolutionCacheBytes) : max_bytes_(max_bytes) {}
  ResolutionCache(const ResolutionCache&) = delete;
  ResolutionCache& operator=(const ResolutionCache&) = delete;

  struct Entry {
    Resolved resolved;
    std::int64_t epoch;
  };
  // A copy of the entry, which becomes the most recently used.
  std::optional<Entry> find(std::string_view digest);
  // The configuration cached entries share with this SHA-256 of its unsealed text, if any.
  std::shared_ptr<const core::UriExport> known_config(const std::string& config_digest) const;
  // The cache follows the epoch of the latest walk stored: entries of another epoch go. An entry
  // larger than the whole budget is not kept.
  void store(std::string_view digest, const Resolved& resolved, std::int64_t epoch);
  void clear();
  // Counted by the store, which knows why a lookup did not serve (ResolutionCacheStats).
  void count(ResolutionLookup lookup);
  ResolutionCacheStats stats() const;

 private:
  struct Node {
    std::string digest;
    Resolved resolved;
    std::size_t bytes;
  };
  struct SharedConfig {
    std::shared_ptr<const core::UriExport> config;
    std::size_t holders = 0;  // cached entries holding it
    std::size_t bytes = 0;
  };
  // Under mutex_: the node's configuration becomes the shared one (counted when first held), and
  // is let go of with the node.
  void hold_config(Node& node);
  void release_config(const Node& node);
  void drop(std::list<Node>::iterator node);
  void drop_oldest();
  void drop_all();

  const std::size_t max_bytes_;
  mutable std::mutex mutex_;
  std::optional<std::int64_t> epoch_;
  std::list<Node> recency_;  // most recently used first
  std::unordered_map<std::string_view, std::list<Node>::iterator> index_;  // keys: the nodes' digests
  std::unordered_map<std::string, SharedConfig> configs_;  // by the configurations' SHA-256
  std::size_t bytes_ = 0;
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, stale_{0}, evictions_{0};
};

}  // namespace membraned::storage
