//! The tasks: up, setup, verify, status, down, test-env, psql, logs and compose.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use citus_config::Backend;
use citus_io::{docker, local, pg, psql, setup, verify};

use crate::{config, flags, progress, UsageError};

fn deadline(cluster: &citus_config::Cluster) -> Instant {
    Instant::now() + Duration::from_secs(cluster.ready_timeout_secs)
}

fn print_outcome(o: &setup::Outcome) {
    if o.changed.is_empty() {
        println!("setup: nothing to change ({} items already in place)", o.in_place.len());
    } else {
        println!("setup: changed {} item(s):", o.changed.len());
        for c in &o.changed {
            println!("  + {c}");
        }
        println!("  ({} items were already in place)", o.in_place.len());
    }
    for l in &o.left_alone {
        println!("  ! left alone: {l}");
    }
}

/// The password (`pg::credentials`); a `password_file` that cannot be read or is empty is bad
/// input (exit 2).
fn credentials(cluster: &citus_config::Cluster) -> anyhow::Result<pg::Credentials> {
    pg::credentials(cluster).map_err(|e| UsageError(format!("{e:#}")).into())
}

/// What the config alone shows `setup` could not do, found before any node starts or any
/// connection is made (exit 2): no citus preloaded, a worker at the coordinator's cluster
/// address, two workers at one.
fn check_setup_config(cluster: &citus_config::Cluster, backend: Backend) -> anyhow::Result<()> {
    setup::check_preload(cluster).map_err(|e| UsageError(e.to_string()))?;
    citus_plan::check_addresses(cluster, backend).map_err(|e| UsageError(e.to_string()))?;
    Ok(())
}

pub(crate) fn up(f: flags::Up) -> anyhow::Result<ExitCode> {
    let config::Opened { cluster, backend, configured_workers } = config::open(f.config.as_deref(), f.workers, f.backend)?;
    if !f.no_setup {
        // Refuse before anything starts: setup would fail after the wait.
        check_setup_config(&cluster, backend)?;
    }
    if backend == Backend::Docker {
        // Two nodes on one published port: refused before compose creates anything.
        docker::check_ports(&cluster).map_err(|e| UsageError(format!("{e:#}")))?;
    }
    let creds = credentials(&cluster)?;
    // Written once this `up` holds the cluster's lock, before any node starts.
    let workers = citus_io::state::WorkersRecord::for_up(f.workers, configured_workers);
    let t0 = Instant::now();
    let target = setup::Target { cluster: &cluster, backend, creds: &creds };
    // Each local server this run starts gets its own database, extension and password as
    // soon as it is ready (setup::first_steps), while the others still start.
    let early = std::sync::Mutex::new(Vec::new());
    let first = |n: &citus_config::Node, ready| -> anyhow::Result<_> {
        let (ready, done) = setup::first_steps(&target, n, ready, &progress)?;
        early.lock().expect("early steps").extend(done);
        Ok(ready)
    };
    let ready = match backend {
        Backend::Local => local::up(&cluster, &creds, workers, (!f.no_setup).then_some(&first as citus_io::OnStarted<'_>), f.restart, &progress)?,
        Backend::Docker => docker::up(&cluster, &creds, workers, &progress)?,
    };
    if f.no_setup {
        println!("up: {} node(s) started and accepting logins in {:.2} s; run `cargo xtask setup` next", cluster.workers.len() + 1, t0.elapsed().as_secs_f64());
        return Ok(ExitCode::SUCCESS);
    }
    // The connections that proved the nodes ready are the ones setup uses: no second login.
    let early = early.into_inner().expect("early steps");
    let outcome =
        setup::run_with_early(&target, setup::Conns::from_ready(&target, ready), &early, &setup::Allow::default(), &progress).context("setup after up")?;
    print_outcome(&outcome);
    println!(
        "up: cluster `{}` ready in {:.2} s: coordinator {} at {}, {} worker(s); check it with `cargo xtask verify`",
        cluster.name,
        t0.elapsed().as_secs_f64(),
        cluster.coordinator.name,
        cluster.coordinator.client,
        cluster.workers.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn setup(f: flags::Setup) -> anyhow::Result<ExitCode> {
    let config::Opened { cluster, backend, .. } = config::open(f.config.as_deref(), f.workers, f.backend)?;
    for name in &f.drop_orphaned_shards {
        if f.dry_run {
            return Err(UsageError("--drop-orphaned-shards: which tables to drop is known only on the live cluster; run it without --dry-run".into()).into());
        }
        if !cluster.workers.iter().any(|w| w.name == *name) {
            let workers: Vec<&str> = cluster.workers.iter().map(|w| w.name.as_str()).collect();
            return Err(UsageError(format!("--drop-orphaned-shards {name}: not a worker of this run (its workers: {})", workers.join(", "))).into());
        }
    }
    if f.citus_version.is_some() && !f.dry_run {
        return Err(UsageError("--citus-version: only a --dry-run plans for a version; a live setup reads each node's own".into()).into());
    }
    if f.dry_run {
        let (v, from) = match f.citus_version.as_deref() {
            Some(s) => (
                citus_plan::Version::parse(s).ok_or_else(|| UsageError(format!("--citus-version {s}: expected MAJOR.MINOR, e.g. 13.2")))?,
                "--citus-version".to_string(),
            ),
            None => dry_run_version(&cluster, backend),
        };
        let observed = citus_plan::Observed::fresh(&cluster, v);
        // The dry run never reads the password: it is masked in the output anyway.
        let plan = citus_plan::plan(&cluster, backend, &observed, "").map_err(|e| UsageError(e.to_string()))?;
        println!("-- plan for a fresh cluster `{}` (citus {v}: {from}; backend {backend}); nothing was connected to", cluster.name);
        print!("{}", plan.render());
        return Ok(ExitCode::SUCCESS);
    }
    check_setup_config(&cluster, backend)?;
    let creds = credentials(&cluster)?;
    let target = setup::Target { cluster: &cluster, backend, creds: &creds };
    let allow = setup::Allow { drop_orphaned_shards: f.drop_orphaned_shards };
    let outcome = setup::run(&target, deadline(&cluster), &allow, &progress)?;
    print_outcome(&outcome);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn verify(f: flags::Verify) -> anyhow::Result<ExitCode> {
    let config::Opened { cluster, backend, .. } = config::open(f.config.as_deref(), f.workers, f.backend)?;
    let creds = credentials(&cluster)?;
    let target = setup::Target { cluster: &cluster, backend, creds: &creds };
    let report = verify::run(&target, &progress);
    if f.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub(crate) fn down(f: flags::Down) -> anyhow::Result<ExitCode> {
    let config::Opened { cluster, backend, .. } = config::open(f.config.as_deref(), f.workers, f.backend)?;
    let mut data = if f.purge { "deleted (--purge)".to_string() } else { "kept (`down --purge` deletes it)".to_string() };
    match backend {
        Backend::Local => {
            let (stopped, purged) = local::down(&cluster, f.purge, &progress)?;
            if f.purge && purged == 0 {
                data = format!(
                    "deleted: none was there ({}); if the cluster's `name` or `[local] data_dir` changed in {}, its data is under the old one",
                    citus_io::state::cluster_dir(&cluster).display(),
                    cluster.source.display()
                );
            }
            if stopped == 0 {
                println!("down: no server of cluster `{}` was running here (local backend); data {data}", cluster.name);
                return Ok(ExitCode::SUCCESS);
            }
        }
        Backend::Docker => docker::down(&cluster, &credentials(&cluster)?, f.purge, &progress)?,
    }
    println!("down: cluster `{}` stopped; data {data}", cluster.name);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn test_env(f: flags::TestEnv) -> anyhow::Result<ExitCode> {
    use citus_testenv::{Format, Policy, Profile, RenderOptions};
    let config::Opened { cluster, backend, .. } = config::open(f.config.as_deref(), f.workers, f.backend)?;
    let format: Format = f.format.as_deref().unwrap_or("shell").parse().map_err(UsageError)?;
    let explicit: Option<Profile> = f.profile.as_deref().map(str::parse).transpose().map_err(UsageError)?;
    let mut opts = RenderOptions::default();
    if let Some(v) = f.django_version.as_deref() {
        opts.django_version = citus_testenv::parse_django_version(v).map_err(UsageError)?;
    }
    opts.check(cluster.workers.len()).map_err(UsageError)?;
    let ci = std::env::var("CI").ok();
    let (profile, why) = Profile::choose(explicit, ci.as_deref());
    eprintln!("test-env: profile {profile} ({why}), format {format}");
    let policy = Policy::new(profile);
    for d in policy.decisions() {
        eprintln!("  {}", d.comment());
    }
    // Only formats that carry the password read it.
    let password = if format == Format::Pytest { String::new() } else { credentials(&cluster)?.password };
    print!("{}", citus_testenv::render(&cluster, backend, &policy, format, &password, &opts));
    Ok(ExitCode::SUCCESS)
}

/// The node `--node NAME` names; a name the config lacks is bad input.
fn named_node<'c>(cluster: &'c citus_config::Cluster, name: &str) -> Result<&'c citus_config::Node, UsageError> {
    cluster.node(name).ok_or_else(|| {
        let names: Vec<&str> = cluster.nodes().map(|n| n.name.as_str()).collect();
        UsageError(format!("--node {name}: no such node in {}; its nodes are {}", cluster.source.display(), names.join(", ")))
    })
}

/// The hint for flags meant for psql that reached the xtask instead.
pub(crate) const PSQL_ARGS_HINT: &str = "psql's own arguments go after `--`, e.g. `cargo xtask psql -- -c 'SELECT 1'` (before it, `-c` is --config)";

pub(crate) fn psql(f: flags::Psql) -> anyhow::Result<ExitCode> {
    let config::Opened { cluster, backend, .. } = config::open(f.config.as_deref(), f.workers, f.backend).map_err(|e| match e.downcast::<UsageError>() {
        Ok(u) if f.config.is_some() => UsageError(format!("{u}\n  hint: {PSQL_ARGS_HINT}")).into(),
        Ok(u) => u.into(),
        Err(e) => e,
    })?;
    let node = match f.node.as_deref() {
        None => &cluster.coordinator,
        Some(name) => named_node(&cluster, name)?,
    };
    let creds = credentials(&cluster)?;
    let code = psql::run(&cluster, backend, node, &creds, &f.args, &progress)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub(crate) fn logs(f: flags::Logs) -> anyhow::Result<ExitCode> {
    let config::Opened { cluster, backend, .. } = config::open(f.config.as_deref(), f.workers, f.backend)?;
    let nodes = match f.node.as_deref() {
        None => cluster.nodes().collect(),
        Some(name) => vec![named_node(&cluster, name)?],
    };
    let lines = f.lines.unwrap_or(50);
    let containers = if backend == Backend::Docker { docker::containers(&cluster)? } else { Vec::new() };
    if f.follow {
        return follow_logs(&cluster, backend, &nodes, &containers, lines);
    }
    for node in nodes {
        match backend {
            Backend::Local => match local::log_lines(&cluster, node, lines)? {
                (log, Some(text)) => {
                    println!("==> {}: {} <==", node.name, log.display());
                    for l in text {
                        println!("{l}");
                    }
                }
                (log, None) => println!("==> {}: {} <==\n(no log: this tool has not started this node here)", node.name, log.display()),
            },
            Backend::Docker => match containers.iter().find(|c| c.service == node.name) {
                Some(c) => {
                    let text = docker::logs(&c.id, lines).with_context(|| format!("node {}", node.name))?;
                    println!("==> {}: docker logs {} <==", node.name, c.id);
                    if !text.is_empty() {
                        println!("{text}");
                    }
                }
                None => println!(
                    "==> {}: no container in project {} <==\n(no log: start the cluster with `cargo xtask up`)",
                    node.name,
                    docker::project_name(&cluster)
                ),
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn status(f: flags::Status) -> anyhow::Result<ExitCode> {
    use citus_io::status::Server;
    let config::Opened { cluster, backend, .. } = config::open(f.config.as_deref(), f.workers, f.backend)?;
    let creds = credentials(&cluster)?;
    let st = citus_io::status::read(&cluster, backend, &creds)?;
    let code = if st.all_ready() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    if f.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "ok": st.all_ready(), "nodes": st.nodes, "others": st.others }))?);
        return Ok(code);
    }
    let rows: Vec<[&str; 4]> = st.nodes.iter().map(|n| [n.node.as_str(), n.client.as_str(), n.server.state(), n.server.detail()]).collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for (r, n) in rows.iter().zip(&st.nodes) {
        println!("{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]);
        match &n.login {
            Some(l) if l.ok => println!("{:w0$}  {:w1$}  {:w2$}  login ok: {}", "", "", "", l.detail),
            Some(l) => println!("{:w0$}  {:w1$}  {:w2$}  login FAILED: {}", "", "", "", l.detail),
            None => {}
        }
        if let Some(pending) = n.restart_pending.as_ref().filter(|p| !p.is_empty()) {
            let applies = match backend {
                Backend::Local => "`cargo xtask up --restart` applies it",
                Backend::Docker => "`cargo xtask up` recreates the container from the config (the volume stays)",
            };
            println!("{:w0$}  {:w1$}  {:w2$}  restart pending: the config changed {}; {applies}", "", "", "", pending.join(", "));
        }
    }
    for o in &st.others {
        println!("also running: {o}");
    }
    let total = st.nodes.len();
    let ready = st.nodes.iter().filter(|n| n.login.as_ref().is_some_and(|l| l.ok)).count();
    let running = st.nodes.iter().filter(|n| matches!(n.server, Server::Running(_))).count();
    if st.all_ready() {
        println!("status: all {total} node(s) of cluster `{}` run and accept logins; `cargo xtask verify` checks the cluster", cluster.name);
        return Ok(code);
    }
    let next = match running {
        0 => "`cargo xtask up` starts them",
        r if r < total => "`cargo xtask up` starts the others",
        _ => "see the failed logins above",
    };
    println!("status: {ready} of {total} node(s) of cluster `{}` run and accept logins; {next}", cluster.name);
    Ok(code)
}

/// `logs --follow`: every line after its node's name (padded, as `docker compose logs`
/// does), the last `lines` of each node first.
fn follow_logs(
    cluster: &citus_config::Cluster,
    backend: Backend,
    nodes: &[&citus_config::Node],
    containers: &[docker::Container],
    lines: usize,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    // A closed stdout (`| head`) ends the follow, quietly, as Ctrl-C would, once a line finds
    // it closed; the followers then stop what they started.
    let closed = std::sync::atomic::AtomicBool::new(false);
    let print = |node: &citus_config::Node, text: &str| {
        let mut out = std::io::stdout().lock();
        if closed.load(std::sync::atomic::Ordering::SeqCst) || writeln!(out, "{:width$} | {text}", node.name).and_then(|()| out.flush()).is_err() {
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    };
    match backend {
        Backend::Local => {
            let mut from = Vec::new();
            for node in nodes {
                let (log, tail, end) = local::log_lines_and_end(cluster, node, lines)?;
                match tail {
                    Some(tail) => {
                        if tail.iter().any(|l| print(node, l).is_break()) {
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                    None => progress(&format!("{}: no log yet at {} (this tool has not started this node here); waiting for one", node.name, log.display())),
                }
                from.push(end);
            }
            local::follow_logs(cluster, nodes, &from, &mut |n, l| print(n, l))?;
        }
        Backend::Docker => {
            let mut followed = Vec::new();
            for node in nodes {
                match containers.iter().find(|c| c.service == node.name) {
                    Some(c) => followed.push((*node, c.id.as_str())),
                    None => progress(&format!(
                        "{}: no container in project {}: not followed (start the cluster with `cargo xtask up`)",
                        node.name,
                        docker::project_name(cluster)
                    )),
                }
            }
            if followed.is_empty() {
                anyhow::bail!("no container of project {} to follow: start the cluster with `cargo xtask up`", docker::project_name(cluster));
            }
            docker::follow_logs(cluster, &followed, lines, &print, &progress)?;
            if !closed.load(std::sync::atomic::Ordering::SeqCst) {
                progress("every followed container has been removed (`cargo xtask down`): the follow ends");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The citus version `setup --dry-run` plans for without `--citus-version`, and where it
/// comes from: the image's tag (`citusdata/citus:13.2.0-pg15`) on Docker, the citus.control of
/// the local PostgreSQL on the local backend, else the version this tool was tested with.
fn dry_run_version(cluster: &citus_config::Cluster, backend: Backend) -> (citus_plan::Version, String) {
    let found = match backend {
        Backend::Docker => {
            let image = &cluster.docker.image;
            // No tag: `localhost:5000/citus` has a registry port, not a tag; and a tag without
            // MAJOR.MINOR (`postgres:16`, `latest`) names no Citus version.
            let tag = image.split('@').next().unwrap_or(image).rsplit_once(':').map(|(_, tag)| tag).filter(|tag| !tag.contains('/'));
            let tag = tag.filter(|t| t.split(['-', '_']).next().is_some_and(|v| v.split('.').count() >= 2));
            tag.and_then(citus_plan::Version::parse).map(|v| (v, format!("the tag of image {image}")))
        }
        Backend::Local => local::installed_citus(cluster).and_then(|(v, control)| citus_plan::Version::parse(&v).map(|v| (v, control.display().to_string()))),
    };
    found.unwrap_or_else(|| (citus_plan::Version::new(13, 2), "assumed, found nowhere; --citus-version picks another".to_string()))
}

pub(crate) fn compose(f: flags::Compose) -> anyhow::Result<ExitCode> {
    let cluster = config::load(f.config.as_deref(), f.workers)?;
    let text = citus_compose::render(&cluster);
    if f.write {
        let path = config::workspace_root().join("compose").join("docker-compose.yml");
        let workspace_config = config::workspace_root().join("citus.toml");
        let same = |a: &std::path::Path, b: &std::path::Path| matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y);
        if !same(&cluster.source, &workspace_config) || f.workers.is_some() {
            return Err(UsageError(format!(
                "--write regenerates {} from {} with its own worker count, which the test `committed_compose_file_is_up_to_date` checks it against; for {}{} print it instead and redirect it: `cargo xtask compose{} > FILE`",
                path.display(),
                workspace_config.display(),
                cluster.source.display(),
                f.workers.map_or(String::new(), |n| format!(" with --workers {n}")),
                [f.config.as_ref().map(|c| format!(" --config {}", c.display())), f.workers.map(|n| format!(" --workers {n}"))].into_iter().flatten().collect::<String>()
            ))
            .into());
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}
