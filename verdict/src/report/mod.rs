//! Reports: a results file (from `slolab load --save` or `slolab run`) as a
//! terminal, Markdown or self-contained HTML report, so any run can be read
//! again, posted to a PR, or opened in a browser without rerunning it.

pub(crate) mod charts;
#[cfg(test)]
pub(crate) mod fixture;
pub(crate) mod html;
mod markdown;
mod tables;
mod text;

use loadgen::Results;
use serde::Deserialize;

use crate::record::{ExperimentSection, FaultRecord, StageWindow};
use crate::slo::{self, SloAnalysis, SloError, SloSpec};

pub use html::html;
pub use markdown::markdown;
pub use text::text;

/// Header the Task API sets on every response to name the instance that
/// served it: counted per interval, it shows how the gateway spread the load.
pub const INSTANCE_HEADER: &str = "X-Served-By";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Tables for a terminal.
    Text,
    /// Markdown tables (CI step summary, PR comment).
    Md,
    /// One self-contained HTML file with inline SVG charts.
    Html,
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => text(report),
        Format::Md => markdown(report),
        Format::Html => html(report),
    }
}

/// Everything a report shows: the measurements, and when the run was an
/// experiment, its stages, faults and SLO analysis.
#[derive(Debug, Clone)]
pub struct Report {
    pub results: Results,
    pub experiment: Option<ExperimentSection>,
    pub analysis: Option<SloAnalysis>,
    /// Per-stage and per-fault measurements: the analysis when there is one, else
    /// the same windows measured without objectives.
    pub windows: SloAnalysis,
    /// Caveats about the file itself (an unreadable section, ...).
    pub notes: Vec<String>,
}

impl Report {
    /// Reads the experiment section if there is one. The SLO analysis comes from
    /// `spec` when given (re-judged now), else from the section, else from the
    /// profile's `[slo]` table.
    pub fn new(results: Results, spec: Option<&SloSpec>) -> Result<Self, SloError> {
        let mut notes = Vec::new();
        let experiment = match ExperimentSection::of(&results) {
            Ok(e) => e,
            Err(e) => {
                notes.push(format!("the experiment section could not be read: {e}"));
                None
            }
        };
        let stored = experiment
            .as_ref()
            .and_then(|e| e.analysis())
            .and_then(|a| match a {
                Ok(a) => Some(a),
                Err(err) => {
                    notes.push(format!("the stored SLO analysis could not be read: {err}"));
                    None
                }
            });
        let profile_spec = experiment
            .as_ref()
            .and_then(|e| e.profile.get("slo"))
            .and_then(|v| SloSpec::deserialize(v).ok());
        let mut analysis = match (spec, stored, profile_spec) {
            (Some(spec), _, _) => Some(analyze(&results, experiment.as_ref(), spec)?),
            (None, Some(stored), _) => Some(stored),
            (None, None, Some(spec)) => Some(analyze(&results, experiment.as_ref(), &spec)?),
            (None, None, None) => None,
        };
        // Files written before interrupted runs lost their verdict still say "met".
        let interrupted =
            results.run.interrupted || experiment.as_ref().is_some_and(|e| e.interrupted);
        if let Some(a) = analysis.as_mut().filter(|_| interrupted) {
            a.met = false;
            a.verdict = Some(slo::Verdict::Interrupted);
        }
        let windows = match &analysis {
            Some(a) => a.clone(),
            None => analyze(&results, experiment.as_ref(), &SloSpec::default())?,
        };
        Ok(Self {
            results,
            experiment,
            analysis,
            windows,
            notes,
        })
    }

    /// What ran: the profile's name, or the URL of a plain load run.
    pub fn title(&self) -> String {
        if let Some(e) = self.experiment.as_ref().filter(|e| !e.name.is_empty()) {
            return e.name.clone();
        }
        let urls: Vec<&str> = self
            .results
            .plan
            .requests
            .iter()
            .map(|r| r.url.as_str())
            .collect();
        match urls.as_slice() {
            [] => "load run".into(),
            [one] => one.to_string(),
            [first, ..] => format!("{first} (+{} more)", urls.len() - 1),
        }
    }

    pub fn stages(&self) -> &[StageWindow] {
        self.experiment.as_ref().map_or(&[], |e| &e.stages)
    }

    pub fn faults(&self) -> &[FaultRecord] {
        self.experiment.as_ref().map_or(&[], |e| &e.faults)
    }

    /// Latency objectives of the run (for the SLO lines on the latency chart).
    pub fn latency_targets(&self) -> Vec<(String, f64)> {
        self.analysis
            .iter()
            .flat_map(|a| &a.run.objectives)
            .filter(|o| o.kind == slo::ObjectiveKind::Latency)
            .map(|o| (o.objective.clone(), o.target))
            .collect()
    }

    pub fn availability_target(&self) -> Option<f64> {
        self.analysis
            .iter()
            .flat_map(|a| &a.run.objectives)
            .find(|o| o.kind == slo::ObjectiveKind::Availability)
            .map(|o| o.target)
    }
}

fn analyze(
    results: &Results,
    experiment: Option<&ExperimentSection>,
    spec: &SloSpec,
) -> Result<SloAnalysis, SloError> {
    let stages = experiment.map_or(&[][..], |e| &e.stages);
    let faults = experiment.map_or(&[][..], |e| &e.faults);
    slo::analyze(results, spec, stages, faults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixture::{interval, ok, results, status_5xx};

    /// Checks that every tag closes in order, the way a strict parser would.
    fn assert_well_formed(doc: &str) {
        const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];
        let mut stack: Vec<String> = Vec::new();
        let mut rest = doc;
        while let Some(open) = rest.find('<') {
            rest = &rest[open..];
            let close = rest.find('>').expect("unterminated tag");
            let tag = &rest[1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('!') || tag.starts_with('?') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack
                    .pop()
                    .unwrap_or_else(|| panic!("</{name}> closes nothing"));
                assert_eq!(top, name.trim(), "mismatched </{name}>");
                continue;
            }
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap()
                .to_string();
            assert!(!name.is_empty(), "empty tag in {tag:?}");
            if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn experiment_html_is_well_formed_with_a_chart_per_section() {
        let report = Report::new(fixture::experiment(1), None).unwrap();
        let page = html(&report);
        assert_well_formed(&page);
        for id in fixture::CHART_SECTIONS {
            let start = page.find(&format!("<section id=\"{id}\">")).unwrap();
            let end = start + page[start..].find("</section>").unwrap();
            assert_eq!(page[start..end].matches("<svg").count(), 1, "{id}");
        }
        // Every fault is shaded and labelled on the six time charts.
        assert_eq!(page.matches("⚡ kill api-2").count(), 6);
        assert!(page.contains("p95 SLO ≤ 100.0 ms"));
    }

    #[test]
    fn the_profile_slo_is_analysed_when_the_section_has_none() {
        let report = Report::new(fixture::experiment(1), None).unwrap();
        let a = report.analysis.as_ref().expect("analysis from profile.slo");
        assert!(!a.met, "30 failed requests of 14 000 miss 99.9 %");
        assert_eq!(a.stages.len(), 3);
        assert_eq!(a.faults.len(), 2);
        assert_eq!(a.faults[0].time_to_recover_s, Some(1.0));
        assert_eq!(a.faults[1].time_to_recover_s, Some(3.0));
        assert_eq!(report.latency_targets().len(), 2);
    }

    #[test]
    fn a_stored_analysis_is_used_as_written() {
        let mut r = fixture::experiment(1);
        let spec = SloSpec::from_pairs(&["availability=99%"]).unwrap();
        let stored = slo::analyze(&r, &spec, &[], &[]).unwrap();
        assert!(stored.met);
        r.extra.get_mut(crate::record::SECTION_KEY).unwrap()["slo"] =
            serde_json::to_value(&stored).unwrap();
        let report = Report::new(r, None).unwrap();
        assert_eq!(report.analysis.as_ref(), Some(&stored));
        assert!(text(&report).contains("SLO met ✓ (1 objective)"));
    }

    #[test]
    fn plain_load_results_show_measurements_without_verdicts() {
        let r = results(
            (0..5)
                .map(|i| interval(i as f64, 1.0, &[ok(1_000), ok(2_000), status_5xx(500)]))
                .collect(),
        );
        let report = Report::new(r, None).unwrap();
        assert!(report.analysis.is_none());
        let t = text(&report);
        assert!(t.contains("No SLO given"), "{t}");
        assert!(t.contains("Measurements") && t.contains("Outcomes"), "{t}");
        assert!(!t.contains("Stages") && !t.contains("Faults") && !t.contains("Objectives"));
        let md = markdown(&report);
        assert!(!md.contains('✗') && !md.contains('✓'), "{md}");
        let page = html(&report);
        assert_well_formed(&page);
        // Charts still drawn; the instance chart says why it is empty.
        assert_eq!(page.matches("<svg").count(), 8);
        assert!(page.contains("did not track an instance header"));
    }

    #[test]
    fn markdown_tables_are_rectangular() {
        let report = Report::new(fixture::experiment(3), None).unwrap();
        let md = markdown(&report);
        let mut columns = None;
        let mut tables = 0;
        for line in md.lines() {
            if line.starts_with('|') {
                // Escaped pipes are content, not separators.
                let n = line.replace("\\|", "").matches('|').count();
                match columns {
                    None => {
                        columns = Some(n);
                        tables += 1;
                    }
                    Some(c) => assert_eq!(c, n, "ragged row: {line}"),
                }
            } else {
                columns = None;
            }
        }
        assert_eq!(tables, 7, "{md}");
    }

    /// The words of `s`, lower-cased, so a test can ask for "met" as a word.
    fn words(s: &str) -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    }

    #[test]
    fn an_interrupted_run_says_so_instead_of_a_verdict() {
        let mut r = fixture::experiment(1);
        // A stored analysis from before interrupted runs lost their verdict: "met".
        let spec = SloSpec::from_pairs(&["availability=99%", "p95=100ms"]).unwrap();
        let stored = slo::analyze(&r, &spec, &[], &[]).unwrap();
        assert!(stored.met);
        let mut stored = serde_json::to_value(&stored).unwrap();
        stored.as_object_mut().unwrap().remove("verdict");
        r.extra.get_mut(crate::record::SECTION_KEY).unwrap()["slo"] = stored;
        r.extra.get_mut(crate::record::SECTION_KEY).unwrap()["interrupted"] = true.into();
        r.run.interrupted = true;
        let report = Report::new(r, None).unwrap();
        let a = report.analysis.as_ref().unwrap();
        assert_eq!(a.verdict(), slo::Verdict::Interrupted);
        assert!(!a.met);

        let t = text(&report);
        let md = markdown(&report);
        let page = html(&report);
        assert_well_formed(&page);
        for (name, doc) in [("text", &t), ("markdown", &md)] {
            assert!(doc.contains(tables::INTERRUPTED_VERDICT), "{name}: {doc}");
            assert!(!words(doc).contains(&"met".to_string()), "{name}: {doc}");
        }
        // The HTML verdict line, in the neutral style; the stylesheet's `.met`
        // class is the only "met" on the page.
        assert!(
            page.contains(&format!(
                "<p class=\"verdict none\">SLO: {}",
                tables::INTERRUPTED_VERDICT
            )),
            "{page}"
        );
        let body = &page[page.find("</style>").unwrap()..];
        assert!(!words(body).contains(&"met".to_string()));
        // Re-judged with --slo, still no verdict.
        let report = Report::new(report.results.clone(), Some(&spec)).unwrap();
        assert_eq!(
            report.analysis.as_ref().unwrap().verdict(),
            slo::Verdict::Interrupted
        );
    }

    #[test]
    fn outcomes_show_status_codes_by_code() {
        let mut r = fixture::experiment(1);
        let five = r.totals.outcomes["5xx"];
        let two = r.totals.outcomes["2xx"];
        r.totals.status_codes = [(200, two), (503, five - 2), (500, 2)].into();
        let report = Report::new(r, None).unwrap();
        let outcomes = tables::sections(&report)
            .into_iter()
            .find(|s| s.id == tables::SectionId::Outcomes)
            .unwrap();
        let names: Vec<&str> = outcomes.rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            names,
            ["200 (2xx)", "503 (5xx)", "connect_refused", "500 (5xx)"],
            "{:?}",
            outcomes.rows
        );
        let row = |name: &str| outcomes.rows.iter().find(|r| r[0] == name).unwrap().clone();
        assert_eq!(row("503 (5xx)")[1], (five - 2).to_string());
        assert_eq!(row("500 (5xx)")[1], "2");
        // A file without status codes (written before they were kept) keeps the classes.
        let mut old = fixture::experiment(1);
        old.totals.status_codes.clear();
        let report = Report::new(old, None).unwrap();
        assert!(text(&report).contains("│ 5xx "), "{}", text(&report));
    }

    #[test]
    fn latency_objectives_say_what_they_judge_and_show_the_errors_beside() {
        let report = Report::new(fixture::experiment(1), None).unwrap();
        let t = text(&report);
        assert!(t.contains("p95 (good responses)"), "{t}");
        assert!(t.contains("p95 of errors: "), "{t}");
        // Recovery: a range at the timeline's resolution, after the revert.
        assert!(
            t.contains("0.0–1.0 s after the revert (1 s resolution)"),
            "{t}"
        );
        assert!(
            t.contains("Recovered after injection") && t.contains("2.0–3.0 s"),
            "{t}"
        );
    }

    #[test]
    fn empty_results_still_render() {
        let report = Report::new(results(Vec::new()), None).unwrap();
        let page = html(&report);
        assert_well_formed(&page);
        assert!(page.contains("no responses were measured"));
        assert!(text(&report).contains("Measurements"));
    }
}
