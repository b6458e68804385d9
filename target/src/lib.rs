//! target: the bundled system under test — Task API instances, a gateway, Redis
//! and PostgreSQL/SQLite — each a real process under one supervisor, so that a
//! fault injected into it is a real fault.

pub mod api;
pub mod auth;
pub mod cache;
pub mod gateway;
pub mod process;
pub mod stack;
pub mod store;
