//! Faults and bad input on real servers (issue #6): each names the node, its address and a fix,
//! exits non-zero, and loses nothing.

use std::time::{Duration, Instant};

use citus_testkit::{require, skip, Need};

use crate::harness::{text, KillGroupOnDrop, KillOnDrop, Spec, TestCluster};

fn citus(test: &str) -> bool {
    require(test, &[Need::Postgres, Need::Citus]).is_some()
}

#[test]
fn wrong_password_fails_at_once() {
    if !citus("wrong_password_fails_at_once") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let t0 = Instant::now();
    let out = c.xtask_env(&["setup"], &[("CITUS_IT_PASSWORD", "not-the-password")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(t0.elapsed() < Duration::from_secs(10), "auth failure waited {:?}", t0.elapsed());
    let t = text(&out);
    assert!(t.contains("authentication failed") && t.contains("citus_master") && t.contains(&format!("localhost:{}", c.port(0))), "{t}");
    assert!(t.contains("the password from $CITUS_IT_PASSWORD is not the one this node has"), "{t}");
    assert!(t.contains("fix: give the tool the password the cluster was made with"), "{t}");
    assert!(!t.contains("not-the-password"), "password printed: {t}");
}

#[test]
fn client_port_in_use_is_named_before_anything_starts() {
    if !citus("client_port_in_use_is_named_before_anything_starts") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    let _holder = std::net::TcpListener::bind(("127.0.0.1", c.port(2))).unwrap();
    let out = c.xtask(&["up"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains(&format!("port {}", c.port(2))) && t.contains("citus_worker2") && t.contains("already in use"), "{t}");
    assert!(t.contains(&format!("stop that program, or give citus_worker2 another `port` in {}", c.config.display())), "{t}");
    assert!(c.pid("citus_master").is_none(), "the coordinator was started anyway");
}

#[test]
fn node_that_never_comes_up_fails_within_the_deadline() {
    if require("node_that_never_comes_up_fails_within_the_deadline", &[Need::Postgres]).is_none() {
        return;
    }
    // Nothing listens on these ports: setup must give up after [wait] timeout_secs.
    let c = TestCluster::new(Spec { extra: "\n[wait]\ntimeout_secs = 2\n", ..Spec::default() });
    let t0 = Instant::now();
    let out = c.xtask(&["setup"]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let t = text(&out);
    assert!(t.contains("citus_worker1") && t.contains(&format!("localhost:{}", c.port(1))) && t.contains("did not accept a login within"), "{t}");
    assert!(t.contains("waiting for"), "no progress line while waiting: {t}");
}

#[test]
fn hard_killed_node_comes_back_with_its_data() {
    if !citus("hard_killed_node_comes_back_with_its_data") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    c.connect(1, &c.database).batch_execute("CREATE TABLE local_note (v text); INSERT INTO local_note VALUES ('still here')").unwrap();
    c.kill("citus_worker1", libc::SIGKILL);
    assert!(c.pgdata("citus_worker1").join("postmaster.pid").exists(), "expected a stale postmaster.pid");
    c.ok(&["up"]);
    let v: String = c.connect(1, &c.database).query_one("SELECT v FROM local_note", &[]).unwrap().get(0);
    assert_eq!(v, "still here");
    c.ok(&["verify"]);
}

/// Runs two `setup`s against `c` at the same time and asserts that both succeeded.
fn two_setups_at_once(c: &TestCluster) -> (std::process::Output, std::process::Output) {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| c.xtask(&["setup"]));
        let b = s.spawn(|| c.xtask(&["setup"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success(), "{}\n{}", text(&a), text(&b));
    (a, b)
}

#[test]
fn concurrent_setups_end_with_exactly_the_configured_workers() {
    if !citus("concurrent_setups_end_with_exactly_the_configured_workers") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up", "--no-setup"]);
    two_setups_at_once(&c);
    assert_eq!(worker_rows(&c), 2);
    c.ok(&["verify"]);
}

#[test]
fn concurrent_setups_without_the_database_on_the_coordinator_take_turns_creating_it() {
    if !citus("concurrent_setups_without_the_database_on_the_coordinator_take_turns_creating_it") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up", "--no-setup"]);
    // Nodes made by someone else: no target database anywhere, so setup's lock cannot start
    // in it.
    for i in 0..3 {
        c.connect(i, "postgres").batch_execute(&format!("DROP DATABASE \"{}\"", c.database)).unwrap();
    }
    let (a, b) = two_setups_at_once(&c);
    // Exactly one of them created the coordinator's database, and says so.
    let created = format!("citus_master: created database \"{}\"", c.database);
    let says = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).contains(&created);
    assert!(says(&a) != says(&b), "{}\n{}", text(&a), text(&b));
    assert_eq!(worker_rows(&c), 2);
    c.ok(&["verify"]);
    let again = c.ok(&["setup"]);
    assert!(again.contains("nothing to change"), "{again}");
}

#[test]
fn changed_cluster_address_updates_the_node_in_place() {
    if !citus("changed_cluster_address_updates_the_node_in_place") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let port = c.port(1);
    c.set_cluster_address(1, &format!("127.0.0.1:{port}"));
    let out = c.ok(&["setup"]);
    assert!(out.contains(&format!("citus_master: updated the address of worker citus_worker1 to 127.0.0.1:{port}")), "{out}");
    let mut rows: Vec<(String, i32)> = c
        .connect(0, &c.database)
        .query("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeport", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    rows.sort();
    let mut want = vec![("127.0.0.1".to_string(), i32::from(port)), ("localhost".to_string(), i32::from(c.port(2)))];
    want.sort();
    assert_eq!(rows, want, "worker1 must be updated in place, not added twice");
    c.ok(&["verify"]);
}

#[test]
fn worker_removed_from_config_is_reported_not_deleted() {
    if !citus("worker_removed_from_config_is_reported_not_deleted") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let p2 = c.port(2);
    let out = c.ok(&["setup", "--workers", "1"]);
    // Named as the worker a run of 2 has, with the statements that remove it.
    assert!(
        out.contains(&format!(
            "! left alone: node 3 at localhost:{p2} is citus_worker2, beyond this run's 1 worker(s) (`--workers 2` includes it again); it stays registered, with any shards on it; to remove it, drain it first, on the coordinator: SELECT citus_drain_node('localhost', {p2}); SELECT citus_remove_node('localhost', {p2});"
        )),
        "{out}"
    );
    let out = c.xtask(&["verify", "--workers", "1"]);
    assert!(!out.status.success());
    let t = text(&out);
    let line = t.lines().find(|l| l.contains("no unconfigured workers")).unwrap_or_else(|| panic!("{t}"));
    assert!(line.starts_with("FAIL") && line.contains(&format!("node 3 at localhost:{p2} (active) is citus_worker2, beyond this run's 1 worker(s)")), "{t}");
    assert!(t.contains(&format!("fix: verify with `--workers 2` if it belongs to the cluster, or drain and remove it yourself, on the coordinator: SELECT citus_drain_node('localhost', {p2});")), "{t}");
    // With both left out, each row's fix names the count that takes in both.
    let t = text(&c.xtask(&["verify", "--workers", "0"]));
    let fixes: Vec<&str> = t.lines().skip_while(|l| !l.contains("no unconfigured workers")).filter(|l| l.contains("fix: verify with")).collect();
    assert!(fixes.len() == 2 && fixes.iter().all(|l| l.contains("fix: verify with `--workers 2` if it belongs")), "{t}");
    // A worker nothing derives (registered by hand): named as not in the config.
    let mut coord = c.connect(0, &c.database);
    coord.execute("SELECT citus_update_node(nodeid, '127.0.0.1', $1) FROM pg_dist_node WHERE nodeport = $1", &[&i32::from(p2)]).unwrap();
    let t = text(&c.xtask(&["verify", "--workers", "1"]));
    assert!(t.contains(&format!("node 3 at 127.0.0.1:{p2} is registered (active) but not in ")), "{t}");
    assert!(
        t.contains(&format!("fix: add it to the config, or drain and remove it yourself, on the coordinator: SELECT citus_drain_node('127.0.0.1', {p2});")),
        "{t}"
    );
    let n: i64 = c.connect(0, &c.database).query_one("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0", &[]).unwrap().get(0);
    assert_eq!(n, 2, "a worker was removed");
}

#[test]
fn worker_address_pointing_at_the_coordinator_is_refused() {
    if !citus("worker_address_pointing_at_the_coordinator_is_refused") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.set_cluster_address(1, &format!("localhost:{}", c.port(0)));
    let out = c.xtask(&["up"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("citus_worker1") && t.contains("two addresses"), "{t}");
}

#[test]
fn two_nodes_that_are_one_server_are_refused_before_any_change() {
    if !citus("two_nodes_that_are_one_server_are_refused_before_any_change") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up", "--no-setup"]);
    // Worker 2 configured as worker 1's server under another address: two client addresses
    // the config accepts, one server. (`localhost` and 127.0.0.1 the config itself refuses; the
    // IPv4-mapped IPv6 address of 127.0.0.1 it tells apart, and Linux reaches the IPv4 listener.)
    let original = std::fs::read_to_string(&c.config).unwrap();
    let (p1, p2) = (c.port(1), c.port(2));
    let one_server = original.replacen(&format!("port = {p2}\n"), &format!("host = \"::ffff:127.0.0.1\"\nport = {p1}\n"), 1);
    assert_ne!(one_server, original);
    std::fs::write(&c.config, one_server).unwrap();
    let out = c.xtask(&["setup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("citus_worker1") && t.contains("citus_worker2") && t.contains("same PostgreSQL server"), "{t}");
    // Refused before any change: no node got the extension (a local node's empty target
    // database comes from `up`, which makes it with the data directory).
    for i in 0..3 {
        let n: i64 = c.connect(i, &c.database).query_one("SELECT count(*) FROM pg_extension WHERE extname = 'citus'", &[]).unwrap().get(0);
        assert_eq!(n, 0, "node {i} got the extension: {t}");
    }
    // The same without the target database anywhere: setup would create the coordinator's
    // before it observes, so it checks the servers first there too.
    for i in 0..3 {
        c.connect(i, "postgres").batch_execute(&format!("DROP DATABASE \"{}\"", c.database)).unwrap();
    }
    let out = c.xtask(&["setup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("same PostgreSQL server"), "{t}");
    for i in 0..3 {
        let n: i64 = c.connect(i, "postgres").query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&c.database]).unwrap().get(0);
        assert_eq!(n, 0, "node {i} got the database: {t}");
    }
    std::fs::write(&c.config, original).unwrap();
}

#[test]
fn node_that_cannot_log_in_to_the_others_fails_all_pairs_health_until_setup() {
    if !citus("node_that_cannot_log_in_to_the_others_fails_all_pairs_health_until_setup") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    // Worker 1 keeps a wrong inter-node password: its own connections to the other two nodes
    // fail, while every other pair (the coordinator's round trip included) still works.
    let mut w1 = c.connect(1, &c.database);
    w1.batch_execute("UPDATE pg_dist_authinfo SET authinfo = 'password=not-the-password' WHERE nodeid = 0").unwrap();
    let out = c.xtask(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    let line = t.lines().find(|l| l.contains("all-pairs health")).unwrap_or_else(|| panic!("{t}"));
    assert!(line.starts_with("FAIL"), "{t}");
    // Exactly its two outgoing pairs, each with Citus's reason; no node is asked to reach its
    // own address.
    let failing: Vec<&str> = line.split("failing: ").nth(1).unwrap_or_else(|| panic!("{t}")).split("; ").collect();
    let mut want = vec![format!("citus_worker1 -> localhost:{}", c.port(0)), format!("citus_worker1 -> localhost:{}", c.port(2))];
    want.sort();
    let mut got: Vec<String> = failing.iter().map(|s| s.split(" (").next().unwrap().trim().to_string()).collect();
    got.sort();
    assert_eq!(got, want, "{t}");
    assert!(failing.iter().all(|f| f.contains("(") && f.contains("password authentication failed")), "no reason given: {t}");
    // The fix names the refused login and what repairs it.
    let fix = t.lines().skip_while(|l| !l.contains("all-pairs health")).find(|l| l.contains("fix")).unwrap_or_else(|| panic!("no fix: {t}"));
    assert!(fix.contains("refused the login of commcarehq from citus_worker1") && fix.contains("re-run `cargo xtask setup`"), "{t}");
    assert!(t.lines().any(|l| l.starts_with("ok") && l.contains("distributed round trip")), "{t}");
    let fixed = c.ok(&["setup"]);
    assert!(fixed.contains("citus_worker1"), "{fixed}");
    let ok = c.ok(&["verify"]);
    assert!(ok.contains("6 connections ok"), "{ok}");
}

/// A worker whose server runs with ssl off after its extension was created (`ALTER SYSTEM`,
/// as a hand-run server might): registering it fails, and the fix names both causes, not
/// only the one a re-run of `setup` repairs. Turning ssl on again and re-running `setup`
/// registers it.
#[test]
fn worker_with_ssl_turned_off_fails_setup_naming_ssl_and_the_fix() {
    if !citus("worker_with_ssl_turned_off_fails_setup_naming_ssl_and_the_fix") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let ssl = |on: bool| {
        let mut w2 = c.connect(2, "postgres");
        w2.batch_execute(if on { "ALTER SYSTEM RESET ssl" } else { "ALTER SYSTEM SET ssl = off" }).unwrap();
        w2.batch_execute("SELECT pg_reload_conf()").unwrap();
        c.wait_for_setting(2, "ssl", if on { "on" } else { "off" });
    };
    ssl(false);
    // `verify` names Citus's reason for each pair into the worker, and the same fix.
    let out = c.xtask(&["verify"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = t.lines().find(|l| l.contains("all-pairs health")).unwrap_or_else(|| panic!("{t}"));
    for from in ["citus_master", "citus_worker1"] {
        assert!(line.contains(&format!("{from} -> localhost:{} (server does not support SSL, but SSL was required)", c.port(2))), "{t}");
    }
    assert!(!line.contains("citus_worker2 ->"), "worker 2's own connections need no TLS from it: {t}");
    // The round trip's write fails on the same connection, and gets the same fix.
    let mut lines = t.lines().skip_while(|l| !l.contains("distributed round trip"));
    assert!(lines.next().is_some_and(|l| l.starts_with("FAIL") && l.contains("SSL was required")), "{t}");
    assert!(lines.next().is_some_and(|l| l.contains("fix: citus_worker2 at localhost:") && l.contains("runs with ssl off")), "{t}");
    // Every failing pair has that reason: its fix alone, not the one for unreachable addresses.
    let fix = t.lines().skip_while(|l| !l.contains("all-pairs health")).nth(1).unwrap_or_else(|| panic!("{t}"));
    assert!(fix.contains(&format!("fix: citus_worker2 at localhost:{} runs with ssl off", c.port(2))) && !fix.contains("networking"), "{t}");
    let port = i32::from(c.port(2));
    c.connect(0, &c.database).execute("SELECT citus_remove_node(nodename, nodeport) FROM pg_dist_node WHERE nodeport = $1", &[&port]).unwrap();
    let out = c.xtask(&["setup"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("SSL was required"), "not the server's message: {t}");
    let fix = t.lines().find(|l| l.trim_start().starts_with("fix:")).unwrap_or_else(|| panic!("no fix: {t}"));
    assert!(t.contains(&format!("cannot connect to worker citus_worker2 at its cluster address localhost:{}: server does not support SSL", c.port(2))), "{t}");
    assert!(fix.contains(&format!("citus_worker2 at localhost:{} runs with ssl off", c.port(2))), "{fix}");
    assert!(fix.contains("runs with ssl off") && fix.contains("re-run `cargo xtask setup`"), "{fix}");
    assert!(fix.contains("turn it on there, or set citus.node_conninfo = \"sslmode=prefer\" in [settings] of "), "{fix}");
    ssl(true);
    let fixed = c.ok(&["setup"]);
    assert!(fixed.contains("citus_worker2"), "{fixed}");
    c.ok(&["verify"]);
}

#[test]
fn stale_extension_is_reported_and_updated() {
    let test = "stale_extension_is_reported_and_updated";
    if !citus(test) {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up", "--no-setup"]);
    // `up` copies the database from the template; the test installs an older citus in it, one
    // of the versions this installation can create.
    let mut w = c.connect(1, &c.database);
    let library: String = w.query_one("SELECT default_version FROM pg_available_extensions WHERE name = 'citus'", &[]).unwrap().get(0);
    let versions: Vec<String> =
        w.query("SELECT version FROM pg_available_extension_versions WHERE name = 'citus'", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let Some(old) = older_citus(&library, &versions) else {
        skip(test, &format!("this Citus ({library}) has no older version to create (pg_available_extension_versions: {})", versions.join(", ")));
        return;
    };
    if let Err(e) = w.batch_execute(&format!("CREATE EXTENSION citus VERSION '{old}'")) {
        panic!("cannot create citus {old} to test skew with the library's {library}: {e}");
    }
    // `verify` reports the skew on that worker, both versions as the catalogs spell them.
    let out = c.xtask(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    let line = t.lines().find(|l| l.contains("citus_worker1") && l.contains("library matches extension")).unwrap_or_else(|| panic!("{t}"));
    assert!(line.starts_with("FAIL") && line.contains(&format!("installed {old}, library {library}")), "{line}");
    let out = c.xtask(&["setup"]);
    assert!(out.status.success(), "{}", text(&out));
    // The progress lines say why (with major.minor versions); the summary says what setup did.
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let major_minor = |v: &str| v.split('-').next().unwrap().to_string();
    assert!(
        stderr.contains(&format!("citus_worker1: installed extension {}", major_minor(&old)))
            && stderr.contains(&format!("older than the loaded library {}", major_minor(&library))),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("citus_worker1: updated extension citus in \"{}\"", c.database)), "{stdout}");
    let v: String = c.connect(1, &c.database).query_one("SELECT extversion FROM pg_extension WHERE extname = 'citus'", &[]).unwrap().get(0);
    assert_eq!(v, library);
    c.ok(&["verify"]);
}

/// The citus version (`13.1-1`) to install under a library of `library`'s version: among
/// `versions`, the newest whose major.minor is older than the library's (the tool compares
/// major.minor), of the same major if there is one. `None` when there is no older one.
fn older_citus(library: &str, versions: &[String]) -> Option<String> {
    let parse = |v: &str| -> Option<(u32, u32, u32)> {
        let (core, revision) = v.split_once('-')?;
        let (major, minor) = core.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?, revision.parse().ok()?))
    };
    let (major, minor, _) = parse(library)?;
    let older: Vec<((u32, u32, u32), &String)> =
        versions.iter().filter_map(|v| Some((parse(v)?, v))).filter(|((a, b, _), _)| (*a, *b) < (major, minor)).collect();
    let newest = |same_major: bool| older.iter().filter(|((a, _, _), _)| !same_major || *a == major).max_by_key(|(k, _)| *k).map(|(_, v)| v.to_string());
    newest(true).or_else(|| newest(false))
}

#[test]
fn older_citus_prefers_the_newest_older_minor_of_the_same_major() {
    let versions = |vs: &[&str]| vs.iter().map(|v| v.to_string()).collect::<Vec<_>>();
    let all = versions(&["12.1-1", "13.0-1", "13.1-1", "13.2-1", "9.5-3", "13.1-2-dev", "x"]);
    assert_eq!(older_citus("13.2-1", &all).as_deref(), Some("13.1-1"));
    assert_eq!(older_citus("13.0-1", &all).as_deref(), Some("12.1-1"));
    assert_eq!(older_citus("13.2-1", &versions(&["13.2-1", "13.3-1"])), None);
    // Another revision of the same major.minor is no skew for the tool.
    assert_eq!(older_citus("13.2-2", &versions(&["13.2-1"])), None);
}

#[test]
fn hostile_names_are_created_verbatim() {
    if !citus("hostile_names_are_created_verbatim") {
        return;
    }
    let db = "x\"; DROP DATABASE postgres; -- Ünï 'q'";
    let user = "o'neil \"Admin\"; --";
    let c = TestCluster::new(Spec { database: db, user, name: "my cluster; $(touch pwned)", subdir: "dir with spaces $(touch pwned); x", ..Spec::default() });
    c.ok(&["up"]);
    c.ok(&["verify"]);
    let mut coord = c.connect(0, "postgres");
    let names: Vec<String> = coord.query("SELECT datname FROM pg_database ORDER BY 1", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(names.contains(&db.to_string()) && names.contains(&"postgres".to_string()), "{names:?}");
    let who: String = coord.query_one("SELECT current_user", &[]).unwrap().get(0);
    assert_eq!(who, user);
    assert!(!c.dir.path().join("pwned").exists() && !std::path::Path::new("pwned").exists(), "a shell ran a name");
}

#[test]
fn password_never_appears_in_process_arguments_or_output() {
    if !citus("password_never_appears_in_process_arguments_or_output") {
        return;
    }
    let secret = "Pw-unique-7f3a9c";
    let c = TestCluster::new(Spec::default());
    let mut outputs = String::new();
    let config = c.config.to_string_lossy().into_owned();
    for args in [&["up"][..], &["setup"], &["verify"], &["test-env", "--format", "pytest"], &["setup", "--dry-run"]] {
        // Every process's arguments, read again and again while the task runs, so that its
        // short-lived children (initdb, cp, pg_ctl, `postgres -C`, openssl) are read too.
        let (out, scans, xtask_seen) = std::thread::scope(|s| {
            let task = s.spawn(|| c.xtask_env(args, &[("CITUS_IT_PASSWORD", secret)]));
            let (mut scans, mut xtask_seen) = (0, false);
            while !task.is_finished() {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                        let cmdline = String::from_utf8_lossy(&cmdline);
                        xtask_seen |= cmdline.contains(&config);
                        assert!(!cmdline.contains(secret), "{args:?}: password in a process's arguments: {cmdline}");
                    }
                }
                scans += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (task.join().unwrap(), scans, xtask_seen)
        });
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        if args == ["up"] {
            assert!(xtask_seen, "the scan never saw `up` itself running ({scans} scans)");
        }
        outputs.push_str(&String::from_utf8_lossy(&out.stderr));
        if args[0] != "test-env" {
            outputs.push_str(&String::from_utf8_lossy(&out.stdout));
        }
    }
    assert!(!outputs.contains(secret), "password printed: {outputs}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(!String::from_utf8_lossy(&cmdline).contains(secret), "password in a process's arguments");
        }
    }
    let log = std::fs::read_to_string(c.pgdata("citus_master").parent().unwrap().join("postgres.log")).unwrap();
    assert!(!log.contains(secret), "password in the server log");
}

#[test]
fn late_node_is_waited_for() {
    if !citus("late_node_is_waited_for") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    c.kill("citus_worker2", libc::SIGINT);
    std::thread::scope(|s| {
        let setup = s.spawn(|| c.xtask(&["setup"]));
        std::thread::sleep(Duration::from_millis(1500));
        c.ok(&["up", "--no-setup"]);
        let out = setup.join().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(&format!("waiting for citus_worker2 at localhost:{}", c.port(2))), "{}", text(&out));
        // The stopped node is named with the fix at once; the running ones are not.
        assert!(
            text(&out).contains("citus_worker2: no server runs on its data directory ") && text(&out).contains(": `cargo xtask up` starts it (waiting up to "),
            "{}",
            text(&out)
        );
        assert!(!text(&out).contains("citus_worker1: no server runs"), "{}", text(&out));
    });
    c.ok(&["verify"]);
}

#[test]
fn unresolvable_cluster_address_is_refused_with_both_addresses() {
    if !citus("unresolvable_cluster_address_is_refused_with_both_addresses") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    let p2 = c.port(2);
    c.set_cluster_address(2, "no-such-host.invalid:5432");
    let out = c.xtask(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("citus_worker2") && t.contains("no-such-host.invalid:5432") && t.contains(&format!("localhost:{p2}")) && t.contains("two addresses"),
        "{t}"
    );
    let n: i64 = c.connect(0, &c.database).query_one("SELECT count(*) FROM pg_dist_node WHERE nodename = 'no-such-host.invalid'", &[]).unwrap().get(0);
    assert_eq!(n, 0, "a half-registered node was left behind");
}

/// A `setup` that would move the coordinator host of a registered cluster checks first that
/// the coordinator reaches its own new address and every worker it registers: a new address
/// nothing resolves (or a config pointed at another cluster's nodes) fails with both addresses
/// and the fix, and the cluster keeps the host it had, so `verify` still passes.
#[test]
fn a_coordinator_host_move_to_an_unreachable_address_changes_nothing() {
    if !citus("a_coordinator_host_move_to_an_unreachable_address_changes_nothing") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let p0 = c.port(0);
    let good = c.set_cluster_address(0, "no-such-host.invalid:5432");
    let out = c.xtask(&["setup"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("setup failed in phase `coordinator host`"), "{t}");
    assert!(
        t.contains("the coordinator citus_master cannot connect to its own cluster address no-such-host.invalid:5432")
            && t.contains(&format!("the client address this tool uses (localhost:{p0})"))
            && t.contains("set `cluster_address` of citus_master"),
        "{t}"
    );
    assert!(t.contains(&format!("(checked before moving the coordinator host, which stays localhost:{p0})")), "{t}");
    let host: String = c.connect(0, &c.database).query_one("SELECT nodename || ':' || nodeport FROM pg_dist_node WHERE groupid = 0", &[]).unwrap().get(0);
    assert_eq!(host, format!("localhost:{p0}"), "the coordinator host was moved: {t}");
    std::fs::write(&c.config, good).unwrap();
    c.ok(&["verify"]);
}

/// Makes `setup` stop in the middle of its plan, deterministically: the test holds a SHARE
/// lock on worker `w`'s `pg_extension` in the target database (which `up` copied from the
/// template). Reading the catalog still works (logins, readiness, observing), but
/// `CREATE EXTENSION` blocks when it inserts its row, so setup waits there while the other
/// nodes go ahead. Returns the connection that holds the lock.
fn hold_extension_catalog(c: &TestCluster, w: usize) -> postgres::Client {
    let mut holder = c.connect(w, &c.database);
    holder.batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_extension IN SHARE MODE").unwrap();
    holder
}

fn wait_until_setup_blocks_on(c: &TestCluster, w: usize) {
    let mut probe = c.connect(w, "postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = probe.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", &[&c.database]).unwrap().get(0);
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "setup never reached CREATE EXTENSION on worker {w}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn worker_rows(c: &TestCluster) -> i64 {
    c.connect(0, &c.database).query_one("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0", &[]).unwrap().get(0)
}

#[test]
fn worker_killed_during_setup_then_rerun_completes_without_duplicates() {
    if !citus("worker_killed_during_setup_then_rerun_completes_without_duplicates") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up", "--no-setup"]);
    let holder = hold_extension_catalog(&c, 1);
    let first = std::thread::scope(|s| {
        // Owned by this closure, so that a panic below drops it (releasing the lock, so setup
        // goes on and ends) before the scope waits for the setup thread.
        let holder = holder;
        let setup = s.spawn(|| c.xtask(&["setup"]));
        wait_until_setup_blocks_on(&c, 1);
        c.kill("citus_worker1", libc::SIGKILL);
        let first = setup.join().unwrap();
        drop(holder);
        first
    });
    assert_eq!(first.status.code(), Some(1), "setup did not fail when worker 1 died: {}", text(&first));
    let t = text(&first);
    assert!(t.contains("citus_worker1") && t.contains(&format!("localhost:{}", c.port(1))), "the failure does not name the killed worker: {t}");
    assert!(t.contains("went away during setup") && t.contains("re-run `cargo xtask setup`"), "no fix in: {t}");
    c.ok(&["up"]);
    assert_eq!(worker_rows(&c), 2, "duplicate or missing worker rows");
    c.ok(&["verify"]);
}

#[test]
fn interrupted_setup_leaves_no_process_and_the_next_run_resumes() {
    if !citus("interrupted_setup_leaves_no_process_and_the_next_run_resumes") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up", "--no-setup"]);
    let nodes = ["citus_master", "citus_worker1", "citus_worker2"];
    let servers_before: Vec<i32> = nodes.iter().map(|n| c.pid(n).unwrap()).collect();
    let holder = hold_extension_catalog(&c, 1);
    // Killed and reaped if an assertion fails first (before `holder` goes, the later local).
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["setup", "--backend", "local", "--config"])
            .arg(&c.config)
            .env("CITUS_IT_PASSWORD", crate::harness::PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_setup_blocks_on(&c, 1);
    let setup_pid = child.0.id() as i32;
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(setup_pid, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "setup was not interrupted");
    drop(holder);
    // Nothing the interrupted run started is left: no process has it as parent, and the
    // servers are the same three `up` started.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            let ppid = stat.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(1)).and_then(|p| p.parse::<i32>().ok());
            assert_ne!(ppid, Some(setup_pid), "a child of the interrupted setup is still running: {stat}");
        }
    }
    let after: Vec<i32> = nodes.iter().map(|n| c.pid(n).unwrap()).collect();
    assert_eq!(servers_before, after);
    let out = c.ok(&["setup"]);
    // The interrupted run registered no worker (the coordinator's first membership step,
    // worker 1, waited for worker 1's extension), so the next run is the one that does it.
    assert!(out.contains("setup: changed") && out.contains("citus_master:"), "{out}");
    assert_eq!(worker_rows(&c), 2);
    c.ok(&["verify"]);
}

/// Ctrl-C during `up`: SIGINT to `up`'s process group (which holds `cp` and `initdb` but not
/// the servers, which run in their own group), at three moments: while the template is built,
/// when the first node has its data directory, and when the first node is ready. Each time the
/// next `up` completes without re-initialising anything it finished, no half-copied data
/// directory is left, `verify` passes, and `down` leaves no server running.
#[test]
fn interrupted_up_then_rerun_completes() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    if !citus("interrupted_up_then_rerun_completes") {
        return;
    }
    for (i, moment) in ["initdb: creating the pristine template", ": new data directory", "ready: "].iter().enumerate() {
        let c = TestCluster::new(Spec { name: &format!("itint{i}"), ..Spec::default() });
        // Its group (`up`, its cp and initdb) is killed if the test fails before the wait.
        let mut child = KillGroupOnDrop::new(
            std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
                .args(["up", "--backend", "local", "--config"])
                .arg(&c.config)
                .env("CITUS_IT_PASSWORD", crate::harness::PASSWORD)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let pgid = child.pgid();
        let mut seen = Vec::new();
        let mut interrupted = false;
        for line in BufReader::new(child.take_stderr().unwrap()).lines() {
            let line = line.unwrap();
            seen.push(line.clone());
            if !interrupted && line.contains(moment) {
                // SAFETY: plain syscall on our own child's process group.
                unsafe { libc::kill(-pgid, libc::SIGINT) };
                interrupted = true;
            }
        }
        let status = child.wait();
        assert!(interrupted, "`{moment}` never appeared: {seen:#?}");
        eprintln!("interrupted at `{moment}`: {status}");
        let rerun = c.ok(&["up"]);
        assert!(rerun.contains("ready in"), "{rerun}");
        for node in ["citus_master", "citus_worker1", "citus_worker2"] {
            let leftovers: Vec<String> = c.beside_pgdata(node).into_iter().filter(|n| n.starts_with("pgdata.partial")).collect();
            assert!(leftovers.is_empty(), "{node}: {leftovers:?}");
            assert!(c.pgdata(node).join("PG_VERSION").exists());
        }
        c.ok(&["verify"]);
        let pids: Vec<i32> = ["citus_master", "citus_worker1", "citus_worker2"].iter().map(|n| c.pid(n).expect("running")).collect();
        c.ok(&["down"]);
        for pid in pids {
            assert!(crate::harness::gone_soon(pid), "server {pid} still runs 5 s after down");
        }
    }
}

/// On a fresh cluster the coordinator adds a worker as soon as that worker has its extension:
/// with worker 2's `CREATE EXTENSION` held back, worker 1 is registered (and the coordinator
/// host set) while worker 2 still waits; releasing it lets the same `setup` finish.
#[test]
fn fresh_setup_registers_a_ready_worker_while_another_is_still_creating_its_extension() {
    if !citus("fresh_setup_registers_a_ready_worker_while_another_is_still_creating_its_extension") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up", "--no-setup"]);
    let holder = hold_extension_catalog(&c, 2);
    let out = std::thread::scope(|s| {
        let setup = s.spawn(|| c.xtask(&["setup"]));
        wait_until_setup_blocks_on(&c, 2);
        let deadline = Instant::now() + Duration::from_secs(30);
        let registered = loop {
            // The coordinator's catalog is readable once its extension exists; before that the
            // query fails and is retried.
            let rows: Option<Vec<(String, i32)>> = c
                .connect(0, &c.database)
                .query("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid", &[])
                .ok()
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect());
            if let Some(rows) = rows.filter(|r| !r.is_empty()) {
                break rows;
            }
            assert!(Instant::now() < deadline, "worker 1 was not registered while worker 2 was blocked");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(registered, [("localhost".to_string(), i32::from(c.port(1)))], "only worker 1 can be registered yet");
        let still_blocked: i64 = c
            .connect(2, "postgres")
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", &[&c.database])
            .unwrap()
            .get(0);
        assert_eq!(still_blocked, 1, "worker 2's CREATE EXTENSION should still be waiting");
        drop(holder);
        setup.join().unwrap()
    });
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(worker_rows(&c), 2);
    c.ok(&["verify"]);
}

/// Two `up`s of one new cluster at once (two terminals, two CI steps): the second waits for
/// the first, says so, and then finds the servers running; both succeed and no half-copied
/// data directory is left. Plain PostgreSQL nodes: starting them needs no Citus.
#[test]
fn two_ups_at_once_take_turns() {
    let test = "two_ups_at_once_take_turns";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = []\n", ..Spec::default() });
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2).map(|_| s.spawn(|| c.xtask(&["up", "--no-setup"]))).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for out in &outs {
        assert!(out.status.success(), "{}", text(out));
    }
    let waited: Vec<&std::process::Output> = outs.iter().filter(|o| text(o).contains("waiting for another `up` of cluster `it`")).collect();
    assert_eq!(waited.len(), 1, "exactly one `up` waits for the other");
    assert!(text(waited[0]).contains("citus_worker2: already running"), "{}", text(waited[0]));
    for (i, node) in ["citus_master", "citus_worker1", "citus_worker2"].into_iter().enumerate() {
        assert_eq!(c.beside_pgdata(node), Vec::<String>::new(), "{node}");
        c.connect(i, "postgres");
    }
}

/// A `down --purge` while an `up` of the cluster still starts nodes waits for it (the same
/// lock), says so, and then stops and deletes everything: before, it stopped only the servers
/// running at that moment and deleted the folders of the ones `up` was starting. Here the test
/// holds the lock itself, as an `up` does, so the timing is certain. Plain PostgreSQL nodes.
#[test]
fn down_during_an_up_waits_for_it() {
    let test = "down_during_an_up_waits_for_it";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = []\n", ..Spec::default() });
    c.ok(&["up", "--no-setup"]);
    let lock_path = c.pgdata("citus_master").parent().unwrap().parent().unwrap().join(".up.lock");
    let lock = std::fs::OpenOptions::new().read(true).write(true).open(&lock_path).unwrap();
    lock.lock().unwrap();
    // As an `up` does: the pid in the file is the holder's, which the kernel also names.
    std::fs::write(&lock_path, format!("up {}", std::process::id())).unwrap();
    let out = std::thread::scope(|s| {
        let down = s.spawn(|| c.xtask(&["down", "--purge"]));
        std::thread::sleep(Duration::from_secs(2));
        assert!(!down.is_finished(), "down did not wait for the lock");
        for node in ["citus_master", "citus_worker1", "citus_worker2"] {
            assert!(c.pid(node).is_some(), "{node} was stopped while the lock was held");
        }
        drop(lock);
        down.join().unwrap()
    });
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("down: waiting for another `up` of cluster `it` (pid {}) to finish starting its nodes", std::process::id())), "{t}");
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        assert!(!c.pgdata(node).exists(), "{node}'s data was not purged");
    }
    // The lock file stays (a waiter on it must not lose its lock to a new file).
    assert!(lock_path.exists());
}

/// An `up --workers N` behind another `up` writes its worker count only once it holds the
/// lock: while it waits, the record is the running `up`'s, and an `up` that gives up on the
/// wait ("nothing was done") leaves it as it was. Plain PostgreSQL: needs no Citus.
#[test]
fn an_up_records_its_worker_count_only_once_it_holds_the_lock() {
    let test = "an_up_records_its_worker_count_only_once_it_holds_the_lock";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = []\n", ..Spec::default() });
    c.ok(&["up", "--no-setup"]);
    let dir = c.pgdata("citus_master").parent().unwrap().parent().unwrap().to_path_buf();
    let record = dir.join("workers");
    let hold = || {
        let lock = std::fs::OpenOptions::new().read(true).write(true).open(dir.join(".up.lock")).unwrap();
        lock.lock().unwrap();
        std::fs::write(dir.join(".up.lock"), format!("up {}", std::process::id())).unwrap();
        lock
    };
    let lock = hold();
    let out = std::thread::scope(|s| {
        let up = s.spawn(|| c.xtask(&["up", "--no-setup", "--workers", "1"]));
        std::thread::sleep(Duration::from_secs(2));
        assert!(!up.is_finished(), "up did not wait for the lock");
        assert!(!record.exists(), "the waiting up recorded its worker count: {:?}", std::fs::read_to_string(&record));
        drop(lock);
        up.join().unwrap()
    });
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "1");
    // A wait that runs out (10 × timeout_secs) keeps the record: `--workers 2`, the config's
    // own count, would have removed it.
    std::fs::write(&c.config, format!("{}\n[wait]\ntimeout_secs = 1\n", std::fs::read_to_string(&c.config).unwrap())).unwrap();
    let lock = hold();
    let out = c.xtask(&["up", "--no-setup", "--workers", "2"]);
    drop(lock);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("nothing was done"), "{t}");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "1", "the up that gave up on the lock changed the record");
    assert!(c.pid("citus_worker2").is_some(), "citus_worker2 was stopped");
}

/// A local server that exits while starting (here: a preloaded library that is not installed)
/// fails `up` at once, per node, with what that start logged (not the lines of earlier starts)
/// and the fix; the data directories are kept, and the next `up` with the config fixed starts
/// them. Plain PostgreSQL: needs no Citus.
#[test]
fn local_server_that_exits_while_starting_fails_up_at_once_with_its_log_and_fix() {
    let test = "local_server_that_exits_while_starting_fails_up_at_once_with_its_log_and_fix";
    let Some(_env) = require(test, &[Need::Postgres]) else { return };
    let c = TestCluster::new(Spec { top: "shared_preload_libraries = [\"pg_nosuch\"]\n", extra: "\n[wait]\ntimeout_secs = 600\n", ..Spec::default() });
    for run in 0..2 {
        let started = Instant::now();
        let out = c.xtask(&["up", "--no-setup"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(started.elapsed() < Duration::from_secs(60), "run {run}: waited {:?}, not failing at once", started.elapsed());
        let t = text(&out);
        for (i, node) in ["citus_master", "citus_worker1", "citus_worker2"].iter().enumerate() {
            let head = format!("node {node} at localhost:{}: postgres exited while starting", c.port(i));
            let at = t.find(&head).unwrap_or_else(|| panic!("run {run}: no {head:?} in {t}"));
            let section = t[at..].split("\nnode ").next().unwrap();
            // The second run shows its own start's lines only: one FATAL, not the first run's too.
            assert_eq!(section.matches("FATAL:  could not access file \"pg_nosuch\"").count(), 1, "run {run}, {node}: {section}");
            assert!(section.contains("fix: the PostgreSQL in ") && section.contains("has no library \"pg_nosuch\": install it"), "{section}");
            assert!(c.pgdata(node).join("PG_VERSION").exists(), "{node}'s data directory is gone");
        }
    }
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap().replace("[\"pg_nosuch\"]", "[]")).unwrap();
    let out = c.ok(&["up", "--no-setup"]);
    assert!(out.contains("3 node(s) started"), "{out}");
}

/// A new 1 + 2 cluster, up, with a distributed table `kept` of 100 rows (16 shards).
fn up_with_a_distributed_table() -> TestCluster {
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    c.connect(0, &c.database)
        .batch_execute("CREATE TABLE kept (id int); SELECT create_distributed_table('kept', 'id'); INSERT INTO kept SELECT generate_series(1, 100)")
        .unwrap();
    c
}

/// A worker whose data directory was made anew (deleted while the cluster was down) comes back
/// registered and in sync, but without the shards the coordinator places on it: `verify`
/// fails "shards present" for that worker, naming missing shards, and passes it for the other.
#[test]
fn a_worker_that_lost_its_shards_fails_verify() {
    if !citus("a_worker_that_lost_its_shards_fails_verify") {
        return;
    }
    let c = up_with_a_distributed_table();
    let out = c.ok(&["verify"]);
    let placed = |node: &str| out.lines().find(|l| l.starts_with("ok") && l.contains(node) && l.contains("shards present")).map(str::to_string);
    assert!(placed("citus_worker1").is_some_and(|l| l.contains("all 16 shard placement(s)")), "{out}");
    assert!(placed("citus_worker2").is_some(), "{out}");
    c.ok(&["down"]);
    std::fs::remove_dir_all(c.pgdata("citus_worker2").parent().unwrap()).unwrap();
    c.ok(&["up"]);
    let out = c.xtask(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    let line = t.lines().find(|l| l.starts_with("FAIL") && l.contains("shards present")).unwrap_or_else(|| panic!("{t}"));
    assert!(
        line.contains("citus_worker2") && line.contains("16 of the 16 shard placement(s) the coordinator lists here are missing, e.g. public.kept_"),
        "{line}"
    );
    assert!(t.contains("fix: their rows are not on this node"), "{t}");
    assert!(t.lines().any(|l| l.starts_with("ok") && l.contains("citus_worker1") && l.contains("shards present")), "{t}");
}

/// Two workers' ports swapped in the config between a `down` and an `up`: each server then
/// answers at the address the coordinator registered for the other. `setup` (in `up`) refuses
/// before changing anything, naming the worker, both addresses and the fix, instead of
/// re-activating them, which would swap their groups without their shards; with the ports
/// back, everything is as before.
#[test]
fn swapped_worker_ports_are_refused_before_any_change() {
    if !citus("swapped_worker_ports_are_refused_before_any_change") {
        return;
    }
    let c = up_with_a_distributed_table();
    c.ok(&["down"]);
    let good = std::fs::read_to_string(&c.config).unwrap();
    let (p1, p2) = (c.port(1), c.port(2));
    let swapped = good
        .replace(&format!("port = {p1}"), "port = P1")
        .replace(&format!("port = {p2}"), &format!("port = {p1}"))
        .replace("port = P1", &format!("port = {p2}"));
    std::fs::write(&c.config, &swapped).unwrap();
    let out = c.xtask(&["up"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("the coordinator registered group") && t.contains("Were two workers' ports or addresses swapped in the config? Nothing was changed."),
        "{t}"
    );
    assert!(t.contains(&format!("localhost:{p1}")) && t.contains(&format!("localhost:{p2}")), "{t}");
    // Nothing changed: each worker still has its own group, which the coordinator lists at
    // the worker's old (and right) port.
    let groups: Vec<(i32, i32)> = c
        .connect(0, &c.database)
        .query("SELECT nodeport, groupid FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeport", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (port, group) in groups {
        // The server now listening at `port` is the other worker: its own group differs.
        // (Re-activation would have made them equal.)
        let theirs: i32 =
            c.connect(if i32::from(p1) == port { 1 } else { 2 }, &c.database).query_one("SELECT groupid FROM pg_dist_local_group", &[]).unwrap().get(0);
        assert_ne!(theirs, group, "port {port}");
    }
    c.ok(&["down"]);
    std::fs::write(&c.config, &good).unwrap();
    c.ok(&["up"]);
    c.ok(&["verify"]);
    let n: i64 = c.connect(0, &c.database).query_one("SELECT count(*) FROM kept", &[]).unwrap().get(0);
    assert_eq!(n, 100);
}

#[test]
fn a_worker_that_kept_the_shards_of_a_coordinator_made_anew_is_refused_until_named() {
    if !citus("a_worker_that_kept_the_shards_of_a_coordinator_made_anew_is_refused_until_named") {
        return;
    }
    let c = TestCluster::new(Spec::default());
    c.ok(&["up"]);
    let tables = "CREATE TABLE t (id int PRIMARY KEY, v text); SELECT create_distributed_table('t', 'id'); \
                  CREATE TABLE r (id int); SELECT create_reference_table('r')";
    c.connect(0, &c.database).batch_execute(tables).unwrap();
    c.connect(0, &c.database).batch_execute("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g").unwrap();
    // The coordinator (and worker 1) made anew; worker 2 keeps its data, shards included.
    c.ok(&["down", "--purge", "--workers", "1"]);
    let shard_count = |i: usize| -> i64 {
        c.connect(i, &c.database)
            .query_one("SELECT count(*) FROM pg_dist_shard s WHERE to_regclass(shard_name(s.logicalrelid, s.shardid)) IS NOT NULL", &[])
            .unwrap()
            .get(0)
    };
    let out = c.xtask(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&format!("worker citus_worker2 at localhost:{}", c.port(2))) && t.contains("shard table(s) of a cluster"), "{t}");
    assert!(t.contains("`cargo xtask setup --drop-orphaned-shards citus_worker2`"), "{t}");
    // Refused before it was registered, and nothing of it was dropped.
    let mut coord = c.connect(0, &c.database);
    let port2 = i32::from(c.port(2));
    let registered =
        |coord: &mut postgres::Client| -> i64 { coord.query_one("SELECT count(*) FROM pg_dist_node WHERE nodeport = $1", &[&port2]).unwrap().get(0) };
    assert_eq!(registered(&mut coord), 0, "{t}");
    let kept = shard_count(2);
    assert!(kept > 1, "worker 2 holds {kept} shards: {t}");
    // A plain setup refuses it again; naming another worker does not drop these.
    let out = c.xtask(&["setup", "--drop-orphaned-shards", "citus_worker1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(shard_count(2), kept);
    // Named: its shards are dropped, it is registered, and the same tables can be made again.
    let t = c.ok(&["setup", "--drop-orphaned-shards", "citus_worker2"]);
    assert!(t.contains(&format!("citus_worker2: dropped {kept} shard table(s) of an earlier cluster")), "{t}");
    assert_eq!(registered(&mut coord), 1, "{t}");
    c.ok(&["verify"]);
    coord.batch_execute(tables).unwrap();
    c.ok(&["verify"]);
    // Once registered, the name drops nothing more, and says so.
    let t = c.ok(&["setup", "--drop-orphaned-shards", "citus_worker2"]);
    assert!(t.contains("nothing to change") && t.contains("--drop-orphaned-shards dropped nothing"), "{t}");
    assert!(shard_count(2) > 0, "{t}");
}

#[test]
fn drop_orphaned_shards_names_a_worker_of_the_run() {
    let c = TestCluster::new(Spec::default());
    let out = c.xtask(&["setup", "--drop-orphaned-shards", "citus_master"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a worker of this run (its workers: citus_worker1, citus_worker2)"), "{}", text(&out));
    let out = c.xtask(&["setup", "--dry-run", "--drop-orphaned-shards", "citus_worker2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// `setup` against nodes where the config's `user` is no superuser (nodes this tool did not
/// start, a role made by hand) says so, naming the node, its address and the fix, instead of
/// the server's bare "permission denied for function pg_control_system".
#[test]
fn a_user_that_is_no_superuser_is_named_with_the_fix() {
    if !citus("a_user_that_is_no_superuser_is_named_with_the_fix") {
        return;
    }
    let c = TestCluster::new(Spec { workers: 1, ..Spec::default() });
    c.ok(&["up"]);
    // On every node: Citus would propagate a role made on the coordinator, so each node gets
    // it only where it is missing.
    for i in 0..2 {
        c.connect(i, "postgres")
            .batch_execute(&format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plain') THEN CREATE ROLE plain LOGIN PASSWORD '{}'; END IF; END $$",
                crate::harness::PASSWORD
            ))
            .unwrap();
    }
    let config = std::fs::read_to_string(&c.config).unwrap();
    let own_user = format!("user = \"{}\"\n", c.user);
    assert!(config.contains(&own_user), "{config}");
    std::fs::write(&c.config, config.replace(&own_user, "user = \"plain\"\n")).unwrap();
    let out = c.xtask(&["setup"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("observing citus_master at localhost:{}: user \"plain\" is no superuser there", c.port(0))), "{t}");
    assert!(t.contains("fix: set `user` in ") && t.contains("(`ALTER ROLE \"plain\" SUPERUSER`, as a superuser)"), "{t}");
    std::fs::write(&c.config, config).unwrap();
}
