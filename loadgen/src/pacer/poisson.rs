//! Poisson arrivals for the open model: the arrival levels U_k of a unit-rate
//! Poisson process (running sums of Exp(1) gaps), time-warped through the
//! expected-arrivals curve Λ, are a Poisson process at the stages' own rate.
//! Levels are drawn lazily in seeded blocks, so memory stays small however long
//! the run, any block can be drawn again exactly, and the same seed gives the
//! same times whichever worker asks first.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Curve;

/// Arrivals per block. A block is drawn under the lock (~1024 draws, tens of
/// µs: far below the late threshold), and the index keeps 16 bytes per block
/// (~6 MB for an hour at 100k req/s).
const BLOCK: usize = 1024;
/// Blocks kept drawn. Workers take arrivals close together, so the newest few
/// serve nearly every lookup; an older one is drawn again from the index.
const KEEP: usize = 4;
/// The arrivals' ChaCha streams have the top bit set (block b: 2⁶³ + b); the
/// workers' request-mix streams count up from 0 on the same seed.
const STREAM_BASE: u64 = 1 << 63;

/// The Poisson levels of one schedule, shared by every worker.
#[derive(Debug)]
pub(super) struct Levels {
    seed: u64,
    /// Λ at the end of the schedule: no arrival at or past this level.
    total: f64,
    blocks: Mutex<Blocks>,
}

#[derive(Debug, Default)]
struct Blocks {
    /// Per block drawn so far, in order: the level before its first arrival
    /// (enough to draw it again) and its first arrival's time (∞: past the end).
    index: Vec<(f64, f64)>,
    /// The level after the last block drawn: where the next block starts.
    next: f64,
    /// Arrival times (∞ past the end) of the blocks drawn last, newest last.
    recent: VecDeque<(usize, Box<[f64]>)>,
}

impl Levels {
    pub(super) fn new(seed: u64, curve: &Curve) -> Self {
        Self {
            seed,
            total: curve.before(curve.end_s),
            blocks: Mutex::default(),
        }
    }

    /// Seconds from the start at which arrival `k` is due, or `None` past the end.
    pub(super) fn time(&self, k: u64, curve: &Curve) -> Option<f64> {
        let (b, i) = ((k / BLOCK as u64) as usize, (k % BLOCK as u64) as usize);
        let mut blocks = self.lock();
        let t = blocks.times(b, self, curve)?[i];
        t.is_finite().then_some(t)
    }

    /// Arrivals with time < `t`: exactly the k for which [`Self::time`] is before `t`.
    pub(super) fn count_before(&self, t: f64, curve: &Curve) -> u64 {
        let mut blocks = self.lock();
        // Draw until a block starts at or after `t`, or the arrivals run out.
        while blocks.index.last().map_or(true, |&(_, first)| first < t) {
            let b = blocks.index.len();
            if blocks.times(b, self, curve).is_none() {
                break;
            }
        }
        let started = blocks.index.partition_point(|&(_, first)| first < t);
        let Some(b) = started.checked_sub(1) else {
            return 0;
        };
        let times = blocks
            .times(b, self, curve)
            .expect("an indexed block can be drawn");
        (b * BLOCK + times.partition_point(|&x| x < t)) as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        // A panic elsewhere cannot leave the blocks half-updated: every change
        // is made after the draw that could fail.
        self.blocks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Block `b`'s arrival times, and its levels before the first.
    fn draw(&self, b: usize, start: f64, curve: &Curve) -> (Box<[f64]>, f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(STREAM_BASE | b as u64);
        let mut level = start;
        let times = (0..BLOCK)
            .map(|_| {
                // 1 − u is in (0, 1], so the gap −ln(1 − u) ~ Exp(1) is finite.
                level -= (1.0 - rng.gen::<f64>()).ln();
                curve.time_of(level).unwrap_or(f64::INFINITY)
            })
            .collect();
        (times, level)
    }
}

impl Blocks {
    /// Block `b`'s arrival times, drawn (with every block before it) when not
    /// at hand; `None` when the arrivals end before block `b`.
    fn times(&mut self, b: usize, levels: &Levels, curve: &Curve) -> Option<&[f64]> {
        let pos = match self.recent.iter().rposition(|(n, _)| *n == b) {
            Some(pos) => pos,
            None => {
                while self.index.len() <= b {
                    if self.next >= levels.total {
                        return None;
                    }
                    let n = self.index.len();
                    let (times, end) = levels.draw(n, self.next, curve);
                    self.index.push((self.next, times[0]));
                    self.next = end;
                    self.keep(n, times);
                }
                if self.recent.back().map_or(true, |(n, _)| *n != b) {
                    let (times, _) = levels.draw(b, self.index[b].0, curve);
                    self.keep(b, times);
                }
                self.recent.len() - 1
            }
        };
        Some(&self.recent[pos].1)
    }

    fn keep(&mut self, b: usize, times: Box<[f64]>) {
        if self.recent.len() == KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back((b, times));
    }
}
