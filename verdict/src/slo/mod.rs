//! SLO analysis: the profile's `[slo]` table and the maths that turns a results
//! timeline into verdicts — over the whole run, per stage and per fault window, with
//! error budgets and time to recover. Percentiles always come from merged histograms.
//!
//! Definitions (also shown in the reports):
//! - *Window membership*: an interval `[s, s+d)` belongs to a window `[a, b)` when its
//!   midpoint does, so stages partition the timeline. A window too short to hold a
//!   midpoint (an instantaneous kill) takes the interval that contains `a`.
//! - *Latency objectives* judge the GOOD responses by default (`latency-of = "good"`),
//!   so that fast errors (a 503 in 0.3 ms) never pass for fast service; the same
//!   percentile of the bad responses is reported beside them. `latency-of = "all"`
//!   judges every response. Files without bad-response histograms judge all.
//! - *Time to recover*: `K = ceil(recovery-window / interval)` consecutive intervals
//!   form a sliding window. Starting with the interval that contains the injection, the
//!   first sliding window whose merged counts and histogram meet every run-level
//!   objective marks recovery (0 when the SLO never broke). The timeline cannot place
//!   recovery more finely than its interval (the resolution), so it is reported as a
//!   range: it happened during the interval before that window, i.e. between that
//!   interval's start and the window's start. Both are given from the injection and
//!   from the revert (the fault's end; the injection for a kill). The `recovery`
//!   objective judges the time after the revert — how long the service takes to come
//!   back once the fault is gone, not how long the profile held the fault — by the
//!   upper end of the range, so it is met only when recovery is proven within the
//!   limit. No complete window before the run ended: did not recover.
//! - *Interrupted runs* (Ctrl-C) have no verdict: objectives are measured over what ran
//!   ("so far"), and those that could not be judged are listed, never dropped.
//! - *Error budget* (SRE workbook): allowed bad = (1 − target) × valid; consumed % =
//!   bad / allowed; burn rate = (bad / valid) / (1 − target).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use loadgen::results::{new_histogram, Interval, LatencyOf, Results, ResultsError};
use loadgen::BadPolicy;
use serde::{Deserialize, Serialize};

mod analyze;
mod format;
mod spec;
mod verdict;
mod window;

pub use analyze::*;
pub use format::*;
pub use spec::*;
pub use verdict::*;
use window::*;

/// Stages and faults are the run record's own types: the analysis reads what
/// the run wrote, not a copy of it.
pub use crate::record::{FaultRecord, StageWindow};

#[cfg(test)]
mod tests;
