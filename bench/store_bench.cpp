// Storage on the hot path and revocation at scale: resolving a token (cached and not), and
// revoking a membrane with 100 000 descendants. Results: docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <iostream>
#include <random>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "storage/sqlite_store.hpp"

namespace {

using namespace membraned;
namespace fs = std::filesystem;

constexpr std::size_t kDescendants = 100000;

struct World {
  fs::path dir;
  std::string key;
  std::unique_ptr<storage::SqliteStore> store;
  core::Token create = *core::Token::generate();
  storage::Membrane root{"root", *core::Token::generate(), *core::Token::generate()};
  storage::Membrane wide{"wide", *core::Token::generate(), *core::Token::generate()};
  core::Token uri = *core::Token::generate();
  std::vector<core::Token> descendants;

  std::unique_ptr<storage::SqliteStore> open(bool durable) {
    auto k = storage::MasterKey::from_base64(key);
    storage::SqliteOptions options{dir / "membraned.db"};
    options.durable_commits = durable;
    auto opened = storage::SqliteStore::open(options, std::move(*k));
    if (!opened) throw std::runtime_error(opened.error().message);
    return std::move(opened).value();
  }

  World() {
    dir = fs::temp_directory_path() / ("membraned-bench-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir);
    key = core::base64_encode(*core::random_bytes(32));
    auto loader = open(/*durable=*/false);  // bulk load only; measured below with durable commits
    (void)loader->create_tenant({create, *core::Token::generate(), *core::Token::generate()});
    (void)loader->create_membrane(create, root);
    (void)loader->create_membrane(create, wide);
    auto config = std::get<core::UriExport>(*core::parse_export_config(
        R"({"uri":"https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations","method":"POST",
            "hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"secret",
            "region":"us-east-1","service":"lambda"}}})"));
    (void)loader->export_uri(root.export_token, uri, config);
    // 100 000 re-exports of the root's capability, through another membrane: all of them
    // depend on the root membrane.
    descendants.reserve(kDescendants);
    for (std::size_t i = 0; i < kDescendants; ++i) {
      descendants.push_back(*core::Token::generate());
      (void)loader->export_reexport(wide.export_token, descendants.back(), uri);
    }
    loader.reset();
    store = open(/*durable=*/true);
  }
  ~World() {
    store.reset();
    fs::remove_all(dir);
  }
};

World& world() {
  static World w;
  return w;
}

void BM_Resolve_Cached(benchmark::State& state) {
  auto& w = world();
  (void)w.store->resolve(w.descendants[7]);
  for (auto _ : state) {
    auto r = w.store->resolve(w.descendants[7]);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Resolve_Cached);

void BM_Resolve_Uncached(benchmark::State& state) {
  auto& w = world();
  std::size_t i = 0;
  for (auto _ : state) {
    // A different descendant each time: 100 000 of them, so each is resolved afresh once.
    auto r = w.store->resolve(w.descendants[i++ % w.descendants.size()]);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Resolve_Uncached)->Iterations(20000);

// Revoking the root membrane cuts all 100 000 descendants. Revoke is idempotent, so it can be
// measured repeatedly: each iteration re-checks the revoke capability, updates the row, bumps
// the epoch and commits durably (synchronous=FULL).
void BM_Revoke_MembraneWith100kDescendants(benchmark::State& state) {
  auto& w = world();
  for (auto _ : state) {
    auto s = w.store->revoke_membrane(w.root.revoke_token);
    if (!s) state.SkipWithError(s.error().message.c_str());
  }
  // (After the timed loop: not measured.) Every sampled descendant is dead.
  std::size_t alive = 0;
  for (std::size_t i = 0; i < w.descendants.size(); i += 997) alive += w.store->resolve(w.descendants[i]).ok();
  if (alive != 0) state.SkipWithError("a descendant survived the revoke");
}
BENCHMARK(BM_Revoke_MembraneWith100kDescendants)->Iterations(50)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
