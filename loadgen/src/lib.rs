//! loadgen: an HTTP load generator with hey's closed model and a coordinated-
//! omission-correct open model, recording HDR histograms per interval and a full
//! outcome taxonomy into a mergeable results file.

pub mod plan;
pub mod results;

pub use plan::{BadPolicy, LoadPlan, Model, RequestTemplate, Stage, Stop};
pub use results::{Results, SCHEMA_VERSION};
