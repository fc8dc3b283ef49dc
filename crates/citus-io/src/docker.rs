//! The docker backend: write the generated compose file and drive `docker compose`
//! (v2 plugin) or `docker-compose` (v1) with it. No shell sees any argument.

use std::{
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use citus_config::{Cluster, Node};
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

/// Fails, naming the fix, when the Docker engine does not answer (not running, another
/// `DOCKER_HOST`, no access to its socket). Called when a docker command failed, to tell that
/// from the command's own failure (a missing image, say); costs nothing while all goes well.
pub fn ensure_engine() -> anyhow::Result<()> {
    let out = duct::cmd("docker", ["version", "--format", "{{.Server.Version}}"])
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .map_err(|e| not_run(e, "docker version"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let why = text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no output");
    let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()).map_or_else(String::new, |h| format!(" at DOCKER_HOST={h}"));
    bail!(
        "the Docker engine{host} does not answer: {why}\n    fix: start it (`sudo systemctl start docker`, or Docker Desktop), check DOCKER_HOST and that this user may use the engine's socket (the `docker` group), or use `--backend local`"
    )
}

/// The error of a `docker` command that could not be started: with the fix when there is no
/// `docker` program at all (a machine without Docker, where the config's default backend is
/// Docker), else the OS's error.
fn not_run(e: std::io::Error, what: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "running {what}: no `docker` program on PATH\n    fix: install Docker (Debian: `apt-get install docker.io`, or Docker Desktop), or use `--backend local` (or `backend = \"local\"` in the config)"
        )
    } else {
        anyhow::Error::new(e).context(format!("running {what}"))
    }
}

pub use citus_compose::project_name;

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

/// Refuses a compose project another cluster folder made, pulls the image if
/// needed, has `postgres -C` check a changed command of running containers
/// (`check_settings`), then writes the compose file, starts every container (detached) and
/// waits until every node accepts a login at its client address. A container that exits (or
/// restarts) before that fails the wait at once, with the tail of its log and the likely fix.
/// Holds the cluster's [`state::UpLock`] from the pull on: a concurrent `up` of it waits.
/// Once it holds it, writes `workers` to the cluster's record ([`state::lock_up`]).
pub fn up(cluster: &Cluster, creds: &pg::Credentials, workers: state::WorkersRecord, progress: Progress<'_>) -> anyhow::Result<crate::Ready> {
    let sh = Shell::new()?;
    check_ports(cluster)?;
    check_owner(cluster, "up")?;
    let _lock = state::lock_up(cluster, workers, progress)?;
    let image = &cluster.docker.image;
    let format = "{{json .Config}}";
    let inspect = || cmd!(sh, "docker image inspect --format {format} {image}").quiet().ignore_stderr().read().ok();
    let mut config = inspect();
    let have_image = config.is_some();
    if !have_image {
        // Not "no such image" when the engine itself does not answer.
        ensure_engine()?;
    }
    let missing_image = || {
        format!(
            "\n    fix: image {image} is not available here and could not be pulled. Load or build it locally (`docker load`, `docker build`, `docker import`), or set [docker] image in {} to an image this machine has{}",
            cluster.source.display(),
            local_alternative(cluster).unwrap_or_default()
        )
    };
    if !have_image {
        // Pulled on its own first, once (every node runs this image): `up` would create the
        // project's network and volumes before it pulls, and leave them behind when the pull
        // fails. docker's progress goes to stderr with ours; its error is kept for the message.
        progress(&format!("image {image} is not on this machine: docker pull {image}"));
        let out = duct::cmd("docker", ["pull", image.as_str()]).stdout_to_stderr().stderr_capture().unchecked().run().context("running docker pull")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(
                "docker pull {image} failed ({}); no container, network or volume of project {} was created: {}{}",
                out.status,
                project_name(cluster),
                err.trim(),
                missing_image()
            );
        }
        config = inspect();
    }
    if let Some(why) = config.as_deref().and_then(|c| data_outside_the_volume(c, cluster.docker.data_mount())) {
        bail!(
            "image {image} would keep the nodes' data outside their volumes ({why}): it would be lost when a container is made anew, and nothing was started.\n    fix: set [docker] pg_major in {} to the PostgreSQL major version of {image} (the volume goes to /var/lib/postgresql/data before 18, /var/lib/postgresql from 18 on), or use an image of that major",
            cluster.source.display()
        );
    }
    check_settings(cluster, progress)?;
    check_ports_free(cluster)?;
    // Recorded once the image is here and the settings passed (a missing image or a refused
    // setting makes nothing, and leaves the backend of the last `up` that did, or the
    // config's, to the next task).
    state::record_backend(cluster, citus_config::Backend::Docker)?;
    // Written only now: after a refused check it would hold a command no container runs.
    let file = compose_file(cluster);
    std::fs::write(&file, citus_compose::render_owned(cluster, &owner_dir(cluster))).with_context(|| format!("writing {}", file.display()))?;
    progress(&format!("docker compose: starting project {} from {}", project_name(cluster), file.display()));
    let out = compose(&sh, cluster, creds, &["up", "-d"])?;
    if !out.status.success() {
        ensure_engine()?;
        let err = String::from_utf8_lossy(&out.stderr);
        let hint = if err.contains("pull") || err.contains("not found") || err.contains("manifest") {
            missing_image()
        } else if err.contains("port is already allocated") || err.contains("address already in use") {
            match node_of_taken_port(cluster, &err) {
                Some(n) => format!(
                    "\n    fix: {}'s client port {} ({}:{}) is taken by another program or container (`ss -ltnp 'sport = :{}'` or `docker ps --filter publish={}` shows which): stop it, or {}",
                    n.name,
                    n.client.port,
                    cluster.docker.bind,
                    n.client.port,
                    n.client.port,
                    n.client.port,
                    cluster.port_fix(n)
                ),
                None => format!("\n    fix: a client port is taken; change the `port` of that node in {}", cluster.source.display()),
            }
        } else {
            format!(
                "\n    fix: see compose's message; `docker ps -a --filter label=com.docker.compose.project={}` lists the project's containers, and `cargo xtask down` then `cargo xtask up` starts them anew (volumes kept)",
                project_name(cluster)
            )
        };
        bail!("docker compose up failed for project {} ({}): {}{hint}", project_name(cluster), out.status, compose_errors(&err));
    }
    let deadline = Instant::now() + Duration::from_secs(cluster.ready_timeout_secs);
    wait_ready(cluster, creds, deadline, progress)
}

/// Fails, naming both folders and the fix, when containers of this cluster's compose project
/// were created from another cluster folder than this config's: two configs with the same
/// `name` (two checkouts of one repository, a copied citus.toml elsewhere) share one compose
/// project, its containers and its volumes, so this config's `up` would take the other's
/// containers over and its `down --purge` would delete the other's data. Containers are
/// compared by compose's `working_dir` label (the folder of the compose file, the cluster's
/// folder), data volumes by the [`citus_compose::OWNER_LABEL`] the tool's compose file gives
/// them. A volume made before that label existed has none and is not told apart.
fn check_owner(cluster: &Cluster, task: &str) -> anyhow::Result<()> {
    let ours = state::cluster_dir(cluster);
    let ours_abs = owner_dir(cluster);
    let same = |theirs: &str| {
        let theirs = std::path::Path::new(theirs);
        theirs == std::path::Path::new(&ours_abs) || matches!((std::fs::canonicalize(theirs), std::fs::canonicalize(&ours)), (Ok(a), Ok(b)) if a == b)
    };
    let project = project_name(cluster);
    let cluster_dirs = |what: &str, found: Vec<(String, String)>| -> anyhow::Result<()> {
        let others: Vec<&(String, String)> = found.iter().filter(|(_, dir)| !dir.is_empty() && !same(dir)).collect();
        let Some((_, theirs)) = others.first() else { return Ok(()) };
        let names: Vec<&str> = others.iter().map(|(n, _)| n.as_str()).collect();
        let otherwise = if what == "volume(s)" {
            format!("or use that data from {theirs}'s config; if that folder was this cluster's and is gone, only deleting the data by name frees the project: `docker volume rm {}`", names.join(" "))
        } else {
            format!("or, if that folder is this cluster moved or deleted, remove those containers (their volumes, the data, stay): `docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={project})`")
        };
        bail!(
            "{task}: compose project `{project}` belongs to another cluster: its {what} {} were made from the cluster folder {theirs}, and this config ({}) keeps its cluster in {ours_abs}; both are named `{}`, so they share one compose project, its containers and its volumes, and `{task}` would act on the other's\n    \
             fix: give this cluster its own `name` in {}; {otherwise}",
            names.join(", "),
            cluster.source.display(),
            cluster.name,
            cluster.source.display(),
        )
    };
    let found = containers(cluster)?;
    // Started by hand (`docker compose -f compose/docker-compose.yml up`, or any file without
    // this tool's owner label), not by an `up` of another cluster folder: their own file stops
    // them, and the volumes, which such a file does not label, stay for this cluster.
    // compose v1 labels the files as given on its command line, relative to where it ran;
    // the working folder is the first file's, absolute.
    let file_of = |c: &Container| -> Option<std::path::PathBuf> {
        let first = std::path::Path::new(c.config_files.split(',').next()?);
        Some(if first.is_absolute() { first.to_path_buf() } else { std::path::Path::new(&c.working_dir).join(first.file_name()?) })
    };
    let mut by_hand: Vec<(&Container, std::path::PathBuf)> = found
        .iter()
        .filter(|c| !c.working_dir.is_empty() && !same(&c.working_dir))
        // A cluster folder of this tool (an older version wrote its file without the owner
        // label): another cluster's, refused as such below.
        .filter(|c| !state::is_cluster_dir(std::path::Path::new(&c.working_dir)))
        .filter_map(|c| file_of(c).map(|f| (c, f)))
        .filter(|(_, f)| std::fs::read_to_string(f).is_ok_and(|text| !text.contains(citus_compose::OWNER_LABEL)))
        .collect();
    by_hand.sort_by_key(|(c, _)| cluster.nodes().position(|n| n.name == c.service));
    if let Some((_, file)) = by_hand.first() {
        let names: Vec<&str> = by_hand.iter().map(|(c, _)| c.service.as_str()).collect();
        // The variable that file takes the password from (`${NAME:?...}`), for its own `down`.
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let var = text
            .split("${")
            .nth(1)
            .map(|r| r.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| cluster.password.env.clone());
        bail!(
            "{task}: the containers {} of compose project `{project}` were started from {}, not by `cargo xtask up` of this cluster (whose compose file is {}); `{task}` leaves them alone\n    \
             fix: stop them with that file, which keeps their volumes (the data): `{}=... {} -p {project} -f {} down`{}",
            names.join(", "),
            file.display(),
            compose_file(cluster).display(),
            var,
            // The compose this machine has, as a user types it.
            if compose_program().is_ok_and(|p| p.len() == 1) { "docker-compose" } else { "docker compose" },
            file.display(),
            match task {
                "up" => ", then run `cargo xtask up` again: it starts this cluster on those volumes",
                "down" => " (what `down` would have done)",
                _ => ", then run `cargo xtask down --purge` again to delete the volumes",
            }
        );
    }
    cluster_dirs("container(s)", found.into_iter().map(|c| (c.service, c.working_dir)).collect())?;
    // A volume made by an earlier version has no label, and belongs to whoever uses it.
    cluster_dirs("volume(s)", volume_owners(cluster)?)
}

/// The node whose client port docker's error names as taken ("Bind for 127.0.0.1:5601
/// failed: port is already allocated", "listen tcp4 127.0.0.1:5601: bind: address already in
/// use"): the port follows a `:` and no digit follows it.
fn node_of_taken_port<'c>(cluster: &'c Cluster, err: &str) -> Option<&'c Node> {
    let line = err.lines().find(|l| l.contains("port is already allocated") || l.contains("address already in use"))?;
    cluster.nodes().find(|n| {
        let p = format!(":{}", n.client.port);
        line.match_indices(&p).any(|(i, _)| !line[i + p.len()..].starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Compose's stderr without its progress lines, for an error message: v2 prints a line per
/// network, volume and container step (` Container p-w1-1  Started`), v1 one per step and
/// object (`Creating p_w1_1 ... done`, `Creating network "p_net" with the default driver`),
/// and a failed `up` of three nodes buried its one error line in 20 of them. Every other line
/// is kept, in order; when nothing else is left the text is returned whole.
fn compose_errors(stderr: &str) -> String {
    const STEPS: [&str; 16] = [
        "Creating",
        "Created",
        "Starting",
        "Started",
        "Waiting",
        "Healthy",
        "Running",
        "Recreate",
        "Recreated",
        "Stopping",
        "Stopped",
        "Removing",
        "Removed",
        "Pulling",
        "Pulled",
        "Recreating",
    ];
    let progress = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => true,
            // v2: `Network|Volume|Container|Image NAME  STEP`
            [kind, _, step] if ["Network", "Volume", "Container", "Image"].contains(kind) => STEPS.contains(step),
            // v1: `Creating NAME ...`, `Creating NAME ... done`, `Creating network "N" with the default driver`
            [step, rest @ ..] if STEPS.contains(step) => {
                matches!(rest, [_, "..."] | [_, "...", "done"])
                    || rest.ends_with(&["with", "the", "default", "driver"])
                    || rest.ends_with(&["with", "default", "driver"])
            }
            _ => false,
        }
    };
    let kept: Vec<&str> = stderr.lines().filter(|l| !progress(l)).map(str::trim_end).collect();
    if kept.is_empty() {
        stderr.trim().to_string()
    } else {
        kept.join("\n").trim().to_string()
    }
}

/// Refuses two nodes with one client port: compose publishes every port on `[docker] bind`,
/// whatever each node's `host`, so the second would fail with "port is already allocated"
/// after the first started.
pub fn check_ports(cluster: &Cluster) -> anyhow::Result<()> {
    let nodes: Vec<&Node> = cluster.nodes().collect();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(m) = nodes[..i].iter().find(|m| m.client.port == n.client.port) {
            bail!(
                "nodes {} ({}) and {} ({}) have one client port, {}: on Docker every node's port is published on [docker] bind ({}), whatever its host\n    \
                 fix: give {} its own `port` in {}",
                m.name,
                m.client,
                n.name,
                n.client,
                n.client.port,
                cluster.docker.bind,
                n.name,
                cluster.source.display()
            );
        }
    }
    Ok(())
}

/// Refuses, before compose creates or starts anything, a client port that another program
/// (or another container's published port) holds on `[docker] bind`, naming it: compose would
/// start the other nodes, then fail on that one with only docker's "address already in use".
/// The ports of this cluster's own containers that may hold them (running, restarting, paused
/// or being removed) are theirs, and not checked.
fn check_ports_free(cluster: &Cluster) -> anyhow::Result<()> {
    let Ok(ip) = cluster.docker.bind.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() else { return Ok(()) };
    let running: Vec<String> =
        containers(cluster)?.into_iter().filter(|c| matches!(c.state.as_str(), "running" | "restarting" | "paused" | "removing")).map(|c| c.service).collect();
    for n in cluster.nodes().filter(|n| !running.contains(&n.name)) {
        let taken = std::net::TcpListener::bind((ip, n.client.port)).is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse);
        if !taken {
            continue;
        }
        let (by, what) = match crate::local::holder(n.client.port) {
            Some(h) if h.starts_with("docker-proxy") => {
                (format!(" by a container's published port ({h}; `docker ps --filter publish={}` names it)", n.client.port), "that container")
            }
            Some(h) => (format!(" by {h}"), "that program"),
            None => (format!(" (`ss -ltnp 'sport = :{}'` or `docker ps --filter publish={}` shows by what)", n.client.port, n.client.port), "it"),
        };
        bail!(
            "node {}: client port {} ({}, where Docker would publish it) is already in use{by}; nothing was started\n    fix: stop {what}, or {}",
            n.name,
            n.client.port,
            std::net::SocketAddr::from((ip, n.client.port)),
            cluster.port_fix(n)
        );
    }
    Ok(())
}

/// This cluster's folder as an absolute path: the owner label of its volumes.
fn owner_dir(cluster: &Cluster) -> String {
    let dir = state::cluster_dir(cluster);
    std::path::absolute(&dir).unwrap_or(dir).display().to_string()
}

/// The project's volumes, each with its [`citus_compose::OWNER_LABEL`] (empty when unlabelled).
fn volume_owners(cluster: &Cluster) -> anyhow::Result<Vec<(String, String)>> {
    let label = format!("label=com.docker.compose.project={}", project_name(cluster));
    let format = format!("{{{{.Name}}}}\t{{{{.Label \"{}\"}}}}", citus_compose::OWNER_LABEL);
    let out = std::process::Command::new("docker")
        .args(["volume", "ls", "--filter", &label, "--format", &format])
        .output()
        .map_err(|e| not_run(e, "docker volume ls"))?;
    if !out.status.success() {
        ensure_engine()?;
        bail!("docker volume ls failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_once('\t')).map(|(n, o)| (n.to_string(), o.to_string())).collect())
}

/// What `docker inspect` says of a container, as far as the tool reads it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Inspected {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Config")]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig", default)]
    pub host: HostConfig,
}

/// The command a container runs, its environment (where the image's `PGDATA` is) and its image.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Image", default)]
    pub image: Option<String>,
}

/// The ports a container publishes: container port (`5432/tcp`) to host addresses.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct HostConfig {
    #[serde(rename = "PortBindings", default)]
    pub ports: Option<std::collections::BTreeMap<String, Option<Vec<PortBinding>>>>,
}

/// One host address a container port is published on.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PortBinding {
    #[serde(rename = "HostIp", default)]
    pub ip: String,
    #[serde(rename = "HostPort", default)]
    pub port: String,
}

impl Inspected {
    /// The environment variable `name` of the container.
    fn env(&self, name: &str) -> Option<&str> {
        self.config.env.iter().flatten().find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
    }

    /// What `docker compose up` would change of this container of `node`, by name: the `-c`
    /// options of its command that differ from the config's (see [`changed_options`]),
    /// `image` and `port` (the published client address). Empty when nothing differs.
    pub fn pending(&self, cluster: &Cluster, node: &Node) -> Vec<String> {
        let command = citus_compose::server_command(cluster);
        let mut names = match &self.config.cmd {
            Some(cmd) => changed_options(cmd, &command),
            None => vec!["command".to_string()],
        };
        if self.config.image.as_deref().is_some_and(|i| i != cluster.docker.image) {
            names.push("image".into());
        }
        let published: Vec<&PortBinding> = self
            .host
            .ports
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(&format!("{}/", citus_compose::CONTAINER_PORT)))
            .flat_map(|(_, v)| v.iter().flatten())
            .collect();
        let bind = cluster.docker.bind.trim_start_matches('[').trim_end_matches(']');
        if !published.iter().any(|b| b.port == node.client.port.to_string() && b.ip == bind) {
            names.push("port".into());
        }
        names
    }
}

/// Each of `ids` as `docker inspect` sees it, in their order (one `docker inspect`); `None`
/// for one that is gone (removed meanwhile).
pub fn inspect(ids: &[&str]) -> anyhow::Result<Vec<Option<Inspected>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = std::process::Command::new("docker").arg("inspect").args(ids).output().context("running docker inspect")?;
    let found: Vec<Inspected> = match serde_json::from_slice(&out.stdout) {
        Ok(found) => found,
        Err(_) if !out.status.success() => {
            ensure_engine()?;
            Vec::new()
        }
        Err(e) => return Err(e).context("reading docker inspect's output"),
    };
    Ok(match_ids(ids, found))
}

/// `found` in the order of `ids` (full or short container ids), `None` where one is missing.
fn match_ids(ids: &[&str], found: Vec<Inspected>) -> Vec<Option<Inspected>> {
    ids.iter().map(|id| found.iter().find(|f| !id.is_empty() && f.id.starts_with(id)).cloned()).collect()
}

/// What a container started with `old` lacks of `new` (both as the server receives them,
/// see [`citus_compose::server_command`]): the names of the `-c` options whose value differs,
/// is new or is gone, sorted; `command` when the commands differ otherwise; empty when
/// they are the same.
pub fn changed_options(old: &[String], new: &[String]) -> Vec<String> {
    if old == new {
        return Vec::new();
    }
    fn options(cmd: &[String]) -> (std::collections::BTreeMap<&str, &str>, Vec<&str>) {
        let (mut opts, mut rest) = (std::collections::BTreeMap::new(), Vec::new());
        let mut args = cmd.iter();
        while let Some(a) = args.next() {
            let option = if a == "-c" { args.next().map(String::as_str) } else { a.strip_prefix("-c") };
            match option.and_then(|o| o.split_once('=')) {
                Some((name, value)) => {
                    opts.insert(name, value);
                }
                None => rest.push(a.as_str()),
            }
        }
        (opts, rest)
    }
    let ((o, o_rest), (n, n_rest)) = (options(old), options(new));
    let mut names: Vec<String> = o.keys().chain(n.keys()).filter(|k| o.get(*k) != n.get(*k)).map(|k| k.to_string()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() || o_rest != n_rest {
        names.push("command".into());
    }
    names
}

/// Before `docker compose up` recreates running containers because the config's `[settings]`
/// (or libraries) changed their command, has each such node's server parse the new command
/// without starting: `postgres -D <its data> -C port` with the new `-c` options, in a
/// throwaway container of the config's image (no network) with the node's volumes mounted
/// read-only, beside the running server, all such nodes at once. A setting the server
/// refuses (an unknown name or a refused value) then fails `up` while every container still
/// runs as before. When the check fails for another reason (docker's own errors, a data
/// directory the image's `postgres` user cannot read, such as one made by another image), it
/// says so and the recreate goes ahead: the new container's start reports what is wrong. Not
/// checked, as on the local backend: an extension's own settings and what the server checks
/// later in its start (combinations, shared memory, preloaded libraries). Without
/// `[settings]` there is nothing `-C` could refuse, and nothing runs.
fn check_settings(cluster: &Cluster, progress: Progress<'_>) -> anyhow::Result<()> {
    if cluster.settings.is_empty() {
        return Ok(());
    }
    // Listed again, not taken from `check_owner`: that list is from before the up lock, and an
    // `up` or `down` that held the lock meanwhile may have recreated or removed containers.
    let running: Vec<(&Node, Container)> = {
        let found = containers(cluster)?;
        cluster.nodes().filter_map(|n| found.iter().find(|c| c.service == n.name && c.state == "running").map(|c| (n, c.clone()))).collect()
    };
    if running.is_empty() {
        return Ok(());
    }
    let command = citus_compose::server_command(cluster);
    let ids: Vec<&str> = running.iter().map(|(_, c)| c.id.as_str()).collect();
    let mut changed: Vec<(&Node, &Container, String)> = Vec::new();
    for ((node, c), seen) in running.iter().zip(inspect(&ids)?) {
        let Some(seen) = seen else {
            progress(&format!("{}: its container {} is gone; compose creates it anew", node.name, c.id));
            continue;
        };
        if seen.config.cmd.as_deref() == Some(command.as_slice()) {
            continue;
        }
        progress(&format!(
            "{}: the config changed {}: `postgres -C` checks the new command before compose recreates its container",
            node.name,
            changed_options(seen.config.cmd.as_deref().unwrap_or_default(), &command).join(", ")
        ));
        let pgdata = seen.env("PGDATA").unwrap_or(cluster.docker.data_mount()).to_string();
        changed.push((*node, c, pgdata));
    }
    // `Ok(Some(lines))`: the server refused a setting, and these are what it printed.
    let check = |node: &Node, c: &Container, pgdata: &str| -> anyhow::Result<Option<String>> {
        let volumes = format!("{}:ro", c.id);
        let mut args = vec!["run", "--rm", "--network", "none", "--volumes-from", &volumes, "--user", "postgres", "--entrypoint", "postgres"];
        args.extend([cluster.docker.image.as_str(), "-D", pgdata, "-C", "port"]);
        args.extend(command[1..].iter().map(String::as_str));
        let out = duct::cmd("docker", &args).stdout_null().stderr_capture().unchecked().run().context("running docker run")?;
        if out.status.success() {
            return Ok(None);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if matches!(crate::StartFailure::read(&err), Some(crate::StartFailure::BadSetting(_))) {
            return Ok(Some(err.into_owned()));
        }
        // No verdict on the settings: docker's own failure (125-127), or one of the data.
        progress(&format!("{}: could not check the settings ({}: {}); recreating it anyway", node.name, out.status, err.trim()));
        Ok(None)
    };
    let results: Vec<anyhow::Result<Option<String>>> = std::thread::scope(|s| {
        changed.iter().map(|(n, c, d)| s.spawn(|| check(n, c, d))).collect::<Vec<_>>().into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    let nodes: Vec<&Node> = changed.iter().map(|(n, _, _)| *n).collect();
    let pgdata = |n: &Node| changed.iter().find(|(c, _, _)| c.name == n.name).map_or(String::new(), |(_, _, d)| d.clone());
    crate::settings_outcome(cluster, &nodes, results, "no container was recreated (they run as before)", "cargo xtask up", |n| {
        format!("the node's config files in its volume (`{}` in the container)", pgdata(n))
    })
}

/// One container of a compose project, as `docker ps -a` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// The compose service, which is the node's name.
    pub service: String,
    /// `created`, `running`, `restarting`, `exited`, `dead`, ...
    pub state: String,
    /// The folder of the compose file it was created from (compose's
    /// `com.docker.compose.project.working_dir` label, absolute; empty when unlabelled).
    pub working_dir: String,
    /// Human-readable status, e.g. `Exited (1) 2 seconds ago`.
    pub status: String,
    /// The compose file(s) it was created from (compose's
    /// `com.docker.compose.project.config_files` label, comma-separated; empty when unlabelled).
    pub config_files: String,
}

/// When this machine's own PostgreSQL has Citus (its `citus.so` in the `lib` folder beside
/// the server binaries, as in Debian's and a source build's layout), the hint that the
/// local backend runs the same cluster without an image.
fn local_alternative(cluster: &Cluster) -> Option<String> {
    let local = crate::local::detect(cluster).ok()?;
    let lib = local.bin_dir.parent()?.join("lib").join("citus.so");
    lib.exists().then(|| {
        format!(
            "; or run the nodes as local processes of this machine's PostgreSQL, which has Citus ({}): `cargo xtask up --backend local`",
            local.bin_dir.display()
        )
    })
}

/// Why the image whose `docker image inspect` `.Config` is `config_json` would keep its data
/// outside the named volume mounted at `mount`, if it would: its `PGDATA` (the official
/// entrypoint's `/var/lib/postgresql/data` when it sets none) is not under the mount, or a
/// `VOLUME` the image declares under the mount holds it, so that an anonymous volume of the
/// container's own gets the data (an image of PostgreSQL 18 under `pg_major` 17, or one of 17
/// under 18). `None` when the data goes into the volume, or the JSON cannot be read.
fn data_outside_the_volume(config_json: &str, mount: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ImageConfig {
        #[serde(rename = "Env", default)]
        env: Option<Vec<String>>,
        #[serde(rename = "Volumes", default)]
        volumes: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    }
    let config: ImageConfig = serde_json::from_str(config_json.trim()).ok()?;
    let pgdata = config.env.unwrap_or_default().iter().find_map(|e| e.strip_prefix("PGDATA=").map(str::to_string));
    let pgdata = pgdata.unwrap_or_else(|| "/var/lib/postgresql/data".to_string());
    let under = |path: &str, dir: &str| {
        let (path, dir) = (path.trim_end_matches('/'), dir.trim_end_matches('/'));
        path == dir || path.starts_with(&format!("{dir}/"))
    };
    if !under(&pgdata, mount) {
        return Some(format!("its PGDATA {pgdata} is not under the volume's mount {mount}"));
    }
    let shadowing = config.volumes.unwrap_or_default().into_keys().find(|v| v.trim_end_matches('/') != mount && under(v, mount) && under(&pgdata, v));
    shadowing.map(|v| format!("it declares VOLUME {v}, which holds its PGDATA {pgdata} inside the volume's mount {mount}"))
}

/// The containers of `cluster`'s compose project. It asks the engine by compose's labels,
/// which compose v1 and v2 both set, so it works with either.
pub fn containers(cluster: &Cluster) -> anyhow::Result<Vec<Container>> {
    let label = format!("label=com.docker.compose.project={}", project_name(cluster));
    let format = "{{.ID}}\t{{.Label \"com.docker.compose.service\"}}\t{{.State}}\t{{.Label \"com.docker.compose.project.working_dir\"}}\t{{.Status}}\t{{.Label \"com.docker.compose.project.config_files\"}}";
    let out = std::process::Command::new("docker").args(["ps", "-a", "--filter", &label, "--format", format]).output().map_err(|e| not_run(e, "docker ps"))?;
    if !out.status.success() {
        ensure_engine()?;
        bail!("docker ps failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(parse_ps(&String::from_utf8_lossy(&out.stdout)))
}

/// The names of the volumes of `cluster`'s compose project (by compose's project label).
pub fn volumes(cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let sh = Shell::new()?;
    let label = format!("label=com.docker.compose.project={}", project_name(cluster));
    let out = cmd!(sh, "docker volume ls --quiet --filter {label}").quiet().ignore_stderr().read().context("running docker volume ls")?;
    Ok(out.lines().map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect())
}

fn parse_ps(text: &str) -> Vec<Container> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Container {
                id: f.next()?.to_string(),
                service: f.next()?.to_string(),
                state: f.next()?.to_string(),
                working_dir: f.next().unwrap_or("").to_string(),
                status: f.next().unwrap_or("").to_string(),
                config_files: f.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The last `lines` lines of a container's log, indented and marked, for error messages.
pub fn log_tail(id: &str, lines: usize) -> String {
    match logs(id, lines) {
        Ok(text) => text.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n"),
        Err(e) => format!("    ({e:#})"),
    }
}

/// Has the child get SIGTERM when the thread that spawned it ends (Linux's
/// `PR_SET_PDEATHSIG`), which is also when this process dies, however it dies: killed by pid
/// alone (`kill P`, which reaches no other process) or with SIGKILL, `logs --follow` would
/// otherwise leave its `docker logs --follow` children following their containers until `down`
/// removes them. Each follower thread waits for its `docker logs` to end before it goes on or
/// returns, except when it fails, and then the child should end too.
fn ends_with_its_thread(c: &mut std::process::Command) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: between fork and exec the closure only makes system calls (prctl, getppid),
    // which are async-signal-safe, and allocates nothing (an OS error code is no allocation).
    unsafe {
        c.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl: no signal would come.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    };
    Ok(())
}

/// Follows the logs of `nodes`' containers (`docker logs --follow`, one per container, all at
/// once): `line` gets each node and line, the last `lines` first, then every new one. `docker
/// logs --follow` ends when its container stops; the node is then followed again, from its last
/// line, once a container of its service runs (the same one started again, or the one `up` made
/// anew), and its follow ends when its service has had no container for 5 s (`down`
/// removed it). Returns when every node's has ended, or once `line` breaks (its reader went
/// away: `| head`), having stopped every `docker logs` it started.
pub fn follow_logs(
    cluster: &Cluster,
    nodes: &[(&Node, &str)],
    lines: usize,
    line: &(dyn Fn(&Node, &str) -> std::ops::ControlFlow<()> + Sync),
    progress: Progress<'_>,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    // Set once `line` breaks; every follow then ends, and the `docker logs` of the others,
    // blocked reading a quiet container, are killed to let them see it.
    let stop = AtomicBool::new(false);
    let live: Mutex<Vec<Arc<duct::ReaderHandle>>> = Mutex::new(Vec::new());
    let stop_all = || {
        stop.store(true, Ordering::SeqCst);
        for r in live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = r.kill();
        }
    };
    let (stop, live, stop_all) = (&stop, &live, &stop_all);
    std::thread::scope(|s| {
        let followers: Vec<_> = nodes
            .iter()
            .map(|&(node, id)| {
                s.spawn(move || -> anyhow::Result<()> {
                    let mut id = id.to_string();
                    // Each line comes with docker's timestamp (`--timestamps`, taken off before it
                    // is printed): a follow attached again starts `--since` the last line's, and
                    // skips the lines of that instant it printed already, so that no line is lost
                    // or printed twice however late `docker logs` noticed the stop. Before any
                    // line, it starts from when the first follow was attached.
                    let first = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    let first = format!("{}.{:09}", first.as_secs(), first.subsec_nanos());
                    let (mut last, mut printed_at_last): (Option<String>, Vec<String>) = (None, Vec::new());
                    let mut attached_before = false;
                    // `docker logs --follow` that ends at once while the same container runs
                    // (a logging driver it cannot read, a daemon error) is not retried for ever.
                    let mut quick_ends = 0;
                    loop {
                        let attached = std::time::Instant::now();
                        let run = started_at(&id);
                        let from = match (&last, attached_before) {
                            (Some(t), _) => ["--since".to_string(), t.clone()],
                            (None, true) => ["--since".to_string(), first.clone()],
                            (None, false) => ["--tail".to_string(), lines.to_string()],
                        };
                        attached_before = true;
                        let again = last.clone();
                        let reader = Arc::new(
                            duct::cmd("docker", ["logs", "--follow", "--timestamps", &from[0], &from[1], id.as_str()])
                                .before_spawn(ends_with_its_thread)
                                .stderr_to_stdout()
                                .unchecked()
                                .reader()
                                .with_context(|| format!("running docker logs --follow {id} ({})", node.name))?,
                        );
                        live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Arc::clone(&reader));
                        if stop.load(Ordering::SeqCst) {
                            // `stop_all` ran before this one was in `live`: a dropped reader
                            // leaves its child running.
                            let _ = reader.kill();
                            return Ok(());
                        }
                        for l in std::io::BufReader::new(&*reader).split(b'\n') {
                            let Ok(l) = l else {
                                if stop.load(Ordering::SeqCst) {
                                    return Ok(());
                                }
                                return Err(l.unwrap_err()).with_context(|| format!("reading docker logs of {id} ({})", node.name));
                            };
                            let text = String::from_utf8_lossy(&l);
                            let text = text.trim_end_matches('\r');
                            let Some((ts, message)) = text.split_once(' ').filter(|(ts, _)| is_docker_timestamp(ts)) else {
                                // docker's own words (an error), not a line of the log.
                                if line(node, text).is_break() {
                                    stop_all();
                                    return Ok(());
                                }
                                continue;
                            };
                            if again.as_deref() == Some(ts) && printed_at_last.iter().any(|p| p == message) {
                                continue;
                            }
                            if last.as_deref() != Some(ts) {
                                last = Some(ts.to_string());
                                printed_at_last.clear();
                            }
                            printed_at_last.push(message.to_string());
                            if line(node, message).is_break() {
                                stop_all();
                                return Ok(());
                            }
                        }
                        live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|r| !Arc::ptr_eq(r, &reader));
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        // The stream ends when the container's process does; docker may still
                        // call the container running for a moment: the same run of it is asked
                        // again for up to 2 s before it counts as one docker could not follow.
                        let same_run = |next: &Option<String>| next.as_deref() == Some(id.as_str()) && started_at(&id) == run;
                        let settled = std::time::Instant::now() + std::time::Duration::from_secs(2);
                        let next = loop {
                            let next = next_container(cluster, node, &id, stop, progress)?;
                            if stop.load(Ordering::SeqCst) {
                                return Ok(());
                            }
                            if !same_run(&next) || std::time::Instant::now() >= settled {
                                break next;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        };
                        match next {
                            Some(_) if same_run(&next) && attached.elapsed() < std::time::Duration::from_secs(5) => {
                                quick_ends += 1;
                                if quick_ends == 3 {
                                    bail!(
                                        "{}: `docker logs --follow {}` ended at once three times while its container runs: its log cannot be followed (the lines above say why; its logging driver?)",
                                        node.name,
                                        short_id(&id)
                                    );
                                }
                                std::thread::sleep(std::time::Duration::from_secs(1));
                            }
                            Some(next) => {
                                quick_ends = 0;
                                id = next;
                            }
                            None => {
                                progress(&format!("{}: its container {} was removed: its log ends here", node.name, short_id(&id)));
                                return Ok(());
                            }
                        }
                    }
                })
            })
            .collect();
        followers.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a log follower panicked"))))
    })
}

/// How long a service may have no container before its follow ends: compose makes a
/// container anew by removing the old one first (v2), and `down` removes it for good.
const GONE_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// After `node`'s log stream from container `id` ended: the id of the container of its service
/// that runs now (polled every 250 ms while there is one that does not run, or none for less
/// than [`GONE_FOR`]), or `None` when the service has had no container for that long, or as
/// soon as `stop` is set.
fn next_container(cluster: &Cluster, node: &Node, id: &str, stop: &std::sync::atomic::AtomicBool, progress: Progress<'_>) -> anyhow::Result<Option<String>> {
    let mut told = false;
    let mut gone_since: Option<std::time::Instant> = None;
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        let of_node: Vec<Container> = containers(cluster)?.into_iter().filter(|c| c.service == node.name).collect();
        if of_node.is_empty() {
            let since = *gone_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= GONE_FOR {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
            continue;
        }
        gone_since = None;
        if let Some(c) = of_node.iter().find(|c| c.state == "running") {
            if c.id != id || told {
                progress(&format!("{}: following {} container {} again", node.name, if c.id == id { "its" } else { "its new" }, short_id(&c.id)));
            }
            return Ok(Some(c.id.clone()));
        }
        if !told {
            progress(&format!(
                "{}: its container {} stopped ({}); its log is followed again once it runs (`cargo xtask up`), and ends when it is removed",
                node.name,
                short_id(id),
                of_node.iter().find(|c| c.id == id).map_or("gone", |c| c.status.as_str())
            ));
            told = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// When container `id` last started (`docker inspect`'s `.State.StartedAt`), if it can be read.
fn started_at(id: &str) -> Option<String> {
    let out = std::process::Command::new("docker").args(["inspect", "--format", "{{.State.StartedAt}}", id]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `docker logs --timestamps`' prefix: RFC 3339 with nanoseconds, `2026-12-03T14:57:50.4961Z`.
fn is_docker_timestamp(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) && s.as_bytes()[4] == b'-' && s.contains('T') && s.ends_with('Z')
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The last `lines` lines of a container's log: its stdout and stderr through one pipe, so
/// in the order docker writes them (`docker logs --tail`).
pub fn logs(id: &str, lines: usize) -> anyhow::Result<String> {
    let out = duct::cmd("docker", ["logs", "--tail", &lines.to_string(), id])
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .with_context(|| format!("running docker logs {id}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    if !out.status.success() {
        bail!("docker logs {id} failed ({}): {text}", out.status);
    }
    Ok(text)
}

/// The likely fix for a node whose container stopped before accepting logins, from its log.
pub fn exit_fix(cluster: &Cluster, node: &Node, log: &str) -> String {
    let source = cluster.source.display();
    let image = &cluster.docker.image;
    let failure = crate::StartFailure::read(log);
    if let Some(fix) = failure.as_ref().and_then(|f| f.settings_fix(cluster, "cargo xtask up")) {
        return fix;
    }
    match failure {
        Some(crate::StartFailure::MissingLibrary("citus")) => format!(
            "image {image} has no Citus extension. Set [docker] image in {source} to an image with Citus (e.g. {}), \
             or, for plain PostgreSQL nodes, set shared_preload_libraries = [] and use `cargo xtask up --no-setup`",
            citus_config::DEFAULT_IMAGE
        ),
        Some(crate::StartFailure::MissingLibrary(lib)) => {
            format!("image {image} has no library {lib:?}: remove it from shared_preload_libraries in {source}, or use an image that has it")
        }
        Some(crate::StartFailure::OtherMajor(_)) => format!(
            "the data volume of {} was created by another PostgreSQL major version than image {image}'s. \
             Set [docker] image (and pg_major) in {source} back to that version, or delete this cluster's data with `cargo xtask down --purge` (it is lost)",
            node.name
        ),
        Some(crate::StartFailure::PortTaken | crate::StartFailure::HostNotHere | crate::StartFailure::BadSetting(_)) | None => {
            "the log above says why. Fix that, then run `cargo xtask up` again (the data volumes are kept); `docker logs <id>` shows the whole log".to_string()
        }
    }
}

/// Waits until every node accepts a login (in the target database, else the maintenance
/// database), in parallel, while watching the containers: a node whose container has exited,
/// died or is restarting fails at once (its log tail and the fix in the error) instead of at
/// the deadline.
pub fn wait_ready(cluster: &Cluster, creds: &pg::Credentials, deadline: Instant, progress: Progress<'_>) -> anyhow::Result<crate::Ready> {
    // One `docker ps` serves every waiting node for half a second.
    let seen: Mutex<Option<(Instant, Vec<Container>)>> = Mutex::new(None);
    let lookup = |service: &str| -> anyhow::Result<Option<Container>> {
        let mut cached = seen.lock().expect("no panics while holding the lock");
        if cached.as_ref().is_none_or(|(at, _)| at.elapsed() >= Duration::from_millis(500)) {
            *cached = Some((Instant::now(), containers(cluster)?));
        }
        Ok(cached.as_ref().and_then(|(_, cs)| cs.iter().find(|c| c.service == service).cloned()))
    };
    let nodes: Vec<&Node> = cluster.nodes().collect();
    let openssl = which::which("openssl").ok();
    let openssl = &openssl;
    let results: Vec<anyhow::Result<crate::ReadyConn>> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                let lookup = &lookup;
                s.spawn(move || -> anyhow::Result<crate::ReadyConn> {
                    pg::wait_started(n, creds, &[&cluster.database, &cluster.maintenance_database], deadline, progress, |timed_out, e| match lookup(&n.name)? {
                        None => bail!(
                            "node {} at {}: compose project {} has no container for it (removed while starting?); run `cargo xtask up` again",
                            n.name,
                            n.client,
                            project_name(cluster)
                        ),
                        Some(c) if matches!(c.state.as_str(), "exited" | "dead" | "restarting") => {
                            let log = log_tail(&c.id, 20);
                            bail!(
                                "node {} at {}: its container {} stopped before accepting a login ({}). Last lines of its log:\n{log}\n    fix: {}",
                                n.name,
                                n.client,
                                c.id,
                                c.status,
                                exit_fix(cluster, n, &log).replace("<id>", &c.id)
                            )
                        }
                        Some(c) if timed_out => bail!(
                            "node {} at {} did not accept a login within {} s (container {} is {}; last error: {e}). Last lines of its log:\n{}\n    \
                             fix: raise [wait] timeout_secs in {} on a slow machine, or see the log",
                            n.name,
                            n.client,
                            cluster.ready_timeout_secs,
                            c.id,
                            c.status,
                            log_tail(&c.id, 20),
                            cluster.source.display()
                        ),
                        Some(_) => Ok(()),
                    })
                    .map(|(mut client, which)| {
                        if let Err(why) = own_certificate(&mut client, openssl.as_deref()) {
                            progress(&format!("{}: {why}", n.name));
                        }
                        (client, which)
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("node thread panicked")).collect()
    });
    crate::all_nodes(results)
}

/// For `setup`, which waits for nodes it did not start: the first time a node refuses a
/// login, one `docker ps` (shared by the nodes) says whether its container runs, and a node
/// without a running container is named at once with the fix, instead of only when the wait
/// runs out. `setup` still waits, since an `up` may be starting it. Nothing is said when
/// Docker cannot be asked: the wait's own lines and error then speak.
pub struct StoppedNote<'c> {
    cluster: &'c Cluster,
    /// The nodes already looked at, and the one `docker ps` (once made).
    state: Mutex<(Vec<String>, Option<Vec<Container>>)>,
}

impl<'c> StoppedNote<'c> {
    pub fn new(cluster: &'c Cluster) -> StoppedNote<'c> {
        StoppedNote { cluster, state: Mutex::new((Vec::new(), None)) }
    }

    /// Called after each refused login of `node`; looks once per node.
    pub fn check(&self, node: &Node, progress: Progress<'_>) {
        let mut state = self.state.lock().expect("no panics while holding the lock");
        let (told, seen) = &mut *state;
        if told.contains(&node.name) {
            return;
        }
        told.push(node.name.clone());
        if seen.is_none() {
            match containers(self.cluster) {
                Ok(cs) => *seen = Some(cs),
                Err(_) => return,
            }
        }
        let container = seen.as_ref().and_then(|cs| cs.iter().find(|c| c.service == node.name));
        if let Some(line) = stopped_line(self.cluster, node, container) {
            progress(&line);
        }
    }
}

/// What [`StoppedNote`] says of `node` whose container is `container` (`None`: the project has
/// none for it); nothing for one that runs or is starting.
fn stopped_line(cluster: &Cluster, node: &Node, container: Option<&Container>) -> Option<String> {
    let why = match container {
        None => format!("compose project {} has no container for it", project_name(cluster)),
        // Starting, or being started by an `up` right now.
        Some(c) if matches!(c.state.as_str(), "running" | "created" | "restarting") => return None,
        Some(c) => format!("its container {} is not running ({})", c.id, c.status),
    };
    Some(format!("{} at {}: {why}: {}", node.name, node.client, crate::up_starts_it(cluster)))
}

/// Gives a new node its own self-signed TLS certificate before `CREATE EXTENSION citus` would
/// make one, as the local backend does when it makes a data directory (see
/// `Local::make_certificate`): Citus's is RSA-2048, whose key takes 0.1-0.5 s of CPU per node
/// on the machine measured and makes every inter-node handshake slower (docs/performance.md);
/// this one is P-256, ~10 ms. Like Citus's it encrypts and authenticates nothing
/// (`sslmode=require` checks no certificate).
///
/// Only on a node where Citus would make one: a superuser login (the compose file's
/// `POSTGRES_USER` is one), `ssl` off, Citus's `citus.node_conninfo` requiring TLS,
/// PostgreSQL's default file names, and neither `server.crt` nor `server.key` in the data
/// directory. Anything else is left as it is, such as an image that created the
/// extension at its first start (the citusdata images do: Citus made its certificate then),
/// or a node that already has one (a later `up`).
///
/// The key and certificate are made on this machine (`openssl`, 2 processes) and written into
/// the data directory by the server itself (`COPY ... TO PROGRAM`, as the container's
/// `postgres` user, mode 0600, never over a file): no `docker exec`, no file mounted. They
/// reach the server as a query parameter, in a transaction with `log_parameter_max_length` at
/// 0 and the value local to it, so neither a statement nor a parameter a server log could show
/// holds them. The key goes first: Citus only checks whether the certificate loads, and on a
/// node left with a key alone it writes both files anew (its `StoreCertificate`), as on a node
/// with neither. `CREATE EXTENSION` then turns `ssl` on itself (`ALTER SYSTEM`, reload) and
/// finds the certificate in place. `Err(why)` says what was left to Citus.
fn own_certificate(client: &mut postgres::Client, openssl: Option<&std::path::Path>) -> Result<(), String> {
    // `citus.node_conninfo` is readable by superusers only: asked of nobody else.
    const WANTED: &str = "SELECT CASE WHEN r.rolsuper THEN current_setting('ssl') = 'off' \
         AND current_setting('ssl_cert_file') = 'server.crt' AND current_setting('ssl_key_file') = 'server.key' \
         AND coalesce(current_setting('citus.node_conninfo', true), '') LIKE '%sslmode=require%' \
         AND (pg_catalog.pg_stat_file('server.crt', true)).size IS NULL AND (pg_catalog.pg_stat_file('server.key', true)).size IS NULL \
         ELSE false END FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";
    let left = "so CREATE EXTENSION citus will make one (0.1-0.5 s of CPU)";
    let wanted = client
        .query_opt(WANTED, &[])
        .map_err(|e| format!("could not check whether it has a TLS certificate ({}); if not, CREATE EXTENSION citus will make one", pg::describe(&e)))?;
    if !wanted.is_some_and(|r| r.get(0)) {
        return Ok(());
    }
    let Some(openssl) = openssl else {
        return Err(format!("no TLS certificate of its own: no `openssl` program on PATH to make one, {left}; install openssl to skip that"));
    };
    let (key, crt) = crate::p256_certificate(openssl).map_err(|e| format!("no TLS certificate of its own ({e:#}), {left}"))?;
    let write = |client: &mut postgres::Client| -> Result<(), String> {
        let mut tx = client.transaction().map_err(|e| pg::describe(&e))?;
        tx.batch_execute("SET LOCAL log_parameter_max_length = 0").map_err(|e| pg::describe(&e))?;
        for (pem, file) in [(&key, "server.key"), (&crt, "server.crt")] {
            tx.query_one("SELECT pg_catalog.set_config('citus_xtask.pem', $1, true)", &[pem]).map_err(|e| pg::describe(&e))?;
            // One row per line: PEM has no character COPY's text format escapes. `set -C`:
            // never over a file that appeared since the check.
            tx.batch_execute(&format!(
                "COPY (SELECT line FROM unnest(string_to_array(rtrim(current_setting('citus_xtask.pem'), E'\\n'), E'\\n')) WITH ORDINALITY AS t(line, n) ORDER BY n) \
                 TO PROGRAM 'umask 077 && set -C && cat > {file}'"
            ))
            .map_err(|e| format!("writing {file} into its data directory: {}", pg::describe(&e)))?;
        }
        tx.commit().map_err(|e| pg::describe(&e))
    };
    write(client).map_err(|e| format!("no TLS certificate of its own ({e}), {left}"))
}

/// The progress line for a container still running `after` its stop began.
fn still_stopping_line(c: &Container, after: Duration) -> String {
    format!(
        "{} (container {}): still stopping after {} s (a clean shutdown: its sessions and Citus's connections end, then its checkpoint; compose kills it after {} s, its data kept)",
        c.service,
        short_id(&c.id),
        after.as_secs(),
        citus_compose::STOP_GRACE_SECS
    )
}

/// Stops and removes the containers; removes the volumes (the data) only when `purge`.
pub fn down(cluster: &Cluster, creds: &pg::Credentials, purge: bool, progress: Progress<'_>) -> anyhow::Result<()> {
    let _lock = state::lock_down(cluster, progress)?;
    check_owner(cluster, if purge { "down --purge" } else { "down" })?;
    // The file for this run's nodes (with the worker count `up --workers` recorded): its
    // volumes are the ones `--purge` removes. `--remove-orphans` also stops and removes the
    // containers of workers beyond them (an `up --workers 8` before an `up --workers 2`).
    let file = compose_file(cluster);
    let dir = state::cluster_dir(cluster);
    std::fs::create_dir_all(&dir).map_err(|e| state::file_error(cluster, "creating", &dir, e))?;
    std::fs::write(&file, citus_compose::render_owned(cluster, &owner_dir(cluster))).with_context(|| format!("writing {}", file.display()))?;
    let args: &[&str] = if purge { &["down", "--volumes", "--remove-orphans"] } else { &["down", "--remove-orphans"] };
    // Compose's own lines are captured (for its errors); a container's clean stop can take
    // seconds, up to the compose file's `stop_grace_period` before compose kills one. Meanwhile
    // each container still running after crate::STILL_STOPPING_AFTER is named once.
    progress(&format!(
        "docker compose: stopping project {} (a clean shutdown per container; compose kills one still running after {} s)",
        project_name(cluster),
        citus_compose::STOP_GRACE_SECS
    ));
    let out = std::thread::scope(|s| -> anyhow::Result<std::process::Output> {
        let (done, ended) = std::sync::mpsc::channel::<()>();
        let run = s.spawn(move || {
            let out = compose(&Shell::new()?, cluster, creds, args);
            let _ = done.send(());
            out
        });
        let started = Instant::now();
        let mut named = std::collections::BTreeSet::new();
        let mut look_at = started + crate::STILL_STOPPING_AFTER;
        // Until compose has ended (or its thread has, sending nothing): a look every second.
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = ended.recv_timeout(look_at.saturating_duration_since(Instant::now())) {
            look_at = Instant::now() + Duration::from_secs(1);
            // Only a line while waiting: a failed `docker ps` leaves the stop to compose.
            for c in containers(cluster).unwrap_or_default() {
                if c.state == "running" && named.insert(c.id.clone()) {
                    progress(&still_stopping_line(&c, started.elapsed()));
                }
            }
        }
        run.join().expect("the docker compose thread panicked")
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Compose v1 removes the containers, then fails at a network another container is
        // attached to (v2 keeps such a network and goes on): only the volumes of a purge are
        // left to remove, and the network is named below.
        let only_network = stderr.contains("has active endpoints") && containers(cluster).is_ok_and(|c| c.is_empty());
        if !only_network {
            ensure_engine()?;
            bail!(
                "docker compose down failed for project {} ({}): {}\n    fix: see compose's message above; `docker ps -a --filter label=com.docker.compose.project={}` lists the project's containers",
                project_name(cluster),
                out.status,
                compose_errors(&stderr),
                project_name(cluster)
            );
        }
        if purge {
            remove_volumes(cluster)?;
        }
    }
    progress(&format!(
        "docker compose: project {} stopped{}",
        project_name(cluster),
        if purge { ", volumes removed" } else { "; volumes kept (`down --purge` removes them)" }
    ));
    if purge {
        // Only this run's nodes' volumes were removed; any other of the project's is said, and kept.
        match volumes(cluster) {
            Ok(kept) => {
                for v in kept {
                    progress(&format!(
                        "kept volume {v}: not one of this run's {} worker(s); `down --purge --workers N`, N the count that started it, removes it",
                        cluster.workers.len()
                    ));
                }
            }
            Err(e) => progress(&format!(
                "could not list the project's volumes left after the purge ({e:#}); `docker volume ls --filter label=com.docker.compose.project={}` shows any",
                project_name(cluster)
            )),
        }
        let _ = std::fs::remove_file(&file);
        state::forget(cluster);
    }
    for (network, attached) in networks_in_use(cluster) {
        // `networks_in_use` names only networks with a container attached.
        let mut disconnect = format!("`docker network disconnect {network} {}`", attached[0]);
        if attached.len() > 1 {
            disconnect.push_str(" (and so for each of them)");
        }
        progress(&format!(
            "kept network {network}: container(s) not of this cluster are attached to it ({}); {disconnect}, then `docker network rm {network}`, removes it; the next `up` uses it as it is",
            attached.join(", ")
        ));
    }
    Ok(())
}

/// Removes the volumes of this run's nodes (`<project>_<node>_data`, as compose names them),
/// where compose could not: v1's `down --volumes` stops at a network still in use before it
/// gets to them. A volume already gone is no error.
fn remove_volumes(cluster: &Cluster) -> anyhow::Result<()> {
    let project = project_name(cluster);
    let ours: Vec<String> = cluster.nodes().map(|n| citus_compose::docker_volume_name(cluster, n)).collect();
    for v in volumes(cluster)?.into_iter().filter(|v| ours.contains(v)) {
        let out = std::process::Command::new("docker").args(["volume", "rm", &v]).output().map_err(|e| not_run(e, "docker volume rm"))?;
        if !out.status.success() {
            bail!(
                "removing volume {v} of project {project}: {}\n    fix: `docker volume rm {v}` once what it names is solved; the cluster's containers are already removed",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// The networks of `cluster`'s compose project still there after `down`, each with the
/// containers attached to it: a container of some other project or none (a CI job's, joined
/// with `docker network connect`) keeps compose from removing it. Nothing when `docker`
/// cannot tell, and no network that has no container attached.
fn networks_in_use(cluster: &Cluster) -> Vec<(String, Vec<String>)> {
    let label = format!("label=com.docker.compose.project={}", project_name(cluster));
    let Ok(out) = std::process::Command::new("docker").args(["network", "ls", "--filter", &label, "--format", "{{.Name}}"]).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|network| {
            let attached = std::process::Command::new("docker")
                .args(["network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", network])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect())
                .unwrap_or_default();
            (network.to_string(), attached)
        })
        .filter(|(_, attached): &(String, Vec<String>)| !attached.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data goes into the named volume only when the image's PGDATA is under the mount and
    /// no VOLUME of the image's own between them holds it.
    #[test]
    fn an_image_whose_data_would_miss_the_volume_is_named() {
        let config = |pgdata: Option<&str>, volumes: &[&str]| {
            let env: Vec<String> = pgdata.map(|p| format!("PGDATA={p}")).into_iter().chain(["LANG=C.UTF-8".to_string()]).collect();
            let volumes: serde_json::Map<String, serde_json::Value> = volumes.iter().map(|v| (v.to_string(), serde_json::json!({}))).collect();
            serde_json::json!({ "Env": env, "Volumes": if volumes.is_empty() { serde_json::Value::Null } else { volumes.into() } }).to_string()
        };
        let (old, new) = ("/var/lib/postgresql/data", "/var/lib/postgresql");
        // The official images before 18, and from 18 on, each under its own pg_major.
        assert_eq!(data_outside_the_volume(&config(Some(old), &[old]), old), None);
        assert_eq!(data_outside_the_volume(&config(Some("/var/lib/postgresql/18/docker"), &[new]), new), None);
        // This project's test image (no VOLUME), under either; an image that sets no PGDATA.
        assert_eq!(data_outside_the_volume(&config(Some(old), &[]), old), None);
        assert_eq!(data_outside_the_volume(&config(Some(old), &[]), new), None);
        assert_eq!(data_outside_the_volume(&config(None, &[old]), old), None);
        // An 18 image under pg_major 15, a 17 image under pg_major 18.
        let why = data_outside_the_volume(&config(Some("/var/lib/postgresql/18/docker"), &[new]), old).unwrap();
        assert_eq!(why, "its PGDATA /var/lib/postgresql/18/docker is not under the volume's mount /var/lib/postgresql/data");
        let why = data_outside_the_volume(&config(Some(old), &[old]), new).unwrap();
        assert_eq!(
            why,
            "it declares VOLUME /var/lib/postgresql/data, which holds its PGDATA /var/lib/postgresql/data inside the volume's mount /var/lib/postgresql"
        );
        assert_eq!(data_outside_the_volume("not json", old), None);
    }

    fn cluster() -> Cluster {
        Cluster::parse(include_str!("../../../citus.toml"), std::path::Path::new("/w/citus.toml")).unwrap()
    }

    #[test]
    fn a_container_still_stopping_is_named_with_its_id_and_the_grace() {
        let c = Container {
            id: "0123456789abcdef".into(),
            service: "citus_worker2".into(),
            state: "running".into(),
            working_dir: String::new(),
            status: "Up 5 minutes".into(),
            config_files: String::new(),
        };
        assert_eq!(
            still_stopping_line(&c, Duration::from_millis(2400)),
            "citus_worker2 (container 0123456789ab): still stopping after 2 s (a clean shutdown: its sessions and Citus's connections end, then its checkpoint; compose kills it after 30 s, its data kept)"
        );
    }

    #[test]
    fn setup_names_a_node_without_a_running_container_with_the_fix() {
        let c = cluster();
        let w1 = &c.workers[0];
        let container = |state: &str, status: &str| Container {
            id: "aa11".into(),
            service: w1.name.clone(),
            state: state.into(),
            working_dir: String::new(),
            status: status.into(),
            config_files: String::new(),
        };
        let wait = format!("`cargo xtask up` starts it (waiting up to {} s for one to start meanwhile)", c.ready_timeout_secs);
        assert_eq!(
            stopped_line(&c, w1, None).unwrap(),
            format!("{} at {}: compose project {} has no container for it: {wait}", w1.name, w1.client, project_name(&c))
        );
        assert_eq!(
            stopped_line(&c, w1, Some(&container("exited", "Exited (0) 5 minutes ago"))).unwrap(),
            format!("{} at {}: its container aa11 is not running (Exited (0) 5 minutes ago): {wait}", w1.name, w1.client)
        );
        for starting in ["running", "created", "restarting"] {
            assert_eq!(stopped_line(&c, w1, Some(&container(starting, "Up 1 second"))), None, "{starting}");
        }
    }

    #[test]
    fn the_node_of_a_taken_port_is_read_from_dockers_error() {
        let c = cluster();
        let v2 = "Error response from daemon: driver failed programming external connectivity on endpoint citus-citus_worker2-1: Bind for 127.0.0.1:5602 failed: port is already allocated";
        assert_eq!(node_of_taken_port(&c, v2).map(|n| n.name.as_str()), Some("citus_worker2"));
        let other = "Error starting userland proxy: listen tcp4 127.0.0.1:5601: bind: address already in use";
        assert_eq!(node_of_taken_port(&c, other).map(|n| n.name.as_str()), Some("citus_worker1"));
        assert!(node_of_taken_port(&c, "Bind for 127.0.0.1:56010 failed: port is already allocated").is_none(), "5601 is not 56010");
        assert!(node_of_taken_port(&c, "some other error at :5600").is_none());
    }

    /// Both outputs as compose wrote them for `up -d` with worker 1's port held by another
    /// program (v2 2.26.1 from Debian trixie, v1 1.29.2 from bookworm; the ids shortened).
    #[test]
    fn compose_errors_drop_the_progress_lines_of_both_compose_versions() {
        let v2 = " Network handv2_citus  Creating\n Network handv2_citus  Created\n Volume \"handv2_citus_worker2_data\"  Creating\n \
                  Volume \"handv2_citus_worker2_data\"  Created\n Container handv2-citus_worker1-1  Creating\n Container handv2-citus_worker1-1  Created\n \
                  Container handv2-citus_worker1-1  Starting\n Container handv2-citus_master-1  Started\n\
                  Error response from daemon: driver failed programming external connectivity on endpoint handv2-citus_worker1-1 (dcdb92): Error starting userland proxy: listen tcp4 127.0.0.1:7701: bind: address already in use\n";
        assert_eq!(
            compose_errors(v2),
            "Error response from daemon: driver failed programming external connectivity on endpoint handv2-citus_worker1-1 (dcdb92): Error starting userland proxy: listen tcp4 127.0.0.1:7701: bind: address already in use"
        );
        let v1 = "Creating network \"handv2_citus\" with the default driver\nCreating handv2_citus_worker1_1 ... \nCreating handv2_citus_master_1  ... \n\
                  Host is already in use by another container\nCreating handv2_citus_worker1_1 ... error\n\n\
                  ERROR: for handv2_citus_worker1_1  Cannot start service citus_worker1: driver failed (1626cd): listen tcp4 127.0.0.1:7701: bind: address already in use\n\
                  Creating handv2_citus_master_1  ... done\n\nEncountered errors while bringing up the project.\n";
        assert_eq!(
            compose_errors(v1),
            "Host is already in use by another container\nCreating handv2_citus_worker1_1 ... error\n\
             ERROR: for handv2_citus_worker1_1  Cannot start service citus_worker1: driver failed (1626cd): listen tcp4 127.0.0.1:7701: bind: address already in use\n\
             Encountered errors while bringing up the project."
        );
        // Nothing but progress: the text whole, not an empty message.
        assert_eq!(compose_errors(" Container a-b-1  Stopping\n Container a-b-1  Stopped\n"), "Container a-b-1  Stopping\n Container a-b-1  Stopped");
        // A line compose has no progress shape for is kept, even when it starts with a step's word.
        assert_eq!(compose_errors("Creating failed: yaml: line 3\n"), "Creating failed: yaml: line 3");
    }

    /// Two loopback addresses a local backend can tell apart, but one published port on Docker.
    #[test]
    fn one_port_under_two_hosts_is_refused_before_compose() {
        assert!(check_ports(&cluster()).is_ok());
        let src = include_str!("../../../citus.toml").replace("port = 5602", "port = 5601\nhost = \"127.0.0.2\"");
        let c = Cluster::parse(&src, std::path::Path::new("/w/citus.toml")).unwrap();
        let e = check_ports(&c).unwrap_err().to_string();
        assert!(e.starts_with("nodes citus_worker1 (localhost:5601) and citus_worker2 (127.0.0.2:5601) have one client port, 5601"), "{e}");
        assert!(e.contains("fix: give citus_worker2 its own `port` in /w/citus.toml"), "{e}");
    }

    /// `docker inspect`'s JSON for one container of `cluster()`'s worker 1, as compose creates it.
    fn inspected(id: &str, cmd: &[String], image: &str, host_port: u16) -> String {
        format!(
            r#"{{"Id": "{id}", "Config": {{"Cmd": {}, "Env": ["PATH=/usr/bin", "PGDATA=/var/lib/postgresql/data"], "Image": "{image}"}},
               "HostConfig": {{"PortBindings": {{"5432/tcp": [{{"HostIp": "127.0.0.1", "HostPort": "{host_port}"}}]}}}}, "State": {{"Status": "running"}}}}"#,
            serde_json::to_string(cmd).unwrap()
        )
    }

    #[test]
    fn inspected_containers_name_what_up_would_change() {
        let c = cluster();
        let w1 = c.workers.first().unwrap();
        let cmd = citus_compose::server_command(&c);
        let same: Inspected = serde_json::from_str(&inspected("aa11", &cmd, &c.docker.image, w1.client.port)).unwrap();
        assert!(same.pending(&c, w1).is_empty(), "{:?}", same.pending(&c, w1));
        assert_eq!(same.env("PGDATA"), Some("/var/lib/postgresql/data"));
        assert_eq!(same.env("PGDAT"), None);
        let mut old = cmd.clone();
        old.extend(["-c".to_string(), "work_mem=4MB".to_string()]);
        let other: Inspected = serde_json::from_str(&inspected("bb22", &old, "citusdata/citus:12.1", w1.client.port + 1)).unwrap();
        assert_eq!(other.pending(&c, w1), ["work_mem", "image", "port"]);
        // A container without a command or published port differs in both.
        let bare: Inspected = serde_json::from_str(r#"{"Id": "cc33", "Config": {"Cmd": null}}"#).unwrap();
        assert_eq!(bare.pending(&c, w1), ["command", "port"]);
    }

    #[test]
    fn inspect_results_follow_the_ids_and_name_the_missing() {
        let c = cluster();
        let w1 = c.workers.first().unwrap();
        let cmd = citus_compose::server_command(&c);
        // `docker inspect a b c` with b gone prints a and c (and an error for b).
        let text = format!("[{}, {}]", inspected("aaaa1111ffff", &cmd, &c.docker.image, w1.client.port), inspected("cccc3333ffff", &cmd, &c.docker.image, 1));
        let found: Vec<Inspected> = serde_json::from_str(&text).unwrap();
        let got = match_ids(&["aaaa1111", "bbbb2222", "cccc3333"], found);
        assert_eq!(got.iter().map(|g| g.as_ref().map(|i| i.id.as_str())).collect::<Vec<_>>(), [Some("aaaa1111ffff"), None, Some("cccc3333ffff")]);
        assert!(match_ids(&[""], Vec::new())[0].is_none());
    }

    #[test]
    fn changed_options_name_what_differs() {
        let cmd = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let old = cmd("postgres -c shared_preload_libraries=citus -c listen_addresses=* -c max_connections=150 -c work_mem=4MB");
        assert!(changed_options(&old, &old).is_empty());
        let new = cmd("postgres -c shared_preload_libraries=citus -c listen_addresses=* -c max_connections=160 -c log_line_prefix=%m");
        assert_eq!(changed_options(&old, &new), ["log_line_prefix", "max_connections", "work_mem"]);
        // The same options in another order, or `-cname=value`, are no change of options.
        let reordered = cmd("postgres -c listen_addresses=* -cshared_preload_libraries=citus -c work_mem=4MB -c max_connections=150");
        assert_eq!(changed_options(&old, &reordered), ["command"]);
        assert_eq!(
            changed_options(&old, &cmd("docker-entrypoint.sh postgres")),
            ["listen_addresses", "max_connections", "shared_preload_libraries", "work_mem", "command"]
        );
        assert_eq!(changed_options(&cmd("postgres"), &cmd("postgres -D /x")), ["command"]);
    }

    #[test]
    fn ps_lines_become_containers() {
        let cs = parse_ps(
            "abc123\tcitus_master\trunning\t/w/.citus-data/citus\tUp 3 seconds\t/w/.citus-data/citus/docker-compose.yml\ndef456\tcitus_worker1\texited\t\tExited (1) 2 seconds ago\nbroken line\n",
        );
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].working_dir, "/w/.citus-data/citus");
        assert_eq!(cs[0].config_files, "/w/.citus-data/citus/docker-compose.yml");
        assert_eq!(
            cs[1],
            Container {
                id: "def456".into(),
                service: "citus_worker1".into(),
                state: "exited".into(),
                working_dir: String::new(),
                status: "Exited (1) 2 seconds ago".into(),
                config_files: String::new(),
            }
        );
    }

    #[test]
    fn exit_fix_reads_the_log() {
        let c = cluster();
        let w = &c.workers[0];
        let no_citus = "    | FATAL:  could not access file \"citus\": No such file or directory";
        let fix = exit_fix(&c, w, no_citus);
        assert!(fix.starts_with("image citusdata/citus:13.2.0-pg15 has no Citus extension. Set [docker] image in /w/citus.toml"), "{fix}");
        assert!(fix.contains("shared_preload_libraries = []"), "{fix}");
        let fix = exit_fix(&c, w, "FATAL:  could not access file \"pg_cron\": No such file or directory");
        assert!(fix.contains("no library \"pg_cron\": remove it from shared_preload_libraries in /w/citus.toml"), "{fix}");
        let fix = exit_fix(&c, w, "FATAL:  database files are incompatible with server\nDETAIL: The data directory was initialized by PostgreSQL version 14");
        assert!(fix.contains("data volume of citus_worker1 was created by another PostgreSQL major version"), "{fix}");
        assert!(fix.contains("`cargo xtask down --purge` (it is lost)"), "{fix}");
        assert!(exit_fix(&c, w, "something else").contains("the log above says why"));
        let with_settings =
            Cluster::parse(&format!("{}\n[settings]\nwork_mem = \"64XB\"\n", include_str!("../../../citus.toml")), std::path::Path::new("/w/citus.toml"))
                .unwrap();
        let fix = exit_fix(&with_settings, w, "FATAL:  invalid value for parameter \"work_mem\": \"64XB\"");
        assert!(fix.starts_with("the server refuses `work_mem = '64XB'` of [settings] in /w/citus.toml"), "{fix}");
        // A reload's note about a setting is no refusal; nor is a bad value in ALTER SYSTEM's file.
        assert!(exit_fix(&with_settings, w, "LOG:  parameter \"work_mem\" changed to \"4MB\"\nFATAL:  something else").contains("the log above says why"));
        let auto = "LOG:  invalid value for parameter \"work_mem\": \"64XB\"\nFATAL:  configuration file \"/d/postgresql.auto.conf\" contains errors";
        assert!(exit_fix(&with_settings, w, auto).contains("the log above says why"));
        // An extension's warning about its own setting is no refusal either.
        let warned = "WARNING:  invalid value for parameter \"work_mem\": \"64XB\"\nFATAL:  something else";
        assert!(exit_fix(&with_settings, w, warned).contains("the log above says why"));
        // A setting the config does not give (ALTER SYSTEM, say): the log says why.
        let fix = exit_fix(&with_settings, w, "FATAL:  unrecognized configuration parameter \"max_conections\"");
        assert!(fix.contains("the log above says why"), "{fix}");
    }
}
