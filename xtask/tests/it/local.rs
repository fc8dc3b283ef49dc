//! The local backend end to end against real PostgreSQL + Citus (issue #2's scenarios).

use std::time::{Duration, Instant};

use citus_testkit::{require, Need};

use crate::harness::{text, Spec, TestCluster};

fn citus(test: &str) -> bool {
    require(test, &[Need::Postgres, Need::Citus]).is_some()
}

#[test]
fn cold_up_verifies_then_setup_changes_nothing_and_down_up_keeps_data() {
    if !citus("cold_up_verifies_then_setup_changes_nothing_and_down_up_keeps_data") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    let out = c.xtask(&["up"]);
    assert!(out.status.success(), "up failed: {}", String::from_utf8_lossy(&out.stderr));
    let up = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(up.contains("ready in"), "{up}");
    // A first run builds the template; with a second core the coordinator runs its own
    // initdb meanwhile, and the workers copy the template.
    let progress = String::from_utf8_lossy(&out.stderr);
    let made = |node: &str| {
        progress.lines().find(|l| l.contains(&format!("{node}: new data directory"))).unwrap_or_else(|| panic!("no data line for {node}: {progress}"))
    };
    assert!(progress.contains("initdb: template ready"), "{progress}");
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        assert!(made("citus_master").contains("its own initdb"), "{progress}");
    }
    for w in ["citus_worker1", "citus_worker2"] {
        assert!(!made(w).contains("its own initdb"), "{progress}");
    }
    // Each node's extension and password are created as soon as it is up (before the plan for
    // the whole cluster); the summary still counts them as changed by this run: 3 nodes x
    // (extension, password) + coordinator host + 2 workers. Only the databases, which the
    // template holds, were in place.
    assert!(up.contains("setup: changed 9 item(s)") && up.contains("(3 items were already in place)"), "{up}");
    let report = c.ok(&["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["ok"], true, "{report}");
    let checks = v["checks"].as_array().unwrap();
    for wanted in ["reachable", "citus preloaded first", "registered and active", "metadata in sync", "all-pairs health", "distributed round trip"] {
        assert!(checks.iter().any(|c| c["check"] == wanted && c["ok"] == true), "missing passing check {wanted}: {report}");
    }

    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let hba = std::fs::read_to_string(c.pgdata(node).join("pg_hba.conf")).unwrap();
        let active: Vec<&str> = hba.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).collect();
        assert!(active.iter().all(|l| !l.contains("trust")), "{node} trusts someone: {active:?}");
    }
    assert_tls_made_by_up(&c);
    assert_verifiers(&c, crate::harness::PASSWORD, 16);
    // `down` re-sends the shutdown's SIGTERM to Citus's maintenance daemons when a node is slow
    // to stop; it finds them as children of each node's postmaster.
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let postmaster = c.pid(node).unwrap();
        let daemons = citus_io::local::citus_maintenance_daemons(postmaster);
        assert_eq!(daemons.len(), 1, "{node}: {daemons:?}");
        let title = std::fs::read(format!("/proc/{}/cmdline", daemons[0])).unwrap();
        assert!(String::from_utf8_lossy(&title).contains("Citus Maintenance Daemon"), "{}", String::from_utf8_lossy(&title));
    }

    let again = c.ok(&["setup"]);
    assert!(again.contains("nothing to change"), "second setup changed something: {again}");

    // Data written before `down` is there after `up`.
    let mut coord = c.connect(0, &c.database);
    coord
        .batch_execute("CREATE TABLE kept (id int PRIMARY KEY); SELECT create_distributed_table('kept', 'id'); INSERT INTO kept SELECT generate_series(1, 50);")
        .unwrap();
    drop(coord);
    let pid_before = c.pid("citus_worker1").unwrap();
    c.ok(&["down"]);
    assert!(c.pgdata("citus_worker1").join("PG_VERSION").exists(), "down deleted the data");
    c.ok(&["up"]);
    assert_ne!(c.pid("citus_worker1"), Some(pid_before), "worker was not restarted");
    let n: i64 = c.connect(0, &c.database).query_one("SELECT count(*) FROM kept", &[]).unwrap().get(0);
    assert_eq!(n, 50);
    c.ok(&["verify"]);
}

#[test]
fn recreated_worker_database_fails_verify_and_setup_repairs_it() {
    if !citus("recreated_worker_database_fails_verify_and_setup_repairs_it") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let mut w1 = c.connect(1, "postgres");
    w1.batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", c.database)).unwrap();
    w1.batch_execute(&format!("CREATE DATABASE \"{}\"", c.database)).unwrap();
    let out = c.xtask(&["verify"]);
    assert!(!out.status.success(), "verify passed on a worker with a recreated database");
    let t = text(&out);
    assert!(
        t.lines().any(|l| l.starts_with("FAIL") && l.contains("citus_worker1") && l.contains(&c.port(1).to_string())),
        "verify did not name worker1 and its address: {t}"
    );
    let fixed = c.ok(&["setup"]);
    assert!(fixed.contains("citus_worker1") && fixed.contains("changed"), "{fixed}");
    c.ok(&["verify"]);
}

#[test]
fn stopped_worker_fails_verify_quickly_and_recovers() {
    if !citus("stopped_worker_fails_verify_quickly_and_recovers") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    c.kill("citus_worker2", libc::SIGINT);
    let t0 = Instant::now();
    let out = c.xtask(&["verify"]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.lines().any(|l| l.starts_with("FAIL") && l.contains("citus_worker2") && l.contains("reachable")), "{t}");
    assert!(t.contains(&format!("localhost:{}", c.port(2))), "{t}");
    // The nodes that answered agree on the version: the cluster check says whose version it
    // could not read, and does not ask for a reinstall.
    let versions = t.lines().find(|l| l.contains("same citus version")).unwrap_or_else(|| panic!("{t}"));
    assert!(versions.starts_with("FAIL") && versions.contains("not read: citus_worker2"), "{t}");
    assert!(!t.contains("install the same Citus version"), "{t}");
    assert!(took < Duration::from_secs(30), "verify took {took:?}");
    // Its progress: the logins, then the coordinator's checks.
    for said in ["logging in to 3 nodes, all at once (giving each up to 5 s)", "2 of 3 nodes reachable", "checking from citus_master: "] {
        assert!(String::from_utf8_lossy(&out.stderr).contains(said), "no progress line {said:?}: {t}");
    }
    c.ok(&["up"]);
    c.ok(&["verify"]);
}

/// A node whose clean shutdown takes long (here its checkpointer is held with SIGSTOP, as a
/// shutdown checkpoint after much writing would hold it) is named while `down` waits for it,
/// and `down` still ends with every node stopped cleanly.
#[test]
fn down_names_a_node_that_is_slow_to_stop_and_waits_for_it() {
    if !citus("down_names_a_node_that_is_slow_to_stop_and_waits_for_it") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let postmaster = c.pid("citus_worker1").unwrap();
    let checkpointer = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(") ").and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
            ppid == Some(postmaster) && String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).contains("checkpointer")
        })
        .expect("worker 1's checkpointer");
    let resume = crate::harness::Paused::new(checkpointer);
    let (mut down, rx) = c.spawn_lines(&["down"], false);
    let want = format!(
        "citus_worker1 (pid {postmaster}): still stopping after 2 s (a clean shutdown: its sessions end, then its checkpoint; waiting up to 60 s, see "
    );
    let mut seen = crate::harness::lines_until(&rx, &want, 20);
    assert!(down.0.try_wait().unwrap().is_none(), "down ended while worker 1 still runs: {seen:#?}");
    drop(resume);
    let status = down.0.wait().unwrap();
    seen.extend(rx.iter());
    assert!(status.success(), "down failed once the checkpointer went on: {seen:#?}");
    assert!(seen.iter().any(|l| l.contains("stopped citus_worker1 at ")), "{seen:#?}");
    assert!(crate::harness::gone_soon(postmaster), "worker 1's server still runs after down");
    // A clean shutdown: the next start needs no recovery.
    let log = std::fs::read_to_string(c.pgdata("citus_worker1").parent().unwrap().join("postgres.log")).unwrap_or_default();
    assert!(log.contains("database system is shut down"), "no clean shutdown in worker 1's log:\n{log}");
}

#[test]
fn disabled_worker_fails_verify_and_setup_reactivates_it() {
    if !citus("disabled_worker_fails_verify_and_setup_reactivates_it") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    c.connect(0, &c.database).execute("SELECT citus_disable_node('localhost', $1, synchronous => true)", &[&i32::from(c.port(1))]).unwrap();
    let out = c.xtask(&["verify"]);
    assert!(!out.status.success());
    assert!(text(&out).lines().any(|l| l.starts_with("FAIL") && l.contains("citus_worker1") && l.contains("disabled")), "{}", text(&out));
    let fixed = c.ok(&["setup"]);
    assert!(fixed.contains(&format!("citus_master: re-activated worker citus_worker1 at localhost:{}", c.port(1))), "{fixed}");
    c.ok(&["verify"]);
}

/// The round trip's shards go to every node that takes shards: a coordinator with
/// `shouldhaveshards` takes one more and `verify` passes; a worker without it gets none, and
/// `verify` fails naming it, its cluster address and the fix.
#[test]
fn the_round_trip_names_a_worker_that_got_no_shard() {
    if !citus("the_round_trip_names_a_worker_that_got_no_shard") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let mut coord = c.connect(0, &c.database);
    let set = |coord: &mut postgres::Client, port: u16, on: bool| {
        coord.execute("SELECT citus_set_node_property('localhost', $1, 'shouldhaveshards', $2)", &[&i32::from(port), &on]).unwrap();
    };
    set(&mut coord, c.port(0), true);
    let out = c.ok(&["verify"]);
    assert!(out.lines().any(|l| l.contains("distributed round trip") && l.contains("1000 rows across 3 shards on 3 node(s)")), "{out}");
    set(&mut coord, c.port(0), false);
    set(&mut coord, c.port(2), false);
    let out = c.xtask(&["verify"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = t.lines().find(|l| l.contains("distributed round trip")).unwrap_or_else(|| panic!("{t}"));
    assert!(line.starts_with("FAIL") && line.contains(&format!("no shard on citus_worker2 (localhost:{})", c.port(2))), "{t}");
    assert!(t.contains("shards were not placed on every worker") && t.contains("shouldhaveshards"), "{t}");
    set(&mut coord, c.port(2), true);
    c.ok(&["verify"]);
}

/// A cluster with no worker (`up --workers 0`) is a single-node Citus: `setup` gives the
/// coordinator shards, so that distributed tables work and `verify` passes; with workers
/// again, the coordinator keeps them and `setup` says so with the statement that undoes it.
#[test]
fn a_cluster_with_no_worker_puts_its_shards_on_the_coordinator() {
    if !citus("a_cluster_with_no_worker_puts_its_shards_on_the_coordinator") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    let out = c.ok(&["up", "--workers", "0"]);
    assert!(out.contains(&format!("+ citus_master: made the coordinator at localhost:{} take shards (the cluster has no worker)", c.port(0))), "{out}");
    let out = c.ok(&["verify"]);
    assert!(out.lines().any(|l| l.starts_with("ok") && l.contains("distributed round trip") && l.contains("1000 rows across 1 shards on 1 node(s)")), "{out}");
    // A test suite's own distributed table.
    let mut coord = c.connect(0, &c.database);
    coord
        .batch_execute(
            "CREATE TABLE single (id int PRIMARY KEY); SELECT create_distributed_table('single', 'id'); INSERT INTO single SELECT generate_series(1, 10)",
        )
        .unwrap();
    let n: i64 = coord.query_one("SELECT count(*) FROM single", &[]).unwrap().get(0);
    assert_eq!(n, 10);
    assert!(c.ok(&["setup"]).contains("setup: nothing to change"));
    let out = c.ok(&["up", "--workers", "2"]);
    assert!(
        out.contains(&format!(
            "! left alone: the coordinator takes shards (shouldhaveshards), next to the workers; to keep new ones off it: SELECT citus_set_node_property('localhost', {}, 'shouldhaveshards', false) on the coordinator",
            c.port(0)
        )),
        "{out}"
    );
    let out = c.ok(&["verify"]);
    assert!(out.contains("1000 rows across 3 shards on 3 node(s)"), "{out}");
}

/// Nodes on the IPv6 loopback (`host = "::1"`): they come up, register each other as `::1`
/// (Citus keeps the host and the port apart), `verify` passes, and every address the test
/// environment hands on is bracketed (`[::1]:P`), as URLs and `host:port` pairs need.
#[test]
fn nodes_on_the_ipv6_loopback_come_up_verify_and_are_bracketed_in_the_test_env() {
    let test = "nodes_on_the_ipv6_loopback_come_up_verify_and_are_bracketed_in_the_test_env";
    if !citus(test) {
        return;
    }
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        citus_testkit::skip(test, &format!("this machine has no IPv6 loopback to listen on (binding [::1]:0: {e})"));
        return;
    }
    let c = TestCluster::new(Spec::default());
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap().replace("\nport = ", "\nhost = \"::1\"\nport = ")).unwrap();
    let out = c.ok(&["up"]);
    assert!(out.contains(&format!("coordinator citus_master at [::1]:{}", c.port(0))), "{out}");
    let out = c.ok(&["verify"]);
    assert!(out.contains("all 20 checks passed"), "{out}");
    let mut coord = postgres::Config::new()
        .host("::1")
        .port(c.port(0))
        .user(&c.user)
        .password(crate::harness::PASSWORD)
        .dbname(&c.database)
        .connect(postgres::NoTls)
        .unwrap();
    let names: Vec<String> = coord.query("SELECT nodename FROM pg_dist_node ORDER BY nodeid", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["::1", "::1", "::1"]);
    let env = c.ok(&["test-env", "--format", "dotenv"]);
    for want in [
        format!("CITUS_COORDINATOR_NODE_NAME='[::1]:{}'", c.port(0)),
        format!("CITUS_WORKER1_NODE_NAME='[::1]:{}'", c.port(1)),
        format!("CITUS_WORKERS='[::1]:{},[::1]:{}'", c.port(1), c.port(2)),
        format!("@[::1]:{}/commcare_ucr_citus'", c.port(0)),
    ] {
        assert!(env.contains(&want), "no {want} in {env}");
    }
}

/// A node whose server accepts connections but answers none (its postmaster stopped with
/// SIGSTOP) holds no task past its deadline: `status` names it within its 3 s per login, and
/// `setup` gives up within `[wait] timeout_secs`, naming it; both succeed once it runs again.
#[test]
fn a_server_that_accepts_but_never_answers_is_named_within_the_deadline() {
    if !citus("a_server_that_accepts_but_never_answers_is_named_within_the_deadline") {
        return;
    }
    let c = TestCluster::new(Spec { workers: 1, ..Spec::default() });
    // Up with the default timeout (a first run builds the template meanwhile), then 3 s.
    c.ok(&["up"]);
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap() + "\n[wait]\ntimeout_secs = 3\n").unwrap();
    let frozen = crate::harness::Paused::new(c.pid("citus_worker1").expect("worker 1 runs"));
    let t0 = Instant::now();
    let out = c.xtask(&["status"]);
    let (took, t) = (t0.elapsed(), text(&out));
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(took < Duration::from_secs(15), "status took {took:?}: {t}");
    let w1 = t.split("citus_worker1 ").nth(1).unwrap_or_else(|| panic!("{t}"));
    assert!(w1.contains("login FAILED: it accepted the connection but did not answer the login within 3.0 s"), "{t}");
    let t0 = Instant::now();
    let out = c.xtask(&["setup"]);
    let (took, t) = (t0.elapsed(), text(&out));
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(took < Duration::from_secs(20), "setup took {took:?}: {t}");
    assert!(t.contains(&format!("node citus_worker1 at localhost:{} did not accept a login within", c.port(1))), "{t}");
    assert!(t.contains("it accepted the connection but did not answer the login within"), "{t}");
    drop(frozen);
    c.ok(&["status"]);
    c.ok(&["setup"]);
}

#[test]
fn worker_count_from_the_command_line() {
    if !citus("worker_count_from_the_command_line") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up", "--workers", "1"]);
    let n: i64 = c.connect(0, &c.database).query_one("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND isactive", &[]).unwrap().get(0);
    assert_eq!(n, 1);
    // Later tasks act on the nodes `up --workers 1` started, not on the config's two workers.
    let out = c.xtask(&["verify"]);
    assert!(out.status.success(), "verify after `up --workers 1`: {}", text(&out));
    assert!(text(&out).contains("1 worker(s) (the count `up --workers 1` started; --workers picks another)"), "{}", text(&out));
    let out = c.xtask(&["verify", "--workers", "2"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "the second worker was never started: {t}");
    assert!(t.lines().any(|l| l.starts_with("FAIL") && l.contains("citus_worker2") && l.contains("reachable") && l.contains(&c.port(2).to_string())), "{t}");
    // Derived workers take the next ports, which were not reserved: only planned here.
    let dry = c.ok(&["setup", "--dry-run", "--workers", "3"]);
    assert_eq!(dry.matches("citus_add_node").count(), 3, "{dry}");
}

#[test]
fn the_worker_count_up_started_is_what_later_tasks_act_on() {
    let test = "the_worker_count_up_started_is_what_later_tasks_act_on";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    // Plain PostgreSQL nodes: starting and stopping need no Citus.
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = []\n", ..Spec::default() });
    let headers = |out: &str| out.lines().filter(|l| l.starts_with("==> ")).count();
    c.ok(&["up", "--no-setup"]);
    let worker2 = c.pid("citus_worker2").expect("citus_worker2 started");
    c.ok(&["up", "--no-setup", "--workers", "1"]);
    let out = c.xtask(&["logs", "--lines", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(headers(&String::from_utf8_lossy(&out.stdout)), 2, "the coordinator and 1 worker: {}", text(&out));
    assert!(text(&out).contains("1 worker(s) (the count `up --workers 1` started"), "{}", text(&out));
    // An `up --workers` with the config's count forgets the recorded one.
    c.ok(&["up", "--no-setup", "--workers", "2"]);
    let out = c.xtask(&["logs", "--lines", "1"]);
    assert_eq!(headers(&String::from_utf8_lossy(&out.stdout)), 3, "{}", text(&out));
    assert!(text(&out).contains("2 worker(s) (the config's)"), "{}", text(&out));
    // `down` after `up --workers 1` stops the worker beyond it too, and keeps its data.
    c.ok(&["up", "--no-setup", "--workers", "1"]);
    let others: Vec<i32> = ["citus_master", "citus_worker1"].iter().map(|n| c.pid(n).expect("running")).collect();
    let out = c.xtask(&["down"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stopped citus_worker2 (not one of this run's 1 worker(s); its data is kept)"), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("down: cluster `it` stopped; data kept"), "{}", text(&out));
    assert!(crate::harness::gone_soon(worker2), "citus_worker2 (pid {worker2}) still runs 5 s after `down`");
    for pid in others {
        assert!(crate::harness::gone_soon(pid), "server {pid} still runs 5 s after `down`");
    }
    // `down --purge` deletes only this run's nodes and names the one it kept; with nothing
    // running, it says so instead of "stopped".
    let out = c.xtask(&["down", "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("down: no server of cluster `it` was running here (local backend); data deleted (--purge)"),
        "{}",
        text(&out)
    );
    let kept = c.pgdata("citus_worker2");
    assert!(text(&out).contains(&format!("kept citus_worker2's data in {}", kept.parent().unwrap().display())), "{}", text(&out));
    assert!(kept.join("PG_VERSION").exists(), "citus_worker2's data was deleted");
    assert!(!c.pgdata("citus_worker1").exists(), "citus_worker1's data was kept");
    // The purge forgot the recorded count: the config's two workers again, and now it goes,
    // with what a purge cut short left aside (a node folder renamed `.purging-*` first).
    let cluster_dir = kept.parent().unwrap().parent().unwrap().to_path_buf();
    let left = cluster_dir.join(".purging-citus_worker9-1");
    std::fs::create_dir_all(left.join("pgdata/base")).unwrap();
    let out = c.xtask(&["down", "--purge"]);
    assert!(text(&out).contains("2 worker(s) (the config's)") && text(&out).contains("purged citus_worker2"), "{}", text(&out));
    assert!(!kept.exists(), "citus_worker2's data is still there");
    assert!(text(&out).contains(&format!("deleted {}, left by a purge that was cut short", left.display())), "{}", text(&out));
    let rest: Vec<String> = std::fs::read_dir(&cluster_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(rest, [".up.lock"], "only the lock file stays in {}", cluster_dir.display());
}

/// Every role with a password on every node of `c` (both roles where the configured user is
/// not the servers' OS user) stores a SCRAM verifier with `rounds` iterations, and `password`
/// logs in to each node through rust-postgres (Citus's own connections use libpq).
fn assert_verifiers(c: &TestCluster, password: &str, rounds: u32) {
    for i in 0..c.ports.len() {
        let mut db = postgres::Config::new()
            .host("localhost")
            .port(c.port(i))
            .user(&c.user)
            .password(password)
            .dbname(&c.database)
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("node {i}: login with the password failed: {e}"));
        let rows = db.query("SELECT rolname::text, rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL", &[]).unwrap();
        let verifiers: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert!(verifiers.iter().any(|(name, _)| *name == c.user), "node {i}: {verifiers:?}");
        for (name, v) in &verifiers {
            assert!(v.starts_with(&format!("SCRAM-SHA-256${rounds}:")), "node {i}: role {name} has {v}");
        }
    }
}

/// Each node of `c` started with TLS on and a certificate of its own that `up` made, so Citus
/// made none at `CREATE EXTENSION citus`, and Citus's connections between the nodes use TLS.
fn assert_tls_made_by_up(c: &TestCluster) {
    use std::os::unix::fs::PermissionsExt;
    let mut certificates = std::collections::BTreeSet::new();
    for (i, node) in ["citus_master", "citus_worker1", "citus_worker2"].into_iter().enumerate() {
        let pgdata = c.pgdata(node);
        let mode = std::fs::metadata(pgdata.join("server.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{node}: server.key mode {mode:o}");
        assert!(certificates.insert(std::fs::read_to_string(pgdata.join("server.crt")).unwrap()), "{node} has another node's certificate");
        let log = std::fs::read_to_string(pgdata.parent().unwrap().join("postgres.log")).unwrap();
        assert!(!log.contains("generating self signed certificate"), "Citus made its own certificate on {node}: {log}");
        let ssl: String = c.connect(i, &c.database).query_one("SHOW ssl", &[]).unwrap().get(0);
        assert_eq!(ssl, "on", "{node}");
    }
    let rows = c
        .connect(0, &c.database)
        .query(
            "SELECT nodeport, result FROM run_command_on_workers($$SELECT bool_and(s.ssl)::text || ' ' || count(*) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'citus%'$$)",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        let result: String = r.get(1);
        assert!(result.starts_with("true "), "Citus's connections to the worker on port {} are not all TLS: {result}", r.get::<_, i32>(0));
    }
}

#[test]
fn without_openssl_citus_makes_the_certificates_and_the_cluster_still_verifies() {
    let test = "without_openssl_citus_makes_the_certificates_and_the_cluster_still_verifies";
    if !citus(test) {
        return;
    }
    // A PATH with `cp` (the template's copies) and no `openssl`.
    let bin = citus_testkit::temp_dir("citus-xtask-no-openssl");
    let cp = ["/usr/bin/cp", "/bin/cp"].into_iter().find(|p| std::path::Path::new(p).exists()).expect("cp");
    std::os::unix::fs::symlink(cp, bin.path().join("cp")).unwrap();
    let c = TestCluster::new(Spec::default());
    let out = c.xtask_env(&["up"], &[("PATH", bin.path().to_str().unwrap())]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    let progress = String::from_utf8_lossy(&out.stderr);
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let line =
            progress.lines().find(|l| l.contains(&format!("{node}: new data directory"))).unwrap_or_else(|| panic!("no data line for {node}: {progress}"));
        assert!(line.contains("no TLS certificate of its own (no `openssl` program on PATH)") && line.contains("install openssl"), "{line}");
        let log = std::fs::read_to_string(c.pgdata(node).parent().unwrap().join("postgres.log")).unwrap();
        assert!(log.contains("generating self signed certificate"), "Citus made no certificate on {node}: {log}");
    }
    let verified = c.xtask_env(&["verify"], &[("PATH", bin.path().to_str().unwrap())]);
    assert!(verified.status.success(), "{}", text(&verified));
    // The servers run with the TLS Citus turned on: nothing for a restart to apply.
    let st = c.xtask_env(&["status"], &[("PATH", bin.path().to_str().unwrap())]);
    assert!(st.status.success() && !text(&st).contains("restart pending"), "{}", text(&st));
    let up = c.xtask_env(&["up"], &[("PATH", bin.path().to_str().unwrap())]);
    assert!(up.status.success() && !text(&up).contains("runs with settings"), "{}", text(&up));
}

#[test]
fn a_password_that_saslprep_changes_and_other_scram_rounds_work_on_every_path() {
    if !citus("a_password_that_saslprep_changes_and_other_scram_rounds_work_on_every_path") {
        return;
    }
    // SASLprep drops the soft hyphen and maps the no-break space to a space: the verifier the
    // tool computes, rust-postgres and libpq (Citus's connections, verify's all-pairs check)
    // must all agree on that. The user `postgres` is initdb's own superuser when the tests run
    // as root (the servers run as `postgres`), whose verifier goes through initdb's --pwfile.
    const PW: &str = "pass\u{ad}w\u{f6}rd\u{a0}x";
    let c = TestCluster::new(Spec { workers: 1, user: "postgres", extra: "\n[local]\nscram_iterations = 3\n", ..Spec::default() });
    let env = [("CITUS_IT_PASSWORD", PW)];
    let out = c.xtask_env(&["up"], &env);
    assert!(out.status.success(), "up failed: {}", String::from_utf8_lossy(&out.stderr));
    let out = c.xtask_env(&["verify"], &env);
    assert!(out.status.success(), "verify failed: {}", String::from_utf8_lossy(&out.stdout));
    assert_verifiers(&c, PW, 3);
    assert_verifiers(&c, "passw\u{f6}rd x", 3);
    // The wrong password is refused: the verifiers are not a stand-in for `trust`.
    let wrong = postgres::Config::new().host("localhost").port(c.port(1)).user(&c.user).password("passw\u{f6}rdx").dbname(&c.database).connect(postgres::NoTls);
    assert!(wrong.is_err(), "a wrong password logged in");
}

/// `psql` runs the host's psql on the chosen node, in the cluster's database as its user, with
/// the password in its environment (not in any process's arguments while it runs), and passes
/// psql's exit code on. Plain PostgreSQL nodes, so it needs no Citus.
#[test]
fn psql_opens_the_chosen_node_with_the_password_in_its_environment() {
    let test = "psql_opens_the_chosen_node_with_the_password_in_its_environment";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    let secret = "Pw-psql-5b1e0d";
    // A database name psql would misread as a connection string if it were given with `-d`.
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = []\n", database: "host=elsewhere 'db'", ..Spec::default() });
    let run = |args: &[&str]| c.xtask_env(args, &[("CITUS_IT_PASSWORD", secret)]);
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["up", "--no-setup"]);
    let out = ok(&["psql", "--", "-XAtc", "SELECT current_user, current_database(), inet_server_port()"]);
    assert_eq!(out.trim(), format!("{}|{}|{}", c.user, c.database, c.port(0)));
    let out = ok(&["psql", "--node", "citus_worker2", "--", "-XAtc", "SELECT inet_server_port()"]);
    assert_eq!(out.trim(), c.port(2).to_string());
    // With no psql on PATH, the local backend uses the one beside its servers ([local] bin_dir).
    let empty = citus_testkit::temp_dir("citus-xtask-no-psql");
    let out = c.xtask_env(&["psql", "--", "-XAtc", "SELECT inet_server_port()"], &[("CITUS_IT_PASSWORD", secret), ("PATH", empty.path().to_str().unwrap())]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), c.port(0).to_string());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/bin/psql)"), "{}", text(&out));

    // psql's own failure is the task's exit code, its message on stderr.
    let out = run(&["psql", "--", "-XAtc", "SELECT 1/0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("division by zero"), "{}", text(&out));

    // A node that is not in the config is bad input: exit 2, naming the nodes there are.
    let out = run(&["psql", "--node", "citus_worker9"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no such node") && text(&out).contains("citus_master, citus_worker1, citus_worker2"), "{}", text(&out));

    // While a session runs, no process has the password among its arguments.
    std::thread::scope(|s| {
        let session = s.spawn(|| run(&["psql", "--", "-XAtc", "SELECT pg_sleep(2)"]));
        std::thread::sleep(Duration::from_millis(1000));
        let mut seen = 0;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline);
                seen += usize::from(cmdline.contains("pg_sleep(2)"));
                assert!(!cmdline.contains(secret), "password in a process's arguments: {cmdline}");
            }
        }
        assert!(seen >= 2, "the xtask and its psql were not both running when their arguments were read");
        assert!(session.join().unwrap().status.success());
    });
    // Ctrl-C, which a terminal sends to the whole foreground process group, is psql's: it
    // cancels the running query and psql exits on its own, and the xtask waits for it and
    // passes its exit code on, instead of dying and leaving psql without its parent.
    {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        // Its group (the xtask and its psql) is killed if an assertion fails before the wait.
        let mut child = crate::harness::KillGroupOnDrop::new(
            std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
                .args(["psql", "--config"])
                .arg(&c.config)
                .args(["--", "-XAtc", "SELECT pg_sleep(30)"])
                .env("CITUS_IT_PASSWORD", secret)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let started = Instant::now();
        // Until the session's query runs on the coordinator.
        let mut admin = c.connect_with(0, "postgres", secret);
        while admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'", &[]).unwrap().get::<_, i64>(0) == 0 {
            assert!(started.elapsed() < Duration::from_secs(20), "the psql session never started its query");
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: plain syscall on our own child's process group.
        unsafe { libc::kill(-child.pgid(), libc::SIGINT) };
        let mut bytes = Vec::new();
        child.take_stderr().expect("piped").read_to_end(&mut bytes).unwrap();
        let status = child.wait();
        let stderr = String::from_utf8_lossy(&bytes);
        assert_eq!(status.code(), Some(1), "the xtask did not wait for psql: {status} {stderr}");
        assert!(stderr.contains("canceling statement due to user request"), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(25), "the query was not cancelled");
    }
    ok(&["down"]);
}

/// `logs` prints the end of every node's server log under a header naming the node and the
/// file, `--node` and `--lines` narrow it, and a node without a log says so. Plain PostgreSQL
/// nodes, so it needs no Citus.
#[test]
fn logs_show_the_end_of_each_nodes_server_log() {
    let test = "logs_show_the_end_of_each_nodes_server_log";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = []\n", ..Spec::default() });
    c.ok(&["up", "--no-setup"]);
    let out = c.ok(&["logs"]);
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let log = c.pgdata(node).parent().unwrap().join("postgres.log");
        let header = format!("==> {node}: {} <==", log.display());
        let at = out.find(&header).unwrap_or_else(|| panic!("no header {header:?} in {out}"));
        // Its lines follow its header, up to the next one.
        let section = out[at + header.len()..].split("==> ").next().unwrap();
        assert!(section.contains("database system is ready to accept connections"), "{node}: {section}");
    }
    let out = c.ok(&["logs", "--node", "citus_worker1", "--lines", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "a header and 2 lines: {out}");
    assert!(lines[0].starts_with("==> citus_worker1: ") && !out.contains("citus_master"), "{out}");
    let out = c.xtask(&["logs", "--node", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    c.ok(&["down", "--purge"]);
    let out = c.ok(&["logs", "--node", "citus_worker2"]);
    assert!(out.contains("(no log: this tool has not started this node here)"), "{out}");
}

/// A node's port changed in the config while its server runs: `up` refuses at once, before
/// starting anything, naming the node, both addresses and the fix, instead of waiting the whole
/// timeout at an address nothing listens on; after `down` and `up` the node answers at its new
/// port, with its data. Plain PostgreSQL nodes: no Citus needed.
#[test]
fn a_port_changed_under_a_running_node_is_refused_with_the_fix() {
    let test = "a_port_changed_under_a_running_node_is_refused_with_the_fix";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = []\n", extra: "\n[wait]\ntimeout_secs = 600\n", ..Spec::default() });
    c.ok(&["up", "--no-setup"]);
    c.connect(2, "postgres").batch_execute("CREATE TABLE kept (x int)").unwrap();
    let (old, new) = (c.port(2), citus_testkit::free_port());
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap().replace(&format!("port = {old}\n"), &format!("port = {new}\n"))).unwrap();
    let started = Instant::now();
    let out = c.xtask(&["up", "--no-setup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(30), "waited {:?} instead of refusing", started.elapsed());
    let t = text(&out);
    let pid = c.pid("citus_worker2").unwrap();
    assert!(t.contains(&format!("node citus_worker2: its server (pid {pid}) already runs, listening on localhost:{old}, but ")), "{t}");
    assert!(t.contains(&format!("now gives it localhost:{new}")) && t.contains("fix: restart it at the new address: `cargo xtask up --restart`"), "{t}");
    // `up --restart` stops it at its old address and starts it at the new one, and restarts
    // no other node.
    let master = c.pid("citus_master");
    let t = text(&c.xtask(&["up", "--no-setup", "--restart"]));
    assert!(t.contains(&format!("citus_worker2: restarting: it listens on localhost:{old}, the config gives it localhost:{new}")), "{t}");
    assert!(!t.contains("citus_master: restarting") && !t.contains("citus_worker1: restarting"), "{t}");
    assert_eq!(c.pid("citus_master"), master, "a node whose config did not change was restarted");
    let mut moved = postgres::Config::new()
        .host("localhost")
        .port(new)
        .user(&c.user)
        .password(crate::harness::PASSWORD)
        .dbname("postgres")
        .connect(postgres::NoTls)
        .expect("citus_worker2 answers at its new port");
    let n: i64 = moved.query_one("SELECT count(*) FROM pg_class WHERE relname = 'kept'", &[]).unwrap().get(0);
    assert_eq!(n, 1, "citus_worker2's data was not kept");
}

/// A setting changed in the config while the servers run (here `dev_speed`) is not applied
/// behind the user's back: `up` says, per node, which settings the running server lacks and
/// that `up --restart` applies them; after `down` and `up` the servers run with them, and `up` says
/// nothing more. Plain PostgreSQL nodes: no Citus needed.
#[test]
fn settings_changed_under_running_nodes_are_named_by_up() {
    let test = "settings_changed_under_running_nodes_are_named_by_up";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = []\n", extra: "\n[local]\ndev_speed = true\n", ..Spec::default() });
    c.ok(&["up", "--no-setup"]);
    let out = c.xtask(&["up", "--no-setup"]);
    assert!(out.status.success() && !text(&out).contains("runs with settings"), "{}", text(&out));
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap().replace("dev_speed = true", "dev_speed = false")).unwrap();
    let out = c.xtask(&["up", "--no-setup"]);
    assert!(out.status.success(), "{}", text(&out));
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let line =
            format!("{node}: runs with settings the config has changed since it started (fsync, full_page_writes): `cargo xtask up --restart` applies them");
        assert!(text(&out).contains(&line), "{node}: {}", text(&out));
    }
    let fsync: String = c.connect(1, "postgres").query_one("SHOW fsync", &[]).unwrap().get(0);
    assert_eq!(fsync, "off", "a running server's settings changed without a restart");
    c.ok(&["down"]);
    let out = c.xtask(&["up", "--no-setup"]);
    assert!(out.status.success() && !text(&out).contains("runs with settings"), "{}", text(&out));
    let fsync: String = c.connect(1, "postgres").query_one("SHOW fsync", &[]).unwrap().get(0);
    assert_eq!(fsync, "on");
}

#[test]
fn status_names_each_node_running_stopped_or_absent_and_changes_nothing() {
    if !citus("status_names_each_node_running_stopped_or_absent_and_changes_nothing") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    let line = |t: &str, node: &str| t.lines().find(|l| l.starts_with(node)).unwrap_or_else(|| panic!("no line for {node}: {t}")).to_string();
    // Nothing made yet: every node absent, exit 1, and status makes nothing.
    let out = c.xtask(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    for (i, n) in ["citus_master", "citus_worker1", "citus_worker2"].iter().enumerate() {
        let l = line(&t, n);
        assert!(l.contains(&format!("localhost:{}", c.port(i))) && l.contains("absent") && l.contains("no data directory"), "{t}");
    }
    assert!(t.contains("0 of 3 node(s)") && t.contains("`cargo xtask up` starts them"), "{t}");
    assert!(!c.pgdata("citus_master").exists(), "status made a data directory: {t}");

    c.ok(&["up"]);
    let t = c.ok(&["status"]);
    assert_eq!(t.matches("login ok: citus ").count(), 3, "{t}");
    assert!(line(&t, "citus_worker1").contains(&format!("running  pid {}", c.pid("citus_worker1").unwrap())), "{t}");
    assert!(t.contains("all 3 node(s)"), "{t}");

    // A stopped worker: named with where its data is kept; the others still run.
    c.kill("citus_worker2", libc::SIGINT);
    let out = c.xtask(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(line(&t, "citus_worker2").contains(&format!("stopped  data kept in {}", c.pgdata("citus_worker2").display())), "{t}");
    assert!(t.contains("2 of 3 node(s)") && t.contains("`cargo xtask up` starts the others"), "{t}");
    // The same as JSON, for scripts: exit 1 too.
    let out = c.xtask(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(v["ok"], false, "{v}");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.iter().map(|n| n["node"].as_str().unwrap()).collect::<Vec<_>>(), ["citus_master", "citus_worker1", "citus_worker2"], "{v}");
    assert_eq!(nodes[2]["server"]["state"], "stopped", "{v}");
    assert!(nodes[2]["login"].is_null(), "{v}");
    assert_eq!(nodes[0]["server"]["state"], "running", "{v}");
    assert_eq!(nodes[0]["login"]["ok"], true, "{v}");
    assert!(nodes[0]["login"]["detail"].as_str().unwrap().starts_with("citus "), "{v}");

    // A login the nodes refuse: each running node says so, without the password.
    c.ok(&["up"]);
    let out = c.xtask_env(&["status"], &[("CITUS_IT_PASSWORD", "not-the-password")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert_eq!(t.matches("login FAILED: ").count(), 3, "{t}");
    assert!(t.contains("authentication failed") && t.contains("see the failed logins above") && !t.contains("not-the-password"), "{t}");
}

/// Developers run the tool as themselves, not as root: the servers then run as that same
/// user, with no `postgres` OS user involved. The other tests here run as root on CI (where
/// the tool runs the servers as `postgres`), so this one runs the tool itself as `postgres`.
#[test]
fn as_a_normal_user_the_tool_runs_the_servers_as_that_user() {
    if !citus("as_a_normal_user_the_tool_runs_the_servers_as_that_user") {
        return;
    }
    use std::os::unix::{fs::MetadataExt, process::CommandExt};
    let c = TestCluster::new(Spec::default());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let id = |flag: &str| -> u32 {
        let out = std::process::Command::new("id").args([flag, "postgres"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("the postgres user exists (the PostgreSQL package makes it)")
    };
    // SAFETY: as above.
    let (uid, gid) = if root { (id("-u"), id("-g")) } else { unsafe { (libc::geteuid(), libc::getegid()) } };
    let folder = c.config.parent().unwrap();
    if root {
        assert!(std::process::Command::new("chown").args(["-R", &format!("{uid}:{gid}")]).arg(folder).status().unwrap().success());
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .arg("--config")
            .arg(&c.config)
            .env("CITUS_IT_PASSWORD", crate::harness::PASSWORD)
            .env("HOME", folder)
            .env_remove("CITUS_CONFIG")
            .env_remove("CI")
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "xtask {args:?} as uid {uid}: {t}");
        t
    };
    run(&["up"]);
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let pid = c.pid(node).unwrap_or_else(|| panic!("{node} has no postmaster.pid"));
        let owner = std::fs::metadata(format!("/proc/{pid}")).unwrap().uid();
        assert_eq!(owner, uid, "{node}'s server (pid {pid}) runs as uid {owner}");
        assert_eq!(std::fs::metadata(c.pgdata(node)).unwrap().uid(), uid, "{node}'s data directory");
    }
    assert!(run(&["verify"]).contains("checks passed"));
    assert!(run(&["status"]).contains("all 3 node(s)"));
    run(&["down", "--purge"]);
    assert!(!c.pgdata("citus_master").exists());
}

#[test]
fn logs_follow_prints_each_new_line_after_its_node_also_across_a_purge() {
    if !citus("logs_follow_prints_each_new_line_after_its_node_also_across_a_purge") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    // Killed when the guard drops, also when a wait below panics: `logs --follow` runs on
    // across `down --purge`, so the cluster's own cleanup would not end it.
    let (mut follow, rx) = c.spawn_lines(&["logs", "--follow", "--lines", "1"], true);
    let mut seen = Vec::new();
    let mut wait_for = |want: &dyn Fn(&str) -> bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                let hit = want(&l);
                seen.push(l);
                if hit {
                    return;
                }
            }
        }
        panic!("no line {what} within 15 s: {seen:#?}");
    };
    // The last line of each node first, after its name.
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let prefix = format!("{node:13} | ");
        wait_for(&|l: &str| l.starts_with(&prefix), &format!("from {node}"));
    }
    let raise = |i: usize, marker: &str| c.connect(i, &c.database).batch_execute(&format!("DO $$ BEGIN RAISE LOG '{marker}'; END $$")).unwrap();
    raise(2, "follow-marker-one");
    wait_for(&|l: &str| l.starts_with("citus_worker2 | ") && l.ends_with("LOG:  follow-marker-one"), "with worker 2's marker");
    // The logs deleted and made anew: followed from the start of the new ones.
    c.ok(&["down", "--purge"]);
    c.ok(&["up"]);
    raise(0, "follow-marker-two");
    wait_for(&|l: &str| l.starts_with("citus_master  | ") && l.ends_with("LOG:  follow-marker-two"), "with the coordinator's marker after the purge");
    // Still following: it did not exit on its own across the purge.
    assert!(follow.0.try_wait().unwrap().is_none(), "`logs --follow` exited on its own");
}

/// `[settings]` reach every node's server, and `verify` proves it: each node passes "config
/// settings" while it runs with them, and fails, naming the node, what it runs with, where that
/// comes from and the fix, when an `ALTER SYSTEM` overrides one or the config changed under the
/// running servers. A setting the server refuses fails `up` at once with a fix that names it.
#[test]
fn settings_reach_every_node_and_verify_names_any_that_is_not_in_effect() {
    let test = "settings_reach_every_node_and_verify_names_any_that_is_not_in_effect";
    if !citus(test) {
        return;
    }
    let extra = "\n[settings]\nmax_connections = 150\nwork_mem = \"65536kB\"\ncitus.shard_count = 4\nlog_min_duration_statement = \"2s\"\n";
    let c = TestCluster::new(Spec { workers: 1, extra, ..Spec::default() });
    c.ok(&["up"]);
    for i in 0..2 {
        let mut db = c.connect(i, &c.database);
        for (name, want) in [("max_connections", "150"), ("work_mem", "64MB"), ("citus.shard_count", "4"), ("log_min_duration_statement", "2s")] {
            let have: String = db.query_one("SELECT current_setting($1)", &[&name]).unwrap().get(0);
            assert_eq!(have, want, "node {i}: {name}");
        }
    }
    let report = c.ok(&["verify"]);
    assert_eq!(report.matches("config settings").count(), 2, "{report}");
    assert!(report.contains("all settings as the config sets them: citus.shard_count, log_min_duration_statement, max_connections, work_mem"), "{report}");

    // An ALTER SYSTEM on the worker wins over the config after a reload: verify names it.
    let mut worker = c.connect(1, "postgres");
    worker.batch_execute("ALTER SYSTEM SET log_min_duration_statement = '5s'").unwrap();
    worker.batch_execute("SELECT pg_reload_conf()").unwrap();
    c.wait_for_setting(1, "log_min_duration_statement", "5s");
    let out = c.xtask(&["verify"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL  citus_worker1") && t.contains("log_min_duration_statement = '5s' (config: '2s'; set by ALTER SYSTEM in"), "{t}");
    assert!(t.contains("fix: on citus_worker1: ALTER SYSTEM RESET log_min_duration_statement, then SELECT pg_reload_conf();"), "{t}");
    worker.batch_execute("ALTER SYSTEM RESET log_min_duration_statement").unwrap();
    worker.batch_execute("SELECT pg_reload_conf()").unwrap();
    drop(worker);
    c.wait_for_setting(1, "log_min_duration_statement", "2s");
    c.ok(&["verify"]);

    // The config changed under running servers: `up`, `status` and `verify` say so; `up --restart` applies it.
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap().replace("max_connections = 150", "max_connections = 160")).unwrap();
    let out = c.xtask(&["verify"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("max_connections = '150' (config: '160'; from "), "{t}");
    assert!(t.contains("fix: `cargo xtask up --restart` restarts the nodes with the config's settings"), "{t}");
    assert!(text(&c.xtask(&["up"])).contains("citus_master: runs with settings the config has changed since it started (max_connections)"));
    // `status` names what each running node lacks, still exits 0 (the nodes run and log in).
    let st = c.ok(&["status"]);
    assert_eq!(st.matches("restart pending: the config changed max_connections; `cargo xtask up --restart` applies it").count(), 2, "{st}");
    let json: serde_json::Value = serde_json::from_str(&c.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["nodes"][1]["restart_pending"], serde_json::json!(["max_connections"]), "{json}");
    // `up --restart` restarts both nodes, keeps their data, and verify passes.
    c.connect(0, &c.database)
        .batch_execute("CREATE TABLE kept (id int); SELECT create_distributed_table('kept', 'id'); INSERT INTO kept VALUES (1), (2)")
        .unwrap();
    let out = c.xtask(&["up", "--restart"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for node in ["citus_master", "citus_worker1"] {
        assert!(t.contains(&format!("{node}: restarting: the config changed max_connections")), "{t}");
    }
    c.ok(&["verify"]);
    let n: i64 = c.connect(0, &c.database).query_one("SELECT count(*) FROM kept", &[]).unwrap().get(0);
    assert_eq!(n, 2);
    let out = c.xtask(&["up", "--restart"]);
    assert!(out.status.success() && !text(&out).contains("restarting"), "nothing changed, nothing restarted: {}", text(&out));
    assert!(!c.ok(&["status"]).contains("restart pending"));

    // A value the server would refuse is found before `up --restart` stops anything: every node
    // keeps running, started when it was, with its old settings.
    let started = |c: &TestCluster| -> Vec<String> {
        (0..2).map(|i| c.connect(i, "postgres").query_one("SELECT pg_postmaster_start_time()::text", &[]).unwrap().get(0)).collect()
    };
    let before = started(&c);
    let good = std::fs::read_to_string(&c.config).unwrap();
    std::fs::write(&c.config, good.replace("max_connections = 160", "max_connections = 170").replace("\"65536kB\"", "\"64XB\"")).unwrap();
    let out = c.xtask(&["up", "--restart"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(": their servers would not start with the config's settings, so no node was restarted"), "both nodes in one entry: {t}");
    assert_eq!(t.matches("invalid value for parameter \"work_mem\": \"64XB\"").count(), 1, "told once: {t}");
    assert!(t.contains("correct or remove it, then run `cargo xtask up --restart` again"), "{t}");
    assert_eq!(started(&c), before, "no node was restarted");
    std::fs::write(&c.config, good).unwrap();
    c.ok(&["verify"]);

    // A value the server refuses: `up` fails at once, naming the setting and the config file.
    c.ok(&["down"]);
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap().replace("\"65536kB\"", "\"64XB\"")).unwrap();
    let out = c.xtask(&["up"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("invalid value for parameter \"work_mem\": \"64XB\""), "{t}");
    assert!(t.contains(&format!("fix: the server refuses `work_mem = '64XB'` of [settings] in {}", c.config.display())), "{t}");
}
