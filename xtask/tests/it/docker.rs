//! The docker backend end to end on this machine's engine, with an image built here from
//! Debian's packages and the host's Citus (no registry is reachable).

use citus_testkit::{compose_project_objects, require, test_image, ComposeProjectGuard, Env, Need};

use crate::harness::{text, Spec, TestCluster};

/// A docker-backed test cluster named `name`, or `None` (skipped loudly) when this machine
/// has no Docker engine, no PostgreSQL to build the image from, or no Citus to put in it.
fn docker_cluster(test: &str, name: &str) -> Option<(TestCluster, ComposeProjectGuard)> {
    let env = require(test, &[Need::Docker, Need::Postgres, Need::Citus])?;
    Some(docker_cluster_in(&env, name, ""))
}

/// A docker-backed test cluster on the test image of `env` (with Citus in it when the host
/// has Citus), with `top` as its top-level config keys.
fn docker_cluster_in(env: &Env, name: &str, top: &str) -> (TestCluster, ComposeProjectGuard) {
    let image = test_image(env).expect("building the test image");
    let extra = format!("\n[docker]\nimage = \"{image}\"\npg_major = {}\n", env.pg_major);
    let c = TestCluster::new(Spec { name, backend: "docker", extra: &extra, top, ..Spec::default() });
    let guard = ComposeProjectGuard::new(env.compose.as_deref().expect("docker needed"), name);
    (c, guard)
}

fn container(c: &TestCluster, service: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", c.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!id.is_empty(), "no container for {service}");
    id
}

#[test]
fn docker_up_verify_down_up_keeps_data_and_clusters_coexist() {
    let Some((a, _ga)) = docker_cluster("docker_up_verify_down_up_keeps_data_and_clusters_coexist", &format!("itda{}", std::process::id())) else { return };
    let Some((b, _gb)) = docker_cluster("docker_up_verify_down_up_keeps_data_and_clusters_coexist", &format!("itdb{}", std::process::id())) else { return };
    // b's nodes get server settings of the config's own, one with a `$` that compose must
    // pass on as it is.
    let settings = "\n[settings]\nmax_connections = 150\nlog_line_prefix = \"%m [%p] $x \"\ncitus.shard_count = 4\n";
    std::fs::write(&b.config, std::fs::read_to_string(&b.config).unwrap() + settings).unwrap();
    let up = a.xtask(&["up"]);
    assert!(up.status.success() && !text(&up).contains("TLS certificate"), "{}", text(&up));
    // b comes up where `up` finds no `openssl`: it says so for each node, and Citus makes
    // each its own (RSA) certificate at CREATE EXTENSION, as without the tool.
    let no_openssl = citus_testkit::temp_dir("citus-xtask-no-openssl");
    for program in ["docker", "docker-compose"] {
        if let Ok(path) = which::which(program) {
            std::os::unix::fs::symlink(path, no_openssl.path().join(program)).unwrap();
        }
    }
    let up = b.xtask_env(&["up"], &[("PATH", no_openssl.path().to_str().unwrap())]);
    assert!(up.status.success(), "{}", text(&up));
    assert_eq!(
        text(&up).matches(": no TLS certificate of its own: no `openssl` program on PATH to make one, so CREATE EXTENSION citus will make one").count(),
        3,
        "{}",
        text(&up)
    );
    // Each node's TLS certificate: the P-256 one `up` gave it before CREATE EXTENSION citus
    // (Citus's own is RSA-2048), with its key readable by the server's user alone.
    let certificates = |c: &TestCluster, key_type: &str| -> Vec<String> {
        ["citus_master", "citus_worker1", "citus_worker2"]
            .iter()
            .map(|node| {
                let script = "stat -c '%a %U' \"$PGDATA/server.key\" && openssl x509 -noout -text -in \"$PGDATA/server.crt\" && cat \"$PGDATA/server.crt\"";
                let out = std::process::Command::new("docker").args(["exec", &container(c, node), "sh", "-c", script]).output().unwrap();
                let t = String::from_utf8_lossy(&out.stdout).to_string();
                assert!(out.status.success(), "{node}: {}", text(&out));
                assert!(t.starts_with("600 postgres\n") && t.contains(key_type) && t.contains("Subject: CN = citus-auto-ssl"), "{node}: {t}");
                t
            })
            .collect()
    };
    let a_certificates = certificates(&a, "ASN1 OID: prime256v1");
    certificates(&b, "Public Key Algorithm: rsaEncryption");
    // Each container gives up a connection to a peer that does not answer after one SYN
    // retry, and compose gives its server 30 s to stop cleanly (citus_compose::SYN_RETRIES).
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let id = container(&a, node);
        let out = std::process::Command::new("docker").args(["exec", &id, "cat", "/proc/sys/net/ipv4/tcp_syn_retries"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{node}: {}", text(&out));
        let out = std::process::Command::new("docker").args(["inspect", "-f", "{{.Config.StopTimeout}}", &id]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30", "{node}: {}", text(&out));
    }
    // The coordinator's connections to the workers use TLS, so each worker's server loaded
    // its key and certificate.
    let tls = "SELECT bool_and(success AND result = 't') FROM run_command_on_workers($$SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()$$)";
    for c in [&a, &b] {
        let all: Option<bool> = c.connect(0, &c.database).query_one(tls, &[]).unwrap().get(0);
        assert_eq!(all, Some(true), "{}", c.name);
    }
    a.ok(&["verify"]);
    let report = b.ok(&["verify"]);
    assert_eq!(report.matches("all settings as the config sets them: citus.shard_count, log_line_prefix, max_connections").count(), 3, "{report}");
    let row = b.connect(2, &b.database).query_one("SELECT current_setting('log_line_prefix'), current_setting('max_connections')", &[]).unwrap();
    assert_eq!((row.get::<_, String>(0).as_str(), row.get::<_, String>(1).as_str()), ("%m [%p] $x ", "150"));
    // A changed setting: `up` recreates the containers with it (their volumes stay).
    std::fs::write(&b.config, std::fs::read_to_string(&b.config).unwrap().replace("max_connections = 150", "max_connections = 160")).unwrap();
    b.ok(&["up"]);
    b.ok(&["verify"]);
    let n: String = b.connect(1, &b.database).query_one("SHOW max_connections", &[]).unwrap().get(0);
    assert_eq!(n, "160");
    // A value the server refuses: `postgres -C` parses the new command beside each running
    // server first, so `up` fails naming the nodes and the setting, and no container is
    // recreated: each still runs, from the same start.
    let nodes = ["citus_master", "citus_worker1", "citus_worker2"];
    let started = |c: &TestCluster| -> Vec<String> {
        nodes
            .iter()
            .map(|n| {
                let out = std::process::Command::new("docker")
                    .args(["inspect", "--format", "{{.Id}} {{.State.Status}} {{.State.StartedAt}}", &container(c, n)])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
            .collect()
    };
    let before = started(&b);
    assert!(before.iter().all(|s| s.contains(" running ")), "{before:?}");
    let good = std::fs::read_to_string(&b.config).unwrap();
    std::fs::write(&b.config, good.replace("max_connections = 160", "max_connections = \"many\"")).unwrap();
    let out = b.xtask(&["up"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    // Every node refuses the same value: one entry names them all.
    assert!(t.contains(&format!("nodes {}: their servers would not start with the config's settings, so no container was recreated", nodes.join(", "))), "{t}");
    assert_eq!(t.matches("invalid value for parameter").count(), 1, "told once: {t}");
    assert!(
        t.contains("invalid value for parameter \"max_connections\"") && t.contains("fix: the server refuses `max_connections = 'many'` of [settings]"),
        "{t}"
    );
    assert!(!t.contains("docker compose: starting project"), "compose ran: {t}");
    // The generated compose file still holds the command the containers run.
    let compose = std::fs::read_to_string(b.config.parent().unwrap().join(".citus-data").join(&b.name).join("docker-compose.yml")).unwrap();
    assert!(compose.contains("max_connections=160") && !compose.contains("many"), "{compose}");
    assert_eq!(started(&b), before);
    // `status` names what each running container lacks of the config, which `up` applies.
    let st = b.ok(&["status"]);
    assert_eq!(st.matches("restart pending: the config changed max_connections; `cargo xtask up` recreates the container from the config").count(), 3, "{st}");
    let json: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["nodes"][2]["restart_pending"], serde_json::json!(["max_connections"]), "{json}");
    std::fs::write(&b.config, good).unwrap();
    let st = b.ok(&["status"]);
    assert!(!st.contains("restart pending"), "{st}");
    // The coordinator reaches the workers by their cluster addresses (service name, 5432).
    let names: Vec<String> = a
        .connect(0, &a.database)
        .query("SELECT nodename FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodename", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["citus_worker1", "citus_worker2"]);
    a.connect(0, &a.database)
        .batch_execute("CREATE TABLE kept (id int PRIMARY KEY); SELECT create_distributed_table('kept', 'id'); INSERT INTO kept SELECT generate_series(1, 40)")
        .unwrap();
    let down = a.ok(&["down"]);
    assert!(down.contains("kept"), "{down}");
    let up = a.xtask(&["up"]);
    assert!(up.status.success() && !text(&up).contains("TLS certificate"), "{}", text(&up));
    let n: i64 = a.connect(0, &a.database).query_one("SELECT count(*) FROM kept", &[]).unwrap().get(0);
    assert_eq!(n, 40);
    // New containers on the kept volumes: each keeps its certificate.
    assert_eq!(certificates(&a, "ASN1 OID: prime256v1"), a_certificates);
    // `psql`: the host's psql on the published port; without one on PATH, the node's own psql
    // in its container.
    assert_eq!(a.ok(&["psql", "--", "-XAtc", "SELECT count(*) FROM kept"]).trim(), "40");
    let bin = citus_testkit::temp_dir("citus-xtask-no-psql");
    std::os::unix::fs::symlink(which::which("docker").expect("docker on PATH"), bin.path().join("docker")).unwrap();
    let sql = "SELECT current_setting('port'), current_user, count(*) FROM pg_dist_node";
    let out = a.xtask_env(&["psql", "--node", "citus_worker1", "--", "-XAtc", sql], &[("PATH", bin.path().to_str().unwrap())]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("5432|{}|3", a.user));
    assert!(String::from_utf8_lossy(&out.stderr).contains("psql: citus_worker1 in its container"), "{}", text(&out));
    psql_in_a_container_without_a_terminal_cancels_its_query_at_ctrl_c(&a, bin.path());
    // `logs` reads the container's log.
    let logs = a.ok(&["logs", "--node", "citus_worker1", "--lines", "500"]);
    assert!(logs.starts_with("==> citus_worker1: docker logs ") && logs.contains("database system is ready to accept connections"), "{logs}");
    // A copy of a's config in another folder has a's name, so a's compose project: its `up`
    // and `down --purge` refuse, naming both folders, and leave a's containers and volumes.
    let twin_dir = citus_testkit::temp_dir("citus-xtask-twin");
    let twin = twin_dir.path().join("citus.toml");
    std::fs::write(&twin, std::fs::read_to_string(&a.config).unwrap()).unwrap();
    let a_containers = project_containers(&a);
    let twin_refuses = |args: &[&str], whose: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).arg("--config").arg(&twin).env_remove("CI").output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(&format!("compose project `{}` belongs to another cluster: its {whose}", a.name)), "{args:?}: {t}");
        assert!(t.contains(&format!("{}", a.config.parent().unwrap().join(".citus-data").join(&a.name).display())), "{args:?}: {t}");
        assert!(t.contains("fix: give this cluster its own `name`"), "{args:?}: {t}");
    };
    twin_refuses(&["up"], "container(s)");
    twin_refuses(&["down", "--purge"], "container(s)");
    assert_eq!(project_containers(&a), a_containers);
    // With a's containers gone, its volumes still say whose they are.
    a.ok(&["down"]);
    twin_refuses(&["down", "--purge"], "volume(s)");
    twin_refuses(&["up"], "volume(s)");
    a.ok(&["up"]);
    let n: i64 = a.connect(0, &a.database).query_one("SELECT count(*) FROM kept", &[]).unwrap().get(0);
    assert_eq!(n, 40, "a's data after the twin's refused purge");
    a.ok(&["verify"]);
    b.ok(&["verify"]);
    // The generated compose file publishes on loopback only and mounts no docker socket.
    let compose = std::fs::read_to_string(a.config.parent().unwrap().join(".citus-data").join(&a.name).join("docker-compose.yml")).unwrap();
    assert!(compose.contains(&format!("\"127.0.0.1:{}:5432\"", a.port(0))), "{compose}");
    assert!(!compose.contains("docker.sock"), "{compose}");
    let password_lines: Vec<&str> = compose.lines().filter(|l| l.contains("POSTGRES_PASSWORD")).collect();
    assert!(
        !password_lines.is_empty() && password_lines.iter().all(|l| l.contains("${CITUS_IT_PASSWORD")),
        "the password must reach the containers by interpolation only: {password_lines:?}"
    );
    // No node trusts a connection, not even one from inside its own container (the image's
    // initdb would, without the compose file's POSTGRES_INITDB_ARGS).
    for node in ["citus_master", "citus_worker1", "citus_worker2"] {
        let id = container(&a, node);
        let out = std::process::Command::new("docker").args(["exec", &id, "sh", "-c", "cat \"$PGDATA/pg_hba.conf\""]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let hba = String::from_utf8_lossy(&out.stdout);
        let rules: Vec<&str> = hba.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        assert!(!rules.is_empty() && rules.iter().all(|l| l.ends_with("scram-sha-256")), "{node}: {rules:#?}");
        let out = std::process::Command::new("docker")
            .args(["exec", "-e", "PGPASSWORD=wrong", &id, "psql", "-h", "127.0.0.1", "-U", &a.user, "-d", "postgres", "-c", "SELECT 1"])
            .output()
            .unwrap();
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("password authentication failed"), "{node}: {}", text(&out));
    }
}

/// A container whose server is slow to stop (its checkpointer held with SIGSTOP, as after a
/// test run that left much to write) is named while `down` waits, and its server still shuts
/// down cleanly: compose's grace is 30 s, not its 10 s.
#[test]
fn docker_down_names_a_container_that_is_slow_to_stop_and_waits_for_it() {
    use std::time::Duration;
    let test = "docker_down_names_a_container_that_is_slow_to_stop_and_waits_for_it";
    let Some((c, _g)) = docker_cluster(test, &format!("itdslow{}", std::process::id())) else { return };
    c.ok(&["up"]);
    let id = container(&c, "citus_worker1");
    let top = std::process::Command::new("docker").args(["top", &id, "-o", "pid,args"]).output().unwrap();
    let checkpointer: i32 = String::from_utf8_lossy(&top.stdout)
        .lines()
        .find(|l| l.contains("checkpointer"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no checkpointer in worker 1's container: {}", text(&top)));
    let resume = crate::harness::Paused::new(checkpointer);
    let (mut down, rx) = c.spawn_lines(&["down"], false);
    let want = format!("citus_worker1 (container {}): still stopping after 2 s (a clean shutdown: ", &id[..12]);
    let mut seen = crate::harness::lines_until(&rx, &want, 20);
    assert!(seen.iter().filter(|l| l.contains("still stopping")).count() == 1, "{seen:#?}");
    // Past compose's own default of 10 s, and it still waits.
    std::thread::sleep(Duration::from_secs(11));
    assert!(down.0.try_wait().unwrap().is_none(), "down ended while worker 1 still stops: {seen:#?}");
    drop(resume);
    let status = down.0.wait().unwrap();
    seen.extend(rx.iter());
    assert!(status.success(), "down failed once the checkpointer went on: {seen:#?}");
    // A clean shutdown: the next start finds the data shut down, with nothing to recover.
    c.ok(&["up", "--no-setup"]);
    let logs = std::process::Command::new("docker").args(["logs", &container(&c, "citus_worker1")]).output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
    assert!(log.contains("database system was shut down at") && !log.contains("not properly shut down"), "worker 1 did not shut down cleanly:\n{log}");
}

#[test]
fn docker_stopped_worker_fails_verify_and_recovers() {
    let Some((c, _g)) = docker_cluster("docker_stopped_worker_fails_verify_and_recovers", &format!("itds{}", std::process::id())) else { return };
    c.ok(&["up"]);
    let id = container(&c, "citus_worker2");
    assert!(std::process::Command::new("docker").args(["stop", &id]).status().unwrap().success());
    let out = c.xtask(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.lines().any(|l| l.starts_with("FAIL") && l.contains("citus_worker2") && l.contains(&format!("localhost:{}", c.port(2)))), "{t}");
    // `status` names the stopped container and the volume that keeps its data.
    let out = c.xtask(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    let w2 = t.lines().find(|l| l.starts_with("citus_worker2")).unwrap_or_else(|| panic!("{t}"));
    assert!(w2.contains("stopped") && w2.contains(&id[..12]) && w2.contains(&format!("data kept in volume {}_citus_worker2_data", c.name)), "{t}");
    assert_eq!(t.matches("login ok: citus ").count(), 2, "{t}");
    c.ok(&["up"]);
    c.ok(&["verify"]);
    assert!(c.ok(&["status"]).contains("all 3 node(s)"));
}

#[test]
fn docker_containers_started_by_hand_are_refused_naming_their_file_until_stopped_with_it() {
    let test = "docker_containers_started_by_hand_are_refused_naming_their_file_until_stopped_with_it";
    let Some(env) = require(test, &[Need::Docker, Need::Postgres, Need::Citus]) else { return };
    let (c, _g) = docker_cluster_in(&env, &format!("itdh{}", std::process::id()), "");
    // The file `compose` prints (as compose/docker-compose.yml is), started by hand from a
    // folder of its own, with the password compose needs.
    let dir = c.config.parent().unwrap().join("by-hand");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("docker-compose.yml");
    std::fs::write(&file, c.ok(&["compose"])).unwrap();
    let compose = env.compose.clone().expect("docker needed");
    let by_hand = |verb: &[&str]| {
        let mut cmd = std::process::Command::new(&compose[0]);
        cmd.args(&compose[1..]).args(["-p", &c.name, "-f"]).arg(&file).args(verb).env("CITUS_IT_PASSWORD", crate::harness::PASSWORD);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "compose {verb:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    by_hand(&["up", "-d"]);
    let ids = project_containers(&c);
    assert_eq!(ids.len(), 3);
    // Healthy before anything stops them: a first start stopped halfway leaves a volume
    // whose initialisation never finished (the entrypoint writes pg_hba.conf's host line last).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for id in &ids {
        loop {
            let out = std::process::Command::new("docker").args(["inspect", "--format", "{{.State.Health.Status}}", id]).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "healthy" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "container {id} not healthy after 120 s");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    for task in [&["up"][..], &["down"]] {
        let out = c.xtask(task);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(
            t.contains(&format!(
                "the containers citus_master, citus_worker1, citus_worker2 of compose project `{}` were started from {}",
                c.name,
                file.display()
            )),
            "{t}"
        );
        // The fix names the compose this machine has, as a user types it.
        let typed = if compose.len() == 1 { "docker-compose" } else { "docker compose" };
        assert!(t.contains(&format!("CITUS_IT_PASSWORD=... {typed} -p {} -f {} down`", c.name, file.display())), "{t}");
    }
    assert_eq!(project_containers(&c), ids, "neither task touched them");
    by_hand(&["down"]);
    // The volumes stayed; `up` starts the cluster on them.
    c.ok(&["up"]);
    c.ok(&["verify"]);
}

fn project_containers(c: &TestCluster) -> Vec<String> {
    let out = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=com.docker.compose.project={}", c.name)]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The test image without Citus in it, whether or not the host has Citus: what a machine
/// without Citus gets, and what a user gets who points `[docker] image` at plain PostgreSQL.
fn without_citus(env: &Env) -> Env {
    Env { has_citus: false, ..env.clone() }
}

/// The part of issue 3 that needs no Citus: plain PostgreSQL nodes from the generated compose
/// file (`shared_preload_libraries = []`) on an image without Citus, readiness, the target
/// database on every node (created by the image's first start), and the coordinator reaching each worker by its cluster address with the shared
/// password. The Citus steps are the other tests' (skipped loudly when the host has no Citus).
#[test]
fn docker_plain_postgres_nodes_come_up_and_reach_each_other_without_citus() {
    let test = "docker_plain_postgres_nodes_come_up_and_reach_each_other_without_citus";
    let Some(env) = require(test, &[Need::Docker, Need::Postgres]) else { return };
    let (c, _g) = docker_cluster_in(&without_citus(&env), &format!("itdp{}", std::process::id()), "shared_preload_libraries = []\n");

    // `up` with setup is refused before anything starts: setup needs citus preloaded.
    let out = c.xtask(&["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("without citus") && t.contains("`cargo xtask up --no-setup`"), "{t}");
    assert!(project_containers(&c).is_empty(), "a refused `up` started containers");

    let out = c.ok(&["up", "--no-setup"]);
    assert!(out.contains("3 node(s) started and accepting logins"), "{out}");
    // The local backend on the same ports is refused before it starts anything, and told
    // that this cluster runs on Docker.
    let out = c.xtask(&["up", "--no-setup", "--backend", "local"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("is already in use by docker-proxy") && t.contains("was started on the Docker backend: stop it first (`cargo xtask down --backend docker`"),
        "{t}"
    );
    assert!(!c.pgdata("citus_master").exists(), "the refused local `up` made a data directory");
    for i in 0..3 {
        let mut client = c.connect(i, "postgres");
        let preload: String = client.query_one("SELECT current_setting('shared_preload_libraries')", &[]).unwrap().get(0);
        assert_eq!(preload, "", "node {i}");
        // The image created the target database at its first start (POSTGRES_DB).
        let n: i64 = client.query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&c.database]).unwrap().get(0);
        assert_eq!(n, 1, "node {i} has no database {}", c.database);
    }
    // From inside the coordinator's container: each worker by service name on 5432, logging in
    // with the password every node shares, into the target database.
    let coordinator = container(&c, "citus_master");
    for w in ["citus_worker1", "citus_worker2"] {
        let conninfo = format!("host={w} port=5432 user={} dbname={} connect_timeout=5", c.user, c.database);
        let out = std::process::Command::new("docker")
            .args(["exec", "-e", &format!("PGPASSWORD={}", crate::harness::PASSWORD), &coordinator, "psql", &conninfo, "-XAtc", "SELECT inet_server_port()"])
            .output()
            .unwrap();
        assert!(out.status.success(), "coordinator cannot reach {w}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5432");
    }
    // `setup` refuses plain PostgreSQL nodes and says how to fix the config: bad input, exit 2.
    let out = c.xtask(&["setup"]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("put \"citus\" first in shared_preload_libraries"), "{t}");
    // `down` keeps the data: the database is still there after the next `up --no-setup`.
    c.ok(&["down"]);
    c.ok(&["up", "--no-setup"]);
    let n: i64 = c.connect(1, "postgres").query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&c.database]).unwrap().get(0);
    assert_eq!(n, 1);
    // After `up --workers 1` (the second worker's container still runs), `down --purge`, with
    // no `--workers`, removes every container of the project but only the volumes of the nodes
    // `up --workers 1` started, and names the one it kept.
    c.ok(&["up", "--no-setup", "--workers", "1"]);
    assert_eq!(project_containers(&c).len(), 3, "the second worker's container is left running by `up --workers 1`");
    let out = c.xtask(&["down", "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("1 worker(s) (the count `up --workers 1` started") && t.contains("kept volume ") && t.contains("citus_worker2_data"), "{t}");
    // Said before compose's wait for the containers to stop, which it does not show.
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("docker compose: stopping project {} (a clean shutdown per container", c.name)), "{t}");
    assert!(project_containers(&c).is_empty(), "containers left after `down --purge`");
    let objects = compose_project_objects(&c.name).unwrap();
    assert!(objects.len() == 1 && objects[0].starts_with("volumes ") && objects[0].ends_with("citus_worker2_data"), "{objects:?}");
    c.ok(&["down", "--purge", "--workers", "2"]);
    assert_eq!(compose_project_objects(&c.name).unwrap(), Vec::<String>::new());
}

/// A container that exits while starting fails `up` at once (not at the wait deadline), with
/// the node, its address, the container's log and the fix: the default config (citus
/// preloaded) on an image without Citus, where every node's server exits.
#[test]
fn docker_container_that_exits_fails_up_at_once_with_its_log_and_fix() {
    let test = "docker_container_that_exits_fails_up_at_once_with_its_log_and_fix";
    let Some(env) = require(test, &[Need::Docker, Need::Postgres]) else { return };
    let (c, _g) = docker_cluster_in(&without_citus(&env), &format!("itdx{}", std::process::id()), "");
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap() + "\n[wait]\ntimeout_secs = 600\n").unwrap();
    let started = std::time::Instant::now();
    let out = c.xtask(&["up"]);
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    for (i, node) in ["citus_master", "citus_worker1", "citus_worker2"].iter().enumerate() {
        let line = t.lines().find(|l| l.contains(&format!("node {node} at localhost:{}: its container", c.port(i))));
        assert!(line.is_some_and(|l| l.contains("stopped before accepting a login")), "{node}: {t}");
    }
    assert!(t.contains("| ") && t.contains("could not access file \"citus\""), "the log tail is missing: {t}");
    assert!(t.contains("fix: image citus-xtask-test:") && t.contains("has no Citus extension. Set [docker] image in"), "{t}");
    // Far below the 600 s deadline: the exit was noticed, not waited out.
    assert!(waited < std::time::Duration::from_secs(120), "up took {waited:?}");
    // Nothing was removed: the containers are still there for `docker logs`, and `down` keeps the volumes.
    assert_eq!(project_containers(&c).len(), 3);
    // `setup` on those exited containers names each at its first refused login, not only at the deadline.
    let config = std::fs::read_to_string(&c.config).unwrap().replace("timeout_secs = 600", "timeout_secs = 2");
    std::fs::write(&c.config, config).unwrap();
    let out = c.xtask(&["setup"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    for (i, node) in ["citus_master", "citus_worker1", "citus_worker2"].iter().enumerate() {
        let line = t.lines().find(|l| l.contains(&format!("{node} at localhost:{}: its container", c.port(i))));
        assert!(line.is_some_and(|l| l.contains("is not running (Exited") && l.contains("`cargo xtask up` starts it")), "{node}: {t}");
    }
}

/// `setup` of a Docker cluster that no `up` started says so for each node at its first refused
/// login, with the fix, while it waits; the wait still ends in the error that names the nodes.
#[test]
fn docker_setup_without_containers_names_each_node_and_up() {
    let test = "docker_setup_without_containers_names_each_node_and_up";
    let Some(env) = require(test, &[Need::Docker]) else { return };
    let name = format!("itdn{}", std::process::id());
    let c = TestCluster::new(Spec { name: &name, backend: "docker", extra: "\n[wait]\ntimeout_secs = 2\n", ..Spec::default() });
    let _g = ComposeProjectGuard::new(env.compose.as_deref().expect("docker needed"), &name);
    let out = c.xtask(&["setup"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    for (i, node) in ["citus_master", "citus_worker1", "citus_worker2"].iter().enumerate() {
        let hint = format!("{node} at localhost:{}: compose project {name} has no container for it: `cargo xtask up` starts it (waiting up to 2 s", c.port(i));
        assert!(t.contains(&hint), "{node}: {t}");
        assert!(t.contains(&format!("node {node} at localhost:{} did not accept a login within", c.port(i))), "{node}: {t}");
    }
    assert_eq!(compose_project_objects(&name).unwrap(), Vec::<String>::new(), "setup created docker objects");
}

/// A client port another program holds on `[docker] bind` fails `up` before compose creates
/// anything, naming the node, the address, the program (here this test itself) and the fix.
/// Before, compose started the other nodes and failed on that one with docker's "address
/// already in use".
#[test]
fn docker_port_held_by_another_program_fails_up_before_anything_is_made() {
    let test = "docker_port_held_by_another_program_fails_up_before_anything_is_made";
    let Some(env) = require(test, &[Need::Docker]) else { return };
    let name = format!("itdp{}", std::process::id());
    let (c, _g) = docker_cluster_in(&env, &name, "");
    let squatter = std::net::TcpListener::bind(("127.0.0.1", c.port(1))).unwrap();
    let out = c.xtask(&["up"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!("node citus_worker1: client port {0} (127.0.0.1:{0}, where Docker would publish it) is already in use by ", c.port(1)))
            && t.contains("; nothing was started"),
        "{t}"
    );
    assert!(t.contains("fix: stop that program, or give citus_worker1 another `port` in "), "{t}");
    assert_eq!(compose_project_objects(&name).unwrap(), Vec::<String>::new(), "up created docker objects");
    drop(squatter);
}

/// An image that is neither on the machine nor pullable fails `up` before compose creates
/// anything: no volume, network or container is left for `down --purge` to clean up, and the
/// message names the image and the fix. Before, `docker compose up` created the network and
/// the three volumes, then failed at its pull.
#[test]
fn docker_image_that_cannot_be_pulled_fails_up_and_creates_nothing() {
    let test = "docker_image_that_cannot_be_pulled_fails_up_and_creates_nothing";
    let Some(env) = require(test, &[Need::Docker]) else { return };
    let name = format!("itdm{}", std::process::id());
    let image = format!("citus-xtask-absent-{name}:none");
    let extra = format!("\n[docker]\nimage = \"{image}\"\n");
    let c = TestCluster::new(Spec { name: &name, backend: "docker", extra: &extra, ..Spec::default() });
    let _g = ComposeProjectGuard::new(env.compose.as_deref().expect("docker needed"), &name);
    let out = c.xtask(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&format!("image {image} is not on this machine: docker pull {image}")), "no progress line: {t}");
    assert!(t.contains(&format!("docker pull {image} failed")), "{t}");
    assert!(t.contains(&format!("fix: image {image} is not available here and could not be pulled")), "{t}");
    // The local backend is offered exactly when this machine's PostgreSQL has Citus.
    assert_eq!(t.contains("which has Citus") && t.contains("`cargo xtask up --backend local`"), env.has_citus, "{t}");
    assert_eq!(compose_project_objects(&name).unwrap(), Vec::<String>::new(), "a failed pull left docker objects behind");
    // An `up` that made nothing records no backend: the next task takes the config's.
    let status = c.xtask(&["status"]);
    let first = String::from_utf8_lossy(&status.stderr).lines().next().unwrap_or_default().to_string();
    assert!(first.contains("backend docker (the config's `backend`)"), "a failed pull recorded its backend: {first}");
}

/// A Docker engine that does not answer (here: DOCKER_HOST pointing at a socket that does not
/// exist) is named as such, with its fix, by `up`, `down` and `logs`: not as a missing image
/// (before, `up` said the image "could not be pulled") nor as docker-compose's traceback.
#[test]
fn docker_engine_that_does_not_answer_is_named_with_the_fix() {
    let test = "docker_engine_that_does_not_answer_is_named_with_the_fix";
    let Some(env) = require(test, &[Need::Docker]) else { return };
    let name = format!("itde{}", std::process::id());
    let c = TestCluster::new(Spec { name: &name, backend: "docker", ..Spec::default() });
    let _g = ComposeProjectGuard::new(env.compose.as_deref().expect("docker needed"), &name);
    let socket = c.dir.path().join("no-docker.sock");
    let host = format!("unix://{}", socket.display());
    for task in [&["up"][..], &["down"], &["down", "--purge"], &["logs"]] {
        let out = c.xtask_env(task, &[("DOCKER_HOST", &host)]);
        assert_eq!(out.status.code(), Some(1), "{task:?}: {}", text(&out));
        let t = text(&out);
        assert!(t.contains(&format!("error: the Docker engine at DOCKER_HOST={host} does not answer: ")), "{task:?}: {t}");
        assert!(t.contains("fix: start it (`sudo systemctl start docker`"), "{task:?}: {t}");
        assert!(!t.contains("could not be pulled") && !t.contains("Traceback"), "{task:?}: {t}");
    }
    assert_eq!(compose_project_objects(&name).unwrap(), Vec::<String>::new(), "objects were created through another engine");
}

/// `logs --follow` on Docker goes on across what ends `docker logs --follow`: a `docker
/// restart`, a `docker stop` and the `up` that starts the container again, and an `up` that
/// makes the container anew (a changed setting), each time from where the log ended (no line
/// twice); it ends, with exit 0, once `down` has removed the container.
#[test]
fn docker_logs_follow_goes_on_across_restarts_and_ends_when_down_removes_the_container() {
    let test = "docker_logs_follow_goes_on_across_restarts_and_ends_when_down_removes_the_container";
    let Some((c, _g)) = docker_cluster(test, &format!("itdf{}", std::process::id())) else { return };
    c.ok(&["up", "--workers", "0"]);
    let (mut follow, rx) = c.spawn_lines(&["logs", "--follow", "--lines", "1"], true);
    let mut seen: Vec<String> = Vec::new();
    let mut wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
                let hit = l.starts_with("citus_master | ") && l.ends_with(want);
                seen.push(l);
                if hit {
                    return seen.clone();
                }
            }
        }
        panic!("no line ending in {want:?} within 30 s: {seen:#?}");
    };
    let raise = |marker: &str| {
        // `setup` waits until the node accepts logins again.
        c.ok(&["setup"]);
        c.connect(0, &c.database).batch_execute(&format!("DO $$ BEGIN RAISE LOG '{marker}'; END $$")).unwrap();
        format!("LOG:  {marker}")
    };
    let docker = |verb: &str, id: &str| assert!(std::process::Command::new("docker").args([verb, id]).status().unwrap().success(), "docker {verb}");
    // The tail first: only then is `docker logs` attached, and a line written now is a new one.
    wait_for("");
    wait_for(&raise("follow-marker-one"));
    let id = container(&c, "citus_master");
    docker("restart", &id);
    wait_for(&raise("follow-marker-two"));
    docker("stop", &id);
    c.ok(&["up"]);
    wait_for(&raise("follow-marker-three"));
    std::fs::write(&c.config, std::fs::read_to_string(&c.config).unwrap() + "\n[settings]\nwork_mem = \"5MB\"\n").unwrap();
    c.ok(&["up"]);
    assert_ne!(container(&c, "citus_master"), id, "the changed setting did not make the container anew");
    let seen = wait_for(&raise("follow-marker-four"));
    for marker in ["one", "two", "three"] {
        let n = seen.iter().filter(|l| l.ends_with(&format!("LOG:  follow-marker-{marker}"))).count();
        assert_eq!(n, 1, "follow-marker-{marker} printed {n} times: {seen:#?}");
    }
    assert!(follow.0.try_wait().unwrap().is_none(), "`logs --follow` ended while the container ran");
    c.ok(&["down"]);
    let status = follow.exits_within(15, "`logs --follow` still runs after `down` removed the container");
    assert!(status.success(), "`logs --follow` ended with {status}");
}

/// `logs --follow --lines 1` of a 1 + 1 cluster, read until both nodes' tails are printed
/// (only then is each `docker logs` attached): the process, its stdout, and its two `docker
/// logs --follow` children (pid, command line).
fn follow_both_nodes(c: &TestCluster) -> (crate::harness::KillOnDrop, std::io::BufReader<std::process::ChildStdout>, Vec<(i32, String)>) {
    let mut follow = crate::harness::KillOnDrop(
        c.command(&["logs", "--follow", "--lines", "1"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap(),
    );
    let pid = follow.0.id();
    let mut out = std::io::BufReader::new(follow.0.stdout.take().unwrap());
    let mut seen = Vec::new();
    while !(seen.iter().any(|l: &String| l.starts_with("citus_master ")) && seen.iter().any(|l| l.starts_with("citus_worker1 "))) {
        let mut l = String::new();
        assert!(std::io::BufRead::read_line(&mut out, &mut l).unwrap() > 0, "`logs --follow` ended early: {seen:#?}");
        seen.push(l);
    }
    let followers: Vec<(i32, String)> = crate::harness::children_of(pid).into_iter().filter(|(_, cmd)| cmd.contains("docker logs")).collect();
    assert_eq!(followers.len(), 2, "one `docker logs --follow` per node: {followers:?}");
    (follow, out, followers)
}

/// `logs --follow | head`: once a line finds stdout closed, the follow ends with success and
/// stops the `docker logs --follow` of every node, also of a quiet one whose follower was
/// blocked reading, instead of leaving them to the next line their container writes.
#[test]
fn docker_logs_follow_ends_with_a_closed_stdout_and_stops_every_docker_logs() {
    let test = "docker_logs_follow_ends_with_a_closed_stdout_and_stops_every_docker_logs";
    let Some((c, _g)) = docker_cluster(test, &format!("itdp{}", std::process::id())) else { return };
    c.ok(&["up", "--workers", "1"]);
    let (mut follow, out, followers) = follow_both_nodes(&c);
    drop(out);
    // A new line on the coordinator finds stdout closed; the worker stays quiet.
    c.connect(0, &c.database).batch_execute("DO $$ BEGIN RAISE LOG 'closed-stdout-marker'; END $$").unwrap();
    let status = follow.exits_within(15, "`logs --follow` still runs after its stdout closed and a line came");
    assert!(status.success(), "`logs --follow` ended with {status}");
    for (p, cmd) in &followers {
        assert!(crate::harness::gone_soon(*p), "`{cmd}` (pid {p}) still runs after `logs --follow` ended");
    }
}

/// `logs --follow` on Docker killed by its pid alone (`kill P`, which reaches no other
/// process, or SIGKILL, which no handler sees) takes its `docker logs --follow` children with
/// it: before, they went on following their containers until `down` removed them.
#[test]
fn docker_logs_follow_killed_by_its_pid_alone_takes_its_docker_logs_with_it() {
    let test = "docker_logs_follow_killed_by_its_pid_alone_takes_its_docker_logs_with_it";
    let Some((c, _g)) = docker_cluster(test, &format!("itdk{}", std::process::id())) else { return };
    c.ok(&["up", "--workers", "1"]);
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let (mut follow, _out, followers) = follow_both_nodes(&c);
        // SAFETY: kill has no preconditions; the pid is the child's, not yet waited for.
        unsafe { libc::kill(follow.0.id() as i32, signal) };
        let status = follow.exits_within(15, "`logs --follow` still runs after its signal");
        assert!(!status.success(), "signal {signal}: {status}");
        for (p, cmd) in &followers {
            assert!(crate::harness::gone_soon(*p), "signal {signal}: `{cmd}` (pid {p}) still runs after `logs --follow` was killed");
        }
    }
}

/// An image whose data would land outside the nodes' named volumes (here the test image with
/// the official images' `VOLUME /var/lib/postgresql/data`, under `pg_major = 18`, whose volume
/// goes to /var/lib/postgresql) is refused before anything is made: its data would be in an
/// anonymous volume, lost when a container is made anew.
#[test]
fn docker_image_whose_data_would_miss_the_volume_is_refused_before_anything_starts() {
    let test = "docker_image_whose_data_would_miss_the_volume_is_refused_before_anything_starts";
    let Some(env) = require(test, &[Need::Docker, Need::Postgres]) else { return };
    let base = test_image(&env).expect("building the test image");
    let name = format!("itdv{}", std::process::id());
    let image = format!("citus-xtask-volume-{name}:test");
    let build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &image, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut b| {
            use std::io::Write;
            b.stdin.take().expect("piped").write_all(format!("FROM {base}\nVOLUME /var/lib/postgresql/data\n").as_bytes())?;
            b.wait()
        })
        .unwrap();
    assert!(build.success(), "docker build of {image}");
    struct RemoveImage(String);
    impl Drop for RemoveImage {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker").args(["image", "rm", "-f", &self.0]).output();
        }
    }
    let _rm = RemoveImage(image.clone());
    let extra = format!("\n[docker]\nimage = \"{image}\"\npg_major = 18\n");
    let c = TestCluster::new(Spec { name: &name, backend: "docker", extra: &extra, ..Spec::default() });
    let _g = ComposeProjectGuard::new(env.compose.as_deref().expect("docker needed"), &name);
    let out = c.xtask(&["up"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("image {image} would keep the nodes' data outside their volumes (it declares VOLUME /var/lib/postgresql/data")), "{t}");
    assert!(t.contains("fix: set [docker] pg_major in ") && t.contains("nothing was started"), "{t}");
    assert_eq!(compose_project_objects(&name).unwrap(), Vec::<String>::new(), "the refused up made docker objects");
}

/// A container of no project attached to the cluster's network (a CI job's, joined with
/// `docker network connect`): `down` and `down --purge` still succeed, remove the cluster's
/// containers (and with `--purge` its volumes, which compose v1 stops short of) and name the
/// network they keep, the container and the fix; the next `up` uses the kept network.
#[test]
fn docker_down_with_another_container_on_the_network_keeps_only_the_network_and_names_it() {
    let test = "docker_down_with_another_container_on_the_network_keeps_only_the_network_and_names_it";
    let Some((c, _g)) = docker_cluster(test, &format!("itdn{}", std::process::id())) else { return };
    let config = std::fs::read_to_string(&c.config).unwrap();
    let image = config.lines().find_map(|l| l.strip_prefix("image = \"")?.strip_suffix('"').map(String::from)).expect("the test config's image");
    c.ok(&["up", "--workers", "1"]);
    c.connect(0, &c.database).batch_execute("CREATE TABLE kept_across_down (x int); INSERT INTO kept_across_down VALUES (7)").unwrap();
    let network = format!("{}_citus", c.name);
    let outsider = format!("{}-outsider", c.name);
    /// Removes the container when dropped (before the project's guard, declared earlier).
    struct Removed(String);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &self.0]).output();
        }
    }
    let run = std::process::Command::new("docker").args(["run", "-d", "--name", &outsider, "--network", &network, &image, "sleep", "600"]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let _outsider = Removed(outsider.clone());
    let kept = format!(
        "kept network {network}: container(s) not of this cluster are attached to it ({outsider}); `docker network disconnect {network} {outsider}`, then `docker network rm {network}`, removes it"
    );
    let of_project = |what: &[&str]| -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", c.name);
        let out = std::process::Command::new("docker").args(what).args(["--filter", &label]).output().unwrap();
        assert!(out.status.success(), "docker {what:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
    };
    let (containers, volumes, networks) = (["ps", "-aq"], ["volume", "ls", "-q"], ["network", "ls", "-q"]);
    let down = c.xtask(&["down"]);
    assert!(down.status.success() && text(&down).contains(&kept), "{}", text(&down));
    assert_eq!(of_project(&containers), Vec::<String>::new(), "containers of the cluster left after `down`");
    assert_eq!(of_project(&volumes).len(), 2, "`down` keeps both nodes' data");
    assert_eq!(of_project(&networks).len(), 1, "the network is kept");
    // The next `up` uses the kept network, with the data.
    c.ok(&["up", "--workers", "1"]);
    let x: i32 = c.connect(0, &c.database).query_one("SELECT x FROM kept_across_down", &[]).unwrap().get(0);
    assert_eq!(x, 7);
    let purge = c.xtask(&["down", "--purge"]);
    assert!(purge.status.success() && text(&purge).contains(&kept) && text(&purge).contains("data deleted (--purge)"), "{}", text(&purge));
    assert_eq!(of_project(&containers), Vec::<String>::new(), "containers of the cluster left after `down --purge`");
    assert_eq!(of_project(&volumes), Vec::<String>::new(), "volumes left after `down --purge`");
    let attached = std::process::Command::new("docker").args(["inspect", "--format", "{{.State.Running}}", &outsider]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&attached.stdout).trim(), "true", "the other container was left running");
}

/// Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it) while the psql in a
/// container runs a query with no terminal on stdin: the docker CLI exits at once and passes
/// nothing on, so `psql` cancels the query itself. It exits 130, says so, and the query is
/// gone from the server. `path` has `docker` and no `psql`.
fn psql_in_a_container_without_a_terminal_cancels_its_query_at_ctrl_c(c: &TestCluster, path: &std::path::Path) {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["psql", "--config"])
        .arg(&c.config)
        .args(["--", "-Xc", "SELECT pg_sleep(60)"])
        .env("PATH", path)
        .env("CITUS_IT_PASSWORD", crate::harness::PASSWORD)
        .env_remove("CITUS_CONFIG")
        .env_remove("CI")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut coord = c.connect(0, &c.database);
    let running = |coord: &mut postgres::Client| -> i64 {
        coord.query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'citus-xtask psql %' AND state = 'active'", &[]).unwrap().get(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while running(&mut coord) == 0 {
        assert!(std::time::Instant::now() < deadline, "the psql's query never showed up in pg_stat_activity");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let group = i32::try_from(child.id()).unwrap();
    // SAFETY: signals the process group this test just made.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGINT) }, 0);
    let started = std::time::Instant::now();
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "psql did not end after Ctrl-C");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let t = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t}");
    assert!(t.contains("psql: Ctrl-C: cancelled the running query on citus_master (docker exec without a terminal passes no signal on)"), "{t}");
    assert_eq!(running(&mut coord), 0, "the query still runs after Ctrl-C: {t}");
}
