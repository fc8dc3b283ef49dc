//! `cargo xtask psql`: psql on one node of the cluster, in its database as its user, with the
//! password in psql's environment (`PGPASSWORD`), never on a command line.
//!
//! The host's `psql` (on `PATH`; for the local backend, else the one in `[local] bin_dir`)
//! connects to the node's client address, which works for both backends (Docker publishes the
//! client ports). Without one, a Docker node's own `psql`
//! runs inside its container (`docker exec`), so nothing has to be installed for that backend.

use std::{
    ffi::{OsStr, OsString},
    io::IsTerminal,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context};
use citus_config::{Backend, Cluster, Node};

use crate::{docker, pg, Progress};

/// Which psql runs, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Psql {
    /// The host's psql, connecting to the node's client address.
    Host(PathBuf),
    /// The psql inside the node's running container (its id), connecting to the server there.
    Container(String),
}

/// The psql for `node`: the host's when `host_psql` is one, else (Docker only) the one in the
/// node's running container.
pub fn choose(cluster: &Cluster, backend: Backend, node: &Node, host_psql: Option<PathBuf>) -> anyhow::Result<Psql> {
    if let Some(p) = host_psql {
        return Ok(Psql::Host(p));
    }
    if backend == Backend::Local {
        let beside = match crate::local::detect(cluster) {
            Ok(l) => format!("nor beside the servers in {}", l.bin_dir.display()),
            Err(e) => format!("and no server binaries were found to look beside ({e:#})"),
        };
        bail!("no `psql` on PATH, {beside}: install the PostgreSQL client (Debian: `apt-get install postgresql-client`), or set [local] bin_dir in {} to a folder that has it", cluster.source.display());
    }
    let containers = docker::containers(cluster)?;
    match containers.iter().find(|c| c.service == node.name && c.state == "running") {
        Some(c) => Ok(Psql::Container(c.id.clone())),
        None => bail!(
            "no `psql` on PATH, and node {} has no running container in project {} to run its own: start the cluster (`cargo xtask up`) or install the PostgreSQL client",
            node.name,
            docker::project_name(cluster)
        ),
    }
}

/// How [`run`] starts psql on `node`: the program, its arguments (`extra` last: psql's own)
/// and the variables it sets. Where to connect goes in libpq's variables, not in `-d`, which
/// psql would read as a connection string if the database name had an `=` in it. The password
/// is not here: [`run`] adds `PGPASSWORD` to the child's environment.
pub fn command(
    cluster: &Cluster,
    node: &Node,
    user: &str,
    psql: &Psql,
    extra: &[OsString],
    tty: bool,
) -> (OsString, Vec<OsString>, Vec<(&'static str, String)>) {
    let who = [("PGUSER", user.to_string()), ("PGDATABASE", cluster.database.clone())];
    let (program, mut args, env) = match psql {
        Psql::Host(p) => {
            let env = [("PGHOST", node.client.host.clone()), ("PGPORT", node.client.port.to_string())].into_iter().chain(who).collect();
            (p.clone().into_os_string(), Vec::new(), env)
        }
        Psql::Container(id) => {
            // `-e NAME` without a value: docker copies it from its own environment, so the
            // user, database and password are not in docker's arguments either.
            let mut args: Vec<OsString> = ["exec", "-i"].map(OsString::from).to_vec();
            if tty {
                args.push("-t".into());
            }
            args.extend(
                ["-e", "PGHOST=127.0.0.1", "-e", "PGPORT=5432", "-e", "PGUSER", "-e", "PGDATABASE", "-e", "PGPASSWORD", "-e", "PGAPPNAME", id.as_str(), "psql"]
                    .map(OsString::from),
            );
            ("docker".into(), args, who.into_iter().chain([("PGAPPNAME", application_name())]).collect())
        }
    };
    args.extend(extra.iter().cloned());
    (program, args, env)
}

/// Runs psql on `node` with the terminal attached and returns its exit code.
pub fn run(cluster: &Cluster, backend: Backend, node: &Node, creds: &pg::Credentials, extra: &[OsString], progress: Progress<'_>) -> anyhow::Result<i32> {
    // On PATH, else (local backend) the one beside the servers, e.g. a self-built PostgreSQL's.
    let beside_servers = || {
        let p = (backend == Backend::Local).then(|| crate::local::detect(cluster).ok())??.bin_dir.join("psql");
        p.is_file().then_some(p)
    };
    let psql = choose(cluster, backend, node, which::which("psql").ok().or_else(beside_servers))?;
    let (db, user) = (&cluster.database, &creds.user);
    progress(&match &psql {
        Psql::Host(p) => format!("psql: {} at {}, database {db:?} as {user:?} ({})", node.name, node.client, p.display()),
        Psql::Container(id) => format!("psql: {} in its container {id} (no psql on PATH), database {db:?} as {user:?}", node.name),
    });
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let (program, args, env) = command(cluster, node, user, &psql, extra, tty);
    let mut cmd = duct::cmd(&program, &args).env("PGPASSWORD", &creds.password).unchecked();
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let child = cmd.start().with_context(|| format!("running {}", OsStr::new(&program).to_string_lossy()))?;
    // Without a terminal, `docker exec` (no `-t`) passes no signal on: at Ctrl-C the docker CLI
    // exits and psql's query runs on in the container. So here Ctrl-C cancels that query
    // itself, as psql would, through a connection of its own to the node.
    let cancels = matches!(psql, Psql::Container(_)) && !tty;
    let (status, cancelled) = {
        let _psqls = TerminalSignalsGoToTheChild::new(cancels);
        if cancels {
            let done = AtomicBool::new(false);
            std::thread::scope(|s| {
                let watcher = s.spawn(|| {
                    let mut cancelled = false;
                    while !done.load(Ordering::SeqCst) {
                        if CTRL_C.swap(false, Ordering::SeqCst) {
                            cancel(cluster, node, creds, progress);
                            cancelled = true;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    cancelled
                });
                let status = child.wait().map(|o| o.status);
                done.store(true, Ordering::SeqCst);
                let mut cancelled = watcher.join().expect("the Ctrl-C watcher does not panic");
                // The Ctrl-C that reached the whole foreground group ended the docker CLI too,
                // maybe before the watcher saw it.
                if CTRL_C.swap(false, Ordering::SeqCst) {
                    cancel(cluster, node, creds, progress);
                    cancelled = true;
                }
                (status, cancelled)
            })
        } else {
            (child.wait().map(|o| o.status), false)
        }
    };
    let code = status?.code().unwrap_or(1);
    // Interrupted: the shell's code for SIGINT, unless psql itself said otherwise.
    Ok(if cancelled && code == 0 { 130 } else { code })
}

/// What a container's psql calls itself (`application_name`), so that [`cancel`] finds its
/// session and no other.
fn application_name() -> String {
    format!("citus-xtask psql {}", std::process::id())
}

/// Set by the SIGINT handler of [`TerminalSignalsGoToTheChild`] (container psql, no terminal).
static CTRL_C: AtomicBool = AtomicBool::new(false);

extern "C" fn on_ctrl_c(_: libc::c_int) {
    CTRL_C.store(true, Ordering::SeqCst);
}

/// Cancels the running query of this run's psql in `node`'s container (`pg_cancel_backend` on
/// its session, found by [`application_name`]), saying what it did.
fn cancel(cluster: &Cluster, node: &Node, creds: &pg::Credentials, progress: Progress<'_>) {
    let app = application_name();
    let sql = "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND pid <> pg_backend_pid()";
    let done = pg::connect(node, creds, &cluster.database, std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())
        .and_then(|mut c| c.query_one(sql, &[&app]).map(|r| r.get::<_, i64>(0)).map_err(|e| pg::describe(&e)));
    progress(&match done {
        Ok(0) => format!("psql: Ctrl-C: no query of this psql was running on {} (docker exec without a terminal passes no signal on)", node.name),
        Ok(_) => format!("psql: Ctrl-C: cancelled the running query on {} (docker exec without a terminal passes no signal on)", node.name),
        Err(e) => format!(
            "psql: Ctrl-C: could not cancel the query on {} at {} ({e}); it may still run there: SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = {}",
            node.name,
            node.client,
            postgres_protocol::escape::escape_literal(&app)
        ),
    });
}

/// While psql has the terminal, Ctrl-C (SIGINT, which cancels psql's running query) and
/// Ctrl-\ (SIGQUIT) reach every process in the foreground group, this one too: it ignores
/// them until psql exits, as a shell does while its foreground job runs, instead of dying and
/// leaving psql behind without its parent. Set after the child started, so psql keeps its own.
/// With `cancels` (a container's psql without a terminal), SIGINT sets [`CTRL_C`] instead, and
/// `run` cancels the query.
struct TerminalSignalsGoToTheChild {
    int: libc::sighandler_t,
    quit: libc::sighandler_t,
}

impl TerminalSignalsGoToTheChild {
    fn new(cancels: bool) -> Self {
        CTRL_C.store(false, Ordering::SeqCst);
        let on_int = if cancels { on_ctrl_c as extern "C" fn(libc::c_int) as libc::sighandler_t } else { libc::SIG_IGN };
        // SAFETY: the handler only stores to an atomic (async-signal-safe); SIG_IGN installs
        // no code. The previous dispositions are put back on drop.
        unsafe { TerminalSignalsGoToTheChild { int: libc::signal(libc::SIGINT, on_int), quit: libc::signal(libc::SIGQUIT, libc::SIG_IGN) } }
    }
}

impl Drop for TerminalSignalsGoToTheChild {
    fn drop(&mut self) {
        // SAFETY: restores the dispositions `new` read.
        unsafe {
            libc::signal(libc::SIGINT, self.int);
            libc::signal(libc::SIGQUIT, self.quit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let text = "name = \"c\"\ndatabase = \"d=b\"\nuser = \"u\"\n[coordinator]\nname = \"m\"\nport = 5600\n[[workers]]\nname = \"w1\"\nport = 5601\nhost = \"127.0.0.2\"\n";
        Cluster::parse(text, "citus.toml".as_ref()).unwrap()
    }

    fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn the_host_psql_connects_to_the_client_address() {
        let c = cluster();
        let w = c.node("w1").unwrap();
        let (program, args, env) = command(&c, w, "u", &Psql::Host("/usr/bin/psql".into()), &["-c".into(), "SELECT 1".into()], false);
        assert_eq!(program, "/usr/bin/psql");
        assert_eq!(strings(&args), ["-c", "SELECT 1"]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(env, [("PGHOST", "127.0.0.2"), ("PGPORT", "5601"), ("PGUSER", "u"), ("PGDATABASE", "d=b")]);
    }

    #[test]
    fn the_container_psql_gets_everything_from_the_environment_and_a_tty_only_when_asked() {
        let c = cluster();
        let m = c.node("m").unwrap();
        let (program, args, env) = command(&c, m, "u", &Psql::Container("abc123".into()), &[], true);
        assert_eq!(program, "docker");
        assert_eq!(
            strings(&args),
            [
                "exec",
                "-i",
                "-t",
                "-e",
                "PGHOST=127.0.0.1",
                "-e",
                "PGPORT=5432",
                "-e",
                "PGUSER",
                "-e",
                "PGDATABASE",
                "-e",
                "PGPASSWORD",
                "-e",
                "PGAPPNAME",
                "abc123",
                "psql"
            ]
        );
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let app = format!("citus-xtask psql {}", std::process::id());
        assert_eq!(env, [("PGUSER", "u"), ("PGDATABASE", "d=b"), ("PGAPPNAME", app.as_str())]);
        let (_, args, _) = command(&c, m, "u", &Psql::Container("abc123".into()), &[], false);
        assert!(!strings(&args).contains(&"-t".to_string()));
    }

    #[test]
    fn a_local_cluster_without_psql_is_told_how_to_get_it() {
        let c = cluster();
        let e = choose(&c, Backend::Local, &c.coordinator, None).unwrap_err().to_string();
        assert!(e.contains("no `psql` on PATH") && e.contains("postgresql-client"), "{e}");
    }
}
