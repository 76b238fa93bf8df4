// membraned's entry point. Until the server lands (next release) the main job prints the
// version and a freshly generated capability, which proves the build, OpenSSL's CSPRNG and the
// token code work on this machine.
#include <CLI/CLI.hpp>

#include <iostream>

#include "core/token.hpp"
#include "core/version.hpp"

int main(int argc, char** argv) {
  using namespace membraned::core;
  CLI::App app{"membraned: a capability membrane service that signs and proxies requests to AWS"};
  std::string authority = "127.0.0.1:8080";
  bool version_only = false;
  app.add_option("--authority", authority,
                 "HOST[:PORT] written into capability URIs (default 127.0.0.1:8080)");
  app.add_flag("--version", version_only, "Print the version and exit");
  CLI11_PARSE(app, argc, argv);

  std::cout << "membraned " << kVersion << "\n";
  if (version_only) return 0;

  auto token = Token::generate();
  if (!token) {
    std::cerr << "membraned: " << token.error().message << "\n";
    return 1;
  }
  std::cout << "A freshly generated capability (not bound to anything yet; the server that\n"
               "resolves capabilities arrives with the next release):\n  "
            << CapabilityUri(authority, *token).serialize() << "\n";
  return 0;
}
