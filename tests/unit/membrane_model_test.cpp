// A model-based randomized test of delegation and revocation (contract §4 and §7) at the
// api::Api level over a real store, each backend in turn (SQLite, and PostgreSQL on the test
// cluster: TEST_P over test::kBackends): random create / export / re-export / revoke /
// deleteSelf / query operations, each answer checked against a small reference model, and after
// every step every capability ever issued checked to resolve exactly when the model says it is
// alive, and to what the model says it stands for. Each capability depends on what it stands for
// (parent) and on the capability presented to make it (via), so what is made through a
// re-exported capability dies with the membrane the re-export went through. Also: writes with an
// authorisation gone stale between authorize() and handle() (a revoke in between) answer 401.
//
// Grants (contract §11-12): exports and re-exports carry random expiries and use limits; the
// store's clock is the model's (steps move it forward); grants are revoked one by one with their
// own revoke capability; uses of uri capabilities and operations through re-exported built-in
// ones are counted on every grant above them. A re-export never works where its parent would not.
//
// MEMBRANED_MODEL_SEED=N replays one seed; MEMBRANED_MODEL_STEPS=N changes the steps per seed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/api.hpp"
#include "core/crypto.hpp"
#include "core/time.hpp"
#include "core/encoding.hpp"
#include "core/token.hpp"
#include "storage/master_key.hpp"
#include "storage/store.hpp"
#include "tests/support/store_backends.hpp"
#include "tests/support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
namespace core = membraned::core;
namespace api = membraned::api;
namespace storage = membraned::storage;
using json = nlohmann::json;
using storage::CapabilityKind;

constexpr std::string_view kAuthority = "membrane.test";
constexpr int kDefaultSeeds = 16;
constexpr int kDefaultSteps = 150;

using membraned::test::Backend;
using membraned::test::TestDatabase;

std::optional<std::uint64_t> env_number(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::strtoull(value, nullptr, 0);
}

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' || u == '_' ||
        u == '.' || u == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// Membrane ids: few enough to collide often, with spaces, slashes and non-ASCII text.
const std::vector<std::string> kIds = {"alpha", "beta", "a b", "a/b", "ü", "日本", "x", "m 3/4", "Zed", "a"};

// --- the reference model ---------------------------------------------------------------------------

// Capabilities refer to older ones only (parent, via), so index order is dependency order.
struct Cap {
  core::Token token;
  std::string uri;
  CapabilityKind kind;  // as stored: reexport for a re-export
  int tenant;           // whose it is
  int membrane;         // the membrane it belongs to or was exported through; -1 for tenant ones
  int parent;           // re-export: what it stands for; else -1
  int via;              // the capability presented to make it (create, export); -1 for tenant ones
  int depth;            // re-export links to its terminal capability
  std::string upstream; // uri capabilities: the configured uri
  std::vector<int> dependencies;  // itself, and transitively its parent's and via's; sorted
  // A grant (uri or re-export): when it ends, how many uses it allows and has had, whether its
  // own revoke capability was used. A revoke_grant capability: the grant it revokes.
  bool grant = false;
  std::optional<std::int64_t> expires_ms;
  std::optional<std::uint64_t> max_uses;
  std::uint64_t uses = 0;
  bool grant_revoked = false;
  int target = -1;
};

struct Membrane {
  std::string id;
  int tenant;
  bool revoked = false;
  int via;  // the create capability presented to make it: its export and revoke caps' via
  int export_cap;
  int revoke_cap;
  storage::MembraneRow row = -1;
};

struct Tenant {
  std::string id;
  bool deleted = false;
  int create, query, delete_self;
};

struct Model {
  std::vector<Tenant> tenants;
  std::vector<Membrane> membranes;
  std::vector<Cap> caps;
  std::int64_t now_ms = 0;  // the store's clock

  // alive(cap) = its tenant is not deleted, and its membrane is not revoked (but a membrane's own
  // revoke capability survives the revocation of its membrane), and, for a grant, it is neither
  // revoked nor expired, and alive(parent), and alive(via). Computed for all capabilities at once,
  // in index order, after every change.
  bool alive(int c) const {
    if (alive_.size() != caps.size()) {
      alive_.assign(caps.size(), false);
      for (std::size_t i = 0; i < caps.size(); ++i) {
        const Cap& cap = caps[i];
        bool ok = !tenants[static_cast<std::size_t>(cap.tenant)].deleted;
        if (cap.membrane >= 0 && membranes[static_cast<std::size_t>(cap.membrane)].revoked &&
            cap.kind != CapabilityKind::revoke) {
          ok = false;
        }
        if (cap.grant_revoked || (cap.expires_ms && now_ms >= *cap.expires_ms)) ok = false;
        if (cap.parent >= 0 && !alive_[static_cast<std::size_t>(cap.parent)]) ok = false;
        if (cap.via >= 0 && !alive_[static_cast<std::size_t>(cap.via)]) ok = false;
        alive_[i] = ok;
      }
    }
    return alive_[static_cast<std::size_t>(c)];
  }
  // How many capabilities its life depends on, itself included (Resolved::walked).
  std::size_t walked(int c) const { return cap(c).dependencies.size(); }
  // A membrane is live while not revoked and the capability it was made through is alive: a
  // membrane made through a re-exported create capability is cut with it.
  bool live(const Membrane& m) const { return !m.revoked && alive(m.via); }

  void advance(std::int64_t ms) {
    now_ms += ms;
    alive_.clear();
  }
  void revoke_grant(int c) {
    caps[static_cast<std::size_t>(c)].grant_revoked = true;
    alive_.clear();
  }
  // The grants with maxUses on c's chain (itself and what it stands for, up to the end).
  std::vector<int> limited_chain(int c) const {
    std::vector<int> out;
    for (; c >= 0; c = cap(c).parent) {
      if (cap(c).max_uses) out.push_back(c);
    }
    return out;
  }
  // One use through c, if every limited grant above it has one left: taken from all of them.
  bool take_use(int c) {
    const auto chain = limited_chain(c);
    for (int g : chain) {
      if (cap(g).uses >= *cap(g).max_uses) return false;
    }
    for (int g : chain) ++caps[static_cast<std::size_t>(g)].uses;
    return true;
  }
  // The grants on c's parent chain (Resolved::chain), c first.
  std::vector<int> grant_chain(int c) const {
    std::vector<int> out;
    for (; c >= 0; c = cap(c).parent) {
      if (cap(c).grant) out.push_back(c);
    }
    return out;
  }

  void revoke_membrane(int m) {
    membranes[static_cast<std::size_t>(m)].revoked = true;
    alive_.clear();
  }
  void delete_tenant(int t) {
    tenants[static_cast<std::size_t>(t)].deleted = true;
    for (Membrane& m : membranes) {
      if (m.tenant == t) m.revoked = true;
    }
    alive_.clear();
  }
  int terminal(int c) const {
    while (caps[static_cast<std::size_t>(c)].kind == CapabilityKind::reexport) {
      c = caps[static_cast<std::size_t>(c)].parent;
    }
    return c;
  }
  const Cap& cap(int c) const { return caps[static_cast<std::size_t>(c)]; }
  bool live_id(int tenant_index, const std::string& id) const {
    return std::any_of(membranes.begin(), membranes.end(), [&](const Membrane& m) {
      return m.tenant == tenant_index && live(m) && m.id == id;
    });
  }
  std::string describe(int c) const {
    const Cap& x = cap(c);
    std::string s = "cap #" + std::to_string(c) + " kind=" + std::string(storage::to_string(x.kind)) +
                    " tenant=" + std::to_string(x.tenant) + " membrane=" + std::to_string(x.membrane) +
                    " parent=" + std::to_string(x.parent) + " via=" + std::to_string(x.via) +
                    " depth=" + std::to_string(x.depth) + " walked=" + std::to_string(walked(c));
    if (x.grant) {
      s += " grant(expires=" + (x.expires_ms ? std::to_string(*x.expires_ms - now_ms) + "ms" : std::string("-")) +
           " uses=" + std::to_string(x.uses) + "/" + (x.max_uses ? std::to_string(*x.max_uses) : std::string("-")) +
           (x.grant_revoked ? " revoked" : "") + ")";
    }
    return s;
  }

 private:
  mutable std::vector<bool> alive_;
};

// --- one seeded run ----------------------------------------------------------------------------------

class ModelRun {
 public:
  ModelRun(Backend backend, std::uint64_t seed) : db_(backend), rng_(seed) {
    auto key = storage::MasterKey::from_base64(core::base64_encode(std::string(32, 'k')));
    if (!key) throw std::runtime_error("master key");
    // The store's clock stands still but for the model's steps: expiry is decided by the model.
    auto store = db_.open(std::move(*key), 4, {},
                          [this] { return base_ + std::chrono::milliseconds(model_.now_ms); });
    if (!store) throw std::runtime_error("open store: " + store.error().message);
    store_ = std::move(*store);
    api_ = std::make_unique<api::Api>(*store_, api::Settings{std::string(kAuthority)});
  }

  // false once the implementation and the model have parted (no point going on).
  bool step(int n) {
    step_ = n;
    int live_tenants = static_cast<int>(std::count_if(model_.tenants.begin(), model_.tenants.end(),
                                                      [](const Tenant& t) { return !t.deleted; }));
    if (live_tenants < 2) {
      add_tenant();
    } else {
      int r = uniform(0, 99);
      if (r < 18) create_membrane();
      else if (r < 32) export_uri();
      else if (r < 58) reexport();
      else if (r < 68) revoke();
      else if (r < 70) delete_self();
      else if (r < 78) query();
      else if (r < 84) revoke_grant();
      else if (r < 96) use();
      else advance_clock();
    }
    if (!diverged_) check_all();
    return !diverged_ && !testing::Test::HasFatalFailure();
  }

  void add_tenant() {
    auto created = api_->create_tenant();
    ASSERT_TRUE(created.ok()) << created.error().message;
    const json& body = *created;
    ASSERT_TRUE(body.contains("id") && body["id"].is_string()) << body.dump();
    Tenant t{body["id"].get<std::string>(), false, -1, -1, -1};
    int index = static_cast<int>(model_.tenants.size());
    const json& caps = body["capabilities"];
    t.create = add_cap(caps["create"], CapabilityKind::create, index, -1, -1, -1, 0);
    t.query = add_cap(caps["query"], CapabilityKind::query, index, -1, -1, -1, 0);
    t.delete_self = add_cap(caps["deleteSelf"], CapabilityKind::delete_self, index, -1, -1, -1, 0);
    model_.tenants.push_back(std::move(t));
  }

  std::size_t capabilities() const { return model_.caps.size(); }
  std::size_t membranes() const { return model_.membranes.size(); }
  const std::map<std::string, int>& statuses() const { return statuses_; }

 private:
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool chance(int percent) { return uniform(0, 99) < percent; }

  int add_cap(const json& uri, CapabilityKind kind, int tenant, int membrane, int parent, int via, int depth,
              std::string upstream = {}) {
    EXPECT_TRUE(uri.is_string()) << uri.dump();
    std::string text = uri.is_string() ? uri.get<std::string>() : std::string();
    EXPECT_EQ(text.rfind("cpblty://" + std::string(kAuthority) + "/#", 0), 0u) << text;
    auto parsed = core::CapabilityUri::parse(text);
    if (!parsed) {
      ADD_FAILURE() << "not a capability URI: " << text;
      diverged_ = true;
      return -1;
    }
    for (const Cap& c : model_.caps) {
      if (c.token == parsed->token()) {
        ADD_FAILURE() << "a token was issued twice";
        diverged_ = true;
      }
    }
    const int index = static_cast<int>(model_.caps.size());
    std::vector<int> dependencies{index};
    for (int d : {parent, via}) {
      if (d < 0) continue;
      std::vector<int> merged;
      const auto& more = model_.cap(d).dependencies;
      std::set_union(dependencies.begin(), dependencies.end(), more.begin(), more.end(), std::back_inserter(merged));
      dependencies = std::move(merged);
    }
    // Creation keeps every capability within the bound on what resolution walks.
    EXPECT_LE(dependencies.size(), storage::kMaxDependencies) << "issued beyond the dependency bound";
    model_.caps.push_back(Cap{parsed->token(), text, kind, tenant, membrane, parent, via, depth,
                              std::move(upstream), std::move(dependencies), false, std::nullopt, std::nullopt, 0,
                              false, -1});
    return index;
  }

  // A capability whose terminal kind is `kind`; mostly a live one when there is one.
  int pick(std::optional<CapabilityKind> kind) {
    std::vector<int> all, live;
    for (int c = 0; c < static_cast<int>(model_.caps.size()); ++c) {
      if (kind && model_.cap(model_.terminal(c)).kind != *kind) continue;
      all.push_back(c);
      if (model_.alive(c)) live.push_back(c);
    }
    if (all.empty()) return -1;
    const auto& from = !live.empty() && chance(75) ? live : all;
    return from[static_cast<std::size_t>(uniform(0, static_cast<int>(from.size()) - 1))];
  }

  // The status an operation through c gets before its own checks: 401 when c is dead or a
  // limited grant above it is used up (the use is then taken, as handle() takes it first); 0
  // when it goes on.
  int admitted(int c) {
    if (!model_.alive(c)) return 401;
    return model_.take_use(c) ? 0 : 401;
  }

  // Random grant fields for an export body: an expiry after the model's now, a few uses, a label.
  json grant_fields() {
    json fields = json::object();
    if (chance(30)) {
      const std::int64_t at = model_.now_ms + uniform(300, 3600) * 1000;
      const auto when = base_ + std::chrono::milliseconds(at);
      fields["expiresAt"] = core::format_rfc3339(when);
    }
    if (chance(30)) fields["maxUses"] = uniform(1, 4);
    if (chance(10)) fields["label"] = "grant " + std::to_string(step_);
    return fields;
  }
  void apply_grant_fields(int c, const json& fields) {
    Cap& cap = model_.caps[static_cast<std::size_t>(c)];
    cap.grant = true;
    if (fields.contains("expiresAt")) {
      auto at = core::parse_iso8601(fields["expiresAt"].get<std::string>());
      cap.expires_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*at - base_).count();
    }
    if (fields.contains("maxUses")) cap.max_uses = fields["maxUses"].get<std::uint64_t>();
  }
  // The grant's own revoke capability, from a 201.
  void add_revoke_of(int grant, const json& body, int tenant) {
    const int r = add_cap(body["revoke"], CapabilityKind::revoke_grant, tenant, -1, -1, -1, 0);
    if (r >= 0) model_.caps[static_cast<std::size_t>(r)].target = grant;
    EXPECT_TRUE(body.contains("id") && body["id"].is_string()) << body.dump();
  }

  // What the server does: authorize from the header, then handle.
  api::Response call(int c, std::string_view target, std::string_view body) {
    auto who = api_->authorize("Bearer " + model_.cap(c).token.text());
    if (!who) {
      EXPECT_EQ(who.error().kind, core::ErrorKind::unauthorized);
      return api::Api::error_response(who.error());
    }
    return api_->handle(*who, target, body);
  }

  bool expect_status(const char* what, int c, const api::Response& response, int expected) {
    statuses_[std::string(what) + " " + std::to_string(response.status)]++;
    if (response.status != expected) {
      ADD_FAILURE() << what << " with " << model_.describe(c) << " (alive=" << model_.alive(c)
                    << "): expected " << expected << ", got " << response.status << " " << response.body.dump();
      diverged_ = true;
      return false;
    }
    if (expected >= 400) {
      EXPECT_EQ(response.body.value("statusCode", 0), expected) << response.body.dump();
      EXPECT_TRUE(response.body.contains("error")) << response.body.dump();
    } else {
      EXPECT_FALSE(response.body.contains("error")) << response.body.dump();
    }
    return true;
  }

  void create_membrane() {
    int c = pick(CapabilityKind::create);
    const int owner = model_.cap(model_.terminal(c)).tenant;
    // Beyond the bound a create is refused or not; store_test covers it, the model does not.
    if (model_.walked(c) + 1 > storage::kMaxDependencies) return;
    std::string id = chance(3) ? std::string() : kIds[static_cast<std::size_t>(uniform(0, static_cast<int>(kIds.size()) - 1))];
    int expected = admitted(c);
    if (expected == 0) expected = id.empty() ? 400 : model_.live_id(owner, id) ? 409 : 201;
    auto response = call(c, "/", json{{"id", id}}.dump());
    const bool through_reexport = model_.cap(c).kind == CapabilityKind::reexport;
    if (!expect_status(through_reexport ? "create (re-exported)" : "create", c, response, expected) ||
        expected != 201) {
      return;
    }
    ASSERT_EQ(response.body.value("id", ""), id);
    const json& caps = response.body["capabilities"];
    int m = static_cast<int>(model_.membranes.size());
    // Its capabilities are made through the create capability presented.
    Membrane membrane{id, owner, false, c, -1, -1, -1};
    membrane.export_cap = add_cap(caps["export"], CapabilityKind::export_, owner, m, -1, c, 0);
    membrane.revoke_cap = add_cap(caps["revoke"], CapabilityKind::revoke, owner, m, -1, c, 0);
    if (diverged_) return;
    auto who = api_->authorize("Bearer " + model_.cap(membrane.export_cap).token.text());
    ASSERT_TRUE(who.ok());
    ASSERT_TRUE(who->resolved.membrane.has_value());
    membrane.row = *who->resolved.membrane;
    for (const Membrane& other : model_.membranes) EXPECT_NE(other.row, membrane.row);
    model_.membranes.push_back(std::move(membrane));
  }

  void export_uri() {
    int c = pick(CapabilityKind::export_);
    if (c < 0) return;
    const Cap& exporter = model_.cap(model_.terminal(c));
    std::string upstream = "https://upstream.example/x/" + std::to_string(step_);
    const int tenant = exporter.tenant, membrane = exporter.membrane;
    int expected = admitted(c);
    if (expected == 0) expected = model_.walked(c) + 1 > storage::kMaxDependencies ? 400 : 201;
    json body = grant_fields();
    body["uri"] = upstream;
    auto response = call(c, "/", body.dump());
    const bool through_reexport = model_.cap(c).kind == CapabilityKind::reexport;
    if (!expect_status(through_reexport ? "export uri (re-exported)" : "export uri", c, response, expected) ||
        expected != 201) {
      return;
    }
    // Exported through the membrane the export capability finally acts on, made through `c`.
    const int made = add_cap(response.body["capability"], CapabilityKind::uri, tenant, membrane, -1, c, 0, upstream);
    if (made < 0) return;
    apply_grant_fields(made, body);
    add_revoke_of(made, response.body, tenant);
  }

  void reexport() {
    int c = pick(CapabilityKind::export_);
    int target = pick(std::nullopt);
    if (c < 0 || target < 0) return;
    const Cap& exporter = model_.cap(model_.terminal(c));
    const Cap& what = model_.cap(target);
    std::string uri = what.uri;
    if (chance(20)) {  // the custom URI form names the same token
      uri = "cpblty:" + core::base64url_encode(std::string(kAuthority)) + (chance(50) ? "@https" : "") + ":" +
            what.token.text();
    }
    const bool too_far = what.depth + 1 >= storage::kMaxReexportDepth ||
                         model_.walked(target) + model_.walked(c) + 1 > storage::kMaxDependencies;
    const int tenant = exporter.tenant, membrane = exporter.membrane, depth = what.depth + 1;
    int expected = admitted(c);
    if (expected == 0) expected = !model_.alive(target) ? 404 : too_far ? 400 : 201;
    json body = grant_fields();
    body["capability"] = uri;
    auto response = call(c, "/", body.dump());
    if (!expect_status("reexport", c, response, expected) || expected != 201) return;
    const int made = add_cap(response.body["capability"], CapabilityKind::reexport, tenant, membrane, target, c, depth);
    if (made < 0) return;
    apply_grant_fields(made, body);
    add_revoke_of(made, response.body, tenant);
    // The 201 reports the fewest uses of the chain: a re-export never out-uses its parent.
    std::optional<std::uint64_t> fewest;
    for (int g = made; g >= 0; g = model_.cap(g).parent) {
      if (auto max = model_.cap(g).max_uses; max && (!fewest || *max < *fewest)) fewest = *max;
    }
    EXPECT_EQ(response.body.contains("maxUses") ? std::optional(response.body["maxUses"].get<std::uint64_t>()) : std::nullopt,
              fewest)
        << response.body.dump();
  }

  void revoke() {
    int c = pick(CapabilityKind::revoke);
    if (c < 0) return;
    int expected = admitted(c);
    if (expected == 0) expected = 202;
    auto response = call(c, chance(50) ? "/" : "/ignored?x=1", chance(50) ? "" : "not even json");
    if (!expect_status("revoke", c, response, expected) || expected != 202) return;
    EXPECT_EQ(response.body, (json{{"statusCode", 202}, {"message", "Accepted"}}));
    model_.revoke_membrane(model_.cap(model_.terminal(c)).membrane);
  }

  void delete_self() {
    int c = pick(CapabilityKind::delete_self);
    if (c < 0) return;
    int expected = admitted(c);
    if (expected == 0) expected = 202;
    auto response = call(c, "/", "");
    if (!expect_status("deleteSelf", c, response, expected) || expected != 202) return;
    EXPECT_EQ(response.body, (json{{"statusCode", 202}, {"message", "Accepted"}}));
    model_.delete_tenant(model_.cap(model_.terminal(c)).tenant);
  }

  // Query answers exactly the tenant's live membranes, in byte order, with their capabilities.
  void query() {
    int c = pick(CapabilityKind::query);
    if (c < 0) return;
    const int owner = model_.cap(model_.terminal(c)).tenant;
    std::vector<const Membrane*> live;
    for (const Membrane& m : model_.membranes) {
      if (m.tenant == owner && model_.live(m)) live.push_back(&m);
    }
    std::sort(live.begin(), live.end(), [](const Membrane* a, const Membrane* b) { return a->id < b->id; });
    json expected = json::array();
    for (const Membrane* m : live) {
      expected.push_back(json{{"id", m->id},
                              {"capabilities",
                               {{"export", model_.cap(m->export_cap).uri}, {"revoke", model_.cap(m->revoke_cap).uri}}}});
    }
    if (!model_.alive(c)) {
      expect_status("query", c, call(c, "/", ""), 401);
      return;
    }
    if (!model_.limited_chain(c).empty()) {  // each call is a use: one page only
      int status = admitted(c);
      expect_status("query (limited)", c, call(c, "/?limit=1000", ""), status == 0 ? 200 : status);
      return;
    }
    if (chance(30) && !live.empty()) {  // one by id
      const json& one = expected[static_cast<std::size_t>(uniform(0, static_cast<int>(live.size()) - 1))];
      auto response = call(c, "/?id=" + percent_encode(one["id"].get<std::string>()), "");
      if (!expect_status("query id", c, response, 200)) return;
      EXPECT_EQ(response.body, (json{{"membranes", json::array({one})}, {"completed", true}}));
      return;
    }
    if (chance(15)) {  // any id, live, revoked, cut or never used: the live one or nothing
      const std::string& id = kIds[static_cast<std::size_t>(uniform(0, static_cast<int>(kIds.size()) - 1))];
      json one = json::array();
      for (const json& m : expected) {
        if (m["id"] == id) one.push_back(m);
      }
      auto response = call(c, "/?id=" + percent_encode(id), "");
      if (!expect_status("query id", c, response, 200)) return;
      EXPECT_EQ(response.body, (json{{"membranes", one}, {"completed", true}}));
      return;
    }
    // Page through with a small limit.
    const int limit = uniform(1, 4);
    json got = json::array();
    std::optional<std::string> last;
    for (std::size_t guard = 0; guard <= live.size() + 1; ++guard) {
      std::string target = "/?limit=" + std::to_string(limit);
      if (last) target += "&lastId=" + percent_encode(*last);
      auto response = call(c, target, "");
      if (!expect_status("query", c, response, 200)) return;
      const json& page = response.body["membranes"];
      ASSERT_TRUE(page.is_array());
      EXPECT_LE(page.size(), static_cast<std::size_t>(limit));
      for (const auto& m : page) got.push_back(m);
      const bool completed = response.body.value("completed", false);
      EXPECT_EQ(completed, got.size() >= expected.size()) << target;
      if (completed || page.empty()) break;
      last = page.back()["id"].get<std::string>();
    }
    EXPECT_EQ(got, expected);
  }

  // A grant's own revoke capability: 202 while its tenant lives (again and again), and the grant
  // and everything below it dead from then on.
  void revoke_grant() {
    int c = pick(CapabilityKind::revoke_grant);
    if (c < 0) return;
    int expected = admitted(c);
    if (expected == 0) expected = 202;
    auto response = call(c, "/", chance(50) ? "" : "ignored");
    if (!expect_status("revoke grant", c, response, expected) || expected != 202) return;
    model_.revoke_grant(model_.cap(model_.terminal(c)).target);
  }

  // A use of a uri capability as the server makes one at send time: authorised, then admitted
  // (every grant above it with maxUses gives one, or none does).
  void use() {
    int c = pick(CapabilityKind::uri);
    if (c < 0) return;
    auto who = api_->authorize("Bearer " + model_.cap(c).token.text());
    if (who.ok() != model_.alive(c)) {
      ADD_FAILURE() << "use of " << model_.describe(c) << ": the model says " << (model_.alive(c) ? "alive" : "dead");
      diverged_ = true;
      return;
    }
    if (!who) return;
    const bool expected = model_.take_use(c);
    auto admission = api_->admit_use(*who, std::chrono::steady_clock::now(), true);
    EXPECT_TRUE(admission.decided);
    statuses_[admission.refusal ? "use used up" : "use admitted"]++;
    if (admission.refusal.has_value() == expected) {
      ADD_FAILURE() << "use of " << model_.describe(c) << ": expected " << (expected ? "admitted" : "used up");
      diverged_ = true;
      return;
    }
    if (admission.refusal) {
      EXPECT_EQ(admission.refusal->status, 401);
    }
  }

  void advance_clock() {
    static constexpr std::int64_t kSteps[] = {0, 10'000, 120'000, 900'000, 1'800'000};
    model_.advance(kSteps[uniform(0, 4)]);
    statuses_["clock"]++;
  }

  // Every capability ever issued resolves exactly when the model says it is alive, and to what it
  // finally stands for, depending on as many capabilities as the model says; a live re-export
  // resolves to exactly what its parent resolves to, and nothing resolves without what it was made
  // through. (The store's resolve directly: Api::authorize is only the bearer header parsed before
  // it, and every operation above goes through it; this keeps the sanitizer run short.)
  void check_all() {
    std::vector<std::optional<storage::Resolved>> resolved(model_.caps.size());
    for (int c = 0; c < static_cast<int>(model_.caps.size()); ++c) {
      const Cap& cap = model_.cap(c);
      const bool alive = model_.alive(c);
      auto who = store_->resolve(cap.token);
      if (who.ok() != alive) {
        ADD_FAILURE() << model_.describe(c) << ": the model says " << (alive ? "alive" : "dead")
                      << ", the store " << (who.ok() ? "resolves it" : "does not");
        diverged_ = true;
        continue;
      }
      if (!who) {
        EXPECT_EQ(who.error().kind, core::ErrorKind::unauthorized) << who.error().message;
        continue;
      }
      const storage::Resolved& r = *who;
      const Cap& end = model_.cap(model_.terminal(c));
      EXPECT_EQ(r.kind, end.kind) << model_.describe(c);
      EXPECT_EQ(r.tenant_id, model_.tenants[static_cast<std::size_t>(end.tenant)].id) << model_.describe(c);
      std::optional<storage::MembraneRow> row;
      if (end.membrane >= 0) row = model_.membranes[static_cast<std::size_t>(end.membrane)].row;
      EXPECT_EQ(r.membrane, row) << model_.describe(c);
      EXPECT_EQ(r.depth, cap.depth) << model_.describe(c);
      EXPECT_EQ(r.walked, model_.walked(c)) << model_.describe(c);
      EXPECT_EQ(r.uri != nullptr, end.kind == CapabilityKind::uri) << model_.describe(c);
      if (r.uri) {
        EXPECT_EQ(r.uri->target.uri, end.upstream) << model_.describe(c);
      }
      if (cap.parent >= 0) {
        // Never more than the parent: the same kind, tenant, membrane and configuration.
        const auto& p = resolved[static_cast<std::size_t>(cap.parent)];
        if (!p) {
          ADD_FAILURE() << model_.describe(c) << " resolves although its parent does not";
          diverged_ = true;
        } else {
          EXPECT_EQ(r.kind, p->kind) << model_.describe(c);
          EXPECT_EQ(r.tenant_id, p->tenant_id) << model_.describe(c);
          EXPECT_EQ(r.membrane, p->membrane) << model_.describe(c);
          EXPECT_EQ(r.depth, p->depth + 1) << model_.describe(c);
          EXPECT_EQ(r.uri != nullptr, p->uri != nullptr) << model_.describe(c);
          if (r.uri && p->uri) {
            EXPECT_EQ(r.uri->target.uri, p->uri->target.uri);
          }
        }
      }
      if (cap.via >= 0 && !resolved[static_cast<std::size_t>(cap.via)]) {
        ADD_FAILURE() << model_.describe(c) << " resolves although what it was made through does not";
        diverged_ = true;
      }
      EXPECT_NE(r.kind, CapabilityKind::reexport);
      // The grants it is a use of: itself and every grant it stands for, nearest first.
      const auto chain = model_.grant_chain(c);
      EXPECT_EQ(r.chain.size(), chain.size()) << model_.describe(c);
      for (std::size_t i = 0; i < std::min(chain.size(), r.chain.size()); ++i) {
        EXPECT_EQ(r.chain[i].max_uses, model_.cap(chain[i]).max_uses) << model_.describe(c);
      }
      resolved[static_cast<std::size_t>(c)] = std::move(*who);
    }
    if (testing::Test::HasNonfatalFailure()) diverged_ = true;
  }

  TestDatabase db_;
  // The store's clock: this moment, then only what the model's steps add (whole milliseconds).
  const std::chrono::system_clock::time_point base_ =
      std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  Model model_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<api::Api> api_;
  std::mt19937_64 rng_;
  int step_ = 0;
  bool diverged_ = false;
  std::map<std::string, int> statuses_;
};

// --- stale authorisation ---------------------------------------------------------------------------

// The server authorises from the headers, then handles once the body is in: a revoke answered in
// between wins. The write resolves the presented capability again, answers 401 and makes nothing.
class StaleAuthorization : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    auto key = storage::MasterKey::from_base64(core::base64_encode(std::string(32, 's')));
    ASSERT_TRUE(key.ok());
    db_.emplace(GetParam());
    auto store = db_->open(std::move(*key));
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(*store);
    api_ = std::make_unique<api::Api>(*store_, api::Settings{std::string(kAuthority)});
    auto tenant = api_->create_tenant();
    ASSERT_TRUE(tenant.ok());
    create_ = token_of((*tenant)["capabilities"]["create"]);
    query_ = token_of((*tenant)["capabilities"]["query"]);
    delete_self_ = token_of((*tenant)["capabilities"]["deleteSelf"]);
  }

  static core::Token token_of(const json& uri) {
    auto parsed = core::CapabilityUri::parse(uri.is_string() ? uri.get<std::string>() : std::string());
    if (!parsed) throw std::runtime_error("not a capability URI: " + uri.dump());
    return parsed->token();
  }
  std::string uri_of(const core::Token& t) const { return api_->uri_of(t); }

  std::optional<api::Authorized> authorize(const core::Token& t) {
    auto who = api_->authorize("Bearer " + t.text());
    EXPECT_TRUE(who.ok());
    if (!who) return std::nullopt;
    return std::move(*who);
  }
  api::Response call(const core::Token& t, std::string_view target, std::string_view body) {
    auto who = api_->authorize("Bearer " + t.text());
    if (!who) return api::Api::error_response(who.error());
    return api_->handle(*who, target, body);
  }
  struct Made {
    core::Token export_token, revoke_token;
  };
  Made create_membrane(const core::Token& create, const std::string& id) {
    auto response = call(create, "/", json{{"id", id}}.dump());
    EXPECT_EQ(response.status, 201) << response.body.dump();
    const json& caps = response.body["capabilities"];
    return Made{token_of(caps["export"]), token_of(caps["revoke"])};
  }
  core::Token reexport(const core::Token& exporter, const core::Token& target) {
    auto response = call(exporter, "/", json{{"capability", uri_of(target)}}.dump());
    EXPECT_EQ(response.status, 201) << response.body.dump();
    return token_of(response.body["capability"]);
  }
  std::vector<std::string> membrane_ids() {
    auto response = call(*query_, "/?limit=1000", "");
    EXPECT_EQ(response.status, 200) << response.body.dump();
    std::vector<std::string> ids;
    for (const auto& m : response.body["membranes"]) ids.push_back(m["id"].get<std::string>());
    return ids;
  }
  // Rows in the database itself: nothing was written, not even something that does not resolve.
  std::int64_t rows(const char* table) { return db_->count_rows(table); }
  void expect_401(const api::Response& response, const char* what) {
    EXPECT_EQ(response.status, 401) << what << ": " << response.body.dump();
    EXPECT_EQ(response.body.value("statusCode", 0), 401) << what;
  }

  std::optional<TestDatabase> db_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<api::Api> api_;
  std::optional<core::Token> create_, query_, delete_self_;
};

TEST_P(StaleAuthorization, ReexportedCapabilitiesCutAfterAuthorizeMakeNothing) {
  Made n = create_membrane(*create_, "n");  // the membrane the re-exports go through
  Made m = create_membrane(*create_, "m");
  core::Token create = reexport(n.export_token, *create_);
  core::Token exp = reexport(n.export_token, m.export_token);
  core::Token rev = reexport(n.export_token, m.revoke_token);
  core::Token del = reexport(n.export_token, *delete_self_);
  auto stale_create = authorize(create);
  auto stale_export = authorize(exp);
  auto stale_revoke = authorize(rev);
  auto stale_delete = authorize(del);
  ASSERT_TRUE(stale_create && stale_export && stale_revoke && stale_delete);
  EXPECT_EQ(stale_create->resolved.kind, CapabilityKind::create);
  EXPECT_EQ(stale_export->resolved.kind, CapabilityKind::export_);

  ASSERT_EQ(call(n.revoke_token, "/", "").status, 202);
  const std::int64_t capabilities = rows("capabilities"), membranes = rows("membranes");

  expect_401(api_->handle(*stale_create, "/", json{{"id", "stale"}}.dump()), "create");
  expect_401(api_->handle(*stale_export, "/", json{{"uri", "https://upstream.example/stale"}}.dump()), "export uri");
  expect_401(api_->handle(*stale_export, "/", json{{"capability", uri_of(*query_)}}.dump()), "reexport");
  expect_401(api_->handle(*stale_revoke, "/", ""), "revoke");
  expect_401(api_->handle(*stale_delete, "/", ""), "deleteSelf");

  EXPECT_EQ(rows("capabilities"), capabilities);
  EXPECT_EQ(rows("membranes"), membranes);
  EXPECT_EQ(membrane_ids(), (std::vector<std::string>{"m"}));
  // m was neither revoked nor its tenant deleted.
  EXPECT_TRUE(api_->authorize("Bearer " + m.export_token.text()).ok());
  EXPECT_TRUE(api_->authorize("Bearer " + create_->text()).ok());
  EXPECT_EQ(call(m.export_token, "/", json{{"uri", "https://upstream.example/fresh"}}.dump()).status, 201);
}

TEST_P(StaleAuthorization, DirectCapabilitiesCutAfterAuthorizeMakeNothing) {
  Made m = create_membrane(*create_, "m");
  auto stale_export = authorize(m.export_token);
  auto stale_create = authorize(*create_);
  auto stale_query = authorize(*query_);
  ASSERT_TRUE(stale_export && stale_create && stale_query);

  ASSERT_EQ(call(m.revoke_token, "/", "").status, 202);
  std::int64_t capabilities = rows("capabilities");
  expect_401(api_->handle(*stale_export, "/", json{{"uri", "https://upstream.example/stale"}}.dump()), "export uri");
  expect_401(api_->handle(*stale_export, "/", json{{"capability", uri_of(*create_)}}.dump()), "reexport");
  EXPECT_EQ(rows("capabilities"), capabilities);

  ASSERT_EQ(call(*delete_self_, "/", "").status, 202);
  capabilities = rows("capabilities");
  const std::int64_t membranes = rows("membranes");
  expect_401(api_->handle(*stale_create, "/", json{{"id", "stale"}}.dump()), "create");
  EXPECT_EQ(rows("capabilities"), capabilities);
  EXPECT_EQ(rows("membranes"), membranes);
  // A read with a stale authorisation reads only what the deletion left: nothing.
  auto listed = api_->handle(*stale_query, "/?limit=10", "");
  if (listed.status == 200) {
    EXPECT_EQ(listed.body["membranes"], json::array());
  } else {
    EXPECT_EQ(listed.status, 401);
  }
}

class MembraneModel : public testing::TestWithParam<Backend> {};

TEST_P(MembraneModel, RandomOperationsMatchTheReferenceModel) {
  std::vector<std::uint64_t> seeds;
  if (auto seed = env_number("MEMBRANED_MODEL_SEED")) {
    seeds.push_back(*seed);
  } else {
    for (int i = 0; i < kDefaultSeeds; ++i) seeds.push_back(0x6d656d6272616e00ULL + static_cast<std::uint64_t>(i));
  }
  const int steps = static_cast<int>(env_number("MEMBRANED_MODEL_STEPS").value_or(kDefaultSteps));

  std::map<std::string, int> statuses;
  std::size_t capabilities = 0, membranes = 0;
  for (std::uint64_t seed : seeds) {
    SCOPED_TRACE("MEMBRANED_MODEL_SEED=" + std::to_string(seed));
    ModelRun run(GetParam(), seed);
    run.add_tenant();
    run.add_tenant();
    ASSERT_FALSE(testing::Test::HasFailure());
    for (int n = 0; n < steps; ++n) {
      SCOPED_TRACE("step " + std::to_string(n));
      if (!run.step(n)) break;
    }
    if (testing::Test::HasFailure()) break;  // one diverging seed is enough to read
    capabilities += run.capabilities();
    membranes += run.membranes();
    for (const auto& [k, v] : run.statuses()) statuses[k] += v;
  }
  // The operations did reach every interesting answer (not worth saying after a divergence).
  if (testing::Test::HasFailure()) return;
  for (const char* key : {"create 201", "create 409", "create 401", "export uri 201", "export uri 401",
                          "reexport 201", "reexport 401", "reexport 404", "revoke 202", "revoke 401",
                          "deleteSelf 202", "query 200", "create (re-exported) 201", "create (re-exported) 401",
                          "export uri (re-exported) 201", "export uri (re-exported) 401", "revoke grant 202",
                          "use admitted", "use used up", "clock"}) {
    if (seeds.size() > 1) {
      EXPECT_GT(statuses[key], 0) << key;
    }
  }
  std::string summary;
  for (const auto& [k, v] : statuses) summary += k + ": " + std::to_string(v) + "; ";
  RecordProperty("statuses", summary);
  std::cout << "[ model ] " << seeds.size() << " seeds, " << capabilities << " capabilities, " << membranes
            << " membranes; " << summary << "\n";
}

std::string backend_suffix(const testing::TestParamInfo<Backend>& info) {
  return membraned::test::backend_name(info.param);
}

INSTANTIATE_TEST_SUITE_P(Backends, StaleAuthorization, testing::ValuesIn(membraned::test::kBackends), backend_suffix);
INSTANTIATE_TEST_SUITE_P(Backends, MembraneModel, testing::ValuesIn(membraned::test::kBackends), backend_suffix);

}  // namespace
