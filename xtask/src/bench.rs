//! `cargo xtask bench`: the benchmark (see docs/benchmarks.md).
use std::process::ExitCode;

use crate::flags;

pub(crate) fn run(f: flags::Bench) -> anyhow::Result<ExitCode> {
    let _ = f;
    anyhow::bail!("bench is not wired yet")
}
