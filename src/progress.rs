//! The live progress line `load` and `run` draw on stderr: one bar builder and
//! one way to say the rate, the last interval's p99 and the errors so far.

/// A bar on stderr: `len` steps when the run's length is known, else a spinner.
pub fn bar(len: Option<u64>, template: &str) -> indicatif::ProgressBar {
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// "1200 req/s | p99 3.4 ms | 2 errors".
pub fn status(p: &loadgen::Progress) -> String {
    format!(
        "{:.0} req/s | p99 {:.1} ms | {} errors",
        p.rate,
        p.p99_last_interval.as_secs_f64() * 1e3,
        p.errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_rate_p99_and_errors() {
        let p = loadgen::Progress {
            rate: 1200.4,
            p99_last_interval: std::time::Duration::from_micros(3_420),
            errors: 2,
            ..Default::default()
        };
        assert_eq!(status(&p), "1200 req/s | p99 3.4 ms | 2 errors");
    }
}
