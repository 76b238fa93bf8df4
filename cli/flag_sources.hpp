// Where the value of a flag that carries a secret comes from, so that the secret need not be on
// the command line (ps, /proc/PID/cmdline and the shell's history show every argument):
//   @FILE     the file's bytes
//   -         standard input, to its end (one flag at most per run)
//   env:NAME  the environment variable NAME
//   anything else is the value itself, as before.
// A value read from a source that is one line (a key, a token) loses its trailing line end (LF or
// CRLF), as `echo SECRET > FILE` adds one; a value of several lines (PEM) is kept byte for byte.
// Pure but for the file, the environment and standard input it reads.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace membraned::cli {

inline constexpr std::string_view kEnvironmentPrefix = "env:";

class FlagSources {
 public:
  // `read_stdin`: all of standard input (the real one unless a test gives another).
  explicit FlagSources(std::function<std::string()> read_stdin = {});

  // Replaces `value` with what it names, when it names a source. Errors name the flag, and the
  // file or variable, never a value.
  core::Status resolve(std::string_view flag, std::string& value);
  core::Status resolve(std::string_view flag, std::optional<std::string>& value);

  // Standard input is read by `flag` in some other way (invoke --data -): no flag may read it too.
  void claim_stdin(std::string_view flag) { stdin_reader_ = flag; }

 private:
  core::Result<std::string> read_source(std::string_view flag, std::string_view given);

  std::function<std::string()> read_stdin_;
  std::string stdin_reader_;  // the flag that reads standard input, once one does
};

// `text` without its trailing LF or CRLF when it is one line; as it is otherwise.
std::string without_final_line_end(std::string text);

// All of standard input, byte for byte.
std::string read_stdin_bytes();
// The file's bytes; the error says which file and why ("cannot read PATH: REASON").
core::Result<std::string> read_file_bytes(const std::string& path);

}  // namespace membraned::cli
