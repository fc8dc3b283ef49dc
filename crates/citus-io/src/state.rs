//! Where a cluster's local files live (data, generated compose file, which backend started it).

use std::path::{Path, PathBuf};

use citus_config::{Backend, Cluster};

/// The cluster's own folder: `<local.data_dir>/<name>`.
pub fn cluster_dir(cluster: &Cluster) -> PathBuf {
    cluster.local.data_dir.join(&cluster.name)
}

fn backend_file(cluster: &Cluster) -> PathBuf {
    cluster_dir(cluster).join("backend")
}

/// Remembers which backend started the cluster, so later `setup`/`verify` use its addresses.
pub fn record_backend(cluster: &Cluster, backend: Backend) -> std::io::Result<()> {
    std::fs::create_dir_all(cluster_dir(cluster))?;
    std::fs::write(backend_file(cluster), backend.as_str())
}

/// The backend that last started this cluster, if this machine started it.
pub fn recorded_backend(cluster: &Cluster) -> Option<Backend> {
    std::fs::read_to_string(backend_file(cluster)).ok()?.trim().parse().ok()
}

/// Picks the backend: the command line, else the one that started the cluster, else the config's.
pub fn choose_backend(cluster: &Cluster, explicit: Option<Backend>) -> Backend {
    explicit.or_else(|| recorded_backend(cluster)).unwrap_or(cluster.backend)
}

/// Removes the recorded backend (after `down --purge`).
pub fn forget(cluster: &Cluster) {
    let _ = std::fs::remove_file(backend_file(cluster));
    let _ = std::fs::remove_dir(cluster_dir(cluster));
}

/// True when `path` exists and is a non-empty directory.
pub fn non_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false)
}
