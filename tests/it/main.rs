//! The `slolab` binary's integration tests, one binary (one link): the CLI's
//! commands end to end (load, run, capacity, report, compare, stack, chaos, k8s, collect) and profile
//! checking, against real servers on port 0 and real stacks.

mod capacity;
mod chaos_outcomes;
mod chaos_plan;
mod chaos_stack;
mod collect;
mod compare_runs;
mod k8s_render;
mod load_cli;
mod profile_dry_run;
mod profile_errors;
mod report_cli;
mod run_quickstart;
mod shard;
mod stack_cli;
mod support;
