//! What the target crate's tests share: the Task API's side (instances over real
//! databases, a JSON client, the scenarios both databases pass) and the
//! gateway's (backends that misbehave on demand, a running gateway, a client).

pub mod api;
pub mod gateway;
