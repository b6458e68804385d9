//! chaos's integration tests, one binary (one link) for the crate: the injector
//! and its ledger against real processes, the fault proxy against real sockets.

mod injector;
mod ledger;
mod proxy;
mod support;
