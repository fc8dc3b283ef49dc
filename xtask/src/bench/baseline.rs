//! The bare baseline: what a short shell script does with the same PostgreSQL and Citus
//! binaries, written here so that it runs identically everywhere. Per node, in parallel:
//! `initdb --no-sync --auth=trust`, citus in `shared_preload_libraries` and `fsync = off`
//! appended to postgresql.conf, `pg_ctl -w start`, `psql -c 'CREATE EXTENSION citus'`; then
//! one `psql` on the coordinator with one `citus_add_node` per worker. Stop: `pg_ctl -m
//! immediate -w stop` per node, in parallel.

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
    /// `SELECT citus_version()` on the coordinator, when asked for (not timed).
    pub(crate) citus_version: Option<String>,
}

struct NodeDir {
    dir: PathBuf,
    pgdata: PathBuf,
    port: u16,
}

/// Runs one baseline cycle of 1 coordinator + `workers` workers in a fresh folder, which is
/// deleted afterwards (with any server left running, on an error path).
pub(crate) fn cycle(ctx: &Ctx, workers: usize, label: &str, want_version: bool) -> anyhow::Result<Sample> {
    let dir = ctx.root.join(format!("base-{label}"));
    procs::open_dir(&dir)?;
    let _guard = Scratch::new(vec![dir.clone()]);
    let ports = procs::free_ports(workers + 1)?;
    let nodes: Vec<NodeDir> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let d = dir.join(format!("node{i}"));
            NodeDir { pgdata: d.join("pgdata"), dir: d, port }
        })
        .collect();

    let t0 = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes.iter().map(|n| s.spawn(move || node_up(ctx, n))).collect();
        hs.into_iter().map(|h| h.join().expect("baseline node thread")).collect()
    });
    let errs: Vec<String> = results.into_iter().filter_map(Result::err).map(|e| format!("{e:#}")).collect();
    if !errs.is_empty() {
        bail!("baseline 1+{workers}: {}", errs.join("\n"));
    }
    let mut sql = Vec::new();
    for n in &nodes[1..] {
        sql.push(format!("SELECT citus_add_node('127.0.0.1', {})", n.port));
    }
    if !sql.is_empty() {
        psql(ctx, nodes[0].port, &sql).context("baseline: citus_add_node on the coordinator")?;
    }
    let up = t0.elapsed().as_secs_f64();

    let citus_version = if want_version { psql(ctx, nodes[0].port, &["SELECT citus_version()".to_string()]).ok().map(|s| s.trim().to_string()) } else { None };

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
    let errs: Vec<String> = results.into_iter().filter_map(Result::err).map(|e| format!("{e:#}")).collect();
    if !errs.is_empty() {
        bail!("baseline 1+{workers}: {}", errs.join("\n"));
    }
    Ok(Sample { up, stop, citus_version })
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
    let mut c = Command::new(&ctx.psql);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            c.env_remove(k);
        }
    }
    c.args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-d", "postgres"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-U")
        .arg(&ctx.run_as.name);
    for s in statements {
        c.arg("-c").arg(s);
    }
    let out = c.stdin(Stdio::null()).output().context("starting psql")?;
    if !out.status.success() {
        bail!("psql on 127.0.0.1:{port} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
