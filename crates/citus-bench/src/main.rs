//! `cargo xtask bench`: times the tool against a bare baseline (see docs/benchmarks.md).
//!
//! A crate of its own: `cargo xtask bench` builds and runs it (`cargo run -p citus-bench`),
//! so the xtask a user compiles on first use does not carry it.
//!
//! For each worker count, cycles alternate (rotating their order, so machine noise hits
//! every side alike) between:
//! - the **baseline** ([`baseline`]): a bare script's work with the same binaries;
//! - the **tool, first run ever**: `up --backend local`, `verify`, `setup` again, `down`,
//!   with a fresh data folder, so `up` builds its initdb template first;
//! - the **tool, template cached**: the same, with one data folder shared by the cycles
//!   (a new cluster name each cycle), so `up` copies the cached template.
//!
//! Each local tool cycle also times the all-pairs check alone as a bare script does it
//! ([`baseline::all_pairs`]), between the tool's `setup` and its `down`: the part of `verify`
//! no implementation can do without, reported against verify's budget.
//!
//! Before each local stop (the baseline's and the tool's `down`) both sides wait, untimed,
//! until every node's Citus maintenance daemon has connected to every node
//! ([`baseline::daemons_connected`]), so that both stop a cluster in the same state.
//!
//! The tool runs as a child process (the xtask binary) with a generated config on free
//! loopback ports; its own peak memory is sampled from /proc. One warm-up cycle of the
//! baseline and of the cached tool precedes each worker count and is not counted.

mod baseline;
mod build;
mod flags;
mod procs;
mod report;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context};

use procs::{Measured, RunAs, Scratch};

/// Prints one progress line to stderr.
pub(crate) fn progress(line: &str) {
    eprintln!("  {line}");
}

fn main() -> ExitCode {
    let flags = match flags::CitusBench::from_env() {
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
    let root = workspace_root();
    // Bad input (flags, config) exits 2 before anything is measured.
    let input = match Input::check(&flags, &root) {
        Ok(i) => i,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    match run(flags, input, &root) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the command line and the user's config ask for, checked before anything runs.
struct Input {
    cycles: usize,
    workers: Vec<usize>,
    /// `--config`, else the config `cargo xtask` would use: the benchmark takes the PostgreSQL
    /// binaries and the docker image from it.
    user_config: citus_config::Cluster,
}

impl Input {
    fn check(f: &flags::CitusBench, root: &Path) -> Result<Input, String> {
        let cycles = f.cycles.unwrap_or(5);
        if cycles == 0 {
            return Err("--cycles must be at least 1".into());
        }
        let workers = parse_workers(f.workers.as_deref().unwrap_or("2,8"))?;
        if let Some(p) = f.xtask.as_deref().filter(|p| !p.is_file()) {
            return Err(format!("--xtask {}: no such file", p.display()));
        }
        let user_config = citus_io::state::read_config(&citus_io::state::config_path(f.config.as_deref(), root))?;
        Ok(Input { cycles, workers, user_config })
    }
}

/// The workspace root (this crate lives in `crates/citus-bench`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("citus-bench lives in the workspace's crates/").to_path_buf()
}

/// The xtask binary under test: `--xtask` (what `cargo xtask bench` passes), else built here
/// with `cargo build -p xtask`, as `cargo xtask` builds it (dev profile).
fn xtask_binary(given: Option<PathBuf>, root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    progress("bench: building xtask (cargo build -p xtask) ...");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", "xtask", "--message-format=json"])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build -p xtask")?;
    if !out.status.success() {
        bail!("`cargo build -p xtask` failed ({}); see its errors above", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "xtask")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow::anyhow!("`cargo build -p xtask` reported no xtask executable"))
}

/// The variable the generated configs read the password from (set only in the children).
const PASSWORD_ENV: &str = "CITUS_BENCH_PASSWORD";
const PASSWORD: &str = "citus-bench-password";
/// The generated configs' user and database (the seed's).
const USER: &str = "commcarehq";
const DATABASE: &str = "commcare_ucr_citus";

/// What every cycle shares.
pub(crate) struct Ctx {
    /// The xtask binary: the tool under test.
    exe: PathBuf,
    /// The run's scratch folder, `<--scratch, default target/>/citus-bench-<pid>`.
    root: PathBuf,
    /// The PostgreSQL server binaries (found as the tool finds them).
    bin_dir: PathBuf,
    /// `[local] bin_dir` of the user's config, passed on to the generated configs.
    configured_bin_dir: Option<PathBuf>,
    psql: PathBuf,
    run_as: RunAs,
    docker_image: String,
    pg_major: u32,
    /// Where finished cycles' folders are moved instead of being deleted (deleted with
    /// `root` at the end), when the run keeps them: see [`keep_spent_data`].
    spent: Option<PathBuf>,
}

/// A series of tool cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Series {
    /// Fresh data folder: `up` runs initdb for its template first.
    FirstRun,
    /// Shared data folder: `up` copies the cached template.
    Cached,
    /// `--backend docker` (only when the config's image is on this machine).
    Docker,
}

impl Series {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Series::FirstRun => "tool_first_run",
            Series::Cached => "tool_cached",
            Series::Docker => "tool_docker",
        }
    }
    pub(crate) fn title(self) -> &'static str {
        match self {
            Series::FirstRun => "tool, first run (no template)",
            Series::Cached => "tool, template cached",
            Series::Docker => "tool, docker backend",
        }
    }
}

/// One timed phase of a tool cycle.
#[derive(Debug, Clone)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) secs: f64,
    /// Peak resident memory of the tool's own process, KiB.
    pub(crate) peak_kib: Option<u64>,
}

/// One tool cycle.
#[derive(Debug, Clone)]
pub(crate) struct ToolSample {
    /// up, verify, setup, down, purge (`down --purge`, not a target).
    pub(crate) phases: Vec<Phase>,
    /// The progress lines of `up` with their time since it was spawned.
    pub(crate) up_lines: Vec<(f64, String)>,
    /// Local cycles: the bare all-pairs check ([`baseline::all_pairs`]) on the ready cluster,
    /// after the tool's `setup` and before its `down` (not a phase of the tool).
    pub(crate) all_pairs: Option<f64>,
    /// Local cycles: the untimed wait before `down` ([`baseline::daemons_connected`]).
    pub(crate) daemons: Option<baseline::Daemons>,
}

impl ToolSample {
    pub(crate) fn secs(&self, phase: &str) -> f64 {
        self.phases.iter().find(|p| p.name == phase).map_or(f64::NAN, |p| p.secs)
    }
}

/// The tool's timed phases, in the order they run.
pub(crate) const TOOL_PHASES: [&str; 5] = ["up", "verify", "setup", "down", "purge"];

/// Everything measured for one worker count.
#[derive(Debug, Default)]
pub(crate) struct ConfigResult {
    pub(crate) workers: usize,
    pub(crate) baseline: Vec<baseline::Sample>,
    pub(crate) first_run: Vec<ToolSample>,
    pub(crate) cached: Vec<ToolSample>,
    pub(crate) docker: Vec<ToolSample>,
    /// `compose up -d --wait`, then the polls (compose v2 only).
    pub(crate) docker_baseline: Vec<baseline::Sample>,
    /// `compose up -d`, then the polls.
    pub(crate) docker_baseline_polled: Vec<baseline::Sample>,
}

impl ConfigResult {
    pub(crate) fn series(&self, s: Series) -> &[ToolSample] {
        match s {
            Series::FirstRun => &self.first_run,
            Series::Cached => &self.cached,
            Series::Docker => &self.docker,
        }
    }
}

fn run(f: flags::CitusBench, input: Input, root_ws: &Path) -> anyhow::Result<()> {
    let Input { cycles, workers, user_config } = input;
    let json_path = f.json.clone().unwrap_or_else(|| root_ws.join("target").join("bench.json"));
    let measure_build = f.write_docs || std::env::var("CITUS_BENCH_BUILD").is_ok_and(|v| v == "1");
    let exe = xtask_binary(f.xtask.clone(), root_ws)?;
    let local = citus_io::local::detect(&user_config)?;
    let bin_dir = local.bin_dir.clone();
    for b in ["pg_ctl", "initdb", "postgres"] {
        if !bin_dir.join(b).exists() {
            bail!(
                "PostgreSQL's {b} is missing from {}: install the PostgreSQL server (Debian: `apt-get install postgresql`) or set [local] bin_dir",
                bin_dir.display()
            );
        }
    }
    let psql = [bin_dir.join("psql"), PathBuf::from("/usr/bin/psql")].into_iter().find(|p| p.exists()).ok_or_else(|| {
        anyhow::anyhow!("psql (the PostgreSQL client, used by the baseline) is missing: install it (Debian: `apt-get install postgresql-client`)")
    })?;
    check_citus(&bin_dir)?;

    // The clusters live where the tool keeps them by default (the workspace's file system),
    // not in /tmp: creating files costs 50 times more in /tmp than in the workspace on the
    // machine this was written on, and initdb and template copies are mostly file creation.
    let scratch = f.scratch.clone().unwrap_or_else(|| root_ws.join("target"));
    procs::open_dir(&scratch)?;
    procs::clean_stale_roots(&scratch);
    let root = scratch.join(format!("citus-bench-{}", std::process::id()));
    procs::open_dir(&root)?;
    let _root_guard = Scratch::new(vec![root.clone()]);
    let spent = keep_spent_data(&scratch, &root, cycles, &workers)?;
    let ctx = Ctx {
        exe,
        root,
        bin_dir,
        configured_bin_dir: user_config.local.bin_dir.clone(),
        psql,
        run_as: RunAs::from_local(&local),
        docker_image: f.image.clone().unwrap_or_else(|| user_config.docker.image.clone()),
        pg_major: user_config.docker.pg_major,
        spent: spent.as_ref().ok().cloned(),
    };
    let machine = report::Machine::read(&ctx.root);
    // Read before the first cycle: the report names the code that was measured, not a commit
    // made while the benchmark ran.
    let commit = report::commit_of(root_ws);
    let docker_status = docker_status(&ctx.docker_image);
    progress(&format!(
        "bench: {cycles} cycle(s) per series for 1+{} workers, servers as OS user {}, scratch {}",
        workers.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and 1+"),
        ctx.run_as.name,
        ctx.root.display()
    ));

    let mut citus_version = None;
    let mut results = Vec::new();
    for &n in &workers {
        let mut r = ConfigResult { workers: n, ..ConfigResult::default() };
        progress(&format!("bench: [1+{n}] warm-up cycles (not counted)"));
        let warm = baseline::cycle(&ctx, n, &format!("w{n}_warm"), citus_version.is_none())?;
        if citus_version.is_none() {
            citus_version = warm.citus_version;
        }
        tool_cycle(&ctx, n, Series::Cached, &format!("w{n}_warm"), "warm-up")?;
        for i in 0..cycles {
            for k in 0..3 {
                let tag = format!("1+{n} {}/{cycles}", i + 1);
                match (i + k) % 3 {
                    0 => {
                        let s = baseline::cycle(&ctx, n, &format!("w{n}_c{i}"), false)?;
                        let waited = s.daemons.map_or(String::new(), |d| format!(" (before it, untimed: {})", d.describe()));
                        progress(&format!("bench: [{tag} baseline] up {:.2} s, stop {:.2} s{waited}", s.up, s.stop));
                        r.baseline.push(s);
                    }
                    1 => r.first_run.push(tool_cycle(&ctx, n, Series::FirstRun, &format!("w{n}_c{i}_first"), &tag)?),
                    _ => r.cached.push(tool_cycle(&ctx, n, Series::Cached, &format!("w{n}_c{i}_cached"), &tag)?),
                }
            }
        }
        results.push(r);
    }
    let docker = match &docker_status {
        Ok(()) => {
            let v2 = citus_io::docker::compose_program()?.len() == 2;
            for r in &mut results {
                let n = r.workers;
                progress(&format!("bench: [1+{n}] docker warm-up cycle (not counted)"));
                tool_cycle(&ctx, n, Series::Docker, &format!("w{n}_dwarm"), "docker warm-up")?;
                // The sides in turn, each cycle starting one further: the tool, the baseline
                // without `--wait`, and (compose v2) the one with it.
                let sides = if v2 { 3 } else { 2 };
                for i in 0..cycles {
                    let tag = format!("1+{n} {}/{cycles}", i + 1);
                    for k in 0..sides {
                        match (i + k) % sides {
                            0 => r.docker.push(tool_cycle(&ctx, n, Series::Docker, &format!("w{n}_c{i}_docker"), &tag)?),
                            side => {
                                let wait = side == 2;
                                let s = docker_baseline_cycle(&ctx, n, &format!("w{n}_c{i}_dbase{}", u8::from(wait)), wait)?;
                                let how = if wait { "up -d --wait" } else { "up -d, polled" };
                                progress(&format!("bench: [{tag} docker baseline, {how}] up {:.2} s, down -v {:.2} s", s.up, s.stop));
                                if wait { &mut r.docker_baseline } else { &mut r.docker_baseline_polled }.push(s);
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        Err(why) => Err(why.clone()),
    };

    let build = if measure_build {
        progress("bench: clean builds (fresh target dirs, --offline); this takes minutes");
        Some(build::measure(root_ws, &ctx.root.join("build")).map_err(|e| format!("{e:#}")))
    } else {
        None
    };

    let rep = report::Report {
        cycles,
        date: report::utc_now(),
        machine: machine.finish(&ctx.root),
        versions: report::Versions::read(&ctx, citus_version, commit),
        configs: results,
        build,
        docker,
        kept_spent_data: spent.map(|_| ()),
    };
    let text = rep.markdown_results();
    println!("{text}");
    if let Some(dir) = json_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&json_path, serde_json::to_string_pretty(&rep.json())? + "\n").with_context(|| format!("writing {}", json_path.display()))?;
    progress(&format!("bench: wrote {}", json_path.display()));
    if f.write_docs {
        // A run on another file system (`--scratch`) gets its own page beside the default one.
        let page = match &f.scratch {
            None => "benchmarks.md".to_string(),
            Some(dir) => format!("benchmarks-{}.md", report::filesystem_of(dir).split_whitespace().next().unwrap_or("scratch")),
        };
        let doc = root_ws.join("docs").join(page);
        fs::create_dir_all(doc.parent().expect("docs folder"))?;
        fs::write(&doc, rep.markdown_doc()).with_context(|| format!("writing {}", doc.display()))?;
        progress(&format!("bench: wrote {}", doc.display()));
    }
    let failed = rep.targets().iter().filter(|t| t.pass() == Some(false)).count();
    progress(&format!("bench: {failed} target(s) missed"));
    Ok(())
}

/// Per node, what one cycle leaves on disk at most (a template copy is 46 MB, plus WAL).
const NODE_BYTES: u64 = 64 << 20;

/// Decides whether finished cycles' folders are kept (moved to `<root>/spent`) until the
/// end of the run instead of being deleted after each cycle: on an ext4 without a journal
/// (the machine these pages were measured on) every file created within a minute or more of
/// deleting thousands skips each freed inode in turn, so a cycle would pay for the deletions
/// of the ones before it, whoever made them. Kept on every disk file system that has the
/// room (tmpfs has no such cost, and its pages are memory); otherwise deleted as before.
/// Returns the folder to keep it in, or why it is deleted after each cycle instead.
fn keep_spent_data(scratch: &Path, root: &Path, cycles: usize, workers: &[usize]) -> anyhow::Result<Result<PathBuf, String>> {
    if report::filesystem_of(scratch).starts_with("tmpfs") {
        return Ok(Err("the data is on tmpfs, which has no such cost and whose pages are memory".into()));
    }
    // Three series of `cycles`, plus two warm-up cycles, per worker count.
    let need: u64 = workers.iter().map(|&n| (3 * cycles as u64 + 2) * (n as u64 + 1) * NODE_BYTES).sum::<u64>() + (2 << 30);
    let free = procs::free_bytes(scratch).unwrap_or(0);
    if free < need {
        let why = format!(
            "keeping it to the end needs ~{:.1} GiB and {} had {:.1} GiB free",
            need as f64 / f64::from(1u32 << 30),
            scratch.display(),
            free as f64 / f64::from(1u32 << 30)
        );
        progress(&format!("bench: each cycle's data is deleted after it: {why}"));
        return Ok(Err(why));
    }
    let spent = root.join("spent");
    procs::open_dir(&spent)?;
    progress(&format!(
        "bench: each cycle's data is kept in {} until the end of the run (up to ~{:.1} GiB)",
        spent.display(),
        need as f64 / f64::from(1u32 << 30)
    ));
    Ok(Ok(spent))
}

fn parse_workers(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => out.push(n),
            _ => return Err(format!("--workers {s}: expected worker counts from 1 to 64, comma separated (e.g. 2,8)")),
        }
    }
    if out.is_empty() {
        return Err(format!("--workers {s}: no worker count given"));
    }
    Ok(out)
}

/// Fails naming the missing file when Citus is not installed into this PostgreSQL.
fn check_citus(bin_dir: &Path) -> anyhow::Result<()> {
    let pg_config = bin_dir.join("pg_config");
    let libdir = procs::first_line(&pg_config, &["--pkglibdir"]).map(PathBuf::from).or_else(|| Some(bin_dir.parent()?.join("lib")));
    let sharedir = procs::first_line(&pg_config, &["--sharedir"]).map(PathBuf::from);
    let version = procs::first_line(bin_dir.join("postgres"), &["--version"]).unwrap_or_else(|| "PostgreSQL".into());
    let mut wanted: Vec<PathBuf> = libdir.into_iter().map(|d| d.join("citus.so")).collect();
    wanted.extend(sharedir.map(|d| d.join("extension").join("citus.control")));
    for w in wanted {
        if !w.exists() {
            bail!(
                "Citus is not installed into the PostgreSQL at {} ({version}): {} is missing. Install Citus for this PostgreSQL version (packages from Citus's repository, or build it with this pg_config), or set [local] bin_dir to a PostgreSQL that has it",
                bin_dir.display(),
                w.display()
            );
        }
    }
    Ok(())
}

/// Docker is measured only when the config's image is already on this machine (no pulls).
fn docker_status(image: &str) -> Result<(), String> {
    let out = match Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image]).output() {
        Ok(o) => o,
        Err(e) => return Err(format!("docker is not available ({e})")),
    };
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.lines().next().unwrap_or("").trim();
    Err(format!("the config's image `{image}` is not on this machine (`docker image inspect`: {err}); the benchmark never pulls"))
}

impl Ctx {
    /// A generated config for one tool cycle.
    fn config_text(&self, name: &str, series: Series, ports: &[u16], data_dir: &Path) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
        let backend = if series == Series::Docker { "docker" } else { "local" };
        let mut t = format!(
            "# Written by `cargo xtask bench` for one cycle; deleted afterwards.\n\
             name = {}\ndatabase = \"{DATABASE}\"\nuser = \"{USER}\"\npassword_env = \"{PASSWORD_ENV}\"\nbackend = \"{backend}\"\n\n\
             [coordinator]\nname = \"citus_master\"\nhost = \"127.0.0.1\"\nport = {}\n",
            q(name),
            ports[0]
        );
        for (i, p) in ports[1..].iter().enumerate() {
            t.push_str(&format!("\n[[workers]]\nname = \"citus_worker{}\"\nhost = \"127.0.0.1\"\nport = {p}\n", i + 1));
        }
        t.push_str(&format!("\n[docker]\nimage = {}\npg_major = {}\nbind = \"127.0.0.1\"\n", q(&self.docker_image), self.pg_major));
        t.push_str(&format!("\n[local]\ndata_dir = {}\ndev_speed = true\n", q(&data_dir.to_string_lossy())));
        if let Some(b) = &self.configured_bin_dir {
            t.push_str(&format!("bin_dir = {}\n", q(&b.to_string_lossy())));
        }
        t.push_str("\n[wait]\ntimeout_secs = 120\n");
        t
    }

    /// Runs `xtask <args> --config <cfg>` as a measured child; fails with its output's end.
    fn tool(&self, args: &[&str], cfg: &Path) -> anyhow::Result<Measured> {
        let mut c = Command::new(&self.exe);
        c.args(args).arg("--config").arg(cfg).env(PASSWORD_ENV, PASSWORD).env_remove("CITUS_CONFIG");
        let m = procs::run_measured(c)?;
        if !m.status.success() {
            bail!("`xtask {} --config {}` failed ({}):\n    {}", args.join(" "), cfg.display(), m.status, m.tail(30));
        }
        Ok(m)
    }
}

/// One docker baseline cycle on the compose file the tool generates for the same config.
fn docker_baseline_cycle(ctx: &Ctx, workers: usize, label: &str, wait: bool) -> anyhow::Result<baseline::Sample> {
    let dir = ctx.root.join(format!("dbase-{label}"));
    procs::open_dir(&dir)?;
    let _guard = Scratch::new(vec![dir.clone()]);
    let ports = procs::free_ports(workers + 1)?;
    let cfg = dir.join("citus.toml");
    let text = ctx.config_text(&format!("bench_{label}"), Series::Docker, &ports, &dir.join("data"));
    let cluster = citus_config::Cluster::parse(&text, &cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    baseline::docker_cycle(ctx, &cluster, &dir, wait)
}

/// One tool cycle: up, verify, setup, down (timed), then `down --purge` (timed too) unless the
/// run keeps spent data, which then moves aside; on any failure the cluster is purged and
/// every server left below its folders is stopped.
fn tool_cycle(ctx: &Ctx, workers: usize, series: Series, label: &str, tag: &str) -> anyhow::Result<ToolSample> {
    let dir = ctx.root.join(format!("tool-{label}"));
    procs::open_dir(&dir)?;
    let name = format!("bench_{label}");
    let data_dir = if series == Series::Cached { ctx.root.join("cached") } else { dir.join("data") };
    // Docker's volumes are the engine's to delete (`down --purge`); local data is kept
    // until the end of the run when it can be (see `keep_spent_data`), so `down` ends the cycle.
    let keep = series != Series::Docker && ctx.spent.is_some();
    let _guard = Scratch::keep_in(vec![data_dir.join(&name), dir.clone()], if keep { ctx.spent.as_deref() } else { None });
    let ports = procs::free_ports(workers + 1)?;
    let cfg = dir.join("citus.toml");
    fs::write(&cfg, ctx.config_text(&name, series, &ports, &data_dir)).with_context(|| format!("writing {}", cfg.display()))?;
    let backend = if series == Series::Docker { "docker" } else { "local" };
    let short = match series {
        Series::FirstRun => "first run",
        Series::Cached => "cached",
        Series::Docker => "docker",
    };
    let run = || -> anyhow::Result<ToolSample> {
        procs::settle();
        let mut phases = Vec::new();
        let mut up_lines = Vec::new();
        let mut all_pairs = None;
        let mut daemons = None;
        let commands = [&["up", "--backend", backend][..], &["verify"], &["setup"], &["down"], &["down", "--purge"]];
        for (phase, args) in TOOL_PHASES.iter().zip(commands).take(if keep { 4 } else { 5 }) {
            if *phase == "down" && series != Series::Docker {
                let secs = baseline::all_pairs(ctx, &ports, USER, DATABASE)?;
                progress(&format!("bench: [{tag} {short}] bare all-pairs check {secs:.2} s (not the tool)"));
                all_pairs = Some(secs);
                let d = baseline::daemons_connected(ctx, &ports, USER, DATABASE, Some(PASSWORD))?;
                progress(&format!("bench: [{tag} {short}] {} (untimed)", d.describe()));
                daemons = Some(d);
            }
            let m = ctx.tool(args, &cfg)?;
            progress(&format!("bench: [{tag} {short}] {phase} {:.2} s{}", m.secs, m.peak_kib.map_or(String::new(), |k| format!(", peak {k} KiB"))));
            if *phase == "up" {
                up_lines = m.stderr.clone();
            }
            phases.push(Phase { name: phase, secs: m.secs, peak_kib: m.peak_kib });
        }
        Ok(ToolSample { phases, up_lines, all_pairs, daemons })
    };
    let result = run();
    if result.is_err() {
        let _ = ctx.tool(&["down", "--purge"], &cfg);
    }
    result
}
