// A grant for the store tests to export with: a fresh handle and revoke capability, and the
// limits given (none by default).
#pragma once

#include <atomic>
#include <string>

#include "storage/store.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::test {

inline storage::NewGrant new_grant(core::GrantLimits limits = {}) {
  // Unique in one process; each test database is new.
  static std::atomic<int> next{0};
  return storage::NewGrant{"g_test" + std::to_string(next++), new_token(), std::move(limits)};
}

}  // namespace membraned::test
