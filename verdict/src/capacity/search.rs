//! The search itself, as a state machine with no I/O: it says which rate to probe
//! next and how long to hold it, and is told what each probe found. Grow
//! geometrically until the first failure, bisect between the last pass and the
//! first fail down to the resolution, then confirm the last pass on a longer
//! plateau (re-probed once when the confirmation disagrees).

use serde::{Deserialize, Serialize};

/// Why a probe was run: what the search was doing when it chose the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Grow,
    Bisect,
    /// The last pass held again on the longer plateau.
    Confirm,
    /// A second confirmation after the first disagreed.
    Reprobe,
}

impl ProbeKind {
    /// Confirmations hold the longer plateau.
    pub fn is_confirmation(self) -> bool {
        matches!(self, Self::Confirm | Self::Reprobe)
    }
}

/// What one probe found, as far as the search cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeVerdict {
    Pass,
    Fail,
    /// The generator could not keep its schedule while the target kept up: the
    /// probe says nothing about the target beyond "at least the last pass".
    GeneratorBound,
    /// Stopped by Ctrl-C before its window ended.
    Interrupted,
}

impl ProbeVerdict {
    /// The verdict as the reports and the progress lines print it.
    pub fn word(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "FAIL",
            Self::GeneratorBound => "generator-bound",
            Self::Interrupted => "interrupted",
        }
    }
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Capacity lies in `[last_pass, first_fail]`.
    Found,
    /// Even the start rate failed.
    BelowStart,
    /// The generator became the limit: capacity is at least `last_pass`.
    GeneratorBound,
    /// Every rate up to the maximum passed: capacity is at least `last_pass`.
    AboveMax,
    /// Ctrl-C: what was measured so far.
    Interrupted,
    /// slolab itself failed mid-search (the stack would not start, say): what
    /// was measured so far, no answer.
    Aborted,
}

/// The search's tunables, resolved from flags, the profile and the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// First rate probed, req/s.
    pub start_rate: f64,
    /// Factor between rates while growing (> 1).
    pub growth: f64,
    /// Bisection stops when (first fail − last pass) / last pass ≤ this.
    pub resolution: f64,
    /// The search never offers more than this, req/s.
    pub max_rate: f64,
    /// Unjudged load at the probe's rate before its window, seconds.
    pub warmup_s: f64,
    /// The judged plateau, seconds.
    pub window_s: f64,
    /// The confirmation's judged plateau, seconds.
    pub confirm_s: f64,
    /// Pause between probes so a failed probe's queues drain, seconds.
    pub cooldown_s: f64,
    /// A probe passes only if it achieved at least this share of the offered rate.
    pub min_achieved: f64,
}

/// The next thing to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Probe { rate: f64, kind: ProbeKind },
    Done(Outcome),
}

/// Search state: every rate probed and what it found.
#[derive(Debug, Clone)]
pub struct Search {
    settings: SearchSettings,
    /// Highest rate that passed and has not been refuted by its confirmation.
    last_pass: Option<f64>,
    /// Lowest rate that failed (a refuted pass counts as a failure).
    first_fail: Option<f64>,
    /// Rates that passed, so a refuted pass can fall back to the one below.
    passes: Vec<f64>,
    /// Confirmations of `last_pass` so far, and whether the first agreed.
    confirmations: u32,
    /// Set when the search ended early (generator-bound, interrupted).
    ended: Option<Outcome>,
    /// A confirmation was contradicted once and then held (the answer says so).
    pub disagreed: bool,
}

impl Search {
    pub fn new(settings: SearchSettings) -> Self {
        Self {
            settings,
            last_pass: None,
            first_fail: None,
            passes: Vec::new(),
            confirmations: 0,
            ended: None,
            disagreed: false,
        }
    }

    pub fn settings(&self) -> &SearchSettings {
        &self.settings
    }

    pub fn last_pass(&self) -> Option<f64> {
        self.last_pass
    }

    pub fn first_fail(&self) -> Option<f64> {
        self.first_fail
    }

    /// The next probe, or how the search ended.
    pub fn next(&self) -> Step {
        if let Some(outcome) = self.ended {
            return Step::Done(outcome);
        }
        let s = &self.settings;
        match (self.last_pass, self.first_fail) {
            (None, None) => Step::Probe {
                rate: s.start_rate.min(s.max_rate),
                kind: ProbeKind::Grow,
            },
            (None, Some(_)) => Step::Done(Outcome::BelowStart),
            (Some(lo), None) => {
                if lo >= s.max_rate {
                    return Step::Done(Outcome::AboveMax);
                }
                Step::Probe {
                    rate: (lo * s.growth).min(s.max_rate),
                    kind: ProbeKind::Grow,
                }
            }
            (Some(lo), Some(hi)) => {
                if (hi - lo) / lo > s.resolution {
                    return Step::Probe {
                        rate: (lo + hi) / 2.0,
                        kind: ProbeKind::Bisect,
                    };
                }
                match self.confirmations {
                    0 => Step::Probe {
                        rate: lo,
                        kind: ProbeKind::Confirm,
                    },
                    1 if self.disagreed => Step::Probe {
                        rate: lo,
                        kind: ProbeKind::Reprobe,
                    },
                    _ => Step::Done(Outcome::Found),
                }
            }
        }
    }

    /// What the probe at `rate` (of `kind`) found.
    pub fn record(&mut self, rate: f64, kind: ProbeKind, verdict: ProbeVerdict) {
        match verdict {
            ProbeVerdict::Interrupted => self.ended = Some(Outcome::Interrupted),
            ProbeVerdict::GeneratorBound => self.ended = Some(Outcome::GeneratorBound),
            ProbeVerdict::Pass if kind.is_confirmation() => {
                // Confirmed (a re-probe that holds settles a disagreement).
                self.confirmations = 2;
            }
            ProbeVerdict::Fail if kind == ProbeKind::Confirm => {
                self.confirmations = 1;
                self.disagreed = true;
            }
            ProbeVerdict::Fail if kind == ProbeKind::Reprobe => {
                // Refuted twice: this rate does not hold; fall back to the pass below.
                self.refute(rate);
            }
            ProbeVerdict::Pass => {
                self.passes.push(rate);
                self.last_pass = Some(self.last_pass.map_or(rate, |lo| lo.max(rate)));
            }
            ProbeVerdict::Fail => {
                self.first_fail = Some(self.first_fail.map_or(rate, |hi| hi.min(rate)));
            }
        }
    }

    fn refute(&mut self, rate: f64) {
        self.passes.retain(|&p| p < rate);
        self.first_fail = Some(self.first_fail.map_or(rate, |hi| hi.min(rate)));
        self.last_pass = self.passes.iter().copied().reduce(f64::max);
        self.confirmations = 0;
        self.disagreed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn settings() -> SearchSettings {
        SearchSettings {
            start_rate: 100.0,
            growth: 2.0,
            resolution: 0.05,
            max_rate: 1e6,
            warmup_s: 1.0,
            window_s: 3.0,
            confirm_s: 6.0,
            cooldown_s: 0.0,
            min_achieved: 0.97,
        }
    }

    /// Runs a search against a system that passes below `capacity`; `confirm`
    /// decides confirmations. Returns the probes and the outcome.
    fn drive(
        capacity: f64,
        mut confirm: impl FnMut(f64) -> bool,
    ) -> (Vec<(f64, ProbeKind)>, Outcome, Search) {
        let mut s = Search::new(settings());
        let mut probes = Vec::new();
        loop {
            match s.next() {
                Step::Probe { rate, kind } => {
                    probes.push((rate, kind));
                    let pass = if kind.is_confirmation() {
                        confirm(rate)
                    } else {
                        rate <= capacity
                    };
                    let v = if pass {
                        ProbeVerdict::Pass
                    } else {
                        ProbeVerdict::Fail
                    };
                    s.record(rate, kind, v);
                    assert!(probes.len() < 50, "the search must end: {probes:?}");
                }
                Step::Done(o) => return (probes, o, s),
            }
        }
    }

    #[test]
    fn grows_then_bisects_to_the_resolution_then_confirms() {
        let (probes, outcome, s) = drive(430.0, |_| true);
        assert_eq!(outcome, Outcome::Found);
        let (lo, hi) = (s.last_pass().unwrap(), s.first_fail().unwrap());
        assert!(lo <= 430.0 && 430.0 < hi, "[{lo}, {hi}]");
        assert!((hi - lo) / lo <= 0.05);
        let rates: Vec<f64> = probes.iter().map(|p| p.0).collect();
        assert_eq!(&rates[..4], &[100.0, 200.0, 400.0, 800.0]);
        assert_eq!(probes.last().unwrap(), &(lo, ProbeKind::Confirm));
    }

    #[test]
    fn a_failing_start_ends_below_start() {
        let (probes, outcome, _) = drive(50.0, |_| true);
        assert_eq!(outcome, Outcome::BelowStart);
        assert_eq!(probes.len(), 1);
    }

    #[test]
    fn a_disagreeing_confirmation_is_reprobed_once() {
        let mut first = true;
        let (probes, outcome, s) = drive(430.0, |_| !std::mem::take(&mut first));
        // First confirmation failed, the re-probe held: found, marked disagreed.
        assert_eq!(outcome, Outcome::Found);
        assert!(s.disagreed);
        let kinds: Vec<ProbeKind> = probes.iter().map(|p| p.1).collect();
        assert_eq!(
            &kinds[kinds.len() - 2..],
            &[ProbeKind::Confirm, ProbeKind::Reprobe]
        );
    }

    #[test]
    fn a_pass_refuted_twice_falls_back_to_the_pass_below() {
        // Confirmations hold only at or below 400: 425 (a pass in the bisection)
        // is refuted, and the search settles below it.
        let (_, outcome, s) = drive(430.0, |r| r <= 400.0);
        assert_eq!(outcome, Outcome::Found);
        assert!(s.last_pass().unwrap() <= 400.0);
        assert!(s.first_fail().unwrap() <= 430.0);
    }

    #[test]
    fn every_rate_passing_ends_at_the_maximum() {
        let mut s = Search::new(SearchSettings {
            max_rate: 300.0,
            ..settings()
        });
        let mut rates = Vec::new();
        while let Step::Probe { rate, kind } = s.next() {
            rates.push(rate);
            s.record(rate, kind, ProbeVerdict::Pass);
        }
        assert_eq!(rates, vec![100.0, 200.0, 300.0]);
        assert_eq!(s.next(), Step::Done(Outcome::AboveMax));
    }

    #[test]
    fn generator_bound_and_interrupt_end_the_search() {
        let mut s = Search::new(settings());
        s.record(100.0, ProbeKind::Grow, ProbeVerdict::Pass);
        s.record(200.0, ProbeKind::Grow, ProbeVerdict::GeneratorBound);
        assert_eq!(s.next(), Step::Done(Outcome::GeneratorBound));
        assert_eq!(s.last_pass(), Some(100.0));
        let mut s = Search::new(settings());
        s.record(100.0, ProbeKind::Grow, ProbeVerdict::Interrupted);
        assert_eq!(s.next(), Step::Done(Outcome::Interrupted));
    }
}
