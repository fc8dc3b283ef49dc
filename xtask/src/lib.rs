//! `cargo xtask`: bring up, set up, verify and tear down a Citus cluster; print test settings.
//!
//! One `match` over the parsed flags; each task is one function of the `tasks` module.
//! `main.rs` only calls [`run`].

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

/// The tasks, as `--help` lists them (for the hint after a flag error).
const TASKS: [&str; 10] = ["up", "setup", "verify", "status", "down", "test-env", "psql", "logs", "compose", "bench"];

/// The whole of `cargo xtask`: parses the arguments, runs the task, returns its exit code.
pub fn run() -> ExitCode {
    // The benchmark is a crate of its own (crates/citus-bench), built only when asked for; its
    // flags and `--help` are its own, so everything after `bench` goes to it untouched.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "bench") {
        return bench(&args[1..]);
    }
    let first = args.first().and_then(|a| a.to_str());
    if matches!(first, Some("--version" | "-V")) && args.len() == 1 {
        println!("xtask {} (citus-xtask)", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    // `cargo xtask help [TASK]`, as cargo and git take it: the same as `[TASK] --help` (a
    // `--help` after it changes nothing).
    let topic: Vec<&std::ffi::OsString> = args.iter().skip(1).filter(|a| *a != "--help" && *a != "-h").collect();
    let args: Vec<std::ffi::OsString> = match (first, topic.first().and_then(|a| a.to_str())) {
        (Some("help"), Some("bench")) if topic.len() == 1 => return bench(&["--help".into()]),
        (Some("help"), Some(task)) if topic.len() == 1 && TASKS.contains(&task) => vec![task.into(), "--help".into()],
        (Some("help"), None) if topic.is_empty() => vec!["--help".into()],
        (Some("help"), other) => {
            let other = other.unwrap_or_default();
            eprintln!("error: `cargo xtask help` takes one task, not {:?}", topic.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
            if let Some(near) = nearest_task(other) {
                eprintln!("  did you mean `cargo xtask help {near}`?");
            }
            eprintln!("  the tasks: {} (`cargo xtask --help` explains each)", TASKS.join(", "));
            return ExitCode::from(2);
        }
        _ => args,
    };
    let flags = match flags::Xtask::from_vec(args.clone()) {
        Ok(f) => f,
        Err(e) if e.is_help() => {
            let full = e.to_string();
            let task = args.first().and_then(|a| a.to_str()).filter(|a| TASKS.contains(a));
            match task.and_then(|t| task_help(&full, t)) {
                Some(section) => println!("{section}\n\n`cargo xtask --help` explains every task."),
                None => println!("{full}"),
            }
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            let task = args.first().and_then(|a| a.to_str()).filter(|a| TASKS.contains(a));
            if let Some(near) = task.zip(misspelt_flag(&e.to_string())).and_then(|(t, f)| nearest_flag(t, f)) {
                eprintln!("  did you mean `{near}`?");
            }
            match task {
                Some("psql") => eprintln!("  hint: {}", tasks::PSQL_ARGS_HINT),
                Some(t) => eprintln!("  `cargo xtask {t} --help` lists its flags"),
                None => {
                    if let Some(near) = args.first().and_then(|a| a.to_str()).and_then(nearest_task) {
                        eprintln!("  did you mean `cargo xtask {near}`?");
                    }
                    eprintln!("  the tasks: {} (`cargo xtask --help` explains each)", TASKS.join(", "));
                }
            }
            return ExitCode::from(2);
        }
    };
    let result = match flags.subcommand {
        flags::XtaskCmd::Up(f) => tasks::up(f),
        flags::XtaskCmd::Setup(f) => tasks::setup(f),
        flags::XtaskCmd::Verify(f) => tasks::verify(f),
        flags::XtaskCmd::Down(f) => tasks::down(f),
        flags::XtaskCmd::TestEnv(f) => tasks::test_env(f),
        flags::XtaskCmd::Psql(f) => tasks::psql(f),
        flags::XtaskCmd::Status(f) => tasks::status(f),
        flags::XtaskCmd::Logs(f) => tasks::logs(f),
        flags::XtaskCmd::Compose(f) => tasks::compose(f),
        flags::XtaskCmd::Bench(_) => unreachable!("`bench` is handed to citus-bench before the flags are parsed"),
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

/// The task `word` is most likely a misspelling of (see [`nearest`]).
fn nearest_task(word: &str) -> Option<&'static str> {
    nearest(&word.to_ascii_lowercase(), TASKS.iter().copied())
}

/// The flag of `task` that xflags' error about an unknown flag is most likely a misspelling
/// of, read off the task's own help text (see [`nearest`]).
fn nearest_flag(task: &str, flag: &str) -> Option<String> {
    let help = flags::Xtask::from_vec(vec![task.into(), "--help".into()]).err()?.to_string();
    let section = task_help(&help, task)?;
    // Option lines: `    -b, --backend <backend>`, `    --no-setup`.
    let names: Vec<&str> = section
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('-').map(|_| l.trim_start()))
        .flat_map(|l| l.split([',', ' ']))
        .filter(|w| w.starts_with("--"))
        .collect();
    nearest(flag, names.into_iter()).map(str::to_string)
}

/// The flag xflags names in an `unexpected flag: `--x`` error.
fn misspelt_flag(error: &str) -> Option<&str> {
    error.strip_prefix("unexpected flag: `")?.strip_suffix('`')
}

/// The candidate `word` is most likely a misspelling of: the one at the fewest single-character
/// edits (Levenshtein distance), if at most 2 and fewer than the word's length.
fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let above = row[j + 1];
                row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
                diagonal = above;
            }
        }
        row[b.len()]
    }
    candidates.map(|t| (distance(word, t), t)).filter(|(d, _)| *d <= 2 && *d < word.chars().count()).min_by_key(|(d, _)| *d).map(|(_, t)| t)
}

/// The section of xflags' help text (which describes every task, whichever asked) about `task`:
/// from its `xtask <task>` line to the next task's.
fn task_help(full: &str, task: &str) -> Option<String> {
    let head = format!("xtask {task}");
    let mut lines = full.lines().skip_while(|l| *l != head);
    let first = lines.next()?;
    let rest: Vec<&str> = lines.take_while(|l| !l.starts_with("xtask")).collect();
    Some(format!("{first}\n{}", rest.join("\n")).trim_end().to_string())
}

/// `cargo xtask bench ARGS`: `cargo run -p citus-bench -- --xtask <this binary> ARGS`, so the
/// benchmark times this very binary. Its exit code is passed on.
fn bench(args: &[std::ffi::OsString]) -> ExitCode {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = std::process::Command::new(&cargo);
    c.arg("run").arg("--manifest-path").arg(config::workspace_root().join("Cargo.toml"));
    c.args(["--package", "citus-bench", "--"]);
    if !args.iter().any(|a| a == "--xtask" || a == "--help" || a == "-h") {
        match std::env::current_exe() {
            Ok(exe) => {
                c.arg("--xtask").arg(exe);
            }
            Err(e) => eprintln!("  bench: cannot find this executable ({e}); the benchmark builds xtask itself"),
        }
    }
    c.args(args);
    // Cargo's own lines stay: on a first run they show the benchmark crate compiling.
    eprintln!("  bench: building and starting the benchmark (`cargo run -p citus-bench`; its first build takes a while)");
    match c.status() {
        Ok(s) => ExitCode::from(s.code().map_or(1, |c| u8::try_from(c).unwrap_or(1))),
        Err(e) => {
            eprintln!("error: running `{} run -p citus-bench`: {e}", cargo.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}
