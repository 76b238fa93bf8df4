// ~/.capability/credentials (cli/credentials): reading the original CLI's multi-document YAML,
// `capi config import` writing a profile (0700 directory, 0600 file, other profiles and keys
// kept), and the tenant JSON it imports. Each test runs in a fresh temporary HOME.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

#include <yaml-cpp/yaml.h>

#include "cli/credentials.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCreate =
    "cpblty://127.0.0.1:8080/#CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";
constexpr const char* kQuery =
    "cpblty://127.0.0.1:8080/#CPBLTY1-AAf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhiaQ";
constexpr const char* kDeleteSelf =
    "cpblty://127.0.0.1:8080/#CPBLTY1-BBf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhiaQ";
// kCreate's token under another authority: the same capability.
constexpr const char* kCreateElsewhere =
    "cpblty://membrane.example.com/#CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";
constexpr const char* kOtherCreate =
    "cpblty://membrane.example.com:8443/#CPBLTY1-CCf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhiaQ";

// A temporary HOME for the duration of one test (the old value restored after).
class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* h = std::getenv("HOME")) old_home_ = h;
    ::setenv("HOME", home_.path().c_str(), 1);
  }
  void TearDown() override {
    if (old_home_) {
      ::setenv("HOME", old_home_->c_str(), 1);
    } else {
      ::unsetenv("HOME");
    }
  }
  fs::path credentials() const { return home_.path() / ".capability" / "credentials"; }
  static TenantCapabilities tenant(const char* create = kCreate) {
    return {"tenant-1", create, kQuery, kDeleteSelf};
  }
  static unsigned mode_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 0777;
  }
  void write(const std::string& text) {
    fs::create_directories(credentials().parent_path());
    std::ofstream(credentials()) << text;
  }

  test::TempDir home_{"capi-home-"};
  std::optional<std::string> old_home_;
};

TEST_F(CredentialsTest, PathIsUnderHome) {
  auto p = default_credentials_path();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, credentials());
}

TEST_F(CredentialsTest, MissingFileIsNoProfileNotAnError) {
  auto r = read_profile(credentials(), "default", "create");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->file_exists);
  EXPECT_FALSE(r->profile_exists);
  EXPECT_FALSE(r->capability);
}

TEST_F(CredentialsTest, ReadsTheOriginalCliFormat) {
  // What the original CLI's saveCredentials writes: js-yaml documents joined by "---".
  write(std::string("profile: default\nmembrane:\n  capabilities:\n    create: '") + kCreate +
        "'\n    deleteSelf: '" + kDeleteSelf + "'\n    query: '" + kQuery + "'\n---\nprofile: work\nmembrane:\n" +
        "  capabilities:\n    create: " + kOtherCreate + "\n");
  auto d = read_profile(credentials(), "default", "create");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_TRUE(d->profile_exists);
  EXPECT_EQ(d->capability, kCreate);
  EXPECT_FALSE(d->plain_http);
  EXPECT_EQ(d->authority, "127.0.0.1:8080");
  auto q = read_profile(credentials(), "default", "deleteSelf");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->capability, kDeleteSelf);
  auto w = read_profile(credentials(), "work", "create");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->capability, kOtherCreate);
  EXPECT_EQ(w->authority, "membrane.example.com:8443");
  auto none = read_profile(credentials(), "work", "query");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->profile_exists);
  EXPECT_FALSE(none->capability);
  auto missing = read_profile(credentials(), "nobody", "create");
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->file_exists);
  EXPECT_FALSE(missing->profile_exists);
}

TEST_F(CredentialsTest, InvalidYamlIsAnErrorThatQuotesNoToken) {
  write(std::string("profile: default\nmembrane: [") + kCreate + "\n  : : {\n");
  auto r = read_profile(credentials(), "default", "create");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not valid YAML"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("CPBLTY1-"), std::string::npos) << r.error().message;
}

TEST_F(CredentialsTest, ImportCreatesPrivateDirectoryAndFile) {
  ASSERT_FALSE(fs::exists(credentials().parent_path()));
  ASSERT_TRUE(import_profile(credentials(), "default", tenant(), false).ok());
  EXPECT_EQ(mode_of(credentials().parent_path()), 0700u);
  EXPECT_EQ(mode_of(credentials()), 0600u);
  for (auto [name, want] : {std::pair{"create", kCreate}, {"query", kQuery}, {"deleteSelf", kDeleteSelf}}) {
    auto r = read_profile(credentials(), "default", name);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->capability, want) << name;
    EXPECT_FALSE(r->plain_http);
  }
  // The file is the original's format: a document with profile and membrane.capabilities.
  auto docs = YAML::LoadFile(credentials().string());
  EXPECT_EQ(docs["profile"].as<std::string>(), "default");
  EXPECT_EQ(docs["membrane"]["capabilities"]["create"].as<std::string>(), kCreate);
}

TEST_F(CredentialsTest, ImportKeepsOtherProfilesAndReplacesItsOwn) {
  ASSERT_TRUE(import_profile(credentials(), "default", tenant(), false).ok());
  ASSERT_TRUE(import_profile(credentials(), "work", tenant(kOtherCreate), false).ok());
  auto d = read_profile(credentials(), "default", "create");
  auto w = read_profile(credentials(), "work", "create");
  ASSERT_TRUE(d.ok() && w.ok());
  EXPECT_EQ(d->capability, kCreate);
  EXPECT_EQ(w->capability, kOtherCreate);
  // The same tenant again (its URIs written with another authority): replaced, no --force needed.
  auto same = import_profile(credentials(), "default", tenant(kCreateElsewhere), false);
  ASSERT_TRUE(same.ok()) << same.error().message;
  EXPECT_FALSE(same->replaced_other_tenant);
  // Re-import of "default" with another tenant, forced: replaced, "work" untouched, one document each.
  auto forced = import_profile(credentials(), "default", tenant(kOtherCreate), false, /*force=*/true);
  ASSERT_TRUE(forced.ok()) << forced.error().message;
  EXPECT_TRUE(forced->replaced_other_tenant);
  d = read_profile(credentials(), "default", "create");
  w = read_profile(credentials(), "work", "create");
  ASSERT_TRUE(d.ok() && w.ok());
  EXPECT_EQ(d->capability, kOtherCreate);
  EXPECT_EQ(w->capability, kOtherCreate);
  auto all = YAML::LoadAllFromFile(credentials().string());
  EXPECT_EQ(all.size(), 2u);
}

// A tenant's capabilities may exist nowhere else (operations.md: delete first-tenant.json): an
// import over a profile that holds another tenant's refuses, names the profile, the file and the
// tenant, and writes nothing.
TEST_F(CredentialsTest, ImportRefusesToReplaceAnotherTenantsProfileUnlessForced) {
  ASSERT_TRUE(import_profile(credentials(), "default", {"tenant-a", kCreate, kQuery, kDeleteSelf}, false).ok());
  const std::string before = test::read_file(credentials());
  auto refused = import_profile(credentials(), "default", {"tenant-b", kOtherCreate, kQuery, kDeleteSelf}, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, core::ErrorKind::conflict);
  const std::string& message = refused.error().message;
  EXPECT_NE(message.find("profile \"default\""), std::string::npos) << message;
  EXPECT_NE(message.find(credentials().string()), std::string::npos) << message;
  EXPECT_NE(message.find("tenant tenant-a"), std::string::npos) << message;
  EXPECT_NE(message.find("--force"), std::string::npos) << message;
  EXPECT_EQ(message.find("CPBLTY1-"), std::string::npos) << message;
  EXPECT_EQ(test::read_file(credentials()), before);

  auto forced = import_profile(credentials(), "default", {"tenant-b", kOtherCreate, kQuery, kDeleteSelf}, false, true);
  ASSERT_TRUE(forced.ok()) << forced.error().message;
  EXPECT_TRUE(forced->replaced_other_tenant);
  EXPECT_EQ(forced->previous_tenant, "tenant-a");
  auto now = read_profile(credentials(), "default", "create");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->capability, kOtherCreate);
  EXPECT_EQ(YAML::LoadFile(credentials().string())["membrane"]["tenant"].as<std::string>(), "tenant-b");
}

// A profile the original CLI wrote has no tenant id: its tokens still tell that it is another's.
TEST_F(CredentialsTest, ImportRefusesOverAnOriginalProfileOfAnotherTenant) {
  write(std::string("profile: default\nmembrane:\n  capabilities:\n    query: '") + kQuery + "'\n");
  auto refused = import_profile(credentials(), "default", {"t", kCreate, kOtherCreate, kDeleteSelf}, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("another tenant"), std::string::npos) << refused.error().message;
}

TEST_F(CredentialsTest, ImportKeepsUnrelatedKeysAndDocuments) {
  write("profile: default\nregion: us-east-1\nmedia:\n  capabilities:\n    sendEmail: x\nmembrane:\n"
        "  region: eu-west-1\n  capabilities:\n    export: stale\n---\nnot: a profile\n");
  ASSERT_TRUE(import_profile(credentials(), "default", tenant(), false).ok());
  auto all = YAML::LoadAllFromFile(credentials().string());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]["region"].as<std::string>(), "us-east-1");
  EXPECT_EQ(all[0]["media"]["capabilities"]["sendEmail"].as<std::string>(), "x");
  EXPECT_EQ(all[0]["membrane"]["region"].as<std::string>(), "eu-west-1");
  EXPECT_FALSE(all[0]["membrane"]["capabilities"]["export"]);  // the old tenant's capabilities go
  EXPECT_EQ(all[0]["membrane"]["capabilities"]["query"].as<std::string>(), kQuery);
  EXPECT_EQ(all[1]["not"].as<std::string>(), "a profile");
}

TEST_F(CredentialsTest, ImportRewritesAnOpenFileAs0600) {
  write("profile: other\n");
  fs::permissions(credentials(), fs::perms(0644));
  ASSERT_TRUE(import_profile(credentials(), "default", tenant(), false).ok());
  EXPECT_EQ(mode_of(credentials()), 0600u);
  auto other = read_profile(credentials(), "other", "create");
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->profile_exists);
}

TEST_F(CredentialsTest, PlainHttpKeyRoundTrip) {
  ASSERT_TRUE(import_profile(credentials(), "local", tenant(), true).ok());
  auto r = read_profile(credentials(), "local", "create");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->plain_http);
  EXPECT_EQ(r->authority, "127.0.0.1:8080");
  ASSERT_TRUE(import_profile(credentials(), "local", tenant(), false).ok());
  r = read_profile(credentials(), "local", "create");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->plain_http);
}

TEST_F(CredentialsTest, EmptyProfileNameIsRefused) {
  EXPECT_FALSE(import_profile(credentials(), "", tenant(), false).ok());
  EXPECT_FALSE(fs::exists(credentials()));
}

TEST(CredentialsTenantJson, ParsesWhatMembranedPrints) {
  std::string text = std::string(R"({"capabilities": {"create": ")") + kCreate + R"(", "deleteSelf": ")" +
                     kDeleteSelf + R"(", "query": ")" + kQuery + R"("}, "id": "t-1"})";
  auto t = parse_tenant_json(text);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->id, "t-1");
  EXPECT_EQ(t->create, kCreate);
  EXPECT_EQ(t->query, kQuery);
  EXPECT_EQ(t->delete_self, kDeleteSelf);
}

TEST(CredentialsTenantJson, RefusesWhatIsNotATenant) {
  EXPECT_FALSE(parse_tenant_json("not json").ok());
  EXPECT_FALSE(parse_tenant_json("[]").ok());
  EXPECT_FALSE(parse_tenant_json(R"({"id":"x"})").ok());
  auto r = parse_tenant_json(std::string(R"({"capabilities":{"create":")") + kCreate +
                             R"(","query":"nope","deleteSelf":")" + kDeleteSelf + R"("}})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "capabilities.query");
  EXPECT_EQ(r.error().message.find("CPBLTY1-"), std::string::npos);
  r = parse_tenant_json(std::string(R"({"capabilities":{"create":")") + kCreate + R"(","query":")" + kQuery +
                        R"("}})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "capabilities.deleteSelf");
}

}  // namespace
}  // namespace membraned::cli
