//! `cargo xtask`: bring up, set up, verify and tear down a Citus cluster; print test settings.
//!
//! One `match` over the parsed flags; each task lives in its own module.

mod bench;
mod config;
mod flags;
mod tasks;

use std::process::ExitCode;

/// An error caused by the user's input (bad config, bad flag): exit code 2, nothing started.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// Prints one progress line to stderr.
pub(crate) fn progress(line: &str) {
    eprintln!("  {line}");
}

fn main() -> ExitCode {
    let flags = match flags::Xtask::from_env() {
        Ok(f) => f,
        Err(e) if e.is_help() => {
            println!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match flags.subcommand {
        flags::XtaskCmd::Up(f) => tasks::up(f),
        flags::XtaskCmd::Setup(f) => tasks::setup(f),
        flags::XtaskCmd::Verify(f) => tasks::verify(f),
        flags::XtaskCmd::Down(f) => tasks::down(f),
        flags::XtaskCmd::TestEnv(f) => tasks::test_env(f),
        flags::XtaskCmd::Compose(f) => tasks::compose(f),
        flags::XtaskCmd::Bench(f) => bench::run(f),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("error: {u}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
