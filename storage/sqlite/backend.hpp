// The embedded default backend: one SQLite database file. Its SQL, migrations and connection
// pool; the membrane rules are storage/membrane_store's.
#pragma once

#include <memory>

#include "storage/backend.hpp"
#include "storage/open_store.hpp"

namespace membraned::storage::sqlite {

int schema_version();  // migrations this build knows

// Opens (creating if needed) the database file and applies pending migrations. A database of a
// newer schema is refused.
core::Result<std::unique_ptr<Backend>> open_backend(const SqliteOptions& options);

}  // namespace membraned::storage::sqlite
