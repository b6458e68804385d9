//! loadgen's integration tests, one binary (one link) for the crate: the engine
//! over plain HTTP and over TLS and HTTP/2, against real servers on port 0.
//! `ci/test.sh` runs `engine::` and `tls::` again on each I/O backend by name.

mod engine;
mod support;
mod tls;
