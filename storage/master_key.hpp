// The 256-bit master key that seals secrets at rest, and the sealer that uses it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace membraned::storage {

class MasterKey {
 public:
  // MEMBRANED_MASTER_KEY (32 bytes in base64, standard or URL-safe alphabet) when `env_value` is
  // set; else DIR/master.key, created with mode 0600 on first use. A key file that is not
  // exactly such a key is an error, never replaced.
  static core::Result<MasterKey> load(const std::optional<std::string>& env_value,
                                      const std::filesystem::path& data_dir);
  static core::Result<MasterKey> from_base64(std::string_view text);

  MasterKey(const MasterKey&) = delete;
  MasterKey& operator=(const MasterKey&) = delete;
  MasterKey(MasterKey&& other) noexcept;
  MasterKey& operator=(MasterKey&& other) noexcept;
  ~MasterKey();

  // AES-256-GCM with `context` as associated data, binding a sealed value to its place.
  core::Result<std::string> seal(std::string_view plaintext, std::string_view context) const;
  core::Result<std::string> open(std::string_view sealed, std::string_view context) const;

 private:
  explicit MasterKey(std::string key) : key_(std::move(key)) {}
  std::string key_;
};

}  // namespace membraned::storage
