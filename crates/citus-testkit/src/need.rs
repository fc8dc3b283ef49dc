//! What a test needs (PostgreSQL, Citus, Docker), how each need is detected, and the skip-or-panic decision.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{run_with_timeout, RunError};

/// The environment variable that turns skips into panics for the needs it lists.
pub const REQUIRE_VAR: &str = "CITUS_XTASK_REQUIRE";

/// The environment variable naming a file to which every skip appends one line.
///
/// cargo-nextest keeps the output of a passing test to itself, and a skipped
/// test passes, so under nextest the `==== SKIPPED` block on stderr is never
/// shown. `ci/test.sh` sets this to a file of its own and prints what the
/// tests wrote there after the run.
pub const SKIP_LOG_VAR: &str = "CITUS_XTASK_SKIP_LOG";

/// The PostgreSQL major version [`Env::pg_major`] holds when no PostgreSQL
/// server was detected (possible only when [`Need::Postgres`] was not asked
/// for): Debian bookworm's PostgreSQL.
pub const DEFAULT_PG_MAJOR: u32 = 15;

/// How long `docker info` (and `docker compose version`) may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Something an integration test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`) and, when
    /// running as root, a `postgres` OS user to run the servers as.
    Postgres,
    /// The Citus extension installed into that PostgreSQL.
    Citus,
    /// A Docker engine that answers and a compose binary. Asked for with [`Need::Postgres`]
    /// (as the tests that run [`test_image`](crate::test_image) do), also the test image of
    /// that PostgreSQL: in the engine already, or buildable here (`mmdebstrap` on PATH, and
    /// root or user namespaces).
    Docker,
}

impl Need {
    /// Every need, in a fixed order.
    pub const ALL: [Need; 3] = [Need::Postgres, Need::Citus, Need::Docker];

    /// The lower-case name used in [`REQUIRE_VAR`].
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Postgres => "postgres",
            Need::Citus => "citus",
            Need::Docker => "docker",
        }
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Need::Postgres => "Postgres",
            Need::Citus => "Citus",
            Need::Docker => "Docker",
        })
    }
}

impl FromStr for Need {
    type Err = String;

    fn from_str(s: &str) -> Result<Need, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Ok(Need::Postgres),
            "citus" => Ok(Need::Citus),
            "docker" => Ok(Need::Docker),
            other => Err(format!("unknown need `{other}` (known: postgres, citus, docker, all)")),
        }
    }
}

/// What a test that may run gets to know about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// The directory holding `initdb`, `pg_ctl`, `postgres` (and, on Debian,
    /// `psql`, `pg_isready`). Empty when no PostgreSQL server was detected,
    /// which can only happen when the test did not ask for [`Need::Postgres`].
    pub bin_dir: PathBuf,
    /// Whether Citus is installed into that PostgreSQL (detected whether or
    /// not the test asked for [`Need::Citus`]).
    pub has_citus: bool,
    /// The PostgreSQL major version of `bin_dir`, or [`DEFAULT_PG_MAJOR`].
    pub pg_major: u32,
    /// How to run compose: `["docker", "compose"]` or `["docker-compose"]`.
    /// `Some` exactly when the test asked for [`Need::Docker`].
    pub compose: Option<Vec<String>>,
}

/// A detected PostgreSQL installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgInstall {
    pub(crate) bin_dir: PathBuf,
    pub(crate) pg_major: u32,
    pub(crate) pkglibdir: PathBuf,
    pub(crate) sharedir: PathBuf,
}

static POSTGRES: OnceLock<Result<PgInstall, String>> = OnceLock::new();
static CITUS: OnceLock<Result<(), String>> = OnceLock::new();
static DOCKER: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
static IMAGE: OnceLock<Result<(), String>> = OnceLock::new();

/// Decides whether the test `test_name`, which needs `needs`, can run here.
///
/// Returns `Some(env)` when every need is met. Otherwise prints one loud
/// `==== SKIPPED ... ====` block per missing need to the process's stderr
/// (not captured by the test harness) and returns `None`, so the test
/// returns early and counts as passed; unless [`REQUIRE_VAR`] lists one of
/// the missing needs, in which case it panics. Detection runs at most once
/// per process per need.
///
/// # Panics
/// When a missing need is listed in `CITUS_XTASK_REQUIRE`, or when that
/// variable holds an unknown name.
#[track_caller]
pub fn require(test_name: &str, needs: &[Need]) -> Option<Env> {
    let insisted = match std::env::var(REQUIRE_VAR) {
        Ok(value) => match parse_require(&value) {
            Ok(set) => set,
            Err(e) => panic!("{REQUIRE_VAR}={value:?} is invalid: {e}"),
        },
        Err(_) => BTreeSet::new(),
    };
    let wanted: BTreeSet<Need> = needs.iter().copied().collect();
    // Docker with PostgreSQL is what the tests of the test image ask for: the image is built
    // from that PostgreSQL (`test_image`), so it must be there or buildable.
    let with_image = wanted.contains(&Need::Postgres);
    let check_need = |need: Need| {
        check(need)?;
        match need {
            Need::Docker if with_image => image().clone(),
            _ => Ok(()),
        }
    };
    match decide(test_name, &wanted, &insisted, check_need) {
        Decision::Run => {}
        Decision::Skip(text) => {
            report_skip(&text);
            return None;
        }
        Decision::Panic(text) => panic!("{text}"),
    }

    let pg = postgres().as_ref().ok();
    Some(Env {
        bin_dir: pg.map(|pg| pg.bin_dir.clone()).unwrap_or_default(),
        has_citus: citus().is_ok(),
        pg_major: pg.map(|pg| pg.pg_major).unwrap_or(DEFAULT_PG_MAJOR),
        compose: if wanted.contains(&Need::Docker) { docker().as_ref().ok().cloned() } else { None },
    })
}

/// Skips the test `test_name` loudly, for a reason that is none of the [`Need`]s (a program
/// such as `python3` missing, an installation without an older Citus to test against), exactly
/// as [`require`] skips one: the block
///
/// ```text
/// ==== SKIPPED <test_name>: <why> ====
/// ```
///
/// goes to the process's stderr, bypassing the test harness's capture, and, when
/// [`SKIP_LOG_VAR`] names a file, as one line to that file (which `ci/test.sh` lists after the
/// run). The caller then returns from the test. [`REQUIRE_VAR`] insists on needs only, so this
/// never panics; a test that must not skip for a reason of its own should fail instead.
pub fn skip(test_name: &str, why: &str) {
    report_skip(&skip_block(test_name, why));
}

/// Prints skip blocks loudly and appends them to the skip log, when there is one: what
/// [`require`] and [`skip`] do on a skip.
fn report_skip(text: &str) {
    loud(text);
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR).filter(|p| !p.is_empty()) {
        if let Err(e) = append_skip_log(Path::new(&path), text) {
            loud(&format!("citus-testkit: could not append to {SKIP_LOG_VAR}={}: {e}\n", Path::new(&path).display()));
        }
    }
}

/// What [`require`] does about a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Run,
    /// Skip, printing this text.
    Skip(String),
    /// Panic with this message: a missing need is insisted on.
    Panic(String),
}

/// The skip policy, apart from detection and printing.
pub(crate) fn decide(test_name: &str, wanted: &BTreeSet<Need>, insisted: &BTreeSet<Need>, check: impl Fn(Need) -> Result<(), String>) -> Decision {
    let missing: Vec<(Need, String)> = wanted.iter().filter_map(|&need| check(need).err().map(|reason| (need, reason))).collect();
    if missing.is_empty() {
        return Decision::Run;
    }
    let fatal: Vec<String> = missing.iter().filter(|(need, _)| insisted.contains(need)).map(|(need, reason)| format!("needs {need} and {reason}")).collect();
    if !fatal.is_empty() {
        return Decision::Panic(format!("{REQUIRE_VAR} insists that {test_name} runs here, but it {}", fatal.join("; and it ")));
    }
    Decision::Skip(missing.iter().map(|(need, reason)| skip_message(test_name, *need, reason)).collect())
}

/// Writes straight to the process's stderr, bypassing the test harness's
/// output capture, so skips and long builds are visible without `--nocapture`.
pub(crate) fn loud(text: &str) {
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    let _ = lock.write_all(text.as_bytes());
    let _ = lock.flush();
}

/// Appends the skip blocks in `text` to the skip log, one line each, in one
/// `write` on a file opened for appending, so that test processes running at
/// the same time do not interleave their lines.
pub(crate) fn append_skip_log(path: &Path, text: &str) -> std::io::Result<()> {
    let lines: String = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect();
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(lines.as_bytes())
}

/// The block printed for a test skipped for a missing need.
pub(crate) fn skip_message(test_name: &str, need: Need, reason: &str) -> String {
    skip_block(test_name, &format!("needs {need}, but {reason}"))
}

/// The block printed for a skipped test.
pub(crate) fn skip_block(test_name: &str, why: &str) -> String {
    format!("\n==== SKIPPED {test_name}: {why} ====\n")
}

/// Parses the value of [`REQUIRE_VAR`]: comma separated need names, or `all`.
pub(crate) fn parse_require(value: &str) -> Result<BTreeSet<Need>, String> {
    let mut set = BTreeSet::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.eq_ignore_ascii_case("all") {
            set.extend(Need::ALL);
        } else {
            set.insert(item.parse::<Need>()?);
        }
    }
    Ok(set)
}

/// Checks one need (cached), giving the reason when it is missing.
fn check(need: Need) -> Result<(), String> {
    match need {
        Need::Postgres => postgres().as_ref().map(|_| ()).map_err(Clone::clone),
        Need::Citus => citus().clone(),
        Need::Docker => docker().as_ref().map(|_| ()).map_err(Clone::clone),
    }
}

pub(crate) fn postgres() -> &'static Result<PgInstall, String> {
    POSTGRES.get_or_init(detect_postgres)
}

fn citus() -> &'static Result<(), String> {
    CITUS.get_or_init(|| match postgres() {
        Ok(pg) => check_citus_files(&pg.pkglibdir, &pg.sharedir),
        Err(reason) => Err(format!("there is no PostgreSQL server to hold it: {reason}")),
    })
}

fn docker() -> &'static Result<Vec<String>, String> {
    DOCKER.get_or_init(detect_docker)
}

/// Whether the test image of this machine's PostgreSQL is in the engine or can be built
/// (`image::obtainable`). Asked only once Docker and PostgreSQL are known to be there; without
/// PostgreSQL that need is the reason given.
fn image() -> &'static Result<(), String> {
    IMAGE.get_or_init(|| match postgres() {
        Ok(pg) => crate::image::obtainable(&Env { bin_dir: pg.bin_dir.clone(), has_citus: citus().is_ok(), pg_major: pg.pg_major, compose: None }),
        Err(_) => Ok(()),
    })
}

// ---------------------------------------------------------------- Postgres

fn detect_postgres() -> Result<PgInstall, String> {
    let pg_config_bindir = pg_config_on_path("--bindir").map(PathBuf::from);
    let debian = debian_bin_dirs(Path::new("/usr/lib/postgresql"));
    let bin_dir = choose_bin_dir(pg_config_bindir.as_deref(), &debian)?;
    check_os_user(is_root(), os_user_exists("postgres"))?;
    let pg_major = pg_major_of(&bin_dir)?;
    let (pkglibdir, sharedir) = pg_dirs(&bin_dir, pg_major);
    Ok(PgInstall { bin_dir, pg_major, pkglibdir, sharedir })
}

/// The server binaries a bin dir must hold.
pub(crate) const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Runs `pg_config <arg>` from PATH, if there is one.
fn pg_config_on_path(arg: &str) -> Option<String> {
    let pg_config = which::which("pg_config").ok()?;
    let out = Command::new(pg_config).arg(arg).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// `<root>/<N>/bin` directories, highest `N` first.
pub(crate) fn debian_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.is_dir().then_some((major, bin))
        })
        .collect();
    found.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    found.into_iter().map(|(_, bin)| bin).collect()
}

/// Picks the first candidate holding every server binary: the bin dir of
/// the `pg_config` on PATH, then the Debian-style dirs (highest first).
pub(crate) fn choose_bin_dir(pg_config_bindir: Option<&Path>, debian: &[PathBuf]) -> Result<PathBuf, String> {
    let candidates: Vec<&Path> = pg_config_bindir.into_iter().chain(debian.iter().map(PathBuf::as_path)).collect();
    if candidates.is_empty() {
        return Err("no PostgreSQL installation was found: there is no pg_config on PATH \
             and no /usr/lib/postgresql/*/bin (apt-get install postgresql, or put the \
             pg_config of a PostgreSQL installation on PATH)"
            .to_string());
    }
    let mut looked = Vec::new();
    for dir in candidates {
        let absent: Vec<&str> = SERVER_BINARIES.iter().copied().filter(|bin| !dir.join(bin).is_file()).collect();
        if absent.is_empty() {
            return Ok(dir.to_path_buf());
        }
        looked.push(format!("{} lacks {}", dir.display(), absent.join(", ")));
    }
    Err(format!(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found: {} \
         (install the server package, e.g. apt-get install postgresql)",
        looked.join("; ")
    ))
}

/// initdb refuses to run as root: a root test process needs a `postgres`
/// OS user to run the servers as.
pub(crate) fn check_os_user(is_root: bool, postgres_user_exists: bool) -> Result<(), String> {
    if is_root && !postgres_user_exists {
        return Err("this process runs as root and there is no `postgres` OS user to run \
             the servers as (initdb refuses to run as root; installing the PostgreSQL \
             server package creates it, or: useradd --system --create-home postgres)"
            .to_string());
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn os_user_exists(name: &str) -> bool {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: cname is a valid NUL-terminated string; getpwnam returns NULL
    // or a pointer to static storage that we do not keep.
    unsafe { !libc::getpwnam(cname.as_ptr()).is_null() }
}

/// The major version of the server in `bin_dir`: from `postgres --version`,
/// else from a Debian-style path (`.../postgresql/<N>/bin`).
pub(crate) fn pg_major_of(bin_dir: &Path) -> Result<u32, String> {
    if let Ok(out) = Command::new(bin_dir.join("postgres")).arg("--version").output() {
        if let Some(major) = parse_pg_version(&String::from_utf8_lossy(&out.stdout)) {
            return Ok(major);
        }
    }
    bin_dir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| format!("`{} --version` did not tell the PostgreSQL version", bin_dir.join("postgres").display()))
}

/// `postgres (PostgreSQL) 15.13 (Debian 15.13-0+deb12u1)` → 15.
pub(crate) fn parse_pg_version(text: &str) -> Option<u32> {
    let rest = &text[text.find("PostgreSQL")? + "PostgreSQL".len()..];
    let rest = rest.trim_start_matches(')').trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `pg_config --pkglibdir --sharedir` of the installation owning `bin_dir`.
pub(crate) fn pg_dirs(bin_dir: &Path, pg_major: u32) -> (PathBuf, PathBuf) {
    let own = bin_dir.join("pg_config");
    let pg_config = if own.is_file() {
        Some(own)
    } else {
        which::which("pg_config").ok().filter(|_| pg_config_on_path("--bindir").map(PathBuf::from).as_deref() == Some(bin_dir))
    };
    if let Some(pg_config) = pg_config {
        if let Ok(out) = Command::new(pg_config).args(["--pkglibdir", "--sharedir"]).output() {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            if out.status.success() && lines.len() == 2 && lines.iter().all(|l| !l.is_empty()) {
                return (PathBuf::from(lines[0]), PathBuf::from(lines[1]));
            }
        }
    }
    // Debian's layout, else the conventional one next to bin/.
    let debian_lib = PathBuf::from(format!("/usr/lib/postgresql/{pg_major}/lib"));
    if bin_dir == Path::new(&format!("/usr/lib/postgresql/{pg_major}/bin")) {
        return (debian_lib, PathBuf::from(format!("/usr/share/postgresql/{pg_major}")));
    }
    let prefix = bin_dir.parent().unwrap_or(bin_dir);
    (prefix.join("lib/postgresql"), prefix.join("share/postgresql"))
}

// ------------------------------------------------------------------- Citus

/// Citus is there when `citus.so` and `extension/citus.control` are.
pub(crate) fn check_citus_files(pkglibdir: &Path, sharedir: &Path) -> Result<(), String> {
    let so = pkglibdir.join("citus.so");
    let control = sharedir.join("extension").join("citus.control");
    for file in [&so, &control] {
        if !file.is_file() {
            return Err(format!(
                "{} does not exist (build Citus outside the repository and install it \
                 into this PostgreSQL; see DEVELOPERS.md)",
                file.display()
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ Docker

fn detect_docker() -> Result<Vec<String>, String> {
    let docker = which::which("docker").map_err(|_| "there is no `docker` command on PATH (install Docker Engine and its CLI)".to_string())?;
    let mut info = Command::new(&docker);
    info.args(["info", "--format", "{{.ServerVersion}}"]);
    docker_info_verdict(run_with_timeout(&mut info, DOCKER_TIMEOUT))?;

    let mut v2 = Command::new(&docker);
    v2.args(["compose", "version"]);
    let v2_ok = matches!(run_with_timeout(&mut v2, DOCKER_TIMEOUT), Ok(out) if out.success);
    compose_verdict(v2_ok, which::which("docker-compose").is_ok())
}

/// Judges the outcome of `docker info`.
pub(crate) fn docker_info_verdict(outcome: Result<crate::process::Ran, RunError>) -> Result<(), String> {
    match outcome {
        Ok(out) if out.success => Ok(()),
        Ok(out) => {
            let why = out.stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no message").to_string();
            Err(format!(
                "`docker info` failed: {why} (is the Docker engine running, and may this \
                 user talk to it?)"
            ))
        }
        Err(RunError::TimedOut) => Err(format!("`docker info` did not answer within {} s (is the Docker engine running?)", DOCKER_TIMEOUT.as_secs())),
        Err(RunError::Spawn(e)) => Err(format!("`docker info` could not be run: {e}")),
    }
}

/// Picks the compose command: the v2 plugin, else docker-compose v1.
pub(crate) fn compose_verdict(v2_works: bool, v1_on_path: bool) -> Result<Vec<String>, String> {
    if v2_works {
        Ok(vec!["docker".to_string(), "compose".to_string()])
    } else if v1_on_path {
        Ok(vec!["docker-compose".to_string()])
    } else {
        Err("the Docker engine answers, but there is no compose: `docker compose version` \
             fails and `docker-compose` is not on PATH (install the compose plugin or \
             docker-compose)"
            .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Ran;

    fn fake_bin(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for name in names {
            std::fs::write(dir.join(name), "").unwrap();
        }
    }

    #[test]
    fn skip_message_is_loud_and_names_test_need_and_reason() {
        let msg = skip_message(
            "cluster_up",
            Need::Citus,
            "/usr/lib/postgresql/15/lib/citus.so does not exist (build Citus outside the \
             repository and install it into this PostgreSQL; see DEVELOPERS.md)",
        );
        assert_eq!(
            msg,
            "\n==== SKIPPED cluster_up: needs Citus, but /usr/lib/postgresql/15/lib/citus.so \
             does not exist (build Citus outside the repository and install it into this \
             PostgreSQL; see DEVELOPERS.md) ====\n"
        );
    }

    #[test]
    fn a_skip_of_its_own_is_the_same_block_as_a_missing_need() {
        assert_eq!(skip_block("t", "`python3` is not on PATH"), "\n==== SKIPPED t: `python3` is not on PATH ====\n");
        assert_eq!(skip_message("t", Need::Docker, "no engine"), skip_block("t", "needs Docker, but no engine"));
    }

    #[test]
    fn skip_log_gets_one_line_per_block_from_concurrent_writers() {
        let dir = crate::tmp::temp_dir("skip-log");
        let log = dir.path().join("skips");
        std::thread::scope(|s| {
            for i in 0..8 {
                let log = &log;
                s.spawn(move || {
                    let text =
                        format!("{}{}", skip_message(&format!("t{i}"), Need::Citus, "no citus.so"), skip_message(&format!("t{i}"), Need::Docker, "no engine"));
                    append_skip_log(log, &text).unwrap();
                });
            }
        });
        let written = std::fs::read_to_string(&log).unwrap();
        let mut lines: Vec<&str> = written.lines().collect();
        lines.sort_unstable();
        let mut want: Vec<String> = (0..8)
            .flat_map(|i| [format!("==== SKIPPED t{i}: needs Citus, but no citus.so ===="), format!("==== SKIPPED t{i}: needs Docker, but no engine ====")])
            .collect();
        want.sort_unstable();
        assert_eq!(lines, want);
    }

    #[test]
    fn citus_message_names_the_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("lib");
        let share = tmp.path().join("share");
        std::fs::create_dir_all(share.join("extension")).unwrap();
        std::fs::create_dir_all(&lib).unwrap();

        let err = check_citus_files(&lib, &share).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}/citus.so does not exist (build Citus outside the repository and \
                 install it into this PostgreSQL; see DEVELOPERS.md)",
                lib.display()
            )
        );

        std::fs::write(lib.join("citus.so"), "").unwrap();
        let err = check_citus_files(&lib, &share).unwrap_err();
        assert!(err.starts_with(&format!("{}/extension/citus.control does not exist", share.display())), "{err}");

        std::fs::write(share.join("extension/citus.control"), "").unwrap();
        assert_eq!(check_citus_files(&lib, &share), Ok(()));
    }

    #[test]
    fn bin_dir_prefers_pg_config_then_highest_debian_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("postgresql");
        fake_bin(&root.join("13/bin"), &SERVER_BINARIES);
        fake_bin(&root.join("16/bin"), &SERVER_BINARIES);
        fake_bin(&root.join("9/bin"), &SERVER_BINARIES);
        std::fs::create_dir_all(root.join("notaversion/bin")).unwrap();
        let debian = debian_bin_dirs(&root);
        assert_eq!(debian, vec![root.join("16/bin"), root.join("13/bin"), root.join("9/bin")]);
        assert_eq!(choose_bin_dir(None, &debian), Ok(root.join("16/bin")));

        let custom = tmp.path().join("custom/bin");
        fake_bin(&custom, &SERVER_BINARIES);
        assert_eq!(choose_bin_dir(Some(&custom), &debian), Ok(custom.clone()));

        // A client-only pg_config bin dir falls through to the Debian dirs.
        let client = tmp.path().join("client/bin");
        fake_bin(&client, &["psql", "pg_config"]);
        assert_eq!(choose_bin_dir(Some(&client), &debian), Ok(root.join("16/bin")));
    }

    #[test]
    fn bin_dir_messages_say_what_is_missing() {
        let err = choose_bin_dir(None, &[]).unwrap_err();
        assert!(err.starts_with("no PostgreSQL installation was found"), "{err}");
        assert!(err.contains("apt-get install postgresql"), "{err}");

        let tmp = tempfile::tempdir().unwrap();
        let client = tmp.path().join("15/bin");
        fake_bin(&client, &["psql", "pg_ctl"]);
        let err = choose_bin_dir(None, std::slice::from_ref(&client)).unwrap_err();
        assert!(err.contains(&format!("{} lacks initdb, postgres", client.display())), "{err}");
    }

    #[test]
    fn root_needs_a_postgres_os_user() {
        assert_eq!(check_os_user(false, false), Ok(()));
        assert_eq!(check_os_user(true, true), Ok(()));
        let err = check_os_user(true, false).unwrap_err();
        assert!(err.contains("runs as root and there is no `postgres` OS user"), "{err}");
    }

    #[test]
    fn pg_version_parsing() {
        assert_eq!(parse_pg_version("postgres (PostgreSQL) 15.13 (Debian 15.13-0+deb12u1)\n"), Some(15));
        assert_eq!(parse_pg_version("postgres (PostgreSQL) 17devel\n"), Some(17));
        assert_eq!(parse_pg_version("PostgreSQL 16.2"), Some(16));
        assert_eq!(parse_pg_version("nothing here"), None);
        // A fake bin dir falls back to the Debian path.
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("14/bin");
        fake_bin(&bin, &SERVER_BINARIES);
        assert_eq!(pg_major_of(&bin), Ok(14));
    }

    #[test]
    fn docker_messages() {
        let failed = Ran {
            success: false,
            stdout: String::new(),
            stderr: "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. \
                     Is the docker daemon running?\n"
                .to_string(),
        };
        let err = docker_info_verdict(Ok(failed)).unwrap_err();
        assert!(err.starts_with("`docker info` failed: Cannot connect"), "{err}");
        let err = docker_info_verdict(Err(RunError::TimedOut)).unwrap_err();
        assert_eq!(err, "`docker info` did not answer within 10 s (is the Docker engine running?)");
        assert_eq!(compose_verdict(true, true), Ok(vec!["docker".to_string(), "compose".to_string()]));
        assert_eq!(compose_verdict(false, true), Ok(vec!["docker-compose".to_string()]));
        assert!(compose_verdict(false, false).unwrap_err().contains("there is no compose"));
    }

    #[test]
    fn decide_runs_skips_or_panics() {
        let set = |needs: &[Need]| needs.iter().copied().collect::<BTreeSet<Need>>();
        let no_citus = |need: Need| match need {
            Need::Citus => Err("citus.so does not exist".to_string()),
            _ => Ok(()),
        };
        assert_eq!(decide("t", &set(&[Need::Postgres, Need::Docker]), &set(&[]), no_citus), Decision::Run);
        assert_eq!(
            decide("t", &set(&[Need::Postgres, Need::Citus]), &set(&[Need::Docker]), no_citus),
            Decision::Skip("\n==== SKIPPED t: needs Citus, but citus.so does not exist ====\n".to_string())
        );
        // Insisting on a need the test does not have is not fatal.
        assert_eq!(decide("t", &set(&[Need::Postgres]), &set(&Need::ALL), no_citus), Decision::Run);
        assert_eq!(
            decide("t", &set(&[Need::Citus]), &set(&[Need::Postgres, Need::Citus]), no_citus),
            Decision::Panic(
                "CITUS_XTASK_REQUIRE insists that t runs here, but it needs Citus and \
                 citus.so does not exist"
                    .to_string()
            )
        );
        let nothing = |need: Need| Err::<(), String>(format!("no {}", need.as_str()));
        match decide("t", &set(&Need::ALL), &set(&[]), nothing) {
            Decision::Skip(text) => assert_eq!(text.matches("==== SKIPPED t: needs").count(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn require_var_parsing() {
        assert_eq!(parse_require(""), Ok(BTreeSet::new()));
        assert_eq!(parse_require(" postgres, Citus ,docker,"), Ok(Need::ALL.into_iter().collect()));
        assert_eq!(parse_require("all"), Ok(Need::ALL.into_iter().collect()));
        assert!(parse_require("postgres,kubernetes").unwrap_err().contains("unknown need `kubernetes`"));
    }
}
