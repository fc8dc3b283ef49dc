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

/// One clean build.
#[derive(Debug, Clone)]
pub(crate) struct Build {
    pub(crate) secs: f64,
    /// `Compiling ...` lines: how many crates were compiled.
    pub(crate) crates: usize,
}

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

    crate::progress("bench: clean build of the empty crate depending only on postgres ...");
    let postgres_only = cargo_build(&krate, &scratch.join("target-postgres-only"), &["build", "--offline"])?;
    crate::progress(&format!("bench: postgres-only: {:.1} s, {} crates", postgres_only.secs, postgres_only.crates));
    crate::progress("bench: clean build of xtask ...");
    let xtask = cargo_build(workspace, &scratch.join("target-xtask"), &["build", "-p", "xtask", "--locked", "--offline"])?;
    crate::progress(&format!("bench: xtask: {:.1} s, {} crates", xtask.secs, xtask.crates));

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

fn cargo_build(dir: &Path, target: &Path, args: &[&str]) -> anyhow::Result<Build> {
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
    Ok(Build { secs, crates })
}

#[cfg(test)]
mod tests {
    #[test]
    fn profile_sections_are_copied_verbatim_and_nothing_else() {
        let manifest =
            "[workspace]\nmembers = [\"a\"]\n\n[profile.dev]\ndebug = 0\n\n[workspace.lints.rust]\nx = \"warn\"\n[profile.dev.package.sha2]\nopt-level = 1\n";
        assert_eq!(super::profile_sections(manifest), "[profile.dev]\ndebug = 0\n\n[profile.dev.package.sha2]\nopt-level = 1\n");
    }
}
