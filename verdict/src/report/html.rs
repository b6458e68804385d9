//! The HTML report: one self-contained file (inline CSS, inline SVG, no scripts,
//! nothing fetched) so it can be attached to a CI run and opened anywhere.

use super::charts;
use super::tables::{
    failures, run_line, sections, stack_line, verdict_line, warnings, Section, SectionId, MET,
    NOT_MET,
};
use super::Report;

pub(crate) const CSS: &str = "
:root { --ok: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f8fa; color: #1f2328;
  font: 15px/1.5 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
header { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; }
h1 { margin: 0 0 4px; font-size: 22px; }
h2 { margin: 0 0 12px; font-size: 18px; }
h3 { margin: 16px 0 8px; font-size: 15px; }
.run { color: var(--muted); margin: 0 0 12px; }
.verdict { display: inline-block; font-size: 18px; font-weight: 600; padding: 6px 14px;
  border-radius: 6px; margin: 0; }
.verdict.met { background: #dafbe1; color: var(--ok); }
.verdict.failed { background: #ffebe9; color: var(--bad); }
.verdict.none { background: #eaeef2; color: var(--muted); }
ul.failures { margin: 10px 0 0; color: var(--bad); }
.warning { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px;
  margin: 12px 0 0; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin-top: 16px; }
figure { margin: 0 0 8px; }
figure svg { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 4px 0 8px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px; text-align: right; }
th { background: #f6f8fa; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
td.ok { color: var(--ok); font-weight: 700; }
td.bad { color: var(--bad); font-weight: 700; }
.chart-error { color: var(--bad); }
footer { color: var(--muted); font-size: 13px; margin-top: 16px; }
footer dt { font-weight: 600; }
";

pub fn html(report: &Report) -> String {
    let title = report.title();
    let mut out = String::new();
    out.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>slolab: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(&title)
    ));

    let class = match &report.analysis {
        None => "none",
        Some(a) if a.verdict() == crate::slo::Verdict::Interrupted => "none",
        Some(a) if a.met => "met",
        Some(_) => "failed",
    };
    out.push_str(&format!(
        "<header>\n<h1>slolab: {}</h1>\n<p class=\"run\">{}</p>\n",
        esc(&title),
        esc(&run_line(report)),
    ));
    if let Some(stack) = stack_line(report) {
        out.push_str(&format!("<p class=\"run stack\">{}</p>\n", esc(&stack)));
    }
    out.push_str(&format!(
        "<p class=\"verdict {class}\">{}</p>\n",
        esc(&verdict_line(report))
    ));
    let failed = failures(report);
    if !failed.is_empty() {
        out.push_str("<ul class=\"failures\">\n");
        for f in failed {
            out.push_str(&format!("<li>{}</li>\n", esc(&f)));
        }
        out.push_str("</ul>\n");
    }
    for w in warnings(report) {
        out.push_str(&format!("<p class=\"warning\">{}</p>\n", esc(&w)));
    }
    out.push_str("</header>\n");

    let tables = sections(report);
    let table = |id: SectionId| tables.iter().find(|s| s.id == id);

    if table(SectionId::Objectives).is_some() || table(SectionId::Budget).is_some() {
        out.push_str("<section id=\"objectives\">\n<h2>Objectives</h2>\n");
        for id in [SectionId::Objectives, SectionId::Budget] {
            if let Some(s) = table(id) {
                out.push_str(&render_table(s));
            }
        }
        out.push_str("</section>\n");
    }

    let total = report
        .results
        .total_histogram()
        .unwrap_or_else(|_| loadgen::results::new_histogram());
    let header = charts::header_name(report);
    let charted = [
        (
            "latency",
            "Latency over time".to_string(),
            charts::latency_over_time(report),
            vec![SectionId::Stages],
        ),
        (
            "latency-good-bad",
            "Latency of good and bad responses".to_string(),
            charts::latency_good_bad(report),
            vec![],
        ),
        (
            "throughput",
            "Throughput and errors".to_string(),
            charts::throughput_over_time(report),
            vec![SectionId::Outcomes],
        ),
        (
            "status-codes",
            "Status codes over time".to_string(),
            charts::status_codes_over_time(report),
            vec![],
        ),
        (
            "availability",
            "Availability and faults".to_string(),
            charts::availability_over_time(report),
            vec![SectionId::Faults],
        ),
        (
            "by-header",
            format!("Responses by {header} over time (share)"),
            charts::by_header_over_time(report),
            vec![],
        ),
        (
            "distribution",
            "Latency distribution".to_string(),
            charts::latency_distribution(report, &total),
            vec![SectionId::Measurements],
        ),
        (
            "instances",
            format!("Responses per {header}"),
            charts::requests_per_instance(report),
            vec![SectionId::Instances],
        ),
    ];
    for (id, heading, chart, ids) in charted {
        out.push_str(&format!(
            "<section id=\"{id}\">\n<h2>{}</h2>\n",
            esc(&heading)
        ));
        match chart {
            Ok(svg) => out.push_str(&format!("<figure>\n{}\n</figure>\n", strip_prolog(&svg))),
            Err(e) => out.push_str(&format!(
                "<p class=\"chart-error\">chart could not be drawn: {}</p>\n",
                esc(&e)
            )),
        }
        for s in ids.into_iter().filter_map(table) {
            out.push_str(&render_table(s));
        }
        out.push_str("</section>\n");
    }

    out.push_str(DEFINITIONS);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

const DEFINITIONS: &str = "<footer>\n<dl>\n\
<dt>Availability</dt><dd>good / valid requests. Bad: 5xx and every transport failure and timeout \
(429 and 4xx when the SLO says so).</dd>\n\
<dt>Percentiles</dt><dd>from the exact merge of the interval histograms of a window, never an average \
of percentiles. Open-model latency counts from the scheduled send time. Latency objectives judge the \
good responses unless the SLO says <code>latency-of = \"all\"</code>; the bad ones' percentile is shown \
beside.</dd>\n\
<dt>Windows</dt><dd>an interval belongs to a stage or fault window when its midpoint does; \
an instantaneous fault takes the interval that contains it. “After” is the recovery window that \
follows the revert.</dd>\n\
<dt>Time to recover</dt><dd>to the start of the first sliding window (the recovery window, \
5 s unless the profile says otherwise) whose merged counts meet every run-level objective; 0 when \
the SLO never broke. Shown from the injection and from the revert, as the range one timeline \
interval wide that recovery lies in. The recovery objective judges the upper end, after the \
revert.</dd>\n\
<dt>Error budget</dt><dd>allowed bad = (1 − target) × valid; burn rate = (bad / valid) / (1 − target): \
1× spends exactly the budget.</dd>\n\
</dl>\n<p>Generated by slolab.</p>\n</footer>\n";

fn render_table(s: &Section) -> String {
    let mut out = format!("<h3>{}</h3>\n<table>\n<thead><tr>", esc(&s.title));
    for h in &s.header {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &s.rows {
        out.push_str("<tr>");
        for c in row {
            let class = match c.as_str() {
                MET => " class=\"ok\"",
                NOT_MET => " class=\"bad\"",
                _ => "",
            };
            out.push_str(&format!("<td{class}>{}</td>", esc(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// An inline `<svg>` must not carry an XML declaration.
pub(crate) fn strip_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
