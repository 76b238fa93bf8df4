#include "cli/inventory.hpp"

#include <algorithm>
#include <iterator>
#include <vector>

#include "cli/export_flags.hpp"
#include "core/encoding.hpp"

namespace membraned::cli {

namespace {

using Json = nlohmann::ordered_json;

// The text of a cell as a terminal may show it: C0 and C1 control characters (an escape
// sequence in a label or a target) become '?'. The text is UTF-8 (JSON strings are).
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      out += '?';
    } else if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      out += '?';  // U+0080..U+009F
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Characters, not bytes: what a column is wide (UTF-8 continuation bytes do not count).
std::size_t width_of(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(
      text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

// The fields of an entry in the order people read them (the service sends them sorted by name).
constexpr const char* kEntryFields[] = {"id",      "label",    "membrane",   "kind",      "operation",
                                        "target",  "method",   "standsFor",  "createdAt", "expiresAt",
                                        "maxUses", "uses",     "lastUsedAt", "rateLimit", "allowFrom",
                                        "state",   "revoked",  "revokedAt"};

const Json& field(const Json& entry, const char* name) {
  static const Json kNull;
  if (!entry.is_object()) return kNull;
  auto it = entry.find(name);
  return it == entry.end() ? kNull : *it;
}

std::string value_text(const Json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return printable(v.get_ref<const std::string&>());
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number()) return v.dump();
  if (v.is_array()) {
    if (v.empty()) return "-";
    std::string out;
    for (const auto& item : v) {
      if (!out.empty()) out += ", ";
      out += value_text(item);
    }
    return out;
  }
  if (v.is_object() && v.size() == 2 && v.contains("requests") && v.contains("perSeconds")) {
    return value_text(v["requests"]) + " per " + value_text(v["perSeconds"]) + "s";  // a rateLimit
  }
  return printable(v.dump(-1, ' ', false, Json::error_handler_t::replace));
}

std::string uses_text(const Json& entry) {
  const Json& uses = field(entry, "uses");
  const Json& max_uses = field(entry, "maxUses");
  if (max_uses.is_null()) return value_text(uses);
  return value_text(uses) + "/" + value_text(max_uses);
}

// Rows of cells as aligned lines: each column as wide as its widest cell, two spaces between
// columns, the last column not padded.
std::string aligned(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], width_of(row[i]));
  }
  std::string out;
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out.append(widths[i] - width_of(row[i]) + 2, ' ');
    }
    out += '\n';
  }
  return out;
}

}  // namespace

core::Result<std::string> exports_target(const std::string& membrane_id,
                                         const std::optional<std::string>& last_id,
                                         const std::optional<std::string>& limit) {
  auto encoded = core::js_encode_uri_component(membrane_id);
  if (!encoded) return core::Error::invalid("id", "--id is not valid UTF-8 text");
  auto rest = query_target(std::nullopt, last_id, limit);  // "/" or "/?lastId=..&limit=.."
  if (!rest) return rest.error();
  std::string target = "/?exportsOf=" + *encoded;
  if (rest->size() > 2) target += "&" + rest->substr(2);
  return target;
}

core::Result<std::string> grant_target(const std::string& grant_id) {
  auto encoded = core::js_encode_uri_component(grant_id);
  if (!encoded) return core::Error::invalid("id", "the grant id is not valid UTF-8 text");
  return "/?grant=" + *encoded;
}

core::Result<ListingPage> parse_listing_page(std::string_view body, const std::string& list) {
  const Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return core::Error::invalid(list, "the service's answer is not a JSON object");
  }
  auto exports = parsed.find(list);
  if (exports == parsed.end() || !exports->is_array()) {
    return core::Error::invalid(list, "the service's answer has no \"" + list + "\" list" +
                                          (list == "exports" ? " (does this service have the inventory?)" : ""));
  }
  auto completed = parsed.find("completed");
  if (completed == parsed.end() || !completed->is_boolean()) {
    return core::Error::invalid("completed", "the service's answer has no \"completed\": true or false");
  }
  for (std::size_t i = 0; i < exports->size(); ++i) {
    const Json& entry = (*exports)[i];
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_string()) {
      return core::Error::invalid(
          list, list + "[" + std::to_string(i) + "] of the service's answer is not an entry with an id");
    }
  }
  ListingPage page;
  page.entries = *exports;
  page.completed = completed->get<bool>();
  return page;
}

core::Result<std::optional<std::string>> next_page_after(const ListingPage& page,
                                                         const std::optional<std::string>& previous) {
  if (page.completed) return std::optional<std::string>();
  if (page.entries.empty()) {
    return core::Error::invalid("lastId", "the service answered an empty page that is not the last");
  }
  const Json& id = field(page.entries.back(), "id");
  if (!id.is_string()) return core::Error::invalid("lastId", "the last entry of the page has no id");
  std::string last = id.get<std::string>();
  if (previous && !(last > *previous)) {
    return core::Error::invalid(
        "lastId", "the service answered a page that does not go past lastId " + printable(*previous));
  }
  return std::optional<std::string>(std::move(last));
}

std::string format_exports_table(const Json& exports, bool completed) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "LABEL", "KIND", "TARGET", "USES", "EXPIRES", "STATE"});
  for (const auto& entry : exports) {
    rows.push_back({value_text(field(entry, "id")), value_text(field(entry, "label")),
                    value_text(field(entry, "kind")), value_text(field(entry, "target")), uses_text(entry),
                    value_text(field(entry, "expiresAt")), value_text(field(entry, "state"))});
  }
  std::string out = aligned(rows);
  if (!completed) {
    if (exports.is_array() && !exports.empty()) {
      const std::string last = value_text(field(exports.back(), "id"));
      out += "(more after " + last + ": --last-id " + last + ", or --all)\n";
    } else {
      out += "(more: the listing is not complete)\n";
    }
  }
  return out;
}

std::string format_grant_fields(const Json& entry) {
  std::vector<std::vector<std::string>> rows;
  if (!entry.is_object()) return {};
  for (const char* key : kEntryFields) {
    if (entry.contains(key)) rows.push_back({key, value_text(entry[key])});
  }
  for (const auto& [key, value] : entry.items()) {
    const bool known = std::any_of(std::begin(kEntryFields), std::end(kEntryFields),
                                   [&key = key](const char* k) { return key == k; });
    if (!known) rows.push_back({printable(key), value_text(value)});
  }
  return aligned(rows);
}

}  // namespace membraned::cli
