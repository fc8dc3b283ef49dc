//! `status`: per node, whether its server runs (a local process or a container) and whether it
//! accepts the cluster's login, changing nothing: no server is started or stopped, no data
//! directory or database is made.

use std::time::Duration;

use anyhow::Context;
use citus_config::{Backend, Cluster};
use serde::Serialize;

use crate::{docker, local, pg};

/// What runs for one node (as JSON: `{"state": "running", "detail": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum Server {
    /// Its server runs: how it is known (`pid 1234`, `container 0a1b2c3d4e5f, Up 5 minutes`).
    Running(String),
    /// Its data is there but no server runs on it: where the data is, or the container's state.
    Stopped(String),
    /// Nothing of it: no data directory, or no container and no volume.
    Absent(String),
}

impl Server {
    /// `running`, `stopped` or `absent`, as in the JSON.
    pub fn state(&self) -> &'static str {
        match self {
            Server::Running(_) => "running",
            Server::Stopped(_) => "stopped",
            Server::Absent(_) => "absent",
        }
    }

    /// How it is known, or where the data is.
    pub fn detail(&self) -> &str {
        match self {
            Server::Running(d) | Server::Stopped(d) | Server::Absent(d) => d,
        }
    }
}

/// What a login to a running node found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Login {
    /// It logged in.
    pub ok: bool,
    /// The citus version installed in the cluster's database, or why the login failed.
    pub detail: String,
}

/// One node's status.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    /// Its client address, `host:port`.
    pub client: String,
    pub server: Server,
    /// For a running server, what the login found; `None` when nothing runs.
    pub login: Option<Login>,
    /// The settings a running server lacks of the config, by name: on the local backend those
    /// changed since it started (a new client address shows as `port` or `listen_addresses`),
    /// which `up --restart` applies; on Docker the server options of the container's command
    /// that differ from the config's (`command` for another difference), `image` and `port`
    /// (the published client address), which `up` applies by recreating the container
    /// ([`docker::Inspected::pending`]). Empty for a stopped node; `None` (left out of the
    /// JSON) for a container `docker inspect` could not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_pending: Option<Vec<String>>,
}

/// Every node of the run, coordinator first, and what else of the cluster runs.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub nodes: Vec<NodeStatus>,
    /// Servers of the same cluster that are not among this run's nodes (workers a larger
    /// `up --workers N` started), one line each.
    pub others: Vec<String>,
}

impl Status {
    /// Every node runs and accepts the login.
    pub fn all_ready(&self) -> bool {
        self.nodes.iter().all(|n| n.login.as_ref().is_some_and(|l| l.ok))
    }
}

/// How long a login may take before the node is reported as not accepting it.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads the status of `cluster`'s nodes on `backend`; logs in (all nodes at once) to the
/// ones that run.
pub fn read(cluster: &Cluster, backend: Backend, creds: &pg::Credentials) -> anyhow::Result<Status> {
    let mut status = match backend {
        Backend::Local => local_servers(cluster),
        Backend::Docker => docker_servers(cluster)?,
    };
    let logins: Vec<Option<Login>> = std::thread::scope(|s| {
        let handles: Vec<_> = status
            .nodes
            .iter()
            .zip(cluster.nodes())
            .map(|(st, node)| {
                let running = matches!(st.server, Server::Running(_));
                s.spawn(move || {
                    running.then(|| login(node, creds, &cluster.database).map_or_else(|e| Login { ok: false, detail: e }, |d| Login { ok: true, detail: d }))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Some(Login { ok: false, detail: "the login check panicked".into() }))).collect()
    });
    for (st, l) in status.nodes.iter_mut().zip(logins) {
        st.login = l;
    }
    Ok(status)
}

fn login(node: &citus_config::Node, creds: &pg::Credentials, database: &str) -> Result<String, String> {
    let mut c = pg::connect(node, creds, database, LOGIN_TIMEOUT).map_err(|e| match e {
        pg::ConnectError::NoDatabase { .. } => format!("no database {database:?} (`cargo xtask setup` creates it)"),
        pg::ConnectError::Unreachable { detail, .. } => detail,
        auth @ pg::ConnectError::Auth { .. } => auth.to_string(),
    })?;
    let row = c.query_one("SELECT (SELECT extversion FROM pg_extension WHERE extname = 'citus')", &[]).map_err(|e| pg::describe(&e))?;
    let version: Option<String> = row.get(0);
    Ok(match version {
        Some(v) => format!("citus {v} in {database:?}"),
        None => format!("no citus extension in {database:?} (`cargo xtask setup` creates it)"),
    })
}

fn local_servers(cluster: &Cluster) -> Status {
    let nodes = cluster
        .nodes()
        .map(|n| {
            let p = local::paths(cluster, n);
            let server = match local::running_pid(&p.pgdata) {
                Some(pid) => Server::Running(format!("pid {pid}, data in {}", p.pgdata.display())),
                None if p.pgdata.join("PG_VERSION").exists() => Server::Stopped(format!("data kept in {}", p.pgdata.display())),
                None => Server::Absent(format!("no data directory ({})", p.pgdata.display())),
            };
            NodeStatus {
                node: n.name.clone(),
                client: n.client.to_string(),
                server,
                login: None,
                restart_pending: Some(local::changed_since_start(cluster, n)),
            }
        })
        .collect();
    let others = local::other_node_dirs(cluster)
        .into_iter()
        .filter_map(|(name, p)| {
            local::running_pid(&p.pgdata).map(|pid| format!("{name}: runs (pid {pid}), not one of this run's {} worker(s)", cluster.workers.len()))
        })
        .collect();
    Status { nodes, others }
}

fn docker_servers(cluster: &Cluster) -> anyhow::Result<Status> {
    let containers = docker::containers(cluster)?;
    let volumes = docker::volumes(cluster).context("listing the cluster's docker volumes")?;
    let mut nodes: Vec<NodeStatus> = cluster
        .nodes()
        .map(|n| {
            let volume = citus_compose::docker_volume_name(cluster, n);
            let data = if volumes.contains(&volume) { format!("data kept in volume {volume}") } else { format!("no volume {volume}") };
            let server = match containers.iter().find(|c| c.service == n.name) {
                Some(c) if c.state == "running" => Server::Running(format!("container {}, {}; data in volume {volume}", c.id, c.status)),
                Some(c) => Server::Stopped(format!("container {} {}; {data}", c.id, c.status)),
                None if volumes.contains(&volume) => Server::Stopped(format!("no container; {data}")),
                None => Server::Absent(format!("no container, no volume {volume}")),
            };
            NodeStatus { node: n.name.clone(), client: n.client.to_string(), server, login: None, restart_pending: Some(Vec::new()) }
        })
        .collect();
    // What each running container lacks of the config (one `docker inspect`).
    let running: Vec<(usize, &citus_config::Node, &str)> = cluster
        .nodes()
        .enumerate()
        .filter_map(|(i, n)| containers.iter().find(|c| c.service == n.name && c.state == "running").map(|c| (i, n, c.id.as_str())))
        .collect();
    let ids: Vec<&str> = running.iter().map(|(_, _, id)| *id).collect();
    let seen = docker::inspect(&ids).context("reading what the running containers started with (to compare it with the config)")?;
    for ((i, node, _), seen) in running.iter().zip(seen) {
        nodes[*i].restart_pending = seen.map(|s| s.pending(cluster, node));
    }
    let others = containers
        .iter()
        .filter(|c| c.state == "running" && !cluster.nodes().any(|n| n.name == c.service))
        .map(|c| format!("{}: runs (container {}), not one of this run's {} worker(s)", c.service, c.id, cluster.workers.len()))
        .collect();
    Ok(Status { nodes, others })
}
