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
/// data directories.
pub fn lock_up(cluster: &Cluster, progress: Progress<'_>) -> anyhow::Result<UpLock> {
    lock(cluster, "up", progress)
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

/// The lock file holds `<task> <pid>` of its holder (an older one only the pid).
fn lock(cluster: &Cluster, task: &str, progress: Progress<'_>) -> anyhow::Result<UpLock> {
    use anyhow::Context;
    use std::io::Write;
    let path = up_lock_file(cluster);
    std::fs::create_dir_all(cluster_dir(cluster)).map_err(|e| file_error(cluster, "creating", &cluster_dir(cluster), e))?;
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| file_error(cluster, "opening", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let (other, pid) = match holder.trim().split_once(' ') {
                Some((t, pid)) => (t.to_string(), pid.to_string()),
                None => ("up".to_string(), holder.trim().to_string()),
            };
            let doing = if other == "down" { "stopping" } else { "starting" };
            progress(&format!(
                "{task}: waiting for another `{other}` of cluster `{}`{} to finish {doing} its nodes ({})",
                cluster.name,
                if pid.is_empty() { String::new() } else { format!(" (pid {pid})") },
                path.display()
            ));
            file.lock().with_context(|| format!("locking {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    file.set_len(0).and_then(|()| write!(file, "{task} {}", std::process::id())).with_context(|| format!("writing {}", path.display()))?;
    Ok(UpLock { _file: file })
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
}
