//! Which config file a task reads and which backend it acts on (config finding and reading: `citus_io::state`).

use std::path::{Path, PathBuf};

use citus_config::{Backend, Cluster};

use crate::UsageError;

/// The workspace root (the folder holding `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Loads the cluster from `--config`, else `$CITUS_CONFIG`, else `<workspace>/citus.toml`,
/// applying `--workers`. Bad input is a [`UsageError`] (exit code 2).
pub(crate) fn load(config: Option<&Path>, workers: Option<usize>) -> anyhow::Result<Cluster> {
    let path = citus_io::state::config_path(config, &workspace_root());
    let cluster = citus_io::state::read_config(&path).map_err(UsageError)?;
    match workers {
        Some(n) => cluster.with_workers(n).map_err(|e| UsageError(e.to_string()).into()),
        None => Ok(cluster),
    }
}

/// The cluster a task acts on, as it was started.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) cluster: Cluster,
    pub(crate) backend: Backend,
    /// The config's own worker count (before `--workers` or the recorded count).
    pub(crate) configured_workers: usize,
}

/// Loads the cluster like [`load`], with the worker count from `--workers`, else the one the
/// last `up --workers N` started (`citus_io::state::recorded_workers`), else the config's, and
/// picks the backend: `--backend`, else the one of the cluster's last `up`, else the config's.
/// Says on stderr, once, which file, backend and workers it took, and why.
pub(crate) fn open(config: Option<&Path>, workers: Option<usize>, backend: Option<Backend>) -> anyhow::Result<Opened> {
    let configured = load(config, None)?;
    let configured_workers = configured.workers.len();
    let recorded = citus_io::state::recorded_workers(&configured);
    let (n, workers_why) = match (workers, recorded) {
        (Some(n), _) => (n, "--workers".to_string()),
        (None, Some(n)) => (n, format!("the count `up --workers {n}` started; --workers picks another")),
        (None, None) => (configured_workers, "the config's".to_string()),
    };
    let dir = citus_io::state::cluster_dir(&configured);
    let cluster = if n == configured_workers {
        configured
    } else {
        configured.with_workers(n).map_err(|e| match workers {
            None => UsageError(format!("{e} (the count `up --workers {n}` started, recorded in {}/workers); pass --workers N", dir.display())),
            Some(_) => UsageError(e.to_string()),
        })?
    };
    let b = citus_io::state::choose_backend(&cluster, backend);
    let recorded = citus_io::state::recorded_backend(&cluster);
    let why = match (backend, recorded) {
        (Some(_), Some(r)) if r != b => format!("--backend; this cluster's last `up` was on {r}"),
        (Some(_), _) => "--backend".to_string(),
        (None, Some(_)) => "the backend of this cluster's last `up`; --backend picks another".to_string(),
        (None, None) => "the config's `backend`".to_string(),
    };
    eprintln!("cluster `{}` from {}, backend {b} ({why}), {n} worker(s) ({workers_why})", cluster.name, cluster.source.display());
    for bad in citus_io::state::unreadable_records(&cluster) {
        eprintln!("  {bad}");
    }
    Ok(Opened { cluster, backend: b, configured_workers })
}
