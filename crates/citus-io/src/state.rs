//! Where a cluster's local files live (data, generated compose file, the backend of its last
//! `up` and with how many workers).

use std::path::{Path, PathBuf};

use citus_config::{Backend, Cluster};

use crate::Progress;

/// The cluster's own folder: `<local.data_dir>/<name>`.
pub fn cluster_dir(cluster: &Cluster) -> PathBuf {
    cluster.local.data_dir.join(&cluster.name)
}

/// The file naming the backend of the cluster's last `up`, in its folder.
const BACKEND_FILE: &str = "backend";
/// The lock file of `up` and `down`, in the cluster's folder.
const UP_LOCK_FILE: &str = ".up.lock";

fn backend_file(cluster: &Cluster) -> PathBuf {
    cluster_dir(cluster).join(BACKEND_FILE)
}

/// Whether `dir` is the folder of a cluster this tool started (of any config): it has the
/// backend record or the up lock, which `forget` keeps.
pub fn is_cluster_dir(dir: &Path) -> bool {
    [BACKEND_FILE, UP_LOCK_FILE].iter().any(|f| dir.join(f).exists())
}

/// Remembers which backend started the cluster, so later `setup`/`verify` use its addresses.
pub fn record_backend(cluster: &Cluster, backend: Backend) -> anyhow::Result<()> {
    let dir = cluster_dir(cluster);
    std::fs::create_dir_all(&dir).map_err(|e| file_error(cluster, "creating", &dir, e))?;
    let file = backend_file(cluster);
    std::fs::write(&file, backend.as_str()).map_err(|e| file_error(cluster, "recording the backend in", &file, e))
}

/// The backend of this cluster's last `up` on this machine (recorded once that `up` starts
/// making nodes), if there was one.
pub fn recorded_backend(cluster: &Cluster) -> Option<Backend> {
    std::fs::read_to_string(backend_file(cluster)).ok()?.trim().parse().ok()
}

/// Picks the backend: the command line, else the one of the cluster's last `up`, else the config's.
pub fn choose_backend(cluster: &Cluster, explicit: Option<Backend>) -> Backend {
    explicit.or_else(|| recorded_backend(cluster)).unwrap_or(cluster.backend)
}

fn workers_file(cluster: &Cluster) -> PathBuf {
    cluster_dir(cluster).join("workers")
}

/// Remembers the worker count `up --workers N` started, so that later tasks without
/// `--workers` act on the same nodes (`verify` checks them, `down` stops them). `None` (an `up
/// --workers` equal to the config's count) forgets it: the config decides again.
pub fn record_workers(cluster: &Cluster, workers: Option<usize>) -> std::io::Result<()> {
    match workers {
        Some(n) => {
            std::fs::create_dir_all(cluster_dir(cluster))?;
            std::fs::write(workers_file(cluster), n.to_string())
        }
        None => match std::fs::remove_file(workers_file(cluster)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// The worker count the last `up --workers N` on this machine started, when it differed from
/// the config's.
pub fn recorded_workers(cluster: &Cluster) -> Option<usize> {
    std::fs::read_to_string(workers_file(cluster)).ok()?.trim().parse().ok()
}

/// The records of this cluster (its backend, its worker count) that exist but that
/// [`recorded_backend`] and [`recorded_workers`] cannot read: one line each, naming the file,
/// why, and what writes it anew. Tasks then fall back to the config, and the caller says so.
pub fn unreadable_records(cluster: &Cluster) -> Vec<String> {
    let check = |path: PathBuf, parse: &dyn Fn(&str) -> Result<(), String>, rewrite: &str| {
        let why = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => e.to_string(),
            Ok(text) => parse(text.trim()).err()?,
        };
        Some(format!("ignored the record {} ({why}): the config decides instead; {rewrite} writes it anew", path.display()))
    };
    let backend = |t: &str| t.parse::<Backend>().map(drop);
    let workers = |t: &str| t.parse::<usize>().map(drop).map_err(|e| format!("`{t}` is not a worker count: {e}"));
    [check(backend_file(cluster), &backend, "`cargo xtask up`"), check(workers_file(cluster), &workers, "`cargo xtask up --workers N`")]
        .into_iter()
        .flatten()
        .collect()
}

fn up_lock_file(cluster: &Cluster) -> PathBuf {
    cluster_dir(cluster).join(UP_LOCK_FILE)
}

/// Held while `up` starts a cluster's nodes and while `down` stops them (an exclusive `flock`
/// on `.up.lock` in the cluster's folder, released when dropped, or when the process dies).
#[derive(Debug)]
pub struct UpLock {
    _file: std::fs::File,
}

/// Takes the cluster's [`UpLock`] for `up`. A second `up` of the same cluster on this machine
/// (two terminals, two CI steps) waits here, saying so, until the first has made the data and
/// started the servers, and then finds them running, instead of racing it to make the same
/// data directories. Either waits at most [`LOCK_WAIT_TIMEOUTS`] × `[wait] timeout_secs`,
/// then fails naming the holder's pid and the fix.
///
/// Once it holds the lock it writes `workers` to the cluster's record ([`record_workers`]):
/// not before, so that an `up` waiting behind another, or giving up on the wait, leaves the
/// record as the running `up` made it; and before any node starts, so that a `down` after an
/// `up` that failed half-way stops the nodes it started.
pub fn lock_up(cluster: &Cluster, workers: WorkersRecord, progress: Progress<'_>) -> anyhow::Result<UpLock> {
    let lock = lock(cluster, "up", progress)?;
    let record = match workers {
        WorkersRecord::Keep => return Ok(lock),
        WorkersRecord::Forget => None,
        WorkersRecord::Set(n) => Some(n),
    };
    record_workers(cluster, record).map_err(|e| file_error(cluster, "recording the worker count in", &cluster_dir(cluster), e))?;
    Ok(lock)
}

/// What an `up` writes to the cluster's worker-count record ([`record_workers`]) once it
/// holds the cluster's lock ([`lock_up`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkersRecord {
    /// No `--workers`: the record stays as it is (the count it names is the one this `up`
    /// starts).
    Keep,
    /// `--workers N` with N the config's own count: the record goes, and the config decides
    /// again.
    Forget,
    /// `--workers N` with another count than the config's: later tasks act on N workers.
    Set(usize),
}

impl WorkersRecord {
    /// The record for `up --workers` (`asked`) on a config of `configured` workers.
    pub fn for_up(asked: Option<usize>, configured: usize) -> Self {
        match asked {
            None => Self::Keep,
            Some(n) if n == configured => Self::Forget,
            Some(n) => Self::Set(n),
        }
    }
}

/// Takes the cluster's [`UpLock`] for `down`: a `down` (or `down --purge`) during an `up`
/// waits for it instead of stopping only the servers that run so far and deleting the data of
/// the ones the `up` is still starting. `None` when the cluster has no folder (no `up` made
/// one): there is nothing to wait for, and `down` makes none.
pub fn lock_down(cluster: &Cluster, progress: Progress<'_>) -> anyhow::Result<Option<UpLock>> {
    if !cluster_dir(cluster).is_dir() {
        return Ok(None);
    }
    lock(cluster, "down", progress).map(Some)
}

/// The error of `what` on `path` in the cluster's folder; when the OS refused it, with the
/// likely cause and the fix: a folder another user made, most often an `up` run with `sudo`
/// or by a CI container sharing the checkout.
pub fn file_error(cluster: &Cluster, what: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    use std::os::unix::fs::MetadataExt;
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return anyhow::Error::new(e).context(format!("{what} {}", path.display()));
    }
    let dir = cluster_dir(cluster);
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let owner = std::fs::metadata(&dir).map_or_else(|_| String::new(), |m| if m.uid() == me { String::new() } else { format!(" (owned by uid {})", m.uid()) });
    anyhow::anyhow!(
        "{what} {}: {e}\n    fix: the cluster's folder {}{owner} is not writable by this user (uid {me}), most likely because another user (`sudo`, or a CI container sharing this checkout) ran `up` first: run the tool as that user, or set [local] data_dir in {} to a folder of yours",
        path.display(),
        dir.display(),
        cluster.source.display()
    )
}

/// How long `up` or `down` waits for another one holding the cluster's lock, in units of the
/// cluster's `[wait] timeout_secs`: the holder's own waits are bounded by it (per node, at
/// once), so a holder that keeps it for ten of them is stuck.
pub const LOCK_WAIT_TIMEOUTS: u64 = 10;

/// How often a wait for the lock says it still waits.
const LOCK_WAIT_SAYS: std::time::Duration = std::time::Duration::from_secs(10);

/// The lock file holds `<task> <pid>` of its holder (an older one only the pid).
fn lock(cluster: &Cluster, task: &str, progress: Progress<'_>) -> anyhow::Result<UpLock> {
    lock_within(cluster, task, std::time::Duration::from_secs(cluster.ready_timeout_secs.saturating_mul(LOCK_WAIT_TIMEOUTS)), progress)
}

fn lock_within(cluster: &Cluster, task: &str, wait: std::time::Duration, progress: Progress<'_>) -> anyhow::Result<UpLock> {
    use anyhow::Context;
    use std::io::Write;
    let path = up_lock_file(cluster);
    std::fs::create_dir_all(cluster_dir(cluster)).map_err(|e| file_error(cluster, "creating", &cluster_dir(cluster), e))?;
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| file_error(cluster, "opening", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => wait_for_lock(cluster, task, &file, &path, wait, progress)?,
        Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    file.set_len(0).and_then(|()| write!(file, "{task} {}", std::process::id())).with_context(|| format!("writing {}", path.display()))?;
    Ok(UpLock { _file: file })
}

/// Waits up to `wait` for the holder of the lock on `file` to let it go, polling, saying every
/// [`LOCK_WAIT_SAYS`] that it still waits and, once, when the holder is stopped (Ctrl-Z in
/// its terminal, a debugger): it keeps the lock until it goes on.
fn wait_for_lock(cluster: &Cluster, task: &str, file: &std::fs::File, path: &Path, wait: std::time::Duration, progress: Progress<'_>) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::time::{Duration, Instant};
    let read = || {
        let written = std::fs::read_to_string(path).unwrap_or_default();
        match written.trim().split_once(' ') {
            Some((t, pid)) => (t.to_string(), pid.parse::<u32>().ok()),
            None => ("up".to_string(), written.trim().parse::<u32>().ok()),
        }
    };
    let (mut other, mut written_pid) = read();
    // The kernel's word on who holds it wins over the file's (a holder in another PID
    // namespace, or one that has not written its pid yet).
    let kernel = lock_holder(file);
    // A holder writes its task and pid right after it takes the lock: a file that does not
    // name it yet (seen in CI: two `up`s started at once) gets a moment to.
    let settle = Instant::now();
    while kernel.is_some() && written_pid != kernel && settle.elapsed() < Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(5));
        (other, written_pid) = read();
    }
    let pid = kernel.or(written_pid);
    let other = if pid == written_pid { other } else { "up` or `down".to_string() };
    let doing = if other == "down" {
        "stopping"
    } else if other == "up" {
        "starting"
    } else {
        "starting or stopping"
    };
    let holder = pid.map_or(String::new(), |p| format!(" (pid {p})"));
    progress(&format!(
        "{task}: waiting for another `{other}` of cluster `{}`{holder} to finish {doing} its nodes (the lock {}; waiting up to {} s)",
        cluster.name,
        path.display(),
        wait.as_secs()
    ));
    let start = Instant::now();
    let mut said = start;
    let mut told_stopped = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        let stopped = pid.is_some_and(is_stopped);
        if stopped && !told_stopped {
            let p = pid.unwrap_or_default();
            progress(&format!(
                "{task}: the `{other}` holding the lock (pid {p}) is stopped (Ctrl-Z in its terminal, or a debugger) and keeps the lock until it goes on: `fg` in its terminal or `kill -CONT {p}`, or end it (`kill {p}`)"
            ));
            told_stopped = true;
        }
        if start.elapsed() >= wait {
            let p = pid.map_or_else(|| "its pid is not known".to_string(), |p| format!("pid {p}"));
            let state = if stopped { "it is stopped (Ctrl-Z, a debugger)" } else { "it still runs" };
            let fix = match pid {
                Some(p) if stopped => format!("let it go on (`fg` in its terminal, or `kill -CONT {p}`) or end it (`kill {p}`), then run `cargo xtask {task}` again"),
                Some(p) => format!("see what it waits for (its terminal or CI log), or end it (`kill {p}`; the lock goes with it), then run `cargo xtask {task}` again; or raise [wait] timeout_secs in {} to wait longer", cluster.source.display()),
                None => format!("end the `up` or `down` of this cluster that runs (the lock goes with it), then run `cargo xtask {task}` again"),
            };
            anyhow::bail!(
                "{task}: another `{other}` of cluster `{}` ({p}) has held its lock {} for {} s and {state}: nothing was done\n    fix: {fix}",
                cluster.name,
                path.display(),
                start.elapsed().as_secs()
            );
        }
        if said.elapsed() >= LOCK_WAIT_SAYS {
            progress(&format!(
                "{task}: still waiting for the `{other}`{holder} of cluster `{}` ({} s of {} s)",
                cluster.name,
                start.elapsed().as_secs(),
                wait.as_secs()
            ));
            said = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of the process holding an exclusive `flock` on `file`, from `/proc/locks` (by the
/// file's device and inode), if there is one and it can be read.
fn lock_holder(file: &std::fs::File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    // `MAJ:MIN:INODE` in hex device numbers, as the kernel prints them.
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 12345 08:01:1234 0 EOF`; a waiter's line has `->` after
        // the number.
        (f.get(1) == Some(&"FLOCK") && f.get(3) == Some(&"WRITE") && f.get(5) == Some(&want.as_str())).then(|| f.get(4)?.parse().ok()).flatten()
    })
}

/// Whether process `pid` is stopped (`T`) or stopped by a tracer (`t`).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('T') || r.starts_with('t')))
}

/// Removes the recorded backend and worker count (after `down --purge`). The lock file stays:
/// an `up` waiting on it would otherwise get a lock that a new `up`, on a new file, does not
/// see.
pub fn forget(cluster: &Cluster) {
    let _ = std::fs::remove_file(backend_file(cluster));
    let _ = std::fs::remove_file(workers_file(cluster));
}

/// The config file a task reads: `explicit` (`--config`), else `$CITUS_CONFIG`, else
/// `citus.toml` in `workspace`.
pub fn config_path(explicit: Option<&Path>, workspace: &Path) -> PathBuf {
    match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("CITUS_CONFIG") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => workspace.join("citus.toml"),
        },
    }
}

/// Reads and parses the config file at `path`. The error is a message for the user: the file
/// that could not be read and how to pick another, or the config error with its location.
pub fn read_config(path: &Path) -> Result<Cluster, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e} (pass --config PATH or set CITUS_CONFIG)", path.display()))?;
    Cluster::parse(&text, path).map_err(|e| e.to_string())
}

/// True when `path` exists and is a non-empty directory.
pub fn non_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn unreadable_records_are_named_with_what_rewrites_them() {
        let root = std::env::temp_dir().join(format!("citus-io-state-{}", std::process::id()));
        let cluster = citus_config::Cluster::parse(include_str!("../../../citus.toml"), &root.join("citus.toml")).unwrap();
        let dir = super::cluster_dir(&cluster);
        std::fs::create_dir_all(&dir).unwrap();
        // No records, or readable ones: nothing to say.
        assert!(super::unreadable_records(&cluster).is_empty());
        super::record_backend(&cluster, citus_config::Backend::Local).unwrap();
        super::record_workers(&cluster, Some(4)).unwrap();
        assert!(super::unreadable_records(&cluster).is_empty());
        assert_eq!(super::recorded_workers(&cluster), Some(4));
        // Both unreadable: each named, the config decides.
        std::fs::write(dir.join("backend"), "podman\n").unwrap();
        std::fs::write(dir.join("workers"), "four\n").unwrap();
        let said = super::unreadable_records(&cluster);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].contains(&dir.join("backend").display().to_string())
                && said[0].contains("unknown backend `podman`")
                && said[0].contains("`cargo xtask up` writes it anew"),
            "{said:?}"
        );
        assert!(
            said[1].contains(&dir.join("workers").display().to_string())
                && said[1].contains("`four` is not a worker count")
                && said[1].contains("`cargo xtask up --workers N`"),
            "{said:?}"
        );
        assert_eq!(super::recorded_workers(&cluster), None);
        assert_eq!(super::choose_backend(&cluster, None), cluster.backend);
        std::fs::remove_dir_all(Path::new(&root)).unwrap();
    }

    /// The process group of a `flock` holding the lock on `path`; killed when dropped.
    struct Group(std::process::Child);
    impl Drop for Group {
        fn drop(&mut self) {
            // SAFETY: kill has no preconditions; the group is the holder's own.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }

    /// The seed config's cluster in a folder of its own under the temp dir, its lock file
    /// holding `contents`: (cluster, lock file, folder). None, said, without util-linux
    /// `flock` on PATH to hold the lock from another process.
    fn lock_fixture(test: &str, contents: &str) -> Option<(citus_config::Cluster, std::path::PathBuf, std::path::PathBuf)> {
        if which::which("flock").is_err() {
            eprintln!("SKIPPED {test}: no `flock` (util-linux) on PATH to hold the lock from another process");
            return None;
        }
        let root = std::env::temp_dir().join(format!("citus-io-{test}-{}", std::process::id()));
        let cluster = citus_config::Cluster::parse(include_str!("../../../citus.toml"), &root.join("citus.toml")).unwrap();
        std::fs::create_dir_all(super::cluster_dir(&cluster)).unwrap();
        let path = super::up_lock_file(&cluster);
        std::fs::write(&path, contents).unwrap();
        Some((cluster, path, root))
    }

    /// Starts util-linux `flock` on `path` in a process group of its own and waits until the
    /// kernel names it the holder; its pid.
    fn hold(path: &Path) -> (Group, u32) {
        use std::os::unix::process::CommandExt;
        use std::time::Duration;
        // `-o`: only `flock` holds it, not the `sleep` it starts.
        let holder = Group(std::process::Command::new("flock").arg("-o").arg(path).args(["sleep", "60"]).process_group(0).spawn().unwrap());
        let pid = holder.0.id();
        let file = std::fs::File::open(path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while super::lock_holder(&file) != Some(pid) {
            assert!(std::time::Instant::now() < deadline, "`flock` (pid {pid}) did not take the lock in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        (holder, pid)
    }

    /// A holder that has the lock but has not yet written its task and pid (two `up`s started
    /// at once): the wait gives it a moment and names its task, not "`up` or `down`".
    #[test]
    fn a_wait_names_the_task_a_holder_writes_just_after_taking_the_lock() {
        use std::time::Duration;
        let Some((cluster, path, root)) = lock_fixture("a_wait_names_the_task_a_holder_writes_just_after_taking_the_lock", "") else { return };
        let (holder, pid) = hold(&path);
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(40));
                std::fs::write(&path, format!("down {pid}")).unwrap();
            })
        };
        let said = std::sync::Mutex::new(Vec::<String>::new());
        let progress = |l: &str| said.lock().unwrap().push(l.to_string());
        let err = super::lock_within(&cluster, "up", Duration::from_millis(100), &progress).unwrap_err().to_string();
        writer.join().unwrap();
        drop(holder);
        let first = said.lock().unwrap()[0].clone();
        assert!(first.contains(&format!("waiting for another `down` of cluster `citus` (pid {pid}) to finish stopping its nodes")), "{first}");
        assert!(err.contains(&format!("another `down` of cluster `citus` (pid {pid})")), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A process holding the lock (util-linux `flock`, in a process group of its own): a wait
    /// names it, says once that it is stopped, ends at its deadline with an error naming the
    /// pid and the fix, and takes the lock as soon as the holder lets it go.
    #[test]
    fn a_wait_for_the_lock_names_its_holder_ends_at_its_deadline_and_gets_the_lock_once_free() {
        use std::time::Duration;
        let Some((cluster, path, root)) = lock_fixture("a_wait_for_the_lock_names_its_holder_ends_at_its_deadline_and_gets_the_lock_once_free", "up 1\n")
        else {
            return;
        };
        let (holder, pid) = hold(&path);
        let said = std::sync::Mutex::new(Vec::<String>::new());
        let progress = |l: &str| said.lock().unwrap().push(l.to_string());
        // Running: named by the kernel's pid (the file says pid 1), the error says how to go on.
        let err = super::lock_within(&cluster, "up", Duration::from_millis(300), &progress).unwrap_err().to_string();
        assert!(
            err.contains(&format!("(pid {pid})"))
                && err.contains("it still runs")
                && err.contains(&format!("`kill {pid}`"))
                && err.contains("[wait] timeout_secs"),
            "{err}"
        );
        assert!(said.lock().unwrap()[0].contains(&format!("(pid {pid})")) && said.lock().unwrap()[0].contains("waiting up to 0 s"), "{said:?}");
        // Stopped: said once, and the fix is to let it go on.
        said.lock().unwrap().clear();
        // SAFETY: kill has no preconditions; the pid is the holder's.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        while !super::is_stopped(pid) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = super::lock_within(&cluster, "down", Duration::from_millis(300), &progress).unwrap_err().to_string();
        assert!(err.contains("it is stopped") && err.contains(&format!("`kill -CONT {pid}`")) && err.contains("`cargo xtask down` again"), "{err}");
        let stopped: Vec<String> = said.lock().unwrap().iter().filter(|l| l.contains("is stopped")).cloned().collect();
        assert_eq!(stopped.len(), 1, "{said:?}");
        // Let go while a wait runs: the wait gets the lock and writes itself in.
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(holder);
        });
        let lock = super::lock_within(&cluster, "up", Duration::from_secs(20), &progress).unwrap();
        killer.join().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("up {}", std::process::id()));
        drop(lock);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
