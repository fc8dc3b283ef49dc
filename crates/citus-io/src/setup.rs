//! `setup`: observe every node, plan with `citus-plan`, apply the plan (a thread per node,
//! each node's steps in phase order, see [`apply`]), under an advisory lock on the coordinator.

use std::{collections::BTreeMap, time::Instant};

use anyhow::{bail, Context};
use citus_config::{Backend, Cluster, Node};
use citus_plan::{Database, NodeState, Observed, Param, Plan, Start, Step, StepKind, Version};
use postgres::{
    error::SqlState,
    types::{ToSql, Type},
    Client,
};

use crate::{
    pg::{self, Credentials},
    Progress,
};

/// Advisory lock key held in the coordinator's target database while `setup` observes, plans
/// and applies (the bytes of "citusxt"), so two setups against one cluster take turns; see
/// `lock_setup`.
pub const SETUP_LOCK_KEY: i64 = 0x63_69_74_75_73_78_74;

/// What a cluster and how to reach it.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub cluster: &'a Cluster,
    pub backend: Backend,
    pub creds: &'a Credentials,
}

/// The connections `setup` and `verify` use, one set per node (coordinator first).
pub struct Conns<'a> {
    pub nodes: Vec<NodeConn<'a>>,
}

/// A node's connections: the maintenance database and the target database, each opened
/// when first needed (at least one is open after [`connect_all`]).
pub struct NodeConn<'a> {
    pub node: &'a Node,
    pub maint: Option<Client>,
    pub target: Option<Client>,
}

impl<'a> NodeConn<'a> {
    /// The target-database connection, opened on first use.
    pub fn target(&mut self, t: &Target<'_>) -> anyhow::Result<&mut Client> {
        if self.target.is_none() {
            self.target =
                Some(pg::connect(self.node, t.creds, &t.cluster.database, std::time::Duration::from_secs(10)).map_err(|e| if_went_away(self.node, e))?);
        }
        Ok(self.target.as_mut().expect("just opened"))
    }

    /// The maintenance-database connection, opened on first use.
    pub fn maint(&mut self, t: &Target<'_>) -> anyhow::Result<&mut Client> {
        if self.maint.is_none() {
            self.maint = Some(
                pg::connect(self.node, t.creds, &t.cluster.maintenance_database, std::time::Duration::from_secs(10)).map_err(|e| if_went_away(self.node, e))?,
            );
        }
        Ok(self.maint.as_mut().expect("just opened"))
    }

    /// Whichever connection is open, the target database's first; the maintenance database's
    /// is opened when neither is.
    fn any(&mut self, t: &Target<'_>) -> anyhow::Result<&mut Client> {
        match self.target {
            Some(ref mut c) => Ok(c),
            None => self.maint(t),
        }
    }
}

/// Waits (until `deadline`) for every node to accept a login in the target database (the
/// maintenance database when it does not exist yet). One connection per node, all at once,
/// is what makes a `setup` with nothing to do cheap; the coordinator's holds setup's lock.
pub fn connect_all<'a>(t: &Target<'a>, deadline: Instant, progress: Progress<'_>) -> anyhow::Result<Conns<'a>> {
    let nodes: Vec<&Node> = t.cluster.nodes().collect();
    let databases = vec![t.cluster.database.clone(), t.cluster.maintenance_database.clone()];
    // On Docker the first refused login asks the engine whether the node's container runs,
    // so that a stopped cluster is named at once (the local backend says so before waiting).
    let stopped = (t.backend == Backend::Docker).then(|| crate::docker::StoppedNote::new(t.cluster));
    let watch = |n: &Node, _: bool, _: &pg::ConnectError| {
        if let Some(note) = &stopped {
            note.check(n, progress);
        }
        Ok(())
    };
    let ready = pg::wait_all(&nodes, t.creds, |_| databases.clone(), deadline, progress, &watch);
    let errs: Vec<String> = ready.iter().filter_map(|r| r.as_ref().err()).map(|e| format!("  - {e:#}")).collect();
    if !errs.is_empty() {
        bail!("{} node(s) not ready:\n{}", errs.len(), errs.join("\n"));
    }
    let nodes = nodes
        .into_iter()
        .zip(ready.into_iter().flatten())
        .map(|(node, (client, which))| match which {
            0 => NodeConn { node, maint: None, target: Some(client) },
            _ => NodeConn { node, maint: Some(client), target: None },
        })
        .collect();
    Ok(Conns { nodes })
}

impl<'a> Conns<'a> {
    /// The connections `up` opened while it waited for the nodes (see [`crate::Ready`]), in
    /// node order: each becomes that node's target or maintenance connection; the rest open
    /// on first use.
    pub fn from_ready(t: &Target<'a>, ready: crate::Ready) -> Conns<'a> {
        let nodes = t
            .cluster
            .nodes()
            .zip(ready)
            .map(|(node, (client, which))| match which {
                0 => NodeConn { node, maint: None, target: Some(client) },
                _ => NodeConn { node, maint: Some(client), target: None },
            })
            .collect();
        Conns { nodes }
    }
}

impl Conns<'_> {
    /// Closes every connection, all at once. Closing one waits until its server has ended the
    /// session (the `postgres` crate sends Terminate and waits for the socket to close), 2-3 ms
    /// each, and one after another that was most of what a `setup` with nothing to do spent
    /// after its last query.
    pub fn close(self) {
        std::thread::scope(|s| {
            for nc in self.nodes {
                s.spawn(move || drop(nc));
            }
        });
    }
}

/// Runs `f` once per node, in parallel, and collects the results in node order.
pub fn per_node<'a, T: Send>(conns: &mut Conns<'a>, f: impl Fn(&mut NodeConn<'a>) -> anyhow::Result<T> + Sync) -> Vec<anyhow::Result<T>> {
    let f = &f;
    std::thread::scope(|s| {
        let hs: Vec<_> = conns.nodes.iter_mut().map(|nc| s.spawn(move || f(nc))).collect();
        hs.into_iter().map(|h| h.join().expect("node thread panicked")).collect()
    })
}

/// What `setup` did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One line per change this run made: `node: what it did` ([`citus_plan::Step::done`]).
    pub changed: Vec<String>,
    pub in_place: Vec<String>,
    pub left_alone: Vec<String>,
}

/// Reads the state `citus-plan` needs from every node.
pub fn observe(t: &Target<'_>, conns: &mut Conns<'_>) -> anyhow::Result<Observed> {
    observe_and_identify(t, conns).map(|(observed, _)| observed)
}

/// [`observe`], also returning each node's server identity (see [`SERVER_IDENTITY`]), in node
/// order, read in the same queries.
///
/// Every query here is sent with the parameter types given (`query_typed*`): one round trip
/// each instead of two (prepare, then execute). The coordinator's queries run one after
/// another, so a `setup` with nothing to do waits for each (6-11% of it on 1 + 2, 16% on
/// 1 + 8 when this was changed, docs/performance.md).
fn observe_and_identify(t: &Target<'_>, conns: &mut Conns<'_>) -> anyhow::Result<(Observed, Vec<String>)> {
    let wanted_authinfo = citus_plan::authinfo_for(&t.creds.password);
    let states = per_node(conns, |nc| observe_node(t, nc, &wanted_authinfo));
    let mut observed = Observed::default();
    let mut ids = Vec::new();
    for (nc, st) in conns.nodes.iter().zip(states) {
        let (st, id) = st?;
        observed.nodes.insert(nc.node.name.clone(), st);
        ids.push(id);
    }
    let coord = &mut conns.nodes[0];
    if observed.nodes[&coord.node.name].installed.is_some() {
        observed.dist_nodes =
            pg::dist_nodes(coord.target(t)?).with_context(|| format!("reading pg_dist_node on {} at {}", coord.node.name, coord.node.client))?;
    }
    Ok((observed, ids))
}

/// What tells two servers apart: the cluster's system identifier, its data directory and
/// when its postmaster started (a copied data directory has the same identifier).
const SERVER_IDENTITY: &str =
    "(SELECT system_identifier::text FROM pg_control_system()) || ':' || current_setting('data_directory') || ':' || pg_postmaster_start_time()::text";

fn observe_node(t: &Target<'_>, nc: &mut NodeConn<'_>, wanted_authinfo: &str) -> anyhow::Result<(NodeState, String)> {
    let ctx = || format!("observing {} at {}", nc.node.name, nc.node.client);
    const AVAILABLE: &str = "(SELECT default_version FROM pg_available_extensions WHERE name = 'citus')";
    const INSTALLED: &str = "(SELECT extversion FROM pg_extension WHERE extname = 'citus')";
    // Logged in to the target database: it exists, and the installed version is read at once.
    let (database_exists, available, mut installed, id): (bool, Option<String>, Option<Option<String>>, String) = match nc.target.as_mut() {
        Some(c) => {
            let r = c.query_typed_one(&format!("SELECT {AVAILABLE}, {INSTALLED}, {SERVER_IDENTITY}"), &[]);
            let r = r.map_err(|e| no_superuser(t, c, e)).with_context(ctx)?;
            (true, r.get(0), Some(r.get(1)), r.get(2))
        }
        None => {
            let c = nc.maint(t).with_context(ctx)?;
            let r = c.query_typed_one(
                &format!("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), {AVAILABLE}, {SERVER_IDENTITY}"),
                &[(&t.cluster.database, Type::TEXT)],
            );
            let r = r.map_err(|e| no_superuser(t, c, e)).with_context(ctx)?;
            (r.get(0), r.get(1), None, r.get(2))
        }
    };
    let mut st = NodeState { database_exists, available: available.as_deref().and_then(Version::parse), ..NodeState::default() };
    if !st.database_exists {
        return Ok((st, id));
    }
    let c = nc.target(t).with_context(ctx)?;
    if installed.is_none() {
        installed = Some(c.query_typed_one(&format!("SELECT {INSTALLED}"), &[]).with_context(ctx)?.get(0));
    }
    st.installed = installed.flatten().as_deref().and_then(Version::parse);
    if st.installed.is_some() {
        let r = c
            .query_typed_one(
                &format!("SELECT {}, EXISTS (SELECT 1 FROM pg_dist_authinfo WHERE nodeid = 0 AND rolename = $1 AND authinfo = $2)", pg::OWN_METADATA_COLUMNS),
                &[(&t.cluster.user, Type::TEXT), (&wanted_authinfo, Type::TEXT)],
            )
            .with_context(ctx)?;
        st.local_group = r.get(0);
        st.dist_node_count = r.get(1);
        st.authinfo_in_place = r.get(2);
    }
    Ok((st, id))
}

/// The error of `setup`'s first query on a node: when the server refused it for lack of
/// privilege (its identity needs `pg_control_system()`, a superuser's) and the cluster's user
/// is no superuser there, that, with the fix; else the error as it is.
fn no_superuser(t: &Target<'_>, c: &mut postgres::Client, e: postgres::Error) -> anyhow::Error {
    if e.code() != Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return e.into();
    }
    match c.query_typed_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[]).map(|r| r.get::<_, bool>(0)) {
        Ok(false) => anyhow::anyhow!(
            "user {:?} is no superuser there: setup creates the database and the citus extension, registers the nodes and stores the inter-node password in pg_dist_authinfo, which need one ({})\n    fix: set `user` in {} to a superuser of every node, or make it one there (`ALTER ROLE {} SUPERUSER`, as a superuser)",
            t.cluster.user,
            pg::describe(&e),
            t.cluster.source.display(),
            postgres_protocol::escape::escape_identifier(&t.cluster.user)
        ),
        _ => e.into(),
    }
}

/// Refuses when two configured nodes' client addresses reach the same server (`ids`: each
/// node's [`SERVER_IDENTITY`], in node order).
fn check_distinct_servers(conns: &Conns<'_>, ids: &[String]) -> anyhow::Result<()> {
    let mut seen: BTreeMap<&str, &Node> = BTreeMap::new();
    for (nc, id) in conns.nodes.iter().zip(ids) {
        if let Some(other) = seen.insert(id, nc.node) {
            bail!(
                "nodes {} ({}) and {} ({}) are the same PostgreSQL server: give every node its own client address (host/port in the config)",
                other.name,
                other.client,
                nc.node.name,
                nc.node.client
            );
        }
    }
    Ok(())
}

/// What `setup` may do beyond bringing the cluster to its config, each only where the user
/// named it.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    /// Workers about to be registered on which to drop the shard tables of an earlier
    /// cluster, instead of refusing them (see `orphaned_shards`; `setup --drop-orphaned-shards`).
    pub drop_orphaned_shards: Vec<String>,
}

/// Brings the cluster to the configured state; safe to repeat and to run twice at once.
pub fn run(t: &Target<'_>, deadline: Instant, allow: &Allow, progress: Progress<'_>) -> anyhow::Result<Outcome> {
    // Before connecting: plain PostgreSQL nodes are refused without waiting for them.
    check_preload(t.cluster)?;
    if t.backend == citus_config::Backend::Local {
        crate::local::say_stopped(t.cluster, progress);
    }
    let conns = connect_all(t, deadline, progress)?;
    run_with_early(t, conns, &[], allow, progress)
}

/// What [`first_steps`] did on one node: which node, and its state before.
#[derive(Debug, Clone)]
pub struct Early {
    pub node: String,
    pub before: NodeState,
}

/// Runs `node`'s own steps ([`citus_plan::node_items`]: its database, `CREATE EXTENSION
/// citus`, the inter-node password) on the connection that just proved it ready, before the
/// other nodes are up: on 2 cores its extension is then under way while they still start.
/// These steps contact no other node. `up` calls this for the servers it started itself,
/// then [`run_with_early`]. Nothing is done when the extension needs an update (that keeps
/// the cluster-wide order) or when the server has no citus (setup then says so). Returns
/// the ready connection for setup to reuse.
pub fn first_steps(t: &Target<'_>, node: &Node, ready: crate::ReadyConn, progress: Progress<'_>) -> anyhow::Result<(crate::ReadyConn, Option<Early>)> {
    let (client, which) = ready;
    let mut nc = match which {
        0 => NodeConn { node, maint: None, target: Some(client) },
        _ => NodeConn { node, maint: Some(client), target: None },
    };
    let (before, _) = observe_node(t, &mut nc, &citus_plan::authinfo_for(&t.creds.password))?;
    let items = citus_plan::node_items(t.cluster, node, &before, &t.creds.password);
    let early = if before.available.is_some() && !items.updates_extension() && items.steps().next().is_some() {
        for step in items.steps() {
            run_step(t, &mut nc, step, progress)?;
        }
        Some(Early { node: node.name.clone(), before })
    } else {
        None
    };
    let client = if which == 0 { nc.target } else { nc.maint };
    Ok((client.map(|c| (c, which)).expect("the ready connection stays open"), early))
}

/// [`run`] on connections already open, e.g. [`Conns::from_ready`] right after `up`.
pub fn run_with(t: &Target<'_>, conns: Conns<'_>, progress: Progress<'_>) -> anyhow::Result<Outcome> {
    run_with_early(t, conns, &[], &Allow::default(), progress)
}

/// [`run_with`] after [`first_steps`] ran on some nodes: what those did counts as changed by
/// this run, not as found in place.
pub fn run_with_early(t: &Target<'_>, mut conns: Conns<'_>, early: &[Early], allow: &Allow, progress: Progress<'_>) -> anyhow::Result<Outcome> {
    check_preload(t.cluster)?;
    let made_database = lock_setup(t, &mut conns, progress)?;
    // Read-only so far (but for a database `lock_setup` created, after the same check): two
    // configured nodes that are one server are refused before any change.
    let (observed, ids) = observe_and_identify(t, &mut conns)?;
    check_distinct_servers(&conns, &ids)?;
    for (name, st) in &observed.nodes {
        if st.available.is_none() {
            let n = t.cluster.node(name).expect("observed nodes are configured");
            bail!("node {name} at {}: the citus extension is not installed in this PostgreSQL server (pg_available_extensions has no citus); install Citus there, or use an image that has it", n.client);
        }
    }
    let plan = citus_plan::plan(t.cluster, t.backend, &observed, &t.creds.password)?;
    let (dropped, dropped_nothing) = orphaned_shards(t, &mut conns, &observed, &plan, &allow.drop_orphaned_shards)?;
    apply(t, &mut conns, &plan, progress)?;
    wait_metadata_synced(t, &mut conns.nodes[0], progress)?;
    let mut outcome = Outcome { changed: dropped, in_place: plan.in_place.clone(), left_alone: plan.left_alone.clone() };
    outcome.left_alone.extend(dropped_nothing);
    if let Some((line, in_place)) = made_database {
        outcome.changed.push(line);
        outcome.in_place.retain(|l| *l != in_place);
    }
    for e in early {
        let Some(node) = t.cluster.node(&e.node) else { continue };
        let lines = |it: &citus_plan::NodeItems| it.database_in_place.iter().chain(&it.in_place).cloned().collect::<Vec<String>>();
        let before = citus_plan::node_items(t.cluster, node, &e.before, &t.creds.password);
        let now = lines(&citus_plan::node_items(t.cluster, node, &observed.nodes[&e.node], &t.creds.password));
        outcome.changed.extend(before.steps().map(|s| format!("{}: {}", s.node, s.done(t.cluster))));
        let was = lines(&before);
        outcome.in_place.retain(|l| !now.contains(l) || was.contains(l));
    }
    outcome.changed.extend(plan.steps().map(|s| format!("{}: {}", s.node, s.done(t.cluster))));
    conns.close();
    Ok(outcome)
}

/// The shard tables a worker's own metadata places on it and that exist there, in shard id
/// order: `(shard id, name)`, the name as `shard_name` gives it (schema-qualified outside
/// `public`, each part quoted by the server's `quote_identifier` where needed), which is how
/// `to_regclass` and `DROP TABLE` read it. Not through `pg_class`: Citus hides the shards it
/// knows from queries of it.
const OWN_SHARDS: &str = "SELECT s.shardid, pg_catalog.shard_name(s.logicalrelid, s.shardid) FROM pg_dist_shard s \
     WHERE EXISTS (SELECT 1 FROM pg_dist_placement p WHERE p.shardid = s.shardid AND p.groupid = (SELECT groupid FROM pg_dist_local_group)) \
       AND to_regclass(pg_catalog.shard_name(s.logicalrelid, s.shardid)) IS NOT NULL \
     ORDER BY s.shardid";

/// Before any membership change: a worker about to be registered that still holds shards of
/// a cluster whose coordinator does not know it (its coordinator was made anew, its data
/// directory or volume deleted while the worker's was kept, or it belonged to another
/// cluster) is refused, unless `drop` names it: then those tables are dropped on it. Returns
/// a line per worker it dropped them on, and one per worker `drop` names that had none.
///
/// Registering such a worker makes Citus sync the coordinator's metadata to it, which drops
/// the worker's old metadata and shell tables but not its shards (`worker_drop_distributed_table`
/// says so), so they stay behind, unknown to every node, `verify` passes, and the next
/// distributed table whose shard gets one of their names fails with "relation ... already
/// exists". Only a worker about to be added whose own `pg_dist_local_group` names a group (a
/// fresh one has 0) is asked; a shard the coordinator also has, under the same id and name (a
/// worker removed and added back), is not counted. Dropping them by hand is a trap of its own:
/// `\dt` hides them and Citus refuses `DROP TABLE` on a shard it knows unless
/// `citus.enable_manual_changes_to_shards` is on.
fn orphaned_shards(t: &Target<'_>, conns: &mut Conns<'_>, observed: &Observed, plan: &Plan, drop: &[String]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let candidates: Vec<&str> = plan
        .steps()
        .filter(|s| s.kind == StepKind::AddWorker)
        .filter_map(|s| s.subject.as_deref())
        .filter(|w| observed.nodes.get(*w).is_some_and(|st| st.installed.is_some() && st.local_group.is_some_and(|g| g > 0)))
        .collect();
    let coordinator_installed = observed.nodes.get(&t.cluster.coordinator.name).is_some_and(|st| st.installed.is_some());
    let mut dropped = Vec::new();
    let mut dropped_on = Vec::new();
    for name in candidates {
        let Some(i) = conns.nodes.iter().position(|nc| nc.node.name == name) else { continue };
        let node = conns.nodes[i].node;
        let ctx = || format!("reading the shards {} at {} holds from an earlier cluster", node.name, node.client);
        let rows = conns.nodes[i].target(t).with_context(ctx)?.query_typed(OWN_SHARDS, &[]).with_context(ctx)?;
        let mut shards: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if !shards.is_empty() && coordinator_installed {
            let ids: Vec<i64> = shards.iter().map(|(id, _)| *id).collect();
            let coord = &mut conns.nodes[0];
            let ctx = || format!("reading pg_dist_shard on {} at {}", coord.node.name, coord.node.client);
            let known: Vec<(i64, String)> = coord
                .target(t)
                .with_context(ctx)?
                .query_typed(
                    "SELECT shardid, pg_catalog.shard_name(logicalrelid, shardid) FROM pg_dist_shard WHERE shardid = ANY($1)",
                    &[(&ids, Type::INT8_ARRAY)],
                )
                .with_context(ctx)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            shards.retain(|s| !known.contains(s));
        }
        if shards.is_empty() {
            continue;
        }
        let names: Vec<&str> = shards.iter().map(|(_, n)| n.as_str()).collect();
        if drop.iter().any(|d| d == name) {
            let ctx = || format!("dropping {} orphaned shard table(s) on {} at {}", names.len(), node.name, node.client);
            let c = conns.nodes[i].target(t).with_context(ctx)?;
            let mut tx = c.transaction().with_context(ctx)?;
            tx.batch_execute("SET LOCAL citus.enable_manual_changes_to_shards = on").with_context(ctx)?;
            tx.batch_execute(&format!("DROP TABLE {}", names.join(", "))).with_context(ctx)?;
            tx.commit().with_context(ctx)?;
            dropped.push(format!("{name}: dropped {} shard table(s) of an earlier cluster ({}; --drop-orphaned-shards)", names.len(), shortened(&names)));
            dropped_on.push(name);
            continue;
        }
        bail!(
            "worker {} at {} holds {} shard table(s) of a cluster whose coordinator does not know this worker ({}): \
             the coordinator was made anew while this worker's data was kept, or the worker belonged to another cluster. \
             Registering it would leave them orphaned (Citus drops a re-registered worker's old metadata, not its shards), \
             and a new distributed table whose shard gets one of these names would fail with \"relation ... already exists\". \
             Nothing was registered.\n    \
             fix: to keep them, start the coordinator that knew this worker again; to discard them (their rows are lost), \
             `cargo xtask setup --drop-orphaned-shards {}` drops them and registers the worker",
            node.name,
            node.client,
            names.len(),
            shortened(&names),
            node.name,
        );
    }
    let nothing = drop
        .iter()
        .filter(|d| !dropped_on.contains(&d.as_str()))
        .map(|d| format!("{d}: --drop-orphaned-shards dropped nothing: only a worker about to be registered that holds shards of an earlier cluster has any"))
        .collect();
    Ok((dropped, nothing))
}

/// The first three names, then how many more.
fn shortened(names: &[&str]) -> String {
    match names.len() {
        0..=3 => names.join(", "),
        n => format!("{} and {} more", names[..3].join(", "), n - 3),
    }
}

/// Takes [`SETUP_LOCK_KEY`] on the coordinator, waiting (and saying so) while another setup
/// holds it.
///
/// The lock lives in the target database, on the connection setup uses there anyway, so the
/// coordinator needs no second connection. Where that database is missing, setups first take
/// turns on the same key in the maintenance database, and the one whose turn it is and still
/// finds it missing creates it (the coordinator's `CREATE DATABASE` step of the plan), before
/// it takes the lock in it like every other setup. So every setup holds the target lock from
/// before it observes until it ends. That creation is the one change before `observe`, so the
/// nodes' server identities are checked first here too. Returns the line for the database it
/// created, and the line the plan would otherwise have counted as in place.
fn lock_setup(t: &Target<'_>, conns: &mut Conns<'_>, progress: Progress<'_>) -> anyhow::Result<Option<(String, String)>> {
    let exists = |coord: &mut NodeConn<'_>| -> anyhow::Result<bool> {
        Ok(coord.maint(t)?.query_typed_one("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[(&t.cluster.database, Type::TEXT)])?.get(0))
    };
    let node = conns.nodes[0].node;
    let mut made = None;
    if conns.nodes[0].target.is_none() && !exists(&mut conns.nodes[0])? {
        take_lock(conns.nodes[0].maint(t)?, node, progress)?;
        if !exists(&mut conns.nodes[0])? {
            let ids = per_node(conns, |nc| Ok(nc.any(t)?.query_typed_one(&format!("SELECT {SERVER_IDENTITY}"), &[])?.get::<_, String>(0)));
            check_distinct_servers(conns, &ids.into_iter().collect::<anyhow::Result<Vec<String>>>()?)?;
            let coord = &mut conns.nodes[0];
            let missing = citus_plan::node_items(t.cluster, node, &NodeState::default(), &t.creds.password);
            let step = missing.database.expect("a missing database has its CREATE DATABASE step");
            run_step(t, coord, &step, progress)?;
            let present = citus_plan::node_items(t.cluster, node, &NodeState { database_exists: true, ..NodeState::default() }, &t.creds.password);
            made = Some((format!("{}: {}", step.node, step.done(t.cluster)), present.database_in_place.expect("an existing database has its line")));
        }
    }
    take_lock(conns.nodes[0].target(t)?, node, progress)?;
    Ok(made)
}

fn take_lock(c: &mut Client, node: &Node, progress: Progress<'_>) -> anyhow::Result<()> {
    let got: bool = c.query_typed_one("SELECT pg_try_advisory_lock($1)", &[(&SETUP_LOCK_KEY, Type::INT8)])?.get(0);
    if !got {
        progress(&format!("another setup is running against {} at {}; waiting for it to finish", node.name, node.client));
        c.query_typed("SELECT pg_advisory_lock($1)", &[(&SETUP_LOCK_KEY, Type::INT8)])?;
    }
    Ok(())
}

/// After a worker's address changed (`citus_update_node`), Citus marks the workers' copies of
/// its metadata out of sync and its maintenance daemon re-syncs them shortly after; until then
/// a distributed DDL fails with "... is a metadata node, but is out of sync". `setup` returns
/// only when every active worker with metadata is synced, so the cluster is usable at once.
fn wait_metadata_synced(t: &Target<'_>, coord: &mut NodeConn<'_>, progress: Progress<'_>) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(t.cluster.ready_timeout_secs);
    let mut delay = std::time::Duration::from_millis(5);
    let started = Instant::now();
    let mut announced = false;
    loop {
        let pending: Vec<String> = coord
            .target(t)?
            .query_typed(
                "SELECT nodename || ':' || nodeport FROM pg_dist_node \
                 WHERE noderole = 'primary' AND isactive AND hasmetadata AND NOT metadatasynced ORDER BY nodeid",
                &[],
            )
            .with_context(|| format!("reading pg_dist_node on {} at {}", coord.node.name, coord.node.client))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if pending.is_empty() {
            if announced {
                progress(&format!("metadata synced ({:.2} s)", started.elapsed().as_secs_f64()));
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "Citus has not synced its metadata to {} within {} s (pg_dist_node.metadatasynced is false on {} at {}). \
                 Fix: check those workers' logs (`cargo xtask logs --node NAME`) and that the coordinator reaches them, then re-run `cargo xtask setup`",
                pending.join(", "),
                t.cluster.ready_timeout_secs,
                coord.node.name,
                coord.node.client
            );
        }
        if !announced {
            progress(&format!("waiting for Citus to sync its metadata to {}", pending.join(", ")));
            announced = true;
        }
        std::thread::sleep(delay);
        delay = pg::next_delay(delay, started.elapsed());
    }
}

/// `setup` creates the citus extension, which loads only when `citus` is the first preloaded
/// library: a config without it describes plain PostgreSQL nodes, which `setup` refuses.
pub fn check_preload(cluster: &Cluster) -> anyhow::Result<()> {
    if cluster.preloads_citus() {
        return Ok(());
    }
    bail!(
        "shared_preload_libraries in {} is [{}], without citus: these nodes are plain PostgreSQL, and CREATE EXTENSION citus needs citus preloaded first. \
         Fix: put \"citus\" first in shared_preload_libraries and restart the nodes (`cargo xtask up --restart`); \
         to start plain PostgreSQL nodes on purpose, use `cargo xtask up --no-setup`",
        cluster.source.display(),
        cluster.shared_preload_libraries.iter().map(|l| format!("{l:?}")).collect::<Vec<_>>().join(", ")
    )
}

/// Applies `plan`: one thread per node runs that node's steps in phase order. A phase that
/// starts [`Start::AfterAll`] waits until every node is done with the phases before it; one
/// that starts [`Start::AfterOwnNodes`] waits only for the step's own node and the worker it
/// is about. After a failure no node begins another step; the error names every failed step.
pub fn apply(t: &Target<'_>, conns: &mut Conns<'_>, plan: &Plan, progress: Progress<'_>) -> anyhow::Result<()> {
    let index: BTreeMap<&str, usize> = conns.nodes.iter().enumerate().map(|(i, nc)| (nc.node.name.as_str(), i)).collect();
    let board = Board { state: std::sync::Mutex::new((vec![0; conns.nodes.len()], false)), changed: std::sync::Condvar::new() };
    let announced = std::sync::Mutex::new(vec![false; plan.phases.len()]);
    let results = per_node(conns, |nc| -> anyhow::Result<Option<(usize, String)>> {
        let me = index[nc.node.name.as_str()];
        let _leave = board.on_panic();
        for (p, phase) in plan.phases.iter().enumerate() {
            let mine: Vec<&Step> = phase.steps.iter().filter(|s| s.node == nc.node.name).collect();
            for step in mine {
                // Each step waits for the nodes it depends on (for AfterOwnNodes: the worker it
                // is about; its own node's earlier steps ran on this thread already).
                let wait_for: Vec<usize> = match phase.start {
                    Start::AfterAll => (0..index.len()).collect(),
                    Start::AfterOwnNodes => step.subject.as_deref().and_then(|n| index.get(n).copied()).into_iter().collect(),
                };
                if !board.wait(&wait_for, p) {
                    return Ok(None);
                }
                if !std::mem::replace(&mut announced.lock().expect("apply headings")[p], true) {
                    progress(&format!("{} ...", phase.name));
                }
                if let Err(e) = check_before_moving(t, nc, step, plan).and_then(|()| run_step(t, nc, step, progress)) {
                    board.finish(me, p, true);
                    return Ok(Some((p, format!("{e:#}"))));
                }
            }
            board.finish(me, p + 1, false);
        }
        Ok(None)
    });
    let mut errs: Vec<(usize, String)> = results.into_iter().filter_map(|r| r.unwrap_or_else(|e| Some((usize::MAX, format!("{e:#}"))))).collect();
    if errs.is_empty() {
        return Ok(());
    }
    errs.sort_by_key(|(p, _)| *p);
    let mut phases: Vec<String> = errs.iter().filter_map(|(p, _)| plan.phases.get(*p)).map(|ph| format!("`{}`", ph.name)).collect();
    phases.dedup();
    let lines: Vec<String> = errs.into_iter().map(|(_, e)| e).collect();
    bail!("setup failed in phase {}:\n  - {}", phases.join(" and "), lines.join("\n  - "))
}

/// What the node threads of [`apply`] share: how many phases each node has finished, and
/// whether a step failed somewhere.
struct Board {
    state: std::sync::Mutex<(Vec<usize>, bool)>,
    changed: std::sync::Condvar,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<usize>, bool)> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until every node in `nodes` has finished the phases before `phase`; false when
    /// a step failed meanwhile (begin nothing more).
    fn wait(&self, nodes: &[usize], phase: usize) -> bool {
        let mut b = self.lock();
        while !b.1 && nodes.iter().any(|&i| b.0[i] < phase) {
            b = self.changed.wait(b).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        !b.1
    }

    fn finish(&self, node: usize, phases_done: usize, failed: bool) {
        let mut b = self.lock();
        b.0[node] = phases_done;
        b.1 |= failed;
        self.changed.notify_all();
    }

    /// A guard that, if its thread panics, marks the board failed so no other thread waits
    /// for it forever.
    fn on_panic(&self) -> impl Drop + '_ {
        struct Guard<'b>(&'b Board);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut b = self.0.lock();
                    b.1 = true;
                    self.0.changed.notify_all();
                }
            }
        }
        Guard(self)
    }
}

fn params(step: &Step) -> Vec<Box<dyn ToSql + Sync>> {
    step.params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync> {
            match p {
                Param::Text(s) | Param::Secret(s) => Box::new(s.clone()),
                Param::Int(i) => Box::new(*i),
            }
        })
        .collect()
}

fn run_step(t: &Target<'_>, nc: &mut NodeConn<'_>, step: &Step, progress: Progress<'_>) -> anyhow::Result<()> {
    let node = nc.node;
    let owned = params(step);
    let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
    if matches!(step.kind, StepKind::AddWorker | StepKind::UpdateWorkerAddress) {
        if let Some(subject) = step.subject.as_deref().and_then(|s| t.cluster.node(s)) {
            precheck_reachable(t, nc, subject)?;
        }
    }
    let client = match step.database {
        Database::Maintenance => nc.maint(t)?,
        Database::Target => nc.target(t)?,
    };
    let result = if step.params.is_empty() {
        client.batch_execute(&step.sql).map(|_| None)
    } else {
        client.query_opt(&step.sql, &refs).map(|r| r.and_then(|r| r.try_get::<_, i32>(0).ok()))
    };
    match result {
        Ok(returned) => {
            if step.kind == StepKind::AddWorker {
                check_added_is_worker(t, nc, step, returned)?;
            }
            progress(&format!("  {}: {}", node.name, step.why));
            Ok(())
        }
        Err(e) => {
            let code = e.code().cloned();
            let already = match step.kind {
                StepKind::CreateDatabase => code == Some(SqlState::DUPLICATE_DATABASE) || code == Some(SqlState::UNIQUE_VIOLATION),
                StepKind::CreateExtension => code == Some(SqlState::UNIQUE_VIOLATION) || code == Some(SqlState::DUPLICATE_OBJECT),
                _ => false,
            };
            if already {
                progress(&format!("  {}: already done by a concurrent run ({})", node.name, step.why));
                return Ok(());
            }
            Err(anyhow::anyhow!("{}", explain_failure(t, node, step, &pg::describe(&e))))
        }
    }
}

fn subject_address(t: &Target<'_>, step: &Step) -> Option<(String, String)> {
    let w = t.cluster.node(step.subject.as_deref()?)?;
    Some((w.name.clone(), t.cluster.cluster_address(w, t.backend).to_string()))
}

/// Before a coordinator-host step that moves a host already set (the config's cluster
/// address of the coordinator changed, or the nodes answering are another cluster's), checks
/// that the coordinator reaches its own new address and every worker the plan registers or
/// re-addresses, so that a `setup` that would fail there fails before it changes the cluster's
/// metadata. A host set for the first time is not checked here: nothing set before is lost.
/// Nor are the workers when the step may run before their own extensions exist
/// ([`Start::AfterOwnNodes`]): a worker's TLS comes with its extension, and Citus requires it.
fn check_before_moving(t: &Target<'_>, nc: &mut NodeConn<'_>, step: &Step, plan: &Plan) -> anyhow::Result<()> {
    if step.kind != StepKind::SetCoordinatorHost {
        return Ok(());
    }
    let row = nc.target(t)?.query_opt("SELECT nodename || ':' || nodeport FROM pg_dist_node WHERE groupid = 0", &[])?;
    let Some(current) = row.map(|r| r.get::<_, String>(0)) else { return Ok(()) };
    let coordinator = nc.node;
    // The workers' extensions exist only when this phase waits for every node's earlier ones.
    let workers_ready = plan.phases.iter().find(|p| p.steps.iter().any(|s| std::ptr::eq(s, step))).is_some_and(|p| p.start == Start::AfterAll);
    let mut subjects = vec![coordinator];
    if workers_ready {
        let moved = plan.phases.iter().flat_map(|p| &p.steps).filter(|s| matches!(s.kind, StepKind::AddWorker | StepKind::UpdateWorkerAddress));
        subjects.extend(moved.filter_map(|s| s.subject.as_deref().and_then(|n| t.cluster.node(n))));
    }
    for subject in subjects {
        precheck_reachable(t, nc, subject).map_err(|e| anyhow::anyhow!("{e:#}\n    (checked before moving the coordinator host, which stays {current})"))?;
    }
    Ok(())
}

/// Checks, with Citus's own connection, that the coordinator `nc` reaches `subject` (a worker,
/// or the coordinator itself) at its cluster address.
fn precheck_reachable(t: &Target<'_>, nc: &mut NodeConn<'_>, subject: &Node) -> anyhow::Result<()> {
    let addr = t.cluster.cluster_address(subject, t.backend);
    let whom = if subject.name == nc.node.name { "its own cluster address".to_string() } else { format!("worker {} at its cluster address", subject.name) };
    let c = nc.target(t)?;
    let has_check: bool = c.query_one("SELECT to_regproc('citus_check_connection_to_node') IS NOT NULL", &[])?.get(0);
    if !has_check {
        return Ok(());
    }
    // Citus says why it could not connect only in a WARNING.
    let (checked, notices) = pg::with_notices(|| c.query_one("SELECT citus_check_connection_to_node($1, $2)", &[&addr.host, &i32::from(addr.port)]));
    if checked?.get::<_, bool>(0) {
        return Ok(());
    }
    let why = pg::peer_failure(&notices);
    let because = why.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
    if let Some(fix) = why.as_deref().and_then(|w| peer_fix(t, &nc.node.name, &subject.name, &addr.to_string(), w)) {
        bail!("the coordinator {} cannot connect to {whom} {addr}{because}\n    fix: {fix}", nc.node.name);
    }
    bail!(
        "the coordinator {} cannot connect to {whom} {addr}{because}\n    \
         Each node has two addresses: the client address this tool uses ({}) and the cluster address the other nodes use ({addr}). \
         Fix: make {addr} reachable and resolvable from the coordinator, or set `cluster_address` of {} in {} (the seed's CITUS_NODE_NAME), then re-run `cargo xtask setup`",
        nc.node.name,
        subject.client,
        subject.name,
        t.cluster.source.display()
    )
}

/// The fix for a node that Citus on node `from` could not connect to at `addr` (node `to`),
/// by libpq's `reason` (see [`pg::peer_failure`]); `None` when the reason is one the caller's
/// own fix (the two addresses, networking) covers.
pub(crate) fn peer_fix(t: &Target<'_>, from: &str, to: &str, addr: &str, reason: &str) -> Option<String> {
    if reason.contains("SSL was required") {
        Some(ssl_off_fix(t, &format!("{to} at {addr}")))
    } else if reason.contains("password authentication failed") {
        Some(format!(
            "{to} refused the login of {} from {from}: every node logs in to the others with the cluster's password, which `cargo xtask setup` stores on each (pg_dist_authinfo) and which must be {to}'s own for {}: re-run `cargo xtask setup`, or give {to} that password (`ALTER ROLE`)",
            t.cluster.user, t.cluster.user
        ))
    } else {
        None
    }
}

/// The fix when Citus found `who` without TLS (`sslmode=require` refused).
fn ssl_off_fix(t: &Target<'_>, who: &str) -> String {
    // CREATE EXTENSION citus turns ssl on; a server where it is off again (ALTER SYSTEM, its
    // own postgresql.conf) fails this on every run.
    format!(
        "{who} runs with ssl off, and Citus connects with `sslmode=require`: either it has no citus extension in database {:?} yet (re-run `cargo xtask setup`, which creates it and with it turns ssl on), or ssl was turned off on it since (turn it on there, or set citus.node_conninfo = \"sslmode=prefer\" in [settings] of {})",
        t.cluster.database,
        t.cluster.source.display()
    )
}

fn check_added_is_worker(t: &Target<'_>, nc: &mut NodeConn<'_>, step: &Step, nodeid: Option<i32>) -> anyhow::Result<()> {
    let Some(id) = nodeid else { return Ok(()) };
    let group: i32 = nc.target(t)?.query_one("SELECT groupid FROM pg_dist_node WHERE nodeid = $1", &[&id])?.get(0);
    if group == 0 {
        let (w, addr) = subject_address(t, step).unwrap_or_default();
        bail!(
            "registering worker {w} at {addr} returned the coordinator's own row: {addr} is the coordinator. \
             Each node has two addresses (client and cluster); set `cluster_address` of {w} to the address at which the coordinator reaches that worker"
        );
    }
    Ok(())
}

/// The fix for a node that stopped answering in the middle of `setup`.
fn went_away_fix(node: &Node) -> String {
    format!(
        "{} at {} went away during setup (stopped, crashed or restarted): start it again (`cargo xtask up` for nodes this tool runs) and re-run `cargo xtask setup`; every step is safe to repeat",
        node.name, node.client
    )
}

/// A connection `setup` opens once every node has accepted a login (on first use): a node
/// that does not answer now went away meanwhile, and the error says so, with the fix.
fn if_went_away(node: &Node, e: pg::ConnectError) -> anyhow::Error {
    if e.no_answer() {
        anyhow::anyhow!("{e}\n    fix: {}", went_away_fix(node))
    } else {
        e.into()
    }
}

fn explain_failure(t: &Target<'_>, node: &Node, step: &Step, detail: &str) -> String {
    let head = format!("node {} at {}: {} failed: {detail}", node.name, node.client, step.sql);
    let subject = subject_address(t, step);
    // A step about no one worker (e.g. citus_set_coordinator_host, which Citus syncs to every
    // worker): the server's message names the node Citus connected to.
    let who =
        subject.as_ref().map_or_else(|| "a node Citus connected to (the server's message above names it)".to_string(), |(w, a)| format!("worker {w} at {a}"));
    let (w, addr) = subject.unwrap_or_default();
    let lost = ["connection closed", "server closed the connection", "terminating connection", "connection reset"];
    let fix = if lost.iter().any(|l| detail.contains(l)) {
        went_away_fix(node)
    } else if detail.contains("can only be loaded via shared_preload_libraries") {
        format!("put citus first in shared_preload_libraries on {} and restart it", node.name)
    } else if detail.contains("could not open extension control file") {
        format!("the citus extension is not installed in {}'s PostgreSQL: install Citus there or use an image that has it", node.name)
    } else if detail.contains("SSL was required") {
        ssl_off_fix(t, &who)
    } else if detail.contains("assign_distributed_transaction_id") {
        format!("{who} has no citus extension in database {:?}; re-run `cargo xtask setup`, which creates it first", t.cluster.database)
    } else if detail.contains("cannot add itself") {
        format!("{addr} reaches the coordinator itself, not worker {w}: set `cluster_address` of {w} to the worker's own address")
    } else if detail.contains("password authentication failed") || detail.contains("no password") {
        format!("{who} rejected {}'s login: every node needs the same password for {} (Citus copies roles between nodes)", node.name, t.cluster.user)
    } else if step.subject.is_some() && (detail.contains("connect") || detail.contains("translate host name")) {
        format!("the coordinator cannot reach {w} at its cluster address {addr}: check `cluster_address` of {w} (what the coordinator uses) versus its client address {}", t.cluster.node(&w).map(|n| n.client.to_string()).unwrap_or_default())
    } else {
        "see the server's message above".to_string()
    };
    format!("{head}\n    fix: {fix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that stops answering between the wait and a connection `setup` opens later is
    /// named with its address and the fix; a refused login keeps its own fix.
    #[test]
    fn a_node_that_went_away_during_setup_is_named_with_the_fix() {
        let c = Cluster::parse("database = \"d\"\n[coordinator]\nname = \"m\"\nport = 7000\n", std::path::Path::new("/w/citus.toml")).unwrap();
        let m = &c.coordinator;
        let e = if_went_away(m, pg::ConnectError::Unreachable { node: "m".into(), address: m.client.clone(), detail: "connection refused".into() }).to_string();
        assert_eq!(
            e,
            "node m at localhost:7000: connection refused\n    fix: m at localhost:7000 went away during setup (stopped, crashed or restarted): start it again (`cargo xtask up` for nodes this tool runs) and re-run `cargo xtask setup`; every step is safe to repeat"
        );
        let full = pg::ConnectError::Unreachable {
            node: "m".into(),
            address: m.client.clone(),
            detail: "FATAL: sorry, too many clients already (SQLSTATE 53300)".into(),
        };
        assert_eq!(if_went_away(m, full).to_string(), "node m at localhost:7000: FATAL: sorry, too many clients already (SQLSTATE 53300)");
        let auth =
            pg::ConnectError::Auth { node: "m".into(), address: m.client.clone(), user: "u".into(), origin: "CITUS_PASSWORD".into(), detail: "x".into() };
        let e = if_went_away(m, auth).to_string();
        assert!(e.contains("authentication failed") && !e.contains("went away"), "{e}");
    }
}
