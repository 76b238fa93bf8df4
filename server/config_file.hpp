// The --config file of membraned: TOML (or INI, for a name ending in .ini) whose top-level keys
// are the long flag names. It is read after the command line and the environment, and gives
// only the settings neither of them gave: flags, then MEMBRANED_* variables, then the file, then
// the defaults. Every error names the file, the key (or the line) and the problem.
#pragma once

#include <CLI/CLI.hpp>

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace membraned::server {

// One key of the file and its value(s) as text: a list gives one value per element, true/false
// give "true"/"false", numbers their decimal text.
struct ConfigSetting {
  std::string key;
  std::vector<std::string> values;
};

// The file's settings, or why it cannot be used: unreadable, a TOML syntax error (with its line
// and column), a table (`[serve]`), or a value that is no string, number, boolean or list of them.
core::Result<std::vector<ConfigSetting>> read_config_file(const std::string& path);

// The key that `key` was probably meant to be, or empty: `data_dir` is `data-dir`, and a key one
// or two letters away from a known one (`lisen`) is that one.
std::string suggest_key(std::string_view key, const std::vector<std::string>& known);

// Gives each option of `app` (parsed already) that neither the command line nor its environment
// variable set the file's value, through the option's own checks. Returns the names of the
// options it set, or the first setting it cannot take: an unknown key or a value refused.
core::Result<std::set<std::string>> apply_config_file(CLI::App& app, const std::string& path);

}  // namespace membraned::server
