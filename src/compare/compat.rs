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
    vec![
        ("profile", profile(r).unwrap_or_else(|| "(none)".into())),
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

/// The profile name the experiment runner records, if any.
fn profile(r: &Results) -> Option<String> {
    let v = r
        .extra
        .get("profile")
        .or_else(|| r.extra.get("experiment").and_then(|e| e.get("profile")))?;
    Some(match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => o
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    })
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
                        "{what}: {a} (base {}) vs {b} ({side} {})",
                        reference.path.display(),
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
    use super::url_path;

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
