//! Whether two runs can be compared at all: the same load shape, host and
//! profile. Comparing a 10-connection run with a 50-connection one, or a laptop
//! with a CI runner, measures the difference in setup, not in the commit.

use super::sample::RunInput;

/// What must match, as (field path, value) pairs in a stable order. Paths
/// name the results file's fields (`plan.connections`, `host.cpus`) and, for
/// a run's profile, the profile's own fields (`stack.gateway`,
/// `load.stages[1].rate`), so `--allow` takes what the user wrote.
fn shape(run: &RunInput) -> Vec<(String, String)> {
    let r = &run.results;
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
    let mut out: Vec<(String, String)> = vec![
        ("plan.model".into(), json(&p.model)),
        ("plan.arrivals".into(), p.arrivals.to_string()),
        ("plan.stop".into(), json(&p.stop)),
        ("plan.connections".into(), p.connections.to_string()),
        ("plan.requests".into(), mix),
        ("plan.timeout".into(), chaos::duration::format(p.timeout)),
        ("plan.keepalive".into(), p.keepalive.to_string()),
        ("plan.compression".into(), p.compression.to_string()),
        (
            "plan.follow_redirects".into(),
            p.follow_redirects.to_string(),
        ),
        ("plan.bad".into(), json(&p.bad)),
        ("host.hostname".into(), h.hostname.clone()),
        ("host.cpus".into(), h.cpus.to_string()),
        ("host.os".into(), format!("{}/{}", h.os, h.arch)),
    ];
    let name = run
        .experiment
        .as_ref()
        .map(|e| e.name.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("(none)");
    out.push(("name".into(), name.to_string()));
    if let Some(e) = &run.experiment {
        leaves("", &e.profile, &mut out);
    }
    out
}

/// The leaves of a profile as (path, JSON text): tables by key, arrays by index.
fn leaves(path: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{path}[{i}]"), v, out);
            }
        }
        // The name is compared once, above; unset and null are alike.
        serde_json::Value::Null => {}
        leaf if path != "name" => out.push((path.to_string(), leaf.to_string())),
        _ => {}
    }
}

/// Where two records differ, leaf by leaf, as `path: a → b` (paths under
/// `prefix`, as [`shape`] names them): what `merge` says when shards are not
/// of one run.
pub(crate) fn leaf_differences(
    prefix: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Vec<String> {
    let collect = |v| {
        let mut out = Vec::new();
        leaves(prefix, v, &mut out);
        out.into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (a, b) = (collect(a), collect(b));
    let absent = "(absent)".to_string();
    a.keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .filter_map(|path| {
            let (x, y) = (
                a.get(path).unwrap_or(&absent),
                b.get(path).unwrap_or(&absent),
            );
            (x != y).then(|| format!("{path}: {} → {}", shorten(x), shorten(y)))
        })
        .collect()
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

/// Long values (a request mix) are cut for the message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// One field whose value differs between the first base run and another run.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub path: String,
    pub base: String,
    pub other: String,
    /// Which side the other run is on, and its file.
    pub side: &'static str,
    pub file: String,
}

impl Difference {
    /// Whether `--allow PATH` covers it: the path itself or anything under it
    /// (`stack` allows `stack.gateway`; `load.stages` allows `load.stages[1].rate`).
    pub fn allowed_by(&self, allow: &str) -> bool {
        let allow = allow.trim_end_matches('.');
        self.path == allow
            || self
                .path
                .strip_prefix(allow)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} → {} ({} {})",
            self.path,
            shorten(&self.base),
            shorten(&self.other),
            self.side,
            self.file
        )
    }
}

/// Every difference between the first base run and each other run, one per
/// field and run; a field set on one side only reads "(unset)" on the other.
pub fn differences(base: &[RunInput], head: &[RunInput]) -> Vec<Difference> {
    let Some(reference) = base.first() else {
        return Vec::new();
    };
    let want = shape(reference);
    let mut out = Vec::new();
    for (side, runs) in [("base", base), ("head", head)] {
        for run in runs {
            let got = shape(run);
            let value = |v: &[(String, String)], path: &str| {
                v.iter()
                    .find(|(p, _)| p == path)
                    .map_or_else(|| "(unset)".to_string(), |(_, v)| v.clone())
            };
            let mut paths: Vec<&String> = want.iter().map(|(p, _)| p).collect();
            paths.extend(
                got.iter()
                    .map(|(p, _)| p)
                    .filter(|p| !want.iter().any(|(w, _)| w == *p)),
            );
            for path in paths {
                let (a, b) = (value(&want, path), value(&got, path));
                if a != b {
                    out.push(Difference {
                        path: path.clone(),
                        base: a,
                        other: b,
                        side,
                        file: run.path.display().to_string(),
                    });
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
            crate::record::SECTION_KEY.into(),
            serde_json::json!({ "name": "spike", "profile": {} }),
        );
        let d: Vec<String> = differences(&[input("a.json", base)], &[input("b.json", other)])
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(d.len(), 3, "{d:#?}");
        assert!(
            d.contains(&"name: (none) → spike (head b.json)".to_string()),
            "{d:#?}"
        );
        assert!(
            d.contains(&"plan.connections: 10 → 50 (head b.json)".to_string()),
            "{d:#?}"
        );
        assert!(
            d.iter()
                .any(|l| l.starts_with("host.hostname: ci → laptop")),
            "{d:#?}"
        );
    }

    fn with_profile(seed: u64, profile: serde_json::Value) -> loadgen::Results {
        let mut r = service(seed, 2, 10, 1000.0, 0, 0);
        r.extra.insert(
            crate::record::SECTION_KEY.into(),
            serde_json::json!({ "name": "nginx-vs-builtin", "profile": profile }),
        );
        r
    }

    #[test]
    fn a_profile_difference_is_named_by_its_field_path() {
        let base = with_profile(
            1,
            serde_json::json!({ "name": "nginx-vs-builtin", "stack": { "gateway": "nginx", "instances": 4 },
                                "load": { "stages": [ { "rate": 100 }, { "rate": 400 } ] } }),
        );
        let head = with_profile(
            2,
            serde_json::json!({ "name": "nginx-vs-builtin", "stack": { "gateway": "builtin", "instances": 4 },
                                "load": { "stages": [ { "rate": 100 }, { "rate": 500 } ] }, "seed": 3 }),
        );
        let d = differences(&[input("a.json", base)], &[input("b.json", head)]);
        let lines: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            lines,
            [
                "load.stages[1].rate: 400 → 500 (head b.json)",
                "stack.gateway: \"nginx\" → \"builtin\" (head b.json)",
                "seed: (unset) → 3 (head b.json)",
            ],
            "{lines:#?}"
        );
        assert!(d[1].allowed_by("stack.gateway") && d[1].allowed_by("stack"));
        assert!(
            !d[1].allowed_by("stack.gate"),
            "a prefix of a name is not its parent"
        );
        assert!(d[0].allowed_by("load.stages") && d[0].allowed_by("load.stages[1]"));
        assert!(!d[0].allowed_by("stack"));
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
