//! The HTML report's charts, drawn by plotters into SVG strings that are inlined in
//! the page, so the report is one file that opens anywhere without a network.
//! Every chart on the run's clock shades the fault windows and marks stage starts.

use hdrhistogram::Histogram;
use loadgen::results::Interval;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::Report;
use crate::slo::{covered_s, format_ms};

const W: u32 = 1040;
const H: u32 = 360;
const FONT: &str = "sans-serif";

type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A line to draw: its name, colour and (time or percentile, value) points.
type Series = (String, RGBColor, Vec<(f64, f64)>);

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const GREY: RGBColor = RGBColor(127, 127, 127);
const FAULT: RGBColor = RGBColor(200, 30, 30);
const PALETTE: [RGBColor; 6] = [
    PURPLE,
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    GREY,
];

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Draws into a fresh SVG document and returns its text.
fn svg(draw: impl FnOnce(&Root) -> Result<(), String>) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// A chart that has nothing to draw still gets its frame and says why.
fn empty(title: &str, why: &str) -> Result<String, String> {
    svg(|root| {
        root.titled(title, (FONT, 18)).map_err(err)?;
        root.draw(&Text::new(
            why.to_string(),
            (W as i32 / 2 - 150, H as i32 / 2),
            (FONT, 16).into_font().color(&GREY),
        ))
        .map_err(err)
    })
}

/// One entry of a chart's key: a line of this colour (dashed: a target or plan).
struct Key {
    label: String,
    colour: RGBColor,
    dashed: bool,
}

fn key(label: impl Into<String>, colour: RGBColor, dashed: bool) -> Key {
    Key {
        label: label.into(),
        colour,
        dashed,
    }
}

/// Title, then the key as one row under it (outside the plot, where it can never
/// hide a line or a fault label), then the area left for the plot.
fn frame<'a>(root: &Root<'a>, title: &str, keys: &[Key]) -> Result<Root<'a>, String> {
    let area = root.titled(title, (FONT, 18)).map_err(err)?;
    let (strip, plot) = area.split_vertically(26);
    let (mut x, y) = (90, 11);
    for k in keys {
        let style = k.colour.stroke_width(2);
        let segments: &[(i32, i32)] = if k.dashed {
            &[(0, 8), (12, 20)]
        } else {
            &[(0, 20)]
        };
        for (a, b) in segments {
            strip
                .draw(&PathElement::new(vec![(x + a, y), (x + b, y)], style))
                .map_err(err)?;
        }
        strip
            .draw(&Text::new(
                k.label.clone(),
                (x + 26, y - 7),
                (FONT, 13).into_font(),
            ))
            .map_err(err)?;
        // The SVG backend cannot measure text; 7 px a character is close at 13 px.
        x += 26 + k.label.chars().count() as i32 * 7 + 22;
    }
    Ok(plot)
}

/// End of the run's clock: the last interval, stage or fault, whichever is latest.
fn x_end(report: &Report) -> f64 {
    let timeline = report
        .results
        .timeline
        .last()
        .map_or(0.0, |iv| iv.start_s + iv.duration_s);
    let stages = report.stages().iter().map(|s| s.end_s);
    let faults = report.faults().iter().map(|f| f.end_s.unwrap_or(f.start_s));
    stages.chain(faults).fold(timeline, f64::max).max(1.0)
}

/// Shades each fault window (a line for an instantaneous fault), labels it, and
/// marks where each stage starts. Works in pixels so one routine serves charts with
/// linear and log y axes: `px` maps a time to its x pixel, `y` is the plot's pixel
/// height range.
fn draw_context(
    root: &Root,
    report: &Report,
    px: impl Fn(f64) -> i32,
    y: std::ops::Range<i32>,
) -> Result<(), String> {
    for st in report.stages().iter().skip(1) {
        let x = px(st.start_s);
        root.draw(&PathElement::new(
            vec![(x, y.start), (x, y.end)],
            GREY.mix(0.6).stroke_width(1),
        ))
        .map_err(err)?;
    }
    for st in report.stages() {
        root.draw(&Text::new(
            st.name.clone(),
            (px(st.start_s) + 4, y.end - 16),
            (FONT, 12).into_font().color(&GREY),
        ))
        .map_err(err)?;
    }
    for (i, f) in report
        .faults()
        .iter()
        .filter(|f| f.error.is_none())
        .enumerate()
    {
        let x0 = px(f.start_s);
        let x1 = f.end_s.map_or(x0, &px).max(x0 + 3);
        root.draw(&Rectangle::new(
            [(x0, y.start), (x1, y.end)],
            FAULT.mix(0.13).filled(),
        ))
        .map_err(err)?;
        root.draw(&PathElement::new(
            vec![(x0, y.start), (x0, y.end)],
            FAULT.mix(0.8).stroke_width(2),
        ))
        .map_err(err)?;
        // Staggered so that faults close together do not print over each other.
        root.draw(&Text::new(
            format!("⚡ {}", f.label),
            (x0 + 4, y.start + 4 + (i as i32 % 3) * 15),
            (FONT, 13).into_font().color(&FAULT),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// The middle of the part of `iv` the run covered, so a partial last interval's
/// point sits inside it rather than past the run's end.
fn mid(report: &Report, iv: &loadgen::results::Interval) -> f64 {
    iv.start_s + covered_s(iv, report.results.run.duration_s) / 2.0
}

/// (1) p50/p95/p99 per interval on a log axis, with the SLO latency lines.
pub fn latency_over_time(report: &Report) -> Result<String, String> {
    const TITLE: &str = "Latency over time (p50 / p95 / p99 per interval)";
    let lines = [("p50", BLUE), ("p95", ORANGE), ("p99", RED)];
    let series: Vec<Series> = lines
        .iter()
        .map(|(k, c)| {
            let pts = report
                .results
                .timeline
                .iter()
                .filter(|iv| iv.latency.count > 0)
                .filter_map(|iv| {
                    iv.latency
                        .percentile(k)
                        .map(|v| (mid(report, iv), v.max(1) as f64 / 1e3))
                })
                .collect();
            (k.to_string(), *c, pts)
        })
        .collect();
    let targets = report.latency_targets();
    let values = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .chain(targets.iter().map(|t| t.1));
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if series.iter().all(|s| s.2.is_empty()) {
        return empty(TITLE, "no responses were measured");
    }
    let x_max = x_end(report);
    let (y_lo, y_hi) = (lo / 1.6, hi * 1.6);
    let mut keys: Vec<Key> = series
        .iter()
        .map(|(k, c, _)| key(k.as_str(), *c, false))
        .collect();
    let target_colour = |key: &str| keys_colour(&lines, key);
    for (k, t) in &targets {
        keys.push(key(
            format!("{k} SLO ≤ {}", format_ms(*t)),
            target_colour(k),
            true,
        ));
    }
    svg(|root| {
        let plot = frame(root, TITLE, &keys)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (y_lo..y_hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the load started")
            .y_desc("latency (log scale)")
            .y_label_formatter(&|v| format_ms(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let (_, y) = chart.plotting_area().get_pixel_range();
        draw_context(root, report, |x| chart.backend_coord(&(x, y_lo)).0, y)?;
        for (_, colour, pts) in &series {
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(err)?;
        }
        for (key, target) in &targets {
            let colour = target_colour(key);
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, *target), (x_max, *target)],
                    8,
                    5,
                    colour.stroke_width(2),
                ))
                .map_err(err)?;
        }
        Ok(())
    })
}

fn keys_colour(colours: &[(&str, RGBColor)], key: &str) -> RGBColor {
    colours
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(PURPLE, |(_, c)| *c)
}

fn outcome_colour(name: &str, i: usize) -> RGBColor {
    match name {
        "2xx" => GREEN,
        "3xx" => BLUE,
        "4xx" => ORANGE,
        "5xx" => RED,
        _ => PALETTE[i % PALETTE.len()],
    }
}

/// (2) Requests per second by outcome, and the offered rate of an open model.
/// Failures go on their own right-hand axis: 15 refused connections must not
/// vanish under 2 000 successes a second.
pub fn throughput_over_time(report: &Report) -> Result<String, String> {
    const TITLE: &str = "Throughput (left) and errors by outcome (right), requests/s";
    if report.results.timeline.is_empty() {
        return empty(TITLE, "the timeline is empty");
    }
    let Throughput {
        ok,
        failed,
        offered,
    } = throughput(report);
    let top = |series: &[Series]| {
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(0f64, f64::max)
    };
    let y_hi = (top(&ok).max(offered.iter().map(|p| p.1).fold(0.0, f64::max)) * 1.25).max(1.0);
    let err_hi = (top(&failed) * 1.25).max(1.0);
    let x_max = x_end(report);
    let mut keys = Vec::new();
    if offered.iter().any(|p| p.1 > 0.0) {
        keys.push(key("offered (scheduled)", GREY, true));
    }
    keys.extend(ok.iter().map(|(n, c, _)| key(n.as_str(), *c, false)));
    keys.extend(
        failed
            .iter()
            .map(|(n, c, _)| key(format!("{n} (right axis)"), *c, false)),
    );
    svg(|root| {
        let plot = frame(root, TITLE, &keys)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .right_y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_hi)
            .map_err(err)?
            .set_secondary_coord(0f64..x_max, 0f64..err_hi);
        chart
            .configure_mesh()
            .x_desc("seconds since the load started")
            .y_desc("requests/s")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        if !failed.is_empty() {
            chart
                .configure_secondary_axes()
                .y_desc("errors/s")
                .draw()
                .map_err(err)?;
        }
        let (_, y) = chart.plotting_area().get_pixel_range();
        draw_context(root, report, |x| chart.backend_coord(&(x, 0.0)).0, y)?;
        if offered.iter().any(|p| p.1 > 0.0) {
            chart
                .draw_series(DashedLineSeries::new(
                    offered.iter().copied(),
                    6,
                    4,
                    GREY.stroke_width(2),
                ))
                .map_err(err)?;
        }
        for (_, colour, pts) in &ok {
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(err)?;
        }
        for (_, colour, pts) in &failed {
            let colour = *colour;
            chart
                .draw_secondary_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// The throughput chart's lines: requests/s per interval of each successful
/// outcome (left axis), each failing outcome (right axis), and, for an open
/// model, the offered rate.
struct Throughput {
    ok: Vec<Series>,
    failed: Vec<Series>,
    offered: Vec<(f64, f64)>,
}

fn throughput(report: &Report) -> Throughput {
    let timeline = &report.results.timeline;
    let mut names: Vec<&String> = report
        .results
        .totals
        .outcomes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, _)| name)
        .collect();
    names.sort();
    // Over the time each interval covered: the last is usually partial.
    let run_s = report.results.run.duration_s;
    let rate = |n: u64, iv: &Interval| match covered_s(iv, run_s) {
        d if d > 0.0 => n as f64 / d,
        _ => 0.0,
    };
    let (mut ok, mut failed): (Vec<Series>, Vec<Series>) = (Vec::new(), Vec::new());
    for (i, name) in names.iter().enumerate() {
        let pts = timeline
            .iter()
            .map(|iv| {
                let n = iv.outcomes.get(*name).copied().unwrap_or(0);
                (mid(report, iv), rate(n, iv))
            })
            .collect();
        let series = (name.to_string(), outcome_colour(name, i), pts);
        if name.starts_with('2') || name.starts_with('3') {
            ok.push(series);
        } else {
            failed.push(series);
        }
    }
    let offered: Vec<(f64, f64)> = timeline
        .iter()
        .filter(|_| matches!(report.results.plan.model, loadgen::Model::Open { .. }))
        .map(|iv| (mid(report, iv), rate(iv.scheduled, iv)))
        .collect();
    Throughput {
        ok,
        failed,
        offered,
    }
}

/// (3) Availability per interval with the target line.
pub fn availability_over_time(report: &Report) -> Result<String, String> {
    const TITLE: &str = "Availability over time (good / valid per interval)";
    let pts: Vec<(f64, f64)> = report
        .results
        .timeline
        .iter()
        .filter(|iv| iv.good + iv.bad > 0)
        .map(|iv| {
            (
                mid(report, iv),
                iv.good as f64 / (iv.good + iv.bad) as f64 * 100.0,
            )
        })
        .collect();
    if pts.is_empty() {
        return empty(TITLE, "no valid requests were measured");
    }
    let target = report.availability_target().map(|t| t * 100.0);
    let lo = pts.iter().map(|p| p.1).chain(target).fold(100f64, f64::min);
    // Zoom to where the action is: 99.9 % and 100 % must not sit on one line.
    let span = (100.0 - lo).max(0.01);
    let (y_lo, y_hi) = ((lo - span * 0.15).max(0.0), 100.0 + span * 0.08);
    let x_max = x_end(report);
    let mut keys = vec![key("availability", BLUE, false)];
    if let Some(t) = target {
        keys.push(key(format!("target {}%", trim_float(t)), RED, true));
    }
    svg(|root| {
        let plot = frame(root, TITLE, &keys)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max, y_lo..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the load started")
            .y_desc("availability")
            .y_label_formatter(&|v| format!("{}%", trim_float(*v)))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let (_, y) = chart.plotting_area().get_pixel_range();
        draw_context(root, report, |x| chart.backend_coord(&(x, y_lo)).0, y)?;
        if let Some(t) = target {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, t), (x_max, t)],
                    8,
                    5,
                    RED.stroke_width(2),
                ))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 2, BLUE.filled())))
            .map_err(err)?;
        Ok(())
    })
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// (4) HdrHistogram's percentile plot: latency by percentile, the x axis stretched
/// towards the tail (1 / (1 − q), log scale) so 99.9 % and 99.99 % get room.
pub fn latency_distribution(report: &Report, total: &Histogram<u64>) -> Result<String, String> {
    const TITLE: &str = "Latency by percentile (whole run)";
    if total.is_empty() {
        return empty(TITLE, "no responses were measured");
    }
    let n = total.len() as f64;
    // The tail we can resolve: with n samples, no finer than 1/n.
    let decades = n.log10().ceil().clamp(2.0, 5.0);
    let x_hi = 10f64.powf(decades);
    let mut pts: Vec<(f64, f64)> = total
        .iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to();
            (
                (1.0 / (1.0 - q)).min(x_hi),
                v.value_iterated_to() as f64 / 1e3,
            )
        })
        .take_while(|p| p.0 < x_hi)
        .collect();
    pts.push((x_hi, total.max() as f64 / 1e3));
    let targets = report.latency_targets();
    let y_hi = pts
        .iter()
        .map(|p| p.1)
        .chain(targets.iter().map(|t| t.1))
        .fold(0f64, f64::max)
        * 1.15;
    let mut keys = vec![key("latency", BLUE, false)];
    for (k, t) in &targets {
        keys.push(key(
            format!("{k} SLO ≤ {} (dot: at {k})", format_ms(*t)),
            RED,
            true,
        ));
    }
    svg(|root| {
        let plot = frame(root, TITLE, &keys)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .margin_right(40)
            .build_cartesian_2d((1f64..x_hi).log_scale(), 0f64..y_hi.max(0.01))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency")
            .x_label_formatter(&|x| format!("{}%", trim_float((1.0 - 1.0 / x) * 100.0)))
            .y_label_formatter(&|v| format_ms(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for (key, target) in &targets {
            chart
                .draw_series(DashedLineSeries::new(
                    [(1.0, *target), (x_hi, *target)],
                    8,
                    5,
                    RED.stroke_width(1),
                ))
                .map_err(err)?;
            let q = crate::slo::parse_percentile_key(key).unwrap_or(50.0) / 100.0;
            let x = (1.0 / (1.0 - q).max(1e-9)).min(x_hi);
            chart
                .draw_series([Circle::new((x, *target), 5, RED.filled())])
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))
            .map_err(err)?;
        Ok(())
    })
}

/// (5) Responses per value of the tracked header: how evenly the gateway spread load.
pub fn requests_per_instance(report: &Report) -> Result<String, String> {
    const TITLE: &str = "Requests per instance";
    let by = &report.results.totals.by_header;
    if by.is_empty() {
        return empty(TITLE, "the load did not track an instance header");
    }
    let names: Vec<&String> = by.keys().collect();
    let hi = by.values().copied().max().unwrap_or(1) as f64 * 1.2;
    svg(|root| {
        let plot = frame(root, TITLE, &[])?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..names.len() as f64 - 0.5, 0f64..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names
                        .get(i as usize)
                        .map_or(String::new(), |n| n.to_string())
                } else {
                    String::new()
                }
            })
            .y_desc("responses")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(by.values().enumerate().map(|(i, n)| {
                let x = i as f64;
                Rectangle::new(
                    [(x - 0.3, 0.0), (x + 0.3, *n as f64)],
                    BLUE.mix(0.8).filled(),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(by.values().enumerate().map(|(i, n)| {
                Text::new(
                    n.to_string(),
                    (i as f64 - 0.08, *n as f64 + hi * 0.05),
                    (FONT, 13),
                )
            }))
            .map_err(err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{interval, ok, refused, results};

    /// A steady 100 req/s whose run ended a quarter of the way into its third
    /// interval: that interval's 25 requests are 100 req/s too, not 25.
    #[test]
    fn a_partial_last_interval_keeps_its_rate() {
        let steady = vec![ok(1_000); 100];
        let mut tail = vec![ok(1_000); 20];
        tail.extend([refused(); 5]);
        let mut r = results(vec![
            interval(0.0, 1.0, &steady),
            interval(1.0, 1.0, &steady),
            interval(2.0, 1.0, &tail),
        ]);
        r.run.duration_s = 2.25;
        let report = Report::new(r, None).unwrap();
        let Throughput {
            ok,
            failed,
            offered,
        } = throughput(&report);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].0, "2xx");
        assert_eq!(ok[0].2, [(0.5, 100.0), (1.5, 100.0), (2.125, 80.0)]);
        assert_eq!(failed[0].0, "connect_refused");
        assert_eq!(failed[0].2, [(0.5, 0.0), (1.5, 0.0), (2.125, 20.0)]);
        assert_eq!(offered, [(0.5, 100.0), (1.5, 100.0), (2.125, 100.0)]);
    }

    /// A run that ends exactly on an interval boundary has no partial interval.
    #[test]
    fn full_intervals_divide_by_their_width() {
        let mut r = results(vec![
            interval(0.0, 2.0, &vec![ok(1_000); 50]),
            interval(2.0, 2.0, &vec![ok(1_000); 30]),
        ]);
        r.run.duration_s = 4.0;
        let report = Report::new(r, None).unwrap();
        assert_eq!(throughput(&report).ok[0].2, [(1.0, 25.0), (3.0, 15.0)]);
    }
}
