// Storage on the hot path and revocation at scale: resolving a token (cached and not), and
// revoking a membrane with 1, 1 000 and 100 000 descendants. Results: docs/benchmarks.md.
//
// SQLite always; PostgreSQL too when MEMBRANED_TEST_PG_URL names a server this may create a
// database on (it makes a fresh one, loads it, and drops it at the end), for example the test
// cluster of tests/support/pg_cluster.sh. Without it the PostgreSQL cases are not registered.
//
// The allocator is set up as membraned sets it (storage/process_tuning.hpp);
// STORE_BENCH_DEFAULT_MALLOC=1 leaves glibc's defaults, to see what that setting is worth.
#include <benchmark/benchmark.h>
#include <libpq-fe.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "storage/open_store.hpp"
#include "storage/process_tuning.hpp"

namespace {

using namespace membraned;
namespace fs = std::filesystem;

constexpr std::size_t kDescendants = 100000;
constexpr std::size_t kRevokeSizes[] = {1, 1000, kDescendants};

// A database of its own for the run. `open(durable)` opens a store on it; durable=false only for
// the bulk load (measured below with durable commits).
struct Database {
  std::function<std::unique_ptr<storage::Store>(const std::string& key, bool durable)> open;
  std::function<void()> remove;
};

Database sqlite_database() {
  auto dir = fs::temp_directory_path() / ("membraned-bench-" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  return {[dir](const std::string& key, bool durable) -> std::unique_ptr<storage::Store> {
            auto k = storage::MasterKey::from_base64(key);
            storage::SqliteOptions options{dir / "membraned.db"};
            options.durable_commits = durable;
            auto opened = storage::open_sqlite_store(options, std::move(*k));
            if (!opened) throw std::runtime_error(opened.error().message);
            return std::move(opened).value();
          },
          [dir] { fs::remove_all(dir); }};
}

// Benchmark code, not the service: the database's name is made here and quoted by libpq.
void pg_admin(const std::string& url, const std::string& statement_head, const std::string& name,
              const std::string& statement_tail = "") {
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("PostgreSQL: " + message);
  }
  char* quoted = PQescapeIdentifier(conn, name.c_str(), name.size());
  std::string sql = statement_head + quoted + statement_tail;
  PQfreemem(quoted);
  PGresult* result = PQexec(conn, sql.c_str());
  bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
  std::string message = PQerrorMessage(conn);
  PQclear(result);
  PQfinish(conn);
  if (!ok) throw std::runtime_error(sql + ": " + message);
}

std::string url_with_database(const std::string& url, const std::string& database) {
  auto authority = url.find("://") + 3;
  auto end = std::min(url.find('?', authority), url.size());
  auto slash = url.find('/', authority);
  if (slash == std::string::npos || slash > end) return url.substr(0, end) + "/" + database + url.substr(end);
  return url.substr(0, slash + 1) + database + url.substr(end);
}

Database postgres_database(const std::string& admin_url) {
  std::string name = "membraned_bench_" + core::hex_encode(*core::random_bytes(8));
  pg_admin(admin_url, "CREATE DATABASE ", name);
  std::string url = url_with_database(admin_url, name);
  return {[url](const std::string& key, bool durable) -> std::unique_ptr<storage::Store> {
            auto k = storage::MasterKey::from_base64(key);
            storage::PostgresOptions options;
            options.url = url;
            options.durable_commits = durable;
            auto opened = storage::open_postgres_store(options, std::move(*k));
            if (!opened) throw std::runtime_error(opened.error().message);
            return std::move(opened).value();
          },
          [admin_url, name] { pg_admin(admin_url, "DROP DATABASE IF EXISTS ", name, " WITH (FORCE)"); }};
}

// Every export makes a grant (contract §11): a unique handle and a revoke capability, no limits.
storage::NewGrant next_grant() {
  static std::uint64_t next = 0;
  char id[32];
  std::snprintf(id, sizeof id, "g_%024llx", static_cast<unsigned long long>(next++));
  return storage::NewGrant{id, *core::Token::generate(), {}};
}

struct World {
  Database database;
  std::string key;
  std::unique_ptr<storage::Store> store;
  core::Token create = *core::Token::generate();
  storage::Membrane root{"root", *core::Token::generate(), *core::Token::generate()};
  storage::Membrane wide{"wide", *core::Token::generate(), *core::Token::generate()};
  core::Token uri = *core::Token::generate();
  std::vector<core::Token> descendants;
  // For each size in kRevokeSizes: a membrane whose capability has that many re-exports (the
  // largest is `root` above).
  struct Revocable {
    storage::Membrane membrane{"", *core::Token::generate(), *core::Token::generate()};
    std::vector<core::Token> descendants;
  };
  std::map<std::size_t, Revocable> revocable;

  explicit World(Database db) : database(std::move(db)) {
    key = core::base64_encode(*core::random_bytes(32));
    auto loader = database.open(key, /*durable=*/false);  // bulk load only
    (void)loader->create_tenant({create, *core::Token::generate(), *core::Token::generate()});
    (void)loader->create_membrane(create, root);
    (void)loader->create_membrane(create, wide);
    auto config = std::get<core::UriExport>(*core::parse_export_config(
        R"({"uri":"https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations","method":"POST",
            "hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"secret",
            "region":"us-east-1","service":"lambda"}}})"));
    (void)loader->export_uri(root.export_token, uri, config, next_grant());
    // 100 000 re-exports of the root's capability, through another membrane: all of them
    // depend on the root membrane.
    descendants.reserve(kDescendants);
    for (std::size_t i = 0; i < kDescendants; ++i) {
      descendants.push_back(*core::Token::generate());
      (void)loader->export_reexport(wide.export_token, descendants.back(), uri, next_grant());
    }
    revocable[kDescendants] = {root, descendants};
    for (std::size_t size : kRevokeSizes) {
      if (size == kDescendants) continue;
      Revocable& r = revocable[size];
      r.membrane.id = "root-" + std::to_string(size);
      (void)loader->create_membrane(create, r.membrane);
      auto top = *core::Token::generate();
      (void)loader->export_uri(r.membrane.export_token, top, config, next_grant());
      for (std::size_t i = 0; i < size; ++i) {
        r.descendants.push_back(*core::Token::generate());
        (void)loader->export_reexport(wide.export_token, r.descendants.back(), top, next_grant());
      }
    }
    loader.reset();
    store = database.open(key, /*durable=*/true);
  }
  ~World() {
    store.reset();
    try {
      database.remove();
    } catch (const std::exception& e) {
      std::cerr << "store_bench: " << e.what() << "\n";
    }
  }
};

World& sqlite_world() {
  static World w(sqlite_database());
  return w;
}

World& postgres_world() {
  static World w(postgres_database(std::getenv("MEMBRANED_TEST_PG_URL")));
  return w;
}

void resolve_cached(benchmark::State& state, World& w) {
  (void)w.store->resolve(w.descendants[7]);
  for (auto _ : state) {
    auto r = w.store->resolve(w.descendants[7]);
    benchmark::DoNotOptimize(r);
  }
}

void resolve_uncached(benchmark::State& state, World& w) {
  std::size_t i = 0;
  for (auto _ : state) {
    // A different descendant each time: 100 000 of them, so each is resolved afresh once.
    auto r = w.store->resolve(w.descendants[i++ % w.descendants.size()]);
    benchmark::DoNotOptimize(r);
  }
}

// Revoking a membrane cuts all its descendants (state.range(0) of them). Revoke is idempotent,
// so it can be measured repeatedly: each iteration re-checks the revoke capability, updates the
// row, bumps the epoch and commits durably (SQLite synchronous=FULL; PostgreSQL
// synchronous_commit on). The first iteration is the one that kills; the cost is the same.
void revoke(benchmark::State& state, World& w) {
  auto& r = w.revocable.at(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto s = w.store->revoke_membrane(r.membrane.revoke_token);
    if (!s) state.SkipWithError(s.error().message.c_str());
  }
  // (After the timed loop: not measured.) Every sampled descendant is dead.
  std::size_t alive = 0;
  for (std::size_t i = 0; i < r.descendants.size(); i += 997) alive += w.store->resolve(r.descendants[i]).ok();
  if (alive != 0) state.SkipWithError("a descendant survived the revoke");
}

void BM_Resolve_Cached(benchmark::State& state) { resolve_cached(state, sqlite_world()); }
BENCHMARK(BM_Resolve_Cached);
void BM_Resolve_Uncached(benchmark::State& state) { resolve_uncached(state, sqlite_world()); }
BENCHMARK(BM_Resolve_Uncached)->Iterations(20000);
void BM_Revoke(benchmark::State& state) { revoke(state, sqlite_world()); }
BENCHMARK(BM_Revoke)->Arg(1)->Arg(1000)->Arg(kDescendants)->Iterations(50)->Unit(benchmark::kMillisecond);

void register_postgres_cases() {
  const char* url = std::getenv("MEMBRANED_TEST_PG_URL");
  if (url == nullptr || *url == '\0') {
    std::cerr << "store_bench: MEMBRANED_TEST_PG_URL is unset: PostgreSQL cases skipped\n";
    return;
  }
  benchmark::RegisterBenchmark("BM_Postgres_Resolve_Cached",
                               [](benchmark::State& s) { resolve_cached(s, postgres_world()); });
  benchmark::RegisterBenchmark("BM_Postgres_Resolve_Uncached",
                               [](benchmark::State& s) { resolve_uncached(s, postgres_world()); })
      ->Iterations(20000);
  benchmark::RegisterBenchmark("BM_Postgres_Revoke", [](benchmark::State& s) { revoke(s, postgres_world()); })
      ->Arg(1)
      ->Arg(1000)
      ->Arg(kDescendants)
      ->Iterations(50)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  if (std::getenv("STORE_BENCH_DEFAULT_MALLOC") == nullptr) storage::keep_freed_memory_for_reuse();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_postgres_cases();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
