#include "storage/membrane_store.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/crypto.hpp"
#include "storage/resolution.hpp"
#include "storage/sealing.hpp"

namespace membraned::storage {

using core::Error;
using core::ErrorKind;
using sealing::kKeyCheckContext;
using sealing::kKeyCheckPlaintext;
using sealing::membrane_token_context;
using sealing::uri_config_context;

namespace {

// Where a uri export leads, as the inventory shows it: scheme, authority and path, never the
// query (it may carry a secret), and the method.
nlohmann::json grant_target_json(const core::UriExport& config) {
  nlohmann::json target = {{"target", std::string(config.target.https ? "https://" : "http://") +
                                          config.target.authority + config.target.path}};
  if (config.method) target["method"] = *config.method;
  return target;
}


constexpr std::string_view kKeyCheckName = "key_check";
constexpr std::size_t kMaxPageLimit = 1'000'000;

Error conflict_of_id() { return Error::conflict("a membrane with this id exists"); }

// Runs `work` through `run` (a backend's read or write) and hands back what it made.
template <class T, class Run>
Result<T> collect(Run run, const std::function<Result<T>(BackendSession&)>& work) {
  std::optional<Result<T>> made;
  auto s = run([&](BackendSession& session) -> Status {
    made.emplace(work(session));
    if (!*made) return made->error();
    return core::ok_status();
  });
  if (!s) return s.error();
  return std::move(*made);
}

}  // namespace

template <class T>
Result<T> MembraneStore::reading(const std::function<Result<T>(BackendSession&)>& work) {
  return collect<T>([this](const SessionWork& w) { return backend_->read(w); }, work);
}

template <class T>
Result<T> MembraneStore::writing(const std::function<Result<T>(BackendSession&)>& work) {
  return collect<T>([this](const SessionWork& w) { return write(w); }, work);
}

Status MembraneStore::write(const SessionWork& work) {
  const std::uint64_t before = epochs_committed_.load();
  auto written = backend_->write(work);
  // Once committed, no view read before the commit may serve a cached resolution in this process.
  // (Another writer's epoch counted here too only costs one more read.)
  if (epochs_committed_.load() != before) {
    std::lock_guard lock(local_view_mutex_);
    local_view_.reset();
    views_from_ = std::chrono::steady_clock::now();
  }
  return written;
}

MembraneStore::MembraneStore(std::unique_ptr<Backend> backend, MasterKey key, TenantQuotas quotas, WallClock clock,
                             std::size_t cache_bytes)
    : backend_(std::move(backend)),
      key_(std::move(key)),
      quotas_(quotas),
      clock_(std::move(clock)),
      cache_(cache_bytes),
      uses_([this](CapabilityRow grant, std::int64_t wanted) { return reserve_uses(grant, wanted); }) {
  // After a failover the database may no longer hold what was cached (a capability created just
  // before it, on a standby that never received it), under the same epoch: start afresh.
  backend_->on_connection_lost([this] { cache_.clear(); });
  flusher_ = std::thread([this] {
    std::unique_lock lock(flusher_mutex_);
    while (!flusher_wake_.wait_for(lock, kUsageFlushInterval, [this] { return stopping_; })) {
      lock.unlock();
      (void)flush_usage();  // a failed batch is counted again for the next one
      lock.lock();
    }
  });
}

MembraneStore::~MembraneStore() {
  {
    std::lock_guard lock(flusher_mutex_);
    stopping_ = true;
  }
  flusher_wake_.notify_all();
  flusher_.join();
  (void)flush_usage();  // a clean stop loses nothing counted
}

Status MembraneStore::flush_usage() {
  UsageCounter::Batch batch = usage_.take();
  if (batch.empty()) return core::ok_status();
  auto written = backend_->write([&](BackendSession& session) -> Status {
    for (const auto& [row, pending] : batch) {
      if (auto s = session.add_uses(row, pending.uses, pending.last_used_ms); !s) return s;
    }
    return core::ok_status();
  });
  if (!written) usage_.put_back(batch);
  return written;
}

Result<std::unique_ptr<MembraneStore>> MembraneStore::open(std::unique_ptr<Backend> backend, MasterKey key,
                                                           TenantQuotas quotas, WallClock clock,
                                                           std::size_t cache_bytes) {
  std::unique_ptr<MembraneStore> store(
      new MembraneStore(std::move(backend), std::move(key), quotas, std::move(clock), cache_bytes));
  if (auto s = store->backend_->write([&](BackendSession& session) { return store->check_master_key(session); });
      !s) {
    return s.error();
  }
  return store;
}

// The master key must open what this database holds; a new database records a check value.
// Under the schema lock: of several instances starting with different keys on an empty
// database, exactly one key gets in.
Status MembraneStore::check_master_key(BackendSession& session) {
  if (auto s = session.take_exclusive(Exclusive::schema); !s) return s;
  auto check = session.meta(kKeyCheckName);
  if (!check) return check.error();
  if (*check) {
    auto opened = key_.open(**check, kKeyCheckContext);
    if (!opened || *opened != kKeyCheckPlaintext) {
      return Error::invalid("master key", "the master key does not open this database's secrets");
    }
    return core::ok_status();
  }
  auto sealed = key_.seal(kKeyCheckPlaintext, kKeyCheckContext);
  if (!sealed) return sealed.error();
  return session.insert_meta(kKeyCheckName, *sealed);
}

Status MembraneStore::charge(BackendSession& session, const std::string& tenant_id, const Usage& add) {
  auto charged = session.charge(tenant_id, add, quotas_);
  if (!charged) return charged.error();
  if (*charged) return core::ok_status();
  auto used = session.usage(tenant_id);
  if (!used) return used.error();
  auto over = [](std::int64_t total, std::int64_t more, std::uint64_t limit) {
    return limit != 0 && static_cast<std::uint64_t>(total + more) > limit;
  };
  if (over(used->membranes, add.membranes, quotas_.membranes)) {
    return Error::quota("this tenant holds " + std::to_string(used->membranes) + " membranes, the most it may hold");
  }
  if (over(used->grants, add.grants, quotas_.grants)) {
    return Error::quota("this tenant holds " + std::to_string(used->grants) + " grants, the most it may hold");
  }
  return Error::quota("this tenant stores " + std::to_string(used->stored_bytes) +
                      " bytes, and this would take it over the most it may store");
}

std::int64_t MembraneStore::now_seconds() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_().time_since_epoch()).count();
}

// --- tenants -------------------------------------------------------------------------------------

Result<std::string> MembraneStore::insert_tenant(BackendSession& session, const TenantTokens& tokens) {
  auto random = core::random_bytes(16);
  if (!random) return random.error();
  std::string id = core::hex_encode(*random);
  const std::int64_t now = now_seconds();
  if (auto s = session.insert_tenant(id, now); !s) return s.error();
  for (auto [token, kind] : {std::pair{&tokens.create, CapabilityKind::create},
                             std::pair{&tokens.query, CapabilityKind::query},
                             std::pair{&tokens.delete_self, CapabilityKind::delete_self}}) {
    if (auto s = session.insert_capability({.digest = token->digest(), .kind = kind, .tenant_id = id, .created_at = now});
        !s) {
      return s.error();
    }
  }
  return id;
}

Result<std::string> MembraneStore::create_tenant(const TenantTokens& tokens) {
  return writing<std::string>([&](BackendSession& session) { return insert_tenant(session, tokens); });
}

// Instances starting together on an empty database each ask; the exclusive lock makes their
// check-then-insert one step, so exactly one creates the tenant.
Result<std::optional<std::string>> MembraneStore::create_first_tenant(const TenantTokens& tokens) {
  return writing<std::optional<std::string>>([&](BackendSession& session) -> Result<std::optional<std::string>> {
    if (auto locked = session.take_exclusive(Exclusive::first_tenant); !locked) return locked.error();
    auto exists = session.has_tenants();
    if (!exists) return exists.error();
    if (*exists) return std::optional<std::string>();
    auto id = insert_tenant(session, tokens);
    if (!id) return id.error();
    return std::optional<std::string>(std::move(*id));
  });
}

Result<bool> MembraneStore::has_tenants() {
  return reading<bool>([](BackendSession& session) { return session.has_tenants(); });
}

Status MembraneStore::delete_tenant(const Token& presented) {
  return write([&](BackendSession& session) -> Status {
    auto acting = recheck(session, presented, CapabilityKind::delete_self);
    if (!acting) return acting.error();
    if (auto s = session.mark_tenant_deleted(acting->tenant_id); !s) return s;
    return commit_new_epoch(session);
  });
}

// --- resolution ----------------------------------------------------------------------------------

Result<Resolved> MembraneStore::resolve_in(BackendSession& session, std::string_view digest) {
  auto walk = session.walk(digest);
  if (!walk) return walk.error();
  return resolve_links(walk->links, std::string(digest), key_, clock_());
}

Result<Resolved> MembraneStore::recheck(BackendSession& session, const Token& presented, CapabilityKind kind) {
  auto resolved = resolve_in(session, presented.digest());
  if (!resolved) return resolved.error();
  if (resolved->kind != kind) return Error::unauthorized("the capability does not allow this");
  return resolved;
}

// A cached token whose epoch still holds costs no statement on SQLite (epoch_for_cached) and one
// on PostgreSQL; any other runs the walk, whose rows carry the epoch of its own snapshot.
Result<Resolved> MembraneStore::resolve(const Token& token) {
  const std::string digest = token.digest();
  return reading<Resolved>([&](BackendSession& session) -> Result<Resolved> {
    if (auto cached = cache_.find(digest)) {
      // An expiry ends a cached resolution as surely as a revoke (contract §11).
      if (cached->resolved.expires_at && clock_() >= *cached->resolved.expires_at) {
        cache_.count(ResolutionLookup::stale);
        return Error::unauthorized("unknown or revoked capability", "expired");
      }
      auto epoch = epoch_for_cached(session);
      if (!epoch) return epoch.error();
      if (*epoch == cached->epoch) {
        cache_.count(ResolutionLookup::hit);
        cached->resolved.epoch = cached->epoch;
        return std::move(cached->resolved);
      }
      cache_.count(ResolutionLookup::stale);
    } else {
      cache_.count(ResolutionLookup::miss);
    }
    auto walk = session.walk(digest);
    if (!walk) return walk.error();
    auto resolved = resolve_links(walk->links, digest, key_, clock_(),
                                  [this](const std::string& config) { return cache_.known_config(config); });
    if (!resolved) return resolved;
    resolved->epoch = walk->epoch;
    if (walk->epoch) cache_.store(digest, *resolved, *walk->epoch);
    return resolved;
  });
}

// A networked database's epoch is watched in the background (no round trip here); a local one is
// read by the first check after its last reading grew older than kLocalEpochViewBound. Either view
// counts only while younger than its bound, and a revoke's answer waits out that bound (see
// revocation_settle): a view read before the revoke's commit cannot outlive the 202.
bool MembraneStore::still_current(const Resolved& resolved) {
  if (!resolved.epoch) return false;
  // A grant that expired since the resolution (a slow body) is no more current than a revoked one.
  if (resolved.expires_at && clock_() >= *resolved.expires_at) return false;
  const bool watched = backend_->watches_epoch();
  const auto view = watched ? backend_->epoch_view() : local_epoch_view();
  const auto bound = watched ? backend_->epoch_view_bound() : kLocalEpochViewBound;
  return view && view->epoch == *resolved.epoch && std::chrono::steady_clock::now() - view->started < bound;
}

// The epoch a cached resolution is checked against. A local database's is the view the send-time
// check keeps (read again through `session` once older than kLocalEpochViewBound): a cached token
// then costs no statement, and what a revoke made elsewhere cut is refused within the bound,
// which its 202 waits out. A networked database's is read (its watched view may lag further).
Result<std::int64_t> MembraneStore::epoch_for_cached(BackendSession& session) {
  if (backend_->watches_epoch()) return session.epoch();
  auto view = local_view_read_by([&] { return session.epoch(); });
  if (!view) return view.error();
  return view->epoch;
}

// Under local_view_mutex_: whether a reading begun at `started` may replace the view. Not one
// begun before a revoke of this store committed, which may hold the epoch from before it.
bool MembraneStore::view_is_newer(std::chrono::steady_clock::time_point started) const {
  return started >= views_from_ && (!local_view_ || local_view_->started < started);
}

// The local view while younger than kLocalEpochViewBound; otherwise a reading by `read_epoch`,
// which becomes the view.
Result<EpochReading> MembraneStore::local_view_read_by(const std::function<Result<std::int64_t>()>& read_epoch) {
  {
    std::lock_guard lock(local_view_mutex_);
    if (local_view_ && std::chrono::steady_clock::now() - local_view_->started < kLocalEpochViewBound) {
      return *local_view_;
    }
  }
  // The time is taken before the read: the reading is no younger than that.
  const auto started = std::chrono::steady_clock::now();
  auto epoch = read_epoch();
  if (!epoch) return epoch.error();
  const EpochReading fresh{*epoch, started};
  std::lock_guard lock(local_view_mutex_);
  if (view_is_newer(started)) local_view_ = fresh;
  return fresh;
}

std::optional<EpochReading> MembraneStore::local_epoch_view() {
  auto view = local_view_read_by(
      [this] { return reading<std::int64_t>([](BackendSession& session) { return session.epoch(); }); });
  if (!view) return std::nullopt;
  return *view;
}

// Inside the revoking transaction: from its commit on, no resolution cached before it is used,
// by any process sharing the database.
Status MembraneStore::commit_new_epoch(BackendSession& session) {
  auto epoch = new_revocation_epoch();
  if (!epoch) return epoch.error();
  ++epochs_committed_;
  return session.set_epoch(*epoch);
}

// --- membranes -----------------------------------------------------------------------------------

Result<std::vector<bool>> MembraneStore::cut_flags(BackendSession& session, const std::vector<StoredMembrane>& stored) {
  std::vector<std::string> digests;
  for (const auto& m : stored) {
    if (!m.export_digest.empty()) digests.push_back(m.export_digest);
  }
  auto walks = session.walk_each(digests);
  if (!walks) return walks.error();
  std::vector<bool> cut;
  cut.reserve(stored.size());
  for (const auto& m : stored) {
    auto walk = walks->find(m.export_digest);
    if (m.export_digest.empty() || walk == walks->end()) {
      cut.push_back(true);
      continue;
    }
    // The membrane lives exactly as long as its export capability resolves.
    auto resolved = resolve_links(walk->second.links, m.export_digest, key_, clock_());
    if (!resolved && resolved.error().kind != ErrorKind::unauthorized) return resolved.error();
    cut.push_back(!resolved);
  }
  return cut;
}

Result<Membrane> MembraneStore::unseal(const std::string& tenant_id, const StoredMembrane& stored) const {
  auto export_text = key_.open(stored.sealed_export, membrane_token_context("export", tenant_id, stored.id));
  auto revoke_text = key_.open(stored.sealed_revoke, membrane_token_context("revoke", tenant_id, stored.id));
  if (!export_text || !revoke_text) return Error::internal("a stored membrane token does not open");
  auto export_token = Token::parse(*export_text);
  auto revoke_token = Token::parse(*revoke_text);
  if (!export_token || !revoke_token) return Error::internal("a stored membrane token is malformed");
  return Membrane{stored.id, std::move(*export_token), std::move(*revoke_token)};
}

Status MembraneStore::create_membrane(const Token& presented, const Membrane& membrane) {
  return write([&](BackendSession& session) -> Status {
    auto acting = recheck(session, presented, CapabilityKind::create);
    if (!acting) return acting.error();
    if (acting->walked + 1 > kMaxDependencies) {
      return Error::invalid("capability", "this create capability is too far from its origin to create more");
    }
    const std::string& tenant_id = acting->tenant_id;
    auto sealed_export =
        key_.seal(membrane.export_token.text(), membrane_token_context("export", tenant_id, membrane.id));
    if (!sealed_export) return sealed_export.error();
    auto sealed_revoke =
        key_.seal(membrane.revoke_token.text(), membrane_token_context("revoke", tenant_id, membrane.id));
    if (!sealed_revoke) return sealed_revoke.error();

    auto existing = session.membrane(tenant_id, membrane.id);
    if (!existing) return existing.error();
    if (*existing) {
      auto cut = cut_flags(session, {**existing});
      if (!cut) return cut.error();
      if (!cut->front()) return conflict_of_id();
      // A membrane cut with the capability it was made through is gone, like a revoked one: it
      // frees its id (and is marked revoked now, so the unique index agrees).
      if (auto s = session.mark_membrane_revoked((*existing)->row); !s) return s;
    }
    const auto sealed_size = static_cast<std::int64_t>(sealed_export->size() + sealed_revoke->size());
    if (auto s = charge(session, tenant_id, {.membranes = 1, .stored_bytes = sealed_size}); !s) return s;
    const std::int64_t now = now_seconds();
    // A concurrent create of the same id fails on the unique index: conflict.
    auto row = session.insert_membrane({tenant_id, membrane.id, std::move(*sealed_export), std::move(*sealed_revoke), now});
    if (!row) return row.error().kind == ErrorKind::conflict ? conflict_of_id() : row.error();
    for (auto [token, kind] : {std::pair{&membrane.export_token, CapabilityKind::export_},
                               std::pair{&membrane.revoke_token, CapabilityKind::revoke}}) {
      if (auto s = session.insert_capability({.digest = token->digest(),
                                              .kind = kind,
                                              .tenant_id = tenant_id,
                                              .membrane = *row,
                                              .via = acting->presented,
                                              .created_at = now});
          !s) {
        return s.error();
      }
    }
    return core::ok_status();
  });
}

Result<std::optional<Membrane>> MembraneStore::find_membrane(const std::string& tenant_id, const std::string& id) {
  return reading<std::optional<Membrane>>([&](BackendSession& session) -> Result<std::optional<Membrane>> {
    auto stored = session.membrane(tenant_id, id);
    if (!stored) return stored.error();
    if (!*stored) return std::optional<Membrane>();
    auto cut = cut_flags(session, {**stored});
    if (!cut) return cut.error();
    if (cut->front()) return std::optional<Membrane>();
    auto membrane = unseal(tenant_id, **stored);
    if (!membrane) return membrane.error();
    return std::optional<Membrane>(std::move(*membrane));
  });
}

// Reads in batches and skips cut membranes, until the page plus one more is found or the
// membranes run out: "completed" must say exactly whether more exist.
Result<MembranePage> MembraneStore::list_membranes(const std::string& tenant_id, const std::optional<std::string>& after,
                                                   std::size_t limit) {
  limit = std::min(limit, kMaxPageLimit);
  return reading<MembranePage>([&](BackendSession& session) -> Result<MembranePage> {
    MembranePage page;
    std::optional<std::string> cursor = after;
    const std::size_t batch = limit + 1;
    while (true) {
      auto stored = session.membranes(tenant_id, cursor, batch);
      if (!stored) return stored.error();
      auto cut = cut_flags(session, *stored);
      if (!cut) return cut.error();
      for (std::size_t i = 0; i < stored->size(); ++i) {
        if ((*cut)[i]) continue;
        if (page.membranes.size() == limit) {
          page.completed = false;
          return page;
        }
        auto membrane = unseal(tenant_id, (*stored)[i]);
        if (!membrane) return membrane.error();
        page.membranes.push_back(std::move(*membrane));
      }
      if (stored->size() < batch) return page;
      cursor = stored->back().id;
    }
  });
}

Status MembraneStore::revoke_membrane(const Token& presented) {
  // One row: every capability exported through the membrane, every re-export below them and
  // everything made through them depend on it, and check it on each use.
  return write([&](BackendSession& session) -> Status {
    auto acting = recheck(session, presented, CapabilityKind::revoke);
    if (!acting) return acting.error();
    if (auto s = session.mark_membrane_revoked(*acting->membrane); !s) return s;
    return commit_new_epoch(session);
  });
}

// --- exports -------------------------------------------------------------------------------------

Status MembraneStore::export_uri(const Token& presented, const Token& token, const core::UriExport& config,
                                 const NewGrant& grant) {
  std::string plain = core::to_json(config).dump();
  auto sealed = key_.seal(plain, uri_config_context(token.digest()));
  core::secure_wipe(plain);
  if (!sealed) return sealed.error();
  return write([&](BackendSession& session) -> Status {
    auto acting = recheck(session, presented, CapabilityKind::export_);
    if (!acting) return acting.error();
    if (acting->walked + 1 > kMaxDependencies) {
      return Error::invalid("capability", "this export capability is too far from its origin to export more");
    }
    return insert_grant(session, *acting, grant,
                        {.digest = token.digest(),
                         .kind = CapabilityKind::uri,
                         .tenant_id = acting->tenant_id,
                         .membrane = acting->membrane,
                         .via = acting->presented,
                         .sealed_config = *sealed,
                         .created_at = now_seconds()},
                        to_string(CapabilityKind::uri), &config);
  });
}

Status MembraneStore::export_reexport(const Token& presented, const Token& token, const Token& target,
                                      const NewGrant& grant) {
  // Both resolved inside the write transaction: a revoke cannot slip between check and insert.
  return write([&](BackendSession& session) -> Status {
    auto acting = recheck(session, presented, CapabilityKind::export_);
    if (!acting) return acting.error();
    auto resolved = resolve_in(session, target.digest());
    if (!resolved) {
      if (resolved.error().kind == ErrorKind::unauthorized) {
        return Error::not_found("the capability to re-export does not exist or is revoked");
      }
      return resolved.error();
    }
    if (resolved->depth + 1 >= kMaxReexportDepth) {
      return Error::invalid("capability", "a chain may hold at most " + std::to_string(kMaxReexportDepth - 1) +
                                              " re-export links; this export would be link " +
                                              std::to_string(resolved->depth + 1));
    }
    if (resolved->walked + acting->walked + 1 > kMaxDependencies) {
      return Error::invalid("capability", "a capability may depend on at most " + std::to_string(kMaxDependencies) +
                                              " others; this export would depend on more");
    }
    return insert_grant(session, *acting, grant,
                        {.digest = token.digest(),
                         .kind = CapabilityKind::reexport,
                         .tenant_id = acting->tenant_id,
                         .membrane = acting->membrane,
                         .parent = resolved->presented,
                         .via = acting->presented,
                         .created_at = now_seconds()},
                        to_string(resolved->kind), resolved->uri.get());
  });
}

// The grant's capability, its row of limits and its own revoke capability, charged to the
// exporting tenant: one grant, and the bytes of what is sealed and of what the owner wrote.
Status MembraneStore::insert_grant(BackendSession& session, const Resolved& acting, const NewGrant& grant,
                                   const CapabilityRecord& record, std::string_view operation,
                                   const core::UriExport* leads_to) {
  const StoredGrant stored = stored_grant(grant.id, grant.limits);
  std::optional<std::string> sealed_target;
  if (leads_to) {
    const nlohmann::json target = grant_target_json(*leads_to);
    auto sealed = key_.seal(target.dump(), sealing::grant_target_context(grant.id));
    if (!sealed) return sealed.error();
    sealed_target = std::move(*sealed);
  }
  const auto bytes = static_cast<std::int64_t>((record.sealed_config ? record.sealed_config->size() : 0) +
                                               stored.label.value_or("").size() + stored.allow_from.size());
  if (auto s = charge(session, acting.tenant_id, {.grants = 1, .stored_bytes = bytes}); !s) return s;
  auto row = session.insert_capability(record);
  if (!row) return row.error();
  if (auto s = session.insert_grant(*row, stored, std::string(operation), sealed_target); !s) return s;
  auto revoke = session.insert_capability({.digest = grant.revoke.digest(),
                                           .kind = CapabilityKind::revoke_grant,
                                           .tenant_id = acting.tenant_id,
                                           .created_at = record.created_at,
                                           .target = *row});
  if (!revoke) return revoke.error();
  return core::ok_status();
}

// In one write transaction, under the grant's row lock: never more than maxUses reserved in all.
// An instance takes at most a sixteenth of what is left (at least one), so with several
// instances none sits on the last uses while another could give them.
Result<std::int64_t> MembraneStore::reserve_uses(CapabilityRow grant, std::int64_t wanted) {
  return writing<std::int64_t>([&](BackendSession& session) -> Result<std::int64_t> {
    auto uses = session.lock_grant_uses(grant);
    if (!uses) return uses.error();
    if (!*uses) return Error::internal("a grant with maxUses has no use count");
    const std::int64_t left = (*uses)->max_uses - (*uses)->reserved;
    const std::int64_t taken = std::min({wanted, std::max<std::int64_t>(1, left / 16), left});
    if (taken <= 0) return std::int64_t{0};
    if (auto s = session.add_reserved_uses(grant, taken); !s) return s.error();
    return taken;
  });
}

// --- the inventory -------------------------------------------------------------------------------

Result<GrantEntry> MembraneStore::open_entry(StoredGrantEntry stored) const {
  GrantEntry entry = std::move(stored.entry);
  auto allow_from = parse_allow_from(stored.allow_from_text);
  if (!allow_from) return allow_from.error();
  entry.allow_from = std::move(*allow_from);
  if (stored.sealed_target) {
    auto opened = key_.open(*stored.sealed_target, sealing::grant_target_context(entry.id));
    if (!opened) return Error::internal("a stored grant target does not open");
    auto target = nlohmann::json::parse(*opened, nullptr, false);
    if (!target.is_object() || !target.contains("target")) return Error::internal("a stored grant target does not parse");
    entry.target = GrantTarget{target["target"].get<std::string>(), std::nullopt};
    if (target.contains("method") && target["method"].is_string()) entry.target->method = target["method"].get<std::string>();
  }
  return entry;
}

// The state is what a use would meet now: the same walk and rule as a resolution
// (resolve_links), one statement for the whole page.
Result<std::vector<GrantEntry>> MembraneStore::open_entries(BackendSession& session,
                                                            std::vector<StoredGrantEntry> stored) {
  std::vector<std::string> digests;
  for (const auto& one : stored) digests.push_back(one.digest);
  auto walks = session.walk_each(digests);
  if (!walks) return walks.error();
  std::vector<GrantEntry> entries;
  for (auto& one : stored) {
    const std::string digest = one.digest;
    auto entry = open_entry(std::move(one));
    if (!entry) return entry.error();
    auto walk = walks->find(digest);
    if (entry->revoked_at_ms) {
      entry->state = GrantState::revoked;
    } else if (walk == walks->end()) {
      entry->state = GrantState::cut;
    } else if (auto resolved = resolve_links(walk->second.links, digest, key_, clock_()); !resolved) {
      if (resolved.error().kind != ErrorKind::unauthorized) return resolved.error();
      entry->state = resolved.error().reason == "expired" ? GrantState::expired : GrantState::cut;
    } else if (entry->max_uses && entry->uses >= *entry->max_uses) {
      entry->state = GrantState::used_up;
    }
    entries.push_back(std::move(*entry));
  }
  return entries;
}

Result<GrantPage> MembraneStore::list_grants(const std::string& tenant_id, const std::string& membrane_id,
                                             const std::optional<std::string>& after, std::size_t limit) {
  return reading<GrantPage>([&](BackendSession& session) -> Result<GrantPage> {
    // One more than asked: whether anything comes after the page.
    auto stored = session.grants_of_membrane(tenant_id, membrane_id, after, limit + 1);
    if (!stored) return stored.error();
    GrantPage page;
    page.completed = stored->size() <= limit;
    if (!page.completed) stored->resize(limit);
    auto entries = open_entries(session, std::move(*stored));
    if (!entries) return entries.error();
    page.grants = std::move(*entries);
    return page;
  });
}

Result<std::optional<GrantEntry>> MembraneStore::find_grant(const std::string& tenant_id, const std::string& grant_id) {
  return reading<std::optional<GrantEntry>>([&](BackendSession& session) -> Result<std::optional<GrantEntry>> {
    auto stored = session.grant_by_id(tenant_id, grant_id);
    if (!stored) return stored.error();
    if (!*stored) return std::optional<GrantEntry>();
    std::vector<StoredGrantEntry> one;
    one.push_back(std::move(**stored));
    auto entries = open_entries(session, std::move(one));
    if (!entries) return entries.error();
    return std::optional<GrantEntry>(std::move(entries->front()));
  });
}

Result<std::int64_t> MembraneStore::grants_cut_by(const Resolved& revoker) {
  std::optional<MembraneRow> membrane;
  std::optional<CapabilityRow> grant;
  if (revoker.kind == CapabilityKind::revoke) membrane = revoker.membrane;
  if (revoker.kind == CapabilityKind::revoke_grant) grant = revoker.target;
  return count_cut(membrane, grant);
}

Result<std::int64_t> MembraneStore::grants_cut_by(const OperatorRevoke& revoked) {
  return count_cut(revoked.membrane, revoked.grant);
}

Result<std::int64_t> MembraneStore::count_cut(std::optional<MembraneRow> membrane, std::optional<CapabilityRow> grant) {
  if (!membrane && !grant) return std::int64_t{0};
  return reading<std::int64_t>([&](BackendSession& session) { return session.count_grants_below(membrane, grant); });
}

// One row: the grant's re-exports and everything made through them depend on it, and check it on
// each use. Its revoke capability depends only on the tenant: a repeated revoke answers 202.
Status MembraneStore::revoke_grant(const Token& presented) {
  return write([&](BackendSession& session) -> Status {
    auto acting = recheck(session, presented, CapabilityKind::revoke_grant);
    if (!acting) return acting.error();
    if (!acting->target) return Error::internal("a grant's revoke capability names no grant");
    if (auto s = session.mark_grant_revoked(*acting->target, to_unix_ms(clock_())); !s) return s;
    return commit_new_epoch(session);
  });
}

// --- the operator's (membraned admin) ------------------------------------------------------------

Result<TenantPage> MembraneStore::list_tenants(const std::optional<std::string>& after, std::size_t limit) {
  limit = std::min(limit, kMaxPageLimit);
  return reading<TenantPage>([&](BackendSession& session) -> Result<TenantPage> {
    // One more than asked: whether anything comes after the page.
    auto tenants = session.tenants(after, limit + 1);
    if (!tenants) return tenants.error();
    TenantPage page;
    page.completed = tenants->size() <= limit;
    if (!page.completed) tenants->resize(limit);
    page.tenants = std::move(*tenants);
    return page;
  });
}

Result<std::optional<TenantEntry>> MembraneStore::find_tenant(const std::string& tenant_id) {
  return reading<std::optional<TenantEntry>>([&](BackendSession& session) { return session.tenant(tenant_id); });
}

// The membrane's revoke capability's write (revoke_membrane), with the membrane found by its id
// instead of through a capability. A cut membrane (dead with what it was made through) is marked
// revoked too: it frees its id, as a create would find.
Result<OperatorRevoke> MembraneStore::revoke_membrane_by_id(const std::string& tenant_id,
                                                            const std::string& membrane_id) {
  return writing<OperatorRevoke>([&](BackendSession& session) -> Result<OperatorRevoke> {
    auto stored = session.membrane(tenant_id, membrane_id);
    if (!stored) return stored.error();
    if (!*stored) return Error::not_found("the tenant has no live membrane of this id");
    if (auto s = session.mark_membrane_revoked((*stored)->row); !s) return s.error();
    if (auto s = commit_new_epoch(session); !s) return s.error();
    return OperatorRevoke{.membrane = (*stored)->row};
  });
}

// revoke_grant's write, with the grant found by its handle.
Result<OperatorRevoke> MembraneStore::revoke_grant_by_id(const std::string& tenant_id, const std::string& grant_id) {
  return writing<OperatorRevoke>([&](BackendSession& session) -> Result<OperatorRevoke> {
    auto stored = session.grant_by_id(tenant_id, grant_id);
    if (!stored) return stored.error();
    if (!*stored) return Error::not_found("the tenant has no grant of this id");
    const bool already = (*stored)->entry.revoked_at_ms.has_value();
    if (auto s = session.mark_grant_revoked((*stored)->row, to_unix_ms(clock_())); !s) return s.error();
    if (auto s = commit_new_epoch(session); !s) return s.error();
    return OperatorRevoke{.grant = (*stored)->row, .already = already};
  });
}

// delete_tenant's write, for a tenant named by its id.
Result<OperatorRevoke> MembraneStore::delete_tenant_by_id(const std::string& tenant_id) {
  return writing<OperatorRevoke>([&](BackendSession& session) -> Result<OperatorRevoke> {
    auto tenant = session.tenant(tenant_id);
    if (!tenant) return tenant.error();
    if (!*tenant) return Error::not_found("no tenant has this id");
    if (auto s = session.mark_tenant_deleted(tenant_id); !s) return s.error();
    if (auto s = commit_new_epoch(session); !s) return s.error();
    return OperatorRevoke{.already = (*tenant)->deleted};
  });
}

}  // namespace membraned::storage
