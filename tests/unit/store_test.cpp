// The Store test suite, run against both backends from this one source (TEST_P over
// test::kBackends): SQLite files in a fresh temporary directory, and a fresh database on the
// test PostgreSQL cluster (the ctest fixture pg_cluster). Every Store operation, delegation and
// revocation through chains of re-exports (contract §7), persistence, the master key (contract
// §8), secrecy at rest (contract §4.1) and revocation under concurrent use.
// PostgreSQL-only behaviour (migrations racing, outages, timeouts) is in postgres_store_test.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "core/token.hpp"
#include "storage/master_key.hpp"
#include "storage/store.hpp"
#include "storage/resolution_cache.hpp"
#include "tests/support/store_backends.hpp"
#include "tests/support/test_pki.hpp"
#include "tests/support/grants.hpp"
#include "tests/support/test_support.hpp"

namespace {

using membraned::test::new_token;

namespace fs = std::filesystem;
using membraned::core::ErrorKind;
using membraned::core::Token;
using membraned::core::UriExport;
using membraned::storage::CapabilityKind;
using membraned::storage::kMaxDependencies;
using membraned::storage::kMaxReexportDepth;
using membraned::storage::MasterKey;
using membraned::storage::Membrane;
using membraned::storage::MembraneRow;
using membraned::storage::Resolved;
using membraned::storage::Store;
using membraned::storage::TenantTokens;
using membraned::test::Backend;
using membraned::test::TempDir;
using membraned::test::TestDatabase;
using membraned::test::file_bytes;
namespace core = membraned::core;

std::string random_bytes(std::size_t n) {
  auto bytes = core::random_bytes(n);
  if (!bytes) throw std::runtime_error("random_bytes failed");
  return *bytes;
}

// Distinctive, random-looking text: a hit in a file cannot be a coincidence.
std::string random_text(std::string_view prefix, std::size_t bytes = 24) {
  return std::string(prefix) + core::base64url_encode(random_bytes(bytes));
}

UriExport uri_config(const std::string& body) {
  auto parsed = core::parse_export_config(body);
  if (!parsed) throw std::runtime_error("bad export body: " + parsed.error().message);
  return std::get<UriExport>(std::move(*parsed));
}

UriExport simple_config(const std::string& uri = "https://upstream.example/x") {
  return uri_config(nlohmann::json{{"uri", uri}}.dump());
}

struct Tenant {
  std::string id;
  TenantTokens tokens;
};

class StoreTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    key_text_ = core::base64_encode(random_bytes(32));
    db_.emplace(GetParam());  // throws (a failure) when there is no database to test on
    store_ = open_store();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();  // closed before its database is dropped
    db_.reset();
  }

  std::unique_ptr<Store> open_store(std::optional<std::string> key_text = std::nullopt) {
    auto key = MasterKey::from_base64(key_text.value_or(key_text_));
    EXPECT_TRUE(key.ok());
    if (!key) return nullptr;
    auto store = db_->open(std::move(*key), 4, {}, [this] { return std::chrono::system_clock::now() + skew(); });
    EXPECT_TRUE(store.ok()) << store.error().message;
    if (!store) return nullptr;
    return std::move(*store);
  }

  // Back to the schema before grants had rows of their own (PostgreSQL's latest migration; on
  // SQLite the use counts' table came after it).
  void undo_grants_migration() {
    if (GetParam() == Backend::sqlite) {
      db_->run_sql("DROP TABLE grant_uses");
      db_->run_sql("UPDATE schema_version SET version = version - 1");
    }
    db_->run_sql("DROP TABLE grants");
    db_->run_sql("ALTER TABLE capabilities DROP COLUMN target_row");
    db_->run_sql("UPDATE schema_version SET version = version - 1");
  }

  // The stores' clock runs this far ahead of the system's (advance() moves it, for expiry).
  std::chrono::system_clock::duration skew() const { return std::chrono::system_clock::duration(skew_.load()); }
  void advance(std::chrono::system_clock::duration by) { skew_ += by.count(); }
  std::chrono::system_clock::time_point store_now() const { return std::chrono::system_clock::now() + skew(); }

  Tenant tenant() {
    Tenant t{{}, TenantTokens{new_token(), new_token(), new_token()}};
    auto id = store_->create_tenant(t.tokens);
    EXPECT_TRUE(id.ok()) << id.error().message;
    if (id) t.id = *id;
    return t;
  }

  // A membrane made by presenting `create`: a tenant's own create capability or a re-export of one.
  Membrane membrane_via(const Token& create, const std::string& id) {
    Membrane m{id, new_token(), new_token()};
    auto s = store_->create_membrane(create, m);
    EXPECT_TRUE(s.ok()) << id << ": " << s.error().message;
    return m;
  }
  Membrane membrane(const Tenant& t, const std::string& id) { return membrane_via(t.tokens.create, id); }

  MembraneRow row_of(const Membrane& m) {
    auto r = store_->resolve(m.export_token);
    EXPECT_TRUE(r.ok()) << m.id;
    if (!r || !r->membrane) return -1;
    return *r->membrane;
  }

  // Exports by presenting `exporter`: a membrane's export capability or a re-export of one.
  Token export_uri(const Token& exporter, const UriExport& config = simple_config()) {
    Token t = new_token();
    auto s = store_->export_uri(exporter, t, config, membraned::test::new_grant());
    EXPECT_TRUE(s.ok()) << s.error().message;
    return t;
  }
  Token export_uri(const Membrane& m, const UriExport& config = simple_config()) {
    return export_uri(m.export_token, config);
  }

  // An export with a grant of its own (its handle and revoke capability in `grant`).
  Token export_granted(const Membrane& m, const membraned::storage::NewGrant& grant) {
    Token t = new_token();
    auto s = store_->export_uri(m.export_token, t, simple_config(), grant);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return t;
  }
  Token reexport_granted(const Membrane& m, const Token& target, const membraned::storage::NewGrant& grant) {
    Token t = new_token();
    auto s = store_->export_reexport(m.export_token, t, target, grant);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return t;
  }

  Token reexport(const Token& exporter, const Token& target) {
    Token t = new_token();
    auto s = store_->export_reexport(exporter, t, target, membraned::test::new_grant());
    EXPECT_TRUE(s.ok()) << s.error().message;
    return t;
  }
  Token reexport(const Membrane& m, const Token& target) { return reexport(m.export_token, target); }

  // Revokes by presenting the membrane's own revoke capability.
  core::Status revoke(const Membrane& m) { return store_->revoke_membrane(m.revoke_token); }

  std::size_t walked(const Token& t) {
    auto r = store_->resolve(t);
    EXPECT_TRUE(r.ok());
    return r ? r->walked : 0;
  }

  bool alive(const Token& t) {
    auto r = store_->resolve(t);
    if (!r) {
      EXPECT_EQ(r.error().kind, ErrorKind::unauthorized) << r.error().message;
    }
    return r.ok();
  }

  void expect_kind(const Token& t, CapabilityKind kind, const std::string& tenant_id,
                   std::optional<MembraneRow> membrane, int depth = 0) {
    auto r = store_->resolve(t);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->kind, kind);
    EXPECT_EQ(r->tenant_id, tenant_id);
    EXPECT_EQ(r->membrane, membrane);
    EXPECT_EQ(r->depth, depth);
    EXPECT_EQ(r->uri != nullptr, kind == CapabilityKind::uri);
  }

  std::vector<std::string> list_ids(const std::string& tenant_id, const std::optional<std::string>& after,
                                    std::size_t limit, bool* completed = nullptr) {
    auto page = store_->list_membranes(tenant_id, after, limit);
    EXPECT_TRUE(page.ok());
    std::vector<std::string> ids;
    if (!page) return ids;
    for (const auto& m : page->membranes) ids.push_back(m.id);
    if (completed != nullptr) *completed = page->completed;
    return ids;
  }

  std::optional<TestDatabase> db_;
  std::string key_text_;
  std::atomic<std::chrono::system_clock::duration::rep> skew_{0};
  std::unique_ptr<Store> store_;
};

// --- tenants and built-in capabilities ---------------------------------------------------------

TEST_P(StoreTest, ExactlyOneFirstTenantWhenStoresRaceOnAnEmptyDatabase) {
  // Two more stores on the same database stand for instances starting at the same moment.
  std::vector<std::unique_ptr<Store>> stores;
  stores.push_back(std::move(store_));
  for (int i = 0; i < 2; ++i) stores.push_back(open_store());
  std::vector<TenantTokens> tokens;
  for (int i = 0; i < 12; ++i) tokens.push_back(TenantTokens{new_token(), new_token(), new_token()});
  std::vector<core::Result<std::optional<std::string>>> made(tokens.size(), core::Error::internal("not run"));
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    threads.emplace_back([&, i] { made[i] = stores[i % stores.size()]->create_first_tenant(tokens[i]); });
  }
  for (auto& t : threads) t.join();
  std::size_t created = 0;
  std::size_t winner = 0;
  for (std::size_t i = 0; i < made.size(); ++i) {
    ASSERT_TRUE(made[i].ok()) << made[i].error().message;
    if (*made[i]) {
      ++created;
      winner = i;
    }
  }
  EXPECT_EQ(created, 1u);
  store_ = std::move(stores.front());
  // Only the winner's capabilities exist.
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_EQ(store_->resolve(tokens[i].create).ok(), i == winner) << i;
  }
  // Once a tenant was ever made, even a deleted one, there is no first tenant any more.
  ASSERT_TRUE(store_->delete_tenant(tokens[winner].delete_self).ok());
  auto again = store_->create_first_tenant(TenantTokens{new_token(), new_token(), new_token()});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
}

TEST_P(StoreTest, HasTenantsOnlyAfterTheFirstTenantAndStillAfterItsDeletion) {
  auto before = store_->has_tenants();
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(*before);
  Tenant a = tenant();
  auto after = store_->has_tenants();
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(*after);
  ASSERT_TRUE(store_->delete_tenant(a.tokens.delete_self).ok());
  auto deleted = store_->has_tenants();
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(*deleted);
}

TEST_P(StoreTest, TenantIdsAreDistinctAndTheirCapabilitiesResolveToTheirKinds) {
  Tenant a = tenant();
  Tenant b = tenant();
  EXPECT_FALSE(a.id.empty());
  EXPECT_NE(a.id, b.id);
  for (const Tenant* t : {&a, &b}) {
    expect_kind(t->tokens.create, CapabilityKind::create, t->id, std::nullopt);
    expect_kind(t->tokens.query, CapabilityKind::query, t->id, std::nullopt);
    expect_kind(t->tokens.delete_self, CapabilityKind::delete_self, t->id, std::nullopt);
  }
  // Presented rows are distinct capabilities.
  std::set<std::int64_t> rows;
  for (const Token* tok : {&a.tokens.create, &a.tokens.query, &a.tokens.delete_self, &b.tokens.create}) {
    auto r = store_->resolve(*tok);
    ASSERT_TRUE(r.ok());
    rows.insert(r->presented);
  }
  EXPECT_EQ(rows.size(), 4u);
}

TEST_P(StoreTest, UnknownTokenIsUnauthorized) {
  tenant();
  auto r = store_->resolve(new_token());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::unauthorized);
}

TEST_P(StoreTest, MembraneCapabilitiesResolveToExportAndRevokeOfTheirMembrane) {
  Tenant a = tenant();
  Membrane m1 = membrane(a, "one");
  Membrane m2 = membrane(a, "two");
  auto e1 = store_->resolve(m1.export_token);
  auto e2 = store_->resolve(m2.export_token);
  ASSERT_TRUE(e1.ok() && e2.ok());
  ASSERT_TRUE(e1->membrane.has_value() && e2->membrane.has_value());
  EXPECT_NE(*e1->membrane, *e2->membrane);
  expect_kind(m1.export_token, CapabilityKind::export_, a.id, e1->membrane);
  expect_kind(m1.revoke_token, CapabilityKind::revoke, a.id, e1->membrane);
  expect_kind(m2.export_token, CapabilityKind::export_, a.id, e2->membrane);
  expect_kind(m2.revoke_token, CapabilityKind::revoke, a.id, e2->membrane);
}

// --- create_membrane / find_membrane -----------------------------------------------------------

TEST_P(StoreTest, CreateMembraneWithALiveIdConflictsAndStoresNothing) {
  Tenant a = tenant();
  Tenant b = tenant();
  Membrane first = membrane(a, "dup");
  Membrane second{"dup", new_token(), new_token()};
  auto s = store_->create_membrane(a.tokens.create, second);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::conflict);
  EXPECT_FALSE(alive(second.export_token));
  EXPECT_FALSE(alive(second.revoke_token));
  auto found = store_->find_membrane(a.id, "dup");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->export_token.text(), first.export_token.text());
  // Ids are unique per tenant only.
  Membrane other = membrane(b, "dup");
  EXPECT_TRUE(alive(other.export_token));
}

TEST_P(StoreTest, RevokedMembraneIdCanBeReused) {
  Tenant a = tenant();
  Membrane old = membrane(a, "reuse me");
  MembraneRow old_row = row_of(old);
  Token old_uri = export_uri(old);
  ASSERT_TRUE(revoke(old).ok());

  Membrane fresh = membrane(a, "reuse me");
  MembraneRow fresh_row = row_of(fresh);
  EXPECT_NE(fresh_row, old_row);
  EXPECT_FALSE(alive(old.export_token));
  EXPECT_FALSE(alive(old_uri));
  // The old revoke capability still acts on the old membrane only.
  expect_kind(old.revoke_token, CapabilityKind::revoke, a.id, old_row);
  auto found = store_->find_membrane(a.id, "reuse me");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->export_token.text(), fresh.export_token.text());
  EXPECT_EQ((*found)->revoke_token.text(), fresh.revoke_token.text());
  // A second live one with that id conflicts again.
  auto again = store_->create_membrane(a.tokens.create, Membrane{"reuse me", new_token(), new_token()});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::conflict);
  // Revoking the old membrane again does not touch the new one.
  ASSERT_TRUE(revoke(old).ok());
  EXPECT_TRUE(alive(fresh.export_token));
}

TEST_P(StoreTest, FindMembraneReturnsTheStoredTokensOfLiveMembranesOfThatTenantOnly) {
  Tenant a = tenant();
  Tenant b = tenant();
  Membrane m = membrane(a, "ünïcode / with spaces");
  auto found = store_->find_membrane(a.id, m.id);
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, m.id);
  EXPECT_EQ((*found)->export_token.text(), m.export_token.text());
  EXPECT_EQ((*found)->revoke_token.text(), m.revoke_token.text());

  auto missing = store_->find_membrane(a.id, "nope");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  auto other_tenant = store_->find_membrane(b.id, m.id);
  ASSERT_TRUE(other_tenant.ok());
  EXPECT_FALSE(other_tenant->has_value());

  ASSERT_TRUE(revoke(m).ok());
  auto revoked = store_->find_membrane(a.id, m.id);
  ASSERT_TRUE(revoked.ok());
  EXPECT_FALSE(revoked->has_value());
}

// --- list_membranes ------------------------------------------------------------------------------

TEST_P(StoreTest, ListMembranesOfATenantWithoutMembranesIsEmptyAndCompleted) {
  Tenant a = tenant();
  Tenant b = tenant();
  membrane(b, "b's");
  for (std::size_t limit : {std::size_t{1}, std::size_t{1000}}) {
    bool completed = false;
    EXPECT_TRUE(list_ids(a.id, std::nullopt, limit, &completed).empty());
    EXPECT_TRUE(completed);
    completed = false;
    EXPECT_TRUE(list_ids(a.id, "a", limit, &completed).empty());
    EXPECT_TRUE(completed);
  }
}

TEST_P(StoreTest, ListMembranesPagesExactly) {
  Tenant a = tenant();
  for (const char* id : {"b", "d", "f"}) membrane(a, id);
  bool completed = false;

  // limit == count: everything, and nothing more exists.
  EXPECT_EQ(list_ids(a.id, std::nullopt, 3, &completed), (std::vector<std::string>{"b", "d", "f"}));
  EXPECT_TRUE(completed);
  EXPECT_EQ(list_ids(a.id, std::nullopt, 4, &completed), (std::vector<std::string>{"b", "d", "f"}));
  EXPECT_TRUE(completed);
  EXPECT_EQ(list_ids(a.id, std::nullopt, 2, &completed), (std::vector<std::string>{"b", "d"}));
  EXPECT_FALSE(completed);

  // lastId between ids, equal to one (strictly after), before all, past the end.
  EXPECT_EQ(list_ids(a.id, "c", 10, &completed), (std::vector<std::string>{"d", "f"}));
  EXPECT_TRUE(completed);
  EXPECT_EQ(list_ids(a.id, "d", 10, &completed), (std::vector<std::string>{"f"}));
  EXPECT_TRUE(completed);
  EXPECT_EQ(list_ids(a.id, "c", 1, &completed), (std::vector<std::string>{"d"}));
  EXPECT_FALSE(completed);
  EXPECT_EQ(list_ids(a.id, "a", 3, &completed), (std::vector<std::string>{"b", "d", "f"}));
  EXPECT_TRUE(completed);
  EXPECT_EQ(list_ids(a.id, "e", 1, &completed), (std::vector<std::string>{"f"}));
  EXPECT_TRUE(completed);
  EXPECT_TRUE(list_ids(a.id, "f", 5, &completed).empty());
  EXPECT_TRUE(completed);
  EXPECT_TRUE(list_ids(a.id, "zzz", 5, &completed).empty());
  EXPECT_TRUE(completed);

  // Revoked membranes are not listed, and do not make a page incomplete.
  auto d = store_->find_membrane(a.id, "d");
  ASSERT_TRUE(d.ok() && d->has_value());
  ASSERT_TRUE(revoke(**d).ok());
  EXPECT_EQ(list_ids(a.id, std::nullopt, 2, &completed), (std::vector<std::string>{"b", "f"}));
  EXPECT_TRUE(completed);
  EXPECT_EQ(list_ids(a.id, "b", 1, &completed), (std::vector<std::string>{"f"}));
  EXPECT_TRUE(completed);
}

TEST_P(StoreTest, ListMembranesSortsByBytesAndWalksOneByOne) {
  Tenant a = tenant();
  Tenant b = tenant();
  std::vector<std::string> ids = {"zeta",   "Zeta",    "a b",      "a/b",   "a",      "ab",
                                  "a b c",  "/slash",  " leading", "ü",     "日本",   "é",
                                  "e",      "~tilde",  "A",        "a-b",   "a_b",    "z/ü/日"};
  for (const auto& id : ids) membrane(a, id);
  membrane(b, "a0");  // another tenant's: never listed
  std::vector<std::string> expected = ids;
  std::sort(expected.begin(), expected.end());  // std::string compares bytes as unsigned char

  // Only the ASCII ids precede the multi-byte ones, whatever the signedness of char.
  auto first_non_ascii = std::find_if(expected.begin(), expected.end(), [](const std::string& s) {
    return static_cast<unsigned char>(s[0]) >= 0x80;
  });
  EXPECT_EQ(*first_non_ascii, "é");
  EXPECT_EQ(expected.back(), "日本");

  bool completed = false;
  EXPECT_EQ(list_ids(a.id, std::nullopt, 1000, &completed), expected);
  EXPECT_TRUE(completed);

  std::vector<std::string> walked;
  std::optional<std::string> last;
  for (std::size_t guard = 0; guard <= ids.size() + 1; ++guard) {
    auto page = store_->list_membranes(a.id, last, 1);
    ASSERT_TRUE(page.ok());
    ASSERT_LE(page->membranes.size(), 1u);
    if (page->membranes.empty()) {
      EXPECT_TRUE(page->completed);
      break;
    }
    walked.push_back(page->membranes[0].id);
    last = page->membranes[0].id;
    EXPECT_EQ(page->completed, walked.size() == expected.size()) << walked.size();
    // The tokens listed are the membrane's.
    auto found = store_->find_membrane(a.id, *last);
    ASSERT_TRUE(found.ok() && found->has_value());
    EXPECT_EQ(page->membranes[0].export_token.text(), (*found)->export_token.text());
    EXPECT_EQ(page->membranes[0].revoke_token.text(), (*found)->revoke_token.text());
    if (page->completed) break;
  }
  EXPECT_EQ(walked, expected);

  // lastId between two multi-byte ids, and one sorting after every id.
  EXPECT_EQ(list_ids(a.id, "ü", 10, &completed), (std::vector<std::string>{"日本"}));
  EXPECT_TRUE(completed);
  EXPECT_TRUE(list_ids(a.id, "\xef\xbf\xbf", 10, &completed).empty());
  EXPECT_TRUE(completed);
  // lastId between "a b" and "a b c": a prefix sorts first.
  EXPECT_EQ(list_ids(a.id, "a b ", 1, &completed), (std::vector<std::string>{"a b c"}));
  EXPECT_FALSE(completed);
}

TEST_P(StoreTest, ListMembranesWithTheLargestLimitsReturnsEverything) {
  Tenant a = tenant();
  membrane(a, "one");
  membrane(a, "two");
  for (std::size_t limit : {std::numeric_limits<std::size_t>::max(), std::numeric_limits<std::size_t>::max() - 1,
                            static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()),
                            static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()) + 1}) {
    SCOPED_TRACE(limit);
    bool completed = false;
    EXPECT_EQ(list_ids(a.id, std::nullopt, limit, &completed), (std::vector<std::string>{"one", "two"}));
    EXPECT_TRUE(completed);
    completed = false;
    EXPECT_EQ(list_ids(a.id, "one", limit, &completed), (std::vector<std::string>{"two"}));
    EXPECT_TRUE(completed);
  }
}

// --- exports -------------------------------------------------------------------------------------

TEST_P(StoreTest, ExportUriResolvesToTheSameConfiguration) {
  Tenant a = tenant();
  Membrane m = membrane(a, "m");
  MembraneRow row = row_of(m);
  auto pem = membraned::test::make_self_signed_pem("upstream.example");
  nlohmann::json body = {
      {"uri", "https://upstream.example:8443/some/path?x=1&y=%20"},
      {"method", "post"},
      {"allowQuery", true},
      {"headers", {{"X-Custom", "value"}, {"X-Number", 7}}},
      {"hmac",
       {{"aws4-hmac-sha256",
         {{"awsAccessKeyId", "AKIDEXAMPLE"},
          {"secretAccessKey", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
          {"region", "us-east-1"},
          {"service", "execute-api"},
          {"sessionToken", "session/token+value"}}}}},
      {"timeoutMs", 1234},
      {"tls", {{"ca", pem.cert}, {"cert", pem.cert}, {"key", pem.key}, {"rejectUnauthorized", false}}}};
  UriExport config = uri_config(body.dump());
  Token t = export_uri(m, config);
  auto r = store_->resolve(t);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->kind, CapabilityKind::uri);
  EXPECT_EQ(r->tenant_id, a.id);
  EXPECT_EQ(r->membrane, row);
  EXPECT_EQ(r->depth, 0);
  ASSERT_NE(r->uri, nullptr);
  EXPECT_EQ(core::to_json(*r->uri), core::to_json(config));

  // A cap1 configuration too, and a re-export stands for the same configuration.
  UriExport cap1 = uri_config(nlohmann::json{
      {"uri", "http://upstream.example/"},
      {"hmac", {{"cap1-hmac-sha512", {{"key", "c2VjcmV0LWtleQ"}, {"keyId", "key-1"}}}}}}.dump());
  Token t2 = export_uri(m, cap1);
  Membrane m2 = membrane(a, "m2");
  Token re = reexport(m2, t2);
  auto r2 = store_->resolve(re);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->kind, CapabilityKind::uri);
  EXPECT_EQ(r2->membrane, row);
  EXPECT_EQ(r2->depth, 1);
  ASSERT_NE(r2->uri, nullptr);
  EXPECT_EQ(core::to_json(*r2->uri), core::to_json(cap1));
  auto direct = store_->resolve(t2);
  ASSERT_TRUE(direct.ok());
  EXPECT_NE(r2->presented, direct->presented);
}

TEST_P(StoreTest, ReexportOfAnUnknownOrDeadTokenIsNotFound) {
  Tenant a = tenant();
  Membrane m = membrane(a, "m");
  Membrane dead = membrane(a, "dead");
  Token dead_uri = export_uri(dead);
  ASSERT_TRUE(revoke(dead).ok());

  for (const Token* target : {&dead_uri, &dead.export_token}) {
    Token t = new_token();
    auto s = store_->export_reexport(m.export_token, t, *target, membraned::test::new_grant());
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().kind, ErrorKind::not_found);
    EXPECT_FALSE(alive(t));
  }
  Token t = new_token();
  auto s = store_->export_reexport(m.export_token, t, new_token(), membraned::test::new_grant());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::not_found);
  EXPECT_FALSE(alive(t));
}

TEST_P(StoreTest, ExportingThroughARevokedMembraneIsRefused) {
  Tenant a = tenant();
  Membrane m = membrane(a, "m");
  Membrane other = membrane(a, "other");
  Token target = export_uri(other);
  ASSERT_TRUE(revoke(m).ok());
  Token t1 = new_token();
  auto s1 = store_->export_uri(m.export_token, t1, simple_config(), membraned::test::new_grant());
  ASSERT_FALSE(s1.ok());
  EXPECT_EQ(s1.error().kind, ErrorKind::unauthorized);
  Token t2 = new_token();
  auto s2 = store_->export_reexport(m.export_token, t2, target, membraned::test::new_grant());
  ASSERT_FALSE(s2.ok());
  EXPECT_EQ(s2.error().kind, ErrorKind::unauthorized);
  EXPECT_FALSE(alive(t1));
  EXPECT_FALSE(alive(t2));
}

// --- the capability presented for a write ---------------------------------------------------------

// Every write resolves the capability presented for it again, inside its transaction, and wants
// it of its own kind: anything else is the same unauthorized error, and nothing is written.
TEST_P(StoreTest, WritesRefuseAPresentedCapabilityOfAnotherKindOrAnUnknownOne) {
  Tenant a = tenant();
  Membrane m = membrane(a, "m");
  Token x = export_uri(m);
  Token re_query = reexport(m, a.tokens.query);
  Token unknown = new_token();
  auto expect_unauthorized = [](const core::Status& s, const char* what) {
    ASSERT_FALSE(s.ok()) << what;
    EXPECT_EQ(s.error().kind, ErrorKind::unauthorized) << what << ": " << s.error().message;
  };
  int n = 0;
  for (const Token* wrong : {&a.tokens.query, &a.tokens.delete_self, &m.export_token, &m.revoke_token, &x,
                             &re_query, &unknown}) {
    SCOPED_TRACE("create with #" + std::to_string(n));
    Membrane made{"made " + std::to_string(n++), new_token(), new_token()};
    expect_unauthorized(store_->create_membrane(*wrong, made), "create");
    EXPECT_FALSE(alive(made.export_token));
    EXPECT_FALSE(alive(made.revoke_token));
    auto found = store_->find_membrane(a.id, made.id);
    ASSERT_TRUE(found.ok());
    EXPECT_FALSE(found->has_value());
  }
  n = 0;
  for (const Token* wrong : {&a.tokens.create, &a.tokens.query, &a.tokens.delete_self, &m.revoke_token, &x,
                             &re_query, &unknown}) {
    SCOPED_TRACE("export with #" + std::to_string(n++));
    Token t1 = new_token(), t2 = new_token();
    expect_unauthorized(store_->export_uri(*wrong, t1, simple_config(), membraned::test::new_grant()), "export uri");
    expect_unauthorized(store_->export_reexport(*wrong, t2, a.tokens.query, membraned::test::new_grant()), "reexport");
    EXPECT_FALSE(alive(t1));
    EXPECT_FALSE(alive(t2));
  }
  n = 0;
  for (const Token* wrong : {&a.tokens.create, &a.tokens.query, &a.tokens.delete_self, &m.export_token, &x,
                             &re_query, &unknown}) {
    SCOPED_TRACE("revoke with #" + std::to_string(n++));
    expect_unauthorized(store_->revoke_membrane(*wrong), "revoke");
  }
  n = 0;
  for (const Token* wrong : {&a.tokens.create, &a.tokens.query, &m.export_token, &m.revoke_token, &x,
                             &re_query, &unknown}) {
    SCOPED_TRACE("delete with #" + std::to_string(n++));
    expect_unauthorized(store_->delete_tenant(*wrong), "deleteSelf");
  }
  // Nothing was revoked nor deleted.
  for (const Token* tok : {&a.tokens.create, &a.tokens.query, &a.tokens.delete_self, &m.export_token,
                           &m.revoke_token, &x, &re_query}) {
    EXPECT_TRUE(alive(*tok));
  }
  bool completed = false;
  EXPECT_EQ(list_ids(a.id, std::nullopt, 100, &completed), (std::vector<std::string>{"m"}));
  EXPECT_TRUE(completed);
}

// A re-export stands for its original for every write, through any number of links.
TEST_P(StoreTest, ReexportedCapabilitiesCanBePresentedForEveryWrite) {
  Tenant a = tenant();
  Membrane m = membrane(a, "m");
  Membrane n = membrane(a, "n");
  MembraneRow m_row = row_of(m);
  Token create = reexport(n, a.tokens.create);
  Token create2 = reexport(n, create);
  Token exp = reexport(n, m.export_token);
  Token rev = reexport(n, m.revoke_token);
  Token del = reexport(n, a.tokens.delete_self);

  Membrane made = membrane_via(create2, "made");
  MembraneRow made_row = row_of(made);
  expect_kind(made.export_token, CapabilityKind::export_, a.id, made_row);
  expect_kind(made.revoke_token, CapabilityKind::revoke, a.id, made_row);
  auto conflict = store_->create_membrane(create, Membrane{"made", new_token(), new_token()});
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.error().kind, ErrorKind::conflict);
  // Exports act on the membrane the export capability finally acts on.
  Token x = export_uri(exp);
  expect_kind(x, CapabilityKind::uri, a.id, m_row, 0);
  Token q = reexport(exp, a.tokens.query);
  expect_kind(q, CapabilityKind::query, a.id, std::nullopt, 1);

  ASSERT_TRUE(store_->revoke_membrane(rev).ok());
  for (const Token* tok : {&m.export_token, &x, &exp, &q}) EXPECT_FALSE(alive(*tok));
  expect_kind(rev, CapabilityKind::revoke, a.id, m_row, 1);  // and again: a repeated revoke
  ASSERT_TRUE(store_->revoke_membrane(rev).ok());
  for (const Token* tok : {&n.export_token, &made.export_token, &create, &create2, &del}) {
    EXPECT_TRUE(alive(*tok));
  }

  ASSERT_TRUE(store_->delete_tenant(del).ok());
  for (const Token* tok : {&a.tokens.create, &a.tokens.query, &a.tokens.delete_self, &n.revoke_token,
                           &made.export_token, &made.revoke_token, &m.revoke_token, &rev, &del}) {
    EXPECT_FALSE(alive(*tok));
  }
}

// Everything made by a write can be stale-authorised: resolved before a revoke, written after it.
TEST_P(StoreTest, AWriteAfterTheRevocationOfWhatItWasAuthorisedWithIsRefused) {
  Tenant a = tenant();
  Membrane m = membrane(a, "m");
  Membrane n = membrane(a, "n");
  Token create = reexport(n, a.tokens.create);
  Token exp = reexport(n, m.export_token);
  Token rev = reexport(n, m.revoke_token);
  Token del = reexport(n, a.tokens.delete_self);
  for (const Token* tok : {&create, &exp, &rev, &del}) ASSERT_TRUE(store_->resolve(*tok).ok());  // "authorised"
  ASSERT_TRUE(revoke(n).ok());

  Membrane made{"made", new_token(), new_token()};
  auto s1 = store_->create_membrane(create, made);
  Token t2 = new_token(), t3 = new_token();
  auto s2 = store_->export_uri(exp, t2, simple_config(), membraned::test::new_grant());
  auto s3 = store_->export_reexport(exp, t3, a.tokens.query, membraned::test::new_grant());
  auto s4 = store_->revoke_membrane(rev);
  auto s5 = store_->delete_tenant(del);
  int i = 0;
  for (const auto* s : {&s1, &s2, &s3, &s4, &s5}) {
    SCOPED_TRACE(i++);
    ASSERT_FALSE(s->ok());
    EXPECT_EQ(s->error().kind, ErrorKind::unauthorized);
  }
  for (const Token* tok : {&made.export_token, &made.revoke_token, &t2, &t3}) EXPECT_FALSE(alive(*tok));
  auto found = store_->find_membrane(a.id, "made");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  // Neither m nor the tenant was touched.
  for (const Token* tok : {&m.export_token, &a.tokens.create, &a.tokens.delete_self}) EXPECT_TRUE(alive(*tok));
}

// Resolved::walked counts the capabilities a capability depends on, itself included: what it
// stands for (parent) and what was presented to make it (via), transitively, each once.
TEST_P(StoreTest, ResolvedCountsTheCapabilitiesItDependsOn) {
  Tenant a = tenant();
  EXPECT_EQ(walked(a.tokens.create), 1u);
  EXPECT_EQ(walked(a.tokens.query), 1u);
  Membrane m = membrane(a, "m");
  Membrane n = membrane(a, "n");
  EXPECT_EQ(walked(m.export_token), 2u);  // + the create capability presented
  EXPECT_EQ(walked(m.revoke_token), 2u);
  Token x = export_uri(m);
  EXPECT_EQ(walked(x), 3u);  // x, m's export, create
  Token re = reexport(n, x);
  EXPECT_EQ(walked(re), 5u);  // re, x, m's export, create, n's export
  Token rc = reexport(n, a.tokens.create);
  EXPECT_EQ(walked(rc), 3u);  // rc, create, n's export
  Membrane made = membrane_via(rc, "made");
  EXPECT_EQ(walked(made.export_token), 4u);  // + rc, create, n's export
  EXPECT_EQ(walked(made.revoke_token), 4u);
  Token xe = reexport(n, m.export_token);
  EXPECT_EQ(walked(xe), 4u);  // xe, m's export, create, n's export
  Token xv = export_uri(xe);
  EXPECT_EQ(walked(xv), 5u);
  Token re2 = reexport(made, re);
  EXPECT_EQ(walked(re2), 8u);  // re2, re's 5, made's export, rc
  auto r = store_->resolve(re2);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->depth, 2);
}

// Creation keeps every capability within kMaxDependencies: whatever a write makes resolves, and
// what it refuses (invalid input) it does not store. A chain of export capabilities, each
// re-exported through the previous one, grows by one dependency a link; two tenants' capabilities
// share none, so a re-export of one through the other's chain can reach the bound exactly.
TEST_P(StoreTest, NothingIsMadeBeyondTheDependencyBound) {
  Tenant a = tenant();
  Tenant b = tenant();
  Membrane ma = membrane(a, "a");
  Membrane mb = membrane(b, "b");
  Token chain = ma.export_token;
  std::optional<Token> before_last;
  for (std::size_t guard = 0; walked(chain) < kMaxDependencies - 2 && guard < kMaxDependencies; ++guard) {
    before_last = chain;
    chain = reexport(chain, ma.export_token);
    ASSERT_FALSE(testing::Test::HasFailure());
  }
  ASSERT_EQ(walked(chain), kMaxDependencies - 2);
  ASSERT_TRUE(before_last.has_value());
  ASSERT_EQ(walked(*before_last), kMaxDependencies - 3);

  // A write either makes something that resolves, within the bound, or is refused and stores
  // nothing.
  auto expect_bounded = [&](const core::Status& s, const std::vector<const Token*>& made, const char* what) {
    if (s.ok()) {
      for (const Token* t : made) {
        auto r = store_->resolve(*t);
        EXPECT_TRUE(r.ok()) << what << ": made, but does not resolve";
        if (r) {
          EXPECT_LE(r->walked, kMaxDependencies) << what;
        }
      }
    } else {
      EXPECT_EQ(s.error().kind, ErrorKind::invalid_input) << what << ": " << s.error().message;
      for (const Token* t : made) EXPECT_FALSE(alive(*t)) << what;
    }
  };

  // B's create capability through A's chain: the bound exactly (1 + 254 + itself).
  Token b_create = reexport(chain, b.tokens.create);
  EXPECT_EQ(walked(b_create), kMaxDependencies);
  expect_kind(b_create, CapabilityKind::create, b.id, std::nullopt, 1);
  // B's export capability through the link before (2 + 253 + itself).
  Token b_export = reexport(*before_last, mb.export_token);
  EXPECT_EQ(walked(b_export), kMaxDependencies);

  // Whatever is made through them depends on one more.
  Membrane made{"made through the bound", new_token(), new_token()};
  auto s1 = store_->create_membrane(b_create, made);
  expect_bounded(s1, {&made.export_token, &made.revoke_token}, "create_membrane");
  if (!s1.ok()) {
    auto found = store_->find_membrane(b.id, made.id);
    ASSERT_TRUE(found.ok());
    EXPECT_FALSE(found->has_value()) << "refused, yet stored";
  }
  Token t2 = new_token(), t3 = new_token(), t4 = new_token();
  expect_bounded(store_->export_uri(b_export, t2, simple_config(), membraned::test::new_grant()), {&t2}, "export_uri");
  expect_bounded(store_->export_reexport(b_export, t3, b.tokens.query, membraned::test::new_grant()), {&t3}, "export_reexport");
  expect_bounded(store_->export_reexport(chain, t4, ma.export_token, membraned::test::new_grant()), {&t4}, "export_reexport along the chain");
  // Below the bound all is as usual.
  Token x = export_uri(chain);
  EXPECT_EQ(walked(x), kMaxDependencies - 1);
  // And revoking the root of the chain still cuts its far end.
  ASSERT_TRUE(revoke(ma).ok());
  for (const Token* tok : {&chain, &x, &b_create, &b_export}) EXPECT_FALSE(alive(*tok));
  EXPECT_TRUE(alive(mb.export_token));
  EXPECT_TRUE(alive(b.tokens.create));
}

// --- delegation and revocation (contract §7) --------------------------------------------------

// X in M0; X1 = X via M1; X2 = X1 via M2; X3 = X2 via M3; X4 = X3 via M4; S1 = X via M2 (a sibling
// of X1 through the same membrane as X2); S2 = X1 via M4 (a sibling of X2).
struct Tree {
  std::vector<Membrane> m;
  std::vector<MembraneRow> rows;
  Token x = new_token(), x1 = new_token(), x2 = new_token(), x3 = new_token(), x4 = new_token(),
        s1 = new_token(), s2 = new_token();
};

class CascadeTest : public StoreTest {
 protected:
  Tree build(const Tenant& tenant) {
    Tree t;
    for (int i = 0; i < 5; ++i) {
      t.m.push_back(membrane(tenant, "M" + std::to_string(i)));
      t.rows.push_back(row_of(t.m.back()));
    }
    t.x = export_uri(t.m[0]);
    t.x1 = reexport(t.m[1], t.x);
    t.x2 = reexport(t.m[2], t.x1);
    t.x3 = reexport(t.m[3], t.x2);
    t.x4 = reexport(t.m[4], t.x3);
    t.s1 = reexport(t.m[2], t.x);
    t.s2 = reexport(t.m[4], t.x1);
    return t;
  }
};

TEST_P(CascadeTest, EveryLinkResolvesToTheRootUriCapability) {
  Tenant a = tenant();
  Tree t = build(a);
  int depth = 0;
  for (const Token* tok : {&t.x, &t.x1, &t.x2, &t.x3, &t.x4}) {
    expect_kind(*tok, CapabilityKind::uri, a.id, t.rows[0], depth++);
  }
  expect_kind(t.s1, CapabilityKind::uri, a.id, t.rows[0], 1);
  expect_kind(t.s2, CapabilityKind::uri, a.id, t.rows[0], 2);
}

TEST_P(CascadeTest, RevokingTheRootMembraneKillsEveryDescendant) {
  Tenant a = tenant();
  Tree t = build(a);
  Token other_in_m2 = export_uri(t.m[2]);
  ASSERT_TRUE(revoke(t.m[0]).ok());
  for (const Token* tok : {&t.x, &t.x1, &t.x2, &t.x3, &t.x4, &t.s1, &t.s2}) EXPECT_FALSE(alive(*tok));
  // The other membranes themselves are untouched.
  for (int i = 1; i < 5; ++i) EXPECT_TRUE(alive(t.m[i].export_token)) << i;
  EXPECT_TRUE(alive(other_in_m2));
  // Nothing dead can be re-exported back to life.
  Token again = new_token();
  auto s = store_->export_reexport(t.m[1].export_token, again, t.x2, membraned::test::new_grant());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::not_found);
}

TEST_P(CascadeTest, RevokingAMiddleMembraneKillsExactlyItsSubtree) {
  Tenant a = tenant();
  Tree t = build(a);
  ASSERT_TRUE(revoke(t.m[2]).ok());
  // Through M2: X2 (and X3, X4 below it) and S1.
  for (const Token* tok : {&t.x2, &t.x3, &t.x4, &t.s1}) EXPECT_FALSE(alive(*tok));
  // Ancestors and siblings stay.
  expect_kind(t.x, CapabilityKind::uri, a.id, t.rows[0], 0);
  expect_kind(t.x1, CapabilityKind::uri, a.id, t.rows[0], 1);
  expect_kind(t.s2, CapabilityKind::uri, a.id, t.rows[0], 2);
  // M4 is alive, but X4 through it hangs below X2.
  EXPECT_TRUE(alive(t.m[4].export_token));

  ASSERT_TRUE(revoke(t.m[1]).ok());
  EXPECT_FALSE(alive(t.x1));
  EXPECT_FALSE(alive(t.s2));
  EXPECT_TRUE(alive(t.x));
}

TEST_P(CascadeTest, RevokingALeafMembraneKillsOnlyTheLeaf) {
  Tenant a = tenant();
  Tree t = build(a);
  ASSERT_TRUE(revoke(t.m[4]).ok());
  EXPECT_FALSE(alive(t.x4));
  EXPECT_FALSE(alive(t.s2));
  for (const Token* tok : {&t.x, &t.x1, &t.x2, &t.x3, &t.s1}) EXPECT_TRUE(alive(*tok));
}

TEST_P(StoreTest, BuiltInCapabilitiesCanBeReexportedAndDieWithTheReexportingMembrane) {
  Tenant a = tenant();
  Membrane m1 = membrane(a, "m1");
  Membrane m2 = membrane(a, "m2");
  MembraneRow r1 = row_of(m1), r2 = row_of(m2);
  Token create = reexport(m2, a.tokens.create);
  Token query = reexport(m2, a.tokens.query);
  Token del = reexport(m2, a.tokens.delete_self);
  Token exp = reexport(m2, m1.export_token);
  Token rev = reexport(m2, m1.revoke_token);
  Token own_export = reexport(m2, m2.export_token);  // a membrane's own export, through itself

  expect_kind(create, CapabilityKind::create, a.id, std::nullopt, 1);
  expect_kind(query, CapabilityKind::query, a.id, std::nullopt, 1);
  expect_kind(del, CapabilityKind::delete_self, a.id, std::nullopt, 1);
  expect_kind(exp, CapabilityKind::export_, a.id, r1, 1);
  expect_kind(rev, CapabilityKind::revoke, a.id, r1, 1);
  expect_kind(own_export, CapabilityKind::export_, a.id, r2, 1);

  ASSERT_TRUE(revoke(m2).ok());
  for (const Token* tok : {&create, &query, &del, &exp, &rev, &own_export}) EXPECT_FALSE(alive(*tok));
  // The originals stand.
  expect_kind(a.tokens.create, CapabilityKind::create, a.id, std::nullopt);
  expect_kind(a.tokens.query, CapabilityKind::query, a.id, std::nullopt);
  expect_kind(m1.export_token, CapabilityKind::export_, a.id, r1);
  expect_kind(m1.revoke_token, CapabilityKind::revoke, a.id, r1);
  // And m2's own revoke capability still answers (repeated revoke).
  expect_kind(m2.revoke_token, CapabilityKind::revoke, a.id, r2);
}

TEST_P(StoreTest, ReexportedBuiltInsDieWithTheirOriginals) {
  Tenant a = tenant();
  Membrane m1 = membrane(a, "m1");
  Membrane m2 = membrane(a, "m2");
  MembraneRow r1 = row_of(m1);
  Token exp = reexport(m2, m1.export_token);
  Token exp2 = reexport(m2, exp);
  Token rev = reexport(m2, m1.revoke_token);
  ASSERT_TRUE(revoke(m1).ok());
  EXPECT_FALSE(alive(exp));
  EXPECT_FALSE(alive(exp2));
  // A re-export of the revoke capability stands for it, and it still resolves.
  expect_kind(rev, CapabilityKind::revoke, a.id, r1, 1);
}

TEST_P(StoreTest, RepeatedRevokeKeepsTheRevokeCapabilityUntilTheTenantGoes) {
  Tenant a = tenant();
  Membrane m = membrane(a, "m");
  Membrane m2 = membrane(a, "m2");
  MembraneRow row = row_of(m);
  Token x = export_uri(m);
  ASSERT_TRUE(revoke(m).ok());
  EXPECT_FALSE(alive(m.export_token));
  EXPECT_FALSE(alive(x));
  expect_kind(m.revoke_token, CapabilityKind::revoke, a.id, row);
  ASSERT_TRUE(revoke(m).ok());
  expect_kind(m.revoke_token, CapabilityKind::revoke, a.id, row);
  EXPECT_FALSE(alive(m.export_token));
  // The revoke capability can even be re-exported after the revocation it performed.
  Token rev = reexport(m2, m.revoke_token);
  expect_kind(rev, CapabilityKind::revoke, a.id, row, 1);

  ASSERT_TRUE(store_->delete_tenant(a.tokens.delete_self).ok());
  EXPECT_FALSE(alive(m.revoke_token));
  EXPECT_FALSE(alive(rev));
}

TEST_P(StoreTest, DeleteTenantKillsEverythingOfItsAndReexportsOfItOnly) {
  Tenant a = tenant();
  Tenant b = tenant();
  Membrane ma = membrane(a, "shared id");
  Membrane ma2 = membrane(a, "a2");
  Membrane mb = membrane(b, "shared id");
  MembraneRow rb = row_of(mb);
  Token xa = export_uri(ma);
  Token xa_re = reexport(ma2, xa);           // A's re-export of its own
  Token xb = export_uri(mb);                 // B's own
  Token b_of_xa = reexport(mb, xa);          // B re-exports A's capability
  Token b_of_a_create = reexport(mb, a.tokens.create);
  Token b_of_a_export = reexport(mb, ma.export_token);
  Token a_of_xb = reexport(ma, xb);          // A re-exports B's: dies with A's membrane
  Token b_of_b_create = reexport(mb, b.tokens.create);

  ASSERT_TRUE(store_->delete_tenant(a.tokens.delete_self).ok());
  for (const Token* tok : {&a.tokens.create, &a.tokens.query, &a.tokens.delete_self, &ma.export_token,
                           &ma.revoke_token, &ma2.export_token, &ma2.revoke_token, &xa, &xa_re,
                           &b_of_xa, &b_of_a_create, &b_of_a_export, &a_of_xb}) {
    EXPECT_FALSE(alive(*tok));
  }
  expect_kind(b.tokens.create, CapabilityKind::create, b.id, std::nullopt);
  expect_kind(b.tokens.query, CapabilityKind::query, b.id, std::nullopt);
  expect_kind(b.tokens.delete_self, CapabilityKind::delete_self, b.id, std::nullopt);
  expect_kind(mb.export_token, CapabilityKind::export_, b.id, rb);
  expect_kind(mb.revoke_token, CapabilityKind::revoke, b.id, rb);
  expect_kind(xb, CapabilityKind::uri, b.id, rb);
  expect_kind(b_of_b_create, CapabilityKind::create, b.id, std::nullopt, 1);

  // A's membranes are gone from find and list; B's are not.
  auto found = store_->find_membrane(a.id, "shared id");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  bool completed = false;
  EXPECT_TRUE(list_ids(a.id, std::nullopt, 10, &completed).empty());
  EXPECT_TRUE(completed);
  EXPECT_EQ(list_ids(b.id, std::nullopt, 10, &completed), (std::vector<std::string>{"shared id"}));
  // Nothing of A's can be re-exported any more.
  Token t = new_token();
  auto s = store_->export_reexport(mb.export_token, t, a.tokens.query, membraned::test::new_grant());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::not_found);
}

TEST_P(StoreTest, ReexportChainsAreLimitedInDepth) {
  Tenant a = tenant();
  Membrane m0 = membrane(a, "root");
  Membrane m1 = membrane(a, "chain");
  MembraneRow r0 = row_of(m0);
  Token x = export_uri(m0);
  std::vector<Token> chain{x};
  for (int i = 1; i < kMaxReexportDepth; ++i) {
    Token t = new_token();
    auto s = store_->export_reexport(m1.export_token, t, chain.back(), membraned::test::new_grant());
    ASSERT_TRUE(s.ok()) << "link " << i << ": " << s.error().message;
    chain.push_back(t);
  }
  // kMaxReexportDepth - 1 links resolve, the deepest included.
  expect_kind(chain.back(), CapabilityKind::uri, a.id, r0, kMaxReexportDepth - 1);
  // The kMaxReexportDepth-th link is refused, and nothing was stored.
  Token too_deep = new_token();
  auto s = store_->export_reexport(m1.export_token, too_deep, chain.back(), membraned::test::new_grant());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::invalid_input) << s.error().message;
  EXPECT_EQ(s.error().message, "a chain may hold at most " + std::to_string(kMaxReexportDepth - 1) +
                                   " re-export links; this export would be link " + std::to_string(kMaxReexportDepth));
  EXPECT_FALSE(alive(too_deep));
  // Shorter branches from the middle of the chain still work.
  Token branch = reexport(m1, chain[10]);
  expect_kind(branch, CapabilityKind::uri, a.id, r0, 11);
  // Revoking the root still reaches the deepest link.
  ASSERT_TRUE(revoke(m0).ok());
  EXPECT_FALSE(alive(chain.back()));
  EXPECT_FALSE(alive(branch));
}

// --- what is made through a capability dies with it ("via") --------------------------------------

// A membrane made through a re-exported create capability depends on that re-export: revoking
// the membrane the re-export went through cuts the membrane's capabilities and all below them.
// Membranes made with the tenant's own create capability are untouched.
TEST_P(StoreTest, MembranesMadeThroughAReexportedCreateDieWithTheMembraneItWentThrough) {
  Tenant a = tenant();
  Membrane n = membrane(a, "n");  // the re-exporting membrane
  MembraneRow n_row = row_of(n);
  Token create = reexport(n, a.tokens.create);
  Membrane through = membrane_via(create, "through");
  Membrane direct = membrane(a, "direct");
  MembraneRow through_row = row_of(through), direct_row = row_of(direct);
  Token x_through = export_uri(through);
  Token x_direct = export_uri(direct);
  Token q_through = reexport(through, a.tokens.query);
  Token elsewhere = reexport(direct, x_through);  // re-exported elsewhere, of one in `through`
  expect_kind(through.export_token, CapabilityKind::export_, a.id, through_row);
  expect_kind(through.revoke_token, CapabilityKind::revoke, a.id, through_row);
  expect_kind(x_through, CapabilityKind::uri, a.id, through_row);

  ASSERT_TRUE(revoke(n).ok());
  for (const Token* tok : {&create, &through.export_token, &through.revoke_token, &x_through, &q_through,
                           &elsewhere}) {
    EXPECT_FALSE(alive(*tok));
  }
  expect_kind(a.tokens.create, CapabilityKind::create, a.id, std::nullopt);
  expect_kind(direct.export_token, CapabilityKind::export_, a.id, direct_row);
  expect_kind(direct.revoke_token, CapabilityKind::revoke, a.id, direct_row);
  expect_kind(x_direct, CapabilityKind::uri, a.id, direct_row);
  expect_kind(n.revoke_token, CapabilityKind::revoke, a.id, n_row);  // repeated revoke
  // Nothing more is made through it; the tenant's own create capability still makes membranes.
  Membrane refused{"refused", new_token(), new_token()};
  auto s = store_->create_membrane(create, refused);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::unauthorized);
  EXPECT_FALSE(alive(refused.export_token));
  Membrane later = membrane(a, "later");
  EXPECT_TRUE(alive(later.export_token));
}

// The same across tenants: B re-exports A's create capability, a membrane of A's is made
// through it, and B deletes itself.
TEST_P(StoreTest, MembranesMadeThroughAnotherTenantsReexportDieWithThatTenant) {
  Tenant a = tenant();
  Tenant b = tenant();
  Membrane mb = membrane(b, "b's");
  Token a_create = reexport(mb, a.tokens.create);
  Membrane through = membrane_via(a_create, "through");
  Membrane direct = membrane(a, "direct");
  expect_kind(through.export_token, CapabilityKind::export_, a.id, row_of(through));
  Token x_through = export_uri(through);

  ASSERT_TRUE(store_->delete_tenant(b.tokens.delete_self).ok());
  for (const Token* tok : {&a_create, &through.export_token, &through.revoke_token, &x_through}) {
    EXPECT_FALSE(alive(*tok));
  }
  for (const Token* tok : {&a.tokens.create, &direct.export_token, &direct.revoke_token}) EXPECT_TRUE(alive(*tok));
}

// A capability exported through a re-exported export capability depends on that re-export:
// revoking the membrane the re-export went through cuts it, though it acts on the original
// membrane. What was exported with the membrane's own export capability is untouched.
TEST_P(StoreTest, ExportsMadeThroughAReexportedExportDieWithTheMembraneItWentThrough) {
  Tenant a = tenant();
  Membrane m = membrane(a, "m");          // what the exports act on
  Membrane n = membrane(a, "n");          // the re-exporting membrane
  Membrane other = membrane(a, "other");
  MembraneRow m_row = row_of(m);
  Token exp = reexport(n, m.export_token);
  Token exp2 = reexport(other, exp);       // two links
  Token x_through = export_uri(exp);
  Token x_through2 = export_uri(exp2);
  Token x_direct = export_uri(m);
  Token re_through = reexport(exp, x_direct);
  Token re_direct = reexport(m, x_direct);
  Token q_through = reexport(exp, a.tokens.query);
  Token elsewhere = reexport(other, x_through);
  expect_kind(x_through, CapabilityKind::uri, a.id, m_row, 0);
  expect_kind(x_through2, CapabilityKind::uri, a.id, m_row, 0);
  expect_kind(re_through, CapabilityKind::uri, a.id, m_row, 1);
  expect_kind(q_through, CapabilityKind::query, a.id, std::nullopt, 1);
  expect_kind(elsewhere, CapabilityKind::uri, a.id, m_row, 1);

  ASSERT_TRUE(revoke(n).ok());
  for (const Token* tok : {&exp, &exp2, &x_through, &x_through2, &re_through, &q_through, &elsewhere}) {
    EXPECT_FALSE(alive(*tok));
  }
  expect_kind(m.export_token, CapabilityKind::export_, a.id, m_row);
  expect_kind(x_direct, CapabilityKind::uri, a.id, m_row, 0);
  expect_kind(re_direct, CapabilityKind::uri, a.id, m_row, 1);
  EXPECT_TRUE(alive(other.export_token));
  EXPECT_TRUE(alive(a.tokens.query));
  // Nothing more is exported through it.
  Token t = new_token();
  auto s = store_->export_uri(exp, t, simple_config(), membraned::test::new_grant());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::unauthorized);
  EXPECT_FALSE(alive(t));
}

// A membrane cut with the capability it was made through is gone like a revoked one: neither
// found nor listed (its capabilities no longer resolve), and its id is free again.
TEST_P(StoreTest, AMembraneCutWithTheCapabilityItWasMadeThroughIsGoneLikeARevokedOne) {
  Tenant a = tenant();
  Membrane n = membrane(a, "n");
  Token create = reexport(n, a.tokens.create);
  Membrane through = membrane_via(create, "through");
  Membrane direct = membrane(a, "direct");
  ASSERT_TRUE(revoke(n).ok());
  ASSERT_FALSE(alive(through.export_token));

  auto found = store_->find_membrane(a.id, "through");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value()) << "a cut membrane is still found, with capabilities that do not resolve";
  bool completed = false;
  EXPECT_EQ(list_ids(a.id, std::nullopt, 10, &completed), (std::vector<std::string>{"direct"}))
      << "a cut membrane is still listed";
  EXPECT_TRUE(completed);
  Membrane again{"through", new_token(), new_token()};
  auto s = store_->create_membrane(a.tokens.create, again);
  EXPECT_TRUE(s.ok()) << "the id of a cut membrane is still taken: " << s.error().message;
  if (s.ok()) {
    EXPECT_TRUE(alive(again.export_token));
  }
}

// --- persistence and the master key --------------------------------------------------------------

// Listing decides for every membrane of a page whether it is cut, a batch of membranes at a time:
// a page wider than any batch, with cut membranes between live ones, lists exactly the live ones,
// and paging through it in smaller pages finds the same, with "completed" exact at each step.
TEST_P(StoreTest, ListingSkipsCutMembranesAcrossPagesWiderThanABatch) {
  Tenant a = tenant();
  Membrane gate = membrane(a, "gate");
  Token create = reexport(gate, a.tokens.create);
  std::vector<std::string> live{"gate"};
  for (int i = 0; i < 70; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "m%02d", i);
    if (i % 3 != 1) {
      membrane(a, id);
      live.push_back(id);
    } else {
      membrane_via(create, id);
    }
  }
  std::sort(live.begin(), live.end());
  ASSERT_TRUE(revoke(gate).ok());  // every third one, made through it, is cut; so is gate itself
  live.erase(std::find(live.begin(), live.end(), "gate"));

  bool completed = false;
  EXPECT_EQ(list_ids(a.id, std::nullopt, 1000, &completed), live);
  EXPECT_TRUE(completed);

  std::vector<std::string> paged;
  std::optional<std::string> after;
  do {
    auto ids = list_ids(a.id, after, 10, &completed);
    ASSERT_FALSE(ids.empty());
    paged.insert(paged.end(), ids.begin(), ids.end());
    after = ids.back();
    EXPECT_EQ(completed, paged.size() == live.size()) << paged.size();
  } while (!completed);
  EXPECT_EQ(paged, live);
}

// The send-time check (Store::still_current): a resolution stays current while nothing is revoked;
// once a revoke has returned and its settle time has passed (when its 202 goes out), a resolution
// made before it is no longer current, whichever store made it; one made after it is again.
TEST_P(StoreTest, AResolutionIsNoLongerCurrentOnceARevokeHasSettled) {
  auto other = open_store();
  ASSERT_NE(other, nullptr);
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  Token x = export_uri(m);
  auto current_within = [&](const Resolved& r) {
    // PostgreSQL's view of the epoch comes from a background read: wait for one (bounded).
    for (int i = 0; i < 500 && !store_->still_current(r); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return store_->still_current(r);
  };
  auto before = store_->resolve(x);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(before->epoch.has_value());
  EXPECT_TRUE(current_within(*before));

  ASSERT_TRUE(other->revoke_membrane(n.revoke_token).ok());  // not x's membrane: the epoch moves all the same
  std::this_thread::sleep_for(other->revocation_settle());
  EXPECT_FALSE(store_->still_current(*before));
  EXPECT_FALSE(other->still_current(*before));

  auto after = store_->resolve(x);  // x itself is alive
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(current_within(*after));
  Resolved unknown = *after;
  unknown.epoch.reset();  // resolved inside a write transaction: never taken as current
  EXPECT_FALSE(store_->still_current(unknown));
}

// A revoke's 202 waits out the bound on how old a send-time check's epoch may be, plus the margin.
TEST_P(StoreTest, ARevokeSettlesForTheEpochViewBoundAndTheMargin) {
  using std::chrono::milliseconds;
  EXPECT_EQ(store_->revocation_settle(),
            GetParam() == Backend::sqlite ? milliseconds(10) + milliseconds(50) : milliseconds(250) + milliseconds(50));
}

// --- quotas ---------------------------------------------------------------------------------------

// What one tenant may store (TenantQuotas): a write beyond a quota is refused (quota, 507) and
// stores nothing; revoked membranes and grants still count (their rows stay); other tenants are
// not touched.
TEST_P(StoreTest, AWriteBeyondATenantsQuotaIsRefusedAndStoresNothing) {
  auto key = MasterKey::from_base64(key_text_);
  ASSERT_TRUE(key.ok());
  auto opened = db_->open(std::move(*key), 4, {/*membranes=*/3, /*grants=*/2, /*stored_bytes=*/0});
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  store_ = std::move(*opened);
  Tenant a = tenant();
  Tenant b = tenant();
  Membrane m1 = membrane(a, "m1");
  Membrane m2 = membrane(a, "m2");
  ASSERT_TRUE(revoke(m1).ok());
  membrane(a, "m3");  // the third, the revoked one included
  Membrane refused{"m4", new_token(), new_token()};
  auto s = store_->create_membrane(a.tokens.create, refused);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::quota);
  EXPECT_EQ(s.error().message, "this tenant holds 3 membranes, the most it may hold");
  EXPECT_FALSE(alive(refused.export_token));

  Membrane m = membrane(b, "m");
  Token x = export_uri(m);
  reexport(m, x);
  Token over = new_token();
  auto e = store_->export_uri(m.export_token, over, simple_config(), membraned::test::new_grant());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().kind, ErrorKind::quota);
  EXPECT_EQ(e.error().message, "this tenant holds 2 grants, the most it may hold");
  EXPECT_FALSE(alive(over));
  e = store_->export_reexport(m.export_token, over, x, membraned::test::new_grant());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().kind, ErrorKind::quota);
  // Tenant a's grants are its own: b's full quota does not touch them.
  EXPECT_TRUE(alive(export_uri(m2)));
}

// Writers racing for the last units of a quota cannot both take one: exactly the quota passes.
TEST_P(StoreTest, ConcurrentExportsNeverExceedTheGrantQuota) {
  auto key = MasterKey::from_base64(key_text_);
  ASSERT_TRUE(key.ok());
  auto opened = db_->open(std::move(*key), 4, {0, /*grants=*/20, 0});
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  store_ = std::move(*opened);
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  std::atomic<int> stored{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 10; ++j) {
        auto s = store_->export_uri(m.export_token, new_token(), simple_config(), membraned::test::new_grant());
        if (s) {
          ++stored;
        } else if (s.error().kind == ErrorKind::quota) {
          ++refused;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(stored.load(), 20);
  EXPECT_EQ(refused.load(), 20);
  EXPECT_EQ(other.load(), 0);
}

// The byte quota counts what is sealed: large configurations run into it long before the count.
TEST_P(StoreTest, TheByteQuotaCountsWhatIsSealed) {
  auto key = MasterKey::from_base64(key_text_);
  ASSERT_TRUE(key.ok());
  auto opened = db_->open(std::move(*key), 4, {0, 0, /*stored_bytes=*/64 * 1024});
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  store_ = std::move(*opened);
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  nlohmann::json headers;
  for (int i = 0; i < 4; ++i) headers["X-Pad-" + std::to_string(i)] = std::string(4000, 'p');
  const UriExport big = uri_config(nlohmann::json{{"uri", "https://upstream.example/x"}, {"headers", headers}}.dump());
  int stored = 0;
  core::Status last = core::ok_status();
  while ((last = store_->export_uri(m.export_token, new_token(), big, membraned::test::new_grant()))) ++stored;
  EXPECT_EQ(last.error().kind, ErrorKind::quota);
  EXPECT_GE(stored, 2);
  EXPECT_LE(stored, 4);  // 16 KB each, sealed: at most 64 KiB in all
}

// A database made before the quotas existed is counted when the migration that adds them runs:
// what is already there counts against them.
TEST_P(StoreTest, TheQuotaMigrationCountsWhatADatabaseAlreadyHolds) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  export_uri(m);
  export_uri(m);
  store_.reset();
  // Back to the schema before the usage table (and the grants that came after it).
  undo_grants_migration();
  db_->run_sql("DROP TABLE tenant_usage");
  db_->run_sql("UPDATE schema_version SET version = version - 1");
  auto key = MasterKey::from_base64(key_text_);
  ASSERT_TRUE(key.ok());
  auto opened = db_->open(std::move(*key), 4, {/*membranes=*/2, /*grants=*/3, 0});
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  store_ = std::move(*opened);
  EXPECT_EQ(db_->run_sql("SELECT membranes FROM tenant_usage WHERE tenant_id = '" + t.id + "'"), "1");
  EXPECT_EQ(db_->run_sql("SELECT grants FROM tenant_usage WHERE tenant_id = '" + t.id + "'"), "2");
  export_uri(m);  // the third grant
  auto over = store_->export_uri(m.export_token, new_token(), simple_config(), membraned::test::new_grant());
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().kind, ErrorKind::quota);
}

TEST_P(StoreTest, DataSurvivesClosingAndReopeningWithTheSameKey) {
  Tenant a = tenant();
  Membrane m = membrane(a, "kept");
  Membrane gone = membrane(a, "gone");
  MembraneRow row = row_of(m), gone_row = row_of(gone);
  UriExport config = uri_config(nlohmann::json{
      {"uri", "https://upstream.example/kept"},
      {"hmac", {{"cap1-hmac-sha512", {{"key", "a2VlcC1tZS1zZWNyZXQ"}, {"keyId", "kid"}}}}}}.dump());
  Token x = export_uri(m, config);
  Token re = reexport(gone, x);
  Token re2 = reexport(m, a.tokens.query);
  ASSERT_TRUE(revoke(gone).ok());

  store_.reset();
  store_ = open_store();
  ASSERT_NE(store_, nullptr);

  auto has = store_->has_tenants();
  ASSERT_TRUE(has.ok());
  EXPECT_TRUE(*has);
  expect_kind(a.tokens.create, CapabilityKind::create, a.id, std::nullopt);
  expect_kind(m.export_token, CapabilityKind::export_, a.id, row);
  expect_kind(re2, CapabilityKind::query, a.id, std::nullopt, 1);
  auto r = store_->resolve(x);
  ASSERT_TRUE(r.ok());
  ASSERT_NE(r->uri, nullptr);
  EXPECT_EQ(core::to_json(*r->uri), core::to_json(config));
  // Revocations are durable.
  EXPECT_FALSE(alive(gone.export_token));
  EXPECT_FALSE(alive(re));
  expect_kind(gone.revoke_token, CapabilityKind::revoke, a.id, gone_row);
  auto found = store_->find_membrane(a.id, "kept");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->export_token.text(), m.export_token.text());
  EXPECT_EQ((*found)->revoke_token.text(), m.revoke_token.text());
  auto conflict = store_->create_membrane(a.tokens.create, Membrane{"kept", new_token(), new_token()});
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.error().kind, ErrorKind::conflict);
  // Reopening twice changes nothing (migrations are not re-applied).
  store_.reset();
  store_ = open_store();
  ASSERT_NE(store_, nullptr);
  EXPECT_TRUE(alive(x));
}

TEST_P(StoreTest, ReopeningWithAnotherMasterKeyFails) {
  Tenant a = tenant();
  membrane(a, "m");
  store_.reset();
  auto other = MasterKey::from_base64(core::base64_encode(random_bytes(32)));
  ASSERT_TRUE(other.ok());
  auto reopened = db_->open(std::move(*other));
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.error().kind, ErrorKind::invalid_input) << reopened.error().message;
  // The right key still opens it.
  store_ = open_store();
  ASSERT_NE(store_, nullptr);
  EXPECT_TRUE(alive(a.tokens.create));
}

class MasterKeyTest : public testing::Test {
 protected:
  // Keys are equal when what one seals the other opens.
  static bool same_key(const MasterKey& a, const MasterKey& b) {
    auto sealed = a.seal("plaintext", "context");
    if (!sealed) return false;
    auto opened = b.open(*sealed, "context");
    return opened.ok() && *opened == "plaintext";
  }
  TempDir dir_;
};

TEST_F(MasterKeyTest, KeyFileIsCreatedWithMode0600AndLoadedAgain) {
  auto first = MasterKey::load(std::nullopt, dir_.path());
  ASSERT_TRUE(first.ok()) << first.error().message;
  const fs::path file = dir_.path() / "master.key";
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string text = file_bytes(file);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  auto decoded = core::base64_decode(text);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->size(), 32u);
  auto second = MasterKey::load(std::nullopt, dir_.path());
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(same_key(*first, *second));
  // An empty environment value means "unset".
  auto third = MasterKey::load(std::string(), dir_.path());
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(same_key(*first, *third));
}

TEST_F(MasterKeyTest, EnvironmentValueWinsOverTheKeyFile) {
  auto file_key = MasterKey::load(std::nullopt, dir_.path());
  ASSERT_TRUE(file_key.ok());
  auto env_key = MasterKey::load(core::base64_encode(random_bytes(32)), dir_.path());
  ASSERT_TRUE(env_key.ok());
  EXPECT_FALSE(same_key(*file_key, *env_key));
  auto bad_env = MasterKey::load(std::string("not a key"), dir_.path());
  EXPECT_FALSE(bad_env.ok());
}

TEST_F(MasterKeyTest, KeyFileReadableByOthersIsRejected) {
  ASSERT_TRUE(MasterKey::load(std::nullopt, dir_.path()).ok());
  const fs::path file = dir_.path() / "master.key";
  const std::string before = file_bytes(file);
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                            fs::perms::others_read);
  auto loaded = MasterKey::load(std::nullopt, dir_.path());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, ErrorKind::invalid_input);
  EXPECT_EQ(file_bytes(file), before);  // never replaced
}

TEST_F(MasterKeyTest, GarbageKeyFileIsRejectedAndNotReplaced) {
  const fs::path file = dir_.path() / "master.key";
  for (const std::string& garbage :
       {std::string("this is not a key\n"), core::base64_encode(random_bytes(31)) + "\n", std::string()}) {
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out << garbage;
    }
    fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
    auto loaded = MasterKey::load(std::nullopt, dir_.path());
    EXPECT_FALSE(loaded.ok()) << garbage;
    EXPECT_EQ(file_bytes(file), garbage);
  }
}

TEST_F(MasterKeyTest, FromBase64AcceptsBothAlphabetsOf32BytesOnly) {
  // Bytes that need '+' and '/' in the standard alphabet.
  std::string bytes(32, '\xfb');
  for (std::size_t i = 0; i < bytes.size(); i += 3) bytes[i] = '\xff';
  const std::string standard = core::base64_encode(bytes);
  ASSERT_NE(standard.find_first_of("+/"), std::string::npos);
  ASSERT_EQ(standard.back(), '=');
  std::string unpadded = standard;
  while (unpadded.back() == '=') unpadded.pop_back();
  const std::string url = core::base64url_encode(bytes);
  ASSERT_NE(url.find_first_of("-_"), std::string::npos);

  auto a = MasterKey::from_base64(standard);
  auto b = MasterKey::from_base64(unpadded);
  auto c = MasterKey::from_base64(url);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(same_key(*a, *b));
  EXPECT_TRUE(same_key(*a, *c));

  std::string short_bytes = bytes.substr(0, 31);
  std::string long_bytes = bytes + "x";
  for (const std::string& rejected :
       {core::base64_encode(short_bytes), core::base64url_encode(short_bytes), core::base64_encode(long_bytes),
        core::base64url_encode(long_bytes), std::string(), std::string("!!!!"), core::hex_encode(bytes)}) {
    auto r = MasterKey::from_base64(rejected);
    EXPECT_FALSE(r.ok()) << rejected;
  }
}

// `basenc --base64url` pads: a padded URL-safe key is as good as the others, from the
// environment and from the key file.
TEST_F(MasterKeyTest, FromBase64AcceptsPaddedUrlSafeText) {
  std::string bytes(32, '\xfb');
  for (std::size_t i = 0; i < bytes.size(); i += 3) bytes[i] = '\xff';
  std::string padded = core::base64url_encode(bytes);
  ASSERT_NE(padded.find_first_of("-_"), std::string::npos);
  while (padded.size() % 4 != 0) padded += '=';
  ASSERT_EQ(padded.back(), '=');
  ASSERT_EQ(padded.size(), core::base64_encode(bytes).size());

  auto standard = MasterKey::from_base64(core::base64_encode(bytes));
  auto url = MasterKey::from_base64(padded);
  ASSERT_TRUE(standard.ok());
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_TRUE(same_key(*standard, *url));

  auto from_env = MasterKey::load(padded, dir_.path());
  ASSERT_TRUE(from_env.ok());
  EXPECT_TRUE(same_key(*standard, *from_env));
  const fs::path file = dir_.path() / "master.key";
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << padded << "\n";
  }
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
  auto from_file = MasterKey::load(std::nullopt, dir_.path());
  ASSERT_TRUE(from_file.ok()) << from_file.error().message;
  EXPECT_TRUE(same_key(*standard, *from_file));

  // Padding does not make a wrong length right.
  std::string short_padded = core::base64url_encode(bytes.substr(0, 31));
  while (short_padded.size() % 4 != 0) short_padded += '=';
  EXPECT_FALSE(MasterKey::from_base64(short_padded).ok());
}

// --- secrecy at rest ------------------------------------------------------------------------------

TEST_P(StoreTest, NoTokenNorSecretIsStoredInClear) {
  const std::string secret_access_key = random_text("SecretAccessKey");
  const std::string session_token = random_text("SessionTokenValue", 48);
  const std::string cap1_key = random_text("Cap1KeyMaterial");
  auto pem = membraned::test::make_self_signed_pem("secret.example");

  std::vector<std::string> forbidden = {secret_access_key, session_token, cap1_key};
  {
    std::istringstream lines(pem.key);
    std::string line;
    int body_lines = 0;
    while (std::getline(lines, line)) {
      if (line.empty() || line.rfind("-----", 0) == 0) continue;
      ASSERT_GE(line.size(), 16u);
      forbidden.push_back(line);
      ++body_lines;
    }
    ASSERT_GT(body_lines, 0);
  }
  auto forbid_token = [&](const Token& t) {
    forbidden.push_back(t.text());
    forbidden.push_back(t.text().substr(Token::kPrefix.size()));  // the body alone
  };

  Tenant a = tenant();
  Tenant b = tenant();
  for (const Tenant* t : {&a, &b}) {
    forbid_token(t->tokens.create);
    forbid_token(t->tokens.query);
    forbid_token(t->tokens.delete_self);
  }
  std::vector<Membrane> membranes;
  for (int i = 0; i < 4; ++i) {
    membranes.push_back(membrane(i % 2 == 0 ? a : b, "membrane " + std::to_string(i)));
    forbid_token(membranes.back().export_token);
    forbid_token(membranes.back().revoke_token);
  }
  UriExport aws = uri_config(nlohmann::json{
      {"uri", "https://upstream.example/aws"},
      {"hmac",
       {{"aws4-hmac-sha256",
         {{"awsAccessKeyId", "AKIDEXAMPLE"},
          {"secretAccessKey", secret_access_key},
          {"region", "eu-west-1"},
          {"service", "s3"},
          {"sessionToken", session_token}}}}},
      {"tls", {{"cert", pem.cert}, {"key", pem.key}}}}.dump());
  UriExport cap1 = uri_config(nlohmann::json{
      {"uri", "https://upstream.example/cap1"},
      {"hmac", {{"cap1-hmac-sha512", {{"key", cap1_key}, {"keyId", "key-id"}}}}}}.dump());
  Token x_aws = export_uri(membranes[0], aws);
  Token x_cap1 = export_uri(membranes[1], cap1);
  Token re = reexport(membranes[2], x_aws);
  Token re_builtin = reexport(membranes[3], a.tokens.create);
  for (const Token* t : {&x_aws, &x_cap1, &re, &re_builtin}) forbid_token(*t);
  ASSERT_TRUE(revoke(membranes[3]).ok());
  ASSERT_TRUE(alive(x_aws));  // the configuration did reach the store

  auto scan = [&](const char* when) {
    const std::string bytes = db_->stored_bytes();
    for (const auto& needle : forbidden) {
      EXPECT_EQ(bytes.find(needle), std::string::npos) << when << ": the database holds " << needle.substr(0, 24) << "...";
    }
    EXPECT_GT(bytes.size(), 0u);
  };
  scan("while open");
  store_.reset();  // SQLite: the last connection checkpoints the WAL into the main file
  scan("after close");
}

// --- concurrency ----------------------------------------------------------------------------------

TEST_P(StoreTest, ResolvesStartingAfterARevokeReturnsAllFail) {
  Tenant a = tenant();
  Membrane root = membrane(a, "root");
  Membrane via = membrane(a, "via");
  Token x = export_uri(root);
  Token re = reexport(via, x);
  Token re2 = reexport(via, re);

  constexpr int kThreads = 4;
  constexpr int kAfter = 200;  // resolves each thread makes once the revoke has returned
  std::atomic<bool> revoke_started{false};
  std::atomic<bool> revoke_done{false};
  std::atomic<int> ready{0};
  struct Tally {
    int before_ok = 0, before_failed = 0, during = 0, after_ok = 0, after_failed = 0, other_errors = 0;
  };
  std::vector<Tally> tallies(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      Tally& tally = tallies[static_cast<std::size_t>(i)];
      const Token& tok = i % 3 == 0 ? x : i % 3 == 1 ? re : re2;
      bool counted_ready = false;
      while (tally.after_ok + tally.after_failed < kAfter) {
        // "after": started once revoke_membrane had returned; "before": over before it began.
        const bool done = revoke_done.load();
        auto r = store_->resolve(tok);
        const bool started = revoke_started.load();
        if (!r && r.error().kind != ErrorKind::unauthorized) ++tally.other_errors;
        if (done) {
          ++(r ? tally.after_ok : tally.after_failed);
        } else if (!started) {
          ++(r ? tally.before_ok : tally.before_failed);
          if (!counted_ready && tally.before_ok >= 20) {
            counted_ready = true;
            ready.fetch_add(1);
          }
        } else {
          ++tally.during;
        }
        if (tally.other_errors > 100) break;
      }
    });
  }
  threads.emplace_back([&] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (ready.load() < kThreads && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    revoke_started.store(true);
    auto s = revoke(root);
    EXPECT_TRUE(s.ok()) << s.error().message;
    revoke_done.store(true);
  });
  for (auto& t : threads) t.join();

  int total_before = 0;
  for (int i = 0; i < kThreads; ++i) {
    const Tally& t = tallies[static_cast<std::size_t>(i)];
    SCOPED_TRACE("thread " + std::to_string(i));
    EXPECT_EQ(t.before_failed, 0);
    EXPECT_EQ(t.after_ok, 0);
    EXPECT_EQ(t.after_failed, kAfter);
    EXPECT_EQ(t.other_errors, 0);
    total_before += t.before_ok;
  }
  EXPECT_GE(total_before, kThreads * 20);
  EXPECT_FALSE(alive(x));
  EXPECT_FALSE(alive(re2));
}

TEST_P(StoreTest, ConcurrentWritersAndReadersKeepTheStoreConsistent) {
  Tenant a = tenant();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 15;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < kPerThread; ++j) {
        Membrane m{"t" + std::to_string(i) + "-" + std::to_string(j), new_token(), new_token()};
        if (!store_->create_membrane(a.tokens.create, m)) { ++failures; continue; }
        auto r = store_->resolve(m.export_token);
        if (!r || !r->membrane) { ++failures; continue; }
        Token x = new_token();
        if (!store_->export_uri(m.export_token, x, simple_config(), membraned::test::new_grant())) ++failures;
        if (!store_->resolve(x)) ++failures;
        if (j % 2 == 0) {
          if (!store_->revoke_membrane(m.revoke_token)) ++failures;
          if (store_->resolve(x)) ++failures;
        }
        // Everyone races for the same id: exactly one of them may hold it at a time.
        Membrane shared{"shared", new_token(), new_token()};
        auto s = store_->create_membrane(a.tokens.create, shared);
        if (!s && s.error().kind != ErrorKind::conflict) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  bool completed = false;
  auto ids = list_ids(a.id, std::nullopt, 1000, &completed);
  EXPECT_TRUE(completed);
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * (kPerThread / 2) + 1));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), "shared"), 1);
}

}  // namespace

namespace {

// Resolutions are cached; a revoke or deleteSelf made by another store (another process on the
// same database file, another instance on the same PostgreSQL) must be seen here by every resolve
// from the revoke's settle time on (what its 202 waits: contract §7).
TEST_P(StoreTest, CachedResolutionsDieWithARevokeMadeByAnotherStoreOnTheSameDatabase) {
  Tenant a = tenant();
  Membrane m = membrane(a, "cached");
  Token x = export_uri(m);
  Membrane other = membrane(a, "other");
  Token y = export_uri(other);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(alive(x));  // resolved, then served from the cache
  ASSERT_TRUE(alive(y));

  auto second = open_store();
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->revoke_membrane(m.revoke_token).ok());
  std::this_thread::sleep_for(second->revocation_settle());
  EXPECT_FALSE(alive(x));
  EXPECT_FALSE(alive(m.export_token));
  EXPECT_TRUE(alive(y));  // the cache was dropped, not the others' life

  ASSERT_TRUE(second->delete_tenant(a.tokens.delete_self).ok());
  std::this_thread::sleep_for(second->revocation_settle());
  EXPECT_FALSE(alive(y));
  EXPECT_FALSE(alive(a.tokens.create));
}

// A cached resolution is checked against a recent view of the epoch, not a fresh read; a revoke
// made through the same store is seen at once all the same (the view is read again after it).
TEST_P(StoreTest, ACachedResolutionDiesAtOnceWithARevokeMadeThroughTheSameStore) {
  Tenant a = tenant();
  Membrane m = membrane(a, "cached");
  Token x = export_uri(m);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(alive(x));
  ASSERT_TRUE(store_->revoke_membrane(m.revoke_token).ok());
  EXPECT_FALSE(alive(x));
}

// A token never resolved here whose ancestors were (what cold tokens share: here the uri export
// its re-export stands for, in another membrane) dies with a revoke made by another store: of
// that export's grant alone, or of its membrane. Its own row shows neither; only the ancestor
// does, read again because the revocation epoch changed.
TEST_P(StoreTest, AColdTokenWhoseAncestorsWereResolvedDiesWithARevokeMadeElsewhere) {
  Tenant a = tenant();
  Membrane root = membrane(a, "root");
  Membrane wide = membrane(a, "wide");
  const auto granted = membraned::test::new_grant();
  Token upstream = export_granted(root, granted);
  Token other_upstream = export_uri(root);
  Token warm = reexport(wide, upstream);
  Token cold = reexport(wide, upstream);
  Token warm_other = reexport(wide, other_upstream);
  Token cold_other = reexport(wide, other_upstream);
  ASSERT_TRUE(alive(warm));
  ASSERT_TRUE(alive(warm_other));

  auto second = open_store();
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->revoke_grant(granted.revoke).ok());
  EXPECT_FALSE(alive(cold));
  ASSERT_TRUE(alive(warm_other));  // its ancestors cached again, under the new epoch
  ASSERT_TRUE(second->revoke_membrane(root.revoke_token).ok());
  EXPECT_FALSE(alive(cold_other));
  EXPECT_TRUE(alive(wide.export_token));
}

// The cache says how it serves: a token's first resolution is a miss, the next ones hits, and
// after a revoke anywhere the entry is stale (resolved again, then a hit again).
TEST_P(StoreTest, TheResolutionCacheCountsHitsMissesAndStaleEntries) {
  Tenant a = tenant();
  Membrane m = membrane(a, "counted");
  Token x = export_uri(m);
  Membrane other = membrane(a, "other");
  const auto before = store_->resolution_cache_stats();
  ASSERT_TRUE(alive(x));
  ASSERT_TRUE(alive(x));
  ASSERT_TRUE(alive(x));
  auto after = store_->resolution_cache_stats();
  EXPECT_EQ(after.misses - before.misses, 1u);
  EXPECT_EQ(after.hits - before.hits, 2u);
  EXPECT_EQ(after.stale - before.stale, 0u);
  EXPECT_GE(after.entries, 1u);
  EXPECT_GT(after.bytes, 0u);
  EXPECT_EQ(after.max_bytes, membraned::storage::kDefaultResolutionCacheBytes);

  ASSERT_TRUE(store_->revoke_membrane(other.revoke_token).ok());  // a new epoch; x still lives
  ASSERT_TRUE(alive(x));
  ASSERT_TRUE(alive(x));
  const auto later = store_->resolution_cache_stats();
  EXPECT_EQ(later.stale - after.stale, 1u);
  EXPECT_EQ(later.hits - after.hits, 1u);
}

// With room for a few resolutions, the least recently used go and the memory stays within the
// budget; every token still resolves to the same thing (an evicted one is walked again), and a
// revoke still kills one that was evicted and one that is cached.
TEST_P(StoreTest, ABoundedResolutionCacheEvictsTheLeastRecentlyUsedAndStaysCorrect) {
  Tenant a = tenant();
  Membrane m = membrane(a, "many");
  std::vector<Token> tokens;
  // Each its own configuration: none shares one with another.
  for (int i = 0; i < 12; ++i) tokens.push_back(export_uri(m, simple_config("https://upstream.example/" + std::to_string(i))));
  auto probe = store_->resolve(tokens[0]);
  ASSERT_TRUE(probe.ok());
  const std::size_t one = membraned::storage::cached_bytes(tokens[0].digest(), *probe);
  const std::size_t budget = 4 * one + one / 2;  // room for four
  auto key = MasterKey::from_base64(key_text_);
  ASSERT_TRUE(key.ok());
  auto opened = db_->open(std::move(*key), 4, {}, &std::chrono::system_clock::now, budget);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto small = std::move(*opened);

  for (int round = 0; round < 3; ++round) {
    for (const Token& t : tokens) {
      auto r = small->resolve(t);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->kind, CapabilityKind::uri);
      EXPECT_EQ(r->uri->target.path, "/" + std::to_string(&t - tokens.data()));
      EXPECT_LE(small->resolution_cache_stats().bytes, budget);
    }
  }
  auto stats = small->resolution_cache_stats();
  EXPECT_EQ(stats.entries, 4u);
  EXPECT_EQ(stats.hits, 0u);  // twelve tokens in turn through room for four: each was evicted first
  EXPECT_EQ(stats.evictions, 3u * 12u - 4u);

  // The most recent four are hits now.
  for (std::size_t i = tokens.size() - 4; i < tokens.size(); ++i) ASSERT_TRUE(small->resolve(tokens[i]).ok());
  EXPECT_EQ(small->resolution_cache_stats().hits, 4u);

  ASSERT_TRUE(store_->revoke_membrane(m.revoke_token).ok());
  std::this_thread::sleep_for(store_->revocation_settle());  // `small` is another store
  EXPECT_FALSE(small->resolve(tokens[0]).ok());   // evicted
  EXPECT_FALSE(small->resolve(tokens.back()).ok());  // cached
}

// Grants that carry the same configuration (one owner's grants of one function) share one copy
// of it in memory, counted once: a thousand of them take far less than a thousand copies would.
// A grant with another configuration still gets its own.
TEST_P(StoreTest, ResolutionsOfTheSameConfigurationShareOneCopy) {
  Tenant a = tenant();
  Membrane m = membrane(a, "shared");
  std::vector<Token> tokens;
  for (int i = 0; i < 1000; ++i) tokens.push_back(export_uri(m));
  Token other = export_uri(m, simple_config("https://upstream.example/other"));
  auto first = store_->resolve(tokens[0]);
  ASSERT_TRUE(first.ok());
  const std::size_t alone = membraned::storage::cached_bytes(tokens[0].digest(), *first);
  for (const Token& t : tokens) {
    auto r = store_->resolve(t);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->uri.get(), first->uri.get());
  }
  auto r = store_->resolve(other);
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->uri.get(), first->uri.get());
  EXPECT_EQ(r->uri->target.path, "/other");
  const auto stats = store_->resolution_cache_stats();
  EXPECT_GE(stats.entries, 1001u);
  EXPECT_LT(stats.bytes, 1001 * alone * 3 / 4);
  // Served from the cache, the same copy still.
  auto again = store_->resolve(tokens[500]);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->uri.get(), first->uri.get());
}

std::string backend_suffix(const testing::TestParamInfo<Backend>& info) {
  return membraned::test::backend_name(info.param);
}

// A database taken back to an earlier state (a file or a dump restored under running instances,
// a standby promoted behind its primary) must not let an instance's cache pass for current.
// This store caches X while Y's revoke is in force; the database is then put back to before that
// revoke (Y alive again, the epoch of then); another store then revokes X's membrane. A counted
// epoch would be back at the very value X was cached under, and this store would keep answering X.
TEST_P(StoreTest, ARestoredDatabaseDoesNotReviveCachedResolutions) {
  auto other = open_store();
  ASSERT_NE(other, nullptr);
  Tenant t = tenant();
  Membrane mx = membrane(t, "x");
  Membrane my = membrane(t, "y");
  Token x = export_uri(mx);
  Token y = export_uri(my);
  const std::string epoch_query = "SELECT epoch FROM revocation_epoch WHERE id = 1";
  const std::string before = db_->run_sql(epoch_query);

  ASSERT_TRUE(other->revoke_membrane(my.revoke_token).ok());
  ASSERT_TRUE(alive(x));  // cached here under the epoch of Y's revoke
  const std::string after_y = db_->run_sql(epoch_query);
  ASSERT_NE(after_y, before);

  // Back to before Y's revoke, as the restore of a copy taken then would be. (1 = 0) is false
  // in both dialects.
  db_->run_sql("UPDATE membranes SET revoked = (1 = 0)");
  db_->run_sql("UPDATE revocation_epoch SET epoch = " + before + " WHERE id = 1");
  ASSERT_TRUE(other->resolve(y).ok());

  ASSERT_TRUE(other->revoke_membrane(mx.revoke_token).ok());
  EXPECT_NE(db_->run_sql(epoch_query), after_y);
  auto seen = store_->resolve(x);
  ASSERT_FALSE(seen.ok()) << "this store answered a capability revoked through another";
  EXPECT_EQ(seen.error().kind, ErrorKind::unauthorized);
}

// --- grants (contract §11-12) --------------------------------------------------------------------

core::GrantLimits limits_expiring_at(std::chrono::system_clock::time_point at) {
  core::GrantLimits limits;
  limits.expires_at = at;
  return limits;
}

// A grant's own revoke capability cuts the grant and every re-export below it, through any
// membrane, and nothing else; repeated, it succeeds again.
TEST_P(StoreTest, RevokingAGrantCutsItAndItsReExportsAndNothingElse) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  const auto gx = membraned::test::new_grant();
  Token x = export_granted(m, gx);
  Token y = reexport(n, x);          // through another membrane
  Token z = export_uri(m);           // a sibling on the same membrane
  Token w = reexport(m, z);
  ASSERT_TRUE(alive(x) && alive(y) && alive(z) && alive(w));

  auto revoker = store_->resolve(gx.revoke);
  ASSERT_TRUE(revoker.ok());
  EXPECT_EQ(revoker->kind, CapabilityKind::revoke_grant);
  ASSERT_TRUE(store_->revoke_grant(gx.revoke).ok());
  EXPECT_FALSE(alive(x));
  EXPECT_FALSE(alive(y));
  EXPECT_TRUE(alive(z));
  EXPECT_TRUE(alive(w));
  EXPECT_TRUE(alive(m.export_token));
  EXPECT_TRUE(alive(n.export_token));
  EXPECT_TRUE(store_->revoke_grant(gx.revoke).ok()) << "a repeated revoke succeeds again";
  EXPECT_FALSE(alive(x));
}

// What a revoke cut, as the audit log counts it: every grant below what it revoked, across
// membranes, less what had been revoked on its own before (and what is below that); the
// inventory shows each of them cut, not revoked.
TEST_P(StoreTest, ARevokeCountsTheGrantsItCutAndTheInventoryShowsThemCut) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  const auto gx = membraned::test::new_grant();
  Token x = export_granted(m, gx);
  Token y = reexport(n, x);  // through another membrane
  reexport(n, y);
  reexport(n, m.export_token);  // a re-export of the membrane's export capability
  const auto gz = membraned::test::new_grant();
  Token z = export_granted(m, gz);
  reexport(n, z);
  ASSERT_TRUE(store_->revoke_grant(gz.revoke).ok());  // z and below: cut before
  export_uri(n);                                       // elsewhere: not cut
  const auto gq = membraned::test::new_grant();
  Token q = export_granted(n, gq);
  reexport(n, reexport(n, q));

  ASSERT_TRUE(store_->revoke_grant(gq.revoke).ok());
  auto grant_revoker = store_->resolve(gq.revoke);
  ASSERT_TRUE(grant_revoker.ok());
  auto cut = store_->grants_cut_by(*grant_revoker);
  ASSERT_TRUE(cut.ok()) << cut.error().message;
  EXPECT_EQ(*cut, 3) << "the grant and its two re-exports";

  ASSERT_TRUE(store_->revoke_membrane(m.revoke_token).ok());
  auto membrane_revoker = store_->resolve(m.revoke_token);
  ASSERT_TRUE(membrane_revoker.ok());
  cut = store_->grants_cut_by(*membrane_revoker);
  ASSERT_TRUE(cut.ok()) << cut.error().message;
  EXPECT_EQ(*cut, 4) << "x, its re-export and the re-export of that, the re-export of m's export capability";

  auto x_entry = store_->find_grant(t.id, gx.id);
  ASSERT_TRUE(x_entry.ok() && x_entry->has_value());
  EXPECT_EQ((*x_entry)->state, membraned::storage::GrantState::cut);
  EXPECT_FALSE((*x_entry)->revoked_at_ms.has_value());
  auto z_entry = store_->find_grant(t.id, gz.id);
  ASSERT_TRUE(z_entry.ok() && z_entry->has_value());
  EXPECT_EQ((*z_entry)->state, membraned::storage::GrantState::revoked);
  auto under_n = store_->list_grants(t.id, "n", std::nullopt, 100);
  ASSERT_TRUE(under_n.ok());
  std::map<membraned::storage::GrantState, int> states;
  for (const auto& e : under_n->grants) ++states[e.state];
  EXPECT_EQ(states[membraned::storage::GrantState::active], 1) << "the one export of n's own";
  EXPECT_EQ(states[membraned::storage::GrantState::revoked], 1) << "q";
  EXPECT_EQ(states[membraned::storage::GrantState::cut], 6);
}

// Revoking a re-export's grant leaves the grant it stands for alone.
TEST_P(StoreTest, RevokingAReExportsGrantLeavesItsParent) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  Token x = export_uri(m);
  const auto gy = membraned::test::new_grant();
  Token y = reexport_granted(n, x, gy);
  Token y2 = reexport(m, y);
  ASSERT_TRUE(store_->revoke_grant(gy.revoke).ok());
  EXPECT_FALSE(alive(y));
  EXPECT_FALSE(alive(y2));
  EXPECT_TRUE(alive(x));
}

// Only a grant's revoke capability revokes it: a membrane's or an export capability presented
// as one is refused and cuts nothing.
TEST_P(StoreTest, OnlyAGrantsRevokeCapabilityRevokesIt) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Token x = export_uri(m);
  for (const Token* wrong : {&m.revoke_token, &m.export_token, &x, &t.tokens.create}) {
    auto s = store_->revoke_grant(*wrong);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().kind, ErrorKind::unauthorized);
  }
  EXPECT_TRUE(alive(x));
}

// A grant's revoke capability outlives its grant's membrane (it depends only on its tenant): a
// revoke after the membrane's still answers success; with the tenant it dies.
TEST_P(StoreTest, AGrantsRevokeCapabilityOutlivesItsMembraneNotItsTenant) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  const auto gx = membraned::test::new_grant();
  Token x = export_granted(m, gx);
  ASSERT_TRUE(revoke(m).ok());
  EXPECT_FALSE(alive(x));
  EXPECT_TRUE(store_->revoke_grant(gx.revoke).ok());
  ASSERT_TRUE(store_->delete_tenant(t.tokens.delete_self).ok());
  EXPECT_FALSE(store_->revoke_grant(gx.revoke).ok());
}

// A grant revoked on one store is dead on another sharing the database once the revoke has
// settled, its cached resolution included.
TEST_P(StoreTest, AGrantRevokedByAnotherStoreIsDeadAfterTheSettleTime) {
  auto other = open_store();
  ASSERT_NE(other, nullptr);
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  const auto gx = membraned::test::new_grant();
  Token x = export_granted(m, gx);
  auto cached = store_->resolve(x);
  ASSERT_TRUE(cached.ok());
  ASSERT_TRUE(other->revoke_grant(gx.revoke).ok());
  std::this_thread::sleep_for(other->revocation_settle());
  EXPECT_FALSE(store_->still_current(*cached));
  EXPECT_FALSE(store_->resolve(x).ok());
}

// Expiry ends a grant at its time, from the cache too, and with it every re-export below it and
// everything made through it; its siblings live on.
TEST_P(StoreTest, AnExpiredGrantNoLongerResolvesNorDoesAnythingBelowIt) {
  using namespace std::chrono_literals;
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  Token x = export_granted(m, membraned::test::new_grant(limits_expiring_at(store_now() + 1h)));
  Token y = reexport(n, x);
  Token z = export_uri(m);
  auto before = store_->resolve(y);  // cached from now on
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(before->expires_at.has_value());
  EXPECT_LE(*before->expires_at - store_now(), 1h);
  advance(59min);
  EXPECT_TRUE(alive(x));
  EXPECT_TRUE(alive(y));
  advance(2min);
  EXPECT_FALSE(alive(x));
  EXPECT_FALSE(alive(y));
  EXPECT_TRUE(alive(z));
  auto fresh = open_store();  // an uncached resolution says the same
  ASSERT_NE(fresh, nullptr);
  EXPECT_FALSE(fresh->resolve(y).ok());
}

// The send-time check: a resolution made before its grant expired is no longer current after.
TEST_P(StoreTest, AResolutionIsNotCurrentOnceItsGrantHasExpired) {
  using namespace std::chrono_literals;
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Token x = export_granted(m, membraned::test::new_grant(limits_expiring_at(store_now() + 1min)));
  auto resolved = store_->resolve(x);
  ASSERT_TRUE(resolved.ok());
  for (int i = 0; i < 500 && !store_->still_current(*resolved); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(store_->still_current(*resolved));
  advance(2min);
  EXPECT_FALSE(store_->still_current(*resolved));
}

// A re-export of an export capability with an expiry: what was exported through it dies with it.
TEST_P(StoreTest, WhatWasMadeThroughAnExpiredCapabilityDiesWithIt) {
  using namespace std::chrono_literals;
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  Token delegated = reexport_granted(n, m.export_token, membraned::test::new_grant(limits_expiring_at(store_now() + 10min)));
  Token made = export_uri(delegated);
  EXPECT_TRUE(alive(made));
  advance(11min);
  EXPECT_FALSE(alive(made));
  EXPECT_FALSE(alive(delegated));
}

// A resolution lists the grants of its chain, presented first, with what limits their use.
TEST_P(StoreTest, AResolutionListsTheGrantsOfItsChainWithTheirLimits) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  core::GrantLimits upper;
  upper.max_uses = 100;
  upper.rate_limit = core::RateLimit{10, 60};
  upper.label = "partner";
  core::GrantLimits lower;
  lower.allow_from = {*core::Cidr::parse("10.0.0.0/8"), *core::Cidr::parse("2001:db8::/32")};
  const auto gx = membraned::test::new_grant(upper);
  const auto gy = membraned::test::new_grant(lower);
  Token x = export_granted(m, gx);
  Token y = reexport_granted(n, x, gy);
  auto resolved = store_->resolve(y);
  ASSERT_TRUE(resolved.ok());
  ASSERT_EQ(resolved->chain.size(), 2u);
  EXPECT_EQ(resolved->chain[0].id, gy.id);
  EXPECT_FALSE(resolved->chain[0].max_uses.has_value());
  ASSERT_EQ(resolved->chain[0].allow_from.size(), 2u);
  EXPECT_EQ(resolved->chain[0].allow_from[1].to_string(), "2001:db8::/32");
  EXPECT_EQ(resolved->chain[1].id, gx.id);
  EXPECT_EQ(resolved->chain[1].max_uses, 100u);
  EXPECT_EQ(resolved->chain[1].rate_limit, (core::RateLimit{10, 60}));
  EXPECT_TRUE(resolved->chain[1].allow_from.empty());
  EXPECT_FALSE(resolved->expires_at.has_value());
  // A membrane's own capability is no grant.
  auto own = store_->resolve(m.export_token);
  ASSERT_TRUE(own.ok());
  EXPECT_TRUE(own->chain.empty());
}

// A database from before grants had rows: the migration gives every existing export and
// re-export a handle of its own (and no limits), and they keep working.
TEST_P(StoreTest, TheGrantsMigrationGivesExistingGrantsAHandle) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  Token x = export_uri(m);
  Token y = reexport(n, x);
  store_.reset();
  undo_grants_migration();
  store_ = open_store();
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(db_->count_rows("grants"), 2);
  auto resolved = store_->resolve(y);
  ASSERT_TRUE(resolved.ok()) << resolved.error().message;
  ASSERT_EQ(resolved->chain.size(), 2u);
  for (const auto& grant : resolved->chain) {
    EXPECT_EQ(grant.id.size(), 26u) << grant.id;
    EXPECT_EQ(grant.id.rfind("g_", 0), 0u) << grant.id;
    EXPECT_FALSE(grant.max_uses || grant.rate_limit);
  }
  EXPECT_NE(resolved->chain[0].id, resolved->chain[1].id);
}

core::GrantLimits limits_with_uses(std::uint64_t max_uses) {
  core::GrantLimits limits;
  limits.max_uses = max_uses;
  return limits;
}

// Takes uses of `token`'s chain until the store says used up: how many it got.
int take_all(Store& store, const Token& token) {
  auto resolved = store.resolve(token);
  if (!resolved) return 0;
  int taken = 0;
  for (;;) {
    auto took = store.take_uses(resolved->chain);
    EXPECT_TRUE(took.ok()) << took.error().message;
    if (!took || !*took) return taken;
    ++taken;
  }
}

// maxUses is exact under concurrency: eight threads taking uses get exactly maxUses in all.
TEST_P(StoreTest, ConcurrentTakersGetExactlyMaxUses) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Token x = export_granted(m, membraned::test::new_grant(limits_with_uses(500)));
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) threads.emplace_back([&] { taken += take_all(*store_, x); });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(taken.load(), 500);
}

// Two stores on one database (two instances): together exactly maxUses, however they interleave.
TEST_P(StoreTest, TwoStoresOnOneDatabaseTogetherGetExactlyMaxUses) {
  auto other = open_store();
  ASSERT_NE(other, nullptr);
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Token x = export_granted(m, membraned::test::new_grant(limits_with_uses(300)));
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] { taken += take_all(*store_, x); });
    threads.emplace_back([&] { taken += take_all(*other, x); });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(taken.load(), 300);
}

// A store that goes away with uses in hand (a crash) loses them; the next never gets more than
// maxUses in all, and loses at most what the first held.
TEST_P(StoreTest, AStoreThatDiesWithUsesInHandLosesThemAndNeverAddsAny) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Token x = export_granted(m, membraned::test::new_grant(limits_with_uses(1000)));
  auto first = open_store();
  ASSERT_NE(first, nullptr);
  auto resolved = first->resolve(x);
  ASSERT_TRUE(resolved.ok());
  int before = 0;
  for (; before < 3; ++before) ASSERT_TRUE(*first->take_uses(resolved->chain));
  const std::int64_t reserved = std::stoll(db_->run_sql("SELECT sum(reserved_uses) FROM grants"));
  first.reset();  // its unused reservation is gone with it
  const int after = take_all(*store_, x);
  EXPECT_LE(before + after, 1000);
  EXPECT_GE(before + after, 1000 - reserved);
  EXPECT_EQ(std::stoll(db_->run_sql("SELECT sum(reserved_uses) FROM grants")), 1000);
}

// A use of a re-export is a use of the grant it stands for: the parent's uses run out through
// its child, and then the parent itself is used up too.
TEST_P(StoreTest, AUseOfAReExportIsAUseOfEveryGrantAboveIt) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  Token x = export_granted(m, membraned::test::new_grant(limits_with_uses(20)));
  Token y = reexport_granted(n, x, membraned::test::new_grant(limits_with_uses(1000)));
  EXPECT_EQ(take_all(*store_, y), 20);
  EXPECT_EQ(take_all(*store_, x), 0);
  EXPECT_TRUE(alive(x)) << "used up is not revoked: the grant still resolves";
}

// Grants without maxUses never touch the use ledger: no reservation is written.
TEST_P(StoreTest, UnlimitedGrantsTakeUsesWithoutWriting) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Token x = export_uri(m);
  auto resolved = store_->resolve(x);
  ASSERT_TRUE(resolved.ok());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(store_->take_uses_in_hand(resolved->chain), true);
  EXPECT_EQ(db_->run_sql("SELECT sum(reserved_uses) FROM grants"), "0");
}

// Two grants cannot share a handle: the second export fails and stores nothing.
TEST_P(StoreTest, AGrantHandleIsUnique) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  auto grant = membraned::test::new_grant();
  export_granted(m, grant);
  grant.revoke = new_token();
  Token second = new_token();
  auto s = store_->export_uri(m.export_token, second, simple_config(), grant);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(alive(second));
}

// --- the inventory (contract §12) ---------------------------------------------------------------

// Every grant exported through a membrane, paged by id, revoked ones included, with where it
// leads (never its query) and what it stands for; nothing of another tenant.
TEST_P(StoreTest, TheInventoryListsAMembranesGrantsInPagesRevokedOnesIncluded) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  std::vector<std::string> ids;
  std::optional<membraned::storage::NewGrant> revoked;
  for (int i = 0; i < 23; ++i) {
    auto grant = membraned::test::new_grant();
    grant.id = "g_" + std::string(i < 10 ? "0" : "") + std::to_string(i);
    Token tok = new_token();
    ASSERT_TRUE(store_->export_uri(m.export_token, tok,
                                   uri_config(R"({"uri":"https://api.example:8443/fn/)" + std::to_string(i) +
                                              R"(?secret=query","method":"POST"})"),
                                   grant)
                    .ok());
    ids.push_back(grant.id);
    if (i == 4) revoked = grant;
  }
  Token other_uri = export_uri(n);  // another membrane's grant: not listed under m
  ASSERT_TRUE(store_->revoke_grant(revoked->revoke).ok());

  std::vector<std::string> seen;
  std::optional<std::string> after;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = store_->list_grants(t.id, "m", after, 7);
    ASSERT_TRUE(page.ok()) << page.error().message;
    for (const auto& e : page->grants) seen.push_back(e.id);
    if (page->completed) break;
    ASSERT_EQ(page->grants.size(), 7u);
    after = page->grants.back().id;
  }
  EXPECT_EQ(seen, ids);

  auto one = store_->find_grant(t.id, revoked->id);
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(one->has_value());
  const auto& e = **one;
  EXPECT_EQ(e.membrane, "m");
  EXPECT_FALSE(e.reexport);
  EXPECT_EQ(e.operation, "invoke");
  ASSERT_TRUE(e.target.has_value());
  EXPECT_EQ(e.target->target, "https://api.example:8443/fn/4");
  EXPECT_EQ(e.target->method, "POST");
  EXPECT_TRUE(e.revoked_at_ms.has_value());
  EXPECT_GT(e.created_at, 0);

  Tenant other = tenant();
  auto theirs = store_->list_grants(other.id, "m", std::nullopt, 100);
  ASSERT_TRUE(theirs.ok());
  EXPECT_TRUE(theirs->grants.empty());
  EXPECT_TRUE(theirs->completed);
  auto not_theirs = store_->find_grant(other.id, revoked->id);
  ASSERT_TRUE(not_theirs.ok());
  EXPECT_FALSE(not_theirs->has_value());
  // The query string is nowhere at rest either (the target is sealed like the configuration).
  EXPECT_EQ(db_->stored_bytes().find("api.example:8443/fn/4"), std::string::npos);
}

// A re-export is listed under the membrane it went through, standing for its parent grant, with
// its parent's target and limits of its own.
TEST_P(StoreTest, AReExportIsListedUnderItsMembraneStandingForItsParent) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  Token held = export_granted(m, membraned::test::new_grant());
  core::GrantLimits limits;
  limits.label = "partner";
  limits.max_uses = 5;
  const auto child = membraned::test::new_grant(limits);
  reexport_granted(n, held, child);
  auto under_n = store_->list_grants(t.id, "n", std::nullopt, 10);
  ASSERT_TRUE(under_n.ok());
  ASSERT_EQ(under_n->grants.size(), 1u);
  const auto& e = under_n->grants[0];
  EXPECT_EQ(e.id, child.id);
  EXPECT_TRUE(e.reexport);
  EXPECT_EQ(e.membrane, "n");
  EXPECT_EQ(e.label, "partner");
  EXPECT_EQ(e.max_uses, 5);
  ASSERT_TRUE(e.stands_for.has_value());
  auto parent_entry = store_->find_grant(t.id, *e.stands_for);
  ASSERT_TRUE(parent_entry.ok() && parent_entry->has_value());
  EXPECT_EQ((*parent_entry)->membrane, "m");
  ASSERT_TRUE(e.target.has_value());
  EXPECT_EQ(e.target->target, "https://upstream.example/x");
  EXPECT_EQ(e.operation, "invoke");
  // A re-export of a membrane's own export capability stands for no grant and leads nowhere.
  reexport(n, m.export_token);
  auto again = store_->list_grants(t.id, "n", std::nullopt, 10);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->grants.size(), 2u);
  for (const auto& g : again->grants) {
    if (g.id == child.id) continue;
    EXPECT_EQ(g.operation, "export");
    EXPECT_FALSE(g.target.has_value());
    EXPECT_FALSE(g.stands_for.has_value());
  }
}

// Uses counted in memory reach the inventory when flushed: every grant of the chain, with the
// time of its last use on the store's clock.
TEST_P(StoreTest, CountedUsesReachTheInventoryWhenFlushed) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  const auto parent = membraned::test::new_grant();
  const auto child = membraned::test::new_grant();
  Token x = export_granted(m, parent);
  Token y = reexport_granted(n, x, child);
  auto via_child = store_->resolve(y);
  auto direct = store_->resolve(x);
  ASSERT_TRUE(via_child.ok() && direct.ok());
  for (int i = 0; i < 3; ++i) store_->count_use(via_child->chain);
  store_->count_use(direct->chain);
  auto before = store_->find_grant(t.id, parent.id);
  ASSERT_TRUE(before.ok() && before->has_value());
  EXPECT_EQ((*before)->uses, 0) << "nothing is written on the use itself";
  ASSERT_TRUE(store_->flush_usage().ok());
  auto p = store_->find_grant(t.id, parent.id);
  auto c = store_->find_grant(t.id, child.id);
  ASSERT_TRUE(p.ok() && p->has_value() && c.ok() && c->has_value());
  EXPECT_EQ((*p)->uses, 4);
  EXPECT_EQ((*c)->uses, 3);
  ASSERT_TRUE((*p)->last_used_at_ms.has_value());
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(store_now().time_since_epoch()).count();
  EXPECT_LE(std::llabs(*(*p)->last_used_at_ms - now_ms), 5000);
  // A store that closes writes what it counted.
  auto other = open_store();
  ASSERT_NE(other, nullptr);
  other->count_use(direct->chain);
  other.reset();
  auto after = store_->find_grant(t.id, parent.id);
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((*after)->uses, 5);
}

// The store tests that concern one backend's own schema: instantiated for that backend only.
class SqliteStoreTest : public StoreTest {};

// SQLite schema 5 moved the use counts into a table of their own: counts made before it are
// still in the inventory after it, and counting goes on from them.
TEST_P(SqliteStoreTest, UseCountsSurviveTheMoveToTheirOwnTable) {
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  const auto used = membraned::test::new_grant();
  const auto unused = membraned::test::new_grant();
  Token x = export_granted(m, used);
  export_granted(m, unused);
  auto resolved = store_->resolve(x);
  ASSERT_TRUE(resolved.ok());
  for (int i = 0; i < 7; ++i) store_->count_use(resolved->chain);
  ASSERT_TRUE(store_->flush_usage().ok());
  const auto last = (*store_->find_grant(t.id, used.id))->last_used_at_ms;
  ASSERT_TRUE(last.has_value());
  store_.reset();
  // Back to schema 4, the counts where it kept them.
  db_->run_sql("UPDATE grants SET uses = (SELECT uses FROM grant_uses u WHERE u.row = grants.row), "
               "last_used_at = (SELECT last_used_at FROM grant_uses u WHERE u.row = grants.row) "
               "WHERE row IN (SELECT row FROM grant_uses)");
  db_->run_sql("DROP TABLE grant_uses");
  db_->run_sql("UPDATE schema_version SET version = version - 1");
  store_ = open_store();
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(db_->count_rows("grant_uses"), 1) << "a grant never used has no row";
  auto after = store_->find_grant(t.id, used.id);
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((*after)->uses, 7);
  EXPECT_EQ((*after)->last_used_at_ms, last);
  auto never = store_->find_grant(t.id, unused.id);
  ASSERT_TRUE(never.ok() && never->has_value());
  EXPECT_EQ((*never)->uses, 0);
  EXPECT_FALSE((*never)->last_used_at_ms.has_value());
  store_->count_use(resolved->chain);
  ASSERT_TRUE(store_->flush_usage().ok());
  EXPECT_EQ((*store_->find_grant(t.id, used.id))->uses, 8);
}

// A refusal says why (for the audit log), while its message stays the same for every reason.
TEST_P(StoreTest, ARefusedResolutionSaysWhyWithTheSameMessage) {
  using namespace std::chrono_literals;
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  const auto revoked = membraned::test::new_grant();
  Token x = export_granted(m, revoked);
  Token expiring = export_granted(m, membraned::test::new_grant(limits_expiring_at(store_now() + 1min)));
  Token in_n = export_uri(n);
  ASSERT_TRUE(store_->revoke_grant(revoked.revoke).ok());
  ASSERT_TRUE(revoke(n).ok());
  auto cached = store_->resolve(expiring);  // then it expires in the cache
  ASSERT_TRUE(cached.ok());
  advance(2min);
  const std::vector<std::pair<Token, std::string>> cases = {
      {new_token(), "unknown"}, {x, "revoked"}, {in_n, "revoked"}, {expiring, "expired"}};
  for (const auto& [token, why] : cases) {
    auto r = store_->resolve(token);
    ASSERT_FALSE(r.ok()) << why;
    EXPECT_EQ(r.error().kind, ErrorKind::unauthorized);
    EXPECT_EQ(r.error().reason, why);
    EXPECT_EQ(r.error().message, "unknown or revoked capability");
  }
  auto fresh = open_store();  // uncached, the same
  ASSERT_NE(fresh, nullptr);
  auto r = fresh->resolve(expiring);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, "expired");
}

// --- the operator's (membraned admin) ----------------------------------------------------------

// Every tenant, deleted ones included, in pages by id; one by id; an unknown one is none.
TEST_P(StoreTest, TheOperatorListsTenantsInPagesDeletedOnesIncluded) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(tenant().id);
  std::sort(ids.begin(), ids.end());
  Tenant gone = tenant();
  ASSERT_TRUE(store_->delete_tenant(gone.tokens.delete_self).ok());
  ids.push_back(gone.id);
  std::sort(ids.begin(), ids.end());

  std::vector<membraned::storage::TenantEntry> seen;
  std::optional<std::string> after;
  int pages = 0;
  while (true) {
    auto page = store_->list_tenants(after, 4);
    ASSERT_TRUE(page.ok()) << page.error().message;
    ++pages;
    seen.insert(seen.end(), page->tenants.begin(), page->tenants.end());
    if (page->completed) break;
    ASSERT_EQ(page->tenants.size(), 4U);
    after = page->tenants.back().id;
  }
  EXPECT_EQ(pages, 2);
  std::vector<std::string> seen_ids;
  for (const auto& t : seen) {
    seen_ids.push_back(t.id);
    EXPECT_EQ(t.deleted, t.id == gone.id) << t.id;
    EXPECT_NEAR(static_cast<double>(t.created_at),
                static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                        store_now().time_since_epoch()).count()), 60.0);
  }
  EXPECT_EQ(seen_ids, ids);

  auto found = store_->find_tenant(gone.id);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_TRUE((*found)->deleted);
  auto unknown = store_->find_tenant("0123456789abcdef0123456789abcdef");
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->has_value());
}

// A grant revoked by its id, with no capability, dies as its revoke capability would kill it:
// itself and its re-exports through any membrane, nothing else; repeated, it succeeds again.
TEST_P(StoreTest, TheOperatorRevokesAGrantByItsIdAsItsRevokeCapabilityWould) {
  Tenant t = tenant();
  Tenant other = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  Membrane o = membrane(other, "m");
  const auto gx = membraned::test::new_grant();
  Token x = export_granted(m, gx);
  Token y = reexport(n, x);
  Token z = export_uri(m);
  Token w = reexport(m, z);
  const auto go = membraned::test::new_grant();
  Token xo = export_granted(o, go);

  // Another tenant's grant is not found through this tenant, and nothing is revoked.
  auto foreign = store_->revoke_grant_by_id(t.id, go.id);
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().kind, ErrorKind::not_found);
  auto unknown = store_->revoke_grant_by_id(t.id, "g_000000000000000000000000");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, ErrorKind::not_found);
  EXPECT_TRUE(alive(xo));

  auto revoked = store_->revoke_grant_by_id(t.id, gx.id);
  ASSERT_TRUE(revoked.ok()) << revoked.error().message;
  EXPECT_FALSE(revoked->already);
  EXPECT_FALSE(alive(x));
  EXPECT_FALSE(alive(y));
  EXPECT_TRUE(alive(z));
  EXPECT_TRUE(alive(w));
  EXPECT_TRUE(alive(m.export_token));
  EXPECT_TRUE(alive(xo));
  auto cut = store_->grants_cut_by(*revoked);
  ASSERT_TRUE(cut.ok()) << cut.error().message;
  EXPECT_EQ(*cut, 2) << "the grant and its re-export";
  auto entry = store_->find_grant(t.id, gx.id);
  ASSERT_TRUE(entry.ok() && entry->has_value());
  EXPECT_EQ((*entry)->state, membraned::storage::GrantState::revoked);
  EXPECT_TRUE((*entry)->revoked_at_ms.has_value());

  auto again = store_->revoke_grant_by_id(t.id, gx.id);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->already);
  // The grant's own revoke capability still answers success after the operator's revoke.
  EXPECT_TRUE(store_->revoke_grant(gx.revoke).ok());
}

// A live membrane revoked by its id dies as its revoke capability would kill it, and frees its id;
// then no live membrane has that id (not found), and another tenant's of the same id lives on.
TEST_P(StoreTest, TheOperatorRevokesALiveMembraneByItsId) {
  Tenant t = tenant();
  Tenant other = tenant();
  Membrane m = membrane(t, "shared id");
  Membrane n = membrane(t, "n");
  Membrane o = membrane(other, "shared id");
  Token x = export_uri(m);
  Token y = reexport(n, x);
  Token z = export_uri(n);
  Token xo = export_uri(o);

  auto revoked = store_->revoke_membrane_by_id(t.id, "shared id");
  ASSERT_TRUE(revoked.ok()) << revoked.error().message;
  EXPECT_FALSE(alive(m.export_token));
  EXPECT_FALSE(alive(x));
  EXPECT_FALSE(alive(y));
  EXPECT_TRUE(alive(z));
  EXPECT_TRUE(alive(n.export_token));
  EXPECT_TRUE(alive(xo));
  EXPECT_TRUE(alive(o.export_token));
  auto cut = store_->grants_cut_by(*revoked);
  ASSERT_TRUE(cut.ok()) << cut.error().message;
  EXPECT_EQ(*cut, 2) << "x and its re-export through n";

  auto again = store_->revoke_membrane_by_id(t.id, "shared id");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::not_found);
  auto unknown = store_->revoke_membrane_by_id(t.id, "never made");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, ErrorKind::not_found);
  Membrane reused = membrane(t, "shared id");
  EXPECT_TRUE(alive(reused.export_token)) << "the revoked membrane's id is free again";
}

// A tenant deleted by its id dies as its deleteSelf would kill it; other tenants live on.
TEST_P(StoreTest, TheOperatorDeletesATenantAsDeleteSelfWould) {
  Tenant t = tenant();
  Tenant other = tenant();
  Membrane m = membrane(t, "m");
  Membrane o = membrane(other, "o");
  Token x = export_uri(m);
  Token of_x = reexport(o, x);
  Token xo = export_uri(o);

  auto unknown = store_->delete_tenant_by_id("0123456789abcdef0123456789abcdef");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, ErrorKind::not_found);

  auto deleted = store_->delete_tenant_by_id(t.id);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_FALSE(deleted->already);
  for (const Token* tok : {&t.tokens.create, &t.tokens.query, &t.tokens.delete_self, &m.export_token, &m.revoke_token,
                           &x, &of_x}) {
    EXPECT_FALSE(alive(*tok));
  }
  EXPECT_TRUE(alive(other.tokens.create));
  EXPECT_TRUE(alive(xo));
  auto found = store_->find_tenant(t.id);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_TRUE((*found)->deleted);
  auto cut = store_->grants_cut_by(*deleted);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(*cut, 0) << "a deletion is not counted";

  auto again = store_->delete_tenant_by_id(t.id);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->already);
}

// The operator's revokes, made by another store on the same database (another process: membraned
// admin beside a running serve), are seen there once the settle time has passed: no cached
// resolution or epoch view keeps the revoked capability current.
TEST_P(StoreTest, TheOperatorsRevokesOnAnotherStoreAreSeenAfterTheSettleTime) {
  auto operator_store = open_store();
  ASSERT_NE(operator_store, nullptr);
  Tenant t = tenant();
  Membrane m = membrane(t, "m");
  Membrane n = membrane(t, "n");
  const auto gx = membraned::test::new_grant();
  Token x = export_granted(m, gx);
  Token y = export_uri(n);
  Token z = export_uri(membrane(t, "z"));
  std::vector<Resolved> cached;
  for (const Token* tok : {&x, &y, &z}) {
    auto r = store_->resolve(*tok);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(store_->still_current(*r));
    cached.push_back(*r);
  }

  ASSERT_TRUE(operator_store->revoke_grant_by_id(t.id, gx.id).ok());
  std::this_thread::sleep_for(operator_store->revocation_settle());
  EXPECT_FALSE(store_->still_current(cached[0]));
  EXPECT_FALSE(store_->resolve(x).ok());

  ASSERT_TRUE(operator_store->revoke_membrane_by_id(t.id, "n").ok());
  std::this_thread::sleep_for(operator_store->revocation_settle());
  EXPECT_FALSE(store_->still_current(cached[1]));
  EXPECT_FALSE(store_->resolve(y).ok());

  ASSERT_TRUE(operator_store->delete_tenant_by_id(t.id).ok());
  std::this_thread::sleep_for(operator_store->revocation_settle());
  EXPECT_FALSE(store_->still_current(cached[2]));
  EXPECT_FALSE(store_->resolve(z).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, testing::ValuesIn(membraned::test::kBackends), backend_suffix);
INSTANTIATE_TEST_SUITE_P(Backends, CascadeTest, testing::ValuesIn(membraned::test::kBackends), backend_suffix);
INSTANTIATE_TEST_SUITE_P(Backends, SqliteStoreTest, testing::Values(Backend::sqlite), backend_suffix);

}  // namespace
