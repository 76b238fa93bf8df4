#include "storage/master_key.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace membraned::storage {

using core::Error;
using core::Result;

namespace {

constexpr const char* kKeyFileName = "master.key";

Result<std::string> read_key_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::internal("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  std::string content = text.str();
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r' || content.back() == ' ')) {
    content.pop_back();
  }
  return content;
}

// Writes a new key file exclusively (O_EXCL): two processes starting at once cannot both
// create one; the loser reads the winner's.
Result<bool> create_key_file(const std::filesystem::path& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    return Error::internal("cannot create " + path.string() + ": " + std::strerror(errno));
  }
  std::string line = text + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    std::filesystem::remove(path);
    return Error::internal("cannot write " + path.string());
  }
  return true;
}

}  // namespace

Result<MasterKey> MasterKey::from_base64(std::string_view text) {
  std::optional<std::string> bytes = core::base64_decode(text);
  if (!bytes) {
    // URL-safe alphabet, with or without padding (basenc --base64url pads).
    std::string_view unpadded = text;
    while (!unpadded.empty() && unpadded.back() == '=') unpadded.remove_suffix(1);
    bytes = core::base64url_decode(unpadded);
  }
  if (!bytes || bytes->size() != core::kAeadKeySize) {
    if (bytes) core::secure_wipe(*bytes);
    return Error::invalid("MEMBRANED_MASTER_KEY", "the master key must be 32 bytes in base64");
  }
  return MasterKey(std::move(*bytes));
}

Result<MasterKey> MasterKey::load(const std::optional<std::string>& env_value,
                                  const std::filesystem::path& data_dir) {
  if (env_value && !env_value->empty()) return from_base64(*env_value);
  const std::filesystem::path path = data_dir / kKeyFileName;
  if (!std::filesystem::exists(path)) {
    auto bytes = core::random_bytes(core::kAeadKeySize);
    if (!bytes) return bytes.error();
    std::string text = core::base64_encode(*bytes);
    core::secure_wipe(*bytes);
    auto created = create_key_file(path, text);
    core::secure_wipe(text);
    if (!created) return created.error();
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    return Error::invalid("master.key", path.string() + " must not be readable by group or others (chmod 600)");
  }
  auto text = read_key_file(path);
  if (!text) return text.error();
  auto key = from_base64(*text);
  core::secure_wipe(*text);
  if (!key) return Error::invalid("master.key", path.string() + " does not hold a 32-byte base64 key");
  return key;
}

MasterKey::MasterKey(MasterKey&& other) noexcept : key_(std::move(other.key_)) { other.key_.clear(); }
MasterKey& MasterKey::operator=(MasterKey&& other) noexcept {
  if (this != &other) {
    core::secure_wipe(key_);
    key_ = std::move(other.key_);
    other.key_.clear();
  }
  return *this;
}
MasterKey::~MasterKey() { core::secure_wipe(key_); }

Result<std::string> MasterKey::seal(std::string_view plaintext, std::string_view context) const {
  return core::aead_seal(key_, plaintext, context);
}
Result<std::string> MasterKey::open(std::string_view sealed, std::string_view context) const {
  return core::aead_open(key_, sealed, context);
}

}  // namespace membraned::storage
