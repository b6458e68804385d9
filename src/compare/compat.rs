//! Whether two runs can be compared at all: the same load shape, host and
//! profile. Comparing a 10-connection run with a 50-connection one, or a laptop
//! with a CI runner, measures the difference in setup, not in the commit.

use loadgen::Results;

use super::sample::RunInput;

/// What must match, as (what, value) pairs in a stable order.
fn shape(r: &Results) -> Vec<(&'static str, String)> {
    let p = &r.plan;
    let mix = p
        .requests
        .iter()
        .map(|t| {
            let body = t
                .body
                .as_deref()
                .map(|b| format!(" body {b:?}"))
                .unwrap_or_default();
            format!("{}×{} {}{body}", t.weight, t.method, url_path(&t.url))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let h = &r.run.host;
    let (profile_name, profile_settings) = profile(r);
    vec![
        ("profile", profile_name),
        ("profile settings", profile_settings),
        ("load model", json(&p.model)),
        ("stop condition", json(&p.stop)),
        ("connections", p.connections.to_string()),
        ("request mix", mix),
        ("timeout", humantime::format_duration(p.timeout).to_string()),
        ("keep-alive", p.keepalive.to_string()),
        ("compression", p.compression.to_string()),
        ("follow redirects", p.follow_redirects.to_string()),
        ("availability policy (bad outcomes)", json(&p.bad)),
        ("hostname", h.hostname.clone()),
        ("host cpus", h.cpus.to_string()),
        ("host os/arch", format!("{}/{}", h.os, h.arch)),
    ]
}

/// JSON text of plan parts, so enum variants and their fields compare and print
/// the way the results file spells them.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Path and query of a URL: the host and port differ between reruns against
/// servers on port 0, and do not change the load's shape.
pub fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find(['/', '?']).map_or("/", |i| &rest[i..])
}

/// The experiment's profile: its name, and its parsed settings (compared
/// whole: the same name with other stages is another experiment).
fn profile(r: &Results) -> (String, String) {
    let e = r.extra.get("experiment");
    let field = |k: &str| e.and_then(|e| e.get(k));
    (
        field("name")
            .and_then(|n| n.as_str())
            .unwrap_or("(none)")
            .to_string(),
        field("profile").map_or("(none)".into(), |p| p.to_string()),
    )
}

/// Long values (a whole profile) are cut for the message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Every difference between the first base run and each other run, one line
/// each, naming the field, both values and both files.
pub fn differences(base: &[RunInput], head: &[RunInput]) -> Vec<String> {
    let Some(reference) = base.first() else {
        return Vec::new();
    };
    let want = shape(&reference.results);
    let mut out = Vec::new();
    for (side, runs) in [("base", base), ("head", head)] {
        for run in runs {
            for ((what, a), (_, b)) in want.iter().zip(shape(&run.results)) {
                if *a != b {
                    out.push(format!(
                        "{what}: {} (base {}) vs {} ({side} {})",
                        shorten(a),
                        reference.path.display(),
                        shorten(&b),
                        run.path.display()
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::fixture::{input, service};

    #[test]
    fn differences_name_the_field_both_values_and_both_files() {
        let base = service(1, 2, 10, 1000.0, 0, 0);
        let mut same_elsewhere = service(2, 2, 10, 1000.0, 0, 0);
        same_elsewhere.plan.requests[0].url = "http://127.0.0.1:9/tasks".into();
        assert!(differences(
            &[input("a.json", base.clone())],
            &[input("b.json", same_elsewhere)]
        )
        .is_empty());

        let mut other = service(2, 2, 10, 1000.0, 0, 0);
        other.plan.connections = 50;
        other.run.host.hostname = "laptop".into();
        other.extra.insert(
            "experiment".into(),
            serde_json::json!({ "name": "spike", "profile": {} }),
        );
        let d = differences(&[input("a.json", base)], &[input("b.json", other)]);
        assert_eq!(d.len(), 4, "{d:#?}");
        assert_eq!(d[0], "profile: (none) (base a.json) vs spike (head b.json)");
        assert!(
            d.contains(&"connections: 10 (base a.json) vs 50 (head b.json)".to_string()),
            "{d:#?}"
        );
        assert!(d.iter().any(|l| l.starts_with("hostname: ci")), "{d:#?}");
    }

    #[test]
    fn url_path_drops_scheme_host_and_port() {
        assert_eq!(
            url_path("http://127.0.0.1:4312/tasks?page=2"),
            "/tasks?page=2"
        );
        assert_eq!(url_path("http://127.0.0.1:1"), "/");
        assert_eq!(url_path("http://h:1?q=1"), "?q=1");
        assert_eq!(url_path("https://example.com/a/b"), "/a/b");
    }
}
