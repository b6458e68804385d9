//! The target crate's integration tests, one binary (one link): the Task API on
//! SQLite, PostgreSQL and Redis, served for real; the gateway; the process
//! launchers; Idempotency-Key retention.

mod api_cache;
mod api_postgres;
mod api_serve;
mod api_sqlite;
mod gateway_api;
mod gateway_balance;
mod gateway_edge;
mod gateway_resilience;
mod process_launchers;
mod store_idempotency;
mod support;
