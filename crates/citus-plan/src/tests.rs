//! Snapshot tests of the plans users see with `setup --dry-run`, and of the repairs.

use super::*;
use std::path::Path;

fn seed() -> Cluster {
    Cluster::parse(include_str!("../../../citus.toml"), Path::new("citus.toml")).unwrap()
}

fn check(cluster: &Cluster, backend: Backend, observed: &Observed) -> String {
    plan(cluster, backend, observed, "s3cret'pw").unwrap().render()
}

/// The observed state of a fully set-up seed cluster (docker addresses).
fn settled(cluster: &Cluster) -> Observed {
    let mut o = Observed::default();
    let v = Some(Version::new(13, 2));
    o.dist_nodes.push(DistNode { nodeid: 1, groupid: 0, address: Address::new("citus_master", 5432), isactive: true, shouldhaveshards: false });
    for (i, w) in cluster.workers.iter().enumerate() {
        let id = i as i32 + 2;
        o.dist_nodes.push(DistNode { nodeid: id, groupid: id, address: Address::new(w.name.clone(), 5432), isactive: true, shouldhaveshards: true });
    }
    let count = o.dist_nodes.len() as i64;
    for (i, n) in cluster.nodes().enumerate() {
        let group = if i == 0 { 0 } else { i as i32 + 1 };
        o.nodes.insert(
            n.name.clone(),
            NodeState { database_exists: true, available: v, installed: v, local_group: Some(group), dist_node_count: Some(count), authinfo_in_place: true },
        );
    }
    o
}

#[test]
fn seed_cluster_from_nothing() {
    let c = seed();
    insta::assert_snapshot!(check(&c, Backend::Docker, &Observed::fresh(&c, Version::new(13, 2))));
}

#[test]
fn seed_cluster_local_backend_uses_client_addresses() {
    let c = seed();
    insta::assert_snapshot!(check(&c, Backend::Local, &Observed::fresh(&c, Version::new(13, 2))));
}

#[test]
fn one_plus_eight_from_nothing() {
    let c = seed().with_workers(8).unwrap();
    insta::assert_snapshot!(check(&c, Backend::Docker, &Observed::fresh(&c, Version::new(13, 2))));
}

/// No worker: a single-node Citus, whose coordinator must take the shards; once it does,
/// nothing is left to do. With workers, a coordinator that takes shards or does not is
/// left as it is.
#[test]
fn a_cluster_with_no_worker_gives_the_coordinator_shards() {
    let c = seed().with_workers(0).unwrap();
    insta::assert_snapshot!(check(&c, Backend::Docker, &Observed::fresh(&c, Version::new(13, 2))));
    let mut o = settled(&c);
    let p = plan(&c, Backend::Docker, &o, "pw").unwrap();
    assert_eq!(p.steps().map(|s| (s.kind, s.node.as_str())).collect::<Vec<_>>(), [(StepKind::CoordinatorTakesShards, "citus_master")]);
    assert_eq!(p.steps().next().unwrap().done(&c), "made the coordinator at citus_master:5432 take shards (the cluster has no worker)");
    o.dist_nodes[0].shouldhaveshards = true;
    let p = plan(&c, Backend::Docker, &o, "pw").unwrap();
    assert!(p.is_empty(), "{}", p.render());
    assert!(p.in_place.iter().any(|l| l == "the coordinator takes shards (the cluster has no worker)"), "{:?}", p.in_place);
    let c = seed();
    for on in [false, true] {
        let mut o = settled(&c);
        o.dist_nodes[0].shouldhaveshards = on;
        let p = plan(&c, Backend::Docker, &o, "pw").unwrap();
        assert!(p.is_empty(), "coordinator shouldhaveshards {on}: {}", p.render());
        assert!(!p.in_place.iter().any(|l| l.contains("takes shards")), "{:?}", p.in_place);
        let named = p.left_alone.iter().any(|l| {
            l.starts_with("the coordinator takes shards (shouldhaveshards)")
                && l.ends_with("SELECT citus_set_node_property('citus_master', 5432, 'shouldhaveshards', false) on the coordinator")
        });
        assert_eq!(named, on, "coordinator shouldhaveshards {on}: {:?}", p.left_alone);
    }
    // Citus before 10 has neither citus_set_coordinator_host nor citus_set_node_property.
    let c = seed().with_workers(0).unwrap();
    assert!(!check(&c, Backend::Docker, &Observed::fresh(&c, Version::new(9, 5))).contains("shouldhaveshards"));
}

#[test]
fn old_citus_uses_master_functions() {
    let c = seed();
    insta::assert_snapshot!(check(&c, Backend::Docker, &Observed::fresh(&c, Version::new(9, 5))));
}

/// Two workers' addresses swapped: each server holds the other's group. Re-activating them
/// would swap their groups without their shards, so the plan refuses, naming both addresses.
#[test]
fn swapped_workers_are_refused_not_reactivated() {
    let c = seed();
    let mut o = settled(&c);
    o.nodes.get_mut("citus_worker1").unwrap().local_group = Some(3);
    o.nodes.get_mut("citus_worker2").unwrap().local_group = Some(2);
    let e = plan(&c, Backend::Docker, &o, "pw").unwrap_err();
    assert_eq!(
        e,
        PlanError::ServerOfAnotherGroup {
            worker: "citus_worker1".into(),
            address: Address::new("citus_worker1", 5432),
            registered_group: 2,
            holds_group: 3,
            holder: Address::new("citus_worker2", 5432)
        }
    );
    insta::assert_snapshot!(e.to_string());
    // A group that no other node has (the coordinator's metadata lost that worker) is still
    // repaired by re-activation, as before.
    let mut o = settled(&c);
    o.nodes.get_mut("citus_worker1").unwrap().local_group = Some(7);
    let p = plan(&c, Backend::Docker, &o, "pw").unwrap();
    assert!(p.render().contains("needs re-activation: its own group id is 7 but the coordinator has 2"), "{}", p.render());
}

#[test]
fn settled_cluster_needs_nothing() {
    let c = seed();
    let p = plan(&c, Backend::Docker, &settled(&c), "pw").unwrap();
    assert!(p.is_empty(), "{}", p.render());
    insta::assert_snapshot!(p.render());
}

/// A 1 + 4 cluster with one of each repair to do.
fn repairs_case() -> (Cluster, Observed) {
    let c = seed().with_workers(4).unwrap();
    let mut o = settled(&c);
    // worker1: disabled on the coordinator.
    o.dist_nodes[1].isactive = false;
    // worker2: database dropped and recreated: no extension, fresh metadata.
    o.nodes.insert("citus_worker2".into(), NodeState { database_exists: true, available: Some(Version::new(13, 2)), ..NodeState::default() });
    // worker3: extension older than the library, and metadata out of sync.
    let w3 = o.nodes.get_mut("citus_worker3").unwrap();
    w3.installed = Some(Version::new(13, 1));
    w3.dist_node_count = Some(1);
    // worker4: registered under an old address (group 5); the config now says w4-new:6432.
    o.dist_nodes[4].address = Address::new("old-w4", 5432);
    let mut c = c;
    c.workers[3].cluster_address = Some(Address::new("w4-new", 6432));
    // an extra registered node nobody configured.
    o.dist_nodes.push(DistNode { nodeid: 9, groupid: 9, address: Address::new("stray", 5432), isactive: true, shouldhaveshards: true });
    // the coordinator row still says localhost.
    o.dist_nodes[0].address = Address::new("localhost", 5432);
    (c, o)
}

#[test]
fn repairs() {
    let (c, o) = repairs_case();
    insta::assert_snapshot!(check(&c, Backend::Docker, &o));
}

/// The summary `setup` prints says what each step did, not the state it found.
#[test]
fn applied_steps_say_what_they_did() {
    let fresh = seed();
    let (c, o) = repairs_case();
    let mut lines = Vec::new();
    for (cluster, observed) in [(&fresh, Observed::fresh(&fresh, Version::new(13, 2))), (&c, o)] {
        let p = plan(cluster, Backend::Docker, &observed, "pw").unwrap();
        lines.extend(p.steps().map(|s| format!("{}: {}", s.node, s.done(cluster))));
        lines.push(String::new());
    }
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn passwords_never_render() {
    let c = seed();
    let text = plan(&c, Backend::Docker, &Observed::fresh(&c, Version::new(13, 2)), "hunter2-secret").unwrap().render();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("<secret>"));
}

#[test]
fn identifiers_are_quoted_by_the_library() {
    let mut c = seed();
    c.database = "x\"; DROP DATABASE postgres; --".into();
    let p = plan(&c, Backend::Docker, &Observed::fresh(&c, Version::new(13, 2)), "pw").unwrap();
    let create = p.steps().next().unwrap();
    assert_eq!(create.sql, "CREATE DATABASE \"x\"\"; DROP DATABASE postgres; --\"");
}

#[test]
fn hostile_host_is_a_parameter() {
    let mut c = seed();
    c.workers[0].cluster_address = Some(Address::new("h'); SELECT pg_sleep(10); --", 5432));
    let p = plan(&c, Backend::Docker, &Observed::fresh(&c, Version::new(13, 2)), "pw").unwrap();
    let add = p.steps().find(|s| s.kind == StepKind::AddWorker).unwrap();
    assert_eq!(add.sql, "SELECT citus_add_node($1, $2)");
    assert_eq!(add.params[0], Param::Text("h'); SELECT pg_sleep(10); --".into()));
}

#[test]
fn worker_pointing_at_coordinator_is_refused() {
    let mut c = seed();
    c.workers[1].cluster_address = Some(Address::new("citus_master", 5432));
    let e = plan(&c, Backend::Docker, &Observed::default(), "pw").unwrap_err();
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn shared_cluster_address_is_refused() {
    let mut c = seed();
    c.workers[0].cluster_address = Some(Address::new("db", 5432));
    c.workers[1].cluster_address = Some(Address::new("db", 5432));
    let e = plan(&c, Backend::Docker, &Observed::default(), "pw").unwrap_err();
    assert!(matches!(e, PlanError::SharedClusterAddress { .. }), "{e}");
}

#[test]
fn authinfo_escapes_quotes_and_backslashes() {
    assert_eq!(authinfo_for(r"a'b\c"), r"password='a\'b\\c'");
}

#[test]
fn version_parsing() {
    assert_eq!(Version::parse("13.2-1"), Some(Version::new(13, 2)));
    assert_eq!(Version::parse("9.5.12"), Some(Version::new(9, 5)));
    assert_eq!(Version::parse("x"), None);
}

#[test]
fn fresh_nodes_share_one_phase_but_updates_go_workers_first() {
    let c = seed();
    let phase_of = |p: &crate::Plan, node: &str, kind: StepKind| {
        p.phases.iter().position(|ph| ph.steps.iter().any(|s| s.node == node && s.kind == kind)).unwrap_or_else(|| panic!("no {kind:?} on {node}"))
    };
    let fresh = plan(&c, Backend::Docker, &Observed::fresh(&c, Version::new(13, 2)), "pw").unwrap();
    assert_eq!(phase_of(&fresh, "citus_master", StepKind::CreateExtension), phase_of(&fresh, "citus_worker1", StepKind::CreateExtension));
    let db = phase_of(&fresh, "citus_master", StepKind::CreateDatabase);
    let steps = &fresh.phases[db].steps;
    let pos = |kind| steps.iter().position(|s| s.node == "citus_master" && s.kind == kind).unwrap();
    assert!(pos(StepKind::CreateDatabase) < pos(StepKind::CreateExtension), "a node's database comes before its extension");

    let mut o = settled(&c);
    for n in ["citus_master", "citus_worker2"] {
        o.nodes.get_mut(n).unwrap().installed = Some(Version::new(13, 1));
    }
    let upd = plan(&c, Backend::Docker, &o, "pw").unwrap();
    assert!(phase_of(&upd, "citus_worker2", StepKind::UpdateExtension) < phase_of(&upd, "citus_master", StepKind::UpdateExtension));
}

#[test]
fn membership_overlaps_extensions_only_while_no_worker_is_registered() {
    let c = seed();
    let starts = |p: &crate::Plan| -> Vec<(&'static str, Start)> { p.phases.iter().filter(|ph| !ph.steps.is_empty()).map(|ph| (ph.name, ph.start)).collect() };
    let fresh = plan(&c, Backend::Docker, &Observed::fresh(&c, Version::new(13, 2)), "pw").unwrap();
    assert_eq!(
        starts(&fresh),
        [
            ("database, citus extension and inter-node password on every node", Start::AfterAll),
            ("coordinator host", Start::AfterOwnNodes),
            ("worker membership", Start::AfterOwnNodes),
        ]
    );
    // Each membership step names the worker it waits for.
    let adds: Vec<Option<&str>> = fresh.steps().filter(|s| s.kind == StepKind::AddWorker).map(|s| s.subject.as_deref()).collect();
    assert_eq!(adds, [Some("citus_worker1"), Some("citus_worker2")]);

    // Only the coordinator's own row registered (a first setup that stopped after the
    // coordinator host): still nothing for Citus to contact but the worker being added.
    let mut coord_only = Observed::fresh(&c, Version::new(13, 2));
    coord_only.nodes.get_mut("citus_master").unwrap().installed = Some(Version::new(13, 2));
    coord_only.dist_nodes.push(DistNode { nodeid: 1, groupid: 0, address: Address::new("citus_master", 5432), isactive: true, shouldhaveshards: false });
    let p = plan(&c, Backend::Docker, &coord_only, "pw").unwrap();
    assert_eq!(starts(&p).last(), Some(&("worker membership", Start::AfterOwnNodes)));

    // A registered worker whose database was recreated: adding or activating a node makes
    // Citus update the metadata of every registered worker, so membership waits for all.
    let mut o = settled(&c);
    o.nodes.insert("citus_worker2".into(), NodeState { database_exists: true, available: Some(Version::new(13, 2)), ..NodeState::default() });
    let repair = plan(&c, Backend::Docker, &o, "pw").unwrap();
    assert_eq!(starts(&repair).last(), Some(&("worker membership", Start::AfterAll)));

    // An extension update keeps every barrier.
    let mut o = settled(&c);
    o.nodes.get_mut("citus_worker1").unwrap().installed = Some(Version::new(13, 1));
    o.dist_nodes.truncate(1);
    let upd = plan(&c, Backend::Docker, &o, "pw").unwrap();
    assert!(starts(&upd).iter().all(|(_, s)| *s == Start::AfterAll), "{:?}", starts(&upd));
}

#[test]
fn node_items_are_the_node_local_part_of_the_plan() {
    let c = seed();
    let fresh = Observed::fresh(&c, Version::new(13, 2));
    let whole = plan(&c, Backend::Local, &fresh, "pw").unwrap();
    for n in c.nodes() {
        let it = node_items(&c, n, &fresh.nodes[&n.name], "pw");
        assert!(!it.updates_extension());
        let from_plan: Vec<&Step> = whole
            .steps()
            .filter(|s| s.node == n.name && matches!(s.kind, StepKind::CreateDatabase | StepKind::CreateExtension | StepKind::SetAuthinfo))
            .collect();
        assert_eq!(it.steps().collect::<Vec<_>>(), from_plan, "{}", n.name);
    }
    let mut stale = settled(&c);
    stale.nodes.get_mut("citus_worker1").unwrap().installed = Some(Version::new(13, 1));
    let it = node_items(&c, &c.workers[0], &stale.nodes["citus_worker1"], "pw");
    assert!(it.updates_extension(), "{it:?}");
    let settled_items = node_items(&c, &c.coordinator, &stale.nodes["citus_master"], "pw");
    assert_eq!(settled_items.steps().count(), 0);
    assert_eq!(settled_items.in_place.len() + usize::from(settled_items.database_in_place.is_some()), 3);
}
