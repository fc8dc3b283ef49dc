//! Temporary directories under /tmp that the `postgres` OS user can enter.

use std::fs;
use std::os::unix::fs::PermissionsExt;

pub use tempfile::TempDir;

/// A new directory `/tmp/<prefix>-XXXXXX`, mode 0755 (world-traversable, so
/// servers running as the `postgres` OS user can enter it), deleted with
/// everything in it when the returned [`TempDir`] is dropped.
///
/// # Panics
/// When the directory cannot be created.
pub fn temp_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("temp_dir({prefix:?}): cannot create a directory in /tmp: {e}"));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("temp_dir({prefix:?}): cannot chmod 0755: {e}"));
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dir_is_world_traversable_and_goes_away() {
        let dir = temp_dir("testkit-unit");
        let path = dir.path().to_path_buf();
        assert!(path.starts_with("/tmp"));
        assert!(path.file_name().unwrap().to_str().unwrap().starts_with("testkit-unit-"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        fs::write(path.join("file"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
