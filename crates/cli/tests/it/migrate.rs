//! Migration of an embedded data directory to PostgreSQL, and `audit verify --database`.
