//! The capacity report's charts, against offered rate rather than time: latency
//! (log axis) with the SLO ceilings and the capacity interval shaded, achieved
//! against offered throughput, errors, and the USL fit with its measured points.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::search::ProbeVerdict;
use super::usl::UslFit;
use super::{by_rate, Probe, SearchRecord};
use crate::report::charts::{
    err, font, frame, key, svg, Key, BLUE, BOTTOM_AREA, GREEN, GREY, LEFT_AREA, MARGIN, ORANGE,
    PURPLE, RED, TEXT_PX,
};
use crate::slo::format_ms;

/// A percentile line: its name, colour and where a probe keeps it.
type Series = (&'static str, RGBColor, fn(&Probe) -> Option<f64>);

/// Shade of the capacity interval [last pass, first fail].
const INTERVAL: RGBColor = RGBColor(44, 160, 44);

/// Probes that measured the target, by offered rate (confirmations included).
fn judged(search: &SearchRecord) -> Vec<&Probe> {
    let mut v: Vec<&Probe> = search
        .probes
        .iter()
        .filter(|p| p.verdict != ProbeVerdict::Interrupted && p.requests > 0)
        .collect();
    v.sort_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    v
}

fn x_range(probes: &[&Probe]) -> (f64, f64) {
    let hi = probes.iter().map(|p| p.offered_rps).fold(1.0, f64::max);
    (0.0, hi * 1.08)
}

/// Draws the capacity interval as a band behind the plot.
fn band<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    c: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    search: &SearchRecord,
    ylo: f64,
    yhi: f64,
) -> Result<(), String> {
    if let (Some(lo), Some(hi)) = (search.answer.last_pass_rps, search.answer.first_fail_rps) {
        c.draw_series(std::iter::once(Rectangle::new(
            [(lo, ylo), (hi, yhi)],
            INTERVAL.mix(0.18).filled(),
        )))
        .map_err(err)?;
    }
    Ok(())
}

fn interval_key(search: &SearchRecord) -> Option<Key> {
    search
        .answer
        .first_fail_rps
        .zip(search.answer.last_pass_rps)
        .map(|_| key("capacity interval (shaded)", INTERVAL, false))
}

/// Whole numbers on a rate or count axis.
fn whole(v: &f64) -> String {
    format!("{v:.0}")
}

/// One chart against offered rate: title, key, a linear y axis from 0 to
/// `yhi`, the capacity interval shaded, then `draw` adds its series.
fn rate_chart(
    search: &SearchRecord,
    title: &str,
    mut keys: Vec<Key>,
    y_desc: &str,
    y_label: fn(&f64) -> String,
    yhi: f64,
    draw: impl FnOnce(
        &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
        f64,
    ) -> Result<(), String>,
) -> Result<String, String> {
    let probes = judged(search);
    let (xlo, xhi) = x_range(&probes);
    keys.extend(interval_key(search));
    svg(|root| {
        let plot = frame(root, title, &keys, None)?;
        let mut c = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(BOTTOM_AREA)
            .y_label_area_size(LEFT_AREA)
            .build_cartesian_2d(xlo..xhi, 0.0..yhi)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("offered rate (req/s)")
            .y_desc(y_desc)
            .x_label_formatter(&whole)
            .y_label_formatter(&y_label)
            .label_style(font(TEXT_PX))
            .axis_desc_style(font(TEXT_PX))
            .bold_line_style(GREY.mix(0.18))
            .draw()
            .map_err(err)?;
        band(&mut c, search, 0.0, yhi)?;
        draw(&mut c, xhi)
    })
}

/// A series as dots at every probe and a line through each rate's last probe.
fn dots_and_line<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    c: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    probes: &[&Probe],
    colour: RGBColor,
    value: impl Fn(&Probe) -> Option<f64>,
) -> Result<(), String> {
    let line: Vec<(f64, f64)> = by_rate(probes)
        .into_iter()
        .filter_map(|p| Some((p.offered_rps, value(p)?)))
        .collect();
    c.draw_series(LineSeries::new(line, colour.stroke_width(2)))
        .map_err(err)?;
    c.draw_series(
        probes
            .iter()
            .filter_map(|p| Some((p.offered_rps, value(p)?)))
            .map(|pt| Circle::new(pt, 4, colour.filled())),
    )
    .map_err(err)?;
    Ok(())
}

pub fn latency_vs_rate(search: &SearchRecord, slo: &[(String, f64)]) -> Result<String, String> {
    let probes = judged(search);
    let series: [Series; 3] = [
        ("p50", BLUE, |p| p.p50_ms),
        ("p95", ORANGE, |p| p.p95_ms),
        ("p99", PURPLE, |p| p.p99_ms),
    ];
    let values: Vec<f64> = probes
        .iter()
        .flat_map(|p| [p.p50_ms, p.p95_ms, p.p99_ms])
        .flatten()
        .chain(slo.iter().map(|s| s.1))
        .filter(|v| *v > 0.0)
        .collect();
    let ylo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(0.01)
        / 1.5;
    let yhi = values.iter().copied().fold(0.0, f64::max).max(ylo * 10.0) * 1.5;
    let (xlo, xhi) = x_range(&probes);
    let mut keys: Vec<Key> = series.iter().map(|(k, c, _)| key(*k, *c, false)).collect();
    keys.extend(
        slo.iter()
            .map(|(k, ms)| key(format!("SLO {k} ≤ {ms} ms"), RED, true)),
    );
    keys.extend(interval_key(search));
    svg(|root| {
        let plot = frame(
            root,
            "Latency against offered rate (from the scheduled send)",
            &keys,
            Some("a dot per probe; the line joins each rate's last probe (a confirmation over the probe it confirmed)"),
        )?;
        let mut c = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(BOTTOM_AREA)
            .y_label_area_size(LEFT_AREA)
            .build_cartesian_2d(xlo..xhi, (ylo..yhi).log_scale())
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("offered rate (req/s)")
            .y_desc("latency (ms, log)")
            .x_label_formatter(&whole)
            .y_label_formatter(&|v| format_ms(*v))
            .label_style(font(TEXT_PX))
            .axis_desc_style(font(TEXT_PX))
            .bold_line_style(GREY.mix(0.18))
            .draw()
            .map_err(err)?;
        band(&mut c, search, ylo, yhi)?;
        for (_, ms) in slo {
            c.draw_series(DashedLineSeries::new(
                [(xlo, *ms), (xhi, *ms)],
                8,
                5,
                RED.stroke_width(2),
            ))
            .map_err(err)?;
        }
        for (_, colour, get) in &series {
            dots_and_line(&mut c, &probes, *colour, |p| get(p).map(|v| v.max(ylo)))?;
        }
        Ok(())
    })
}

pub fn throughput_vs_rate(search: &SearchRecord) -> Result<String, String> {
    let probes = judged(search);
    let (_, xhi) = x_range(&probes);
    let yhi = probes.iter().map(|p| p.achieved_rps).fold(xhi, f64::max) * 1.05;
    let keys = vec![
        key("achieved", BLUE, false),
        key("offered (held exactly)", GREY, true),
    ];
    rate_chart(
        search,
        "Achieved against offered throughput",
        keys,
        "achieved (responses/s)",
        whole,
        yhi,
        |c, xhi| {
            c.draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (xhi, xhi)],
                8,
                5,
                GREY.stroke_width(2),
            ))
            .map_err(err)?;
            dots_and_line(c, &probes, BLUE, |p| Some(p.achieved_rps))
        },
    )
}

pub fn errors_vs_rate(search: &SearchRecord) -> Result<String, String> {
    let probes = judged(search);
    let pct = |p: &Probe| {
        let valid = p.good + p.bad;
        (valid > 0).then(|| p.bad as f64 * 100.0 / valid as f64)
    };
    let yhi = probes.iter().filter_map(|p| pct(p)).fold(1.0, f64::max) * 1.15;
    rate_chart(
        search,
        "Errors against offered rate",
        vec![key("bad responses (% of valid)", RED, false)],
        "bad (%)",
        |v| format!("{v:.1}"),
        yhi,
        |c, _| dots_and_line(c, &probes, RED, pct),
    )
}

pub fn usl(fit: &UslFit) -> Result<String, String> {
    let nmax = fit.points.iter().map(|p| p.0).fold(1.0, f64::max);
    let xhi = fit
        .peak_instances
        .map(|p| p.clamp(nmax * 1.5, nmax * 4.0))
        .unwrap_or(nmax * 2.0);
    let curve: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let n = 1.0 + (xhi - 1.0) * i as f64 / 200.0;
            (n, fit.capacity(n))
        })
        .collect();
    let yhi = curve
        .iter()
        .map(|p| p.1)
        .chain(fit.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let keys = vec![
        key("measured capacity", BLUE, false),
        key("USL model", GREEN, false),
        key("linear scaling", GREY, true),
    ];
    svg(|root| {
        let plot = frame(
            root,
            "Capacity against instances: measured points and the fitted USL",
            &keys,
            Some("beyond the measured points the line is the model's projection"),
        )?;
        let mut c = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(BOTTOM_AREA)
            .y_label_area_size(LEFT_AREA)
            .build_cartesian_2d(0.0..xhi, 0.0..yhi)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("instances")
            .y_desc("capacity (req/s)")
            .x_label_formatter(&whole)
            .y_label_formatter(&whole)
            .label_style(font(TEXT_PX))
            .axis_desc_style(font(TEXT_PX))
            .bold_line_style(GREY.mix(0.18))
            .draw()
            .map_err(err)?;
        // Ends where it leaves the plot (plotters would clamp the end point to
        // the frame, bending the line).
        let x_end = xhi.min(yhi / fit.lambda);
        c.draw_series(DashedLineSeries::new(
            [(1.0, fit.lambda), (x_end, fit.lambda * x_end)],
            8,
            5,
            GREY.stroke_width(2),
        ))
        .map_err(err)?;
        c.draw_series(LineSeries::new(curve, GREEN.stroke_width(2)))
            .map_err(err)?;
        c.draw_series(
            fit.points
                .iter()
                .map(|&pt| Circle::new(pt, 6, BLUE.filled())),
        )
        .map_err(err)?;
        Ok(())
    })
}
