//! `slolab k8s render PROFILE --shards N`: the manifests that run one profile as
//! N synchronised shards on Kubernetes (an Indexed Job) and bring the results
//! back to one collector. Kubernetes is the engine; slolab only writes its input.
//!
//! - `manifests`: the objects, built from typed API structs (no templates).

mod manifests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::{DateTime, SubsecRound as _, Utc};

use self::manifests::{Resources, ShardedRun, Spread};
use crate::experiment::{Experiment, Target};

#[derive(Debug, clap::Args)]
pub struct K8sArgs {
    #[command(subcommand)]
    command: K8sCommand,
}

#[derive(Debug, clap::Subcommand)]
enum K8sCommand {
    /// Write the manifests that run PROFILE as N shards (an Indexed Job) plus
    /// the collector that merges their results and serves the report.
    Render(RenderArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Without -o, every object is written to stdout as one multi-document YAML stream
(`slolab k8s render ... | kubectl apply -f -`). With -o DIR, one file per object,
numbered in the order to apply them (`kubectl apply -f DIR`).

The shards sleep until the start time, so apply the manifests within the
--start-in window (image pull and scheduling included); a shard that starts late
is refused by its skew check and the run is reported INCOMPLETE.")]
pub struct RenderArgs {
    /// The experiment profile (TOML); it is checked now, and shipped in a ConfigMap.
    pub profile: PathBuf,
    /// How many shards (pods) share the load.
    #[arg(long)]
    pub shards: u32,
    /// The slolab image the pods run (see the Dockerfile).
    #[arg(long, default_value = concat!("slolab:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Namespace of every object (default: kubectl's current namespace).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The shards start this long after rendering, e.g. `2m`.
    #[arg(long, value_parser = chaos::duration::parse, default_value = "3m", conflicts_with = "start_at")]
    pub start_in: Duration,
    /// The shards start at this time (RFC 3339, e.g. 2026-01-01T12:00:00Z).
    #[arg(long, value_parser = parse_start_at)]
    pub start_at: Option<DateTime<Utc>>,
    /// CPU request of each shard (a Kubernetes quantity: 500m, 2).
    #[arg(long, default_value = "1")]
    pub cpu: String,
    /// CPU limit of each shard (default: the request, for Guaranteed QoS).
    #[arg(long)]
    pub cpu_limit: Option<String>,
    /// Memory request of each shard (256Mi, 2Gi).
    #[arg(long, default_value = "512Mi")]
    pub memory: String,
    /// Memory limit of each shard (default: the request).
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Shards on different nodes: `preferred` (spread when the nodes allow) or
    /// `required` (a shard waits Pending for a node of its own).
    #[arg(long, value_enum, default_value = "preferred")]
    pub spread: Spread,
    /// Write one file per object into DIR instead of the stream on stdout.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn parse_start_at(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time (e.g. 2026-01-01T12:00:00Z): {e}"))
}

pub fn main(args: K8sArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        K8sCommand::Render(a) => render(a),
    }
}

fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    if args.shards == 0 {
        bail!("--shards 0: a run needs at least one shard (e.g. --shards 3)");
    }
    // A bad profile fails here, with its file:line, not in N pods minutes later.
    let exp = Experiment::read(&args.profile, &[], None)?;
    if matches!(exp.target, Target::Stack(_)) {
        eprintln!(
            "slolab k8s render: warning: {} has no `url`: every shard starts its own bundled \
             stack inside its pod; set `url = ...` to load one system from all shards",
            args.profile.display()
        );
    }
    let text = std::fs::read_to_string(&args.profile)
        .with_context(|| format!("cannot read {}", args.profile.display()))?;
    let file_name = profile_file_name(&args.profile)?;
    if let Some(ns) = &args.namespace {
        check_dns_label("--namespace", ns)?;
    }
    for (flag, q) in [
        ("--cpu", Some(&args.cpu)),
        ("--cpu-limit", args.cpu_limit.as_ref()),
        ("--memory", Some(&args.memory)),
        ("--memory-limit", args.memory_limit.as_ref()),
    ] {
        if let Some(q) = q {
            check_quantity(flag, q)?;
        }
    }
    let start_at = match args.start_at {
        Some(t) => {
            if t <= Utc::now() {
                eprintln!("slolab k8s render: warning: --start-at {t:?} is in the past");
            }
            t
        }
        None => {
            let lead = chrono::Duration::from_std(args.start_in).context("--start-in")?;
            (Utc::now() + lead).trunc_subsecs(0)
        }
    };
    let run = ShardedRun {
        name: object_name(&exp.name),
        namespace: args.namespace.clone(),
        shards: args.shards,
        image: args.image.clone(),
        profile_file: file_name,
        profile_text: text,
        start_at: start_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        resources: Resources {
            cpu: args.cpu.clone(),
            cpu_limit: args.cpu_limit.clone().unwrap_or_else(|| args.cpu.clone()),
            memory: args.memory.clone(),
            memory_limit: args
                .memory_limit
                .clone()
                .unwrap_or_else(|| args.memory.clone()),
        },
        spread: args.spread,
    };
    let documents = run.documents()?;
    match &args.out {
        None => {
            let stream: Vec<&str> = documents.iter().map(|d| d.yaml.as_str()).collect();
            print!("{}", stream.join("---\n"));
        }
        Some(dir) => write_files(dir, &documents)?,
    }
    eprintln!(
        "slolab k8s render: {} shards of {} start at {} — apply within that window",
        args.shards, exp.name, run.start_at
    );
    Ok(crate::exit::SUCCESS)
}

/// One file per object, numbered in apply order; files of an earlier render
/// into the same directory are replaced, not merged with.
fn write_files(dir: &Path, documents: &[manifests::Document]) -> anyhow::Result<()> {
    for doc in documents {
        let path = dir.join(&doc.file);
        atomicfile::write_atomic(&path, doc.yaml.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "slolab k8s render: wrote {} files to {}",
        documents.len(),
        dir.display()
    );
    Ok(())
}

/// The ConfigMap key and mount name: the profile's file name, which a
/// ConfigMap key must spell with `[-._a-zA-Z0-9]` only.
fn profile_file_name(path: &Path) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !ok {
        bail!(
            "{}: a ConfigMap key may hold only letters, digits, '-', '.' and '_': rename the file",
            path.display()
        );
    }
    Ok(name)
}

/// `slolab-<profile name>` as a DNS label Kubernetes accepts for every object:
/// lower case, `[a-z0-9-]`, short enough that a pod's hostname
/// (`<job>-<index>`) and the `-collect` suffix stay within 63 characters.
fn object_name(profile: &str) -> String {
    let mut name = String::from("slolab-");
    for c in profile.chars() {
        let c = c.to_ascii_lowercase();
        name.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    let mut name: String = name.chars().take(40).collect();
    while name.ends_with('-') {
        name.pop();
    }
    name
}

fn check_dns_label(flag: &str, s: &str) -> anyhow::Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        bail!("{flag} {s}: not a DNS label (lower case letters, digits and '-', at most 63)");
    }
    Ok(())
}

/// Kubernetes quantities as users write them: a decimal number and an optional
/// suffix (`500m`, `2`, `1.5`, `512Mi`, `2G`). Exponent forms are left out.
fn check_quantity(flag: &str, s: &str) -> anyhow::Result<()> {
    const SUFFIXES: [&str; 14] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", "",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|suffix| s.strip_suffix(suffix))
        .unwrap_or(s);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    let ok = digits(whole) && frac.map_or(true, digits);
    if !ok {
        bail!("{flag} {s}: not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 2Gi)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_dns_labels() {
        assert_eq!(object_name("challenge-01"), "slolab-challenge-01");
        assert_eq!(object_name("My Profile_2"), "slolab-my-profile-2");
        let long = object_name(&"x".repeat(100));
        assert_eq!(long.len(), 40);
        assert_eq!(object_name(&format!("a{}b", "-".repeat(50))), "slolab-a");
    }

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "1.5", "512Mi", "2Gi", "100k"] {
            check_quantity("--cpu", ok).unwrap();
        }
        for bad in ["", "two", "1.", ".5", "2cores", "Mi", "-1"] {
            assert!(check_quantity("--cpu", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaces_are_dns_labels() {
        check_dns_label("--namespace", "load-test").unwrap();
        for bad in ["", "Load", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(check_dns_label("--namespace", bad).is_err(), "{bad}");
        }
    }
}
