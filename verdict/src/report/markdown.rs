//! The Markdown report, for `$GITHUB_STEP_SUMMARY` or a PR comment: GitHub-flavoured
//! tables, the verdict in the heading so it shows in notifications.

use super::tables::{run_line, sections, stack_line, verdict_items, verdict_line, warnings};
use super::Report;

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!("## slolab: {}\n\n", cell(&report.title())));
    out.push_str(&format!("**{}**\n\n", verdict_line(report)));
    for (mark, line) in verdict_items(report) {
        out.push_str(&format!("- {mark} {}\n", cell(&line)));
    }
    out.push_str(&format!("\n{}\n", cell(&run_line(report))));
    if let Some(stack) = stack_line(report) {
        out.push_str(&format!("\n{}\n", cell(&stack)));
    }
    for w in warnings(report) {
        out.push_str(&format!("\n> **Warning:** {}\n", cell(&w)));
    }
    for s in sections(report) {
        out.push_str(&format!("\n### {}\n\n", s.title));
        out.push_str(&row(&s.header));
        out.push('|');
        for (i, _) in s.header.iter().enumerate() {
            // Numbers read best right-aligned; the first column names the row.
            out.push_str(if i == 0 { " :--- |" } else { " ---: |" });
        }
        out.push('\n');
        for r in &s.rows {
            out.push_str(&row(r));
        }
    }
    out
}

fn row(cells: &[String]) -> String {
    let mut s = String::from("|");
    for c in cells {
        s.push_str(&format!(" {} |", cell(c)));
    }
    s.push('\n');
    s
}

/// Escapes what would break a table cell or be read as markup.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('\n', " ")
}
