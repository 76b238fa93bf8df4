#include "cli/credentials.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "core/token.hpp"

namespace membraned::cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* kService = "membrane";

std::string errno_text(int err) { return std::strerror(err); }

core::Result<std::string> read_whole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::Error::invalid("file", "cannot read " + path.string() + ": " + errno_text(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return core::Error::invalid("file", "cannot read " + path.string());
  return ss.str();
}

core::Result<std::vector<YAML::Node>> load_documents(const fs::path& path, const std::string& text) {
  try {
    return YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    // The position only: the message of yaml-cpp may quote the file, which holds tokens.
    return core::Error::invalid("credentials", path.string() + " is not valid YAML (line " +
                                                   std::to_string(e.mark.line + 1) + ", column " +
                                                   std::to_string(e.mark.column + 1) + ")");
  }
}

std::optional<std::string> profile_of(const YAML::Node& doc) {
  if (!doc.IsMap()) return std::nullopt;
  const YAML::Node name = doc["profile"];
  if (!name || !name.IsScalar()) return std::nullopt;
  return name.Scalar();
}

std::optional<std::string> scalar_at(const YAML::Node& node, std::initializer_list<const char*> keys) {
  YAML::Node cur = node;  // a handle; reset() rebinds it (operator= would overwrite the node)
  for (const char* key : keys) {
    if (!cur.IsMap()) return std::nullopt;
    const YAML::Node& const_cur = cur;  // the const operator[] never inserts a key
    YAML::Node next = const_cur[key];
    if (!next) return std::nullopt;
    cur.reset(next);
  }
  if (!cur.IsScalar()) return std::nullopt;
  return cur.Scalar();
}

// Whether the profile's document holds a capability of another tenant than `tenant`'s: one of
// create, query and deleteSelf whose token differs (a tenant's three never change; the authority
// of their URIs may). A value that is not a capability URI counts as another's: it cannot be told.
bool holds_other_tenant(const YAML::Node& doc, const TenantCapabilities& tenant) {
  const std::pair<const char*, const std::string*> kOurs[] = {
      {"create", &tenant.create}, {"query", &tenant.query}, {"deleteSelf", &tenant.delete_self}};
  for (const auto& [name, ours] : kOurs) {
    const auto held = scalar_at(doc, {kService, "capabilities", name});
    if (!held) continue;
    const auto held_uri = core::CapabilityUri::parse(*held);
    const auto our_uri = core::CapabilityUri::parse(*ours);
    if (!held_uri || !our_uri || held_uri->token().text() != our_uri->token().text()) return true;
  }
  return false;
}

// Writes `content` to `path` through a new 0600 file renamed over it.
core::Status write_private_atomically(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return core::Error::invalid("credentials", "cannot write " + tmp.string() + ": " + errno_text(errno));
  ::fchmod(fd, 0600);  // O_TRUNC of a leftover file keeps its old mode
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return core::Error::invalid("credentials", "cannot write " + tmp.string() + ": " + errno_text(err));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return core::Error::invalid("credentials", "cannot write " + tmp.string() + ": " + errno_text(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return core::Error::invalid("credentials", "cannot replace " + path.string() + ": " + errno_text(err));
  }
  int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return core::ok_status();
}

// An exclusive lock on DIR/credentials.lock for a read-modify-write, released on destruction.
class FileLock {
 public:
  explicit FileLock(const fs::path& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace

core::Result<fs::path> default_credentials_path() {
  const char* home = std::getenv("HOME");
  std::string dir = home ? home : "";
  if (dir.empty()) {
    if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) dir = pw->pw_dir;
  }
  if (dir.empty()) return core::Error::invalid("HOME", "HOME is not set: cannot find ~/.capability/credentials");
  return fs::path(dir) / ".capability" / "credentials";
}

namespace {

// A profile's document: its plain-HTTP setting and the authority of its tenant capabilities.
ProfileLookup read_profile_document(const YAML::Node& doc) {
  ProfileLookup out;
  out.profile_exists = true;
  if (auto plain = scalar_at(doc, {kService, "plainHttp"})) out.plain_http = *plain == "true";
  for (const char* which : {"create", "query", "deleteSelf"}) {
    auto uri = scalar_at(doc, {kService, "capabilities", which});
    if (!uri) continue;
    auto parsed = core::CapabilityUri::parse(*uri);
    if (parsed && !parsed->is_custom_form()) {
      out.authority = parsed->authority();
      break;
    }
  }
  return out;
}

}  // namespace

core::Result<ProfileLookup> read_profile(const fs::path& path, std::string_view profile,
                                         std::string_view capability_name) {
  ProfileLookup out;
  std::error_code ec;
  if (!fs::exists(path, ec)) return out;
  out.file_exists = true;
  auto text = read_whole(path);
  if (!text) return text.error();
  auto docs = load_documents(path, *text);
  if (!docs) return docs.error();
  const YAML::Node* chosen = nullptr;
  for (const auto& doc : *docs) {
    auto name = profile_of(doc);
    if (name && *name == profile) chosen = &doc;
  }
  if (!chosen) return out;
  ProfileLookup found = read_profile_document(*chosen);
  found.file_exists = true;
  const std::string name(capability_name);
  found.capability = scalar_at(*chosen, {kService, "capabilities", name.c_str()});
  return found;
}

core::Result<std::vector<ProfileSummary>> list_profiles(const fs::path& path) {
  std::vector<ProfileSummary> out;
  std::error_code ec;
  if (!fs::exists(path, ec)) return out;
  auto text = read_whole(path);
  if (!text) return text.error();
  auto docs = load_documents(path, *text);
  if (!docs) return docs.error();
  for (const auto& doc : *docs) {
    auto name = profile_of(doc);
    if (!name) continue;
    auto looked_up = read_profile_document(doc);
    ProfileSummary summary;
    summary.profile = *name;
    summary.tenant = scalar_at(doc, {kService, "tenant"}).value_or("");
    summary.authority = looked_up.authority;
    summary.plain_http = looked_up.plain_http;
    const YAML::Node capabilities = doc[kService] ? doc[kService]["capabilities"] : YAML::Node();
    if (capabilities && capabilities.IsMap()) {
      for (const auto& entry : capabilities) summary.capabilities.push_back(entry.first.as<std::string>());
    }
    out.push_back(std::move(summary));
  }
  return out;
}

core::Result<TenantCapabilities> parse_tenant_json(std::string_view text) {
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return core::Error::invalid("tenant", "the tenant file is not a JSON object (expected the output of "
                                          "`membraned tenant create` or first-tenant.json)");
  }
  TenantCapabilities out;
  if (json.contains("id")) {
    if (!json["id"].is_string()) return core::Error::invalid("id", "the tenant's \"id\" is not a string");
    out.id = json["id"].get<std::string>();
  }
  if (!json.contains("capabilities") || !json["capabilities"].is_object()) {
    return core::Error::invalid("capabilities", "the tenant file has no \"capabilities\" object");
  }
  const auto& caps = json["capabilities"];
  auto take = [&](const char* name, std::string& into) -> core::Status {
    if (!caps.contains(name) || !caps[name].is_string()) {
      return core::Error::invalid(std::string("capabilities.") + name,
                                  std::string("the tenant file has no capabilities.") + name + " string");
    }
    into = caps[name].get<std::string>();
    if (!core::CapabilityUri::parse(into)) {
      return core::Error::invalid(std::string("capabilities.") + name,
                                  std::string("capabilities.") + name + " is not a capability URI");
    }
    return core::ok_status();
  };
  if (auto s = take("create", out.create); !s) return s.error();
  if (auto s = take("query", out.query); !s) return s.error();
  if (auto s = take("deleteSelf", out.delete_self); !s) return s.error();
  return out;
}

core::Result<ImportOutcome> import_profile(const fs::path& path, std::string_view profile,
                                           const TenantCapabilities& tenant, bool plain_http, bool force) {
  if (profile.empty()) return core::Error::invalid("profile", "--profile must not be empty");
  const fs::path dir = path.parent_path();
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return core::Error::invalid("credentials", "cannot create " + dir.string() + ": " + errno_text(errno));
    }
  }
  FileLock lock(dir / "credentials.lock");
  if (!lock.ok()) return core::Error::invalid("credentials", "cannot lock " + (dir / "credentials.lock").string());

  std::vector<YAML::Node> docs;
  if (fs::exists(path, ec)) {
    auto text = read_whole(path);
    if (!text) return text.error();
    auto loaded = load_documents(path, *text);
    if (!loaded) return loaded.error();
    for (auto& doc : *loaded) {
      if (!doc.IsNull()) docs.push_back(doc);  // empty documents ("---" twice) are dropped
    }
  }

  YAML::Node capabilities(YAML::NodeType::Map);
  capabilities["create"] = tenant.create;
  capabilities["query"] = tenant.query;
  capabilities["deleteSelf"] = tenant.delete_self;

  YAML::Node* target = nullptr;
  for (auto& doc : docs) {
    auto name = profile_of(doc);
    if (name && *name == profile) target = &doc;  // the last one is the one read_profile uses
  }
  ImportOutcome outcome;
  if (target && holds_other_tenant(*target, tenant)) {
    outcome.replaced_other_tenant = true;
    outcome.previous_tenant = scalar_at(*target, {kService, "tenant"}).value_or("");
    if (!force) {
      const std::string which =
          outcome.previous_tenant.empty() ? "another tenant" : "tenant " + outcome.previous_tenant;
      return core::Error::conflict(
          "profile \"" + std::string(profile) + "\" in " + path.string() + " holds the capabilities of " + which +
          "; nothing was written. They may exist nowhere else: import into another profile with --profile "
          "NAME, or replace them with --force");
    }
  }
  if (!target) {
    YAML::Node doc(YAML::NodeType::Map);
    doc["profile"] = std::string(profile);
    docs.push_back(doc);
    target = &docs.back();
  }
  {
    const YAML::Node& doc = *target;
    const YAML::Node existing = doc[kService];
    if (!existing || !existing.IsMap()) (*target)[kService] = YAML::Node(YAML::NodeType::Map);
  }
  YAML::Node membrane = (*target)[kService];
  membrane["capabilities"] = capabilities;
  if (!tenant.id.empty()) {
    membrane["tenant"] = tenant.id;
  } else {
    membrane.remove("tenant");
  }
  if (plain_http) {
    membrane["plainHttp"] = true;
  } else {
    membrane.remove("plainHttp");
  }

  std::string content;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    YAML::Emitter emitter;
    emitter << docs[i];
    if (!emitter.good()) return core::Error::internal("cannot write the credentials as YAML");
    if (i > 0) content += "---\n";
    content += emitter.c_str();
    content += "\n";
  }
  if (auto written = write_private_atomically(path, content); !written) return written.error();
  return outcome;
}

}  // namespace membraned::cli
