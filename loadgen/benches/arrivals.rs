//! Benchmark (not a test): what the open model's schedule costs per arrival,
//! Poisson against uniform measured in the same run, taken as the workers take
//! them — one index at a time from a shared counter, on one thread and on several.
//!
//!   cargo bench -p loadgen --bench arrivals [-- RATE SECONDS]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loadgen::pacer::Schedule;
use loadgen::{Arrivals, Stage};

/// Takes every arrival of `s` on `threads` threads; nanoseconds per arrival.
fn take_all(s: &Schedule, threads: usize) -> (u64, f64) {
    let next = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut sum = 0.0;
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    match s.at(k) {
                        Some(t) => sum += t,
                        None => break,
                    }
                }
                black_box(sum);
            });
        }
    });
    let elapsed = start.elapsed();
    let n = s.scheduled_by(f64::INFINITY);
    (n, elapsed.as_nanos() as f64 / n as f64)
}

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(100_000.0);
    let secs = args.get(1).copied().unwrap_or(30.0);
    let stages = [
        Stage {
            duration: Duration::from_secs_f64(secs / 2.0),
            start_rate: rate / 10.0,
            end_rate: rate,
        },
        Stage::steady(Duration::from_secs_f64(secs / 2.0), rate),
    ];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "arrivals: ramp {}..{rate} req/s then steady, {secs} s of schedule",
        rate / 10.0
    );
    for threads in [1, cores.max(2)] {
        for round in 1..=3 {
            let mut line = format!("threads {threads} round {round}:");
            let mut uniform_ns = 0.0;
            for arrivals in [Arrivals::Uniform, Arrivals::Poisson] {
                let s = Schedule::new(&stages, None, arrivals, 1);
                let (n, ns) = take_all(&s, threads);
                line += &format!("  {arrivals} {n} arrivals {ns:.1} ns/arrival");
                match arrivals {
                    Arrivals::Uniform => uniform_ns = ns,
                    Arrivals::Poisson => line += &format!("  (x{:.2})", ns / uniform_ns),
                }
            }
            println!("{line}");
        }
    }
}
