//! A capacity search as the terminal, Markdown and a self-contained HTML page
//! show it. One list of blocks is built from the record and rendered three ways,
//! so the three never disagree; only HTML draws the charts.

use super::{charts, CapacityRecord, Probe, SearchRecord};
use crate::report::html::{esc, strip_prolog, CSS};
use crate::slo::format_ms;

enum Block {
    Heading(String),
    Para(String),
    List(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// Drawn in HTML only.
    Chart(Result<String, String>),
}

fn blocks(rec: &CapacityRecord) -> Vec<Block> {
    let mut out = Vec::new();
    let s = &rec.settings;
    out.push(Block::Para(format!(
        "{} — seed {}, {} arrivals; plateaus of {} warm-up + {} judged (confirmation {}), \
         resolution {:.0} %, achieved ≥ {:.0} % of offered{}",
        rec.profile_path,
        rec.seed,
        rec.arrivals,
        format_secs(s.warmup_s),
        format_secs(s.window_s),
        format_secs(s.confirm_s),
        s.resolution * 100.0,
        s.min_achieved * 100.0,
        if rec.interrupted { "; INTERRUPTED" } else { "" }
    )));
    if rec.fresh_target {
        out.push(Block::Para(
            "Each probe ran on a stack started afresh (its seed data only), so every probe met \
             the same state: the request mix writes, and the data would otherwise grow across \
             probes."
                .into(),
        ));
    }
    if rec.with_chaos {
        out.push(Block::Para(
            "With chaos: each probe fired the profile's faults planned within its window, at \
             their offsets from the window's start (faults planned later were not fired); the \
             recovery objective applies."
                .into(),
        ));
    }
    out.push(Block::Para(format!(
        "Objectives per plateau: {}",
        objectives_line(&rec.objectives)
    )));
    for search in &rec.searches {
        out.push(Block::Heading(search_title(search)));
        out.push(Block::Para(search.answer.summary.clone()));
        let mut notes = Vec::new();
        if let Some(k) = search.answer.knee_rps {
            notes.push(format!(
                "p99 turns up most sharply near {k:.0} req/s (knee)"
            ));
        }
        if search.writes > 0 && !rec.fresh_target {
            notes.push(format!(
                "the request mix writes: about {} writes were made over this search, so later \
                 probes met more data than earlier ones (a confirmation that disagrees may be \
                 this drift, not noise)",
                search.writes
            ));
        }
        if search.answer.confirmation_disagreed {
            notes.push(
                "the confirmation of the last pass failed once and held when re-probed: the \
                 system is marginal there"
                    .into(),
            );
        }
        if !notes.is_empty() {
            out.push(Block::List(notes));
        }
        out.push(Block::Chart(charts::latency_vs_rate(
            search,
            &rec.objectives_ms(),
        )));
        out.push(Block::Chart(charts::throughput_vs_rate(search)));
        out.push(Block::Chart(charts::errors_vs_rate(search)));
        out.push(probe_table(&search.probes));
    }
    if let Some(fit) = &rec.scaling {
        out.push(Block::Heading("Scaling (Universal Scalability Law)".into()));
        out.push(Block::Para(format!(
            "C(N) = λN / (1 + σ(N−1) + κN(N−1)) fitted to the capacities: λ = {:.0} req/s, \
             σ = {:.4}, κ = {:.6}, R² = {:.3}; {}",
            fit.lambda,
            fit.sigma,
            fit.kappa,
            fit.r_squared,
            match (fit.peak_instances, fit.ceiling_rps) {
                (Some(n), Some(c)) => format!("predicted peak {c:.0} req/s at N = {n:.1}"),
                (None, Some(c)) => format!("no peak; capacity approaches {c:.0} req/s"),
                _ => "linear: no ceiling in the measured range".into(),
            }
        )));
        let mut rows = Vec::new();
        let mut prev: Option<(f64, f64)> = None;
        for &(n, c) in &fit.points {
            let marginal = prev
                .map(|(pn, pc)| format!("{:.0} %", (c - pc) / (n - pn) / fit.lambda * 100.0))
                .unwrap_or_else(|| "—".into());
            rows.push(vec![
                format!("{n:.0}"),
                format!("{c:.0}"),
                format!("{:.0}", fit.capacity(n)),
                format!("{:.0} %", fit.efficiency(n) * 100.0),
                marginal,
            ]);
            prev = Some((n, c));
        }
        out.push(Block::Table {
            header: [
                "instances",
                "measured req/s",
                "model req/s",
                "efficiency",
                "per added instance",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
        if !fit.notes.is_empty() {
            out.push(Block::List(fit.notes.clone()));
        }
        out.push(Block::Chart(charts::usl(fit)));
    } else if let Some(why) = &rec.scaling_note {
        out.push(Block::Heading("Scaling".into()));
        out.push(Block::Para(why.clone()));
    }
    if let Some(g) = &rec.generator {
        out.push(Block::Para(format!(
            "Generator: {:.0} req/s per CPU-second (best probe, at {:.0} req/s offered; {} cores here).",
            g.rps_per_core, g.at_offered_rps, g.cores
        )));
    }
    if let Some(p) = &rec.projection {
        out.push(Block::Heading(format!(
            "On paper: {} (a model, not a measurement)",
            super::judge::rps(p.target_rps)
        )));
        let mut rows = vec![
            vec![
                "instances per stack".into(),
                p.instances_per_cell.to_string(),
            ],
            vec![
                "modelled stack capacity".into(),
                format!("{:.0} req/s", p.cell_rps),
            ],
            vec!["stacks (cells)".into(), p.cells.to_string()],
            vec!["instances in all".into(), p.instances_total.to_string()],
        ];
        if let (Some(shards), Some(cores)) = (p.generator_shards, p.generator_cores) {
            rows.push(vec![
                "generator shards".into(),
                format!("{shards} ({cores} cores)"),
            ]);
        }
        out.push(Block::Table {
            header: vec!["plan".into(), "value".into()],
            rows,
        });
        out.push(Block::Para("Assumptions:".into()));
        out.push(Block::List(p.assumptions.clone()));
    }
    out
}

fn search_title(s: &SearchRecord) -> String {
    match s.instances {
        Some(1) => "1 instance".into(),
        Some(n) => format!("{n} instances"),
        None => "Target".into(),
    }
}

fn probe_table(probes: &[Probe]) -> Block {
    let rows = probes
        .iter()
        .map(|p| {
            let ms = |v: Option<f64>| v.map(format_ms).unwrap_or_else(|| "—".into());
            vec![
                p.index.to_string(),
                format!("{:?}", p.kind).to_lowercase(),
                format!("{:.0}", p.offered_rps),
                format!("{:.0}", p.achieved_rps),
                ms(p.p50_ms),
                ms(p.p95_ms),
                ms(p.p99_ms),
                p.availability
                    .map(crate::slo::format_availability)
                    .unwrap_or_else(|| "—".into()),
                p.verdict.word().into(),
                p.reasons.join("; "),
            ]
        })
        .collect();
    Block::Table {
        header: [
            "#",
            "probe",
            "offered",
            "achieved",
            "p50",
            "p95",
            "p99",
            "availability",
            "verdict",
            "reason",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The objectives a plateau is judged by, as `[slo]` writes them: availability
/// and the latency ceilings (`bad` and `latency-of` qualify them, shown apart).
fn objectives_line(v: &serde_json::Value) -> String {
    let Some(m) = v.as_object() else {
        return NO_OBJECTIVES.into();
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or(v.to_string());
    let judged: Vec<String> = m
        .iter()
        .filter(|(k, _)| *k == "availability" || crate::slo::parse_percentile_key(k).is_some())
        .map(|(k, v)| format!("{k} {}", text(v)))
        .collect();
    if judged.is_empty() {
        return NO_OBJECTIVES.into();
    }
    let mut line = judged.join(", ");
    let of = m
        .get("latency-of")
        .map(text)
        .unwrap_or_else(|| "good".into());
    line.push_str(&format!(" (latency of {of} responses"));
    if let Some(bad) = m.get("bad").and_then(|b| b.as_array()) {
        let bad: Vec<String> = bad.iter().map(text).collect();
        line.push_str(&format!("; bad: {}", bad.join(", ")));
    }
    line.push(')');
    line
}

const NO_OBJECTIVES: &str = "none (only the achieved rate and stationarity judge)";

/// Seconds as the reports and the progress lines print them (`2s`, `500ms`).
pub fn format_secs(s: f64) -> String {
    chaos::duration::format(std::time::Duration::from_secs_f64(s))
}

fn title(rec: &CapacityRecord) -> String {
    format!("Capacity: {}", rec.name)
}

/// The terminal summary: answers and probe rows, no charts.
pub fn text(rec: &CapacityRecord) -> String {
    markdown_like(rec, false)
}

pub fn markdown(rec: &CapacityRecord) -> String {
    markdown_like(rec, true)
}

fn markdown_like(rec: &CapacityRecord, md: bool) -> String {
    let mut out = if md {
        format!("# {}\n\n", title(rec))
    } else {
        format!("{}\n", title(rec))
    };
    for b in blocks(rec) {
        match b {
            Block::Heading(h) if md => out.push_str(&format!("\n## {h}\n\n")),
            Block::Heading(h) => out.push_str(&format!("\n[{h}]\n")),
            Block::Para(p) if md => out.push_str(&format!("{}\n\n", md_escape(&p))),
            Block::Para(p) => out.push_str(&format!("{p}\n")),
            Block::List(items) => {
                for i in items {
                    out.push_str(&format!("- {}\n", if md { md_escape(&i) } else { i }));
                }
                if md {
                    out.push('\n');
                }
            }
            Block::Table { header, rows } if md => {
                out.push_str(&md_row(&header));
                out.push_str(&md_row(&vec!["---".to_string(); header.len()]));
                for r in &rows {
                    out.push_str(&md_row(r));
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let mut b = tabled::builder::Builder::new();
                b.push_record(header);
                for r in rows {
                    b.push_record(r);
                }
                let mut t = b.build();
                t.with(tabled::settings::Style::blank());
                out.push_str(&format!("{t}\n"));
            }
            Block::Chart(_) => {}
        }
    }
    out
}

fn md_row(cells: &[String]) -> String {
    format!(
        "| {} |\n",
        cells
            .iter()
            .map(|c| md_escape(c).replace('|', "\\|"))
            .collect::<Vec<_>>()
            .join(" | ")
    )
}

fn md_escape(s: &str) -> String {
    s.replace('<', "&lt;")
}

/// One self-contained page (inline CSS and SVG, nothing fetched).
pub fn html(rec: &CapacityRecord) -> String {
    let t = title(rec);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>slolab: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<header>\n<h1>{}</h1>\n",
        esc(&t),
        esc(&t)
    );
    let mut open_section = false;
    for b in blocks(rec) {
        match b {
            Block::Heading(h) => {
                if open_section {
                    out.push_str("</section>\n");
                } else {
                    out.push_str("</header>\n");
                }
                out.push_str(&format!("<section>\n<h2>{}</h2>\n", esc(&h)));
                open_section = true;
            }
            Block::Para(p) => out.push_str(&format!("<p class=\"run\">{}</p>\n", esc(&p))),
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    out.push_str(&format!("<li>{}</li>\n", esc(&i)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<thead><tr>");
                for h in header {
                    out.push_str(&format!("<th>{}</th>", esc(&h)));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        let class = match c.as_str() {
                            "pass" => " class=\"ok\"",
                            "FAIL" => " class=\"bad\"",
                            _ => "",
                        };
                        out.push_str(&format!("<td{class}>{}</td>", esc(&c)));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table>\n");
            }
            Block::Chart(Ok(svg)) => {
                out.push_str(&format!("<figure>{}</figure>\n", strip_prolog(&svg)))
            }
            Block::Chart(Err(e)) => out.push_str(&format!(
                "<p class=\"chart-error\">chart not drawn: {}</p>\n",
                esc(&e)
            )),
        }
    }
    out.push_str(if open_section {
        "</section>\n"
    } else {
        "</header>\n"
    });
    out.push_str(
        "<footer><p>Latency is measured from each request's scheduled send \
         (coordinated-omission correct). A probe passes only if it achieved the offered rate, \
         met every objective and showed no sustained rise in p99 or backlog across its window. \
         Generated by slolab.</p></footer>\n</main>\n</body>\n</html>\n",
    );
    out
}

impl CapacityRecord {
    /// The latency ceilings judged, as (key, ms), for the charts' SLO lines.
    pub fn objectives_ms(&self) -> Vec<(String, f64)> {
        let Some(m) = self.objectives.as_object() else {
            return Vec::new();
        };
        m.iter()
            .filter(|(k, _)| crate::slo::parse_percentile_key(k).is_some())
            .filter_map(|(k, v)| {
                let d = chaos::duration::parse_positive(v.as_str()?).ok()?;
                Some((k.clone(), d.as_secs_f64() * 1e3))
            })
            .collect()
    }
}
