#include "tests/support/test_support.hpp"

#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace membraned::test {

std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("MEMBRANED_SHARED_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return MEMBRANED_SHARED_DIR;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::chrono::system_clock::time_point parse_iso8601_utc(std::string_view text) {
  std::tm tm{};
  std::string s(text);
  if (strptime(s.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) == nullptr) {
    throw std::runtime_error("bad timestamp " + s);
  }
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace membraned::test
