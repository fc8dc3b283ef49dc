//! Renders the docker compose file of a Citus cluster from its [`citus_config::Cluster`].
//!
//! This crate is pure: [`render`] takes the validated config and returns the complete
//! compose file as text. Writing it, comparing it with a committed copy and running
//! `docker compose` are the caller's business.
//!
//! What the file contains, one entry per node of the config (coordinator first):
//! - a service named after the node, `hostname` = node name, no `container_name`
//!   (so two compose projects, one per cluster, can coexist: the tool passes `-p <cluster name>`);
//! - the image of `[docker] image`, started as
//!   `postgres -c shared_preload_libraries=citus -c listen_addresses=*` (the libraries are
//!   those of the config's `shared_preload_libraries`, `citus` first; with an empty list the
//!   setting is left out and the nodes are plain PostgreSQL), then `-c name=value` for each of
//!   the config's `[settings]`;
//! - `POSTGRES_USER` = `user`, `POSTGRES_DB` = `database`: the image creates the target
//!   database on every node at its first start (the official Citus image also creates the
//!   citus extension in it then), so `setup` has less to do; `setup` creates whatever is
//!   missing either way. `POSTGRES_PASSWORD` only as the compose
//!   interpolation `${<password_env>:?...}`: the password is never written in the file, and
//!   compose refuses to start when the variable is unset. `POSTGRES_INITDB_ARGS` =
//!   `--auth-local=scram-sha-256 --auth-host=scram-sha-256`: the official image's entrypoint
//!   runs initdb without `--auth`, so its pg_hba.conf would trust every connection from inside
//!   the container (Unix socket and loopback) and ask a password only of the others. No trust
//!   authentication anywhere;
//! - a named volume `<node>_data` at [`citus_config::DockerSettings::data_mount`] (in the
//!   file the tool runs, [`render_owned`], labelled with the cluster's folder); `PGDATA`
//!   is never set, so images built on PostgreSQL 18 and later keep their own default
//!   (a versioned folder under the mount), older ones use the mount itself;
//! - a health check with `pg_isready` over TCP on 127.0.0.1: the image's first-start
//!   initialisation runs a temporary server on the Unix socket only, so a TCP check does not
//!   call a node ready before its real server listens;
//! - the client port published on `[docker] bind` only (127.0.0.1 by default; IPv6
//!   addresses bracketed), mapped to 5432 in the container;
//! - one private network, `citus`: the nodes reach each other by service name on 5432,
//!   which is the docker backend's cluster address. No membership-manager container and no
//!   Docker socket: the tool registers the workers itself;
//! - `stop_grace_period` [`STOP_GRACE_SECS`] and the sysctl `net.ipv4.tcp_syn_retries` =
//!   [`SYN_RETRIES`] in each container's own network namespace, so that a stop is a clean
//!   one (see [`SYN_RETRIES`]).
//!
//! Any `$` in a value taken from the config is written as `$$`, so compose passes it
//! through instead of interpolating it. The name in `password_env` is used as written and must
//! be a valid variable name (letters, digits, `_`).
//!
//! # Why serde-saphyr
//! The YAML is emitted by [`serde_saphyr`] (version 2, serializer only) from a serde model
//! of the compose file, not written by hand: it is maintained, `#![forbid(unsafe_code)]`,
//! quotes every string that a YAML 1.1 reader (docker-compose v1 uses PyYAML) could read as
//! something else (`yes`, `5600:5432` as base-60, numbers, ...), and offers
//! [`serde_saphyr::DoubleQuoted`]/[`serde_saphyr::FlowSeq`] to force the styles compose
//! users expect. The usual alternatives are out: `serde_yaml` is archived and `serde_yml`
//! has an unsoundness advisory.
//!
//! # Example
//! ```
//! let text = r#"
//! database = "app"
//! [coordinator]
//! name = "coord"
//! port = 5600
//! [[workers]]
//! name = "w1"
//! port = 5601
//! "#;
//! let cluster = citus_config::Cluster::parse(text, "citus.toml".as_ref()).unwrap();
//! let yaml = citus_compose::render(&cluster);
//! assert!(yaml.starts_with("# Generated from citus.toml"));
//! assert!(yaml.contains("\"127.0.0.1:5601:5432\""));
//! assert!(yaml.contains("POSTGRES_PASSWORD: ${CITUS_PASSWORD:?"));
//! ```

use std::collections::BTreeMap;

use citus_config::{Cluster, Node};
use serde::{ser::SerializeMap, Serialize, Serializer};
use serde_saphyr::{DoubleQuoted, FlowSeq};

/// The port PostgreSQL listens on inside every container.
pub const CONTAINER_PORT: u16 = 5432;

/// The private network every service is attached to.
pub const NETWORK: &str = "citus";

/// What every node's initdb gets (the official image's entrypoint passes
/// `POSTGRES_INITDB_ARGS` on): passwords for connections from inside the container too.
const INITDB_ARGS: &str = "--auth-local=scram-sha-256 --auth-host=scram-sha-256";

/// The named volume holding `node`'s data.
pub fn volume_name(node: &Node) -> String {
    format!("{}_data", node.name)
}

/// The name Docker gives `node`'s volume in `cluster`'s project: compose prefixes the file's
/// key, [`volume_name`], with the project's name.
pub fn docker_volume_name(cluster: &Cluster, node: &Node) -> String {
    format!("{}_{}", project_name(cluster), volume_name(node))
}

/// The label each data volume of a compose file from [`render_owned`] carries: the folder of
/// the cluster that made it.
pub const OWNER_LABEL: &str = "org.citus-xtask.cluster-dir";

/// Renders the complete compose file (header comment included) for `cluster`.
///
/// The output depends only on `cluster` (nodes in config order, keys in a fixed order),
/// so it can be committed and compared.
pub fn render(cluster: &Cluster) -> String {
    render_model(model(cluster, None), cluster)
}

/// [`render`], with every data volume labelled [`OWNER_LABEL`]` = owner` (the cluster's folder
/// on this machine), as the tool writes the file it runs: two configs with one `name` share a
/// compose project, and the label tells whose a volume is. Not for the committed file, which
/// must not depend on the machine.
pub fn render_owned(cluster: &Cluster, owner: &str) -> String {
    render_model(model(cluster, Some(owner)), cluster)
}

fn render_model(file: ComposeFile, cluster: &Cluster) -> String {
    let yaml = serde_saphyr::to_string(&file).expect("the compose model holds only strings, integers, lists and maps, which always serialize");
    let mut out = header(cluster);
    out.push_str(&yaml);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn header(cluster: &Cluster) -> String {
    // Only the file name: a full path would make the output depend on the machine.
    let source = cluster.source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "citus.toml".into());
    let env = &cluster.password.env;
    let name = project_name(cluster);
    format!(
        "# Generated from {source} by `cargo xtask compose --write`: do not edit.\n\
         # Change the config and regenerate instead.\n\
         # By hand: {env}=... docker compose -p {name} -f <this file> up -d\n\
         # ({env} is required; `cargo xtask up` sets it for you.)\n"
    )
}

/// The compose project name of a cluster: its name, lower-cased, with characters compose
/// does not accept replaced by `-` (and a leading `c` when it would not start with a letter
/// or digit). `cargo xtask up` runs the project under this name.
pub fn project_name(cluster: &Cluster) -> String {
    let mut p: String = cluster.name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    if !p.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        p.insert(0, 'c');
    }
    p
}

/// A map that serializes its entries in the order they were pushed.
#[derive(Debug)]
struct Ordered<V>(Vec<(String, V)>);

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// An empty mapping (`{}`), for volumes and networks with default settings.
type Empty = BTreeMap<String, String>;

#[derive(Debug, Serialize)]
struct ComposeFile {
    services: Ordered<Service>,
    networks: Ordered<Empty>,
    volumes: Ordered<Volume>,
}

/// A named volume: `{}`, or with its labels.
#[derive(Debug, Serialize)]
struct Volume {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, DoubleQuoted<String>>,
}

#[derive(Debug, Serialize)]
struct Service {
    image: String,
    hostname: String,
    command: FlowSeq<Vec<DoubleQuoted<String>>>,
    environment: Environment,
    ports: Vec<DoubleQuoted<String>>,
    volumes: Vec<String>,
    networks: Vec<String>,
    healthcheck: Healthcheck,
    stop_grace_period: String,
    sysctls: BTreeMap<&'static str, DoubleQuoted<String>>,
}

#[derive(Debug, Serialize)]
#[allow(non_snake_case)]
struct Environment {
    POSTGRES_USER: String,
    POSTGRES_DB: String,
    POSTGRES_PASSWORD: String,
    POSTGRES_INITDB_ARGS: String,
}

/// Each container's healthcheck, for `docker ps` and a `docker compose up --wait` by hand (the
/// tool's own `up` polls logins itself and needs none). Every check is a `docker exec` of
/// `pg_isready`, about 0.1 s of CPU on the machine measured: at a 1 s interval 9 nodes
/// kept 0.8 of its 2 cores busy, idle or starting, and a 1 + 8 `up` took 41-47 s against
/// 29-33 s at 10 s (docs/performance.md). So one check every [`HEALTH_INTERVAL`], with
/// [`HEALTH_RETRIES`] failures (60 s) before a container counts as unhealthy; a `--wait` by
/// hand returns at most that interval after the node is ready.
#[derive(Debug, Serialize)]
struct Healthcheck {
    test: FlowSeq<Vec<DoubleQuoted<String>>>,
    interval: String,
    timeout: String,
    retries: u32,
}

/// How often each container's healthcheck runs: each check is a `docker exec` of `pg_isready`
/// (about 0.1 s of CPU on the machine measured), so not every second (compose/README.md).
pub const HEALTH_INTERVAL: &str = "5s";

/// Failed checks in a row before a container counts as unhealthy: 60 s at [`HEALTH_INTERVAL`].
pub const HEALTH_RETRIES: u32 = 12;

/// How long compose waits for a container's server to stop cleanly before it kills it (its
/// default is 10 s). A fast shutdown usually takes well under a second; what takes longer is
/// a checkpoint of much unwritten data, or a Citus maintenance daemon still ending its
/// connections (see [`SYN_RETRIES`]). A killed server recovers from its WAL at the next start.
pub const STOP_GRACE_SECS: u32 = 30;

/// `net.ipv4.tcp_syn_retries` in each container: a connection the container opens gives up
/// after about 3 s (one retry) when its peer does not answer, instead of about 130 s (the
/// kernel's 6). On a compose network a running peer answers at once; one that does not answer
/// has stopped, and its address is gone. That is what a `down` meets: Citus's maintenance
/// daemon, exiting, cancels each remote command still running through libpq's `PQcancel`, which
/// opens a new connection and has no timeout, and a peer's container may already have stopped.
/// Measured on 1 + 8 with `down` right after an `up` on kept volumes (docs/performance.md,
/// "Sixteenth session" under Docker): without it, 4 of 6 `down`s had containers killed after
/// compose's 10 s (the daemon still in `connect()` in `PQcancel`; with a 60 s grace, three
/// containers of one `down` still stopping at 60 s); with it, 8 of 8 stopped cleanly within 10 s (1.5-7.4 s), and with it and
/// [`STOP_GRACE_SECS`] 8 of 8 more (1.7-15.7 s, two over 10 s: each cancel to a gone peer still
/// costs its 3 s). It applies only to connections made from inside the container (Citus's
/// between the nodes, or an extension's such as `postgres_fdw`), not to the host's.
pub const SYN_RETRIES: u32 = 1;

/// Escapes `$` so compose does not interpolate a value taken from the config.
/// Only values are interpolated, so mapping keys (service and volume names) stay as they are.
fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

fn quoted(items: &[&str]) -> FlowSeq<Vec<DoubleQuoted<String>>> {
    FlowSeq(items.iter().map(|s| DoubleQuoted(s.to_string())).collect())
}

/// `bind:port:5432`, with an IPv6 bind address in brackets.
fn port_mapping(bind: &str, port: u16) -> String {
    let bind = if bind.contains(':') && !bind.starts_with('[') { format!("[{bind}]") } else { bind.to_string() };
    format!("{bind}:{port}:{CONTAINER_PORT}")
}

/// The command every node's container runs, as the server receives it (the compose file
/// writes each `$` of it as `$$`): `postgres`, the preloaded libraries (left out when the
/// list is empty), `listen_addresses=*`, then each of the config's `[settings]` as
/// `-c name=value`. The server reads each value as written (no quotes to strip); later
/// options win, but `[settings]` cannot name those before them.
pub fn server_command(cluster: &Cluster) -> Vec<String> {
    let mut command = vec!["postgres".to_string()];
    if !cluster.shared_preload_libraries.is_empty() {
        command.extend(["-c".to_string(), format!("shared_preload_libraries={}", cluster.shared_preload_libraries.join(","))]);
    }
    command.extend(["-c".to_string(), "listen_addresses=*".to_string()]);
    for s in &cluster.settings {
        command.extend(["-c".to_string(), format!("{}={}", s.name, s.value)]);
    }
    command
}

fn model(cluster: &Cluster, owner: Option<&str>) -> ComposeFile {
    let user = literal(&cluster.user);
    let maintenance_db = literal(&cluster.maintenance_database);
    let env = &cluster.password.env;
    let password = format!("${{{env}:?set {env} (cargo xtask up sets it for you)}}");
    let container_port = CONTAINER_PORT.to_string();
    let command: Vec<String> = server_command(cluster).iter().map(|a| literal(a)).collect();
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let services = cluster
        .nodes()
        .map(|node| {
            let service = Service {
                image: literal(&cluster.docker.image),
                hostname: literal(&node.name),
                command: quoted(&command),
                environment: Environment {
                    POSTGRES_USER: user.clone(),
                    POSTGRES_DB: literal(&cluster.database),
                    POSTGRES_PASSWORD: password.clone(),
                    POSTGRES_INITDB_ARGS: INITDB_ARGS.into(),
                },
                ports: vec![DoubleQuoted(port_mapping(&cluster.docker.bind, node.client.port))],
                volumes: vec![format!("{}:{}", literal(&volume_name(node)), cluster.docker.data_mount())],
                networks: vec![NETWORK.to_string()],
                healthcheck: Healthcheck {
                    test: quoted(&["CMD", "pg_isready", "-h", "127.0.0.1", "-p", &container_port, "-U", &user, "-d", &maintenance_db]),
                    interval: HEALTH_INTERVAL.into(),
                    timeout: "5s".into(),
                    retries: HEALTH_RETRIES,
                },
                stop_grace_period: format!("{STOP_GRACE_SECS}s"),
                sysctls: [("net.ipv4.tcp_syn_retries", DoubleQuoted(SYN_RETRIES.to_string()))].into_iter().collect(),
            };
            (node.name.clone(), service)
        })
        .collect();
    let labels: BTreeMap<String, DoubleQuoted<String>> = owner.map(|o| (OWNER_LABEL.to_string(), DoubleQuoted(literal(o)))).into_iter().collect();
    let volumes = cluster.nodes().map(|node| (volume_name(node), Volume { labels: labels.clone() })).collect();
    ComposeFile { services: Ordered(services), networks: Ordered(vec![(NETWORK.to_string(), Empty::new())]), volumes: Ordered(volumes) }
}

#[cfg(test)]
mod tests;
