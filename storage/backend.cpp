#include "storage/backend.hpp"

namespace membraned::storage {

core::Result<std::map<std::string, Walk>> BackendSession::walk_each(const std::vector<std::string>& digests) {
  std::map<std::string, Walk> walks;
  for (const std::string& digest : digests) {
    auto found = walk(digest);
    if (!found) return found.error();
    if (!found->links.empty()) walks.emplace(digest, std::move(*found));
  }
  return walks;
}

}  // namespace membraned::storage
