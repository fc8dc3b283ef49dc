//! Builds the Docker test image for real and checks its entrypoint: user, database, password, Citus.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use citus_testkit::{free_port, require, temp_dir, test_image, ComposeProjectGuard, ContainerGuard, Env, Need};

fn tool(env: &Env, name: &str) -> PathBuf {
    let own = env.bin_dir.join(name);
    if own.is_file() {
        own
    } else {
        PathBuf::from(name)
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// `docker run -d <args>`, guarded (not `--rm`: a container that exits keeps its log for the
/// failure message; the guard removes it).
fn start(args: &[&str]) -> ContainerGuard {
    let out = run(Command::new("docker").args(["run", "-d"]).args(args));
    assert!(out.status.success(), "docker run failed: {}", text(&out.stderr));
    ContainerGuard::new(text(&out.stdout))
}

fn logs(id: &str) -> String {
    let out = run(Command::new("docker").args(["logs", id]));
    format!("{}\n{}", text(&out.stdout), text(&out.stderr))
}

/// Waits until the server answers; fails at once, with its log, when the container stops.
fn wait_ready(env: &Env, port: u16, container: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run(Command::new(tool(env, "pg_isready")).args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"]));
        if out.status.success() {
            return;
        }
        let state = run(Command::new("docker").args(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container]));
        let state = text(&state.stdout);
        assert!(
            state.starts_with("running") || state.starts_with("created"),
            "container {container} stopped before its server was ready ({state}); logs:\n{}",
            logs(container)
        );
        assert!(Instant::now() < deadline, "server in {container} not ready after 120 s; logs:\n{}", logs(container));
        sleep(Duration::from_millis(300));
    }
}

fn psql(env: &Env, port: u16, password: &str, sql: &[&str]) -> Output {
    let mut cmd = Command::new(tool(env, "psql"));
    cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "u", "-d", "d"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE");
    for statement in sql {
        cmd.arg("-c").arg(statement);
    }
    run(&mut cmd)
}

#[test]
fn image() {
    let Some(env) = require("image", &[Need::Docker, Need::Postgres]) else {
        return;
    };
    let started = Instant::now();
    let tag = test_image(&env).expect("building the test image");
    eprintln!("test image {tag} ready after {:?}", started.elapsed());
    assert!(tag.starts_with(&format!("citus-xtask-test:pg{}-", env.pg_major)), "{tag}");
    // Asking again finds it.
    assert_eq!(test_image(&env).unwrap(), tag);

    let port = free_port();
    let publish = format!("127.0.0.1:{port}:5432");
    let secret = "p";
    let mut args = vec!["-e", "POSTGRES_USER=u", "-e", "POSTGRES_PASSWORD=p", "-e", "POSTGRES_DB=d", "-p", &publish, &tag, "postgres"];
    if env.has_citus {
        args.extend(["-c", "shared_preload_libraries=citus"]);
    }
    let container = start(&args);
    wait_ready(&env, port, container.id());

    let out = psql(&env, port, secret, &["SELECT current_user, current_database()"]);
    assert!(out.status.success(), "psql failed: {}\nlogs:\n{}", text(&out.stderr), logs(container.id()));
    assert_eq!(text(&out.stdout), "u|d");

    if env.has_citus {
        let out = psql(&env, port, secret, &["CREATE EXTENSION citus", "SELECT citus_version()"]);
        assert!(out.status.success(), "citus: {}\nlogs:\n{}", text(&out.stderr), logs(container.id()));
        let version = text(&out.stdout);
        assert!(version.starts_with("Citus "), "{version}");
        eprintln!("citus in the image: {version}");
    }

    let out = psql(&env, port, "wrong", &["SELECT 1"]);
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(text(&out.stderr).contains("password authentication failed for user \"u\""), "{}", text(&out.stderr));

    // The server is PID 1, running as postgres.
    let out = run(Command::new("docker").args(["exec", container.id(), "ps", "-o", "user=,comm=", "-p", "1"]));
    assert_eq!(text(&out.stdout).split_whitespace().collect::<Vec<_>>(), ["postgres", "postgres"]);

    container.remove().expect("removing the container");
}

#[test]
fn image_refuses_to_start_without_a_password_and_never_prints_it() {
    let Some(env) = require("image_refuses_to_start_without_a_password_and_never_prints_it", &[Need::Docker, Need::Postgres]) else {
        return;
    };
    let tag = test_image(&env).expect("building the test image");

    // Detached and guarded: an entrypoint that started a server anyway would otherwise keep
    // the test (and the container) running.
    let refused = start(&[&tag]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit_code = loop {
        let out = run(Command::new("docker").args(["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", refused.id()]));
        assert!(out.status.success(), "docker inspect failed: {}", text(&out.stderr));
        match text(&out.stdout).split_once(' ') {
            Some(("false", code)) => break code.to_string(),
            _ if Instant::now() > deadline => panic!("the container still runs after 60 s without a password:\n{}", logs(refused.id())),
            _ => sleep(Duration::from_millis(200)),
        }
    };
    let log = logs(refused.id());
    assert_ne!(exit_code, "0", "started without a password:\n{log}");
    assert!(log.contains("set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"), "{log}");
    refused.remove().expect("removing the refused container");

    // POSTGRES_PASSWORD_FILE, default user and database; the secret stays out of the logs.
    let secret = "s3cret-Value-never-printed";
    let dir = temp_dir("testkit-image-pw");
    std::fs::write(dir.path().join("pw"), format!("{secret}\n")).unwrap();
    let mount = format!("{}:/run/secrets:ro", dir.path().display());
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:5432");
    let container = start(&["-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pw", "-v", &mount, "-p", &publish, &tag]);
    wait_ready(&env, port, container.id());
    let out = run(Command::new(tool(&env, "psql"))
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-c", "SELECT current_user, current_database(), current_setting('listen_addresses')"])
        .env("PGPASSWORD", secret));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "postgres|postgres|*");
    let logs = logs(container.id());
    assert!(!logs.contains(secret), "the password appears in the logs:\n{logs}");
    container.remove().expect("removing the container");
}

fn labelled(kind: &[&str], project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let out = run(Command::new("docker").args(kind).args(["--quiet", "--filter", &filter]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn compose_project_guard_cleans_up_after_a_panic() {
    let Some(env) = require("compose_project_guard_cleans_up_after_a_panic", &[Need::Docker, Need::Postgres]) else {
        return;
    };
    let tag = test_image(&env).expect("building the test image");
    let compose = env.compose.clone().expect("Docker was asked for");
    let project = format!("testkit-guard-{}", std::process::id());
    let dir = temp_dir("testkit-compose");
    let file = dir.path().join("compose.yml");
    std::fs::write(
        &file,
        format!(
            "version: \"2.4\"\nservices:\n  db:\n    image: {tag}\n    environment:\n      \
             POSTGRES_PASSWORD: p\n    volumes:\n      - data:/var/lib/postgresql/data\n\
             volumes:\n  data: {{}}\n"
        ),
    )
    .unwrap();

    let (compose2, project2, file2) = (compose.clone(), project.clone(), file.clone());
    let outcome = std::thread::spawn(move || {
        let _guard = ComposeProjectGuard::new(&compose2, project2.clone());
        let out = run(Command::new(&compose2[0]).args(&compose2[1..]).arg("-p").arg(&project2).arg("-f").arg(&file2).args(["up", "-d"]));
        assert!(out.status.success(), "compose up: {}", text(&out.stderr));
        assert_eq!(labelled(&["ps", "--all"], &project2).len(), 1);
        assert_eq!(labelled(&["volume", "ls"], &project2).len(), 1);
        assert_eq!(labelled(&["network", "ls"], &project2).len(), 1);
        panic!("the test fails here; the guard must still clean up");
    })
    .join();
    assert!(outcome.is_err(), "the thread was meant to panic");
    assert_eq!(labelled(&["ps", "--all"], &project), Vec::<String>::new());
    assert_eq!(labelled(&["volume", "ls"], &project), Vec::<String>::new());
    assert_eq!(labelled(&["network", "ls"], &project), Vec::<String>::new());
    // Cleaning up what is gone is fine.
    citus_testkit::cleanup_compose_project(&compose, &project).unwrap();
}
