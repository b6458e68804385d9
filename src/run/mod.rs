//! `slolab run PROFILE`: one TOML file describes the stack, the load, the faults
//! and the SLOs; this runs it and answers "are the SLOs met, and where did they break?".

pub mod experiment;
pub mod plan;
pub mod profile;
pub mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use self::plan::{Endpoint, ExperimentPlan};
use self::profile::LoadedProfile;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes: 0 every SLO met, 3 an SLO was not met, 1 bad profile or slolab failed.
Ctrl-C reverts every fault, stops the stack, writes what was measured (marked
interrupted) and exits 130.")]
pub struct RunArgs {
    /// The experiment profile (TOML); see profiles/ for examples.
    pub profile: PathBuf,
    /// Where runs are written: OUT/<profile-name>/<utc-time>-<commit>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Seed for the request mix and the chaos plan (overrides the profile's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override a profile field, e.g. `--set stack.gateway=builtin` or
    /// `--set load.stage[1].duration=5s` (repeatable; checked like the file).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Validate and print the full plan; start nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub use self::profile::DEFAULT_SEED;

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let loaded = LoadedProfile::read(&args.profile)?.with_overrides(&args.set)?;
    let seed = loaded.seed(args.seed);
    if args.dry_run {
        let endpoint = dry_run_endpoint(&loaded);
        let bad = loaded.profile.bad_policy();
        let plan = ExperimentPlan::build(&loaded, seed, &endpoint, bad);
        print!("{}", plan.render());
        if let Some(stack) = &loaded.profile.stack {
            let names = loaded.profile.component_names();
            let port_set = loaded.stack_sets("port");
            println!(
                "\nstack:\n{}",
                stack_table(stack.get_ref(), port_set, &names)?
            );
            let chaos = loaded.profile.chaos_plan(seed, &names, &loaded.locate())?;
            // The same text `slolab chaos plan --dry-run` prints for this file.
            println!("\nfault plan (t = from the load start):\n{chaos}");
        }
        let slo = loaded.profile.slo.as_ref().map(|s| s.get_ref());
        print!("{}", plan::render_slo(slo));
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = experiment::execute(&loaded, seed, &args.out)?;
    Ok(outcome.exit_code())
}

/// The stack a dry run would start, one setting a row (as `stack status` shows
/// a running one), then its components.
fn stack_table(
    spec: &::target::stack::StackSpec,
    port_set: bool,
    names: &[String],
) -> anyhow::Result<String> {
    let value = serde_json::to_value(spec)?;
    let mut rows: Vec<[String; 2]> = vec![["setting".into(), "value".into()]];
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let v = match v {
                // `run` takes a free port unless the profile names one.
                _ if k == "port" && !port_set => "chosen at start (free port)".to_string(),
                serde_json::Value::Null => "default".to_string(),
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            rows.push([k, v]);
        }
    }
    rows.push(["components".into(), names.join(", ")]);
    let mut t = tabled::builder::Builder::from_iter(rows).build();
    t.with(tabled::settings::Style::blank());
    Ok(t.to_string())
}

/// What a dry run shows as the target: the external URL, or the stack's
/// gateway (its port is chosen at start).
fn dry_run_endpoint(loaded: &LoadedProfile) -> Endpoint {
    Endpoint {
        base_url: match &loaded.profile.url {
            Some(u) => u.get_ref().clone(),
            None => "http://127.0.0.1:<gateway-port>".into(),
        },
        token: None,
    }
}
