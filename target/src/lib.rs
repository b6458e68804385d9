//! target: the bundled system under test — Task API instances, a gateway, Redis
//! and PostgreSQL/SQLite — each a real process under one supervisor, so that a
//! fault injected into it is a real fault.

pub mod auth;
