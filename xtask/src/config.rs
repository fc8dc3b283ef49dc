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

/// The backend a task acts on, said once on stderr.
pub(crate) fn backend(cluster: &Cluster, explicit: Option<Backend>) -> Backend {
    let b = citus_io::state::choose_backend(cluster, explicit);
    let why = if explicit.is_some() {
        "--backend"
    } else if citus_io::state::recorded_backend(cluster).is_some() {
        "the backend that started this cluster"
    } else {
        "the config's `backend`"
    };
    eprintln!("cluster `{}` from {}, backend {b} ({why})", cluster.name, cluster.source.display());
    b
}
