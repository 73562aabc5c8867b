//! Several replicas on one PostgreSQL database.
