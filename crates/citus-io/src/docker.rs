//! The docker backend: write the generated compose file and drive `docker compose`
//! (v2 plugin) or `docker-compose` (v1) with it. No shell sees any argument.

use std::path::PathBuf;

use anyhow::{bail, Context};
use citus_config::Cluster;
use xshell::{cmd, Shell};

use crate::{pg, state, Progress};

/// The compose program: `["docker", "compose"]` (v2) or `["docker-compose"]` (v1).
pub fn compose_program() -> anyhow::Result<Vec<String>> {
    if let Ok(docker) = which::which("docker") {
        let ok = std::process::Command::new(&docker)
            .args(["compose", "version"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(vec![docker.display().to_string(), "compose".into()]);
        }
    }
    if let Ok(v1) = which::which("docker-compose") {
        return Ok(vec![v1.display().to_string()]);
    }
    bail!("neither `docker compose` (v2) nor `docker-compose` (v1) was found: install the Compose plugin (Docker's docker-compose-plugin package) or Debian's `docker-compose` package, or use `--backend local`")
}

/// The compose project name of a cluster: its name, lower-cased, with characters compose
/// does not accept replaced by `-`.
pub fn project_name(cluster: &Cluster) -> String {
    let mut p: String = cluster.name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    if !p.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        p.insert(0, 'c');
    }
    p
}

/// Where the generated compose file for this cluster is written (git-ignored).
pub fn compose_file(cluster: &Cluster) -> PathBuf {
    state::cluster_dir(cluster).join("docker-compose.yml")
}

fn compose(sh: &Shell, cluster: &Cluster, creds: &pg::Credentials, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let program = compose_program()?;
    let project = project_name(cluster);
    let file = compose_file(cluster);
    let (exe, pre) = program.split_first().expect("compose_program returns a program");
    let out = cmd!(sh, "{exe} {pre...} -p {project} -f {file} {args...}")
        .env(&cluster.password.env, &creds.password)
        .ignore_status()
        .quiet()
        .output()
        .context("running docker compose")?;
    Ok(out)
}

/// Writes the compose file and starts every container (detached). Readiness is waited for by
/// the caller, through the client addresses, like every other backend.
pub fn up(cluster: &Cluster, creds: &pg::Credentials, progress: Progress<'_>) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let file = compose_file(cluster);
    std::fs::create_dir_all(state::cluster_dir(cluster))?;
    std::fs::write(&file, citus_compose::render(cluster)).with_context(|| format!("writing {}", file.display()))?;
    state::record_backend(cluster, citus_config::Backend::Docker)?;
    let image = &cluster.docker.image;
    let have_image = cmd!(sh, "docker image inspect --format . {image}").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    if !have_image {
        progress(&format!("image {image} is not on this machine; docker compose will try to pull it"));
    }
    progress(&format!("docker compose: starting project {} from {}", project_name(cluster), file.display()));
    let out = compose(&sh, cluster, creds, &["up", "-d"])?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let hint = if !have_image || err.contains("pull") || err.contains("not found") || err.contains("manifest") {
            format!(
                "\n    fix: image {image} is not available here and could not be pulled. Load or build it locally (`docker load`, `docker build`, `docker import`), or set [docker] image in {} to an image this machine has",
                cluster.source.display()
            )
        } else if err.contains("port is already allocated") || err.contains("address already in use") {
            format!("\n    fix: a client port is taken; change the `port` of that node in {}", cluster.source.display())
        } else {
            String::new()
        };
        bail!("docker compose up failed for project {} ({}): {}{hint}", project_name(cluster), out.status, err.trim());
    }
    Ok(())
}

/// Stops and removes the containers; removes the volumes (the data) only when `purge`.
pub fn down(cluster: &Cluster, creds: &pg::Credentials, purge: bool, progress: Progress<'_>) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let file = compose_file(cluster);
    if !file.exists() {
        std::fs::create_dir_all(state::cluster_dir(cluster))?;
        std::fs::write(&file, citus_compose::render(cluster))?;
    }
    let args: &[&str] = if purge { &["down", "--volumes", "--remove-orphans"] } else { &["down", "--remove-orphans"] };
    let out = compose(&sh, cluster, creds, args)?;
    if !out.status.success() {
        bail!("docker compose down failed for project {}: {}", project_name(cluster), String::from_utf8_lossy(&out.stderr).trim());
    }
    progress(&format!(
        "docker compose: project {} stopped{}",
        project_name(cluster),
        if purge { ", volumes removed" } else { "; volumes kept (`down --purge` removes them)" }
    ));
    if purge {
        let _ = std::fs::remove_file(&file);
        state::forget(cluster);
    }
    Ok(())
}
