//! What a run concludes: the SLO analysis, the reports and the comparison
//! statistics over slolab results files. A library of its own because `run`,
//! `report` and `compare` call it today and a capacity search, a shard merge and
//! a results collector will tomorrow; the binary keeps only the CLI and wiring.

pub mod capacity;
pub mod compare;
pub mod merge;
pub mod record;
pub mod report;
pub mod slo;
