// Helpers shared by the unit tests: reading files, the location of the official vectors.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

namespace membraned::test {

std::filesystem::path shared_dir();  // ../shared beside the repository (MEMBRANED_SHARED_DIR)
std::string read_file(const std::filesystem::path& path);  // whole file; fails the test if absent
// "2015-08-30T12:36:00Z" (UTC, whole seconds).
std::chrono::system_clock::time_point parse_iso8601_utc(std::string_view text);

}  // namespace membraned::test
