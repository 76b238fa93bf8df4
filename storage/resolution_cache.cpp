#include "storage/resolution_cache.hpp"

#include "core/crypto.hpp"

namespace membraned::storage {

namespace {

// A string's heap bytes: none while it fits in the object itself (libstdc++ keeps 15 chars).
std::size_t heap(const std::string& s) { return s.capacity() > 15 ? s.capacity() + 1 : 0; }

std::size_t heap(const core::UriExport& uri) {
  std::size_t n = heap(uri.target.uri) + heap(uri.target.host) + heap(uri.target.connect_host) +
                  heap(uri.target.authority) + heap(uri.target.path) + (uri.target.query ? heap(*uri.target.query) : 0);
  if (uri.method) n += heap(*uri.method);
  n += uri.headers.capacity() * sizeof(core::Header);
  for (const auto& header : uri.headers) n += heap(header.name) + heap(header.value);
  if (const auto* aws4 = std::get_if<core::Aws4Signing>(&uri.signing)) {
    n += heap(aws4->access_key_id) + heap(aws4->secret_access_key) + heap(aws4->region) + heap(aws4->service) +
         heap(aws4->session_token) + (aws4->credentials_profile ? heap(*aws4->credentials_profile) : 0);
  } else if (const auto* cap1 = std::get_if<core::Cap1Signing>(&uri.signing)) {
    n += heap(cap1->key) + heap(cap1->key_id);
  }
  if (uri.tls) n += heap(uri.tls->ca) + heap(uri.tls->cert) + heap(uri.tls->key);
  return n;
}

// What a node costs beyond its own bytes: the list's links and the index's bucket and node (an
// estimate of libstdc++'s layout; the budget is a bound on memory, not an exact count).
constexpr std::size_t kPerEntryOverhead = 2 * sizeof(void*) + 4 * sizeof(void*) + 16;

// An entry's own bytes, its configuration aside.
std::size_t own_bytes(std::string_view digest, const Resolved& resolved) {
  std::size_t n = sizeof(std::string) + digest.size() + 1 + sizeof(Resolved) + sizeof(std::size_t) + kPerEntryOverhead;
  n += heap(resolved.tenant_id) + heap(resolved.membrane_id) + heap(resolved.target_grant_id) +
       heap(resolved.config_digest);
  n += resolved.chain.capacity() * sizeof(ChainGrant);
  for (const auto& grant : resolved.chain) n += heap(grant.id) + grant.allow_from.capacity() * sizeof(core::Cidr);
  return n;
}

// A configuration's bytes: the object, its heap, the shared pointer's block and its index entry.
std::size_t config_bytes(const core::UriExport& config) {
  return sizeof(core::UriExport) + heap(config) + 4 * sizeof(void*) + sizeof(std::string) + 32 + kPerEntryOverhead;
}

}  // namespace

Result<std::int64_t> new_revocation_epoch() {
  auto bytes = core::random_bytes(8);
  if (!bytes) return bytes.error();
  std::uint64_t value = 0;
  for (unsigned char b : *bytes) value = (value << 8) | b;
  return static_cast<std::int64_t>(value);
}

std::size_t cached_bytes(std::string_view digest, const Resolved& resolved) {
  return own_bytes(digest, resolved) + (resolved.uri ? config_bytes(*resolved.uri) : 0);
}

std::optional<ResolutionCache::Entry> ResolutionCache::find(std::string_view digest) {
  std::lock_guard lock(mutex_);
  auto it = index_.find(digest);
  if (it == index_.end()) return std::nullopt;
  recency_.splice(recency_.begin(), recency_, it->second);
  return Entry{it->second->resolved, *epoch_};
}

std::shared_ptr<const core::UriExport> ResolutionCache::known_config(const std::string& config_digest) const {
  std::lock_guard lock(mutex_);
  auto it = configs_.find(config_digest);
  return it == configs_.end() ? nullptr : it->second.config;
}

void ResolutionCache::store(std::string_view digest, const Resolved& resolved, std::int64_t epoch) {
  const std::size_t own = own_bytes(digest, resolved);
  std::lock_guard lock(mutex_);
  if (epoch_ != epoch) {
    drop_all();
    epoch_ = epoch;
  }
  // Two requests resolved the same token at once: the later walk replaces the earlier.
  if (auto it = index_.find(digest); it != index_.end()) drop(it->second);
  const bool shared = resolved.uri && configs_.contains(resolved.config_digest);
  const std::size_t bytes = own + (resolved.uri && !shared ? config_bytes(*resolved.uri) : 0);
  if (bytes > max_bytes_) return;
  recency_.push_front(Node{std::string(digest), resolved, own});
  index_.emplace(recency_.front().digest, recency_.begin());
  bytes_ += own;
  hold_config(recency_.front());
  // Room made after the entry went in: an eviction may let go of the configuration it shares.
  while (bytes_ > max_bytes_ && recency_.size() > 1) drop_oldest();
}

void ResolutionCache::clear() {
  std::lock_guard lock(mutex_);
  drop_all();
  epoch_.reset();
}

void ResolutionCache::count(ResolutionLookup lookup) {
  switch (lookup) {
    case ResolutionLookup::hit:
      hits_.fetch_add(1, std::memory_order_relaxed);
      break;
    case ResolutionLookup::miss:
      misses_.fetch_add(1, std::memory_order_relaxed);
      break;
    case ResolutionLookup::stale:
      stale_.fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

ResolutionCacheStats ResolutionCache::stats() const {
  ResolutionCacheStats out;
  out.hits = hits_.load(std::memory_order_relaxed);
  out.misses = misses_.load(std::memory_order_relaxed);
  out.stale = stale_.load(std::memory_order_relaxed);
  out.evictions = evictions_.load(std::memory_order_relaxed);
  out.max_bytes = max_bytes_;
  std::lock_guard lock(mutex_);
  out.entries = index_.size();
  out.bytes = bytes_;
  return out;
}

void ResolutionCache::hold_config(Node& node) {
  if (!node.resolved.uri) return;
  auto [it, added] = configs_.try_emplace(node.resolved.config_digest);
  if (added) {
    it->second.config = node.resolved.uri;
    it->second.bytes = config_bytes(*node.resolved.uri);
    bytes_ += it->second.bytes;
  } else {
    node.resolved.uri = it->second.config;  // this entry's copy goes (wiped) if no one else holds it
  }
  ++it->second.holders;
}

void ResolutionCache::release_config(const Node& node) {
  if (!node.resolved.uri) return;
  auto it = configs_.find(node.resolved.config_digest);
  if (it == configs_.end() || --it->second.holders > 0) return;
  bytes_ -= it->second.bytes;
  configs_.erase(it);
}

void ResolutionCache::drop(std::list<Node>::iterator node) {
  index_.erase(node->digest);
  bytes_ -= node->bytes;
  release_config(*node);
  recency_.erase(node);
}

void ResolutionCache::drop_oldest() {
  drop(std::prev(recency_.end()));
  evictions_.fetch_add(1, std::memory_order_relaxed);
}

void ResolutionCache::drop_all() {
  index_.clear();
  configs_.clear();
  recency_.clear();
  bytes_ = 0;
}

}  // namespace membraned::storage
