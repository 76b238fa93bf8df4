#include "cli/flag_sources.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace membraned::cli {

namespace {

core::Error flag_error(std::string_view flag, const std::string& message) {
  return core::Error::invalid(std::string(flag.substr(flag.find_first_not_of('-'))),
                              std::string(flag) + ": " + message);
}

bool is_environment_name(std::string_view name) {
  if (name.empty() || (name.front() >= '0' && name.front() <= '9')) return false;
  for (char c : name) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

}  // namespace

std::string without_final_line_end(std::string text) {
  std::size_t end = text.size();
  if (end > 0 && text[end - 1] == '\n') --end;
  if (end > 0 && text[end - 1] == '\r') --end;
  if (std::string_view(text).substr(0, end).find('\n') != std::string_view::npos) return text;
  text.resize(end);
  return text;
}

FlagSources::FlagSources(std::function<std::string()> read_stdin)
    : read_stdin_(read_stdin ? std::move(read_stdin) : read_stdin_bytes) {}

core::Result<std::string> FlagSources::read_source(std::string_view flag, std::string_view given) {
  if (given == "-") {
    if (!stdin_reader_.empty()) {
      return flag_error(flag, "standard input is already read by " + stdin_reader_ + "; give this one as @FILE or " +
                                  std::string(kEnvironmentPrefix) + "NAME");
    }
    stdin_reader_ = flag;
    return read_stdin_();
  }
  if (given.front() == '@') {
    const std::string path(given.substr(1));
    if (path.empty()) return flag_error(flag, "@ must be followed by a file name");
    auto bytes = read_file_bytes(path);
    if (!bytes) return flag_error(flag, bytes.error().message);
    return bytes;
  }
  const std::string name(given.substr(kEnvironmentPrefix.size()));
  if (!is_environment_name(name)) {
    return flag_error(flag, std::string(kEnvironmentPrefix) + " must be followed by an environment variable's name");
  }
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return flag_error(flag, "the environment variable " + name + " is not set");
  return std::string(value);
}

core::Status FlagSources::resolve(std::string_view flag, std::string& value) {
  const bool named = value == "-" || (!value.empty() && value.front() == '@') ||
                     std::string_view(value).substr(0, kEnvironmentPrefix.size()) == kEnvironmentPrefix;
  if (!named) return core::ok_status();
  const std::string source = value.front() == '@' ? value : value == "-" ? "standard input" : value;
  auto read = read_source(flag, value);
  if (!read) return read.error();
  std::string text = without_final_line_end(std::move(*read));
  if (text.empty()) return flag_error(flag, source + " is empty");
  value = std::move(text);
  return core::ok_status();
}

core::Status FlagSources::resolve(std::string_view flag, std::optional<std::string>& value) {
  if (!value) return core::ok_status();
  return resolve(flag, *value);
}

std::string read_stdin_bytes() {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

core::Result<std::string> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::Error::invalid("file", "cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return core::Error::invalid("file", "cannot read " + path);
  return bytes.str();
}

}  // namespace membraned::cli
