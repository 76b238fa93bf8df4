// Usage errors of membraned's and capi's command lines, said for people: the unknown command or
// flag named, with the one probably meant and the ones there are, where CLI11 says only "A
// subcommand is required" or "The following arguments were not expected".
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace membraned::core {

// The message for `error`, raised by `app` parsing `args` (in order, without the program name).
std::string explain_parse_error(const CLI::App& app, const CLI::ParseError& error,
                                const std::vector<std::string>& args);

}  // namespace membraned::core
