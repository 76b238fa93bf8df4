#include "core/command_line.hpp"

#include <optional>

#include "core/suggest.hpp"

namespace membraned::core {

namespace {

std::vector<std::string> subcommand_names(const CLI::App& level) {
  std::vector<std::string> names;
  for (const CLI::App* sub : level.get_subcommands([](const CLI::App*) { return true; })) {
    names.push_back(sub->get_name());
  }
  return names;
}

bool names_command(const CLI::App& level, const std::string& word) {
  for (const CLI::App* sub : level.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->check_name(word)) return true;
  }
  return false;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// The option named by `arg` ("--name" or "--name=value") at `level` or above it, if any.
const CLI::Option* option_named(const CLI::App* level, const std::string& arg) {
  const std::string name = arg.substr(0, arg.find('='));
  for (; level != nullptr; level = level->get_parent()) {
    if (const CLI::Option* option = level->get_option_no_throw(name)) return option;
  }
  return nullptr;
}

std::vector<std::string> long_flags(const CLI::App* level) {
  std::vector<std::string> names;
  for (; level != nullptr; level = level->get_parent()) {
    for (const CLI::Option* option : level->get_options()) {
      for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
    }
  }
  return names;
}

std::string unknown_flag(const std::string& arg, const CLI::App* level) {
  const std::string name = arg.substr(0, arg.find('='));
  std::string text = "unknown flag \"" + name + "\"";
  if (auto meant = closest_name(name, long_flags(level))) text += "; did you mean \"" + *meant + "\"?";
  return text;
}

}  // namespace

std::string explain_parse_error(const CLI::App& app, const CLI::ParseError& error,
                                const std::vector<std::string>& args) {
  // Walk the words as CLI11 does: flags (with their values) anywhere, commands in order.
  // A missing command is said first: a flag before it may belong to the command not given.
  const CLI::App* level = &app;
  std::string path = app.get_name();
  std::optional<std::string> first_unknown_flag;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") break;
    if (arg.starts_with("--")) {
      const CLI::Option* option = option_named(level, arg);
      if (option == nullptr) {
        if (!first_unknown_flag) first_unknown_flag = unknown_flag(arg, level);
        // The word after it is taken for its value unless it names a command.
        if (arg.find('=') == std::string::npos && i + 1 < args.size() && !args[i + 1].starts_with("-") &&
            !names_command(*level, args[i + 1])) {
          ++i;
        }
        continue;
      }
      if (arg.find('=') == std::string::npos && option->get_expected_min() > 0) {
        if (i + 1 >= args.size()) return "\"" + arg + "\" needs a value";
        ++i;  // its value
      }
      continue;
    }
    if (arg.starts_with("-")) continue;
    const std::vector<std::string> names = subcommand_names(*level);
    if (names.empty()) break;  // an argument of the command reached, not a command
    const CLI::App* sub = nullptr;
    for (const CLI::App* candidate : level->get_subcommands([](const CLI::App*) { return true; })) {
      if (candidate->check_name(arg)) sub = candidate;
    }
    if (sub == nullptr) {
      std::string text = "unknown command \"" + arg + "\" for \"" + path + "\"";
      if (auto meant = closest_name(arg, names)) {
        text += "; did you mean \"" + *meant + "\"?";
      } else if (option_named(level, "--" + arg) != nullptr) {
        text += "; did you mean \"--" + arg + "\"?";  // "version", "help"
      }
      return text + " (the commands: " + joined(names) + ")";
    }
    level = sub;
    path += " " + sub->get_name();
  }
  if (level->get_require_subcommand_min() > 0 && !subcommand_names(*level).empty()) {
    bool chosen = false;
    for (const CLI::App* sub : level->get_subcommands([](const CLI::App*) { return true; })) chosen |= sub->parsed();
    if (!chosen) return "\"" + path + "\" needs a command: " + joined(subcommand_names(*level));
  }
  if (first_unknown_flag) return *first_unknown_flag;
  return error.what();
}

}  // namespace membraned::core
