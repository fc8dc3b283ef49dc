//! `verify`: checks that prove the cluster works, each naming the node, its address and a fix.

use std::time::Duration;

use citus_config::{Address, Node};
use citus_plan::{DistNode, Version};
use postgres::types::Type;
use serde::Serialize;

use crate::{guc, pg, setup::Target, Progress};

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Node the check is about (`cluster` for cluster-wide checks).
    pub node: String,
    /// That node's client address.
    pub address: String,
    pub check: String,
    /// False for a failed check; true for a passed one, and for one that could not run here
    /// (`skipped`), which fails nothing.
    pub ok: bool,
    /// The check could not run against this cluster (e.g. a Citus without the function it
    /// uses): not counted as passed. Only in the JSON when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// What was seen.
    pub detail: String,
    /// The likely fix, for a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// All checks, in order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, node: &Node, check: &str, ok: bool, detail: impl Into<String>, fix: impl FnOnce() -> String) {
        self.checks.push(Check {
            node: node.name.clone(),
            address: node.client.to_string(),
            check: check.into(),
            ok,
            skipped: false,
            detail: detail.into(),
            fix: (!ok).then(fix),
        });
    }

    /// A check that could not run here, and why: shown as `skip`, failing nothing.
    fn push_skipped(&mut self, node: &Node, check: &str, why: impl Into<String>) {
        self.checks.push(Check {
            node: node.name.clone(),
            address: node.client.to_string(),
            check: check.into(),
            ok: true,
            skipped: true,
            detail: why.into(),
            fix: None,
        });
    }

    /// A fixed-width table for people.
    pub fn table(&self) -> String {
        let w_node = self.checks.iter().map(|c| c.node.len()).max().unwrap_or(4).max(4);
        let w_addr = self.checks.iter().map(|c| c.address.len()).max().unwrap_or(7).max(7);
        let w_check = self.checks.iter().map(|c| c.check.len()).max().unwrap_or(5).max(5);
        let mut out = format!("{:<4}  {:<w_node$}  {:<w_addr$}  {:<w_check$}  detail\n", "", "node", "address", "check");
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4}  {:<w_node$}  {:<w_addr$}  {:<w_check$}  {}\n",
                if c.skipped {
                    "skip"
                } else if c.ok {
                    "ok"
                } else {
                    "FAIL"
                },
                c.node,
                c.address,
                c.check,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("{:<4}  {:<w_node$}  fix: {fix}\n", "", ""));
            }
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        let skipped = self.checks.iter().filter(|c| c.skipped).count();
        let skipped_note = match skipped {
            0 => String::new(),
            n => format!(" ({n} skipped: could not run on this cluster, see above)"),
        };
        out.push_str(&match (failed, skipped) {
            (0, 0) => format!("all {} checks passed\n", self.checks.len()),
            (0, _) => format!("{} of {} checks passed{skipped_note}\n", self.checks.len() - skipped, self.checks.len()),
            _ => format!("{failed} of {} checks failed{skipped_note}\n", self.checks.len()),
        });
        out
    }
}

/// How long `verify` waits for a node before calling it unreachable.
pub const VERIFY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check. Never fails early: an unreachable node fails its checks and the others still run.
pub fn run(t: &Target<'_>, progress: Progress<'_>) -> Report {
    let mut report = Report::default();
    let cluster = t.cluster;
    let db = &cluster.database;
    // Reachability, in parallel; a node that answers gets a target-database connection.
    let nodes: Vec<&Node> = cluster.nodes().collect();
    let noun = if nodes.len() == 1 { "node" } else { "nodes" };
    progress(&format!("logging in to {} {noun}, all at once (giving each up to {} s)", nodes.len(), VERIFY_CONNECT_TIMEOUT.as_secs()));
    // Each thread also reads its node's settings and, on a worker, its own metadata: two round
    // trips per node, all nodes at once, instead of the workers' metadata one after another
    // later. Every query goes with its parameter types (`query_typed*`): one round trip, not two.
    type Seen = Option<Result<Vec<guc::Seen>, postgres::Error>>;
    // Err: what failed, and its fix (which depends on why: a login refused is no stopped node).
    type Reached = Result<(postgres::Client, Result<postgres::Row, postgres::Error>, Option<Result<postgres::Row, postgres::Error>>, Seen), (String, String)>;
    let conns: Vec<Reached> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                s.spawn(move || {
                    let mut client = pg::connect(n, t.creds, db, VERIFY_CONNECT_TIMEOUT).map_err(|e| (e.to_string(), unreachable_fix(&e, n, &cluster.user)))?;
                    let settings = client.query_typed_one(SETTINGS_QUERY, &[]);
                    let metadata = (i > 0).then(|| client.query_typed_one(&format!("SELECT {}", pg::OWN_METADATA_COLUMNS), &[]));
                    let configured = (!cluster.settings.is_empty()).then(|| guc::read(&mut client, &cluster.settings));
                    Ok((client, settings, metadata, configured))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("verify thread panicked")).collect()
    });
    let mut live: Vec<(&Node, postgres::Client)> = Vec::new();
    // Each live worker's own metadata (`pg::OWN_METADATA_COLUMNS`), by name.
    let mut metadata: std::collections::BTreeMap<String, Result<postgres::Row, postgres::Error>> = Default::default();
    let mut versions: Vec<(String, Option<Version>)> = Vec::new();
    for (node, c) in nodes.iter().zip(conns) {
        match c {
            Ok((client, settings, meta, configured)) => {
                report.push(node, "reachable", true, format!("login to {db} as {}", t.creds.user), String::new);
                node_checks(&mut report, node, settings, &mut versions);
                match configured {
                    None => {}
                    Some(Ok(seen)) => {
                        let (ok, detail, fix) = guc::judge(&seen, &node.name, &cluster.coordinator.name, db, &cluster.user);
                        report.push(node, "config settings", ok, detail, || fix.unwrap_or_default());
                    }
                    Some(Err(e)) => report.push(node, "config settings", false, pg::describe(&e), || "see the server's message".into()),
                }
                if let Some(m) = meta {
                    metadata.insert(node.name.clone(), m);
                }
                live.push((node, client));
            }
            Err((e, fix)) => report.push(node, "reachable", false, e, || fix),
        }
    }
    progress(&format!("{} of {} {noun} reachable", live.len(), nodes.len()));
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let (ok, detail, fix) = version_check(&names, &versions);
    report.checks.push(Check { node: "cluster".into(), address: "-".into(), check: "same citus version".into(), ok, skipped: false, detail, fix });

    let coord_live = live.first().is_some_and(|(n, _)| n.name == cluster.coordinator.name);
    if !coord_live {
        report.ok = report.checks.iter().all(|c| c.ok);
        return report;
    }
    progress(&format!(
        "checking from {}: its host, the workers' registrations and metadata, the shards, all-pairs health, a distributed round trip",
        cluster.coordinator.name
    ));
    coordinator_checks(t, &mut report, &mut live, metadata);
    report.ok = report.checks.iter().all(|c| c.ok);
    report
}

/// The fix of a node `verify` could not log in to, by why.
fn unreachable_fix(e: &pg::ConnectError, node: &Node, user: &str) -> String {
    match e {
        pg::ConnectError::Unreachable { .. } => {
            format!("start the node (`cargo xtask up`) and re-run `cargo xtask setup`; check it listens on {}", node.client)
        }
        pg::ConnectError::Auth { origin, .. } => format!(
            "the node refused the login of {user:?}: give it the password from {origin} (`ALTER ROLE` on the node), or run the tests with the password its data was made with; `cargo xtask status` shows each node's login"
        ),
        pg::ConnectError::NoDatabase { database, .. } => format!("run `cargo xtask setup`: it creates {database:?} (with the citus extension) on every node that lacks it"),
    }
}

/// The cluster's "same citus version" check: whether, what was seen, and the fix. `versions`
/// holds the installed version of every node whose settings could be read, in node order;
/// the fix names what stands in the way (nodes not read, nodes without the extension, or
/// versions that differ) instead of always asking for a reinstall.
fn version_check(nodes: &[&str], versions: &[(String, Option<Version>)]) -> (bool, String, Option<String>) {
    let distinct: std::collections::BTreeSet<Version> = versions.iter().filter_map(|(_, v)| *v).collect();
    let mut detail = versions.iter().map(|(n, v)| format!("{n}={}", v.map_or("none".into(), |v| v.to_string()))).collect::<Vec<_>>().join(", ");
    let unread: Vec<&str> = nodes.iter().copied().filter(|n| !versions.iter().any(|(m, _)| m == n)).collect();
    let without: Vec<&str> = versions.iter().filter(|(_, v)| v.is_none()).map(|(n, _)| n.as_str()).collect();
    if !unread.is_empty() {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&format!("not read: {}", unread.join(", ")));
    }
    let fix = if distinct.len() > 1 {
        Some("install the same Citus version on every node, then `ALTER EXTENSION citus UPDATE` (cargo xtask setup does it)".to_string())
    } else if versions.is_empty() {
        Some("no node answered: start the nodes (`cargo xtask up`); the reachable checks above say why each failed".to_string())
    } else if !unread.is_empty() {
        Some(format!("the version of {} could not be read: see its checks above, then re-run `cargo xtask verify`", unread.join(", ")))
    } else if !without.is_empty() {
        Some(format!("citus is not installed on {}: run `cargo xtask setup`", without.join(", ")))
    } else {
        None
    };
    (fix.is_none(), detail, fix)
}

/// What [`node_checks`] looks at: the preload list, the installed and the available citus.
const SETTINGS_QUERY: &str = "SELECT current_setting('shared_preload_libraries'), \
     (SELECT extversion FROM pg_extension WHERE extname = 'citus'), \
     (SELECT default_version FROM pg_available_extensions WHERE name = 'citus')";

fn node_checks(report: &mut Report, node: &Node, settings: Result<postgres::Row, postgres::Error>, versions: &mut Vec<(String, Option<Version>)>) {
    let row = match settings {
        Ok(r) => r,
        Err(e) => return report.push(node, "settings", false, pg::describe(&e), || "see the server's message".into()),
    };
    let preload: String = row.get(0);
    let first = preload.split(',').next().unwrap_or("").trim().trim_matches('"').to_string();
    report.push(node, "citus preloaded first", first == "citus", format!("shared_preload_libraries = '{preload}'"), || {
        format!(
            "set shared_preload_libraries = 'citus{}' on {} (citus must come first) and restart it",
            if preload.is_empty() { String::new() } else { format!(",{preload}") },
            node.name
        )
    });
    let installed: Option<String> = row.get(1);
    let available: Option<String> = row.get(2);
    report.push(
        node,
        "extension installed",
        installed.is_some(),
        installed.clone().map_or("citus not installed in this database".into(), |v| format!("citus {v}")),
        || "run `cargo xtask setup` (CREATE EXTENSION citus in the target database)".into(),
    );
    let iv = installed.as_deref().and_then(Version::parse);
    let av = available.as_deref().and_then(Version::parse);
    versions.push((node.name.clone(), iv));
    if let (Some(i), Some(raw)) = (iv, installed.as_deref()) {
        // Both as the catalogs spell them (`13.2-1`); they match when their major.minor do.
        let detail = format!("installed {raw}, library {}", available.as_deref().unwrap_or("none"));
        report
            .push(node, "library matches extension", av == Some(i), detail, || "run `cargo xtask setup` (ALTER EXTENSION citus UPDATE, workers first)".into());
    }
}

/// Checks run on the coordinator; `live` holds target-database connections, coordinator first.
fn coordinator_checks(
    t: &Target<'_>,
    report: &mut Report,
    live: &mut [(&Node, postgres::Client)],
    mut metadata: std::collections::BTreeMap<String, Result<postgres::Row, postgres::Error>>,
) {
    let cluster = t.cluster;
    let coord = cluster.coordinator.clone();
    let coord_c = &mut live[0].1;
    let rows = match pg::dist_nodes(coord_c) {
        Ok(r) => r,
        Err(e) => return report.push(&coord, "pg_dist_node", false, pg::describe(&e), || "run `cargo xtask setup`".into()),
    };
    let want_coord = cluster.cluster_address(&coord, t.backend);
    let crow = rows.iter().find(|r| r.groupid == 0);
    report.push(
        &coord,
        "coordinator host",
        crow.is_some_and(|r| r.address == want_coord),
        crow.map_or("not set".into(), |r| format!("{} (want {want_coord})", r.address)),
        || "run `cargo xtask setup` (citus_set_coordinator_host)".into(),
    );
    let mut groups = std::collections::BTreeSet::new();
    for w in &cluster.workers {
        let want = cluster.cluster_address(w, t.backend);
        let row = rows.iter().find(|r| r.address == want);
        let (ok, detail) = match row {
            None => (false, format!("not registered as {want}")),
            Some(r) if r.groupid == 0 => (false, format!("{want} is registered as the coordinator (group 0)")),
            Some(r) if !r.isactive => (false, format!("registered as {want} (node {}) but disabled", r.nodeid)),
            Some(r) if !groups.insert(r.groupid) => (false, format!("shares group {} with another worker", r.groupid)),
            Some(r) => (true, format!("active as {want} (node {}, group {})", r.nodeid, r.groupid)),
        };
        report.push(w, "registered and active", ok, detail, || "run `cargo xtask setup` (citus_add_node / citus_activate_node)".into());
    }
    let configured: Vec<Address> = cluster.workers.iter().map(|w| cluster.cluster_address(w, t.backend)).collect();
    let beyond: Vec<(&DistNode, Option<(String, usize)>)> =
        rows.iter().filter(|r| r.groupid != 0 && !configured.contains(&r.address)).map(|r| (r, cluster.derived_worker_at(t.backend, &r.address))).collect();
    // The count that takes in every such worker a larger run would have.
    let widest = beyond.iter().filter_map(|(_, d)| d.as_ref().map(|(_, k)| *k)).max();
    for (r, derived) in &beyond {
        let state = if r.isactive { "active" } else { "inactive" };
        let remove = citus_plan::remove_worker_sql(&r.address);
        let (detail, fix) =
            match derived {
                Some((name, own)) => {
                    let k = widest.unwrap_or(*own);
                    (
                format!("node {} at {} ({state}) is {name}, beyond this run's {} worker(s)", r.nodeid, r.address, cluster.workers.len()),
                format!("verify with `--workers {k}` if it belongs to the cluster, or drain and remove it yourself, on the coordinator: {remove} (see README)"),
            )
                }
                None => (
                    format!("node {} at {} is registered ({state}) but not in {}", r.nodeid, r.address, cluster.source.display()),
                    format!("add it to the config, or drain and remove it yourself, on the coordinator: {remove} (see README)"),
                ),
            };
        report.checks.push(Check {
            node: "cluster".into(),
            address: r.address.to_string(),
            check: "no unconfigured workers".into(),
            ok: false,
            skipped: false,
            detail,
            fix: Some(fix),
        });
    }
    // Each worker's own metadata must match the coordinator's (a recreated database passes
    // the health check but has an empty pg_dist_node).
    let total = rows.len() as i64;
    for (node, _) in live.iter().skip(1) {
        let node: &Node = node;
        let want = cluster.cluster_address(node, t.backend);
        let expected_group = rows.iter().find(|r| r.address == want).map(|r| r.groupid);
        let Some(read) = metadata.remove(&node.name) else { continue };
        match read {
            Ok(r) => {
                let group: Option<i32> = r.get(0);
                let count: i64 = r.get(1);
                let ok = expected_group.is_some() && group == expected_group && count == total;
                report.push(
                    node,
                    "metadata in sync",
                    ok,
                    format!(
                        "own group {}, {count} nodes in its pg_dist_node (coordinator: group {}, {total} nodes)",
                        group.map_or("none".into(), |g| g.to_string()),
                        expected_group.map_or("none".into(), |g| g.to_string())
                    ),
                    || format!("run `cargo xtask setup` (citus_activate_node('{}', {}) re-syncs it)", want.host, want.port),
                );
            }
            Err(e) => report.push(node, "metadata in sync", false, pg::describe(&e), || "run `cargo xtask setup`".into()),
        }
    }
    shards_present(t, report, &rows, live);
    // The round trip first: the connections it opens to the workers stay cached in the
    // coordinator's session, so the coordinator's half of the health check reuses them
    // (a new inter-node connection costs ~12 ms of CPU on 2 cores: SCRAM and a backend).
    let coord_c = &mut live[0].1;
    round_trip(t, report, &coord, coord_c);
    all_pairs_health(t, report, &coord, &rows, live);
}

/// Every shard placement the coordinator's metadata puts in a node's group, by name: the
/// shard's relation (`shard_name`, which leaves `public` unqualified: qualified here, so the
/// nodes' search_path plays no part).
const PLACEMENTS_QUERY: &str = "SELECT p.groupid, array_agg(CASE WHEN n.nspname = 'public' THEN 'public.' || shard_name(s.logicalrelid, s.shardid) \
     ELSE shard_name(s.logicalrelid, s.shardid) END ORDER BY s.shardid) \
     FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid) JOIN pg_class c ON c.oid = s.logicalrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace GROUP BY p.groupid";

/// Of the relations named in `$1`, how many this node lacks, and the first three.
const MISSING_SHARDS_QUERY: &str = "SELECT count(*), (array_agg(r ORDER BY r))[1:3] FROM unnest($1::text[]) r WHERE to_regclass(r) IS NULL";

/// Every reachable node that the coordinator's metadata gives shard placements has their
/// relations (one query on the coordinator, then one per such node, all at once). A node
/// whose data directory or database was made anew is registered and in sync again after
/// `setup`, but its shards are gone: every query on their tables fails.
fn shards_present(t: &Target<'_>, report: &mut Report, rows: &[DistNode], live: &mut [(&Node, postgres::Client)]) {
    let placed: std::collections::BTreeMap<i32, Vec<String>> = match live[0].1.query_typed(PLACEMENTS_QUERY, &[]) {
        Ok(r) => r.iter().map(|r| (r.get(0), r.get(1))).collect(),
        Err(e) => return report.push(live[0].0, "shards present", false, pg::describe(&e), || "run `cargo xtask setup`".into()),
    };
    let group_of = |node: &Node| -> Option<i32> {
        let own = t.cluster.cluster_address(node, t.backend);
        if node.name == t.cluster.coordinator.name {
            return Some(0);
        }
        rows.iter().find(|r| r.address == own && r.groupid != 0).map(|r| r.groupid)
    };
    type Missing = Result<(i64, Vec<String>), String>;
    let results: Vec<(&Node, usize, Missing)> = std::thread::scope(|s| {
        let hs: Vec<_> = live
            .iter_mut()
            .filter_map(|(node, client)| {
                let names = placed.get(&group_of(node)?)?;
                Some(s.spawn(move || {
                    let got = client.query_typed_one(MISSING_SHARDS_QUERY, &[(names, Type::TEXT_ARRAY)]);
                    (&**node, names.len(), got.map(|r| (r.get(0), r.get::<_, Option<Vec<String>>>(1).unwrap_or_default())).map_err(|e| pg::describe(&e)))
                }))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("shards thread panicked")).collect()
    });
    for (node, total, missing) in results {
        match missing {
            Ok((0, _)) => report.push(node, "shards present", true, format!("all {total} shard placement(s) the coordinator lists here"), String::new),
            Ok((n, some)) => report.push(
                node,
                "shards present",
                false,
                format!("{n} of the {total} shard placement(s) the coordinator lists here are missing, e.g. {}", some.join(", ")),
                || {
                    "their rows are not on this node (was its data directory or database made anew?): restore them from a backup, copy the shards from \
                     another placement if the tables have one (citus_copy_shard_placement), or drop and recreate the tables; queries on them fail until then"
                        .into()
                },
            ),
            Err(e) => report.push(node, "shards present", false, e, || "run `cargo xtask verify` again; if it persists, see `cargo xtask logs`".into()),
        }
    }
}

/// Every reachable node checks its connection to every other active registered node with
/// `citus_check_connection_to_node` (Citus 11.0+), all nodes at once. These are the pairs of
/// `citus_check_cluster_node_health()`, which runs them from one node after another (three
/// times slower on a 1+2 cluster), less each node's connection to its own address: every
/// address is still tried from every other node, and each self-connection costs as much as
/// any other (a backend and a SCRAM login; 9 of the 81 on a 1+8 cluster).
fn all_pairs_health(t: &Target<'_>, report: &mut Report, coord: &Node, rows: &[DistNode], live: &mut [(&Node, postgres::Client)]) {
    match live[0].1.query_typed_one("SELECT to_regproc('citus_check_connection_to_node') IS NOT NULL", &[]) {
        Ok(r) if r.get::<_, bool>(0) => {}
        Ok(_) => {
            // Citus before 11.0, which `setup` still serves: said in the row, not failed.
            return report.push_skipped(
                coord,
                "all-pairs health",
                "this Citus has no citus_check_connection_to_node (Citus 11.0 and later have it); the distributed round trip checks the coordinator's connections to the workers",
            );
        }
        Err(e) => {
            return report
                .push(coord, "all-pairs health", false, pg::describe(&e), || "run `cargo xtask verify` again; if it persists, see `cargo xtask logs`".into())
        }
    }
    let targets: Vec<&Address> = rows.iter().filter(|r| r.isactive).map(|r| &r.address).collect();
    // Per source node: its name, and for each target address whether it connected, with
    // Citus's reason when not (or why the checks could not run there).
    type Checks = Result<Vec<(String, Result<(), Option<String>>)>, String>;
    let results: Vec<(String, Checks)> = std::thread::scope(|s| {
        let hs: Vec<_> = live
            .iter_mut()
            .map(|(node, client)| {
                let targets = &targets;
                let own = t.cluster.cluster_address(node, t.backend);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for a in targets.iter().filter(|a| ***a != own) {
                        let port = i32::from(a.port);
                        // Citus says why a connection failed only in a WARNING.
                        let (checked, notices) = pg::with_notices(|| {
                            client.query_typed_one("SELECT citus_check_connection_to_node($1, $2)", &[(&a.host, Type::TEXT), (&port, Type::INT4)])
                        });
                        match checked {
                            Ok(r) if r.get::<_, bool>(0) => out.push((a.to_string(), Ok(()))),
                            Ok(_) => out.push((a.to_string(), Err(pg::peer_failure(&notices)))),
                            Err(e) => return (node.name.clone(), Err(pg::describe(&e))),
                        }
                    }
                    (node.name.clone(), Ok(out))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("health thread panicked")).collect()
    });
    let mut pairs = 0;
    let mut bad = Vec::new();
    // The fixes the reasons name, each once, in the order first seen; and whether a pair
    // failed for a reason none of them covers.
    let mut fixes: Vec<String> = Vec::new();
    let mut unexplained = false;
    for (from, r) in results {
        match r {
            Ok(list) => {
                pairs += list.len();
                for (to, why) in list.into_iter().filter_map(|(to, r)| r.err().map(|why| (to, why))) {
                    match why.as_deref().and_then(|why| peer_fix(t, &from, &to, why)) {
                        Some(fix) if !fixes.contains(&fix) => fixes.push(fix),
                        Some(_) => {}
                        None => unexplained = true,
                    }
                    bad.push(why.map_or_else(|| format!("{from} -> {to}"), |why| format!("{from} -> {to} ({why})")));
                }
            }
            Err(e) => {
                bad.push(format!("{from}: {e}"));
                unexplained = true;
            }
        }
    }
    report.push(
        coord,
        "all-pairs health",
        bad.is_empty(),
        if bad.is_empty() { format!("{pairs} connections ok (every node to every other node)") } else { format!("failing: {}", bad.join("; ")) },
        || {
            if unexplained || fixes.is_empty() {
                fixes.push(
                    "the listed nodes cannot reach each other at their cluster addresses: check `cluster_address`, networking and that every node has the same password"
                        .into(),
                );
            }
            fixes.join("; ")
        },
    );
}

/// The fix for node `from` failing to connect to the cluster address `to`, by libpq's `why`
/// (see [`crate::setup::peer_fix`]), naming the node of the config at that address.
fn peer_fix(t: &Target<'_>, from: &str, to: &str, why: &str) -> Option<String> {
    let name = t.cluster.nodes().find(|n| t.cluster.cluster_address(n, t.backend).to_string() == to).map_or(to, |n| n.name.as_str());
    crate::setup::peer_fix(t, from, name, to, why)
}

/// Creates a distributed table, writes rows to every shard, reads them back, drops it.
fn round_trip(t: &Target<'_>, report: &mut Report, coord: &Node, c: &mut postgres::Client) {
    let table = format!(
        "citus_xtask_verify_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
    );
    // One shard per node that takes shards (the active workers, and the coordinator if it has
    // shouldhaveshards): placement is round-robin, so each of them holds one.
    let result = (|| -> Result<(String, Vec<String>, i64), postgres::Error> {
        c.batch_execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY, payload text)"))?;
        c.query_typed(
            &format!(
                "SELECT create_distributed_table('{table}', 'id', shard_count => \
                 (SELECT greatest(1, count(*))::int FROM pg_dist_node WHERE shouldhaveshards AND isactive AND noderole = 'primary'))"
            ),
            &[],
        )?;
        c.batch_execute(&format!("INSERT INTO {table} SELECT g, 'row ' || g FROM generate_series(1, 1000) g"))?;
        let r = c.query_typed_one(&format!("SELECT count(*), sum(id)::bigint FROM {table}"), &[])?;
        let (count, sum): (i64, i64) = (r.get(0), r.get(1));
        // Where the shards went, as the coordinator has the nodes registered.
        let rows =
            c.query_typed(&format!("SELECT nodename, nodeport, count(*) FROM citus_shards WHERE table_name = '{table}'::regclass GROUP BY 1, 2"), &[])?;
        let placed: Vec<String> =
            rows.iter().map(|r| Address::new(r.get::<_, String>(0), u16::try_from(r.get::<_, i32>(1)).unwrap_or(0)).to_string()).collect();
        let shards: i64 = rows.iter().map(|r| r.get::<_, i64>(2)).sum();
        if count != 1000 || sum != 500_500 {
            return Ok((format!("read back {count} rows (sum {sum}), wrote 1000 (sum 500500)"), placed, shards));
        }
        Ok((String::new(), placed, shards))
    })();
    let cleanup = c.batch_execute(&format!("DROP TABLE IF EXISTS {table}"));
    match result {
        Ok((lost, placed, shards)) if lost.is_empty() => {
            // A worker with no shard of the table (a coordinator that holds shards takes one).
            let without: Vec<String> = t
                .cluster
                .workers
                .iter()
                .filter(|w| !placed.contains(&t.cluster.cluster_address(w, t.backend).to_string()))
                .map(|w| format!("{} ({})", w.name, t.cluster.cluster_address(w, t.backend)))
                .collect();
            let detail = match without.as_slice() {
                [] => format!("1000 rows across {shards} shards on {} node(s)", placed.len()),
                _ => format!("1000 rows across {shards} shards on {}; no shard on {}", placed.join(", "), without.join(", ")),
            };
            report.push(coord, "distributed round trip", without.is_empty(), detail, || {
                "shards were not placed on every worker: check that every worker is registered, active and has shouldhaveshards (`cargo xtask setup`, and `SELECT * FROM pg_dist_node` on the coordinator)".into()
            })
        }
        Ok((lost, _, _)) => {
            report.push(coord, "distributed round trip", false, lost, || "the cluster lost rows: check the workers' logs (`cargo xtask logs`)".into())
        }
        Err(e) => report.push(coord, "distributed round trip", false, pg::describe(&e), || {
            // Citus's "connection to the remote node USER@HOST:PORT failed with the following
            // error: ...": the fix for that reason, when there is one.
            let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
            let remote =
                message.split_once("remote node ").and_then(|(_, r)| r.split_once(" failed")).map(|(a, _)| a.rsplit('@').next().unwrap_or(a).to_string());
            if let Some(fix) = remote.and_then(|to| peer_fix(t, &coord.name, &to, &pg::peer_failure(std::slice::from_ref(&message))?)) {
                return fix;
            }
            // Citus's "replication_factor (1) exceeds number of worker nodes (0)": no node takes shards.
            if message.contains("exceeds number of worker nodes") {
                return if t.cluster.workers.is_empty() {
                    "the cluster has no worker and its coordinator takes no shards: run `cargo xtask setup` (with no worker, it gives the coordinator shards), or start workers (`cargo xtask up --workers N`)".into()
                } else {
                    "no registered node takes shards: run `cargo xtask setup`, then see `SELECT nodename, nodeport, isactive, shouldhaveshards FROM pg_dist_node` on the coordinator".into()
                };
            }
            "a distributed write failed: a worker is unreachable, disabled or out of sync; run `cargo xtask setup` and check the other failing checks".into()
        }),
    }
    if let Err(e) = cleanup {
        report.push(coord, "round-trip cleanup", false, format!("DROP TABLE {table}: {}", pg::describe(&e)), || format!("drop table {table} by hand"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_node_gets_the_fix_of_its_cause() {
        let cluster = citus_config::Cluster::parse(include_str!("../../../citus.toml"), "citus.toml".as_ref()).unwrap();
        let w = &cluster.workers[0];
        let (node, address) = (w.name.clone(), w.client.clone());
        let down = pg::ConnectError::Unreachable { node: node.clone(), address: address.clone(), detail: "connection refused".into() };
        assert!(unreachable_fix(&down, w, "u").starts_with("start the node (`cargo xtask up`)"));
        let auth =
            pg::ConnectError::Auth { node: node.clone(), address: address.clone(), user: "u".into(), origin: "$CITUS_PASSWORD".into(), detail: String::new() };
        let fix = unreachable_fix(&auth, w, "u");
        assert!(fix.starts_with("the node refused the login of \"u\": give it the password from $CITUS_PASSWORD"), "{fix}");
        assert!(!fix.contains("start the node"), "{fix}");
        let db = pg::ConnectError::NoDatabase { node, address, database: "app".into(), detail: String::new() };
        assert!(unreachable_fix(&db, w, "u").starts_with("run `cargo xtask setup`: it creates \"app\""));
    }

    /// A check that could not run is shown as `skip`, counted apart from the passed ones and
    /// in the JSON as `"skipped": true`; it fails nothing.
    #[test]
    fn a_skipped_check_is_not_counted_as_passed() {
        let cluster = citus_config::Cluster::parse(include_str!("../../../citus.toml"), "citus.toml".as_ref()).unwrap();
        let m = &cluster.coordinator;
        let mut r = Report { ok: true, checks: Vec::new() };
        r.push(m, "reachable", true, "login ok", String::new);
        r.push_skipped(m, "all-pairs health", "this Citus has no citus_check_connection_to_node");
        let table = r.table();
        assert!(table.lines().any(|l| l.starts_with("skip") && l.contains("all-pairs health")), "{table}");
        assert!(table.ends_with("1 of 2 checks passed (1 skipped: could not run on this cluster, see above)\n"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["checks"][1]["skipped"], true);
        assert!(json["checks"][0].get("skipped").is_none(), "{json}");
        r.push(m, "extension installed", false, "no citus", || "run setup".into());
        assert!(r.table().ends_with("1 of 3 checks failed (1 skipped: could not run on this cluster, see above)\n"), "{}", r.table());
    }

    fn v(s: &str) -> Option<Version> {
        Some(Version::parse(s).unwrap())
    }

    #[test]
    fn version_check_names_what_stands_in_the_way() {
        let nodes = ["c", "w1", "w2"];
        let all = |a, b, c| vec![("c".to_string(), a), ("w1".to_string(), b), ("w2".to_string(), c)];
        let (ok, detail, fix) = version_check(&nodes, &all(v("13.2"), v("13.2"), v("13.2")));
        assert!(ok && fix.is_none(), "{detail}");
        assert_eq!(detail, "c=13.2, w1=13.2, w2=13.2");

        let (ok, detail, fix) = version_check(&nodes, &all(v("13.2"), v("13.1"), v("13.2")));
        assert!(!ok);
        assert_eq!(detail, "c=13.2, w1=13.1, w2=13.2");
        assert!(fix.unwrap().contains("same Citus version"));

        // A stopped worker: the others agree, so no reinstall is asked for.
        let (ok, detail, fix) = version_check(&nodes, &all(v("13.2"), v("13.2"), None)[..2]);
        assert!(!ok);
        assert_eq!(detail, "c=13.2, w1=13.2; not read: w2");
        let fix = fix.unwrap();
        assert!(fix.contains("w2") && !fix.contains("install"), "{fix}");

        let (ok, detail, fix) = version_check(&nodes, &[]);
        assert!(!ok);
        assert_eq!(detail, "not read: c, w1, w2");
        assert!(fix.unwrap().contains("no node answered"));

        let (ok, _, fix) = version_check(&nodes, &all(v("13.2"), None, v("13.2")));
        assert!(!ok);
        assert_eq!(fix.unwrap(), "citus is not installed on w1: run `cargo xtask setup`");
    }
}
