// The shared backend: one PostgreSQL database that several membraned instances use at once. Its
// SQL, migrations (one instance at a time), advisory locks and a bounded connection pool that
// reconnects after a restart or failover; the membrane rules are storage/membrane_store's.
#pragma once

#include <memory>

#include "storage/backend.hpp"
#include "storage/open_store.hpp"

namespace membraned::storage::pg {

int schema_version();  // migrations this build knows

// Connects and applies pending migrations, under an advisory lock: instances starting at once on
// one database migrate one after the other, the later ones finding the work done.
core::Result<std::unique_ptr<Backend>> open_backend(const PostgresOptions& options);

// Whether the database already holds membraned's data (its key check): the caller must then
// not make a new master key for it.
core::Result<bool> holds_data(const PostgresOptions& options);

}  // namespace membraned::storage::pg
