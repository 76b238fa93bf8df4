// The inventory (contract §12) as capi shows it, without a network: the request targets of
// `capi membrane exports` and `capi grant show`, the pages the service answers, the paging of
// --all, and the human tables of --table.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace membraned::cli {

// --all asks for pages of this many entries (grants or membranes): the largest the service gives.
inline constexpr std::size_t kListingPageLimit = 1000;

// "/?exportsOf=ID[&lastId=..][&limit=N]" (encodeURIComponent values, in this order); limit, when
// given, must be a whole number greater than 0 (as for `membrane query`).
core::Result<std::string> exports_target(const std::string& membrane_id,
                                         const std::optional<std::string>& last_id,
                                         const std::optional<std::string>& limit);
// "/?grant=ID".
core::Result<std::string> grant_target(const std::string& grant_id);

// One page of a listing: {"exports" or "membranes": [ENTRY...], "completed": BOOL}.
struct ListingPage {
  nlohmann::ordered_json entries = nlohmann::ordered_json::array();  // objects, each with a string "id"
  bool completed = true;
};

// The page in the body of a 200 answer, its entries under `list` ("exports" for GET /?exportsOf=
// or /?grant=, "membranes" for the membrane query). Errors say what is not as expected (a service
// without the inventory answers its membrane list to the inventory's parameters).
core::Result<ListingPage> parse_listing_page(std::string_view body, const std::string& list);

// --all: the lastId of the page after `page`, or nullopt when `page` is the last. An error when an
// incomplete page would not move the listing on (empty, or its last id not after `previous`).
core::Result<std::optional<std::string>> next_page_after(const ListingPage& page,
                                                         const std::optional<std::string>& previous);

// `membrane exports --table`: one line per entry under a header, columns ID, LABEL, KIND,
// TARGET, USES (uses/maxUses, or uses without a maximum), EXPIRES, REVOKED (yes/no), aligned on
// the widest value, two spaces apart; "-" for a null. When the page is not the last, a final
// line says how to ask for the rest.
std::string format_exports_table(const nlohmann::ordered_json& exports, bool completed);

// `grant show --table`: every field of the entry on its own line, name then value, the values
// aligned; "-" for a null, yes/no for a boolean, rateLimit as "N per Ss", allowFrom joined by ", ".
// The fields of contract §12 come in a fixed order (id, label, membrane, kind, operation, target,
// method, standsFor, createdAt, expiresAt, maxUses, uses, lastUsedAt, rateLimit, allowFrom,
// revoked, revokedAt), any other after them in the answer's order.
std::string format_grant_fields(const nlohmann::ordered_json& entry);

}  // namespace membraned::cli
