#include "server/config_file.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>

namespace membraned::server {

namespace {

using core::Error;

std::string located(const std::string& path, const toml::source_region& where) {
  return path + ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
}

std::optional<std::string> scalar_text(const toml::node& node) {
  if (const auto* text = node.as_string()) return text->get();
  if (const auto* integer = node.as_integer()) return std::to_string(integer->get());
  if (const auto* boolean = node.as_boolean()) return boolean->get() ? "true" : "false";
  if (const auto* number = node.as_floating_point()) {
    std::ostringstream out;
    out << number->get();
    return out.str();
  }
  return std::nullopt;
}

core::Result<std::vector<ConfigSetting>> read_toml(const std::string& path, const std::string& text) {
  toml::table table;
  try {
    table = toml::parse(text, path);
  } catch (const toml::parse_error& error) {
    return Error::invalid(
        "config", located(path, error.source()) + ": not valid TOML: " + std::string(error.description()));
  }
  std::vector<ConfigSetting> settings;
  for (const auto& [key, node] : table) {
    const std::string name(key.str());
    const std::string where = located(path, node.source());
    if (node.is_table()) {
      return Error::invalid("config", where + ": [" + name +
                                          "]: settings go at the top level of the file, "
                                          "outside any [section]");
    }
    ConfigSetting setting{name, {}};
    if (const auto* list = node.as_array()) {
      for (const auto& element : *list) {
        auto value = scalar_text(element);
        if (!value)
          return Error::invalid("config", where + ": " + name + ": a list may hold strings and numbers only");
        setting.values.push_back(std::move(*value));
      }
    } else if (auto value = scalar_text(node)) {
      setting.values.push_back(std::move(*value));
    } else {
      return Error::invalid("config",
                            where + ": " + name + ": the value must be a string, a number, true or false");
    }
    settings.push_back(std::move(setting));
  }
  return settings;
}

// INI as CLI11 reads it (`key=value`, `;` or `#` comments), with no sections either.
core::Result<std::vector<ConfigSetting>> read_ini(const std::string& path, const std::string& text) {
  std::istringstream in(text);
  std::vector<ConfigSetting> settings;
  for (const CLI::ConfigItem& item : CLI::ConfigINI().from_config(in)) {
    if (!item.parents.empty()) {
      return Error::invalid("config", path + ": [" + item.parents.front() +
                                          "]: settings go at the top level of "
                                          "the file, outside any [section]");
    }
    settings.push_back({item.name, item.inputs});
  }
  return settings;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Whether the command line or the environment gave `option` (CLI11 counts both alike).
bool given_before_the_file(const CLI::Option& option) { return option.count() > 0; }

}  // namespace

core::Result<std::vector<ConfigSetting>> read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::invalid("config", "cannot read --config " + path + ": " + std::strerror(errno));
  std::stringstream contents;
  contents << in.rdbuf();
  const bool ini = path.size() >= 4 && path.compare(path.size() - 4, 4, ".ini") == 0;
  return ini ? read_ini(path, contents.str()) : read_toml(path, contents.str());
}

std::string suggest_key(std::string_view key, const std::vector<std::string>& known) {
  std::string kebab(key);
  std::transform(kebab.begin(), kebab.end(), kebab.begin(), [](char c) {
    return c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  if (std::find(known.begin(), known.end(), kebab) != known.end()) return kebab;
  std::string best;
  std::size_t best_distance = 3;  // more than two edits away is another word
  for (const std::string& name : known) {
    const std::size_t distance = edit_distance(kebab, name);
    if (distance < best_distance) {
      best_distance = distance;
      best = name;
    }
  }
  return best;
}

core::Result<std::set<std::string>> apply_config_file(CLI::App& app, const std::string& path) {
  auto settings = read_config_file(path);
  if (!settings) return settings.error();
  std::vector<std::string> known;
  for (const CLI::Option* option : app.get_options()) {
    const std::string name = option->get_single_name();
    if (name != "help" && name != "version" && name != "config") known.push_back(name);
  }
  std::set<std::string> applied;
  for (const ConfigSetting& setting : *settings) {
    const bool is_known = std::find(known.begin(), known.end(), setting.key) != known.end();
    CLI::Option* option = is_known ? app.get_option_no_throw("--" + setting.key) : nullptr;
    if (option == nullptr) {
      const std::string meant = suggest_key(setting.key, known);
      return Error::invalid(setting.key, path + ": unknown key \"" + setting.key + "\"" +
                                             (meant.empty() ? "" : " (did you mean \"" + meant + "\"?)") +
                                             "; the keys are the long flag names of membraned --help");
    }
    if (given_before_the_file(*option)) continue;
    if (setting.values.size() > 1 && option->get_items_expected_max() <= 1) {
      return Error::invalid(setting.key, path + ": " + setting.key + ": takes one value, not a list");
    }
    try {
      option->add_result(setting.values);
      option->run_callback();
    } catch (const CLI::Error& error) {
      return Error::invalid(setting.key, path + ": " + setting.key + ": " + error.what());
    }
    applied.insert(setting.key);
  }
  return applied;
}

}  // namespace membraned::server
