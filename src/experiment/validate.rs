//! The checks serde cannot express — cross-field, ranges, the chaos plan against
//! the stack's components — and the typed values they prove.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use verdict::record::StageWindow;

use super::locate::{refine_to_key, Located};
use super::profile::{
    ChaosEntry, LoadModel, LoadSection, Profile, ProfileError, RequestSpec, StageSpec,
};
use super::{LoadShape, Request, Target, DEFAULT_OPEN_CONNECTIONS};

/// What validation proved, for [`super::Experiment`] to hold.
pub(super) struct Checked {
    pub shape: LoadShape,
    pub chaos: chaos::Plan,
    pub requests: Vec<Request>,
}

impl Profile {
    /// Stage windows on the load clock. A closed run stopped by a request count has
    /// an open end (`f64::INFINITY`) until the run has measured it.
    pub fn stage_windows(&self) -> Vec<StageWindow> {
        let mut t = 0.0;
        self.load
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.get_ref();
                let len = s
                    .duration
                    .as_ref()
                    .map(|d| d.get_ref().0.as_secs_f64())
                    .unwrap_or(f64::INFINITY);
                let w = StageWindow {
                    name: s.name.clone().unwrap_or_else(|| format!("stage-{}", i + 1)),
                    start_s: t,
                    end_s: t + len,
                    start_rate: s.rate.as_ref().map(|r| *r.get_ref()),
                    end_rate: s.ramp_to.as_ref().or(s.rate.as_ref()).map(|r| *r.get_ref()),
                    connections: s.connections.as_ref().map(|c| *c.get_ref()),
                };
                t += len;
                w
            })
            .collect()
    }

    /// Cross-field and range checks serde cannot express, and the load's shape
    /// they prove. Chaos targets and `at` times are checked by building the
    /// chaos plan.
    pub(super) fn validate(
        &self,
        seed: u64,
        target: &Target,
        at: &Located<'_>,
    ) -> Result<Checked, ProfileError> {
        match (&self.url, &self.stack) {
            (Some(url), Some(_)) => {
                return Err(at.error(
                    url.span(),
                    Some("url"),
                    "give either `url` (an external target) or `[stack]`, not both",
                ))
            }
            (Some(url), None) => check_url(url, at)?,
            (None, _) => {}
        }
        if self.url.is_some() {
            if let Some(first) = self.chaos.first() {
                return Err(at.error(
                    first.span(),
                    Some("chaos"),
                    "faults need the bundled stack: an external `url` target has no components to inject into; use `[stack]`",
                ));
            }
        }
        let (shape, requests) = self.load.validate(at)?;
        let chaos = match target {
            Target::Stack(stack) => self.chaos_plan(seed, &stack.components, at)?,
            Target::Url(_) => chaos::Plan {
                seed,
                total: chaos::Plan::horizon(self.load_duration()),
                faults: Vec::new(),
            },
        };
        if let Some(slo) = &self.slo {
            let names: Vec<String> = self.stage_windows().into_iter().map(|w| w.name).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            slo.get_ref()
                .check_stage_names(&names)
                .map_err(|e| at.error(slo.span(), Some("slo.stage"), &e.to_string()))?;
        }
        if self.url.is_some() {
            for r in &self.load.requests {
                let r = r.get_ref();
                let uses_token = r.path.get_ref().contains("{token}")
                    || r.body.as_deref().is_some_and(|b| b.contains("{token}"))
                    || r.headers.values().any(|v| v.contains("{token}"));
                if uses_token {
                    return Err(at.error(
                        r.path.span(),
                        Some("load.request"),
                        "`{token}` is the bundled stack's admin token; an external `url` target has none (write the token itself)",
                    ));
                }
            }
        }
        Ok(Checked {
            shape,
            chaos,
            requests,
        })
    }

    /// The `[[chaos]]` entries expanded with `seed` into a concrete plan over
    /// `names`, every entry checked (fault, parameters, target, `at` within the
    /// load) and located in the file when wrong.
    fn chaos_plan(
        &self,
        seed: u64,
        names: &[String],
        at: &Located<'_>,
    ) -> Result<chaos::Plan, ProfileError> {
        self.chaos_plan_within(seed, names, self.load_duration(), at)
    }

    /// [`Self::chaos_plan`] over a given load length (`chaos plan --duration`).
    pub fn chaos_plan_within(
        &self,
        seed: u64,
        names: &[String],
        total: Option<Duration>,
        at: &Located<'_>,
    ) -> Result<chaos::Plan, ProfileError> {
        let entries: Vec<ChaosEntry> = self.chaos.iter().map(|e| e.get_ref().clone()).collect();
        for (i, entry) in self.chaos.iter().enumerate() {
            if let (Some(t), Some(total)) = (entry.get_ref().at, total) {
                if t >= total {
                    return Err(at.error(
                        entry.span(),
                        Some(&format!("chaos[{}].at", i + 1)),
                        &format!(
                            "`at` = {} is not before the end of the load ({}): the fault would never fire",
                            chaos::duration::format(t),
                            chaos::duration::format(total)
                        ),
                    ));
                }
            }
        }
        let total = chaos::Plan::horizon(total);
        chaos::Plan::expand(&entries, seed, total, names).map_err(|e| {
            let chaos::ScheduleError::Entry { index, reason, .. } = &e;
            let span = self
                .chaos
                .get(index.saturating_sub(1))
                .map(|s| s.span())
                .unwrap_or(0..0);
            // Point at the key the problem is about when the reason says which.
            let first_word = reason.split_whitespace().next().unwrap_or("");
            let key = if reason.contains("component") {
                "target"
            } else if reason.contains("fault `") {
                "fault"
            } else if ["toxicity", "probability", "latency", "jitter", "every"]
                .contains(&first_word)
            {
                first_word
            } else {
                ""
            };
            let span = refine_to_key(at.text, span, &format!("`{key}`"));
            let field = if key.is_empty() {
                format!("chaos[{index}]")
            } else {
                format!("chaos[{index}].{key}")
            };
            at.error(span, Some(&field), reason)
        })
    }

    /// Total measured load duration when it is known up front (stages with a
    /// duration); `None` for a closed run stopped by a request count.
    pub fn load_duration(&self) -> Option<Duration> {
        let mut total = Duration::ZERO;
        for s in &self.load.stages {
            total += s.get_ref().duration.as_ref()?.get_ref().0;
        }
        Some(total)
    }
}

fn check_url(url: &Spanned<String>, at: &Located<'_>) -> Result<(), ProfileError> {
    let u = url.get_ref();
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(at.error(
            url.span(),
            Some("url"),
            &format!("{u:?} is not an http:// or https:// URL with a host"),
        )),
    }
}

impl LoadSection {
    fn validate(&self, at: &Located<'_>) -> Result<(LoadShape, Vec<Request>), ProfileError> {
        if self.stages.is_empty() {
            return Err(at.error(
                0..0,
                Some("load.stage"),
                "no `[[load.stage]]`: give at least one stage (open: duration + rate; closed: connections + duration or requests)",
            ));
        }
        if self.requests.is_empty() {
            return Err(at.error(
                0..0,
                Some("load.request"),
                "no `[[load.request]]`: give at least one request (e.g. path = \"/health\")",
            ));
        }
        if self.timeout.get_ref().0.is_zero() {
            return Err(at.error(
                self.timeout.span(),
                Some("load.timeout"),
                "must be more than 0",
            ));
        }
        if self.interval.get_ref().0 < Duration::from_millis(100) {
            return Err(at.error(
                self.interval.span(),
                Some("load.interval"),
                "must be at least 100ms",
            ));
        }
        if let Some(c) = &self.connections {
            if *c.get_ref() == 0 {
                return Err(at.error(c.span(), Some("load.connections"), "must be at least 1"));
            }
            if self.model == LoadModel::Closed {
                return Err(at.error(
                    c.span(),
                    Some("load.connections"),
                    "closed model: give `connections` on the stage",
                ));
            }
        }
        if let (Some(a), LoadModel::Closed) = (&self.arrivals, self.model) {
            return Err(at.error(
                a.span(),
                Some("load.arrivals"),
                "only for the open model (model = \"open\"): closed-model workers send when their previous response arrives",
            ));
        }
        if self.model == LoadModel::Closed && self.stages.len() > 1 {
            return Err(at.error(
                self.stages[1].span(),
                Some("load.stage[2]"),
                "the closed model runs one stage (hey's -c with -n or -z); use model = \"open\" for staged load",
            ));
        }
        let stage = |i: usize| (self.stages[i].get_ref(), i + 1, self.stages[i].span());
        let shape = match self.model {
            LoadModel::Open => LoadShape::Open {
                stages: (0..self.stages.len())
                    .map(|i| {
                        let (s, n, span) = stage(i);
                        s.validate_open(n, span, at)
                    })
                    .collect::<Result<_, _>>()?,
                arrivals: self
                    .arrivals
                    .as_ref()
                    .map(|a| *a.get_ref())
                    .unwrap_or_default(),
                connections: self
                    .connections
                    .as_ref()
                    .map(|c| *c.get_ref())
                    .unwrap_or(DEFAULT_OPEN_CONNECTIONS),
            },
            LoadModel::Closed => {
                let (s, n, span) = stage(0);
                let (stop, connections) = s.validate_closed(n, span, at)?;
                LoadShape::Closed { stop, connections }
            }
        };
        if self
            .requests
            .iter()
            .all(|r| *r.get_ref().weight.get_ref() == 0)
        {
            let first = &self.requests[0];
            return Err(at.error(
                first.get_ref().weight.span(),
                Some("load.request[1].weight"),
                "every request has weight 0: at least one must be more than 0",
            ));
        }
        let requests = self
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| r.get_ref().validate(i + 1, at))
            .collect::<Result<_, _>>()?;
        Ok((shape, requests))
    }
}

impl StageSpec {
    /// Either model: a stage's duration, when given, is more than zero.
    fn check_duration(&self, e: &StageErrors<'_, '_>) -> Result<(), ProfileError> {
        match &self.duration {
            Some(d) if d.get_ref().0.is_zero() => {
                Err(e.at(d.span(), "duration", "must be more than 0"))
            }
            _ => Ok(()),
        }
    }

    /// An open-model stage: a duration and a rate (and perhaps a ramp).
    fn validate_open(
        &self,
        n: usize,
        span: Range<usize>,
        at: &Located<'_>,
    ) -> Result<loadgen::Stage, ProfileError> {
        let e = StageErrors { n, at };
        self.check_duration(&e)?;
        let Some(d) = &self.duration else {
            return Err(e.at(span, "duration", "open-model stage needs a `duration`"));
        };
        let Some(rate) = &self.rate else {
            return Err(e.at(
                span,
                "rate",
                "open-model stage needs a `rate` (requests per second)",
            ));
        };
        for (name, r) in [("rate", Some(rate)), ("ramp-to", self.ramp_to.as_ref())] {
            if let Some(r) = r {
                let v = *r.get_ref();
                if !(v.is_finite() && v > 0.0) {
                    return Err(e.at(
                        r.span(),
                        name,
                        &format!("must be more than 0 requests per second (got {v})"),
                    ));
                }
            }
        }
        let closed_only = "only for the closed model (model = \"closed\")";
        e.forbid(
            "connections",
            self.connections.as_ref().map(|c| c.span()),
            closed_only,
        )?;
        e.forbid(
            "requests",
            self.requests.as_ref().map(|c| c.span()),
            closed_only,
        )?;
        let start_rate = *rate.get_ref();
        Ok(loadgen::Stage {
            duration: d.get_ref().0,
            start_rate,
            end_rate: self
                .ramp_to
                .as_ref()
                .map(|r| *r.get_ref())
                .unwrap_or(start_rate),
        })
    }

    /// The closed model's one stage: connections, and requests or a duration.
    fn validate_closed(
        &self,
        n: usize,
        span: Range<usize>,
        at: &Located<'_>,
    ) -> Result<(loadgen::Stop, usize), ProfileError> {
        let e = StageErrors { n, at };
        self.check_duration(&e)?;
        let Some(c) = &self.connections else {
            return Err(e.at(
                span,
                "connections",
                "closed-model stage needs `connections`",
            ));
        };
        if *c.get_ref() == 0 {
            return Err(e.at(c.span(), "connections", "must be at least 1"));
        }
        let stop = match (&self.duration, &self.requests) {
            (None, None) => {
                return Err(e.at(
                    span,
                    "requests",
                    "closed-model stage needs `requests` (hey's -n) or `duration` (hey's -z)",
                ))
            }
            (Some(d), Some(_)) => {
                return Err(e.at(
                    d.span(),
                    "duration",
                    "give `requests` or `duration`, not both",
                ))
            }
            (None, Some(r)) => {
                if *r.get_ref() < *c.get_ref() as u64 {
                    return Err(e.at(r.span(), "requests", &format!("{} requests cannot keep {} connections busy: requests must be at least connections (as hey's -n >= -c)", r.get_ref(), c.get_ref())));
                }
                loadgen::Stop::Requests {
                    count: *r.get_ref(),
                }
            }
            (Some(d), None) => loadgen::Stop::Duration {
                duration: d.get_ref().0,
            },
        };
        let open_only = "only for the open model (model = \"open\")";
        e.forbid("rate", self.rate.as_ref().map(|c| c.span()), open_only)?;
        e.forbid(
            "ramp-to",
            self.ramp_to.as_ref().map(|c| c.span()),
            open_only,
        )?;
        Ok((stop, *c.get_ref()))
    }
}

/// Errors of one stage, named `load.stage[N].FIELD` (N from 1, as users count).
struct StageErrors<'a, 'b> {
    n: usize,
    at: &'a Located<'b>,
}

impl StageErrors<'_, '_> {
    fn at(&self, span: Range<usize>, name: &str, why: &str) -> ProfileError {
        self.at
            .error(span, Some(&format!("load.stage[{}].{name}", self.n)), why)
    }

    /// An error when a field that this model does not take is present.
    fn forbid(
        &self,
        name: &str,
        present: Option<Range<usize>>,
        why: &str,
    ) -> Result<(), ProfileError> {
        present.map_or(Ok(()), |span| Err(self.at(span, name, why)))
    }
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

impl RequestSpec {
    fn validate(&self, n: usize, at: &Located<'_>) -> Result<Request, ProfileError> {
        let field = |f: &str| format!("load.request[{n}].{f}");
        let method = self.method.get_ref();
        if !METHODS.contains(&method.as_str()) {
            return Err(at.error(
                self.method.span(),
                Some(&field("method")),
                &format!(
                    "unknown HTTP method {method:?} (one of {})",
                    METHODS.join(", ")
                ),
            ));
        }
        let path = self.path.get_ref();
        let bad = if !path.starts_with('/') {
            Some("must start with `/` (it is joined to the target's base URL)")
        } else if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            Some("must not contain spaces or control characters (percent-encode them)")
        } else if path.contains('#') {
            Some("must not contain a fragment (`#`): it is never sent")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(at.error(
                self.path.span(),
                Some(&field("path")),
                &format!("{path:?} {why}"),
            ));
        }
        Ok(Request {
            weight: *self.weight.get_ref(),
            method: method.clone(),
            path: path.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        })
    }
}
