//! The SQL setup plan for a Citus cluster: config + observed state in, ordered steps out.
//!
//! [`plan`] is pure. It follows the order every credible Citus setup uses
//! (see `docs/architecture.md`):
//! 1. `CREATE DATABASE` where missing (in the maintenance database; never inside a transaction);
//! 2. `CREATE EXTENSION citus` (or `ALTER EXTENSION citus UPDATE` where the installed
//!    extension is older than the library) and the inter-node password in
//!    `pg_dist_authinfo`, on the workers first, then on the coordinator;
//! 3. `citus_set_coordinator_host` with the coordinator's cluster address;
//! 4. per worker: `citus_add_node` (`master_add_node` before Citus 10), or the repair a
//!    re-run needs: `citus_activate_node` for a disabled or desynced worker,
//!    `citus_update_node` for a worker whose cluster address changed.
//!
//! Identifiers are quoted with `postgres_protocol::escape::escape_identifier`; every other
//! value is a bind parameter ([`Param`]), so no config value is ever spliced into SQL text.
//!
//! ```
//! use citus_plan::{plan, Observed};
//! let cluster = citus_config::Cluster::parse(
//!     "database = \"app\"\n[coordinator]\nname = \"c\"\nport = 5600\n[[workers]]\nname = \"w1\"\nport = 5601\n",
//!     "citus.toml".as_ref(),
//! ).unwrap();
//! let observed = Observed::fresh(&cluster, citus_plan::Version::new(13, 2));
//! let plan = plan(&cluster, citus_config::Backend::Docker, &observed, "secret").unwrap();
//! assert!(plan.render().contains("citus_add_node"));
//! ```

use std::{collections::BTreeMap, fmt};

use citus_config::{Address, Backend, Cluster, Node, Role};
use postgres_protocol::escape::escape_identifier;

/// A Citus extension version (`major.minor`), as in `pg_available_extensions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    /// Parses `13.2-1`, `13.2.2` or `11.0`; the part after `-` and any patch level are ignored.
    pub fn parse(s: &str) -> Option<Version> {
        let core = s.split(['-', ' ']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().unwrap_or("0").parse().ok()?;
        Some(Version { major, minor })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What the tool saw on one node before planning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeState {
    /// The target database exists.
    pub database_exists: bool,
    /// `pg_available_extensions.default_version` for citus: the library's version.
    pub available: Option<Version>,
    /// The extension version installed in the target database.
    pub installed: Option<Version>,
    /// `pg_dist_local_group.groupid` in the target database (0 on a fresh node).
    pub local_group: Option<i32>,
    /// Rows in this node's own `pg_dist_node`.
    pub dist_node_count: Option<i64>,
    /// `pg_dist_authinfo` already holds the wanted password for the user (nodeid 0).
    pub authinfo_in_place: bool,
}

/// One row of the coordinator's `pg_dist_node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistNode {
    pub nodeid: i32,
    pub groupid: i32,
    pub address: Address,
    pub isactive: bool,
    /// New shards may be placed on the node (`shouldhaveshards`).
    pub shouldhaveshards: bool,
}

/// Everything [`plan`] needs to know about the live cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// By node name; a node missing here is treated as fresh.
    pub nodes: BTreeMap<String, NodeState>,
    /// The coordinator's `pg_dist_node` rows (empty before the extension exists).
    pub dist_nodes: Vec<DistNode>,
}

impl Observed {
    /// The state of a cluster of never-touched nodes whose library is `version`:
    /// what `setup --dry-run` plans against.
    pub fn fresh(cluster: &Cluster, version: Version) -> Observed {
        let nodes = cluster.nodes().map(|n| (n.name.clone(), NodeState { available: Some(version), ..NodeState::default() })).collect();
        Observed { nodes, dist_nodes: Vec::new() }
    }

    fn node(&self, name: &str) -> NodeState {
        self.nodes.get(name).cloned().unwrap_or_default()
    }

    /// The coordinator's own row (group 0), if set.
    pub fn coordinator_row(&self) -> Option<&DistNode> {
        self.dist_nodes.iter().find(|d| d.groupid == 0)
    }
}

/// A bind parameter of a step.
#[derive(Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i32),
    /// A value that must never be printed (a password); rendered as `<secret>`.
    Secret(String),
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Text(s) => write!(f, "{}", postgres_protocol::escape::escape_literal(s)),
            Param::Int(i) => write!(f, "{i}"),
            Param::Secret(_) => f.write_str("<secret>"),
        }
    }
}

/// Which database a step runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// The maintenance database (`postgres`): for `CREATE DATABASE`.
    Maintenance,
    /// The cluster's target database.
    Target,
}

/// What a step does, for the "changed" report and for error interpretation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    CreateDatabase,
    CreateExtension,
    UpdateExtension,
    SetAuthinfo,
    SetCoordinatorHost,
    AddWorker,
    ActivateWorker,
    UpdateWorkerAddress,
    /// A cluster with no worker: the coordinator takes the shards (`shouldhaveshards`).
    CoordinatorTakesShards,
}

/// One SQL statement to run on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Node the statement runs on.
    pub node: String,
    pub database: Database,
    pub kind: StepKind,
    /// The SQL text; values are `$n` parameters.
    pub sql: String,
    pub params: Vec<Param>,
    /// One line saying why this step is needed.
    pub why: String,
    /// For worker-membership steps: the worker the step is about.
    pub subject: Option<String>,
}

impl Step {
    /// What the step did, for the summary of a run that applied it (`node: done`);
    /// [`why`](Self::why), which the progress lines and the dry run show, says what made it
    /// needed.
    pub fn done(&self, cluster: &Cluster) -> String {
        let db = escape_identifier(&cluster.database);
        let subject = self.subject.as_deref().unwrap_or("?");
        // The address a membership or coordinator-host step passes (host, port), if any.
        let at = match self.params.as_slice() {
            [.., Param::Text(host), Param::Int(port)] => u16::try_from(*port).map(|p| format!(" {}", Address::new(host.clone(), p))).unwrap_or_default(),
            _ => String::new(),
        };
        match self.kind {
            StepKind::CreateDatabase => format!("created database {db}"),
            StepKind::CreateExtension => format!("created extension citus in {db}"),
            StepKind::UpdateExtension => format!("updated extension citus in {db}"),
            StepKind::SetAuthinfo => format!("stored the inter-node password for {} in pg_dist_authinfo", cluster.user),
            StepKind::SetCoordinatorHost => format!("set the coordinator host to{at}"),
            StepKind::AddWorker => format!("registered worker {subject} at{at}"),
            StepKind::ActivateWorker => format!("re-activated worker {subject} at{at}"),
            StepKind::UpdateWorkerAddress => format!("updated the address of worker {subject} to{at}"),
            StepKind::CoordinatorTakesShards => format!("made the coordinator at{at} take shards (the cluster has no worker)"),
        }
    }
}

/// Steps that may run in parallel (one node each, or independent), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: &'static str,
    pub steps: Vec<Step>,
    /// When this phase's steps may begin.
    pub start: Start,
}

/// When the steps of a phase may begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Once every step of every earlier phase has finished, on all nodes.
    AfterAll,
    /// A step begins once the earlier phases' steps on its own node, and on the worker it
    /// is about ([`Step::subject`]), have finished; other nodes may still be busy. Only used
    /// when no worker is registered yet, so Citus contacts no node but those two.
    AfterOwnNodes,
}

/// The ordered plan, plus what was found already in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub phases: Vec<Phase>,
    /// Lines naming what needs no change.
    pub in_place: Vec<String>,
    /// Lines naming what the tool saw but deliberately leaves alone (e.g. unconfigured workers).
    pub left_alone: Vec<String>,
}

impl Plan {
    /// All steps in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.phases.iter().flat_map(|p| p.steps.iter())
    }

    /// True when applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.steps().next().is_none()
    }

    /// The plan as readable SQL, per phase and node, secrets masked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Numbered as shown: a phase with nothing to do is left out.
        for (i, phase) in self.phases.iter().filter(|p| !p.steps.is_empty()).enumerate() {
            let start = match phase.start {
                Start::AfterAll => "",
                Start::AfterOwnNodes => " (each step once its node and the worker it is about are done with the phases before)",
            };
            out.push_str(&format!("-- phase {}: {}{start}\n", i + 1, phase.name));
            for s in &phase.steps {
                let db = match s.database {
                    Database::Maintenance => "maintenance database",
                    Database::Target => "target database",
                };
                out.push_str(&format!("-- on {} ({db}): {}\n{};\n", s.node, s.why, s.sql));
                if !s.params.is_empty() {
                    let ps: Vec<String> = s.params.iter().enumerate().map(|(i, p)| format!("${} = {p:?}", i + 1)).collect();
                    out.push_str(&format!("--   with {}\n", ps.join(", ")));
                }
            }
        }
        for l in &self.in_place {
            out.push_str(&format!("-- in place: {l}\n"));
        }
        for l in &self.left_alone {
            out.push_str(&format!("-- left alone: {l}\n"));
        }
        if self.is_empty() {
            out.push_str("-- nothing to do\n");
        }
        out
    }
}

/// A configuration the plan refuses to act on.
#[derive(Debug, PartialEq, Eq)]
pub enum PlanError {
    WorkerIsCoordinator {
        worker: String,
        address: Address,
        client: Address,
    },
    SharedClusterAddress {
        first: String,
        second: String,
        address: Address,
    },
    /// The server at a registered worker's address holds the metadata (its own
    /// `pg_dist_local_group`) of another registered worker: two workers' addresses swapped in
    /// the config, say. Re-activating it would give it this address's group, whose shards it
    /// does not have.
    ServerOfAnotherGroup {
        worker: String,
        address: Address,
        registered_group: i32,
        holds_group: i32,
        holder: Address,
    },
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::WorkerIsCoordinator { worker, address, client } => write!(
                f,
                "worker `{worker}` has cluster address {address}, which is the coordinator's own cluster address.\n\
                 Each node has two addresses: the client address this tool and your tests use (here {client}), \
                 and the cluster address the other nodes use to reach it. Set `cluster_address` of `{worker}` in the \
                 config to the host:port at which the coordinator reaches that worker."
            ),
            PlanError::SharedClusterAddress { first, second, address } => write!(
                f,
                "workers `{first}` and `{second}` share the cluster address {address}: the coordinator would register one server twice. \
                 Give each worker its own `cluster_address` (the address the coordinator uses to reach it)."
            ),
            PlanError::ServerOfAnotherGroup { worker, address, registered_group, holds_group, holder } => write!(
                f,
                "worker `{worker}` at {address}: the coordinator registered group {registered_group} at that address, but the server there is group {holds_group}, \
                 which the coordinator registered at {holder}; re-activating it would make it group {registered_group} without that group's shards. \
                 Were two workers' ports or addresses swapped in the config? Nothing was changed.\n    \
                 fix: give each worker the address it was registered at again (the config's `port`, `host` or `cluster_address`), then run `cargo xtask setup`"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// The libpq connection string fragment Citus stores in `pg_dist_authinfo` for a password.
pub fn authinfo_for(password: &str) -> String {
    let escaped = password.replace('\\', "\\\\").replace('\'', "\\'");
    format!("password='{escaped}'")
}

/// The config's own reasons a plan cannot be made, whatever the cluster holds: a worker whose
/// cluster address is the coordinator's, or two workers with one cluster address. [`plan`]
/// checks them first; a task can check them before it starts any node.
pub fn check_addresses(cluster: &Cluster, backend: Backend) -> Result<(), PlanError> {
    let coord_addr = cluster.cluster_address(&cluster.coordinator, backend);
    let mut seen: BTreeMap<Address, &str> = BTreeMap::new();
    for w in &cluster.workers {
        let a = cluster.cluster_address(w, backend);
        if a == coord_addr {
            return Err(PlanError::WorkerIsCoordinator { worker: w.name.clone(), address: a, client: w.client.clone() });
        }
        if let Some(first) = seen.insert(a.clone(), &w.name) {
            return Err(PlanError::SharedClusterAddress { first: first.to_string(), second: w.name.clone(), address: a });
        }
    }
    Ok(())
}

/// Builds the plan that takes the observed cluster to the configured one.
///
/// `password` is stored on every node in `pg_dist_authinfo` (node id 0, the configured
/// user) so nodes authenticate to each other; it is masked in [`Plan::render`].
pub fn plan(cluster: &Cluster, backend: Backend, observed: &Observed, password: &str) -> Result<Plan, PlanError> {
    check_addresses(cluster, backend)?;
    let coord_addr = cluster.cluster_address(&cluster.coordinator, backend);

    let items: BTreeMap<&str, NodeItems> = cluster.nodes().map(|n| (n.name.as_str(), node_items(cluster, n, &observed.node(&n.name), password))).collect();
    let mut in_place = Vec::new();
    let mut databases = Vec::new();
    for n in cluster.nodes() {
        let it = &items[n.name.as_str()];
        databases.extend(it.database.clone());
        in_place.extend(it.database_in_place.clone());
    }
    let mut ext_steps = |n: &Node| {
        let it = &items[n.name.as_str()];
        in_place.extend(it.in_place.iter().cloned());
        it.extension.clone()
    };
    let worker_ext: Vec<Step> = cluster.workers.iter().flat_map(&mut ext_steps).collect();
    let coord_ext = ext_steps(&cluster.coordinator);

    // The function names depend on the coordinator's Citus version (library version when
    // the extension is not installed yet).
    let cst = observed.node(&cluster.coordinator.name);
    let version = cst.available.or(cst.installed).unwrap_or(Version::new(13, 0));
    let modern = version >= Version::new(10, 0);
    let fname = |modern_name: &str, old_name: &str| if modern { modern_name.to_string() } else { old_name.to_string() };
    let coordinator = &cluster.coordinator.name;

    let mut coord_host = Vec::new();
    match observed.coordinator_row() {
        Some(row) if row.address == coord_addr => in_place.push(format!("coordinator host {coord_addr}")),
        _ if !modern => in_place.push(format!("coordinator host not set: citus {version} has no citus_set_coordinator_host")),
        other => coord_host.push(Step {
            node: coordinator.clone(),
            database: Database::Target,
            kind: StepKind::SetCoordinatorHost,
            sql: "SELECT citus_set_coordinator_host($1, $2)".into(),
            params: vec![Param::Text(coord_addr.host.clone()), Param::Int(i32::from(coord_addr.port))],
            why: match other {
                Some(row) => format!("coordinator host is {}, want {coord_addr} (the address workers use to reach it)", row.address),
                None => format!("coordinator host is not set; workers reach it at {coord_addr}"),
            },
            subject: None,
        }),
    }

    let total_rows = observed.dist_nodes.len() as i64;
    let mut membership = Vec::new();
    let mut claimed = Vec::new();
    for w in &cluster.workers {
        let want = cluster.cluster_address(w, backend);
        let wst = observed.node(&w.name);
        let addr_params = vec![Param::Text(want.host.clone()), Param::Int(i32::from(want.port))];
        let row = observed.dist_nodes.iter().find(|d| d.address == want && d.groupid != 0);
        // The same server registered under an old address: its own pg_dist_local_group
        // names the group the coordinator gave it.
        let moved = row
            .is_none()
            .then(|| wst.local_group.filter(|g| *g > 0))
            .flatten()
            .and_then(|g| observed.dist_nodes.iter().find(|d| d.groupid == g && d.address != want && !cluster_wants(cluster, backend, &d.address)));
        let step = |kind, sql: String, params, why: String| Step {
            node: coordinator.clone(),
            database: Database::Target,
            kind,
            sql,
            params,
            why,
            subject: Some(w.name.clone()),
        };
        if let Some(old) = moved {
            claimed.push(old.nodeid);
            membership.push(step(
                StepKind::UpdateWorkerAddress,
                format!("SELECT {}($1, $2, $3)", fname("citus_update_node", "master_update_node")),
                vec![Param::Int(old.nodeid), Param::Text(want.host.clone()), Param::Int(i32::from(want.port))],
                format!("worker {} is registered as {} (node {}); its cluster address is now {want}", w.name, old.address, old.nodeid),
            ));
            continue;
        }
        let Some(row) = row else {
            membership.push(step(
                StepKind::AddWorker,
                format!("SELECT {}($1, $2)", fname("citus_add_node", "master_add_node")),
                addr_params,
                format!("worker {} is not registered; the coordinator reaches it at {want}", w.name),
            ));
            continue;
        };
        claimed.push(row.nodeid);
        if let Some(holds) = wst.local_group.filter(|g| *g > 0 && *g != row.groupid) {
            if let Some(other) = observed.dist_nodes.iter().find(|d| d.groupid == holds && d.nodeid != row.nodeid) {
                return Err(PlanError::ServerOfAnotherGroup {
                    worker: w.name.clone(),
                    address: want,
                    registered_group: row.groupid,
                    holds_group: holds,
                    holder: other.address.clone(),
                });
            }
        }
        let desync_reason = if !row.isactive {
            Some("it is disabled on the coordinator".to_string())
        } else if wst.installed.is_none() {
            Some("its database has no citus extension (dropped and recreated?)".to_string())
        } else if wst.local_group.is_some_and(|g| g != row.groupid) {
            Some(format!("its own group id is {} but the coordinator has {}", wst.local_group.unwrap_or_default(), row.groupid))
        } else if version >= Version::new(11, 0) && wst.dist_node_count.is_some_and(|c| c != total_rows) {
            Some(format!("its metadata lists {} nodes, the coordinator's {total_rows}", wst.dist_node_count.unwrap_or_default()))
        } else {
            None
        };
        match desync_reason {
            Some(reason) => membership.push(step(
                StepKind::ActivateWorker,
                format!("SELECT {}($1, $2)", fname("citus_activate_node", "master_activate_node")),
                addr_params,
                format!("worker {} at {want} needs re-activation: {reason}", w.name),
            )),
            None => in_place.push(format!("worker {} registered as {want} (node {}, group {})", w.name, row.nodeid, row.groupid)),
        }
    }
    let mut left_alone: Vec<String> = observed
        .dist_nodes
        .iter()
        .filter(|d| d.groupid != 0 && !claimed.contains(&d.nodeid) && !cluster_wants(cluster, backend, &d.address))
        .map(|d| {
            let n = cluster.workers.len();
            let what = match cluster.derived_worker_at(backend, &d.address) {
                Some((name, k)) => format!("is {name}, beyond this run's {n} worker(s) (`--workers {k}` includes it again)"),
                None => format!("is registered but is not one of this run's {n} worker(s) ({})", cluster.source.display()),
            };
            let remove = if modern {
                format!("to remove it, drain it first, on the coordinator: {}", remove_worker_sql(&d.address))
            } else {
                "to remove it, see the README (Removing a worker)".into()
            };
            format!("node {} at {} {what}; it stays registered, with any shards on it; {remove}", d.nodeid, d.address)
        })
        .collect();

    // Creating the extension touches only the node it runs on, so every node does its own
    // database, extension and password in one phase, all nodes at once (on a fresh 1+2
    // cluster this saves the coordinator's ~0.3 s CREATE EXTENSION after the workers'). An
    // update keeps the documented order: every worker, then the coordinator.
    let updating = worker_ext.iter().chain(&coord_ext).any(|s| s.kind == StepKind::UpdateExtension);
    let mut phases = if updating {
        vec![
            Phase { name: "create the database on every node", steps: databases, start: Start::AfterAll },
            Phase { name: "citus extension and inter-node password on the workers", steps: worker_ext, start: Start::AfterAll },
            Phase { name: "citus extension and inter-node password on the coordinator", steps: coord_ext, start: Start::AfterAll },
        ]
    } else {
        let mut steps = databases;
        steps.extend(worker_ext);
        steps.extend(coord_ext);
        vec![Phase { name: "database, citus extension and inter-node password on every node", steps, start: Start::AfterAll }]
    };
    // With no worker registered yet, setting the coordinator host and adding a worker make
    // Citus talk to the coordinator and that one worker only, so each such step need not wait
    // for the other workers' CREATE EXTENSION (on 2 cores, the coordinator adds the first
    // worker while the last one is still creating its extension). Otherwise (a worker already
    // registered, whose metadata Citus would update, or an extension update) every step waits
    // for all of the phase before it.
    let fresh = !updating && observed.dist_nodes.iter().all(|d| d.groupid == 0);
    let start = if fresh { Start::AfterOwnNodes } else { Start::AfterAll };
    phases.push(Phase { name: "coordinator host", steps: coord_host, start });
    phases.push(Phase { name: "worker membership", steps: membership, start });
    // Only a cluster of one node has this step: nothing to overlap.
    phases.push(Phase {
        name: "shards on the coordinator",
        steps: coordinator_shards(cluster, observed, &coord_addr, modern, &mut in_place, &mut left_alone),
        start: Start::AfterAll,
    });
    Ok(Plan { phases, in_place, left_alone })
}

/// A cluster with no worker is a single-node Citus: its distributed tables can only live on
/// the coordinator, which `citus_set_coordinator_host` registers without shards (when Citus
/// registers the coordinator of an empty cluster itself, at its first distributed table, it
/// gives it shards). With workers, the coordinator's setting is left as it is, a user may
/// have given it shards on purpose, and a coordinator that takes shards is named.
fn coordinator_shards(
    cluster: &Cluster,
    observed: &Observed,
    coord_addr: &Address,
    modern: bool,
    in_place: &mut Vec<String>,
    left_alone: &mut Vec<String>,
) -> Vec<Step> {
    if !modern {
        return Vec::new();
    }
    if !cluster.workers.is_empty() {
        if observed.coordinator_row().is_some_and(|r| r.shouldhaveshards) {
            // Most likely given while the cluster had no worker (`up --workers 0`).
            left_alone.push(format!(
                "the coordinator takes shards (shouldhaveshards), next to the workers; to keep new ones off it: SELECT citus_set_node_property({}, {}, 'shouldhaveshards', false) on the coordinator",
                postgres_protocol::escape::escape_literal(&coord_addr.host),
                coord_addr.port
            ));
        }
        return Vec::new();
    }
    if observed.coordinator_row().is_some_and(|r| r.shouldhaveshards) {
        in_place.push("the coordinator takes shards (the cluster has no worker)".into());
        return Vec::new();
    }
    vec![Step {
        node: cluster.coordinator.name.clone(),
        database: Database::Target,
        kind: StepKind::CoordinatorTakesShards,
        sql: "SELECT citus_set_node_property($1, $2, 'shouldhaveshards', true)".into(),
        params: vec![Param::Text(coord_addr.host.clone()), Param::Int(i32::from(coord_addr.port))],
        why: "the cluster has no worker, so its distributed tables' shards can only go to the coordinator".into(),
        subject: None,
    }]
}

/// What one node needs on its own, whatever the rest of the cluster looks like: its
/// database, the citus extension and the inter-node password. These steps contact no
/// other node; [`plan`] puts them first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeItems {
    /// `CREATE DATABASE`, when the database is missing (runs in the maintenance database).
    pub database: Option<Step>,
    /// The line for the database when it exists.
    pub database_in_place: Option<String>,
    /// `CREATE EXTENSION citus` or `ALTER EXTENSION citus UPDATE`, then the password row.
    pub extension: Vec<Step>,
    /// The lines for the extension and password when they are in place.
    pub in_place: Vec<String>,
}

impl NodeItems {
    /// The steps in the order they run.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.database.iter().chain(&self.extension)
    }

    /// True when the extension needs `ALTER EXTENSION citus UPDATE`: updates keep the
    /// cluster-wide order (every worker, then the coordinator), so they wait for [`plan`].
    pub fn updates_extension(&self) -> bool {
        self.extension.iter().any(|s| s.kind == StepKind::UpdateExtension)
    }
}

/// The node-local part of [`plan`] for one node in state `st`. A caller that has just
/// started a node may run these steps at once, before the other nodes are up (`up` does,
/// for the servers it started), unless [`NodeItems::updates_extension`].
pub fn node_items(cluster: &Cluster, n: &Node, st: &NodeState, password: &str) -> NodeItems {
    let db = escape_identifier(&cluster.database);
    let mut items = NodeItems::default();
    if st.database_exists {
        items.database_in_place = Some(format!("database {db} on {}", n.name));
    } else {
        items.database = Some(Step {
            node: n.name.clone(),
            database: Database::Maintenance,
            kind: StepKind::CreateDatabase,
            sql: format!("CREATE DATABASE {db}"),
            params: vec![],
            why: format!("database {db} is missing"),
            subject: None,
        });
    }
    let (steps, in_place) = (&mut items.extension, &mut items.in_place);
    match (st.installed, st.available) {
        (None, _) => steps.push(Step {
            node: n.name.clone(),
            database: Database::Target,
            kind: StepKind::CreateExtension,
            sql: "CREATE EXTENSION IF NOT EXISTS citus".into(),
            params: vec![],
            why: format!("citus is not installed in {db}"),
            subject: None,
        }),
        (Some(i), Some(a)) if i < a => steps.push(Step {
            node: n.name.clone(),
            database: Database::Target,
            kind: StepKind::UpdateExtension,
            sql: "ALTER EXTENSION citus UPDATE".into(),
            params: vec![],
            why: format!("installed extension {i} is older than the loaded library {a}"),
            subject: None,
        }),
        (Some(i), _) => in_place.push(format!("citus {i} in {db} on {}", n.name)),
    }
    if st.authinfo_in_place {
        in_place.push(format!("inter-node password for {} on {}", cluster.user, n.name));
    } else {
        steps.push(Step {
            node: n.name.clone(),
            database: Database::Target,
            kind: StepKind::SetAuthinfo,
            sql: "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, $1, $2) \
                  ON CONFLICT (rolename, nodeid) DO UPDATE SET authinfo = EXCLUDED.authinfo"
                .into(),
            params: vec![Param::Text(cluster.user.clone()), Param::Secret(authinfo_for(password))],
            why: "nodes authenticate to each other with the cluster's password (Citus reads it from pg_dist_authinfo)".into(),
            subject: None,
        });
    }
    items
}

/// The statements that take a worker out of the cluster without losing its shards: move
/// them to the other nodes, then unregister it (Citus 10 and later; run on the coordinator).
pub fn remove_worker_sql(addr: &Address) -> String {
    let host = postgres_protocol::escape::escape_literal(&addr.host);
    format!("SELECT citus_drain_node({host}, {0}); SELECT citus_remove_node({host}, {0});", addr.port)
}

fn cluster_wants(cluster: &Cluster, backend: Backend, addr: &Address) -> bool {
    cluster.workers.iter().any(|w| &cluster.cluster_address(w, backend) == addr)
}

/// Whether a node of this role runs the membership steps (only the coordinator does).
pub fn is_coordinator(node: &Node) -> bool {
    node.role == Role::Coordinator
}

#[cfg(test)]
mod tests;
