use std::path::Path;
use std::time::Duration;

use super::locate::{field_at, line_col};
use super::*;

fn parse(text: &str) -> Experiment {
    Experiment::parse(Path::new("p.toml"), text.to_string(), None).unwrap()
}

const REQUEST: &str = "[[load.request]]\npath = \"/health\"\n";

#[test]
fn validation_yields_the_load_shape_with_every_default_resolved() {
    let open = parse(&format!(
        "[[load.stage]]\nduration = \"5s\"\nrate = 100\nramp-to = 300\n{REQUEST}"
    ));
    assert_eq!(
        open.load.shape,
        LoadShape::Open {
            stages: vec![loadgen::Stage {
                duration: Duration::from_secs(5),
                start_rate: 100.0,
                end_rate: 300.0,
            }],
            arrivals: loadgen::Arrivals::Uniform,
            connections: DEFAULT_OPEN_CONNECTIONS,
        }
    );
    assert_eq!(open.seed, DEFAULT_SEED, "a seedless profile runs on seed 1");
    let flagged = Experiment::parse(Path::new("p.toml"), open_text(), Some(9)).unwrap();
    assert_eq!(flagged.seed, 9);
    assert_eq!(
        flagged.chaos.seed, 9,
        "the fault plan is expanded with the run's seed"
    );
    let stack = open.stack().expect("no url: the default stack");
    assert!(!stack.port_set);
    assert_eq!(stack.components, stack.spec.component_names());
    assert_eq!(open.load.track_header, TRACK_HEADER);
    assert_eq!(open.load.requests[0].method, "GET");
    assert_eq!(open.name, "p");

    let closed = parse(&format!(
        "seed = 4\n[stack]\nport = 9000\n[load]\nmodel = \"closed\"\n[[load.stage]]\nconnections = 3\nrequests = 30\n{REQUEST}"
    ));
    assert_eq!(
        closed.load.shape,
        LoadShape::Closed {
            stop: loadgen::Stop::Requests { count: 30 },
            connections: 3,
        }
    );
    assert_eq!(closed.seed, 4);
    let stack = closed.stack().unwrap();
    assert!(stack.port_set && !stack.run_dir_set);
    assert_eq!(
        closed.chaos.total,
        chaos::Plan::horizon(None),
        "a run stopped by a request count plans faults over the one horizon rule"
    );
}

#[test]
fn experiment_arrivals_reach_the_load_plan_and_the_dry_run() {
    let e = parse(&format!(
        "seed = 3\n[load]\narrivals = \"poisson\"\n{}",
        open_text()
    ));
    assert!(matches!(
        e.load.shape,
        LoadShape::Open {
            arrivals: loadgen::Arrivals::Poisson,
            ..
        }
    ));
    let endpoint = crate::run::plan::Endpoint {
        base_url: "http://127.0.0.1:9".into(),
        token: None,
    };
    let plan = crate::run::plan::ExperimentPlan::build(&e, &endpoint);
    assert_eq!(plan.load.arrivals, loadgen::Arrivals::Poisson);
    assert_eq!(
        plan.load.seed, 3,
        "the arrivals are drawn from the run's seed"
    );
    let text = plan.render();
    assert!(
        text.contains("open (arrival rate, poisson arrivals;"),
        "{text}"
    );
    let uniform = crate::run::plan::ExperimentPlan::build(&parse(&open_text()), &endpoint);
    assert_eq!(uniform.load.arrivals, loadgen::Arrivals::Uniform);
    assert!(uniform.render().contains("uniform arrivals"));
}

#[test]
fn experiment_arrivals_are_checked_where_written() {
    let err = |text: &str| {
        Experiment::parse(Path::new("p.toml"), text.to_string(), None)
            .unwrap_err()
            .to_string()
    };
    let closed = err(&format!(
        "[load]\nmodel = \"closed\"\narrivals = \"poisson\"\n[[load.stage]]\nconnections = 2\nrequests = 10\n{REQUEST}"
    ));
    assert!(
        closed.starts_with("p.toml:3:12: load.arrivals: only for the open model"),
        "{closed}"
    );
    let unknown = err(&format!("[load]\narrivals = \"bursty\"\n{}", open_text()));
    assert!(
        unknown.starts_with("p.toml:2:12: load.arrivals:") && unknown.contains("poisson"),
        "{unknown}"
    );
}

fn open_text() -> String {
    format!("[[load.stage]]\nduration = \"5s\"\nrate = 100\n{REQUEST}")
}

#[test]
fn a_url_target_has_no_stack_and_no_faults() {
    let e = parse(&format!("url = \"http://127.0.0.1:9/\"\n{}", open_text()));
    assert!(matches!(&e.target, Target::Url(u) if u == "http://127.0.0.1:9"));
    assert!(e.stack().is_none() && e.chaos.faults.is_empty());
}

#[test]
fn line_col_counts_from_one_in_characters() {
    let text = "a = 1\nbé = \"x\"\n";
    assert_eq!(line_col(text, 0), (1, 1));
    assert_eq!(line_col(text, 6), (2, 1));
    assert_eq!(line_col(text, text.find('"').unwrap()), (2, 6));
}

#[test]
fn field_at_reads_headers_and_keys() {
    let text = "name = \"x\"\n[load]\nmodel = \"open\"\n[[load.stage]]\nrate = 1\n[[load.stage]]\nrate = -1\n";
    assert_eq!(field_at(text, 2), "name");
    assert_eq!(field_at(text, text.find("model").unwrap()), "load.model");
    assert_eq!(
        field_at(text, text.find("-1").unwrap()),
        "load.stage[2].rate"
    );
    assert_eq!(
        field_at(text, text.find("[[load").unwrap()),
        "load.stage[1]"
    );
}
