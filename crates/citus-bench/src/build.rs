//! Clean-build times: `cargo build -p xtask` (what a user's first `cargo xtask` compiles)
//! next to an empty crate whose only dependency is `postgres`, each into its own fresh
//! target folder, in the dev profile, offline (from the local registry cache).

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context};

/// The clean builds of one crate.
#[derive(Debug, Clone)]
pub(crate) struct Build {
    /// Each clean build's seconds, in the order they ran.
    pub(crate) samples: Vec<f64>,
    /// `Compiling ...` lines: how many crates were compiled.
    pub(crate) crates: usize,
}

impl Build {
    /// The median of the samples (of two, their mean).
    pub(crate) fn secs(&self) -> f64 {
        crate::report::stats(self.samples.iter().copied()).median
    }
}

/// How many clean builds of each crate one run makes, in the order A B B A, so that a load
/// that rises or falls during the run weighs on both alike.
pub(crate) const ROUNDS: usize = 2;

#[derive(Debug, Clone)]
pub(crate) struct BuildTimes {
    pub(crate) xtask: Build,
    pub(crate) postgres_only: Build,
    /// The `postgres` version the empty crate resolved to.
    pub(crate) postgres_version: String,
    pub(crate) jobs: usize,
}

/// Builds both; `scratch` is deleted by the caller's guard.
pub(crate) fn measure(workspace: &Path, scratch: &Path) -> anyhow::Result<BuildTimes> {
    fs::create_dir_all(scratch)?;
    // The empty crate: same dev-profile settings as this workspace, same locked versions.
    let krate = scratch.join("postgres-only");
    fs::create_dir_all(krate.join("src"))?;
    let manifest = fs::read_to_string(workspace.join("Cargo.toml")).context("reading the workspace's Cargo.toml")?;
    fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"postgres-only\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\npostgres = \"0.19\"\n\n\
             [workspace]\n\n# The workspace's profiles, copied, so both builds compile alike.\n{}",
            profile_sections(&manifest)
        ),
    )?;
    fs::write(krate.join("src").join("main.rs"), "fn main() {}\n")?;
    if let Err(e) = fs::copy(workspace.join("Cargo.lock"), krate.join("Cargo.lock")) {
        crate::progress(&format!("bench: no Cargo.lock to copy ({e}); the empty crate resolves its own versions"));
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());

    // A B B A (then again, for more rounds): each build into a fresh target folder, deleted
    // (untimed) before the next one.
    let mut postgres_only = Build { samples: Vec::new(), crates: 0 };
    let mut xtask = postgres_only.clone();
    for i in 0..2 * ROUNDS {
        let target = scratch.join(format!("target-{i}"));
        let (name, build, (secs, crates)) = if matches!(i % 4, 0 | 3) {
            ("postgres-only", &mut postgres_only, cargo_build(&krate, &target, &["build", "--offline"])?)
        } else {
            ("xtask", &mut xtask, cargo_build(workspace, &target, &["build", "-p", "xtask", "--locked", "--offline"])?)
        };
        build.samples.push(secs);
        build.crates = crates;
        crate::progress(&format!("bench: clean build {}/{ROUNDS} of {name}: {secs:.1} s, {crates} crates", build.samples.len()));
        let _ = fs::remove_dir_all(&target);
    }

    let lock = fs::read_to_string(krate.join("Cargo.lock")).unwrap_or_default();
    let postgres_version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"postgres\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_string)))
        .unwrap_or_else(|| "0.19".into());
    Ok(BuildTimes { xtask, postgres_only, postgres_version, jobs })
}

/// The `[profile.*]` tables of a Cargo.toml, verbatim.
fn profile_sections(manifest: &str) -> String {
    let mut keep = false;
    let mut out = String::new();
    for line in manifest.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            keep = t.starts_with("[profile.");
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// One clean build: its seconds and how many crates it compiled.
fn cargo_build(dir: &Path, target: &Path, args: &[&str]) -> anyhow::Result<(f64, usize)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(args).current_dir(dir).env("CARGO_TARGET_DIR", target);
    // A clean build means compiling everything: no compiler cache in between.
    for k in ["RUSTC_WRAPPER", "CARGO_BUILD_RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_TARGET_DIR"] {
        c.env_remove(k);
    }
    let t0 = Instant::now();
    let out = c.stdin(Stdio::null()).output().with_context(|| format!("running cargo in {}", dir.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let lines: Vec<&str> = err.lines().collect();
        bail!("`cargo {}` in {} failed ({}):\n    {}", args.join(" "), dir.display(), out.status, lines[lines.len().saturating_sub(15)..].join("\n    "));
    }
    let crates = err.lines().filter(|l| l.trim_start().starts_with("Compiling ")).count();
    Ok((secs, crates))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_build_time_is_the_median_of_its_samples() {
        let b = |samples: &[f64]| super::Build { samples: samples.to_vec(), crates: 3 };
        assert_eq!(b(&[10.0, 12.0]).secs(), 11.0);
        assert_eq!(b(&[14.0, 10.0, 12.0]).secs(), 12.0);
    }

    #[test]
    fn profile_sections_are_copied_verbatim_and_nothing_else() {
        let manifest =
            "[workspace]\nmembers = [\"a\"]\n\n[profile.dev]\ndebug = 0\n\n[workspace.lints.rust]\nx = \"warn\"\n[profile.dev.package.sha2]\nopt-level = 1\n";
        assert_eq!(super::profile_sections(manifest), "[profile.dev]\ndebug = 0\n\n[profile.dev.package.sha2]\nopt-level = 1\n");
    }
}
