//! Snapshot tests of the rendered compose file, a check by the real compose binary, and the committed-file check.

use std::{path::Path, process::Command};

use citus_config::Cluster;
use citus_testkit::{require, Need};

use super::*;

const SEED: &str = include_str!("../../../citus.toml");
const COMMITTED: &str = "../../compose/docker-compose.yml";

fn default_cluster() -> Cluster {
    Cluster::parse(SEED, Path::new("citus.toml")).expect("the default citus.toml parses")
}

/// Snapshots `render(&cluster)` under the calling test's name. A macro rather than a fn:
/// insta names a snapshot after the function the assertion is written in, so a shared fn
/// would file every test's snapshot under `check`, numbered in whatever order tests finish.
macro_rules! check {
    ($cluster:expr) => {{
        let cluster: Cluster = $cluster;
        insta::assert_snapshot!(render(&cluster))
    }};
}

#[test]
fn default_config() {
    check!(default_cluster())
}

#[test]
fn one_coordinator_four_workers() {
    check!(default_cluster().with_workers(4).unwrap())
}

/// PostgreSQL 18 image, IPv6 bind address, another password variable, another file name.
fn pg18_ipv6_cluster() -> Cluster {
    let src = SEED
        .replace("image = \"citusdata/citus:13.2.0-pg15\"", "image = \"citusdata/citus:13.2.0-pg18\"")
        .replace("pg_major = 15", "pg_major = 18")
        .replace("bind = \"127.0.0.1\"", "bind = \"::1\"")
        .replace("password_env = \"CITUS_PASSWORD\"", "password_env = \"MY_CITUS_PW\"");
    let cluster = Cluster::parse(&src, Path::new("conf/other.toml")).unwrap();
    assert_eq!(cluster.docker.pg_major, 18);
    cluster
}

#[test]
fn pg18_with_custom_ipv6_bind() {
    check!(pg18_ipv6_cluster())
}

#[test]
fn port_mappings_bracket_ipv6() {
    assert_eq!(port_mapping("127.0.0.1", 5600), "127.0.0.1:5600:5432");
    assert_eq!(port_mapping("::1", 5600), "[::1]:5600:5432");
    assert_eq!(port_mapping("[::1]", 5600), "[::1]:5600:5432");
    assert_eq!(port_mapping("0.0.0.0", 1), "0.0.0.0:1:5432");
}

#[test]
fn no_secrets_no_socket_no_trust() {
    for cluster in [default_cluster(), default_cluster().with_workers(4).unwrap()] {
        let text = render(&cluster);
        assert!(!text.contains("POSTGRES_PASSWORD: commcarehq"), "the dev password is in the file:\n{text}");
        // The default user is also `commcarehq`, so look at password lines only.
        let leaked: Vec<_> = text.lines().filter(|l| l.contains("PASSWORD") && l.contains(citus_config::DEV_PASSWORD)).collect();
        assert!(leaked.is_empty(), "the dev password is in the file: {leaked:?}");
        assert!(!text.contains("docker.sock"), "{text}");
        assert!(!text.contains("trust"), "{text}");
        // The image's initdb would trust connections from inside the container without it.
        assert_eq!(text.matches("POSTGRES_INITDB_ARGS: --auth-local=scram-sha-256 --auth-host=scram-sha-256\n").count(), cluster.nodes().count(), "{text}");
        assert!(!text.contains("container_name"), "{text}");
        assert!(!text.contains("PGDATA"), "{text}");
        assert!(text.contains("POSTGRES_PASSWORD: ${CITUS_PASSWORD:?set CITUS_PASSWORD (cargo xtask up sets it for you)}"), "{text}");
        for node in cluster.nodes() {
            let mapping = format!("\"127.0.0.1:{}:5432\"", node.client.port);
            assert!(text.contains(&mapping), "{mapping} is not a quoted string in:\n{text}");
        }
    }
}

#[test]
fn values_with_dollar_are_not_interpolated() {
    let src = SEED.replace("user = \"commcarehq\"", "user = \"a$b\"");
    let text = render(&Cluster::parse(&src, Path::new("citus.toml")).unwrap());
    assert!(text.contains("POSTGRES_USER: a$$b"), "{text}");
    assert!(!text.contains("a$b\""), "{text}");
}

/// The compose the machine has, as the other Docker tests pick it (`docker compose`, else
/// `docker-compose`), or `None` after `require` has said loudly why the test cannot run.
fn compose_command(test: &str) -> Option<Vec<String>> {
    Some(require(test, &[Need::Docker])?.compose.expect("require gives the compose command with Need::Docker"))
}

/// A new `Command` of the compose command line `compose`.
fn command(compose: &[String]) -> Command {
    let mut c = Command::new(&compose[0]);
    c.args(&compose[1..]);
    c
}

/// Runs `<compose> -p <project> -f <file> config -q` on `text`; `password` is put in (or,
/// if `None`, removed from) the child's environment as the variable `env`.
fn compose_config(compose: &[String], text: &str, env: &str, password: Option<&str>) -> std::process::Output {
    let mut cmd = command(compose);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, text).unwrap();
    cmd.arg("-p").arg("citus-compose-test").arg("-f").arg(&file).args(["config", "-q"]).current_dir(dir.path());
    match password {
        Some(p) => cmd.env(env, p),
        None => cmd.env_remove(env),
    };
    cmd.output().expect("the compose binary ran a moment ago")
}

#[test]
fn docker_compose_accepts_the_file() {
    let Some(compose) = compose_command("docker_compose_accepts_the_file") else { return };
    for cluster in [default_cluster(), default_cluster().with_workers(4).unwrap(), pg18_ipv6_cluster()] {
        for text in [render(&cluster), render_owned(&cluster, "/home/me/$work/.citus-data/citus")] {
            let out = compose_config(&compose, &text, &cluster.password.env, Some("s3cret-for-the-test"));
            assert!(
                out.status.success(),
                "compose rejected the rendered file ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn docker_compose_refuses_without_password() {
    let Some(compose) = compose_command("docker_compose_refuses_without_password") else { return };
    let out = compose_config(&compose, &render(&default_cluster()), "CITUS_PASSWORD", None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "compose accepted the file with CITUS_PASSWORD unset");
    assert!(stderr.contains("set CITUS_PASSWORD"), "compose's message does not say what to do:\n{stderr}");
}

#[test]
fn committed_compose_file_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let rendered = render(&default_cluster());
    assert!(
        committed == rendered,
        "compose/docker-compose.yml is stale: run \"cargo xtask compose --write\" to regenerate it\n--- committed\n{committed}\n--- rendered from citus.toml\n{rendered}"
    );
}

#[test]
fn preloaded_libraries_follow_the_config() {
    let src = format!("shared_preload_libraries = [\"citus\", \"$libdir/pg_stat_statements\"]\n{SEED}");
    let cluster = Cluster::parse(&src, Path::new("citus.toml")).unwrap();
    let text = render(&cluster);
    // `$` doubled so compose does not interpolate it; citus stays first.
    assert!(
        text.contains(r#"command: ["postgres", "-c", "shared_preload_libraries=citus,$$libdir/pg_stat_statements", "-c", "listen_addresses=*"]"#),
        "{text}"
    );
    let plain = Cluster::parse(&format!("shared_preload_libraries = []\n{SEED}"), Path::new("citus.toml")).unwrap();
    let text = render(&plain);
    assert!(text.contains(r#"command: ["postgres", "-c", "listen_addresses=*"]"#), "{text}");
    assert!(!text.contains("shared_preload_libraries"), "{text}");
}

#[test]
fn settings_follow_the_tools_own_options() {
    let src = format!("{SEED}\n[settings]\nmax_connections = 300\nlog_line_prefix = \"%m [%p] $user \"\ncitus.shard_count = 4\n");
    let cluster = Cluster::parse(&src, Path::new("citus.toml")).unwrap();
    let text = render(&cluster);
    assert!(
        text.contains(
            r#"command: ["postgres", "-c", "shared_preload_libraries=citus", "-c", "listen_addresses=*", "-c", "citus.shard_count=4", "-c", "log_line_prefix=%m [%p] $$user ", "-c", "max_connections=300"]"#
        ),
        "{text}"
    );
    // Compose reads the value as a literal: it prints it back escaped (`$$`, as v1 does) or as
    // the container gets it (`$`), never with `$user` interpolated away.
    let Some(compose) = compose_command("settings_follow_the_tools_own_options") else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("docker-compose.yml"), &text).unwrap();
    let out = command(&compose)
        .args(["-p", "citus-compose-test", "-f", "docker-compose.yml", "config"])
        .current_dir(dir.path())
        .env("CITUS_PASSWORD", "pw")
        .output()
        .unwrap();
    let resolved = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(resolved.contains("log_line_prefix=%m [%p] $$user ") || resolved.contains("log_line_prefix=%m [%p] $user "), "{resolved}");
}

/// The file the tool runs labels every data volume with its cluster's folder (a `$` in it
/// escaped, as every value); the committed file, from `render`, has no label.
#[test]
fn owned_file_labels_every_volume_with_the_cluster_folder() {
    let cluster = default_cluster();
    let owned = render_owned(&cluster, "/home/me/$work/.citus-data/citus");
    let label = "      org.citus-xtask.cluster-dir: \"/home/me/$$work/.citus-data/citus\"";
    assert_eq!(owned.matches(label).count(), 3, "{owned}");
    assert!(!render(&cluster).contains(OWNER_LABEL));
    // Apart from the labels, the two files are the same.
    let without: String = owned.lines().filter(|l| !l.contains(OWNER_LABEL) && l.trim() != "labels:").map(|l| format!("{l}\n")).collect();
    assert_eq!(without.replace("_data:\n", "_data: {}\n"), render(&cluster));
}

#[test]
fn the_header_names_the_project_compose_runs() {
    let cluster = Cluster::parse(&SEED.replace("name = \"citus\"", "name = \"My Cluster.2\""), Path::new("citus.toml")).unwrap();
    assert_eq!(project_name(&cluster), "my-cluster-2");
    assert!(render(&cluster).contains("docker compose -p my-cluster-2 -f <this file> up -d"), "{}", render(&cluster));
    let odd = Cluster::parse(&SEED.replace("name = \"citus\"", "name = \"_x\""), Path::new("citus.toml")).unwrap();
    assert_eq!(project_name(&odd), "c_x", "compose wants a letter or digit first");
}
