// Loads a SQLite store with many grants for bench/many_holders.sh: one tenant, one membrane, and
// N uri exports of the same Lambda-shaped SigV4 configuration, each a grant of its own with its
// own token, as an owner who hands one grant to each holder would make them. The tokens go to
// TOKENS_FILE, one per line; the master key is printed (membraned then opens the store with
// MEMBRANED_MASTER_KEY). Commits are not durable: a bulk load, not what is measured.
//   seed_grants DATA_DIR N UPSTREAM_URI TOKENS_FILE
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "storage/open_store.hpp"

namespace {

using namespace membraned;

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "seed_grants: " << what << "\n";
  std::exit(1);
}

template <class T>
T must(core::Result<T> result, const char* what) {
  if (!result) fail(std::string(what) + ": " + result.error().message);
  return std::move(*result);
}

void must(const storage::Status& status, const char* what) {
  if (!status) fail(std::string(what) + ": " + status.error().message);
}

// A grant as the API makes one (api/api.cpp): a random id and its own revoke capability.
storage::NewGrant new_grant() {
  auto id = must(core::random_bytes(16), "random grant id");
  return storage::NewGrant{"g_" + core::hex_encode(id), must(core::Token::generate(), "token"), {}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) fail("usage: seed_grants DATA_DIR N UPSTREAM_URI TOKENS_FILE");
  const std::filesystem::path dir = argv[1];
  const long long n = std::atoll(argv[2]);
  const std::string upstream = argv[3];
  std::ofstream tokens(argv[4]);
  if (n <= 0 || !tokens) fail("N must be positive and TOKENS_FILE writable");

  std::filesystem::create_directories(dir);
  const std::string key_text = core::base64_encode(must(core::random_bytes(32), "random key"));
  storage::SqliteOptions options{dir / "membraned.db"};
  options.durable_commits = false;
  options.resolution_cache_bytes = 0;  // every export resolves its exporter: nothing to keep
  auto store = must(storage::open_sqlite_store(options, must(storage::MasterKey::from_base64(key_text), "key")),
                    "open the store");

  const storage::TenantTokens tenant{must(core::Token::generate(), "token"), must(core::Token::generate(), "token"),
                                     must(core::Token::generate(), "token")};
  must(store->create_tenant(tenant), "create the tenant");
  const storage::Membrane membrane{"holders", must(core::Token::generate(), "token"),
                                   must(core::Token::generate(), "token")};
  must(store->create_membrane(tenant.create, membrane), "create the membrane");
  auto parsed = must(core::parse_export_config(
                         R"({"uri":")" + upstream +
                         R"(","method":"POST","hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIDEXAMPLE",
                         "secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1",
                         "service":"lambda"}}})"),
                     "the export configuration");
  const auto& config = std::get<core::UriExport>(parsed);

  const auto started = std::chrono::steady_clock::now();
  for (long long i = 0; i < n; ++i) {
    const auto token = must(core::Token::generate(), "token");
    must(store->export_uri(membrane.export_token, token, config, new_grant()), "export");
    tokens << token.text() << '\n';
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cerr << "seed_grants: " << n << " grants in " << seconds << " s\n";
  std::cout << key_text << "\n";
  return tokens.flush() ? 0 : 1;
}
