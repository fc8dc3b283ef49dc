//! Statistics, targets and the outputs of the benchmark: markdown (stdout and
//! docs/benchmarks.md) and JSON. Every number in them comes from the run.

use std::{fmt::Write as _, path::Path, time::SystemTime};

use serde_json::{json, Value};

use super::{baseline, build::BuildTimes, procs, ConfigResult, Ctx, Series, ToolSample, TOOL_PHASES};

/// Median, min and max of some samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

pub(crate) fn stats(samples: impl IntoIterator<Item = f64>) -> Stats {
    let mut v: Vec<f64> = samples.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Stats { median: f64::NAN, min: f64::NAN, max: f64::NAN, n };
    }
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Stats { median, min: v[0], max: v[n - 1], n }
}

fn stats_json(samples: &[f64]) -> Value {
    let s = stats(samples.iter().copied());
    json!({ "median_s": round(s.median), "min_s": round(s.min), "max_s": round(s.max), "n": s.n, "samples_s": samples.iter().map(|x| round(*x)).collect::<Vec<_>>() })
}

/// The untimed waits before the stops, with how many ran out.
fn waits_json(waits: &[baseline::Daemons]) -> Value {
    let mut v = stats_json(&waits.iter().map(|d| d.secs).collect::<Vec<_>>());
    v["ran_out"] = json!(waits.iter().filter(|d| !d.connected).count());
    v
}

/// The phase-table row of the untimed wait before each local stop.
const WAIT_ROW: &str = "wait before the stop until every maintenance daemon has connected (untimed)";

fn round(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 10_000.0).round() / 10_000.0)
    } else {
        Value::Null
    }
}

/// The machine, read from /proc.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    cpus: usize,
    model: String,
    memory: String,
    kernel: String,
    os: String,
    scratch_fs: String,
    /// Time to create one empty file in the scratch folder, before and after the run.
    file_create_before: String,
    file_create_after: String,
    load_before: String,
    load_after: String,
}

impl Machine {
    /// Reads the machine (and its load average before the run); `scratch` is where the data goes.
    pub(crate) fn read(scratch: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model =
            cpuinfo.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string())).unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<f64>().ok())
            .map_or_else(|| "unknown".into(), |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model,
            memory,
            kernel,
            os,
            scratch_fs: format!("{} ({})", scratch.parent().unwrap_or(scratch).display(), filesystem_of(scratch)),
            file_create_before: file_create_cost(scratch, "before"),
            file_create_after: String::new(),
            load_before: loadavg(),
            load_after: String::new(),
        }
    }

    /// Records the load average after the run.
    pub(crate) fn finish(mut self, scratch: &Path) -> Machine {
        self.load_after = loadavg();
        self.file_create_after = file_create_cost(scratch, "after");
        self
    }
}

/// Creates 300 empty files in a fresh folder under `scratch` and reports the time per file.
/// initdb, template copies and `CREATE EXTENSION` are largely file creation, so this number
/// explains much of the spread between machines and folders. The folder is left for the
/// run's own cleanup, so that its deletion does not slow the cycles after it.
fn file_create_cost(scratch: &Path, when: &str) -> String {
    let dir = scratch.join(format!("file-create-check-{when}"));
    if std::fs::create_dir_all(&dir).is_err() {
        return "unknown".into();
    }
    let t0 = std::time::Instant::now();
    for i in 0..300 {
        if std::fs::File::create(dir.join(i.to_string())).is_err() {
            return "unknown".into();
        }
    }
    let per = t0.elapsed().as_secs_f64() * 1000.0 / 300.0;
    format!("{per:.3} ms")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "unknown".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// The type of the filesystem holding `path` (longest mount point that is a prefix of it).
pub(crate) fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 3 || !path.starts_with(f[1]) {
            continue;
        }
        if best.as_ref().is_none_or(|(len, _)| f[1].len() >= *len) {
            // An ext4 with a journal has /proc/fs/jbd2/<device>-8; one without changes how
            // file creation after deletions costs (docs/performance.md).
            let no_journal = f[2] == "ext4" && f[0].rsplit('/').next().is_some_and(|dev| !Path::new(&format!("/proc/fs/jbd2/{dev}-8")).exists());
            best = Some((f[1].len(), format!("{} on {}{}", f[2], f[1], if no_journal { " (no journal)" } else { "" })));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, s)| s)
}

/// Versions of everything measured.
#[derive(Debug, Clone)]
pub(crate) struct Versions {
    postgres: String,
    citus: String,
    rustc: String,
    cargo: String,
    commit: String,
    /// The Docker engine and the compose program the docker cycles used (v1 has no `--wait`).
    docker: String,
}

impl Versions {
    pub(crate) fn read(ctx: &Ctx, citus: Option<String>, commit: String) -> Versions {
        let unknown = || "unknown".to_string();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Versions {
            postgres: procs::first_line(ctx.bin_dir.join("postgres"), &["--version"]).unwrap_or_else(unknown),
            citus: citus.unwrap_or_else(unknown),
            rustc: procs::first_line(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()), &["--version"]).unwrap_or_else(unknown),
            cargo: procs::first_line(cargo, &["--version"]).unwrap_or_else(unknown),
            commit,
            docker: docker_versions(),
        }
    }
}

/// "engine 20.10.24; `docker compose` 2.26.1", or why there is none.
fn docker_versions() -> String {
    let engine = procs::first_line("docker", &["version", "--format", "{{.Server.Version}}"]).unwrap_or_else(|| "no engine answered".into());
    let compose = match citus_io::docker::compose_program() {
        Ok(program) => {
            let (exe, pre) = program.split_first().expect("compose_program returns a program");
            let args: Vec<&str> = pre.iter().map(String::as_str).chain(["version", "--short"]).collect();
            let name = if pre.is_empty() { "`docker-compose`" } else { "`docker compose`" };
            format!("{name} {}", procs::first_line(exe, &args).unwrap_or_else(|| "(version unknown)".into()))
        }
        Err(_) => "no compose".into(),
    };
    format!("engine {engine}; {compose}")
}

/// The workspace's commit, with "+ uncommitted changes" when tracked files differ from it
/// (the binary measured is then not that commit's); "unknown" outside a git checkout.
pub(crate) fn commit_of(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => "unknown".to_string(),
        Some(head) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if changes.is_empty() => head,
            Some(_) => format!("{head} + uncommitted changes"),
            None => head,
        },
    }
}

/// A performance target: a ratio of medians and its limit.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) what: String,
    pub(crate) tool_s: f64,
    pub(crate) reference: &'static str,
    pub(crate) reference_s: f64,
    pub(crate) limit: Option<f64>,
}

impl Target {
    pub(crate) fn ratio(&self) -> f64 {
        self.tool_s / self.reference_s
    }
    /// None when there is no limit for this size.
    pub(crate) fn pass(&self) -> Option<bool> {
        self.limit.map(|l| self.ratio() <= l)
    }
}

/// The whole run.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) cycles: usize,
    pub(crate) date: String,
    pub(crate) machine: Machine,
    pub(crate) versions: Versions,
    pub(crate) configs: Vec<ConfigResult>,
    /// None: not asked for; Err: why it could not be measured.
    pub(crate) build: Option<Result<BuildTimes, String>>,
    /// Err: why docker was not measured.
    pub(crate) docker: Result<(), String>,
    /// Whether finished cycles' local data was kept until the end (Ok), or why it was
    /// deleted after each cycle.
    pub(crate) kept_spent_data: Result<(), String>,
}

fn tool_secs<'a>(samples: impl IntoIterator<Item = &'a ToolSample>, phase: &'a str) -> Vec<f64> {
    samples.into_iter().map(|s| s.secs(phase)).collect()
}

fn all_pairs_secs<'a>(samples: impl IntoIterator<Item = &'a ToolSample>) -> Vec<f64> {
    samples.into_iter().filter_map(|s| s.all_pairs).collect()
}

/// The untimed waits for the maintenance daemons before the stops of these cycles.
fn daemon_waits(waits: impl IntoIterator<Item = Option<baseline::Daemons>>) -> Vec<baseline::Daemons> {
    waits.into_iter().flatten().collect()
}

fn median(v: &[f64]) -> f64 {
    stats(v.iter().copied()).median
}

fn secs(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "-".into()
    }
}

fn kib(k: Option<u64>) -> String {
    k.map_or_else(|| "-".into(), |k| format!("{k} KiB ({:.1} MiB)", k as f64 / 1024.0))
}

fn peak(samples: &[ToolSample], phase: &str) -> Option<u64> {
    samples.iter().flat_map(|s| s.phases.iter()).filter(|p| p.name == phase).filter_map(|p| p.peak_kib).max()
}

impl Report {
    /// The targets of the issue, per worker count.
    pub(crate) fn targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for c in &self.configs {
            let n = c.workers;
            let base_up = median(&c.baseline.iter().map(|s| s.up).collect::<Vec<_>>());
            let base_stop = median(&c.baseline.iter().map(|s| s.stop).collect::<Vec<_>>());
            let first_up = median(&tool_secs(&c.first_run, "up"));
            let cold_up = median(&tool_secs(&c.cached, "up"));
            let both = || c.first_run.iter().chain(c.cached.iter());
            let (first_limit, cached_limit) = match n {
                2 => (Some(1.10), Some(0.60)),
                8 => (Some(1.10), Some(1.10)),
                _ => (None, None),
            };
            out.push(Target {
                what: format!("1+{n}: `up`, first run ever (no initdb template)"),
                tool_s: first_up,
                reference: "baseline up",
                reference_s: base_up,
                limit: first_limit,
            });
            out.push(Target {
                what: format!("1+{n}: `up`, template cached"),
                tool_s: cold_up,
                reference: "baseline up",
                reference_s: base_up,
                limit: cached_limit,
            });
            out.push(Target {
                what: format!("1+{n}: `setup` on the ready cluster"),
                tool_s: median(&tool_secs(both(), "setup")),
                reference: "cold up",
                reference_s: cold_up,
                limit: Some(0.05),
            });
            out.push(Target {
                what: format!("1+{n}: `verify`"),
                tool_s: median(&tool_secs(both(), "verify")),
                reference: "cold up",
                reference_s: cold_up,
                limit: Some(0.25),
            });
            // Against the faster of the docker baselines (with and without `--wait`).
            let docker_base = [&c.docker_baseline, &c.docker_baseline_polled]
                .into_iter()
                .filter(|b| !b.is_empty())
                .map(|b| median(&b.iter().map(|s| s.up).collect::<Vec<_>>()))
                .min_by(f64::total_cmp);
            if let (false, Some(reference_s)) = (c.docker.is_empty(), docker_base) {
                out.push(Target {
                    what: format!("1+{n}, docker: `up` + `verify`"),
                    tool_s: median(&c.docker.iter().map(|s| s.secs("up") + s.secs("verify")).collect::<Vec<_>>()),
                    reference: "faster docker baseline up",
                    reference_s,
                    limit: Some(1.10),
                });
            }
            out.push(Target {
                what: format!("1+{n}: `down`"),
                tool_s: median(&tool_secs(both(), "down")),
                reference: "baseline stop",
                reference_s: base_stop,
                limit: Some(1.50),
            });
        }
        // The medians of this run's clean builds (`build::ROUNDS` of each).
        if let Some(Ok(b)) = &self.build {
            out.push(Target {
                what: "clean build of `xtask` (`cargo build -p xtask`)".into(),
                tool_s: b.xtask.secs(),
                reference: "build of the postgres-only crate",
                reference_s: b.postgres_only.secs(),
                limit: Some(1.50),
            });
        }
        out
    }

    fn targets_table(&self) -> String {
        let mut t = String::from("| target | tool, median s | reference | reference, median s | ratio | limit | result |\n|---|---:|---|---:|---:|---:|---|\n");
        for x in self.targets() {
            let result = match x.pass() {
                Some(true) => "pass",
                Some(false) => "**FAIL**",
                None => "(no target)",
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {:.3} | {} | {result} |",
                x.what,
                secs(x.tool_s),
                x.reference,
                secs(x.reference_s),
                x.ratio(),
                x.limit.map_or_else(|| "-".into(), |l| format!("≤ {l:.2}"))
            );
        }
        t
    }

    /// How many stops went ahead before every maintenance daemon had connected.
    fn daemons_ran_out(&self) -> usize {
        self.configs
            .iter()
            .flat_map(|c| c.baseline.iter().map(|s| s.daemons).chain(c.first_run.iter().chain(c.cached.iter()).map(|s| s.daemons)))
            .flatten()
            .filter(|d| !d.connected)
            .count()
    }

    fn phases_table(&self, c: &ConfigResult) -> String {
        let mut t = String::from("| side | phase | median s | min s | max s | n | tool's peak memory (max) |\n|---|---|---:|---:|---:|---:|---:|\n");
        let mut row = |side: &str, phase: &str, v: &[f64], mem: String| {
            let s = stats(v.iter().copied());
            let _ = writeln!(t, "| {side} | {phase} | {} | {} | {} | {} | {mem} |", secs(s.median), secs(s.min), secs(s.max), s.n);
        };
        row("baseline", "up", &c.baseline.iter().map(|s| s.up).collect::<Vec<_>>(), "".into());
        row("baseline", "stop (immediate)", &c.baseline.iter().map(|s| s.stop).collect::<Vec<_>>(), "".into());
        let waits = daemon_waits(c.baseline.iter().map(|s| s.daemons));
        if !waits.is_empty() {
            row("baseline", WAIT_ROW, &waits.iter().map(|d| d.secs).collect::<Vec<_>>(), "".into());
        }
        for (side, samples) in [("docker baseline, `up -d --wait`", &c.docker_baseline), ("docker baseline, `up -d`, polled", &c.docker_baseline_polled)] {
            if !samples.is_empty() {
                row(side, "up", &samples.iter().map(|s| s.up).collect::<Vec<_>>(), "".into());
                row(side, "stop (`down -v`)", &samples.iter().map(|s| s.stop).collect::<Vec<_>>(), "".into());
            }
        }
        for series in [Series::FirstRun, Series::Cached, Series::Docker] {
            let samples = c.series(series);
            if samples.is_empty() {
                continue;
            }
            for phase in TOOL_PHASES {
                let v = tool_secs(samples, phase);
                if stats(v.iter().copied()).n == 0 {
                    continue; // `down --purge` is not run when the run keeps spent data
                }
                let label = if phase == "purge" { "down --purge (no target)" } else { phase };
                row(series.title(), label, &v, kib(peak(samples, phase)));
            }
            let pairs = all_pairs_secs(samples);
            if !pairs.is_empty() {
                row(series.title(), "bare all-pairs check (psql, not the tool)", &pairs, "".into());
            }
            let waits = daemon_waits(samples.iter().map(|s| s.daemons));
            if !waits.is_empty() {
                row(series.title(), WAIT_ROW, &waits.iter().map(|d| d.secs).collect::<Vec<_>>(), "".into());
            }
        }
        t
    }

    /// The bare all-pairs check against the verify target's budget, per cluster size.
    fn all_pairs_section(&self) -> String {
        let mut t = String::new();
        for c in &self.configs {
            let pairs = all_pairs_secs(c.first_run.iter().chain(c.cached.iter()));
            if pairs.is_empty() {
                continue;
            }
            let nodes = c.workers + 1;
            let floor = median(&pairs);
            let cold_up = median(&tool_secs(&c.cached, "up"));
            let verify = median(&tool_secs(c.first_run.iter().chain(c.cached.iter()), "verify"));
            let share = floor / cold_up;
            let spread = stats(pairs.iter().copied());
            let _ = writeln!(
                t,
                "- 1+{}: {} connections, median {} s ({} to {} s), {:.1}% of the cold up; the tool's whole `verify` took {:.2}x that.{}",
                c.workers,
                nodes * (nodes - 1),
                secs(floor),
                secs(spread.min),
                secs(spread.max),
                share * 100.0,
                verify / floor,
                if share > 0.25 {
                    " The check alone is over the 25% that `verify` may take, so no `verify` that checks every pair meets that target here."
                } else {
                    ""
                }
            );
        }
        if t.is_empty() {
            return t;
        }
        format!(
            "## What `verify` cannot do without\n\n\
             `verify` checks that every node reaches every other one (the pairs of `citus_check_cluster_node_health()`, \
             less each node's connection to itself). Each pair is a new connection between two nodes: a backend with Citus \
             loaded, TLS and a SCRAM login (the tool's verifiers have 16 rounds, `[local] scram_iterations`; PostgreSQL's \
             default is 4096). The row \"bare all-pairs check\" in the phase tables below is that check alone, \
             as a bare script does it on the same cluster once the tool's `setup` has run: one `psql` per node, all at once, \
             each calling `citus_check_connection_to_node` for every other node in one session. The tool's `verify` does the \
             same pairs (its round trip's connections serve the coordinator's) plus its other checks and the distributed \
             round trip.\n\n{t}\n"
        )
    }

    /// The peak memory of the tool's process over every phase of every series.
    fn peak_overall(&self) -> Option<(u64, String)> {
        let mut best: Option<(u64, String)> = None;
        for c in &self.configs {
            for series in [Series::FirstRun, Series::Cached, Series::Docker] {
                for phase in TOOL_PHASES {
                    if let Some(k) = peak(c.series(series), phase) {
                        if best.as_ref().is_none_or(|(b, _)| k > *b) {
                            best = Some((k, format!("`{}` of 1+{}, {}", if phase == "purge" { "down --purge" } else { phase }, c.workers, series.title())));
                        }
                    }
                }
            }
        }
        best
    }

    /// The progress lines of the median cycle's `up`, with their times.
    fn timeline(samples: &[ToolSample]) -> Option<(f64, String)> {
        let mut idx: Vec<usize> = (0..samples.len()).collect();
        idx.sort_by(|a, b| samples[*a].secs("up").total_cmp(&samples[*b].secs("up")));
        let s = &samples[*idx.get((idx.len().checked_sub(1)?) / 2)?];
        let mut text = String::new();
        for (t, line) in &s.up_lines {
            let _ = writeln!(text, "{t:>7.3} s  {}", line.trim());
        }
        let _ = writeln!(text, "{:>7.3} s  (exit)", s.secs("up"));
        Some((s.secs("up"), text))
    }

    fn build_section(&self) -> String {
        match &self.build {
            None => "Not measured in this run (`--write-docs` or `CITUS_BENCH_BUILD=1` measures it).\n".into(),
            Some(Err(e)) => format!("Not measured: {e}\n"),
            Some(Ok(b)) => {
                let mut t = format!(
                    "Clean builds in the dev profile (this workspace's `[profile.*]` tables, copied into the postgres-only crate: `debug = 0`, no incremental cache, the password-hashing crates at `opt-level = 3` without debug assertions), {} of each in the order postgres-only, xtask, xtask, postgres-only, each into a fresh target folder, `--offline` from the local registry cache, {} parallel jobs:\n\n\
                     | build | median s | each build, in order, s | crates compiled |\n|---|---:|---|---:|\n",
                    crate::build::ROUNDS,
                    b.jobs
                );
                let each = |b: &crate::build::Build| b.samples.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>().join(", ");
                let _ =
                    writeln!(t, "| `cargo build -p xtask` (a user's first `cargo xtask`) | {:.1} | {} | {} |", b.xtask.secs(), each(&b.xtask), b.xtask.crates);
                let _ = writeln!(
                    t,
                    "| empty crate depending only on `postgres` ({}) | {:.1} | {} | {} |",
                    b.postgres_version,
                    b.postgres_only.secs(),
                    each(&b.postgres_only),
                    b.postgres_only.crates
                );
                let _ = writeln!(t, "\nxtask / empty crate: {:.2}x the time.", b.xtask.secs() / b.postgres_only.secs());
                t
            }
        }
    }

    /// The results as markdown: targets, phases, memory, builds, docker (printed to stdout).
    pub(crate) fn markdown_results(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "## Targets\n\nRatios of medians over {} cycle(s) per series (the clean builds, when measured: {} of each). \"Cold up\" is the tool's `up` of a new cluster with the template cached.\n",
            self.cycles,
            crate::build::ROUNDS
        );
        t.push_str(&self.targets_table());
        let failed = self.targets().iter().filter(|x| x.pass() == Some(false)).count();
        let total = self.targets().iter().filter(|x| x.pass().is_some()).count();
        let _ = writeln!(t, "\n{} of {total} targets met.\n", total - failed);
        let ran_out = self.daemons_ran_out();
        if ran_out > 0 {
            let _ = writeln!(
                t,
                "In {ran_out} local cycle(s) the Citus maintenance daemons had not all connected to every node within {} s; those stops went ahead, on a cluster in another state than the others'.\n",
                baseline::DAEMONS_TIMEOUT.as_secs()
            );
        }
        t.push_str(&self.all_pairs_section());
        for c in &self.configs {
            let _ = writeln!(t, "## Phases, 1 coordinator + {} workers (seconds)\n", c.workers);
            t.push_str(&self.phases_table(c));
            t.push('\n');
        }
        t.push_str("## Peak memory of the tool's process\n\n");
        match self.peak_overall() {
            Some((k, where_)) => {
                let _ = writeln!(t, "{} at most, in {where_} (the other phases: last column of the tables above).\n", kib(Some(k)));
            }
            None => t.push_str("Not measured (no /proc?).\n\n"),
        }
        t.push_str("## Clean build of xtask\n\n");
        t.push_str(&self.build_section());
        t.push_str("\n## Docker backend\n\n");
        match &self.docker {
            Ok(()) => t.push_str("Measured: the `docker baseline` and `tool, docker backend` rows above, and the docker targets.\n"),
            Err(why) => {
                let _ = writeln!(t, "Not measured: {why}.");
            }
        }
        t
    }

    /// docs/benchmarks.md.
    pub(crate) fn markdown_doc(&self) -> String {
        let m = &self.machine;
        let v = &self.versions;
        let mut t = String::new();
        t.push_str(
            "# Benchmarks\n\n\
             <!-- Generated by `cargo xtask bench --write-docs`. Do not edit by hand: every number below comes from that run; re-run it to refresh this file. -->\n\n\
             `cargo xtask bench` times the tool against a bare baseline and checks the performance targets. Run it with\n\n\
             ```sh\ncargo xtask bench --cycles 5 --write-docs\n```\n\n\
             `--workers 2,8` picks the cluster sizes (1 coordinator + N workers), `--json PATH` where the JSON results go \
             (default `target/bench.json`), and `--write-docs` rewrites this file and adds the clean-build measurement \
             (`CITUS_BENCH_BUILD=1` adds it without rewriting the file). It needs PostgreSQL with Citus installed on the machine; \
             as root, the servers run as the `postgres` OS user. Everything happens in `target/citus-bench-<pid>` (the workspace's \
             file system, where the default data folder `.citus-data` lives; `--scratch DIR` picks another, and with \
             `--write-docs` such a run writes `docs/benchmarks-<file system>.md` instead of this file) on free loopback \
             ports and is deleted afterwards, servers included, also when a cycle fails.\n\n\
             ## What is measured\n\n\
             For each cluster size, cycles of three kinds alternate, their order rotating from one cycle to the next so that \
             machine noise hits every side alike:\n\n\
             - **baseline**: what a bare shell script does with the same binaries. Per node, in parallel: \
             `initdb --no-sync --auth=trust`, `shared_preload_libraries = 'citus'` and `fsync = off` appended to postgresql.conf, \
             `pg_ctl -w start`, `psql -c 'CREATE EXTENSION citus'`; then one `psql` on the coordinator with one `citus_add_node` \
             per worker. Its `CREATE EXTENSION citus` finds `ssl` off, so Citus turns it on and makes the node an RSA-2048 \
             certificate, as it does on any such server. Its stop is `pg_ctl -m immediate -w stop` per node, in parallel \
             (after the untimed wait below).\n\
             - **tool, first run (no template)**: `up --backend local`, then `verify`, `setup` again on the ready cluster, and \
             `down`, in a fresh data folder, so that `up` first creates its initdb template, as on the first run ever on a machine.\n\
             - **tool, template cached**: the same in a data folder shared by the cycles (a new cluster each cycle), so that \
             `up` copies the cached template. In both, `up` gives each new node its own TLS certificate (`openssl`, P-256) and \
             starts it with `ssl` on, so Citus makes none (docs/performance.md).\n\
             - **docker baseline** and **tool, docker backend** (when the image, `--image` or the config's, is on the machine; \
             the benchmark never pulls), alternating: the baseline brings up the compose file the tool generates for the same \
             config with `compose up -d`, in one series with `--wait` (compose v2 only: every container's healthcheck, one \
             every ",
        );
        t.push_str(citus_compose::HEALTH_INTERVAL);
        t.push_str(
            ", must pass) and in the other without, polls `pg_isready` on every client port by \
             hand every 50 ms and then logs in, runs `CREATE EXTENSION citus` and stores the inter-node password in `pg_dist_authinfo` on every node, \
             then `citus_add_node` per worker by service name; its stop \
             is `compose down -v`. The tool side is `up --backend docker`, `verify`, `setup`, `down`, `down --purge`, and its \
             target compares `up` + `verify` with the faster of the two baselines' median up. The tool's `up` gives each new container its own P-256 \
             certificate before its `CREATE EXTENSION citus`, where the baseline's nodes get Citus's RSA-2048 one; an image \
             that creates the extension at its first start (as the citusdata images do) has Citus's on both sides. One tool warm-up cycle per size is not counted.\n\n\
             In each local tool cycle, between the tool's `setup` and its `down`, the benchmark also times the all-pairs \
             check alone as a bare script does it (\"What `verify` cannot do without\" below); it is not a phase of the tool.\n\n\
             ",
        );
        let _ = write!(
            t,
            "Before each local stop, the baseline's and the tool's `down`, the benchmark waits (untimed) until every node \
             in the coordinator's `pg_dist_node` has a connection from each other node's Citus maintenance daemon and no other \
             of Citus's inter-node connections (client backends named `citus_internal gpid=…`; each round asks every node once, \
             then sleeps 50 ms; at most {} s). A new cluster has none of them right \
             after its last `citus_add_node`; each daemon opens them at its first distributed deadlock detection after that \
             (every 2 s by default) and keeps them, and a stop, clean or immediate, has to end them too: on 1 + 8, 72 \
             backends in the tool's cluster and 64 in the baseline's, whose coordinator is not in `pg_dist_node` (it runs no \
             `citus_set_coordinator_host`), so that no daemon connects to it. Without the wait the baseline \
             stopped its cluster before they existed and the tool's `down`, after `verify`, `setup` and the bare check, \
             after most of them did, and while the bare check's sessions were still ending: two different clusters \
             (docs/performance.md).\n\n\
             Every tool cycle starts from nothing. ",
            baseline::DAEMONS_TIMEOUT.as_secs()
        );
        match &self.kept_spent_data {
            Ok(()) => t.push_str(
                "Local cycles end with `down`; their data folders (the baseline's too) are then moved aside, untimed, and deleted \
                 together at the end of the run, so no cycle creates its files right after another deleted thousands: on an ext4 \
                 without a journal, such as the one below, each new file would skip every inode freed in the last minute or more. \
                 Docker cycles end with `down --purge` (timed, no target). ",
            ),
            Err(why) => {
                let _ = write!(t, "Tool cycles end with `down --purge` (timed, no target), and each cycle's folders are deleted after it ({why}). ");
            }
        }
        t.push_str(
            "Before every cycle, of every side, the benchmark runs `sync` (untimed), so that no cycle is timed while the kernel writes out what the cycle before it left in memory. The tool runs \
             as a child process: the xtask binary itself, as `cargo xtask` builds it (dev profile; `cargo xtask bench` passes its own path to the benchmark crate), without cargo's own start-up. \
             One warm-up cycle of the baseline and one of the cached tool precede each size and are not counted. Times are \
             wall-clock seconds from spawning a command to its exit; ratios are ratios of medians.\n\n\
             The tool's `up` does more than the baseline: it creates a login role with a SCRAM password (16 rounds) and the database \
             `commcare_ucr_citus` on every node, installs citus there, stores the inter-node password, sets the coordinator host \
             and waits for real logins. Its `down` is a clean (\"fast\") shutdown with a checkpoint; the baseline's stop is an \
             immediate one (no checkpoint). The peak memory is the tool process's own high-water mark (`VmHWM` in \
             /proc/PID/status, sampled while it runs), not its children's or the servers'.\n\n",
        );
        t.push_str("## Machine and versions\n\n");
        let _ = writeln!(t, "| | |\n|---|---|");
        let _ = writeln!(t, "| date | {} |", self.date);
        let _ = writeln!(t, "| CPU | {} × {} |", m.cpus, m.model);
        let _ = writeln!(t, "| memory | {} |", m.memory);
        let _ = writeln!(t, "| OS | {}, Linux {} |", m.os, m.kernel);
        let _ = writeln!(t, "| data folders | {} |", m.scratch_fs);
        let _ = writeln!(t, "| creating an empty file there | {} before the run, {} after |", m.file_create_before, m.file_create_after);
        let _ = writeln!(t, "| load average (1, 5, 15 min) | before: {}; after: {} |", m.load_before, m.load_after);
        let _ = writeln!(t, "| PostgreSQL | {} |", v.postgres);
        let _ = writeln!(t, "| Citus | {} |", v.citus);
        let _ = writeln!(t, "| Rust | {}; {} |", v.rustc, v.cargo);
        let _ = writeln!(t, "| Docker | {} |", v.docker);
        let _ = writeln!(t, "| commit | {} |", v.commit);
        let _ = writeln!(t, "| cycles per series | {} |\n", self.cycles);
        t.push_str(&self.markdown_results());
        t.push_str("\n## Where `up` spends its time\n\nThe progress lines of the median cycle's `up`, with the time since it was spawned.\n");
        for c in &self.configs {
            for series in [Series::FirstRun, Series::Cached] {
                if let Some((total, lines)) = Self::timeline(c.series(series)) {
                    let _ = write!(t, "\n<details><summary>1+{}, {}: {total:.3} s</summary>\n\n```text\n{lines}```\n\n</details>\n", c.workers, series.title());
                }
            }
        }
        t
    }

    pub(crate) fn json(&self) -> Value {
        let m = &self.machine;
        let v = &self.versions;
        let configs: Vec<Value> = self
            .configs
            .iter()
            .map(|c| {
                let mut o = serde_json::Map::new();
                o.insert("workers".into(), json!(c.workers));
                o.insert(
                    "baseline".into(),
                    json!({
                        "up": stats_json(&c.baseline.iter().map(|s| s.up).collect::<Vec<_>>()),
                        "stop": stats_json(&c.baseline.iter().map(|s| s.stop).collect::<Vec<_>>()),
                        "daemons_wait": waits_json(&daemon_waits(c.baseline.iter().map(|s| s.daemons))),
                    }),
                );
                for (key, samples) in [("docker_baseline", &c.docker_baseline), ("docker_baseline_polled", &c.docker_baseline_polled)] {
                    if !samples.is_empty() {
                        o.insert(
                            key.into(),
                            json!({
                                "up": stats_json(&samples.iter().map(|s| s.up).collect::<Vec<_>>()),
                                "stop": stats_json(&samples.iter().map(|s| s.stop).collect::<Vec<_>>()),
                            }),
                        );
                    }
                }
                for series in [Series::FirstRun, Series::Cached, Series::Docker] {
                    let samples = c.series(series);
                    if samples.is_empty() {
                        continue;
                    }
                    let mut s = serde_json::Map::new();
                    for phase in TOOL_PHASES {
                        let v = tool_secs(samples, phase);
                        if stats(v.iter().copied()).n == 0 {
                            continue;
                        }
                        let mut p = stats_json(&v);
                        let peaks: Vec<Value> = samples.iter().map(|x| json!(x.phases.iter().find(|q| q.name == phase).and_then(|q| q.peak_kib))).collect();
                        p["peak_kib"] = json!(peaks);
                        s.insert(phase.into(), p);
                    }
                    let pairs = all_pairs_secs(samples);
                    if !pairs.is_empty() {
                        s.insert("bare_all_pairs_check".into(), stats_json(&pairs));
                    }
                    let waits = daemon_waits(samples.iter().map(|s| s.daemons));
                    if !waits.is_empty() {
                        s.insert("daemons_wait".into(), waits_json(&waits));
                    }
                    o.insert(series.key().into(), Value::Object(s));
                }
                Value::Object(o)
            })
            .collect();
        let targets: Vec<Value> = self
            .targets()
            .iter()
            .map(|x| json!({ "what": x.what, "tool_median_s": round(x.tool_s), "reference": x.reference, "reference_median_s": round(x.reference_s), "ratio": round(x.ratio()), "limit": x.limit, "pass": x.pass() }))
            .collect();
        let build = match &self.build {
            None => json!({ "measured": false, "why": "not asked for (--write-docs or CITUS_BENCH_BUILD=1)" }),
            Some(Err(e)) => json!({ "measured": false, "why": e }),
            Some(Ok(b)) => json!({
                "measured": true,
                "profile": "dev",
                "jobs": b.jobs,
                "xtask": { "seconds": round(b.xtask.secs()), "samples": b.xtask.samples.iter().map(|s| round(*s)).collect::<Vec<_>>(), "crates": b.xtask.crates },
                "postgres_only": { "seconds": round(b.postgres_only.secs()), "samples": b.postgres_only.samples.iter().map(|s| round(*s)).collect::<Vec<_>>(), "crates": b.postgres_only.crates, "postgres_version": b.postgres_version },
                "ratio": round(b.xtask.secs() / b.postgres_only.secs()),
            }),
        };
        let docker = match &self.docker {
            Ok(()) => json!({ "measured": true }),
            Err(why) => json!({ "measured": false, "why": why }),
        };
        let peak = self.peak_overall();
        json!({
            "date": self.date,
            "cycles": self.cycles,
            "machine": { "cpus": m.cpus, "model": m.model, "memory": m.memory, "os": m.os, "kernel": m.kernel, "data_folders": m.scratch_fs, "file_create_before": m.file_create_before, "file_create_after": m.file_create_after, "load_before": m.load_before, "load_after": m.load_after },
            "versions": { "postgres": v.postgres, "citus": v.citus, "rustc": v.rustc, "cargo": v.cargo, "commit": v.commit, "docker": v.docker },
            "configs": configs,
            "targets": targets,
            "peak_memory_kib": peak.as_ref().map(|(k, _)| *k),
            "peak_memory_where": peak.map(|(_, w)| w),
            "build": build,
            "docker": docker,
        })
    }
}

/// The current time in UTC, `YYYY-MM-DD HH:MM UTC`, without a date crate.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Build;

    fn report(build: Option<Result<BuildTimes, String>>) -> Report {
        let s = String::new;
        Report {
            cycles: 1,
            date: s(),
            machine: Machine {
                cpus: 2,
                model: s(),
                memory: s(),
                kernel: s(),
                os: s(),
                scratch_fs: s(),
                file_create_before: s(),
                file_create_after: s(),
                load_before: s(),
                load_after: s(),
            },
            versions: Versions { postgres: s(), citus: s(), rustc: s(), cargo: s(), commit: s(), docker: s() },
            configs: Vec::new(),
            build,
            docker: Err("not measured".into()),
            kept_spent_data: Ok(()),
        }
    }

    fn builds(xtask: f64, postgres_only: f64) -> Option<Result<BuildTimes, String>> {
        let b = |secs| Build { samples: vec![secs, secs], crates: 1 };
        Some(Ok(BuildTimes { xtask: b(xtask), postgres_only: b(postgres_only), postgres_version: "0.19".into(), jobs: 2 }))
    }

    /// Both sides' untimed waits for the maintenance daemons are in the phase tables and the
    /// JSON, and a stop that went ahead before every daemon had connected is named under the targets.
    #[test]
    fn the_wait_before_each_stop_is_shown_and_a_wait_that_ran_out_is_named() {
        let sample = |secs, connected| baseline::Sample { up: 1.0, stop: 0.1, citus_version: None, daemons: Some(baseline::Daemons { secs, connected }) };
        let mut r = report(None);
        r.configs.push(ConfigResult { workers: 2, baseline: vec![sample(0.5, true), sample(10.2, false), sample(0.7, true)], ..ConfigResult::default() });
        let tool = |secs, connected| ToolSample {
            phases: vec![crate::Phase { name: "down", secs: 0.2, peak_kib: None }],
            up_lines: Vec::new(),
            all_pairs: Some(0.1),
            daemons: Some(baseline::Daemons { secs, connected }),
        };
        r.configs[0].cached = vec![tool(0.4, true), tool(10.1, false)];
        let md = r.markdown_results();
        assert!(md.contains(&format!("| baseline | {WAIT_ROW} | 0.700 | 0.500 | 10.200 | 3 |  |")), "{md}");
        assert!(md.contains(&format!("| tool, template cached | {WAIT_ROW} | 5.250 | 0.400 | 10.100 | 2 |  |")), "{md}");
        assert!(md.contains("In 2 local cycle(s) the Citus maintenance daemons had not all connected to every node within 10 s"), "{md}");
        let json = r.json();
        assert_eq!(json["configs"][0]["baseline"]["daemons_wait"]["ran_out"], 1);
        assert_eq!(json["configs"][0]["tool_cached"]["daemons_wait"]["ran_out"], 1, "{json}");
        r.configs[0].baseline.remove(1);
        r.configs[0].cached.remove(1);
        assert!(!r.markdown_results().contains("had not all connected"));
    }

    /// The docker target is judged against the faster of the two docker baselines (with and
    /// without `--wait`), and both are in the phase tables and the JSON.
    #[test]
    fn the_docker_target_is_judged_against_the_faster_baseline() {
        let base = |up| baseline::Sample { up, stop: 1.0, citus_version: None, daemons: None };
        let phase = |name, secs| crate::Phase { name, secs, peak_kib: None };
        let tool = ToolSample { phases: vec![phase("up", 19.0), phase("verify", 2.0)], up_lines: Vec::new(), all_pairs: None, daemons: None };
        let mut r = report(None);
        r.configs.push(ConfigResult {
            workers: 8,
            docker: vec![tool.clone(), tool],
            docker_baseline: vec![base(30.0), base(32.0)],
            docker_baseline_polled: vec![base(21.0), base(19.0)],
            ..ConfigResult::default()
        });
        let docker = |r: &Report| -> Vec<Target> { r.targets().into_iter().filter(|t| t.what.contains("docker")).collect() };
        let judged = |r: &Report| docker(r).iter().map(|t| (t.tool_s, t.reference_s, t.pass())).collect::<Vec<_>>();
        assert_eq!(judged(&r), [(21.0, 20.0, Some(true))], "the polled baseline is the faster");
        r.configs[0].docker_baseline_polled = vec![base(18.0)];
        assert_eq!(judged(&r), [(21.0, 18.0, Some(false))], "21 s against 18 s");
        // The `--wait` one is the faster.
        r.configs[0].docker_baseline = vec![base(17.0), base(21.0)];
        r.configs[0].docker_baseline_polled = vec![base(25.0)];
        assert_eq!(judged(&r), [(21.0, 19.0, Some(false))]);
        r.configs[0].docker_baseline = vec![base(30.0), base(32.0)];
        r.configs[0].docker_baseline_polled = vec![base(19.0)];
        let md = r.markdown_results();
        assert!(md.contains("| docker baseline, `up -d --wait` | up | 31.000 | 30.000 | 32.000 | 2 |  |"), "{md}");
        assert!(md.contains("| docker baseline, `up -d`, polled | up | 19.000 | 19.000 | 19.000 | 1 |  |"), "{md}");
        let json = r.json();
        assert_eq!(json["configs"][0]["docker_baseline_polled"]["up"]["n"], 1, "{json}");
        assert_eq!(json["configs"][0]["docker_baseline"]["up"]["n"], 2, "{json}");
        // Compose v1 has no `--wait`: the polled baseline alone.
        r.configs[0].docker_baseline.clear();
        r.configs[0].docker_baseline_polled = vec![base(21.0)];
        assert_eq!(judged(&r), [(21.0, 21.0, Some(true))]);
        assert!(!r.markdown_results().contains("`up -d --wait`"));
        // Without docker samples, no docker target.
        r.configs[0].docker.clear();
        assert!(docker(&r).is_empty());
    }

    /// The clean build is one of the issue's targets: a run that measured it judges it, counts
    /// it in "N of M targets met", and a build over 1.5x is a miss, not a footnote.
    #[test]
    fn the_clean_build_is_judged_against_its_limit() {
        let over = report(builds(14.5, 9.3)).targets();
        assert_eq!(over.len(), 1);
        assert_eq!((over[0].limit, over[0].pass()), (Some(1.50), Some(false)));
        assert!(report(builds(13.9, 9.3)).targets()[0].pass() == Some(true));
        let md = report(builds(14.5, 9.3)).markdown_results();
        assert!(
            md.contains("| clean build of `xtask` (`cargo build -p xtask`) | 14.500 | build of the postgres-only crate | 9.300 | 1.559 | ≤ 1.50 | **FAIL** |"),
            "{md}"
        );
        assert!(md.contains("0 of 1 targets met."), "{md}");
        // Not measured, or failed: no target, so nothing is judged on a number that is not there.
        assert!(report(None).targets().is_empty());
        assert!(report(Some(Err("no cargo".into()))).targets().is_empty());
    }
}
