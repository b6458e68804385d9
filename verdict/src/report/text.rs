//! The terminal report: the verdict first, then one `tabled` table per section.

use tabled::builder::Builder;
use tabled::settings::Style;

use super::tables::{run_line, sections, stack_line, verdict_items, verdict_line, warnings};
use super::Report;

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!("slolab report — {}\n", report.title()));
    out.push_str(&format!("{}\n", run_line(report)));
    if let Some(stack) = stack_line(report) {
        out.push_str(&format!("{stack}\n"));
    }
    out.push('\n');
    for w in warnings(report) {
        out.push_str(&format!("warning: {w}\n"));
    }
    for s in sections(report) {
        let mut b = Builder::default();
        b.push_record(s.header.iter().cloned());
        for row in &s.rows {
            b.push_record(row.iter().cloned());
        }
        let mut table = b.build();
        table.with(Style::rounded());
        out.push_str(&format!("\n{}\n{table}\n", s.title));
    }
    out.push_str(&format!("\n{}\n", verdict_line(report)));
    for (mark, line) in verdict_items(report) {
        out.push_str(&format!("  {mark} {line}\n"));
    }
    out
}
