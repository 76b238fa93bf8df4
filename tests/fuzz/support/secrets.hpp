// The property every credential parser promises (contract §9): an error message never quotes a
// secret. The harnesses find the secrets in their input themselves, crudely, and check that no
// message holds one whole. Only secrets that carry the seeds' marker "EXAMPLE" count: the fuzzer
// keeps it from the seeds, and no message of the service's own wording holds it, so a secret the
// fuzzer made out of a message's words (it learns them) is not taken for a leak. Values that also
// appear elsewhere in the input (a profile name, a Code) do not count either.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace membraned::fuzz {

class Secrets {
 public:
  static constexpr std::string_view kMarker = "EXAMPLE";

  void add(std::string_view value) {
    if (value.find(kMarker) != std::string_view::npos) secrets_.emplace_back(value);
  }
  // `value` is not secret: no secret that is part of it counts.
  void add_public(std::string_view value) { public_.emplace_back(value); }

  // Whether `message` quotes one of the secrets.
  bool quoted_in(std::string_view message) const {
    for (const std::string& secret : secrets_) {
      if (message.find(secret) == std::string_view::npos) continue;
      bool also_public = false;
      for (const std::string& p : public_) also_public = also_public || p.find(secret) != std::string::npos;
      if (!also_public) return true;
    }
    return false;
  }

 private:
  std::vector<std::string> secrets_;
  std::vector<std::string> public_;
};

}  // namespace membraned::fuzz
