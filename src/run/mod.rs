//! `slolab run PROFILE`: one TOML file describes the stack, the load, the faults
//! and the SLOs; this runs it and answers "are the SLOs met, and where did they break?".

pub mod execute;
pub mod plan;
pub mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use self::plan::{Endpoint, ExperimentPlan};
use crate::experiment::{Experiment, StackTarget, Target};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes: 0 every SLO met, 3 an SLO was not met, 1 bad profile or slolab failed.
Ctrl-C reverts every fault, stops the stack, writes what was measured (marked
interrupted) and exits 130.

Sharded (--shard I/N or --shards N, with --start-at): the profile's target must be
a url. The shard's warm-up (if any) runs from start-at minus the warm-up, its
measured load from start-at; it writes its results without an SLO verdict and
exits 0 whatever its latencies: `slolab merge` of all N shards judges the SLOs.")]
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
    /// After writing results.json, POST it to URL/{index} (`slolab collect`),
    /// retrying for about 1.5 min; the index is the shard's (`--shard I/N`, or
    /// the Indexed Job's JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "URL")]
    pub post_results: Option<String>,
    #[command(flatten)]
    pub sharding: crate::shard::ShardArgs,
}

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let exp = Experiment::read(&args.profile, &args.set, args.seed)?;
    if args.dry_run {
        print!("{}", dry_run(&exp)?);
        return Ok(ExitCode::SUCCESS);
    }
    let sharding = match &exp.target {
        Target::Url(url) => args.sharding.resolve(url)?,
        Target::Stack(_) => {
            if let Some(s) = args.sharding.resolve("http://127.0.0.1/")? {
                anyhow::bail!(
                    "shard {}: a sharded run drives one target from several generators, so the \
                     profile's target must be a url (each shard would start a stack of its own)",
                    s.shard
                );
            }
            None
        }
    };
    // Resolved before the run: a shard without its index fails at once.
    let post = match (&args.post_results, &sharding) {
        (Some(url), Some(s)) => Some((url, s.shard.index)),
        (Some(url), None) => Some((url, crate::collect::post::shard_index()?)),
        (None, _) => None,
    };
    let outcome = execute::execute(&exp, &args.out, sharding.as_ref())?;
    if let Some((url, index)) = post {
        crate::collect::post::post_file(url, index, &outcome.dir.join("results.json"))?;
    }
    if let (Some(s), false) = (&sharding, outcome.interrupted) {
        println!(
            "shard {} done; merge the shards for the SLO verdict (slolab merge)",
            s.shard
        );
        return Ok(crate::exit::SUCCESS);
    }
    Ok(outcome.exit_code())
}

/// The `--dry-run` text: the load, the stack, the fault plan and the SLOs.
fn dry_run(exp: &Experiment) -> anyhow::Result<String> {
    let endpoint = Endpoint {
        base_url: match &exp.target {
            Target::Url(u) => u.clone(),
            // Its port is chosen at start.
            Target::Stack(_) => "http://127.0.0.1:<gateway-port>".into(),
        },
        token: None,
    };
    let mut out = ExperimentPlan::build(exp, &endpoint).render();
    if let Some(stack) = exp.stack() {
        out.push_str(&format!("\nstack:\n{}\n", stack_table(stack)?));
        // The same text `slolab chaos plan --dry-run` prints for this file.
        out.push_str(&format!(
            "\nfault plan (t = from the load start):\n{}\n",
            exp.chaos
        ));
    }
    out.push_str(&plan::render_slo(exp.slo.as_ref()));
    Ok(out)
}

/// The stack a dry run would start, one setting a row (as `stack status` shows
/// a running one), then its components.
fn stack_table(stack: &StackTarget) -> anyhow::Result<String> {
    let value = serde_json::to_value(&stack.spec)?;
    let mut rows: Vec<[String; 2]> = vec![["setting".into(), "value".into()]];
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let v = match v {
                // `run` takes a free port unless the profile names one.
                _ if k == "port" && !stack.port_set => "chosen at start (free port)".to_string(),
                serde_json::Value::Null => "default".to_string(),
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            rows.push([k, v]);
        }
    }
    rows.push(["components".into(), stack.components.join(", ")]);
    let mut t = tabled::builder::Builder::from_iter(rows).build();
    t.with(tabled::settings::Style::blank());
    Ok(t.to_string())
}
