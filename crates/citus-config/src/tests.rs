//! Parsing and validation tests, with snapshots of the error messages users see.

use super::*;

const SEED: &str = include_str!("../../../citus.toml");

fn parse(src: &str) -> Result<Cluster, ConfigError> {
    Cluster::parse(src, Path::new("conf/citus.toml"))
}

fn check_error(src: &str) -> String {
    match parse(src) {
        Ok(c) => panic!("expected an error, parsed {c:?}"),
        Err(e) => e.to_string(),
    }
}

const MINIMAL: &str = "database = \"db\"\n[coordinator]\nname = \"c\"\nport = 5600\n[[workers]]\nname = \"w1\"\nport = 5601\n";

#[test]
fn seed_config_reproduces_the_seed() {
    let c = parse(SEED).unwrap();
    assert_eq!(c.database, "commcare_ucr_citus");
    assert_eq!(c.user, "commcarehq");
    assert_eq!(c.coordinator.name, "citus_master");
    assert_eq!(c.coordinator.client, Address::new("localhost", 5600));
    let w: Vec<_> = c.workers.iter().map(|w| (w.name.as_str(), w.client.port)).collect();
    assert_eq!(w, [("citus_worker1", 5601), ("citus_worker2", 5602)]);
    assert_eq!(c.backend, Backend::Docker);
    assert_eq!(c.cluster_address(&c.workers[0], Backend::Docker).to_string(), "citus_worker1:5432");
    assert_eq!(c.cluster_address(&c.workers[0], Backend::Local).to_string(), "localhost:5601");
    assert_eq!(c.local.data_dir, Path::new("conf/.citus-data"));
}

#[test]
fn cluster_address_override_wins() {
    let src = MINIMAL.replace("port = 5601\n", "port = 5601\ncluster_address = \"10.0.0.5:6432\"\n");
    let c = parse(&src).unwrap();
    assert_eq!(c.cluster_address(&c.workers[0], Backend::Docker), Address::new("10.0.0.5", 6432));
    assert_eq!(c.cluster_address(&c.workers[0], Backend::Local), Address::new("10.0.0.5", 6432));
}

#[test]
fn with_workers_derives_predictably() {
    let c = parse(SEED).unwrap().with_workers(4).unwrap();
    let w: Vec<_> = c.workers.iter().map(|w| format!("{}@{}", w.name, w.client)).collect();
    assert_eq!(w, ["citus_worker1@localhost:5601", "citus_worker2@localhost:5602", "citus_worker3@localhost:5603", "citus_worker4@localhost:5604"]);
    let c = parse(SEED).unwrap().with_workers(1).unwrap();
    assert_eq!(c.workers.len(), 1);
}

#[test]
fn a_worker_beyond_this_run_is_found_by_its_cluster_address() {
    let two = parse(SEED).unwrap();
    // What `up --workers 4` registered, seen by a run of 2.
    assert_eq!(two.derived_worker_at(Backend::Docker, &Address::new("citus_worker4", 5432)), Some(("citus_worker4".into(), 4)));
    assert_eq!(two.derived_worker_at(Backend::Local, &Address::new("localhost", 5603)), Some(("citus_worker3".into(), 3)));
    // This run's own workers, the coordinator and an address no count derives: none.
    assert_eq!(two.derived_worker_at(Backend::Docker, &Address::new("citus_worker2", 5432)), None);
    assert_eq!(two.derived_worker_at(Backend::Local, &Address::new("localhost", 5600)), None);
    assert_eq!(two.derived_worker_at(Backend::Docker, &Address::new("stray", 5432)), None);
    let one = two.clone().with_workers(1).unwrap();
    assert_eq!(one.derived_worker_at(Backend::Docker, &Address::new("citus_worker2", 5432)), Some(("citus_worker2".into(), 2)));
    // A configured worker this run leaves out is found on its own address and port, which
    // no derivation from worker 1 would give.
    let src = MINIMAL.to_string() + "[[workers]]\nname = \"far\"\nport = 7000\ncluster_address = \"10.0.0.9:6000\"\n";
    let one = parse(&src).unwrap().with_workers(1).unwrap();
    assert_eq!(one.left_out.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["far"]);
    assert_eq!(one.derived_worker_at(Backend::Local, &Address::new("10.0.0.9", 6000)), Some(("far".into(), 2)));
    assert_eq!(one.derived_worker_at(Backend::Local, &Address::new("localhost", 7001)), Some(("far3".into(), 3)));
}

#[test]
fn with_workers_brings_back_the_configured_workers_it_left_out_first() {
    let src = MINIMAL.to_string() + "[[workers]]\nname = \"far\"\nport = 7000\n";
    let full = parse(&src).unwrap();
    let names = |c: &Cluster| c.workers.iter().map(|w| format!("{}@{}", w.name, w.client.port)).collect::<Vec<_>>();
    let back = full.clone().with_workers(0).unwrap().with_workers(3).unwrap();
    assert_eq!(names(&back), ["w1@5601", "far@7000", "far3@7001"]);
    assert!(back.left_out.is_empty());
    assert_eq!(full.clone().with_workers(1).unwrap().with_workers(2).unwrap(), full);
}

#[test]
fn the_fix_for_a_taken_port_of_a_derived_worker_says_it_is_not_in_the_file() {
    let c = parse(SEED).unwrap().with_workers(3).unwrap();
    assert!(!c.workers[1].derived && c.workers[2].derived);
    assert_eq!(c.port_fix(&c.workers[1]), "give citus_worker2 another `port` in conf/citus.toml");
    let fix = c.port_fix(&c.workers[2]);
    assert!(fix.starts_with("give citus_worker3 another `port` in conf/citus.toml: it is not in the file"), "{fix}");
    assert!(fix.contains("add it under [[workers]] with a free `port`, or use fewer workers"), "{fix}");
    // Left out and brought back, a configured worker stays configured.
    let back = c.with_workers(1).unwrap().with_workers(3).unwrap();
    assert_eq!(back.workers.iter().map(|w| w.derived).collect::<Vec<_>>(), [false, false, true]);
}

#[test]
fn with_workers_refuses_collisions() {
    // w5 holds 5602, which the worker derived after w1 (w2 on 5602) would need.
    let src = "database = \"db\"\n[coordinator]\nname = \"c\"\nport = 5600\n[[workers]]\nname = \"w5\"\nport = 5602\n[[workers]]\nname = \"w1\"\nport = 5601\n";
    let e = parse(src).unwrap().with_workers(3).unwrap_err().to_string();
    assert!(e.contains("collides"), "{e}");
    // The same port under another name for the same host collides too.
    let src = src.replace("port = 5602\n", "port = 5602\nhost = \"127.0.0.1\"\n");
    let e = parse(&src).unwrap().with_workers(3).unwrap_err().to_string();
    assert!(e.contains("the derived worker `w2` on port 5602 collides with a configured node"), "{e}");
}

#[test]
fn unknown_key() {
    insta::assert_snapshot!(check_error(&(MINIMAL.to_string() + "[local]\ndata_dri = \"x\"\n")));
}

#[test]
fn missing_field() {
    insta::assert_snapshot!(check_error("[coordinator]\nname = \"c\"\nport = 5600\n"));
}

#[test]
fn port_zero_and_out_of_range() {
    insta::assert_snapshot!(check_error(&MINIMAL.replace("5600", "0").replace("5601", "70000")));
}

#[test]
fn duplicate_names_and_ports() {
    insta::assert_snapshot!(check_error(&(MINIMAL.to_string() + "[[workers]]\nname = \"w1\"\nport = 5601\n")));
}

/// `localhost` is 127.0.0.1 and ::1 to a server that listens on it, and a wildcard takes every
/// address of its family: two nodes on one port there would meet at start, the second failing.
#[test]
fn one_port_under_two_spellings_of_one_address_is_refused() {
    let two = |coord: &str, worker: &str| {
        MINIMAL.replace("port = 5601", &format!("port = 5600\nhost = \"{worker}\"")).replace("port = 5600\n[[", &format!("port = 5600\nhost = \"{coord}\"\n[["))
    };
    for (a, b) in
        [("localhost", "127.0.0.1"), ("127.0.0.1", "localhost."), ("::1", "LocalHost"), ("0.0.0.0", "127.0.0.2"), ("::", "::1"), ("db.example", "DB.example.")]
    {
        let e = check_error(&two(a, b));
        let worker = if b.contains(':') { format!("[{b}]:5600") } else { format!("{b}:5600") };
        let coord = if a.contains(':') { format!("[{a}]:5600") } else { format!("{a}:5600") };
        assert!(
            e.contains(&format!("duplicate client address {worker} (`c` is at {coord}, and {a} and {b} listen on one address): every node needs its own port")),
            "{a} {b}: {e}"
        );
    }
    for (a, b) in [("127.0.0.1", "127.0.0.2"), ("127.0.0.1", "::1"), ("0.0.0.0", "::1"), ("db1.example", "db2.example")] {
        let c = parse(&two(a, b)).unwrap_or_else(|e| panic!("{a} {b}: {e}"));
        assert_eq!((c.coordinator.client.host.as_str(), c.workers[0].client.host.as_str()), (a, b));
    }
}

#[test]
fn name_over_63_bytes() {
    let long = "d".repeat(64);
    insta::assert_snapshot!(check_error(&MINIMAL.replace("\"db\"", &format!("\"{long}\""))));
}

#[test]
fn cluster_names_that_leave_their_folder_are_refused() {
    for bad in [".", "..", ".templates", "a/b", "../x", "/srv", "a\\\\b"] {
        let e = check_error(&format!("name = \"{bad}\"\n{MINIMAL}"));
        assert!(e.contains("is the folder of the cluster's data under [local] data_dir: it may not start with `.` or contain `/`"), "{bad}: {e}");
    }
    insta::assert_snapshot!(check_error(&format!("name = \"..\"\n{MINIMAL}")));
    for good in ["citus", "My Cluster", "a.b", "x-1"] {
        assert_eq!(parse(&format!("name = \"{good}\"\n{MINIMAL}")).unwrap().name, good);
    }
}

#[test]
fn malformed_toml() {
    insta::assert_snapshot!(check_error("database = \"db\n[coordinator]\n"));
}

#[test]
fn bad_cluster_address() {
    insta::assert_snapshot!(check_error(&MINIMAL.replace("port = 5601\n", "port = 5601\ncluster_address = \"nohostport\"\n")));
}

#[test]
fn odd_but_valid_names_are_kept_verbatim() {
    let src = MINIMAL.replace("\"db\"", "\"x\\\"; DROP DATABASE postgres; --\"");
    let c = parse(&src).unwrap();
    assert_eq!(c.database, "x\"; DROP DATABASE postgres; --");
}

#[test]
fn address_parsing() {
    assert_eq!("h:5432".parse::<Address>().unwrap(), Address::new("h", 5432));
    assert_eq!("[::1]:5432".parse::<Address>().unwrap().to_string(), "[::1]:5432");
    assert!("h:0".parse::<Address>().is_err());
    assert!(":5432".parse::<Address>().is_err());
    assert_eq!("citus_worker1:5432".parse::<Address>().unwrap(), Address::new("citus_worker1", 5432), "compose service names have underscores");
    assert_eq!("10.0.0.7:5432".parse::<Address>().unwrap(), Address::new("10.0.0.7", 5432));
    let e = "::1:5432".parse::<Address>().unwrap_err();
    assert!(e.contains("`[::1]:5432`"), "{e}");
    let e = "[fe80::1%eth0]:5432".parse::<Address>().unwrap_err();
    assert!(e.contains("`[fe80::1%eth0]` is not an IPv6 address in brackets") && !e.contains("[["), "{e}");
    let e = "[::1]".parse::<Address>().unwrap_err();
    assert!(!e.contains("[["), "{e}");
    let e = "my host:5432".parse::<Address>().unwrap_err();
    assert!(e.contains("' ' is not allowed"), "{e}");
}

#[test]
fn hosts_that_no_url_or_server_takes_are_refused_at_their_key() {
    for ok in ["localhost", "127.0.0.1", "::1", "db-1.internal", "citus_master", "fe80::1", "db.example.com."] {
        let c = parse(&MINIMAL.replace("port = 5601\n", &format!("port = 5601\nhost = \"{ok}\"\n"))).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(c.workers[0].client.host, ok);
    }
    let with_host = |h: &str| check_error(&MINIMAL.replace("port = 5601\n", &format!("port = 5601\nhost = \"{h}\"\n")));
    insta::assert_snapshot!(with_host("local host"));
    assert!(with_host("[::1]").contains("write an IPv6 address without brackets (`::1`)"));
    assert!(with_host("db:5432").contains("the port is a key of its own"));
    assert!(with_host("a..b").contains("each part between dots has 1 to 63 characters"));
    assert!(with_host("a.b..").contains("each part between dots has 1 to 63 characters"), "one final dot only");
    assert!(with_host("fe80::1%eth0").contains("an IPv6 address with a zone is not supported"));
    assert!(with_host("").contains("node `w1`: the host is empty"));
    assert!(with_host("a/b").contains("'/' is not allowed"));
    assert!(with_host("x@y").contains("'@' is not allowed"));
    assert!(with_host("h%25").contains("'%' is not allowed"));
    assert!(with_host("bücher").contains("`xn--` form"));
    assert!(with_host(&"a".repeat(64)).contains("1 to 63 characters"));
    let long = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".");
    assert!(with_host(&long).contains("255 characters long; a host name has at most 253"));
}

#[test]
fn docker_bind_must_be_an_ip_address() {
    for ok in ["127.0.0.1", "0.0.0.0", "::1", "[::1]"] {
        assert!(parse(&format!("{MINIMAL}[docker]\nbind = \"{ok}\"\n")).is_ok(), "{ok}");
    }
    insta::assert_snapshot!(check_error(&format!("{MINIMAL}[docker]\nbind = \"localhost\"\n")));
}

#[test]
fn docker_data_mount_follows_pg_major() {
    let mut d = parse(MINIMAL).unwrap().docker;
    assert_eq!(d.data_mount(), "/var/lib/postgresql/data");
    d.pg_major = 18;
    assert_eq!(d.data_mount(), "/var/lib/postgresql");
}

#[test]
fn node_names_and_password_env_are_checked() {
    let e = check_error(&MINIMAL.replace("name = \"w1\"", "name = \"w 1;x\"").replace("database = \"db\"", "database = \"db\"\npassword_env = \"MY-PW\""));
    assert!(e.contains("node name `w 1;x` may hold only") && e.contains("password_env `MY-PW`"), "{e}");
}

#[test]
fn control_characters_in_names_are_refused() {
    let e = check_error(&MINIMAL.replace("database = \"db\"", "database = \"db\\n\\nDROP\""));
    assert!(e.contains("contains a control character"), "{e}");
}

#[test]
fn shared_preload_libraries_default_to_citus_and_keep_their_order() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.shared_preload_libraries, ["citus"]);
    assert!(c.preloads_citus());
    let c = parse(&format!("shared_preload_libraries = [\"citus\", \"pg_stat_statements\"]\n{MINIMAL}")).unwrap();
    assert_eq!(c.shared_preload_libraries, ["citus", "pg_stat_statements"]);
    assert!(c.preloads_citus());
    // Plain PostgreSQL nodes: allowed, and `preloads_citus` says so.
    let c = parse(&format!("shared_preload_libraries = []\n{MINIMAL}")).unwrap();
    assert!(c.shared_preload_libraries.is_empty());
    assert!(!c.preloads_citus());
}

#[test]
fn shared_preload_libraries_refuse_citus_not_first_duplicates_and_odd_names() {
    let e = check_error(&format!("shared_preload_libraries = [\"pg_stat_statements\", \"citus\"]\n{MINIMAL}"));
    assert!(e.contains("conf/citus.toml:1:51: citus must be the first entry"), "{e}");
    let e = check_error(&format!("shared_preload_libraries = [\"citus\", \"citus\"]\n{MINIMAL}"));
    assert!(e.contains("lists `citus` twice"), "{e}");
    let e = check_error(&format!("shared_preload_libraries = [\"citus,auto_explain\"]\n{MINIMAL}"));
    assert!(e.contains("\"citus,auto_explain\" is not a library name"), "{e}");
    let e = check_error(&format!("shared_preload_libraries = [\"\"]\n{MINIMAL}"));
    assert!(e.contains("\"\" is not a library name"), "{e}");
}

#[test]
fn scram_iterations_default_to_16_and_refuse_zero() {
    assert_eq!(parse(MINIMAL).unwrap().local.scram_iterations, DEFAULT_SCRAM_ITERATIONS);
    assert_eq!(DEFAULT_SCRAM_ITERATIONS, 16);
    assert_eq!(parse(&format!("{MINIMAL}[local]\nscram_iterations = 4096\n")).unwrap().local.scram_iterations, 4096);
    let e = check_error(&format!("{MINIMAL}[local]\nscram_iterations = 0\n"));
    assert!(e.contains("conf/citus.toml:9:20: local.scram_iterations must be at least 1"), "{e}");
    let e = check_error(&format!("{MINIMAL}[local]\nscram_iterations = -1\n"));
    assert!(e.contains("scram_iterations"), "{e}");
}

#[test]
fn settings_flatten_dotted_names_and_render_values() {
    let src =
        MINIMAL.to_string() + "[settings]\nmax_connections = 300\nWork_Mem = \"64MB\"\nlog_connections = true\nrandom_page_cost = 1.5\ncitus.shard_count = 4\n";
    let c = parse(&src).unwrap();
    let s: Vec<_> = c.settings.iter().map(|s| format!("{}={}", s.name, s.value)).collect();
    assert_eq!(s, ["citus.shard_count=4", "log_connections=on", "max_connections=300", "random_page_cost=1.5", "work_mem=64MB"]);
    assert!(parse(MINIMAL).unwrap().settings.is_empty());
    // The same as a table of its own.
    let c = parse(&(MINIMAL.to_string() + "[settings.citus]\nshard_replication_factor = 1\n")).unwrap();
    assert_eq!(c.settings, [Setting { name: "citus.shard_replication_factor".into(), value: "1".into() }]);
}

#[test]
fn settings_refused() {
    let src = MINIMAL.to_string()
        + "[settings]\nport = 6000\nshared_preload_libraries = \"citus\"\n\"1bad\" = 1\nsearch_path = [\"a\", \"b\"]\nwork_mem = \"1MB\"\nWORK_MEM = \"2MB\"\napplication_name = \"a\\nb\"\napp.sub.key = 1\n\"x$y\" = 1\n";
    insta::assert_snapshot!(check_error(&src));
}

#[test]
fn booleans_as_postgresql_reads_them() {
    for t in ["on", "TRUE", "t", "yes", "y", "1"] {
        assert_eq!(parse_bool(t), Some(true), "{t}");
    }
    for f in ["off", "false", "f", "fals", "no", "n", "0", "of"] {
        assert_eq!(parse_bool(f), Some(false), "{f}");
    }
    assert_eq!(parse_bool("o"), None);
    assert_eq!(parse_bool("maybe"), None);
}

#[test]
fn ssl_off_needs_a_node_conninfo_without_required_tls() {
    let off = MINIMAL.to_string() + "[settings]\nssl = false\n";
    let e = check_error(&off);
    assert!(e.contains("conf/citus.toml:9:7: settings.ssl = off: Citus connects between the nodes with `sslmode=require`"), "{e}");
    assert!(e.contains("server does not support SSL, but SSL was required"), "{e}");
    assert!(check_error(&(off.clone() + "citus.node_conninfo = \"sslmode=require\"\n")).contains("settings.ssl = off"));
    assert!(parse(&(off.clone() + "citus.node_conninfo = \"sslmode=prefer\"\n")).is_ok());
    assert!(parse(&(off.clone() + "citus.node_conninfo = \"sslmode=disable connect_timeout=5\"\n")).is_ok());
    assert!(parse(&(off.clone() + "citus.node_conninfo = \"connect_timeout=5\"\n")).is_ok(), "no sslmode: libpq's prefer");
    assert!(parse(&(off.clone() + "citus.node_conninfo = \"sslmode = 'disable'\"\n")).is_ok());
    assert!(check_error(&(off + "citus.node_conninfo = \"sslmode = verify-full\"\n")).contains("settings.ssl = off"));
    assert!(check_error(&(MINIMAL.to_string() + "[settings]\nssl = \"fals\"\n")).contains("settings.ssl = off"));
    assert!(parse(&(MINIMAL.to_string() + "[settings]\nssl = true\n")).is_ok());
}
