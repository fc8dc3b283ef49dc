//! The bare baseline: what a short shell script does with the same PostgreSQL and Citus
//! binaries, written here so that it runs identically everywhere. Per node, in parallel:
//! `initdb --no-sync --auth=trust`, citus in `shared_preload_libraries` and `fsync = off`
//! appended to postgresql.conf, `pg_ctl -w start`, `psql -c 'CREATE EXTENSION citus'`; then
//! one `psql` on the coordinator with one `citus_add_node` per worker. Stop: `pg_ctl -m
//! immediate -w stop` per node, in parallel, once every node's Citus maintenance daemon has
//! connected to every node ([`daemons_connected`], untimed), as before the tool's `down`.
//!
//! The docker baseline ([`docker_cycle`]) is the same work on the tool's own generated
//! compose file: `compose up -d` (in one series with `--wait` where compose v2 offers it, in
//! the other without), `pg_isready` polled by hand every 50 ms on every client port, then a login, `CREATE EXTENSION citus` and the inter-node password
//! (`pg_dist_authinfo`) on every node, `citus_add_node` per worker by service name; its stop
//! is `compose down -v`.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context};

use super::{
    procs::{self, Scratch},
    Ctx,
};

/// One baseline cycle's times (seconds).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// From nothing to the last worker registered on the coordinator.
    pub(crate) up: f64,
    /// `pg_ctl -m immediate stop` of every node.
    pub(crate) stop: f64,
    /// The untimed wait before the stop ([`daemons_connected`]); None for docker cycles.
    pub(crate) daemons: Option<Daemons>,
    /// `SELECT citus_version()` on the coordinator, when asked for (not timed).
    pub(crate) citus_version: Option<String>,
}

struct NodeDir {
    dir: PathBuf,
    pgdata: PathBuf,
    port: u16,
}

/// Runs one baseline cycle of 1 coordinator + `workers` workers in a fresh folder, which is
/// deleted afterwards, or kept aside until the end of the run (with any server left running
/// stopped, on an error path).
pub(crate) fn cycle(ctx: &Ctx, workers: usize, label: &str, want_version: bool) -> anyhow::Result<Sample> {
    let dir = ctx.root.join(format!("base-{label}"));
    procs::open_dir(&dir)?;
    let _guard = Scratch::keep_in(vec![dir.clone()], ctx.spent.as_deref());
    let ports = procs::free_ports(workers + 1)?;
    let nodes: Vec<NodeDir> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let d = dir.join(format!("node{i}"));
            NodeDir { pgdata: d.join("pgdata"), dir: d, port }
        })
        .collect();

    procs::settle();
    let t0 = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes.iter().map(|n| s.spawn(move || node_up(ctx, n))).collect();
        hs.into_iter().map(|h| h.join().expect("baseline node thread")).collect()
    });
    citus_io::all_nodes(results).with_context(|| format!("baseline 1+{workers}"))?;
    let mut sql = Vec::new();
    for n in &nodes[1..] {
        sql.push(format!("SELECT citus_add_node('127.0.0.1', {})", n.port));
    }
    if !sql.is_empty() {
        psql(ctx, nodes[0].port, &sql).context("baseline: citus_add_node on the coordinator")?;
    }
    let up = t0.elapsed().as_secs_f64();

    let citus_version = if want_version { psql(ctx, nodes[0].port, &["SELECT citus_version()".to_string()]).ok().map(|s| s.trim().to_string()) } else { None };
    let daemons = daemons_connected(ctx, &ports, &ctx.run_as.name, "postgres", None)?;

    let t1 = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                s.spawn(move || {
                    let mut c = ctx.run_as.command(ctx.bin_dir.join("pg_ctl"));
                    c.arg("-D").arg(&n.pgdata).args(["-m", "immediate", "-w", "-t", "60", "stop"]);
                    run_logged(c, &n.dir.join("pg_ctl-stop.out"), "pg_ctl stop")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("baseline stop thread")).collect()
    });
    let stop = t1.elapsed().as_secs_f64();
    citus_io::all_nodes(results).with_context(|| format!("baseline 1+{workers}"))?;
    Ok(Sample { up, stop, citus_version, daemons: Some(daemons) })
}

/// The untimed wait of [`daemons_connected`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Daemons {
    /// Seconds waited.
    pub(crate) secs: f64,
    /// False when the wait ran out first (the stop then went ahead).
    pub(crate) connected: bool,
}

impl Daemons {
    /// For a progress line.
    pub(crate) fn describe(&self) -> String {
        if self.connected {
            format!("maintenance daemons connected to every node after {:.2} s", self.secs)
        } else {
            format!("maintenance daemons not all connected after {:.1} s; stopping anyway", self.secs)
        }
    }
}

/// How long [`daemons_connected`] waits at most. Citus's distributed deadlock detection, whose
/// connections these are, runs every 2 s by default.
pub(crate) const DAEMONS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits, untimed, until every node in the coordinator's `pg_dist_node` has a connection from
/// each other node's Citus maintenance daemon and no other of Citus's inter-node connections
/// (client backends named `citus_internal gpid=…`, such as those the bare all-pairs check
/// leaves while its sessions end), or [`DAEMONS_TIMEOUT`] has passed. Each round asks every
/// node once (one `psql` each, one after another), then sleeps 50 ms; it ends when every node
/// passes in the same round. `ports[0]` is the coordinator.
///
/// A connection's gpid is the node id × 10¹⁰ plus the pid of the process that opened it (the
/// node id is 99999999 when that node's daemon started before the node was registered), and
/// every node is a process of this machine, so a connection comes from a daemon when its pid
/// is one of the nodes' `Citus Maintenance Daemon` pids.
///
/// A new cluster has none of them right after its last `citus_add_node`; each daemon opens
/// them to the nodes in its metadata at its first distributed deadlock detection after that
/// (every 2 s by default) and keeps them. A stop has to end those backends too: on the tool's
/// 1 + 8, 72 of them (81 once the servers have been restarted, when each daemon also connects
/// to its own node); on the baseline's, 64, as its coordinator is not in `pg_dist_node` (it
/// does not run `citus_set_coordinator_host`), so no daemon connects to it. The baseline used
/// to stop its cluster before they existed, and the tool's `down` (after `verify`, `setup` and
/// the bare check) after most of them did, so the two stopped different clusters
/// (docs/performance.md). Both sides wait for them now.
pub(crate) fn daemons_connected(ctx: &Ctx, ports: &[u16], user: &str, database: &str, password: Option<&str>) -> anyhow::Result<Daemons> {
    let sql = "SELECT coalesce(string_agg(pid::text, ',') FILTER (WHERE backend_type LIKE 'Citus Maintenance Daemon%'), ''), \
               coalesce(string_agg((substring(application_name FROM 'gpid=([0-9]+)')::bigint % 10000000000)::text, ',') \
               FILTER (WHERE backend_type = 'client backend' AND application_name LIKE 'citus\\_internal gpid=%'), '') \
               FROM pg_stat_activity";
    let t0 = Instant::now();
    let listed: Vec<u16> = run_psql(ctx, ports[0], user, database, password, &["SELECT nodeport FROM pg_dist_node WHERE isactive"])?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Some(missing) = ports[1..].iter().find(|p| !listed.contains(p)) {
        bail!("waiting for the maintenance daemons: the coordinator's pg_dist_node lists ports {listed:?}, not worker port {missing}");
    }
    let pids = |list: &str| -> Vec<u32> { list.split(',').filter_map(|p| p.trim().parse().ok()).collect() };
    loop {
        let mut daemons: Vec<u32> = Vec::new();
        let mut sources: Vec<(u16, Vec<u32>)> = Vec::new();
        for &port in ports {
            let out = run_psql(ctx, port, user, database, password, &[sql])?;
            let (own, from) = out.trim().split_once('|').unwrap_or(("", ""));
            daemons.extend(pids(own));
            if listed.contains(&port) {
                sources.push((port, pids(from)));
            }
        }
        let settled = sources.iter().all(|(_, from)| {
            let by_daemons = from.iter().filter(|p| daemons.contains(p)).count();
            by_daemons + 1 >= ports.len() && by_daemons == from.len()
        });
        if settled || t0.elapsed() > DAEMONS_TIMEOUT {
            return Ok(Daemons { secs: t0.elapsed().as_secs_f64(), connected: settled });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn node_up(ctx: &Ctx, n: &NodeDir) -> anyhow::Result<()> {
    fs::create_dir(&n.dir).with_context(|| format!("creating {}", n.dir.display()))?;
    ctx.run_as.chown(&n.dir)?;
    let mut c = ctx.run_as.command(ctx.bin_dir.join("initdb"));
    c.arg("-D").arg(&n.pgdata).args(["--no-sync", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"]);
    run_logged(c, &n.dir.join("initdb.out"), "initdb")?;
    let mut conf = fs::OpenOptions::new().append(true).open(n.pgdata.join("postgresql.conf")).context("opening postgresql.conf")?;
    write!(conf, "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nshared_preload_libraries = 'citus'\nfsync = off\n", n.port)?;
    drop(conf);
    let mut c = ctx.run_as.command(ctx.bin_dir.join("pg_ctl"));
    c.arg("-D").arg(&n.pgdata).arg("-l").arg(n.dir.join("postgres.log")).args(["-w", "-t", "60", "start"]);
    run_logged(c, &n.dir.join("pg_ctl-start.out"), "pg_ctl start").map_err(|e| anyhow::anyhow!("{e:#}\n    {}", log_tail(&n.dir.join("postgres.log"))))?;
    psql(ctx, n.port, &["CREATE EXTENSION citus".to_string()]).with_context(|| format!("CREATE EXTENSION citus on 127.0.0.1:{}", n.port))?;
    Ok(())
}

/// One docker baseline cycle of 1 coordinator + `workers` workers, from the compose file the
/// tool generates for `cluster` (written to `dir`); the project is removed with its volumes
/// afterwards, also on an error path. `wait`: `compose up -d --wait` (compose v2 only: waits
/// for every container's healthcheck) before the polls, else `compose up -d` alone.
pub(crate) fn docker_cycle(ctx: &Ctx, cluster: &citus_config::Cluster, dir: &Path, wait: bool) -> anyhow::Result<Sample> {
    let compose = citus_io::docker::compose_program()?;
    let file = dir.join("docker-compose.yml");
    fs::write(&file, citus_compose::render(cluster)).with_context(|| format!("writing {}", file.display()))?;
    let project = citus_io::docker::project_name(cluster);
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let (exe, pre) = compose.split_first().expect("a compose program");
        let out = Command::new(exe)
            .args(pre)
            .args(["-p", &project, "-f"])
            .arg(&file)
            .args(args)
            .env(&cluster.password.env, super::PASSWORD)
            .stdin(Stdio::null())
            .output()
            .context("running compose")?;
        if !out.status.success() {
            bail!("compose {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    struct Down<'a>(&'a dyn Fn(&[&str]) -> anyhow::Result<()>, bool);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            if self.1 {
                let _ = (self.0)(&["down", "-v", "--remove-orphans"]);
            }
        }
    }
    let mut guard = Down(&run, true);
    if wait && compose.len() != 2 {
        bail!("compose v1 has no `up --wait`");
    }
    let login = |node: &citus_config::Node, sql: &str| psql_login(ctx, node.client.port, &cluster.user, sql);

    procs::settle();
    let t0 = Instant::now();
    run(if wait { &["up", "-d", "--wait"] } else { &["up", "-d"] })?;
    let nodes: Vec<&citus_config::Node> = cluster.nodes().collect();
    let deadline = Instant::now() + std::time::Duration::from_secs(cluster.ready_timeout_secs);
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                s.spawn(move || {
                    // Polled by hand, as a script does: `pg_isready` every 50 ms until the server
                    // answers, then a login (retried the same way: the image's first start
                    // restarts its server once).
                    loop {
                        if ready(ctx, n.client.port) && login(n, "SELECT 1").is_ok() {
                            break;
                        }
                        if Instant::now() > deadline {
                            bail!("{} at {} did not accept a login", n.name, n.client);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    // The nodes log in to each other with the same password (Citus's pg_dist_authinfo).
                    login(
                        n,
                        &format!(
                            "CREATE EXTENSION citus; INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, current_user, 'password={}')",
                            super::PASSWORD
                        ),
                    )?;
                    Ok(())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("docker baseline thread")).collect()
    });
    citus_io::all_nodes(results).context("docker baseline")?;
    let add: Vec<String> = cluster.workers.iter().map(|w| format!("SELECT citus_add_node('{}', 5432);", w.name)).collect();
    if !add.is_empty() {
        login(&cluster.coordinator, &add.join(" ")).context("docker baseline: citus_add_node on the coordinator")?;
    }
    let up = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    guard.1 = false;
    run(&["down", "-v", "--remove-orphans"])?;
    let stop = t1.elapsed().as_secs_f64();
    Ok(Sample { up, stop, citus_version: None, daemons: None })
}

/// The all-pairs check alone, as a bare script does it on a ready cluster: one `psql` per node,
/// all at once, each running `citus_check_connection_to_node` to every other node in one
/// session (the pairs of `citus_check_cluster_node_health()` without each node's connection to
/// its own address). That is the part of `verify` no implementation can do without: a new
/// inter-node connection per pair (on 1 + 8, 72). Returns the seconds from the first spawn to the
/// last exit; fails when any pair fails (the measurement would not be of a working cluster).
pub(crate) fn all_pairs(ctx: &Ctx, ports: &[u16], user: &str, database: &str) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = ports
            .iter()
            .map(|&from| {
                s.spawn(move || {
                    let others: Vec<u16> = ports.iter().copied().filter(|&p| p != from).collect();
                    let sql: String = others.iter().map(|p| format!("SELECT citus_check_connection_to_node('127.0.0.1', {p});")).collect();
                    let out = run_psql(ctx, from, user, database, Some(super::PASSWORD), &[&sql])?;
                    let answers: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                    if answers.len() != others.len() || answers.iter().any(|a| *a != "t") {
                        bail!("all-pairs check from 127.0.0.1:{from}: expected {} times `t`, got {answers:?}", others.len());
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("all-pairs thread")).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    citus_io::all_nodes(results).context("bare all-pairs check")?;
    Ok(secs)
}

/// `pg_isready -h 127.0.0.1 -p port`: true when the server accepts connections.
fn ready(ctx: &Ctx, port: u16) -> bool {
    let exe = ctx.bin_dir.join("pg_isready");
    let exe = if exe.exists() { exe } else { PathBuf::from("pg_isready") };
    Command::new(exe).args(["-q", "-h", "127.0.0.1", "-t", "2", "-p", &port.to_string()]).stdin(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// One `psql` with the bench password to 127.0.0.1:`port` as `user`; `sql` as one `-c`.
fn psql_login(ctx: &Ctx, port: u16, user: &str, sql: &str) -> anyhow::Result<()> {
    run_psql(ctx, port, user, "postgres", Some(super::PASSWORD), &[sql]).map(drop)
}

/// Runs a command with its output in a file (never a pipe: `pg_ctl start` leaves a server
/// behind that would hold a pipe open).
fn run_logged(mut c: Command, out: &Path, what: &str) -> anyhow::Result<()> {
    let f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let status = c.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f).status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}): {}", fs::read_to_string(out).unwrap_or_default().trim());
    }
    Ok(())
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("last lines of {}:\n    {}", log.display(), lines[lines.len().saturating_sub(10)..].join("\n    "))
}

/// One `psql` over TCP to 127.0.0.1 as the bootstrap superuser (trust auth, so no password),
/// each statement as its own `-c`. Returns stdout.
pub(crate) fn psql(ctx: &Ctx, port: u16, statements: &[String]) -> anyhow::Result<String> {
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    run_psql(ctx, port, &ctx.run_as.name, "postgres", None, &statements)
}

/// One `psql` to `database` on 127.0.0.1:`port` as `user` (with `password`, else none),
/// each statement as its own `-c`, none of the caller's `PG*` variables. Returns stdout.
fn run_psql(ctx: &Ctx, port: u16, user: &str, database: &str, password: Option<&str>, statements: &[&str]) -> anyhow::Result<String> {
    let mut c = Command::new(&ctx.psql);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            c.env_remove(k);
        }
    }
    c.args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-d", database, "-U", user])
        .arg("-p")
        .arg(port.to_string())
        .env("PGCONNECT_TIMEOUT", "2");
    if let Some(pw) = password {
        c.env("PGPASSWORD", pw);
    }
    for s in statements {
        c.arg("-c").arg(s);
    }
    let out = c.stdin(Stdio::null()).output().context("starting psql")?;
    if !out.status.success() {
        bail!("psql on 127.0.0.1:{port} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
