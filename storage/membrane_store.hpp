// The Store, written once over any Backend: the membrane rules (each write resolves its presented
// capability again inside its transaction, the chain bounds, a cut membrane frees its id), the
// sealing of secrets at rest, paging, the master-key check and the resolution cache. Backends
// only answer the primitives of storage/backend.hpp in their SQL dialect.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "storage/backend.hpp"
#include "storage/master_key.hpp"
#include "storage/resolution_cache.hpp"
#include "storage/store.hpp"
#include "storage/resolution.hpp"
#include "storage/usage_counter.hpp"
#include "storage/use_ledger.hpp"

namespace membraned::storage {


// What a revoke's answer waits beyond the backend's epoch-view bound: the time an invocation may
// take between passing its send-time check and writing its request, with room to spare (it is
// one handler on one strand: microseconds, unless a thread stalls).
inline constexpr std::chrono::milliseconds kRevocationMargin{50};

// How old a local database's epoch, read by a send-time check, may be when the next check reuses
// it. Reading it for every invocation cost a statement (a pooled connection, a read snapshot) on
// the hot path; once per 10 ms costs nothing measurable, and a revoke's answer waits it out.
inline constexpr std::chrono::milliseconds kLocalEpochViewBound{10};

// How often the uses counted in memory are written (the inventory's uses lag by at most this).
inline constexpr std::chrono::milliseconds kUsageFlushInterval{1000};

class MembraneStore final : public Store {
 public:
  // Checks that `key` opens what the database holds (a new database records a check value).
  static Result<std::unique_ptr<MembraneStore>> open(std::unique_ptr<Backend> backend, MasterKey key,
                                                     TenantQuotas quotas = {},
                                                     WallClock clock = &std::chrono::system_clock::now,
                                                     std::size_t cache_bytes = kDefaultResolutionCacheBytes);

  bool waits_on_network() const override { return backend_->waits_on_network(); }
  std::string_view backend_name() const override { return backend_->name(); }

  Result<std::string> create_tenant(const TenantTokens& tokens) override;
  Result<bool> has_tenants() override;
  Result<std::optional<std::string>> create_first_tenant(const TenantTokens& tokens) override;
  Result<Resolved> resolve(const Token& token) override;
  ResolutionCacheStats resolution_cache_stats() const override { return cache_.stats(); }
  bool still_current(const Resolved& resolved) override;
  std::chrono::milliseconds revocation_settle() const override {
    return (backend_->watches_epoch() ? backend_->epoch_view_bound() : kLocalEpochViewBound) + kRevocationMargin;
  }
  Status create_membrane(const Token& presented, const Membrane& membrane) override;
  Result<std::optional<Membrane>> find_membrane(const std::string& tenant_id, const std::string& id) override;
  Result<MembranePage> list_membranes(const std::string& tenant_id, const std::optional<std::string>& after,
                                      std::size_t limit) override;
  Status export_uri(const Token& presented, const Token& token, const core::UriExport& config,
                    const NewGrant& grant) override;
  Status export_reexport(const Token& presented, const Token& token, const Token& target,
                         const NewGrant& grant) override;
  Status revoke_grant(const Token& presented) override;
  Result<std::int64_t> grants_cut_by(const Resolved& revoker) override;
  Result<GrantPage> list_grants(const std::string& tenant_id, const std::string& membrane_id,
                                const std::optional<std::string>& after, std::size_t limit) override;
  Result<std::optional<GrantEntry>> find_grant(const std::string& tenant_id, const std::string& grant_id) override;
  std::optional<bool> take_uses_in_hand(const std::vector<ChainGrant>& chain) override {
    return uses_.take_in_hand(chain);
  }
  Result<bool> take_uses(const std::vector<ChainGrant>& chain) override { return uses_.take(chain); }
  void count_use(const std::vector<ChainGrant>& chain) override {
    if (!chain.empty()) usage_.count(chain, to_unix_ms(clock_()));
  }
  Status flush_usage() override;
  ~MembraneStore() override;
  Status revoke_membrane(const Token& presented) override;
  Status delete_tenant(const Token& presented) override;
  Result<TenantPage> list_tenants(const std::optional<std::string>& after, std::size_t limit) override;
  Result<std::optional<TenantEntry>> find_tenant(const std::string& tenant_id) override;
  Result<OperatorRevoke> revoke_membrane_by_id(const std::string& tenant_id, const std::string& membrane_id) override;
  Result<OperatorRevoke> revoke_grant_by_id(const std::string& tenant_id, const std::string& grant_id) override;
  Result<OperatorRevoke> delete_tenant_by_id(const std::string& tenant_id) override;
  Result<std::int64_t> grants_cut_by(const OperatorRevoke& revoked) override;

 private:
  MembraneStore(std::unique_ptr<Backend> backend, MasterKey key, TenantQuotas quotas, WallClock clock,
                std::size_t cache_bytes);
  // Counts a write against its tenant's quotas, inside its transaction: quota when over one.
  Status charge(BackendSession& session, const std::string& tenant_id, const Usage& add);

  // `work` in a read (or a write transaction), its result this call's: a failed write rolls back.
  template <class T>
  Result<T> reading(const std::function<Result<T>(BackendSession&)>& work);
  template <class T>
  Result<T> writing(const std::function<Result<T>(BackendSession&)>& work);
  // backend_->write, after which a new revocation epoch it committed is read again by the next
  // cached resolution (the local epoch view is forgotten).
  Status write(const SessionWork& work);

  Status check_master_key(BackendSession& session);
  Result<Resolved> resolve_in(BackendSession& session, std::string_view digest);
  // The presented token resolved again inside a write transaction, of the expected kind.
  Result<Resolved> recheck(BackendSession& session, const Token& presented, CapabilityKind kind);
  Result<std::string> insert_tenant(BackendSession& session, const TenantTokens& tokens);
  // Which of `stored` are cut: made through a capability that has died since.
  Result<std::vector<bool>> cut_flags(BackendSession& session, const std::vector<StoredMembrane>& stored);
  Result<Membrane> unseal(const std::string& tenant_id, const StoredMembrane& stored) const;
  Status commit_new_epoch(BackendSession& session);
  // The grants below a membrane or a grant (BackendSession::count_grants_below), in a read.
  Result<std::int64_t> count_cut(std::optional<MembraneRow> membrane, std::optional<CapabilityRow> grant);
  // Reserves up to `wanted` uses of a grant for this instance (UseLedger's Reserve).
  Result<std::int64_t> reserve_uses(CapabilityRow grant, std::int64_t wanted);
  Status insert_grant(BackendSession& session, const Resolved& acting, const NewGrant& grant,
                      const CapabilityRecord& record, std::string_view operation,
                      const core::UriExport* leads_to);  // null: not a uri export's
  Result<GrantEntry> open_entry(StoredGrantEntry stored) const;
  // Each entry opened, with its state read from what its capability depends on.
  Result<std::vector<GrantEntry>> open_entries(BackendSession& session, std::vector<StoredGrantEntry> stored);
  std::int64_t now_seconds() const;
  // The local database's epoch as a recent send-time check read it (kLocalEpochViewBound).
  std::optional<EpochReading> local_epoch_view();
  // The epoch a cached resolution is checked against (see resolve).
  Result<std::int64_t> epoch_for_cached(BackendSession& session);
  bool view_is_newer(std::chrono::steady_clock::time_point started) const;
  Result<EpochReading> local_view_read_by(const std::function<Result<std::int64_t>()>& read_epoch);

  std::unique_ptr<Backend> backend_;
  MasterKey key_;
  TenantQuotas quotas_;
  WallClock clock_;
  ResolutionCache cache_;
  UseLedger uses_;
  UsageCounter usage_;
  // Writes usage_ every kUsageFlushInterval until the store goes.
  std::mutex flusher_mutex_;
  std::condition_variable flusher_wake_;
  bool stopping_ = false;
  std::thread flusher_;
  std::mutex local_view_mutex_;
  std::optional<EpochReading> local_view_;
  std::atomic<std::uint64_t> epochs_committed_{0};  // by this store: see write()
  std::chrono::steady_clock::time_point views_from_{};  // readings begun before it are not kept
};

}  // namespace membraned::storage
