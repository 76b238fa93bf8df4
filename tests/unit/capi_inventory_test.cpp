// The inventory as capi shows it (cli/inventory): the request targets of `membrane exports` and
// `grant show`, the pages it accepts, the paging of --all, and the tables of --table.
#include <gtest/gtest.h>

#include <string>

#include "cli/inventory.hpp"

namespace membraned::cli {
namespace {

using Json = nlohmann::ordered_json;

// An entry as the service answers it: every key, nulls where nothing applies.
Json entry(const std::string& id) {
  return Json::parse(R"({"id":")" + id + R"(","label":null,"membrane":"m","kind":"uri","operation":"invoke",
    "target":"https://example.com/fn","method":"POST","standsFor":null,"createdAt":"2026-11-24T23:42:59Z",
    "expiresAt":null,"maxUses":null,"uses":0,"lastUsedAt":null,"rateLimit":null,"allowFrom":null,
    "state":"active","revoked":false,"revokedAt":null})");
}

TEST(CapiInventory, Targets) {
  EXPECT_EQ(*exports_target("m", std::nullopt, std::nullopt), "/?exportsOf=m");
  EXPECT_EQ(*exports_target("a b/c&d", std::string("g_01"), std::string("2")),
            "/?exportsOf=a%20b%2Fc%26d&lastId=g_01&limit=2");
  EXPECT_EQ(*exports_target("m", std::nullopt, std::string("1000")), "/?exportsOf=m&limit=1000");
  EXPECT_EQ(*exports_target("m", std::string("g+1"), std::nullopt), "/?exportsOf=m&lastId=g%2B1");
  for (const char* bad : {"0", "-1", "ten", ""}) {
    auto r = exports_target("m", std::nullopt, std::string(bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("--limit"), std::string::npos);
  }
  EXPECT_FALSE(exports_target("\xff", std::nullopt, std::nullopt).ok());
  EXPECT_EQ(*grant_target("g_d978ff1aa0b2d5d403e05fcc"), "/?grant=g_d978ff1aa0b2d5d403e05fcc");
  EXPECT_EQ(*grant_target("a&b=c"), "/?grant=a%26b%3Dc");
}

TEST(CapiInventory, PagesAreCheckedBeforeUse) {
  auto page = parse_listing_page(R"({"exports":[{"id":"g_1"},{"id":"g_2"}],"completed":false})", "exports");
  ASSERT_TRUE(page.ok()) << page.error().message;
  EXPECT_EQ(page->entries.size(), 2u);
  EXPECT_FALSE(page->completed);
  auto empty = parse_listing_page(R"({"exports":[],"completed":true})", "exports");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->completed);
  // The membrane query's pages list "membranes".
  auto membranes = parse_listing_page(R"({"membranes":[{"id":"m1"}],"completed":true})", "membranes");
  ASSERT_TRUE(membranes.ok()) << membranes.error().message;
  EXPECT_EQ(membranes->entries.size(), 1u);
  // A service without the inventory answers its membrane list to these parameters.
  auto older = parse_listing_page(R"({"membranes":[],"completed":true})", "exports");
  ASSERT_FALSE(older.ok());
  EXPECT_NE(older.error().message.find("\"exports\""), std::string::npos);
  for (const char* bad : {"", "[]", "not json", R"({"exports":{},"completed":true})", R"({"exports":[]})",
                          R"({"exports":[],"completed":"yes"})", R"({"exports":[{"id":1}],"completed":true})",
                          R"({"exports":["g_1"],"completed":true})"}) {
    EXPECT_FALSE(parse_listing_page(bad, "exports").ok()) << bad;
  }
}

TEST(CapiInventory, AllFollowsTheLastIdUntilCompleted) {
  ListingPage page;
  page.entries = Json::array({entry("g_1"), entry("g_2")});
  page.completed = false;
  auto next = next_page_after(page, std::nullopt);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, std::optional<std::string>("g_2"));
  next = next_page_after(page, std::string("g_0"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, std::optional<std::string>("g_2"));
  page.completed = true;
  next = next_page_after(page, std::string("g_0"));
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  // A page that would not move the listing on stops it instead of asking for it again.
  page.completed = false;
  EXPECT_FALSE(next_page_after(page, std::string("g_2")).ok());
  EXPECT_FALSE(next_page_after(page, std::string("g_3")).ok());
  page.entries = Json::array();
  EXPECT_FALSE(next_page_after(page, std::nullopt).ok());
}

TEST(CapiInventory, ExportsTableAlignsColumnsAndShowsNullsAsDashes) {
  Json a = entry("g_aa");
  a["label"] = "partner";
  a["maxUses"] = 100;
  a["uses"] = 7;
  a["expiresAt"] = "2026-12-04T14:05:25.851Z";
  a["state"] = "revoked";
  a["revoked"] = true;
  Json b = entry("g_bbbb");
  b["kind"] = "reexport";
  b["target"] = nullptr;
  b["uses"] = 12;
  b["state"] = "cut";
  EXPECT_EQ(format_exports_table(Json::array({a, b}), true),
            "ID      LABEL    KIND      TARGET                  USES   EXPIRES                   STATE\n"
            "g_aa    partner  uri       https://example.com/fn  7/100  2026-12-04T14:05:25.851Z  revoked\n"
            "g_bbbb  -        reexport  -                       12     -                         cut\n");
}

TEST(CapiInventory, ExportsTableSaysHowToAskForTheRest) {
  EXPECT_EQ(format_exports_table(Json::array(), true), "ID  LABEL  KIND  TARGET  USES  EXPIRES  STATE\n");
  std::string text = format_exports_table(Json::array({entry("g_1"), entry("g_2")}), false);
  EXPECT_NE(text.find("\n(more after g_2: --last-id g_2, or --all)\n"), std::string::npos) << text;
}

TEST(CapiInventory, TableCellsAreCountedInCharactersAndHoldNoControlCharacters) {
  Json a = entry("g_1");
  a["label"] = "caf\xc3\xa9";  // 4 characters, 5 bytes
  Json b = entry("g_2");
  b["label"] = "red\x1b[31m\xc2\x9b";  // ESC and CSI would drive the terminal
  std::string text = format_exports_table(Json::array({a, b}), true);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find("\xc2\x9b"), std::string::npos);
  EXPECT_NE(text.find("g_1  caf\xc3\xa9       uri"), std::string::npos) << text;
  EXPECT_NE(text.find("g_2  red?[31m?  uri"), std::string::npos) << text;
}

TEST(CapiInventory, GrantFieldsListEveryKeyInAFixedOrder) {
  // The service sends the keys sorted by name; they are listed as people read them, and a key
  // this capi does not know is listed after them.
  Json g = Json::parse(nlohmann::json(entry("g_d978ff1aa0b2d5d403e05fcc")).dump());
  g["zNew"] = "later";
  g["label"] = "partner";
  g["kind"] = "reexport";
  g["standsFor"] = "g_0123";
  g["maxUses"] = 100;
  g["uses"] = 3;
  g["rateLimit"] = {{"requests", 10}, {"perSeconds", 60}};
  g["allowFrom"] = Json::array({"10.0.0.0/8", "2001:db8::/32"});
  g["state"] = "revoked";
  g["revoked"] = true;
  g["revokedAt"] = "2026-11-25T00:00:00Z";
  EXPECT_EQ(format_grant_fields(g),
            "id          g_d978ff1aa0b2d5d403e05fcc\n"
            "label       partner\n"
            "membrane    m\n"
            "kind        reexport\n"
            "operation   invoke\n"
            "target      https://example.com/fn\n"
            "method      POST\n"
            "standsFor   g_0123\n"
            "createdAt   2026-11-24T23:42:59Z\n"
            "expiresAt   -\n"
            "maxUses     100\n"
            "uses        3\n"
            "lastUsedAt  -\n"
            "rateLimit   10 per 60s\n"
            "allowFrom   10.0.0.0/8, 2001:db8::/32\n"
            "state       revoked\n"
            "revoked     yes\n"
            "revokedAt   2026-11-25T00:00:00Z\n"
            "zNew        later\n");
}

}  // namespace
}  // namespace membraned::cli
