//! `slolab report` end to end: a synthetic experiment results file (the fixture the
//! unit tests use) rendered by the real binary in each format.
//!
//! The charts are checked in the SVG the binary wrote: step paths, one plot frame
//! for every time chart, fault bands that line up, readable text, data and tick
//! labels inside the axes.
//!
//! Set `SLOLAB_KEEP_REPORTS=DIR` to keep the rendered reports for a look in a browser.

#[path = "../../verdict/src/report/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};

use crate::support::slolab;

fn keep(path: &Path) {
    if let Ok(dir) = std::env::var("SLOLAB_KEEP_REPORTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, PathBuf::from(dir).join(path.file_name().unwrap())).unwrap();
    }
}

fn write_experiment(dir: &Path) -> PathBuf {
    let path = dir.join("results.json");
    fixture::experiment(42).write(&path).unwrap();
    keep(&path);
    path
}

#[test]
fn html_report_is_self_contained_with_every_chart() {
    let dir = tempfile::tempdir().unwrap();
    let results = write_experiment(dir.path());
    let out = dir.path().join("report.html");
    let st = slolab()
        .args(["report", "--format", "html", "--out"])
        .arg(&out)
        .arg(&results)
        .status()
        .unwrap();
    // The fixture's kill costs 30 requests of 14 000: under 99.9 %.
    assert_eq!(st.code(), Some(3));
    keep(&out);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 8, "one chart per section");
    assert_eq!(html.matches("</svg>").count(), 8);
    assert!(html.contains("kill api-2"));
    assert!(html.contains("latency redis 200ms"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("<link"));
}

#[test]
fn markdown_and_text_reports_show_verdict_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let results = write_experiment(dir.path());
    let md = slolab()
        .args(["report", "--format", "md"])
        .arg(&results)
        .output()
        .unwrap();
    assert_eq!(md.status.code(), Some(3));
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(md.contains("SLO NOT met"), "{md}");
    assert!(
        md.contains("| Objective | Target | Measured | Met |"),
        "{md}"
    );
    assert!(md.contains("| :--- |"), "{md}");
    assert!(md.contains("| spike |"), "{md}");
    assert!(md.contains("| kill api-2 |"), "{md}");

    let text = slolab().args(["report"]).arg(&results).output().unwrap();
    assert_eq!(text.status.code(), Some(3));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("Objectives (whole run)"), "{text}");
    assert!(text.contains("availability"), "{text}");
    assert!(text.contains("╭"), "{text}");
}

#[test]
fn slo_flags_rejudge_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let results = write_experiment(dir.path());
    let out = slolab()
        .args(["report", "--slo", "availability=99%", "--slo", "p99=1s"])
        .arg(&results)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8(out.stdout).unwrap().contains("SLO met ✓"));

    let bad = slolab()
        .args(["report", "--slo", "p95=fast"])
        .arg(&results)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(err.contains("p95"), "{err}");
}

/// A real `slolab load --save` run against a tiny HTTP server in this test, then
/// every format of `slolab report` on the saved file: measurements, no verdict.
#[test]
fn reports_a_real_load_run() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                loop {
                    // Read one request head (no bodies: GET only), answer, keep alive.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let body = "ok";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Served-By: api-1\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("load.json");
    let st = slolab()
        .args(["load", "-n", "200", "-c", "4", "--save"])
        .arg(&saved)
        .arg(format!("http://{addr}/"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    let text = slolab().arg("report").arg(&saved).output().unwrap();
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("No SLO given"), "{text}");
    assert!(text.contains("│ 200 "), "200 requests measured: {text}");

    let md = slolab()
        .args(["report", "--format", "md"])
        .arg(&saved)
        .output()
        .unwrap();
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.contains("### Measurements") && md.contains("| 200 |"),
        "{md}"
    );

    let out = dir.path().join("load.html");
    let st = slolab()
        .args(["report", "--format", "html", "-o"])
        .arg(&out)
        .arg(&saved)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(html.matches("<svg").count(), 8);
    assert!(!html.contains("<section id=\"objectives\">"));

    // With objectives given on the command line, the same run gets a verdict.
    let judged = slolab()
        .args(["report", "--slo", "availability=99%", "--slo", "p99=10s"])
        .arg(&saved)
        .output()
        .unwrap();
    assert_eq!(judged.status.code(), Some(0));
    assert!(String::from_utf8(judged.stdout)
        .unwrap()
        .contains("SLO met ✓ (2 objectives)"));
}

#[test]
fn unreadable_results_are_a_tool_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    std::fs::write(&path, "{\"schema_version\": 1}").unwrap();
    let out = slolab().arg("report").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("results.json"));
    let missing = slolab()
        .arg("report")
        .arg(dir.path().join("nope.json"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

// ---- the charts' SVG --------------------------------------------------------

use fixture::{CHART_SECTIONS, TIME_CHARTS};

/// The plot frame every time chart draws (charts.rs FRAME) and the fault shading.
const FRAME: &str = "#A0A6AD";
const FAULT: &str = "#C81E1E";

/// `slolab report --format html` of `results`, its exit code checked.
fn render_html(dir: &Path, name: &str, results: &loadgen::Results, code: i32) -> String {
    let path = dir.join(format!("{name}.json"));
    results.write(&path).unwrap();
    let out = dir.join(format!("{name}.html"));
    let st = slolab()
        .args(["report", "--format", "html", "-o"])
        .arg(&out)
        .arg(&path)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(code), "{name}");
    keep(&out);
    std::fs::read_to_string(&out).unwrap()
}

fn chart<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}"));
    let svg = start + html[start..].find("<svg").expect("a chart");
    &html[svg..svg + html[svg..].find("</svg>").unwrap()]
}

/// Every `<name .../>` or `<name ...>` opening tag.
fn tags<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    svg.match_indices(&open)
        .map(|(i, _)| &svg[i..i + svg[i..].find('>').unwrap()])
        .collect()
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(&tag[i..i + tag[i..].find('"')?])
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        .parse()
        .unwrap()
}

/// A text element: position, anchor and content.
struct Label {
    x: f64,
    y: f64,
    anchor: String,
    text: String,
}

fn labels(svg: &str) -> Vec<Label> {
    svg.match_indices("<text ")
        .map(|(i, _)| {
            let tag_end = i + svg[i..].find('>').unwrap();
            let tag = &svg[i..tag_end];
            let body_end = tag_end + svg[tag_end..].find("</text>").unwrap();
            Label {
                x: num(tag, "x"),
                y: num(tag, "y"),
                anchor: attr(tag, "text-anchor").unwrap_or("start").to_string(),
                text: svg[tag_end + 1..body_end].trim().to_string(),
            }
        })
        .collect()
}

/// The plot area: (left, top, right, bottom) in pixels.
fn frame(svg: &str) -> (f64, f64, f64, f64) {
    let rect = tags(svg, "rect")
        .into_iter()
        .find(|r| attr(r, "stroke") == Some(FRAME) && attr(r, "fill") == Some("none"))
        .expect("a plot frame");
    let (x, y) = (num(rect, "x"), num(rect, "y"));
    (x, y, x + num(rect, "width"), y + num(rect, "height"))
}

fn fault_bands(svg: &str) -> Vec<(f64, f64)> {
    tags(svg, "rect")
        .into_iter()
        .filter(|r| attr(r, "fill") == Some(FAULT))
        .map(|r| (num(r, "x"), num(r, "x") + num(r, "width")))
        .collect()
}

fn points(polyline: &str) -> Vec<(f64, f64)> {
    attr(polyline, "points")
        .unwrap()
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// The colour of the line the key names `label`: the key's sample line ends 6 px
/// before its text.
fn colour_of<'a>(svg: &'a str, label: &str) -> &'a str {
    let key = labels(svg)
        .into_iter()
        .find(|l| l.text == label)
        .unwrap_or_else(|| panic!("no key {label}"));
    tags(svg, "polyline")
        .into_iter()
        .find(|p| {
            let pts = points(p);
            pts.len() == 2 && pts[1].0 == key.x - 6.0 && (pts[1].1 - key.y).abs() < 12.0
        })
        .and_then(|p| attr(p, "stroke"))
        .unwrap_or_else(|| panic!("no key line for {label}"))
}

/// The data lines of one colour inside the plot (the key's sample is outside).
fn data_lines(svg: &str, colour: &str) -> Vec<Vec<(f64, f64)>> {
    let (_, top, _, _) = frame(svg);
    tags(svg, "polyline")
        .into_iter()
        .filter(|p| attr(p, "stroke") == Some(colour) && num(p, "stroke-width") >= 2.0)
        .map(points)
        .filter(|pts| pts.iter().all(|p| p.1 >= top))
        .collect()
}

/// The y pixel of a step path over x (on a flat part, not at a jump).
fn y_at(path: &[(f64, f64)], x: f64) -> Option<f64> {
    path.windows(2)
        .find(|w| w[0].1 == w[1].1 && w[0].0 < x && x < w[1].0)
        .map(|w| w[0].1)
}

/// At 0: the frame's bottom edge is one pixel under the last row of the plot.
fn on_floor(y: Option<f64>, bottom: f64) -> bool {
    y.is_some_and(|y| (y - bottom).abs() <= 1.0)
}

fn assert_stairs(path: &[(f64, f64)]) {
    assert!(path.len() >= 2);
    for (i, w) in path.windows(2).enumerate() {
        if i % 2 == 0 {
            assert_eq!(w[0].1, w[1].1, "flat across an interval: {path:?}");
        } else {
            assert_eq!(w[0].0, w[1].0, "vertical at an interval edge: {path:?}");
        }
    }
}

/// Tick labels: those left of the plot (y axis) and under it (x axis).
fn ticks(svg: &str) -> (Vec<Label>, Vec<Label>) {
    let (left, _, right, bottom) = frame(svg);
    let (y, rest): (Vec<Label>, Vec<Label>) = labels(svg)
        .into_iter()
        .partition(|l| l.anchor == "end" && l.x < left);
    let x = rest
        .into_iter()
        .filter(|l| l.anchor == "middle" && l.y > bottom && l.y < bottom + 20.0)
        .filter(|l| l.x >= left - 1.0 && l.x <= right + 1.0)
        .collect();
    (y, x)
}

/// Readable text, and tick labels that sit inside their axis and do not overlap.
fn assert_axes_readable(id: &str, svg: &str) {
    for t in tags(svg, "text") {
        assert!(num(t, "font-size") >= 12.0, "{id}: small text {t}");
    }
    let (_, top, _, bottom) = frame(svg);
    let (y, x) = ticks(svg);
    assert!(y.len() >= 2 && x.len() >= 2, "{id}: too few ticks");
    for pair in y.windows(2) {
        assert!(
            (pair[0].y - pair[1].y).abs() >= 15.0,
            "{id}: y ticks {} and {} overlap",
            pair[0].text,
            pair[1].text
        );
    }
    for l in &y {
        assert!(
            l.y >= top - 1.0 && l.y <= bottom + 1.0,
            "{id}: tick {} outside the axis",
            l.text
        );
    }
    for pair in x.windows(2) {
        let room = (pair[1].x - pair[0].x).abs();
        let need = 7.5 * (pair[0].text.len() + pair[1].text.len()) as f64 / 2.0 + 6.0;
        assert!(
            room >= need,
            "{id}: x ticks {} {} overlap",
            pair[0].text,
            pair[1].text
        );
    }
}

/// The experiment fixture: step lines, one plot frame, aligned fault bands.
#[test]
fn time_charts_share_one_frame_and_draw_steps() {
    let dir = tempfile::tempdir().unwrap();
    let html = render_html(dir.path(), "experiment", &fixture::experiment(42), 3);
    let frames: Vec<_> = TIME_CHARTS
        .iter()
        .map(|id| frame(chart(&html, id)))
        .collect();
    assert!(frames.iter().all(|f| *f == frames[0]), "{frames:?}");
    let bands: Vec<_> = TIME_CHARTS
        .iter()
        .map(|id| fault_bands(chart(&html, id)))
        .collect();
    assert_eq!(bands[0].len(), 2, "kill and redis latency");
    assert!(bands.iter().all(|b| *b == bands[0]), "{bands:?}");
    for id in CHART_SECTIONS {
        assert_axes_readable(id, chart(&html, id));
    }

    // 2xx is flat at 200/s until the interval of the kill: it drops at the kill.
    let throughput = chart(&html, "throughput");
    let ok = data_lines(throughput, colour_of(throughput, "2xx"));
    assert_eq!(ok.len(), 1);
    assert_stairs(&ok[0]);
    let kill_x = bands[0][0].0;
    let first_move = ok[0].windows(2).find(|w| w[0].1 != w[1].1).unwrap();
    assert_eq!(first_move[0].0, kill_x, "{:?}", ok[0]);

    // The killed instance is visible: api-2's share is a third before the kill and
    // 0 after it; the others carry on.
    let by = chart(&html, "by-header");
    let (left, _, right, bottom) = frame(by);
    // The run is 25 s: half-way into seconds 4 and 14.
    let second = (right - left) / 25.0;
    let (before, after) = (kill_x - 1.5 * second, kill_x + 8.5 * second);
    let api2 = data_lines(by, colour_of(by, "api-2"));
    assert_eq!(api2.len(), 1);
    assert_stairs(&api2[0]);
    assert!(y_at(&api2[0], before).unwrap() < bottom - 50.0);
    assert!(on_floor(y_at(&api2[0], after), bottom));
    let api1 = &data_lines(by, colour_of(by, "api-1"))[0];
    assert!(y_at(api1, after).unwrap() < bottom - 50.0);

    // The kill's 502s and the good/bad latency lines are drawn.
    let codes = chart(&html, "status-codes");
    assert!(!data_lines(codes, colour_of(codes, "502 (right axis)")).is_empty());
    let gb = chart(&html, "latency-good-bad");
    assert!(!data_lines(gb, colour_of(gb, "good p95")).is_empty());
    assert_eq!(
        data_lines(gb, colour_of(gb, "bad p95")).len(),
        1,
        "only second 6"
    );
    assert!(html
        .contains("stack: 3 instances · gateway builtin (round-robin) · db sqlite · cache redis"));
}

/// hey's 200 requests in 33 ms: one interval, so every time chart draws dots
/// with its steps, its data inside the axes, and its clock in milliseconds.
#[test]
fn a_run_shorter_than_one_interval_draws_dots_inside_its_axes() {
    let dir = tempfile::tempdir().unwrap();
    let html = render_html(dir.path(), "short", &fixture::short_run(), 0);
    assert!(html.contains("shorter than one interval"));
    assert!(html.contains(
        "stack: 4 instances · gateway builtin (round-robin) · db postgres · cache redis"
    ));
    for id in TIME_CHARTS {
        let svg = chart(&html, id);
        assert_axes_readable(id, svg);
        let (left, top, right, bottom) = frame(svg);
        let dots: Vec<_> = tags(svg, "circle")
            .into_iter()
            .map(|c| (num(c, "cx"), num(c, "cy")))
            .collect();
        assert!(!dots.is_empty(), "{id}: no dots");
        let lines = tags(svg, "polyline")
            .into_iter()
            .filter(|p| num(p, "stroke-width") >= 2.0)
            .flat_map(points)
            .filter(|p| p.1 > top - 2.0 && p.0 > left - 2.0);
        for (x, y) in dots.iter().copied().chain(lines) {
            assert!(
                x >= left - 1.0 && x <= right + 1.0 && y >= top - 1.0 && y <= bottom + 1.0,
                "{id}: ({x}, {y}) outside the plot {:?}",
                (left, top, right, bottom)
            );
        }
        let (_, x) = ticks(svg);
        assert_eq!(x.first().map(|l| l.text.as_str()), Some("0"), "{id}");
        assert_eq!(x.last().map(|l| l.text.as_str()), Some("30"), "{id}: in ms");
        assert!(html.contains("milliseconds since the load started"));
    }
    let text = slolab()
        .arg("report")
        .arg(dir.path().join("short.json"))
        .output()
        .unwrap();
    assert!(String::from_utf8(text.stdout)
        .unwrap()
        .contains("stack: 4 instances"));
}

/// X-Cache during a Redis outage: HIT drops to 0 inside the fault band while
/// BYPASS rises from 0, and back after.
#[test]
fn cache_outcomes_turn_from_hit_to_bypass_in_the_outage() {
    let dir = tempfile::tempdir().unwrap();
    let html = render_html(dir.path(), "cache", &fixture::cache_outage(8), 3);
    assert!(html.contains("Share of responses by X-Cache"));
    let svg = chart(&html, "by-header");
    let (_, _, _, bottom) = frame(svg);
    let (x0, x1) = fault_bands(svg)[0];
    // The outage is 6 s long: half-way into the seconds 1.5 s before, 3.4 s in, and
    // 1.5 s after it.
    let second = (x1 - x0) / 6.0;
    let (before, during, after) = (x0 - 1.5 * second, x0 + 3.4 * second, x1 + 1.5 * second);
    let hit = &data_lines(svg, colour_of(svg, "HIT"))[0];
    let bypass = &data_lines(svg, colour_of(svg, "BYPASS"))[0];
    assert_stairs(hit);
    assert!(y_at(hit, before).unwrap() < bottom - 50.0);
    assert!(on_floor(y_at(hit, during), bottom));
    assert!(on_floor(y_at(bypass, before), bottom));
    assert!(y_at(bypass, during).unwrap() < bottom - 50.0);
    assert!(y_at(hit, after).unwrap() < bottom - 50.0);
}
