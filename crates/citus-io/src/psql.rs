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
                ["-e", "PGHOST=127.0.0.1", "-e", "PGPORT=5432", "-e", "PGUSER", "-e", "PGDATABASE", "-e", "PGPASSWORD", id.as_str(), "psql"]
                    .map(OsString::from),
            );
            ("docker".into(), args, who.into_iter().collect())
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
    let out = {
        let _psqls = TerminalSignalsGoToTheChild::new();
        child.wait()?.status
    };
    Ok(out.code().unwrap_or(1))
}

/// While psql has the terminal, Ctrl-C (SIGINT, which cancels psql's running query) and
/// Ctrl-\ (SIGQUIT) reach every process in the foreground group, this one too: it ignores
/// them until psql exits, as a shell does while its foreground job runs, instead of dying and
/// leaving psql behind without its parent. Set after the child started, so psql keeps its own.
struct TerminalSignalsGoToTheChild {
    int: libc::sighandler_t,
    quit: libc::sighandler_t,
}

impl TerminalSignalsGoToTheChild {
    fn new() -> Self {
        // SAFETY: signal() with SIG_IGN installs no handler code; the previous dispositions
        // are put back on drop.
        unsafe { TerminalSignalsGoToTheChild { int: libc::signal(libc::SIGINT, libc::SIG_IGN), quit: libc::signal(libc::SIGQUIT, libc::SIG_IGN) } }
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
            ["exec", "-i", "-t", "-e", "PGHOST=127.0.0.1", "-e", "PGPORT=5432", "-e", "PGUSER", "-e", "PGDATABASE", "-e", "PGPASSWORD", "abc123", "psql"]
        );
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(env, [("PGUSER", "u"), ("PGDATABASE", "d=b")]);
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
