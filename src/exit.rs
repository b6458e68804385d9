//! Exit codes, the contract with CI scripts: 0 every SLO met, 1 slolab itself
//! failed (bad input, cannot start), 3 an SLO was not met, 4 compare found a
//! regression, 5 merge found the run INCOMPLETE, 130 interrupted (Ctrl-C or
//! SIGTERM) before a verdict.

use std::process::ExitCode;

pub const SUCCESS: ExitCode = ExitCode::SUCCESS;
pub const FAILURE: ExitCode = ExitCode::FAILURE;
pub const SLO_NOT_MET: u8 = 3;
pub const REGRESSION: u8 = 4;
/// `merge`: a shard was missing or interrupted. The merged file is written
/// and marked, but it is not the whole run, so it gets no verdict.
pub const INCOMPLETE: u8 = 5;
/// 128 + SIGINT, the shell convention: the run is incomplete, so neither "met"
/// nor "not met" would be honest.
pub const INTERRUPTED: u8 = 130;
