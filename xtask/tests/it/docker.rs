//! The docker backend end to end on this machine's engine, with an image built here from
//! Debian's packages and the host's Citus (no registry is reachable).

use citus_testkit::{require, test_image, ComposeProjectGuard, Need};

use crate::harness::{text, Spec, TestCluster};

/// A docker-backed test cluster named `name`, or `None` (skipped loudly) when this machine
/// has no Docker engine, no PostgreSQL to build the image from, or no Citus to put in it.
fn docker_cluster(test: &str, name: &str) -> Option<(TestCluster, ComposeProjectGuard)> {
    let env = require(test, &[Need::Docker, Need::Postgres, Need::Citus])?;
    let image = test_image(&env).expect("building the test image");
    let extra = format!("\n[docker]\nimage = \"{image}\"\npg_major = {}\n", env.pg_major);
    let c = TestCluster::new(Spec { name, backend: "docker", extra: &extra, ..Spec::default() });
    let guard = ComposeProjectGuard::new(env.compose.as_deref().expect("docker needed"), name);
    Some((c, guard))
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
    a.ok(&["up"]);
    b.ok(&["up"]);
    a.ok(&["verify"]);
    b.ok(&["verify"]);
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
    a.ok(&["up"]);
    let n: i64 = a.connect(0, &a.database).query_one("SELECT count(*) FROM kept", &[]).unwrap().get(0);
    assert_eq!(n, 40);
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
    c.ok(&["up"]);
    c.ok(&["verify"]);
}
