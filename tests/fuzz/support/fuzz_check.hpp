// What every fuzz target shares: a property that must hold, checked in the fuzz build and in the
// replay build alike. A violation prints what was expected and aborts, which libFuzzer reports as
// a crash (and saves the input); assert() would vanish in an NDEBUG build.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace membraned::fuzz {

[[noreturn]] inline void violated(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: fuzz property violated: %s\n", file, line, what);
  std::abort();
}

inline std::string_view as_text(const unsigned char* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace membraned::fuzz

#define FUZZ_CHECK(condition) \
  ((condition) ? static_cast<void>(0) : ::membraned::fuzz::violated(__FILE__, __LINE__, #condition))
