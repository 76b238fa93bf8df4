// Helpers shared by the unit tests: reading files, the location of the signing vectors the
// repository holds (tests/vectors), temporary directories.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "core/aws_credentials.hpp"
#include "core/token.hpp"

namespace membraned::test {

// The folder of the official signing vectors: tests/vectors in this repository (compiled in),
// or the folder named by the environment variable MEMBRANED_VECTORS_DIR when it is set and not
// empty. It holds sigv4-suite/ and cap1-vectors.json.
std::filesystem::path vectors_dir();
std::string read_file(const std::filesystem::path& path);  // whole file; fails the test if absent
// "2015-08-30T12:36:00Z" (UTC, whole seconds). Independent of core::parse_iso8601 on purpose
// (strptime and timegm): an oracle the tests hold core's date code against.
std::chrono::system_clock::time_point parse_iso8601_utc(std::string_view text);

// An environment of exactly these variables, for code that reads one through core::EnvLookup.
core::EnvLookup env_of(std::map<std::string, std::string> vars);

// A new random token (throws if the CSPRNG fails).
core::Token new_token();

// A fresh directory (mode 0700) under the system temporary directory, named PREFIX followed by
// random characters, removed with everything in it when the object goes. Throws
// std::runtime_error when it cannot be made.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "membraned-test-");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace membraned::test
