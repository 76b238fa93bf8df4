#include "core/aws_config.hpp"

#include <boost/property_tree/ini_parser.hpp>
#include <boost/property_tree/ptree.hpp>

#include <algorithm>
#include <deque>
#include <set>
#include <sstream>

#include "core/ascii.hpp"
#include "core/encoding.hpp"
#include "core/http.hpp"
#include "core/suggest.hpp"

namespace membraned::core {
namespace {

constexpr std::size_t kMinRoleArn = 20;
constexpr std::size_t kMaxRoleArn = 2048;
constexpr std::size_t kMaxExternalId = 1224;
constexpr std::size_t kMaxRoleSessionName = 64;

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

// IAM's [\w+=,.@-] (role session names) plus `extra`.
bool is_iam_text(std::string_view s, std::string_view extra = {}) noexcept {
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return is_iam_name_char(c) || extra.find(c) != std::string_view::npos; });
}

Error profile_error(std::string_view profile, std::string_view key, std::string_view what) {
  std::string message = "aws config: profile \"" + printable_excerpt(profile) + "\": ";
  if (!key.empty()) message += std::string(key) + " ";
  message += what;
  return Error::invalid(std::string(key), std::move(message));
}

// One [default] / [profile NAME] section as read: lower-cased keys (configparser lower-cases
// option names, so botocore does too), values as Boost trimmed them.
struct RawProfile {
  std::map<std::string, std::string, std::less<>> values;
  std::optional<std::string> duplicate_key;
};

using RawProfiles = std::map<std::string, RawProfile, std::less<>>;

const std::string* raw_value(const RawProfile& raw, std::string_view key) {
  auto it = raw.values.find(key);
  return it == raw.values.end() ? nullptr : &it->second;
}

// The profile a section stands for: "default" for [default], NAME for [profile NAME]
// ("profile" then white space); nullopt for every other section ([sso-session x], [services x]).
std::optional<std::string> section_profile(std::string_view section) {
  if (section == "default") return std::string("default");
  constexpr std::string_view prefix = "profile";
  if (!section.starts_with(prefix) || section.size() == prefix.size() ||
      !is_space(section[prefix.size()])) {
    return std::nullopt;
  }
  std::string_view rest = section.substr(prefix.size());
  while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
  while (!rest.empty() && is_space(rest.back())) rest.remove_suffix(1);
  return std::string(rest);
}

Result<RawProfiles> read_sections(std::string_view contents) {
  namespace pt = boost::property_tree;
  pt::ptree tree;
  try {
    std::istringstream stream{std::string(contents)};
    pt::read_ini(stream, tree);
  } catch (const pt::ini_parser_error& e) {
    return Error::invalid("", "aws config: line " + std::to_string(e.line()) + ": " + e.message());
  } catch (const std::exception&) {
    return Error::invalid("", "aws config: the file cannot be read as INI");
  }
  RawProfiles out;
  for (const auto& [section, node] : tree) {
    // Keys outside any section are leaves at the top: ignored, as botocore ignores them.
    if (node.empty()) continue;
    std::optional<std::string> name = section_profile(section);
    if (!name) continue;
    auto [it, inserted] = out.try_emplace(*name);
    if (!inserted) {
      return profile_error(*name, "", "is given by two sections (e.g. [default] and [profile default])");
    }
    RawProfile& raw = it->second;
    for (const auto& [key, value] : node) {
      std::string lower = to_lower_ascii(key);
      if (!raw.values.emplace(lower, value.data()).second && !raw.duplicate_key) {
        raw.duplicate_key = lower;
      }
    }
  }
  return out;
}

Result<std::optional<std::string>> optional_value(std::string_view profile, const RawProfile& raw,
                                                  std::string_view key) {
  const std::string* value = raw_value(raw, key);
  if (value == nullptr) return std::optional<std::string>();
  if (value->empty()) return profile_error(profile, key, "is empty");
  return std::optional<std::string>(*value);
}

std::vector<std::string> split_whitespace(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    std::size_t start = i;
    while (i < s.size() && !is_space(s[i])) ++i;
    if (i > start) out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

// Static keys: both or neither; a session token only with them.
Status read_static_keys(const std::string& name, const RawProfile& raw, AwsProfile& p) {
  auto key_id = optional_value(name, raw, "aws_access_key_id");
  if (!key_id) return key_id.error();
  auto secret = optional_value(name, raw, "aws_secret_access_key");
  if (!secret) return secret.error();
  auto token = optional_value(name, raw, "aws_session_token");
  if (!token) return token.error();
  if (key_id->has_value() && !secret->has_value()) {
    return profile_error(name, "aws_secret_access_key", "is missing (aws_access_key_id is given)");
  }
  if (secret->has_value() && !key_id->has_value()) {
    return profile_error(name, "aws_access_key_id", "is missing (aws_secret_access_key is given)");
  }
  if (token->has_value() && !key_id->has_value()) {
    return profile_error(name, "aws_session_token", "needs aws_access_key_id and aws_secret_access_key");
  }
  if (!key_id->has_value()) return ok_status();
  AwsCredentials c{std::move(**key_id), std::move(**secret), std::move(*token), std::nullopt};
  if (auto s = validate_credentials(c, {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"});
      !s) {
    Error e = s.error();
    e.message = "aws config: profile \"" + printable_excerpt(name) + "\": " + e.message;
    return e;
  }
  p.static_credentials = std::move(c);
  return ok_status();
}

// credential_source: one of botocore's three names, never beside static keys.
Status read_credential_source(const std::string& name, const RawProfile& raw, AwsProfile& p) {
  auto source = optional_value(name, raw, "credential_source");
  if (!source) return source.error();
  if (!*source) return ok_status();
  p.credential_source = parse_credential_source(**source);
  if (!p.credential_source) {
    return profile_error(name, "credential_source",
                         "\"" + printable_excerpt(**source) +
                             "\" is not one of Environment, Ec2InstanceMetadata, EcsContainer");
  }
  if (p.static_credentials) {
    return profile_error(name, "credential_source",
                         "cannot be given with aws_access_key_id/aws_secret_access_key");
  }
  return ok_status();
}

// The keys of an assumed role, as written (each absent or non-empty). All are read before any
// is checked, so that an empty one is reported first, whatever else is wrong.
struct RoleKeys {
  std::optional<std::string> role_arn;
  std::optional<std::string> source_profile;
  std::optional<std::string> external_id;
  std::optional<std::string> role_session_name;
  std::optional<std::string> duration_seconds;
};

Result<RoleKeys> read_role_keys(const std::string& name, const RawProfile& raw) {
  RoleKeys keys;
  for (auto [key, into] :
       {std::pair{"role_arn", &keys.role_arn}, std::pair{"source_profile", &keys.source_profile},
        std::pair{"external_id", &keys.external_id}, std::pair{"role_session_name", &keys.role_session_name},
        std::pair{"duration_seconds", &keys.duration_seconds}}) {
    auto value = optional_value(name, raw, key);
    if (!value) return value.error();
    *into = std::move(*value);
  }
  return keys;
}

bool is_role_arn(const std::string& arn) {
  return arn.starts_with("arn:") && arn.size() >= kMinRoleArn && arn.size() <= kMaxRoleArn &&
         std::all_of(arn.begin(), arn.end(), [](char c) {
           auto u = static_cast<unsigned char>(c);
           return u > 0x20 && u < 0x7F;
         });
}

// role_arn, with exactly one of source_profile (a profile of the file) and credential_source;
// without role_arn, none of the role's other keys.
Status read_role(const std::string& name, RoleKeys& keys, const RawProfiles& all, AwsProfile& p) {
  if (keys.role_arn) {
    if (!is_role_arn(*keys.role_arn)) {
      return profile_error(name, "role_arn", "must be an ARN (\"arn:...\", 20 to 2048 printable characters)");
    }
    if (keys.source_profile && p.credential_source) {
      return profile_error(name, "source_profile",
                           "cannot be given with credential_source (role_arn needs exactly one)");
    }
    if (!keys.source_profile && !p.credential_source) {
      return profile_error(name, "role_arn", "needs source_profile or credential_source");
    }
    p.role_arn = std::move(keys.role_arn);
  } else {
    for (auto& [key, value] :
         {std::pair{"source_profile", &keys.source_profile}, std::pair{"external_id", &keys.external_id},
          std::pair{"role_session_name", &keys.role_session_name},
          std::pair{"duration_seconds", &keys.duration_seconds}}) {
      if (value->has_value()) return profile_error(name, key, "needs role_arn");
    }
  }
  if (keys.source_profile) {
    if (all.find(*keys.source_profile) == all.end()) {
      return profile_error(name, "source_profile",
                           "names \"" + printable_excerpt(*keys.source_profile) +
                               "\", which is not a profile of the file (or has no keys)");
    }
    p.source_profile = std::move(keys.source_profile);
  }
  return ok_status();
}

// What AssumeRole is asked with: external_id, role_session_name and duration_seconds.
Status read_role_options(const std::string& name, RoleKeys& keys, AwsProfile& p) {
  if (keys.external_id) {
    const std::string& id = *keys.external_id;
    if (id.size() < 2 || id.size() > kMaxExternalId || !is_iam_text(id, ":/")) {
      return profile_error(name, "external_id", "must be 2 to 1224 letters, digits and _ + = , . @ : / -");
    }
    p.external_id = std::move(keys.external_id);
  }
  if (keys.role_session_name) {
    const std::string& s = *keys.role_session_name;
    if (s.size() < 2 || s.size() > kMaxRoleSessionName || !is_iam_text(s)) {
      return profile_error(name, "role_session_name", "must be 2 to 64 letters, digits and _ + = , . @ -");
    }
    p.role_session_name = std::move(*keys.role_session_name);
  }
  if (keys.duration_seconds) {
    const std::string& d = *keys.duration_seconds;
    bool numeric = !d.empty() && d.size() <= 6 && std::all_of(d.begin(), d.end(), is_digit);
    std::int64_t seconds = numeric ? std::stoll(d) : 0;
    if (!numeric || seconds < kMinDurationSeconds || seconds > kMaxDurationSeconds) {
      return profile_error(name, "duration_seconds", "must be an integer from 900 to 43200");
    }
    p.duration = std::chrono::seconds{seconds};
  }
  return ok_status();
}

Status read_region(const std::string& name, const RawProfile& raw, AwsProfile& p) {
  auto region = optional_value(name, raw, "region");
  if (!region) return region.error();
  if (!*region) return ok_status();
  if (!is_aws_region(**region)) {
    return profile_error(name, "region", "must hold only lower-case letters, digits and '-'");
  }
  p.region = std::move(*region);
  return ok_status();
}

// membraned_tenants: the tenants that may sign with the profile, or * for all of them.
Status read_grants(const std::string& name, const RawProfile& raw, AwsProfile& p) {
  auto tenants = optional_value(name, raw, "membraned_tenants");
  if (!tenants) return tenants.error();
  if (!*tenants) return ok_status();
  std::vector<std::string> ids = split_whitespace(**tenants);
  const bool star = std::find(ids.begin(), ids.end(), "*") != ids.end();
  if (star && ids.size() > 1) {
    return profile_error(name, "membraned_tenants", "is either * or a list of tenant ids, not both");
  }
  if (star) {
    p.all_tenants = true;
  } else {
    p.tenants = std::move(ids);
  }
  return ok_status();
}

// Every rule of one profile, alone (cycles and chains come after, over all of them).
// The keys membraned reads. The file may be shared with the AWS CLI and other tools, whose keys
// it ignores as they ignore membraned_tenants; but a key one typo away from one of these (regoin)
// would be silently ignored too, and is refused.
const std::vector<std::string>& keys_read() {
  static const std::vector<std::string> keys = {
      "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "credential_source", "duration_seconds",
      "external_id",       "membraned_tenants",     "region",            "role_arn",          "role_session_name",
      "source_profile"};
  return keys;
}

Status check_for_misspelt_keys(const std::string& name, const RawProfile& raw) {
  for (const auto& [key, value] : raw.values) {
    if (std::find(keys_read().begin(), keys_read().end(), key) != keys_read().end()) continue;
    if (auto meant = closest_name(key, keys_read()); meant && key.size() >= 4) {
      return profile_error(name, key, "is not a key membraned reads: did you mean " + *meant + "?");
    }
  }
  return ok_status();
}

Result<AwsProfile> parse_profile(const std::string& name, const RawProfile& raw, const RawProfiles& all) {
  if (!is_profile_name(name)) {
    return profile_error(name, "",
                         "cannot be used: a profile name holds 1 to 128 letters, digits and - _ . @ + = ,");
  }
  if (raw.duplicate_key) return profile_error(name, *raw.duplicate_key, "is given twice");
  if (auto s = check_for_misspelt_keys(name, raw); !s) return s.error();

  AwsProfile p;
  p.name = name;
  if (auto s = read_static_keys(name, raw, p); !s) return s.error();
  if (auto s = read_credential_source(name, raw, p); !s) return s.error();
  auto role = read_role_keys(name, raw);
  if (!role) return role.error();
  if (auto s = read_role(name, *role, all, p); !s) return s.error();
  if (auto s = read_role_options(name, *role, p); !s) return s.error();
  if (auto s = read_region(name, raw, p); !s) return s.error();
  if (auto s = read_grants(name, raw, p); !s) return s.error();

  if (!p.static_credentials && !p.credential_source && !p.role_arn) {
    return profile_error(name, "",
                         "has no credentials: give aws_access_key_id and aws_secret_access_key, "
                         "credential_source, or role_arn with source_profile or credential_source");
  }
  return p;
}

BaseKind base_kind(CredentialSource source) {
  switch (source) {
    case CredentialSource::environment: return BaseKind::environment;
    case CredentialSource::ec2_instance_metadata: return BaseKind::imds;
    case CredentialSource::ecs_container: return BaseKind::ecs;
  }
  return BaseKind::environment;
}

}  // namespace

std::optional<CredentialSource> parse_credential_source(std::string_view text) noexcept {
  if (text == "Environment") return CredentialSource::environment;
  if (text == "Ec2InstanceMetadata") return CredentialSource::ec2_instance_metadata;
  if (text == "EcsContainer") return CredentialSource::ecs_container;
  return std::nullopt;
}

std::string_view credential_source_name(CredentialSource source) noexcept {
  switch (source) {
    case CredentialSource::environment: return "Environment";
    case CredentialSource::ec2_instance_metadata: return "Ec2InstanceMetadata";
    case CredentialSource::ecs_container: return "EcsContainer";
  }
  return "";
}

Result<AwsConfig> AwsConfig::load(std::string_view contents) {
  auto sections = read_sections(contents);
  if (!sections) return sections.error();
  const auto& raw = *sections;

  // A misspelt membraned_tenants would leave its profile unused without a word.
  static const std::vector<std::string> kTenantsKey = {"membraned_tenants"};
  for (const auto& [name, profile] : raw) {
    for (const auto& [key, value] : profile.values) {
      if (key != kTenantsKey.front() && key.size() >= 4 && closest_name(key, kTenantsKey)) {
        return profile_error(name, key, "is not a key membraned reads: did you mean membraned_tenants?");
      }
    }
  }

  // The profiles membraned uses: granted ones, and their sources, transitively.
  std::set<std::string, std::less<>> used;
  std::deque<std::string> pending;
  for (const auto& [name, profile] : raw) {
    if (raw_value(profile, "membraned_tenants") != nullptr) pending.push_back(name);
  }
  while (!pending.empty()) {
    std::string name = std::move(pending.front());
    pending.pop_front();
    if (!used.insert(name).second) continue;
    auto it = raw.find(name);
    if (it == raw.end()) continue;  // reported by the profile that names it
    if (const std::string* source = raw_value(it->second, "source_profile");
        source != nullptr && raw.contains(*source)) {
      pending.push_back(*source);
    }
  }

  AwsConfig config;
  for (const std::string& name : used) {
    auto profile = parse_profile(name, raw.find(name)->second, raw);
    if (!profile) return profile.error();
    config.profiles_.emplace(name, std::move(*profile));
  }

  // Cycles through source_profile, following every edge. The one exception is a profile that
  // names itself and holds static keys: it assumes its role with its own keys.
  for (const auto& [name, first] : config.profiles_) {
    std::vector<std::string> path{name};
    const AwsProfile* current = &first;
    while (current->source_profile) {
      const std::string& next = *current->source_profile;
      auto seen = std::find(path.begin(), path.end(), next);
      if (seen != path.end()) {
        if (next == current->name && current->static_credentials) break;
        std::string cycle;
        for (auto it = seen; it != path.end(); ++it) cycle += printable_excerpt(*it) + " -> ";
        cycle += printable_excerpt(next);
        return profile_error(current->name, "source_profile", "makes a cycle: " + cycle);
      }
      path.push_back(next);
      current = &config.profiles_.at(next);
    }
  }

  // The chain of each profile, as botocore resolves it.
  for (const auto& [name, top] : config.profiles_) {
    CredentialChain chain;
    const AwsProfile* current = &top;
    bool at_top = true;
    for (std::size_t guard = 0;; ++guard) {
      if (guard > config.profiles_.size()) {
        return profile_error(name, "source_profile", "leads to a chain that does not end");
      }
      const bool use_static = current->static_credentials && (!at_top || !current->role_arn);
      if (use_static) {
        chain.base = {BaseKind::static_keys, current->name, current->static_credentials};
        break;
      }
      if (current->role_arn) {
        chain.assume_roles.push_back({current->name, *current->role_arn, current->external_id,
                                      current->role_session_name, current->duration, top.region});
        if (current->credential_source) {
          chain.base = {base_kind(*current->credential_source), current->name, std::nullopt};
          break;
        }
        if (*current->source_profile == current->name) {  // itself, with static keys (checked)
          chain.base = {BaseKind::static_keys, current->name, current->static_credentials};
          break;
        }
        current = &config.profiles_.at(*current->source_profile);
        at_top = false;
        continue;
      }
      // credential_source without role_arn: the source's credentials sign directly.
      chain.base = {base_kind(*current->credential_source), current->name, std::nullopt};
      break;
    }
    std::reverse(chain.assume_roles.begin(), chain.assume_roles.end());
    config.chains_.emplace(name, std::move(chain));
  }
  return config;
}

const AwsProfile* AwsConfig::find(std::string_view name) const {
  auto it = profiles_.find(name);
  return it == profiles_.end() ? nullptr : &it->second;
}

bool AwsConfig::granted(std::string_view profile, std::string_view tenant_id) const {
  const AwsProfile* p = find(profile);
  if (p == nullptr) return false;
  if (p->all_tenants) return true;
  return std::find(p->tenants.begin(), p->tenants.end(), tenant_id) != p->tenants.end();
}

Result<CredentialChain> AwsConfig::chain(std::string_view profile) const {
  auto it = chains_.find(profile);
  if (it == chains_.end()) {
    return Error::not_found("aws config: no usable profile \"" + printable_excerpt(profile) + "\"");
  }
  return it->second;
}

std::vector<std::string> AwsConfig::profile_names() const {
  std::vector<std::string> out;
  out.reserve(profiles_.size());
  for (const auto& [name, profile] : profiles_) out.push_back(name);
  return out;
}

}  // namespace membraned::core
