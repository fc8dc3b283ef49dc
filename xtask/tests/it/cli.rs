//! The command line without servers: help, bad input (exit 2), dry runs, generated files.

use std::process::Command;

use crate::harness::{text, Spec, TestCluster};

fn xtask(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).env_remove("CITUS_CONFIG").output().unwrap()
}

/// A missing or unknown task, or a bad flag: exit 2, and a line saying where to look.
#[test]
fn a_missing_task_or_a_bad_flag_says_what_there_is() {
    let tasks = "the tasks: up, setup, verify, status, down, test-env, psql, logs, compose, bench (`cargo xtask --help` explains each)";
    for args in [&[][..], &["upp"]] {
        let out = xtask(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out).starts_with("error: ") && text(&out).contains(tasks), "{args:?}: {}", text(&out));
    }
    // The list is the tasks `--help` explains, all of them.
    let help = text(&xtask(&["--help"]));
    let listed: Vec<&str> = help.lines().filter_map(|l| l.strip_prefix("xtask ")).collect();
    assert_eq!(listed.join(", "), tasks.strip_prefix("the tasks: ").unwrap().split(" (").next().unwrap(), "{help}");
    // A misspelt task: the nearest one is suggested; nothing is for a word near none.
    let out = xtask(&["veriffy"]);
    assert!(text(&out).contains("  did you mean `cargo xtask verify`?\n"), "{}", text(&out));
    assert!(!text(&xtask(&["deploy"])).contains("did you mean"));
    let out = xtask(&["help", "stauts"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("did you mean `cargo xtask help status`?") && text(&out).contains(tasks), "{}", text(&out));
    let out = xtask(&["verify", "--jsn"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("error: unexpected flag: `--jsn`") && text(&out).contains("`cargo xtask verify --help` lists its flags"), "{}", text(&out));
    // A misspelt flag: the task's nearest flag, from its own help (short and long forms both
    // listed there); nothing for a flag near none, nor one of another task.
    for (args, near) in [
        (&["verify", "--jsn"][..], "--json"),
        (&["up", "--bakend", "local"], "--backend"),
        (&["down", "--prge"], "--purge"),
        (&["psql", "--nod", "x"], "--node"),
    ] {
        let out = xtask(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out).contains(&format!("  did you mean `{near}`?\n")), "{args:?}: {}", text(&out));
    }
    for args in [&["up", "--xyzzy"][..], &["verify", "--purg"]] {
        let out = xtask(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!text(&out).contains("did you mean"), "{args:?}: {}", text(&out));
    }
}

#[test]
fn help_explains_every_task() {
    let out = xtask(&["--help"]);
    let t = text(&out);
    for task in ["up", "setup", "verify", "status", "down", "test-env", "psql", "logs", "compose", "bench"] {
        assert!(t.contains(&format!("xtask {task}\n")), "--help does not explain {task}: {t}");
    }
    // A task's --help is about that task only.
    let out = xtask(&["up", "--help"]);
    let up = text(&out);
    assert!(out.status.success(), "{up}");
    assert!(up.starts_with("xtask up\n  Start every node"), "{up}");
    assert!(up.contains("--backend") && up.contains("--workers") && up.contains("--no-setup") && up.contains("--restart"), "{up}");
    assert!(!up.contains("xtask setup") && !up.contains("--purge") && up.ends_with("`cargo xtask --help` explains every task.\n"), "{up}");
    // `help` and `help TASK`, as cargo and git take them, print the same.
    assert_eq!(text(&xtask(&["help", "up"])), up);
    assert_eq!(text(&xtask(&["help"])), t);
    let version = xtask(&["--version"]);
    assert!(version.status.success() && text(&version) == format!("xtask {} (citus-xtask)\n", env!("CARGO_PKG_VERSION")), "{}", text(&version));
    let psql = text(&xtask(&["psql", "-h"]));
    assert!(psql.starts_with("xtask psql\n") && psql.contains("<args>...") && !psql.contains("xtask logs"), "{psql}");
}

#[test]
fn bad_config_exits_2_with_location_and_starts_nothing() {
    let c = TestCluster::new(Spec::default());
    let text_before = std::fs::read_to_string(&c.config).unwrap();
    std::fs::write(&c.config, text_before.replacen("[coordinator]", "[coordinator]\nprot = 1", 1)).unwrap();
    let out = c.xtask(&["up"]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("citus.toml") && t.contains("line") && t.contains("unknown field `prot`") && t.contains('^'), "{t}");
    assert!(!c.config.parent().unwrap().join(".citus-data").exists(), "something was created for a bad config");

    std::fs::write(&c.config, text_before.replacen(&format!("port = {}", c.port(2)), &format!("port = {}", c.port(1)), 1)).unwrap();
    let out = c.xtask(&["setup"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("duplicate client address"), "{}", text(&out));

    let out = xtask(&["up", "--config", "/nonexistent/citus.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent/citus.toml"));

    let out = xtask(&["up", "--backend", "kubernetes"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dry_run_prints_the_plan_without_connecting() {
    // Ports where nothing listens: a dry run must not care.
    let c = TestCluster::new(Spec::default());
    let out = c.ok(&["setup", "--dry-run"]);
    assert!(out.contains("CREATE DATABASE \"commcare_ucr_citus\""), "{out}");
    assert!(out.contains("SELECT citus_add_node($1, $2)"), "{out}");
    assert!(out.contains("<secret>") && !out.contains("password='"), "the password is not masked in the plan: {out}");
    // The version planned for, and where it came from: the local PostgreSQL's citus.control
    // when it has one, on Docker the image's tag; else an assumption that says so.
    let control = std::process::Command::new("/bin/sh")
        .args(["-c", "pg_config --sharedir 2>/dev/null || ls -d /usr/share/postgresql/*/ | sort -V | tail -1"])
        .output()
        .ok()
        .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("extension/citus.control"));
    let head = out.lines().next().unwrap_or_default();
    match control.filter(|c| c.exists()) {
        Some(_) => assert!(head.contains("/extension/citus.control; backend local)"), "{head}"),
        None => assert!(head.contains("citus 13.2: assumed, found nowhere; --citus-version picks another; backend local)"), "{head}"),
    }
    let docker = TestCluster::new(Spec { backend: "docker", extra: "\n[docker]\nimage = \"registry.example:5000/citus:12.1.5-pg16\"\n", ..Spec::default() });
    let head = docker.ok(&["setup", "--dry-run"]).lines().next().unwrap_or_default().to_string();
    assert!(head.contains("(citus 12.1: the tag of image registry.example:5000/citus:12.1.5-pg16; backend docker)"), "{head}");
    for image in ["registry.example:5000/citus", "postgres:16", "citusdata/citus:latest"] {
        let docker = TestCluster::new(Spec { backend: "docker", extra: &format!("\n[docker]\nimage = \"{image}\"\n"), ..Spec::default() });
        let head = docker.ok(&["setup", "--dry-run"]).lines().next().unwrap_or_default().to_string();
        assert!(head.contains("(citus 13.2: assumed, found nowhere; --citus-version picks another; backend docker)"), "{image}: {head}");
    }
}

#[test]
fn committed_compose_file_matches_the_generator() {
    let out = xtask(&["compose"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/docker-compose.yml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed, "compose/docker-compose.yml is stale: run `cargo xtask compose --write`");
}

#[test]
fn flags_that_would_do_nothing_or_overwrite_the_committed_file_are_refused() {
    let c = TestCluster::new(Spec::default());
    // --citus-version only means something to a dry run.
    let out = c.xtask(&["setup", "--citus-version", "13.0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--citus-version: only a --dry-run plans for a version"), "{}", text(&out));
    assert!(c.ok(&["setup", "--dry-run", "--citus-version", "13.0"]).contains("citus 13.0"));
    // compose --write from another config (or another worker count) would overwrite the
    // committed file with something its test then calls stale.
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/docker-compose.yml")).unwrap();
    let out = c.xtask(&["compose", "--write"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&format!("print it instead and redirect it: `cargo xtask compose --config {} > FILE`", c.config.display())), "{}", text(&out));
    let out = xtask(&["compose", "--write", "--workers", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/docker-compose.yml")).unwrap(), committed, "left as it was");
}

/// Every `cargo xtask ...` line in the ready-made CI files parses with the real parser.
#[test]
fn ci_files_use_real_command_lines() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut seen = 0;
    for f in ["ci/github-actions.yml", "ci/travis.yml", "README.md"] {
        let text = std::fs::read_to_string(format!("{root}/{f}")).unwrap();
        for piece in text.lines().flat_map(|l| l.split("&&")) {
            let Some((_, rest)) = piece.split_once("cargo xtask ") else { continue };
            let rest = rest.split(['"', ')', '>', '|', '`', '#', ';']).next().unwrap().trim();
            let mut args: Vec<&str> = rest.split_whitespace().collect();
            if args.is_empty() || args[0].starts_with('<') {
                continue;
            }
            args.push("--help");
            let out = xtask(&args);
            assert!(out.status.success(), "{f}: `cargo xtask {rest}` does not parse: {}", text_of(&out));
            seen += 1;
        }
    }
    assert!(seen >= 6, "found only {seen} command lines");
}

fn text_of(out: &std::process::Output) -> String {
    text(out)
}

/// `bench` is handed to the citus-bench crate with its flags untouched: its own `--help`, and its
/// own refusal of bad input (exit 2) before it measures anything.
#[test]
fn bench_is_handed_to_its_crate_with_its_flags() {
    let help = xtask(&["bench", "--help"]);
    assert!(help.status.success(), "{}", text(&help));
    let t = text(&help);
    assert!(t.contains("--write-docs") && t.contains("--scratch") && t.contains("--xtask"), "{t}");
    let bad = xtask(&["bench", "--cycles", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("--cycles must be at least 1"), "{}", text(&bad));
    let no_config = xtask(&["bench", "--config", "/nonexistent/citus.toml"]);
    assert_eq!(no_config.status.code(), Some(2), "{}", text(&no_config));
    assert!(text(&no_config).contains("/nonexistent/citus.toml"), "{}", text(&no_config));
}

/// psql's flags typed before `--` are caught as the xtask's own: exit 2, and the hint says
/// where they go (`-c` before `--` is --config).
#[test]
fn psql_flags_before_the_double_dash_get_a_hint() {
    for args in [&["psql", "-c", "SELECT 1"][..], &["psql", "-XAt"]] {
        let out = xtask(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("psql's own arguments go after `--`, e.g. `cargo xtask psql -- -c 'SELECT 1'`"), "{args:?}: {}", text(&out));
    }
}

/// `down --purge` of a local cluster with no data here says so, and where it looked, instead of
/// "data deleted"; and it makes no folder for it.
#[test]
fn purge_with_nothing_to_delete_says_where_it_looked() {
    let c = TestCluster::new(Spec { backend: "local", ..Spec::default() });
    let out = c.xtask(&["down", "--purge"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("data deleted: none was there (") && stdout.contains("if the cluster's `name` or `[local] data_dir` changed in"), "{t}");
    assert!(!c.config.parent().unwrap().join(".citus-data").exists(), "down made a folder");
}

/// What the config alone shows `setup` could not do is bad input: exit 2 before any node
/// starts (before, two workers at one cluster address started every node, then failed with 1).
/// So is a `password_file` that cannot be read.
#[test]
fn config_that_setup_could_not_use_exits_2_before_anything_starts() {
    let c = TestCluster::new(Spec::default());
    let mut text = std::fs::read_to_string(&c.config).unwrap();
    text.push_str("cluster_address = \"10.0.0.7:5432\"\n");
    text = text.replacen("name = \"citus_worker1\"\n", "name = \"citus_worker1\"\ncluster_address = \"10.0.0.7:5432\"\n", 1);
    std::fs::write(&c.config, text).unwrap();
    for task in [&["up"][..], &["setup"], &["up", "--backend", "docker"]] {
        let out = c.xtask(task);
        let t = text_of(&out);
        assert_eq!(out.status.code(), Some(2), "{task:?}: {t}");
        assert!(t.contains("workers `citus_worker1` and `citus_worker2` share the cluster address 10.0.0.7:5432"), "{task:?}: {t}");
    }
    assert!(c.pid("citus_master").is_none(), "a node was started");

    let c = TestCluster::new(Spec { top: "password_file = \"no-such-secret\"\n", ..Spec::default() });
    for task in ["up", "setup", "verify", "status"] {
        let out = c.xtask_env(&[task], &[("CITUS_IT_PASSWORD", "")]);
        let t = text_of(&out);
        assert_eq!(out.status.code(), Some(2), "{task}: {t}");
        assert!(t.contains("cannot read password_file") && t.contains("no-such-secret") && t.contains("or set $CITUS_IT_PASSWORD"), "{task}: {t}");
    }
    assert!(c.pid("citus_master").is_none(), "a node was started");
}

/// A machine without Docker, where Docker is the config's default backend: the tasks that ask
/// the engine say there is no `docker` program and what to do, instead of "No such file or directory".
#[test]
fn no_docker_program_is_named_with_the_fix() {
    // Its own project name: the cleanup's `down --purge` (with the real PATH) must not touch
    // another test's containers.
    let name = format!("itnd{}", std::process::id());
    let c = TestCluster::new(Spec { name: &name, backend: "docker", ..Spec::default() });
    let empty = citus_testkit::temp_dir("citus-xtask-no-docker");
    for task in ["status", "logs", "down", "up"] {
        let out = c.xtask_env(&[task], &[("PATH", empty.path().to_str().unwrap())]);
        let t = text_of(&out);
        assert_eq!(out.status.code(), Some(1), "{task}: {t}");
        assert!(t.contains("no `docker` program on PATH") && t.contains("fix: install Docker") && t.contains("--backend local"), "{task}: {t}");
    }
}
