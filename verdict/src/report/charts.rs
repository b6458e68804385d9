//! The HTML report's charts, drawn by plotters into SVG strings that are inlined in
//! the page, so the report is one file that opens anywhere without a network.
//! Every chart on the run's clock shares one plot frame, shades the fault windows and
//! marks stage starts, so a fault lines up across the charts.

use hdrhistogram::Histogram;
use loadgen::results::{Interval, LatencyOf, LatencySummary};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::Report;
use crate::slo::format_ms;

/// No wider than the page's content box (1100 − 2 × 24 − 2 × 21), so the browser
/// shows the SVG at its own size and 12 px text stays 12 px.
pub(crate) const W: u32 = 1000;
pub(crate) const H: u32 = 380;
pub(crate) const FONT: &str = "sans-serif";
/// Every time chart reserves the same label areas, left and right, whether or not
/// it has a right axis: the plots then have one width and the fault bands align.
pub(crate) const LEFT_AREA: u32 = 96;
const RIGHT_AREA: u32 = 84;
pub(crate) const BOTTOM_AREA: u32 = 48;
pub(crate) const MARGIN: u32 = 12;
/// Pixel sizes of the text as it shows in the page.
const TITLE_PX: f64 = 17.0;
pub(crate) const TEXT_PX: f64 = 13.0;
pub(crate) const SMALL_PX: f64 = 12.0;
/// A run with fewer buckets than this gets a dot on each bucket: its steps alone
/// would read as a flat line across the chart, or as nothing.
const FEW_BUCKETS: usize = 3;

pub(crate) type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;

pub(crate) const BLUE: RGBColor = RGBColor(31, 119, 180);
pub(crate) const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub(crate) const RED: RGBColor = RGBColor(214, 39, 40);
pub(crate) const GREEN: RGBColor = RGBColor(44, 160, 44);
pub(crate) const PURPLE: RGBColor = RGBColor(148, 103, 189);
pub(crate) const GREY: RGBColor = RGBColor(127, 127, 127);
const PINK: RGBColor = RGBColor(227, 119, 194);
pub(crate) const DARK_RED: RGBColor = RGBColor(120, 20, 20);
const FAULT: RGBColor = RGBColor(200, 30, 30);
/// The plot frame of a time chart: one colour so a test can find it.
pub(crate) const FRAME: RGBColor = RGBColor(160, 166, 173);
const PALETTE: [RGBColor; 8] = [
    BLUE,
    ORANGE,
    PURPLE,
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    GREY,
];

pub(crate) fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// plotters' SVG backend writes a font's size divided by 1.24; this asks for a
/// size as it will show.
pub(crate) fn font(px: f64) -> FontDesc<'static> {
    (FONT, px * 1.24).into_font()
}

/// Draws into a fresh SVG document and returns its text.
pub(crate) fn svg(draw: impl FnOnce(&Root) -> Result<(), String>) -> Result<String, String> {
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
pub(crate) fn empty(title: &str, why: &str) -> Result<String, String> {
    svg(|root| {
        root.titled(title, font(TITLE_PX)).map_err(err)?;
        root.draw(&Text::new(
            why.to_string(),
            (W as i32 / 2 - 150, H as i32 / 2),
            font(16.0).color(&GREY),
        ))
        .map_err(err)
    })
}

/// One entry of a chart's key: a line of this colour (dashed: a target or plan).
pub(crate) struct Key {
    label: String,
    colour: RGBColor,
    dashed: bool,
}

pub(crate) fn key(label: impl Into<String>, colour: RGBColor, dashed: bool) -> Key {
    Key {
        label: label.into(),
        colour,
        dashed,
    }
}

/// Title, then the key in rows under it (outside the plot, where it can never
/// hide a line or a fault label) and an optional note, then the area left for the
/// plot.
pub(crate) fn frame<'a>(
    root: &Root<'a>,
    title: &str,
    keys: &[Key],
    note: Option<&str>,
) -> Result<Root<'a>, String> {
    let area = root.titled(title, font(TITLE_PX)).map_err(err)?;
    // The SVG backend cannot measure text; 7.5 px a character is close at 13 px.
    let width = |k: &Key| 26 + (k.label.chars().count() as f64 * 7.5) as i32 + 22;
    let mut rows: Vec<Vec<(i32, &Key)>> = vec![Vec::new()];
    let mut x = LEFT_AREA as i32;
    for k in keys {
        if x + width(k) > W as i32 - 20 && !rows.last().is_some_and(Vec::is_empty) {
            rows.push(Vec::new());
            x = LEFT_AREA as i32;
        }
        rows.last_mut().expect("one row").push((x, k));
        x += width(k);
    }
    let lines = rows.len() as u32 + u32::from(note.is_some());
    let (strip, plot) = area.split_vertically(4 + 20 * lines);
    for (row, entries) in rows.iter().enumerate() {
        let y = 11 + 20 * row as i32;
        for (x, k) in entries {
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
                .draw(&Text::new(k.label.clone(), (x + 26, y - 8), font(TEXT_PX)))
                .map_err(err)?;
        }
    }
    if let Some(note) = note {
        strip
            .draw(&Text::new(
                note.to_string(),
                (LEFT_AREA as i32, 3 + 20 * rows.len() as i32),
                font(TEXT_PX).color(&GREY),
            ))
            .map_err(err)?;
    }
    Ok(plot)
}

// ---- axes ------------------------------------------------------------------

/// A linear coordinate labelled exactly at the ticks we chose (plotters' own pick
/// crowds a log axis and puts fractions on a count axis).
struct Ticked {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

fn ticked(lo: f64, hi: f64, ticks: &[f64]) -> Ticked {
    Ticked {
        range: lo..hi,
        ticks: ticks.to_vec(),
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

/// 1, 2 or 5 times a power of ten: the tick step nearest `raw` from above.
fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

/// Multiples of `step` in `[lo, hi]`.
fn ticks_of(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Decimals that tell ticks `step` apart.
fn decimals(step: f64) -> usize {
    (-step.log10().floor()).max(0.0) as usize
}

/// How an axis's numbers read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    /// Milliseconds, on a log scale.
    Ms,
    /// Per cent, with as many decimals as the ticks need.
    Percent,
    /// Requests (or requests per second): whole numbers only.
    Count,
}

/// One y axis: its range and where its labelled ticks go. A log axis works in
/// log10 of the value so that every chart is one coordinate type.
#[derive(Debug, Clone)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    unit: Unit,
    desc: String,
}

impl Axis {
    /// From 0 to a whole-numbered top tick above `max`.
    fn count(max: f64, desc: &str) -> Self {
        let top = (max * 1.15).max(1.0);
        let step = nice_step(top / 5.0).max(1.0);
        let hi = (top / step).ceil() * step;
        Self {
            lo: 0.0,
            hi,
            ticks: ticks_of(0.0, hi, step),
            unit: Unit::Count,
            desc: desc.into(),
        }
    }

    /// Log milliseconds around `[lo, hi]`, ticks at 1, 2 and 5 of each decade (only
    /// the decades when that would crowd the axis).
    fn log_ms(lo: f64, hi: f64, desc: &str) -> Self {
        let (lo, hi) = (lo.max(0.001) / 1.6, hi.max(0.001) * 1.6);
        let decade = |m: &[f64]| -> Vec<f64> {
            let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
            (a..=b)
                .flat_map(|e| m.iter().map(move |m| m * 10f64.powi(e)))
                .filter(|v| *v >= lo && *v <= hi)
                .collect()
        };
        let mut ticks = decade(&[1.0, 2.0, 5.0]);
        if ticks.len() > 8 {
            ticks = decade(&[1.0]);
        }
        Self {
            lo: lo.log10(),
            hi: hi.log10(),
            ticks: ticks.into_iter().map(f64::log10).collect(),
            unit: Unit::Ms,
            desc: desc.into(),
        }
    }

    /// Per cent, zoomed to `[lo, 100]` so that 99.9 % and 100 % are not one line;
    /// no tick above 100 %.
    fn percent(lo: f64, desc: &str) -> Self {
        let span = (100.0 - lo).max(0.2);
        let (lo, hi) = ((lo - span * 0.15).max(0.0), 100.0 + span * 0.08);
        let step = nice_step((100.0 - lo) / 5.0);
        Self {
            lo,
            hi,
            ticks: ticks_of(lo, 100.0, step),
            unit: Unit::Percent,
            desc: desc.into(),
        }
    }

    /// Where a value goes on this axis.
    fn map(&self, v: f64) -> f64 {
        match self.unit {
            Unit::Ms => v.max(1e-3).log10(),
            _ => v,
        }
    }

    fn label(&self, at: f64) -> String {
        match self.unit {
            Unit::Ms => ms_tick(10f64.powf(at)),
            Unit::Count => format!("{at:.0}"),
            Unit::Percent => {
                let step = self.ticks.get(1).zip(self.ticks.first());
                let d = step.map_or(2, |(b, a)| decimals(b - a));
                format!("{at:.d$}%")
            }
        }
    }
}

/// A log-axis tick in the unit that keeps it short: 500 µs, 2 ms, 1 s.
fn ms_tick(ms: f64) -> String {
    let ms = (ms * 1e6).round() / 1e6;
    if ms >= 1000.0 {
        format!("{} s", trim_float(ms / 1000.0))
    } else if ms >= 1.0 {
        format!("{} ms", trim_float(ms))
    } else {
        format!("{} µs", trim_float(ms * 1000.0))
    }
}

/// The run's clock: from 0 to the end of the data (or the last fault, if later),
/// in milliseconds when the run was shorter than two seconds.
#[derive(Debug, Clone)]
struct Clock {
    end: f64,
    ticks: Vec<f64>,
    ms: bool,
}

impl Clock {
    fn of(report: &Report) -> Self {
        let run_s = report.results.run.duration_s;
        let data = report
            .results
            .timeline
            .last()
            .map_or(0.0, |iv| iv.start_s + iv.covered_s(run_s));
        let faults = report
            .faults()
            .iter()
            .filter(|f| f.error.is_none())
            .map(|f| f.start_s);
        let mut end = faults.fold(data, f64::max);
        if end <= 0.0 {
            end = 1.0;
        }
        let step = nice_step(end / 8.0);
        Self {
            end,
            ticks: ticks_of(0.0, end, step),
            ms: end < 2.0,
        }
    }

    fn label(&self, s: f64) -> String {
        if self.ms {
            trim_float(s * 1000.0)
        } else {
            trim_float(s)
        }
    }

    fn desc(&self) -> &'static str {
        if self.ms {
            "milliseconds since the load started"
        } else {
            "seconds since the load started"
        }
    }
}

// ---- time charts -----------------------------------------------------------

/// A value held over `[x0, x1)`: one interval of the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    x0: f64,
    x1: f64,
    y: f64,
}

/// A line on a time chart: bucketed data as steps (flat across each interval,
/// vertical at its edges), broken where an interval has no value.
#[derive(Debug, Clone)]
struct Line {
    label: String,
    colour: RGBColor,
    /// A target or a plan rather than a measurement.
    dashed: bool,
    /// On the right-hand axis.
    right: bool,
    width: u32,
    steps: Vec<Step>,
}

impl Line {
    fn new(label: impl Into<String>, colour: RGBColor, steps: Vec<Step>) -> Self {
        Self {
            label: label.into(),
            colour,
            dashed: false,
            right: false,
            width: 2,
            steps,
        }
    }

    /// A target across the whole clock.
    fn target(label: impl Into<String>, colour: RGBColor, y: f64, clock: &Clock) -> Self {
        Self {
            dashed: true,
            ..Self::new(
                label,
                colour,
                vec![Step {
                    x0: 0.0,
                    x1: clock.end,
                    y,
                }],
            )
        }
    }

    /// The polylines to draw: steps that touch are joined, gaps split.
    fn paths(&self) -> Vec<Vec<(f64, f64)>> {
        let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut last_x1: Option<f64> = None;
        for s in &self.steps {
            let joins = last_x1.is_some_and(|x1| (s.x0 - x1).abs() < 1e-9);
            if !joins {
                out.push(Vec::new());
            }
            let path = out.last_mut().expect("pushed");
            path.push((s.x0, s.y));
            path.push((s.x1, s.y));
            last_x1 = Some(s.x1);
        }
        out
    }
}

/// Everything one time chart shows, worked out before anything is drawn.
#[derive(Debug, Clone)]
struct TimeChart {
    title: String,
    left: Axis,
    right: Option<Axis>,
    lines: Vec<Line>,
    note: Option<String>,
}

/// One step per interval that has a value, over the part the run covered.
fn steps(report: &Report, value: impl Fn(&Interval) -> Option<f64>) -> Vec<Step> {
    let run_s = report.results.run.duration_s;
    report
        .results
        .timeline
        .iter()
        .filter_map(|iv| {
            value(iv).map(|y| Step {
                x0: iv.start_s,
                x1: iv.start_s + iv.covered_s(run_s),
                y,
            })
        })
        .collect()
}

/// Per second over the time the interval covered: the last one is usually partial.
fn rate(report: &Report, n: u64, iv: &Interval) -> f64 {
    match iv.covered_s(report.results.run.duration_s) {
        d if d > 0.0 => n as f64 / d,
        _ => 0.0,
    }
}

/// Says so when the run was too short for a line over time.
fn short_run_note(report: &Report) -> Option<String> {
    let tl = &report.results.timeline;
    if tl.is_empty() || tl.len() >= FEW_BUCKETS {
        return None;
    }
    let run_s = report.results.run.duration_s;
    let width = tl[0].duration_s;
    Some(if run_s < width {
        format!(
            "The run ({}) was shorter than one interval ({}): each dot is the whole run.",
            format_ms(run_s * 1e3),
            format_ms(width * 1e3)
        )
    } else {
        format!("Only {} intervals: each dot is one.", tl.len())
    })
}

fn top(lines: &[Line], right: bool) -> f64 {
    lines
        .iter()
        .filter(|l| l.right == right)
        .flat_map(|l| l.steps.iter().map(|s| s.y))
        .fold(0.0, f64::max)
}

fn draw_time(report: &Report, chart: &TimeChart) -> Result<String, String> {
    let clock = Clock::of(report);
    let keys: Vec<Key> = chart
        .lines
        .iter()
        .map(|l| {
            let label = if l.right && chart.right.is_some() {
                format!("{} (right axis)", l.label)
            } else {
                l.label.clone()
            };
            key(label, l.colour, l.dashed)
        })
        .collect();
    let dots = report.results.timeline.len() < FEW_BUCKETS;
    let (left, right) = (&chart.left, chart.right.as_ref().unwrap_or(&chart.left));
    svg(|root| {
        let plot = frame(root, &chart.title, &keys, chart.note.as_deref())?;
        let mut c = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .margin_top(MARGIN + 17 * fault_rows(report))
            .x_label_area_size(BOTTOM_AREA)
            .y_label_area_size(LEFT_AREA)
            .right_y_label_area_size(RIGHT_AREA)
            .build_cartesian_2d(
                ticked(0.0, clock.end, &clock.ticks),
                ticked(left.lo, left.hi, &left.ticks),
            )
            .map_err(err)?
            .set_secondary_coord(
                ticked(0.0, clock.end, &clock.ticks),
                ticked(right.lo, right.hi, &right.ticks),
            );
        c.configure_mesh()
            .x_desc(clock.desc())
            .y_desc(left.desc.as_str())
            .x_label_formatter(&|x| clock.label(*x))
            .y_label_formatter(&|y| left.label(*y))
            .label_style(font(TEXT_PX))
            .axis_desc_style(font(TEXT_PX))
            .bold_line_style(GREY.mix(0.18))
            .draw()
            .map_err(err)?;
        if chart.right.is_some() {
            c.configure_secondary_axes()
                .y_desc(right.desc.as_str())
                .y_label_formatter(&|y| right.label(*y))
                .label_style(font(TEXT_PX))
                .axis_desc_style(font(TEXT_PX))
                .draw()
                .map_err(err)?;
        }
        let (xr, yr) = c.plotting_area().get_pixel_range();
        outline(root, &xr, &yr)?;
        draw_context(
            root,
            report,
            &clock,
            |x| c.backend_coord(&(x, left.lo)).0,
            yr.clone(),
        )?;
        for line in &chart.lines {
            let axis = if line.right { right } else { left };
            let style = line.colour.stroke_width(line.width);
            for path in line.paths() {
                let pts = path.into_iter().map(|(x, y)| (x, axis.map(y)));
                if line.dashed && line.right {
                    c.draw_secondary_series(DashedLineSeries::new(pts, 8, 5, style))
                } else if line.dashed {
                    c.draw_series(DashedLineSeries::new(pts, 8, 5, style))
                } else if line.right {
                    c.draw_secondary_series(LineSeries::new(pts, style))
                } else {
                    c.draw_series(LineSeries::new(pts, style))
                }
                .map_err(err)?;
            }
            if dots && !line.dashed {
                let marks = line
                    .steps
                    .iter()
                    .map(|s| Circle::new(((s.x0 + s.x1) / 2.0, axis.map(s.y)), 5, style.filled()));
                if line.right {
                    c.draw_secondary_series(marks)
                } else {
                    c.draw_series(marks)
                }
                .map_err(err)?;
            }
        }
        draw_fault_labels(
            root,
            report,
            &clock,
            |x| c.backend_coord(&(x, left.lo)).0,
            yr.start,
        )
    })
}

/// The plot's frame, in the one colour every chart uses for it.
fn outline(root: &Root, x: &std::ops::Range<i32>, y: &std::ops::Range<i32>) -> Result<(), String> {
    root.draw(&Rectangle::new(
        [(x.start, y.start), (x.end, y.end)],
        FRAME.stroke_width(1),
    ))
    .map_err(err)
}

/// Shades each fault window (a line for an instantaneous fault) and marks where
/// each stage starts, all clipped to the plot. Works in pixels: `px`
/// maps a time to its x pixel, `y` is the plot's pixel height range.
fn draw_context(
    root: &Root,
    report: &Report,
    clock: &Clock,
    px: impl Fn(f64) -> i32,
    y: std::ops::Range<i32>,
) -> Result<(), String> {
    let inside = |s: f64| (0.0..clock.end).contains(&s);
    for st in report.stages().iter().skip(1).filter(|s| inside(s.start_s)) {
        let x = px(st.start_s);
        root.draw(&PathElement::new(
            vec![(x, y.start), (x, y.end)],
            GREY.mix(0.6).stroke_width(1),
        ))
        .map_err(err)?;
    }
    for st in report.stages().iter().filter(|s| inside(s.start_s)) {
        root.draw(&Text::new(
            st.name.clone(),
            (px(st.start_s) + 4, y.end - 18),
            font(SMALL_PX).color(&GREY),
        ))
        .map_err(err)?;
    }
    for f in report
        .faults()
        .iter()
        .filter(|f| f.error.is_none() && f.start_s <= clock.end)
    {
        let x0 = px(f.start_s);
        let x1 = f.end_s.map_or(x0, |e| px(e.min(clock.end))).max(x0 + 3);
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
    }
    Ok(())
}

/// Rows of fault labels above a time chart's plot (faults close together take
/// turns, three rows at most).
fn fault_rows(report: &Report) -> u32 {
    report
        .faults()
        .iter()
        .filter(|f| f.error.is_none())
        .count()
        .min(3) as u32
}

/// The faults' labels, in the rows above the plot: inside it they would hide a
/// line at the top (or be crossed out by one).
fn draw_fault_labels(
    root: &Root,
    report: &Report,
    clock: &Clock,
    px: impl Fn(f64) -> i32,
    top: i32,
) -> Result<(), String> {
    let rows = fault_rows(report) as i32;
    for (i, f) in report
        .faults()
        .iter()
        .filter(|f| f.error.is_none() && f.start_s <= clock.end)
        .enumerate()
    {
        let row = i as i32 % 3;
        root.draw(&Text::new(
            format!("⚡ {}", f.label),
            (px(f.start_s) + 3, top - 17 * (rows - row) + 1),
            font(TEXT_PX).color(&FAULT),
        ))
        .map_err(err)?;
    }
    Ok(())
}

fn percentile_lines(
    report: &Report,
    of: impl Fn(&Interval) -> Option<LatencySummary>,
    lines: &[(&str, &str, RGBColor)],
) -> Vec<Line> {
    lines
        .iter()
        .map(|(label, p, colour)| {
            let pts = steps(report, |iv| {
                of(iv)
                    .filter(|l| l.count > 0)
                    .and_then(|l| l.percentile(p))
                    .map(|v| v.max(1) as f64 / 1e3)
            });
            Line::new(*label, *colour, pts)
        })
        .collect()
}

/// Latency lines plus the SLO's latency targets, on a log axis fitted to both.
fn latency_chart(report: &Report, title: &str, mut lines: Vec<Line>) -> Option<TimeChart> {
    lines.retain(|l| !l.steps.is_empty());
    if lines.is_empty() {
        return None;
    }
    let clock = Clock::of(report);
    for (k, t) in report.latency_targets() {
        let colour = match k.as_str() {
            "p50" => BLUE,
            "p95" => ORANGE,
            "p99" => RED,
            _ => PURPLE,
        };
        lines.push(Line::target(
            format!("{k} SLO ≤ {}", format_ms(t)),
            colour,
            t,
            &clock,
        ));
    }
    let values = lines.iter().flat_map(|l| l.steps.iter().map(|s| s.y));
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    Some(TimeChart {
        title: title.into(),
        left: Axis::log_ms(lo, hi, "latency (log scale)"),
        right: None,
        lines,
        note: short_run_note(report),
    })
}

fn latency_spec(report: &Report) -> Option<TimeChart> {
    let lines = percentile_lines(
        report,
        |iv| Some(iv.latency.clone()),
        &[
            ("p50", "p50", BLUE),
            ("p95", "p95", ORANGE),
            ("p99", "p99", RED),
        ],
    );
    latency_chart(
        report,
        "Latency over time, every response (p50 / p95 / p99 per interval)",
        lines,
    )
}

/// (1) p50/p95/p99 per interval on a log axis, with the SLO latency lines.
pub fn latency_over_time(report: &Report) -> Result<String, String> {
    match latency_spec(report) {
        Some(c) => draw_time(report, &c),
        None => empty(
            "Latency over time, every response (p50 / p95 / p99 per interval)",
            "no responses were measured",
        ),
    }
}

fn good_bad_spec(report: &Report) -> Result<Option<TimeChart>, String> {
    let of = |kind: LatencyOf| {
        move |iv: &Interval| {
            iv.latency_histogram(kind)
                .ok()
                .map(|h| LatencySummary::from_histogram(&h))
        }
    };
    // A file whose histograms do not decode is a broken file, not a quiet chart.
    for iv in &report.results.timeline {
        iv.latency_histogram(LatencyOf::Good).map_err(err)?;
    }
    let mut lines = percentile_lines(
        report,
        of(LatencyOf::Good),
        &[("good p50", "p50", BLUE), ("good p95", "p95", ORANGE)],
    );
    lines.extend(percentile_lines(
        report,
        of(LatencyOf::Bad),
        // Not the targets' colours: a bad line must not read as an SLO line.
        &[("bad p50", "p50", PINK), ("bad p95", "p95", DARK_RED)],
    ));
    Ok(latency_chart(
        report,
        "Latency of good and bad responses over time (per interval)",
        lines,
    ))
}

/// (1b) p50/p95 of the good and of the bad responses per interval: a fast 502 must
/// not pass for a fast service, nor a slow timeout hide in the mix.
pub fn latency_good_bad(report: &Report) -> Result<String, String> {
    match good_bad_spec(report)? {
        Some(c) => draw_time(report, &c),
        None => empty(
            "Latency of good and bad responses over time (per interval)",
            "no responses were measured",
        ),
    }
}

fn outcome_colour(name: &str, i: usize) -> RGBColor {
    match name {
        "2xx" => GREEN,
        "3xx" => BLUE,
        "4xx" => ORANGE,
        "5xx" => RED,
        _ => PALETTE[(i + 2) % PALETTE.len()],
    }
}

/// Successes on the left axis, failures on their own right-hand one: 15 refused
/// connections must not vanish under 2 000 successes a second.
fn split_axes(title: &str, lines: Vec<Line>, note: Option<String>) -> TimeChart {
    let left = Axis::count(top(&lines, false), "requests/s");
    let right = lines
        .iter()
        .any(|l| l.right)
        .then(|| Axis::count(top(&lines, true), "errors/s"));
    TimeChart {
        title: title.into(),
        left,
        right,
        lines,
        note,
    }
}

fn throughput_spec(report: &Report) -> TimeChart {
    let mut names: Vec<&String> = report
        .results
        .totals
        .outcomes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, _)| name)
        .collect();
    names.sort();
    let mut lines = Vec::new();
    if matches!(report.results.plan.model, loadgen::Model::Open { .. }) {
        let offered = steps(report, |iv| Some(rate(report, iv.scheduled, iv)));
        if offered.iter().any(|s| s.y > 0.0) {
            lines.push(Line {
                dashed: true,
                ..Line::new("offered (scheduled)", GREY, offered)
            });
        }
    }
    for (i, name) in names.iter().enumerate() {
        let pts = steps(report, |iv| {
            let n = iv.outcomes.get(*name).copied().unwrap_or(0);
            Some(rate(report, n, iv))
        });
        lines.push(Line {
            right: !(name.starts_with('2') || name.starts_with('3')),
            ..Line::new(name.as_str(), outcome_colour(name, i), pts)
        });
    }
    split_axes(
        "Throughput (left) and errors by outcome (right), requests/s",
        lines,
        short_run_note(report),
    )
}

/// (2) Requests per second by outcome, and the offered rate of an open model.
pub fn throughput_over_time(report: &Report) -> Result<String, String> {
    if report.results.timeline.is_empty() {
        return empty(
            "Throughput (left) and errors by outcome (right), requests/s",
            "the timeline is empty",
        );
    }
    draw_time(report, &throughput_spec(report))
}

/// Shades within a status class, so 500, 502 and 503 differ but all read as 5xx.
fn status_colour(code: u16, nth_in_class: usize) -> RGBColor {
    let shades: &[RGBColor] = match code / 100 {
        2 => &[GREEN, RGBColor(23, 190, 207), RGBColor(188, 189, 34)],
        3 => &[BLUE, RGBColor(100, 160, 220)],
        4 => &[ORANGE, RGBColor(140, 86, 75), RGBColor(227, 119, 194)],
        5 => &[RED, PURPLE, RGBColor(120, 20, 20), RGBColor(227, 119, 194)],
        _ => &[GREY],
    };
    shades[nth_in_class % shades.len()]
}

fn status_spec(report: &Report) -> Option<TimeChart> {
    let codes: std::collections::BTreeSet<u16> = report
        .results
        .timeline
        .iter()
        .flat_map(|iv| iv.status_codes.keys().copied())
        .collect();
    if codes.is_empty() {
        return None;
    }
    let mut nth = std::collections::BTreeMap::new();
    let lines = codes
        .iter()
        .map(|code| {
            let n = nth.entry(code / 100).or_insert(0usize);
            let colour = status_colour(*code, *n);
            *n += 1;
            let pts = steps(report, |iv| {
                Some(rate(
                    report,
                    iv.status_codes.get(code).copied().unwrap_or(0),
                    iv,
                ))
            });
            Line {
                right: *code >= 400,
                ..Line::new(code.to_string(), colour, pts)
            }
        })
        .collect();
    Some(split_axes(
        "Responses by status code (4xx and 5xx on the right), responses/s",
        lines,
        short_run_note(report),
    ))
}

/// (2b) Responses per second by HTTP status code.
pub fn status_codes_over_time(report: &Report) -> Result<String, String> {
    match status_spec(report) {
        Some(c) => draw_time(report, &c),
        None => empty(
            "Responses by status code over time",
            "no HTTP responses were counted by status code",
        ),
    }
}

/// Colours that say what a cache outcome means; instances take the palette.
fn header_colour(value: &str, i: usize) -> RGBColor {
    match value.to_ascii_uppercase().as_str() {
        "HIT" => GREEN,
        "MISS" => ORANGE,
        "BYPASS" => RED,
        "" | "(none)" | "-" => GREY,
        _ => PALETTE[i % PALETTE.len()],
    }
}

/// The tracked response header's name, for titles.
pub fn header_name(report: &Report) -> String {
    report
        .results
        .plan
        .track_header
        .clone()
        .unwrap_or_else(|| "instance".into())
}

fn by_header_spec(report: &Report) -> Option<TimeChart> {
    let values: std::collections::BTreeSet<&String> = report
        .results
        .timeline
        .iter()
        .flat_map(|iv| iv.by_header.keys())
        .collect();
    if values.is_empty() {
        return None;
    }
    // Shares rather than rates: a killed instance drops from a third to nothing
    // even while a spike multiplies the others' rates. A value missing from an
    // interval had no responses there (0 %), an interval with none at all has no
    // share (a gap).
    let lines: Vec<Line> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let pts = steps(report, |iv| {
                let all: u64 = iv.by_header.values().sum();
                (all > 0)
                    .then(|| iv.by_header.get(*v).copied().unwrap_or(0) as f64 / all as f64 * 100.0)
            });
            Line {
                // Equal shares draw one over the other; wider lines underneath
                // keep each visible.
                width: (2 + values.len().saturating_sub(i + 1) * 2).min(8) as u32,
                ..Line::new(v.as_str(), header_colour(v, i), pts)
            }
        })
        .collect();
    let header = header_name(report);
    Some(TimeChart {
        title: format!("Share of responses by {header} (per interval)"),
        left: Axis {
            lo: 0.0,
            hi: 105.0,
            ticks: ticks_of(0.0, 100.0, 20.0),
            unit: Unit::Percent,
            desc: "share of responses".into(),
        },
        right: None,
        lines,
        note: short_run_note(report),
    })
}

/// (5b) The share of each interval's responses per value of the tracked header
/// (the instance that served it, or the cache outcome).
pub fn by_header_over_time(report: &Report) -> Result<String, String> {
    match by_header_spec(report) {
        Some(c) => draw_time(report, &c),
        None => empty(
            &format!("Share of responses by {}", header_name(report)),
            "no per-interval counts of a tracked response header",
        ),
    }
}

fn availability_spec(report: &Report) -> Option<TimeChart> {
    let pts = steps(report, |iv| {
        (iv.good + iv.bad > 0).then(|| iv.good as f64 / (iv.good + iv.bad) as f64 * 100.0)
    });
    if pts.is_empty() {
        return None;
    }
    let clock = Clock::of(report);
    let target = report.availability_target().map(|t| t * 100.0);
    let lo = pts.iter().map(|p| p.y).chain(target).fold(100f64, f64::min);
    let mut lines = vec![Line::new("availability", BLUE, pts)];
    if let Some(t) = target {
        lines.push(Line::target(
            format!("target {}%", trim_float(t)),
            RED,
            t,
            &clock,
        ));
    }
    Some(TimeChart {
        title: "Availability over time (good / valid per interval)".into(),
        left: Axis::percent(lo, "availability"),
        right: None,
        lines,
        note: short_run_note(report),
    })
}

/// (3) Availability per interval with the target line.
pub fn availability_over_time(report: &Report) -> Result<String, String> {
    match availability_spec(report) {
        Some(c) => draw_time(report, &c),
        None => empty(
            "Availability over time (good / valid per interval)",
            "no valid requests were measured",
        ),
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

// ---- whole-run charts --------------------------------------------------------

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
                (1.0 / (1.0 - q)).min(x_hi).log10(),
                v.value_iterated_to() as f64 / 1e3,
            )
        })
        .take_while(|p| p.0 < decades)
        .collect();
    pts.push((decades, total.max() as f64 / 1e3));
    let targets = report.latency_targets();
    let y_top = pts
        .iter()
        .map(|p| p.1)
        .chain(targets.iter().map(|t| t.1))
        .fold(0f64, f64::max)
        * 1.15;
    let step = nice_step(y_top.max(0.01) / 5.0);
    let y_hi = (y_top.max(0.01) / step).ceil() * step;
    // In log10 of 1 / (1 − q): 0 is the median's side, `decades` the tail.
    let x_ticks: Vec<f64> = (0..=decades as i32).map(f64::from).collect();
    let mut keys = vec![key("latency", BLUE, false)];
    for (k, t) in &targets {
        keys.push(key(
            format!("{k} SLO ≤ {} (dot: at {k})", format_ms(*t)),
            RED,
            true,
        ));
    }
    svg(|root| {
        let plot = frame(root, TITLE, &keys, None)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(BOTTOM_AREA)
            .y_label_area_size(LEFT_AREA)
            .margin_right(MARGIN + RIGHT_AREA)
            .build_cartesian_2d(
                ticked(0.0, decades, &x_ticks),
                ticked(0.0, y_hi, &ticks_of(0.0, y_hi, step)),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency")
            .x_label_formatter(&|x| format!("{}%", trim_float((1.0 - 10f64.powf(-x)) * 100.0)))
            .y_label_formatter(&|v| format_ms(*v))
            .label_style(font(TEXT_PX))
            .axis_desc_style(font(TEXT_PX))
            .bold_line_style(GREY.mix(0.18))
            .draw()
            .map_err(err)?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        outline(root, &xr, &yr)?;
        for (key, target) in &targets {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, *target), (decades, *target)],
                    8,
                    5,
                    RED.stroke_width(1),
                ))
                .map_err(err)?;
            let q = crate::slo::parse_percentile_key(key).unwrap_or(50.0) / 100.0;
            let x = (1.0 / (1.0 - q).max(1e-9)).min(x_hi).log10();
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
    let title = format!("Responses per {} value (whole run)", header_name(report));
    let by = &report.results.totals.by_header;
    if by.is_empty() {
        return empty(&title, "the load did not track an instance header");
    }
    let names: Vec<&String> = by.keys().collect();
    let axis = Axis::count(by.values().copied().max().unwrap_or(1) as f64, "responses");
    svg(|root| {
        let plot = frame(root, &title, &[], None)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(BOTTOM_AREA)
            .y_label_area_size(LEFT_AREA)
            .margin_right(MARGIN + RIGHT_AREA)
            .build_cartesian_2d(
                ticked(
                    -0.5,
                    names.len() as f64 - 0.5,
                    &(0..names.len()).map(|i| i as f64).collect::<Vec<_>>(),
                ),
                ticked(axis.lo, axis.hi, &axis.ticks),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| {
                names
                    .get(x.round().max(0.0) as usize)
                    .map_or(String::new(), |n| n.to_string())
            })
            .y_label_formatter(&|y| axis.label(*y))
            .y_desc("responses")
            .label_style(font(TEXT_PX))
            .axis_desc_style(font(TEXT_PX))
            .bold_line_style(GREY.mix(0.18))
            .draw()
            .map_err(err)?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        outline(root, &xr, &yr)?;
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
                    (i as f64 - 0.08, *n as f64 + axis.hi * 0.05),
                    font(TEXT_PX),
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

    fn line<'a>(chart: &'a TimeChart, label: &str) -> &'a Line {
        chart
            .lines
            .iter()
            .find(|l| l.label == label)
            .unwrap_or_else(|| panic!("no line {label}"))
    }

    fn ys(l: &Line) -> Vec<f64> {
        l.steps.iter().map(|s| s.y).collect()
    }

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
        let chart = throughput_spec(&report);
        let ok = line(&chart, "2xx");
        assert!(!ok.right);
        assert_eq!(ys(ok), [100.0, 100.0, 80.0]);
        // The last step ends where the run did, not where its interval would have.
        assert_eq!(ok.steps[2].x0, 2.0);
        assert_eq!(ok.steps[2].x1, 2.25);
        let failed = line(&chart, "connect_refused");
        assert!(failed.right);
        assert_eq!(ys(failed), [0.0, 0.0, 20.0]);
        assert_eq!(
            ys(line(&chart, "offered (scheduled)")),
            [100.0, 100.0, 100.0]
        );
        assert_eq!(Clock::of(&report).end, 2.25);
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
        assert_eq!(ys(line(&throughput_spec(&report), "2xx")), [25.0, 15.0]);
    }

    /// Touching steps join into one path that is flat across each interval and
    /// vertical at its edges; a gap starts a new path.
    #[test]
    fn steps_join_into_stairs_and_gaps_split_them() {
        let s = |x0, x1, y| Step { x0, x1, y };
        let l = Line::new(
            "x",
            BLUE,
            vec![s(0.0, 1.0, 5.0), s(1.0, 2.0, 7.0), s(3.0, 4.0, 1.0)],
        );
        assert_eq!(
            l.paths(),
            [
                vec![(0.0, 5.0), (1.0, 5.0), (1.0, 7.0), (2.0, 7.0)],
                vec![(3.0, 1.0), (4.0, 1.0)]
            ]
        );
    }

    #[test]
    fn count_axes_tick_whole_numbers_from_zero_above_the_data() {
        for max in [0.0, 0.3, 3.0, 7.0, 13.0, 199.0, 2_000.0, 3_507.0, 123_456.0] {
            let a = Axis::count(max, "n");
            assert_eq!(a.lo, 0.0);
            assert!(a.hi >= max && a.hi >= 1.0, "{max}: {a:?}");
            assert!(a.ticks.len() >= 2 && a.ticks.len() <= 12, "{max}: {a:?}");
            assert_eq!(a.ticks.first(), Some(&0.0));
            for t in &a.ticks {
                assert_eq!(t.fract(), 0.0, "{max}: {a:?}");
                assert!(*t <= a.hi);
            }
        }
    }

    #[test]
    fn log_axes_tick_inside_their_range_without_crowding() {
        for (lo, hi) in [(3.0, 10.2), (0.05, 250.0), (4.0, 4.0), (0.9, 30_000.0)] {
            let a = Axis::log_ms(lo, hi, "latency");
            assert!(
                a.lo <= lo.log10() && a.hi >= hi.log10(),
                "{lo}..{hi}: {a:?}"
            );
            assert!(
                !a.ticks.is_empty() && a.ticks.len() <= 8,
                "{lo}..{hi}: {a:?}"
            );
            for t in &a.ticks {
                assert!(*t >= a.lo && *t <= a.hi, "{lo}..{hi}: {a:?}");
            }
            let labels: Vec<String> = a.ticks.iter().map(|t| a.label(*t)).collect();
            let mut unique = labels.clone();
            unique.dedup();
            assert_eq!(labels, unique);
        }
        assert_eq!(
            Axis::log_ms(3.0, 10.2, "")
                .ticks
                .iter()
                .map(|t| ms_tick(10f64.powf(*t)))
                .collect::<Vec<_>>(),
            ["2 ms", "5 ms", "10 ms"]
        );
    }

    #[test]
    fn availability_ticks_stop_at_100_percent() {
        for lo in [100.0, 99.95, 99.0, 83.5, 0.0] {
            let a = Axis::percent(lo, "availability");
            assert!(a.lo <= lo && a.hi > 100.0, "{lo}: {a:?}");
            assert!(a.ticks.iter().all(|t| *t >= a.lo && *t <= 100.0), "{a:?}");
            assert!(a.ticks.len() >= 2, "{lo}: {a:?}");
            let labels: Vec<String> = a.ticks.iter().map(|t| a.label(*t)).collect();
            let mut unique = labels.clone();
            unique.dedup();
            assert_eq!(labels, unique, "{lo}");
        }
    }
}
