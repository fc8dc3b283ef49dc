//! Guards that remove the containers, networks and volumes a test created, even when it panics.

use std::process::{Command, Stdio};

use crate::process::output;

/// The label compose puts on everything of a project.
const PROJECT_LABEL: &str = "com.docker.compose.project";

/// Removes one container (`docker rm -f -v`) when dropped.
#[derive(Debug)]
pub struct ContainerGuard {
    id: Option<String>,
}

impl ContainerGuard {
    /// Guards the container with this id or name.
    pub fn new(id: impl Into<String>) -> ContainerGuard {
        ContainerGuard { id: Some(id.into()) }
    }

    /// The guarded container's id or name.
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// Stops guarding: the container is left alone. Returns its id.
    pub fn disarm(mut self) -> String {
        self.id.take().unwrap_or_default()
    }

    /// Removes the container now, reporting failure (a container that is
    /// already gone is not a failure).
    pub fn remove(mut self) -> anyhow::Result<()> {
        match self.id.take() {
            Some(id) => remove_container(&id),
            None => Ok(()),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Err(e) = remove_container(&id) {
                crate::need::loud(&format!("ContainerGuard: {e:#}\n"));
            }
        }
    }
}

fn remove_container(id: &str) -> anyhow::Result<()> {
    let out = Command::new("docker").args(["rm", "--force", "--volumes", id]).stdin(Stdio::null()).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("No such container") {
        Ok(())
    } else {
        anyhow::bail!("docker rm -f -v {id} failed: {}", stderr.trim())
    }
}

/// Runs [`cleanup_compose_project`] when dropped.
#[derive(Debug)]
pub struct ComposeProjectGuard {
    compose: Vec<String>,
    project: String,
    armed: bool,
}

impl ComposeProjectGuard {
    /// Guards the compose project `project`; `compose` is `Env::compose`.
    pub fn new(compose: &[String], project: impl Into<String>) -> ComposeProjectGuard {
        ComposeProjectGuard { compose: compose.to_vec(), project: project.into(), armed: true }
    }

    /// The guarded project's name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Stops guarding: the project is left alone.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ComposeProjectGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = cleanup_compose_project(&self.compose, &self.project) {
                crate::need::loud(&format!("ComposeProjectGuard: {e:#}\n"));
            }
        }
    }
}

/// The name compose gives a project (`docker-compose -p`): lower case,
/// only `a-z0-9_-` kept.
pub fn normalize_project_name(project: &str) -> String {
    project.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
}

/// Removes every container, network and volume labelled as belonging to
/// compose project `project` (`docker rm -f -v`, `docker network rm`,
/// `docker volume rm -f`). With the compose v2 plugin it first runs
/// `docker compose -p <project> down -v --remove-orphans`, which needs no
/// compose file; docker-compose v1 does, so the labels do all the work then.
/// Safe to call for a project that does not exist.
pub fn cleanup_compose_project(compose: &[String], project: &str) -> anyhow::Result<()> {
    let project = normalize_project_name(project);
    anyhow::ensure!(!project.is_empty(), "empty compose project name");
    if compose.len() >= 2 && compose[1] == "compose" {
        let _ = Command::new(&compose[0])
            .args(&compose[1..])
            .args(["-p", &project, "down", "--volumes", "--remove-orphans", "--timeout", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let filter = format!("label={PROJECT_LABEL}={project}");
    let mut errors = Vec::new();
    for (what, ls, remove) in KINDS {
        match list(&[ls, &["--filter", &filter]].concat()) {
            Ok(ids) if ids.is_empty() => {}
            Ok(ids) => {
                if let Err(e) = output(Command::new("docker").args(remove).args(&ids)) {
                    errors.push(format!("removing {what} of {project}: {e:#}"));
                }
            }
            Err(e) => errors.push(format!("listing {what} of {project}: {e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", errors.join("; "))
    }
}

/// What a compose project leaves in the engine: how to list each kind, how to remove it.
const KINDS: [(&str, &[&str], &[&str]); 3] = [
    ("containers", &["ps", "--all", "--quiet"], &["rm", "--force", "--volumes"]),
    ("networks", &["network", "ls", "--quiet"], &["network", "rm"]),
    ("volumes", &["volume", "ls", "--quiet"], &["volume", "rm", "--force"]),
];

/// Every container, network and volume labelled as belonging to compose project `project`,
/// each as `<kind> <id>` (`containers 3f2a...`). Empty when the project left nothing behind.
pub fn compose_project_objects(project: &str) -> anyhow::Result<Vec<String>> {
    let filter = format!("label={PROJECT_LABEL}={}", normalize_project_name(project));
    let mut found = Vec::new();
    for (what, ls, _) in KINDS {
        found.extend(list(&[ls, &["--filter", &filter]].concat())?.into_iter().map(|id| format!("{what} {id}")));
    }
    Ok(found)
}

fn list(args: &[&str]) -> anyhow::Result<Vec<String>> {
    let text = output(Command::new("docker").args(args))?;
    let mut ids: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_normalized_like_compose() {
        assert_eq!(normalize_project_name("Citus_Test-1.x"), "citus_test-1x");
    }
}
