//! The one crate that does IO for a Citus cluster: PostgreSQL connections, readiness,
//! applying the setup plan, verification, and the local-process and docker backends.
//!
//! The pure crates decide *what* (`citus-config`, `citus-plan`, `citus-compose`); this crate
//! does it. Other tooling can reuse it: e.g. `setup::run` against nodes it started itself.
//!
//! Progress goes through a [`Progress`] callback (one line per event); results come back
//! as values. Errors name the node, its address and the likely fix.

pub mod docker;
pub mod guc;
pub mod local;
pub mod pg;
pub mod psql;
pub mod scram;
pub mod setup;
pub mod state;
pub mod status;
pub mod verify;

/// Receives one human-readable progress line at a time (the xtask prints them to stderr).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// The connection a node accepted when it was seen ready, with the index of its database in
/// `[database, maintenance_database]`.
pub type ReadyConn = (postgres::Client, usize);

/// Each node's [`ReadyConn`] from `up`, in node order (coordinator first): `setup` reuses them
/// instead of logging in again (see [`setup::Conns::from_ready`]).
pub type Ready = Vec<ReadyConn>;

/// Called by `up` on a node's own thread with the connection that proved ready, for each
/// server that `up` started; returns the connection to keep (see [`setup::first_steps`]).
pub type OnStarted<'a> = &'a (dyn Fn(&citus_config::Node, ReadyConn) -> anyhow::Result<ReadyConn> + Sync);

/// Per-node results in node order: every value, or one error listing every node that failed.
pub fn all_nodes<T>(results: Vec<anyhow::Result<T>>) -> anyhow::Result<Vec<T>> {
    let mut ok = Vec::with_capacity(results.len());
    let mut errs = Vec::new();
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => errs.push(format!("{e:#}")),
        }
    }
    if errs.is_empty() {
        Ok(ok)
    } else {
        anyhow::bail!("{}", errs.join("\n"))
    }
}

/// Why a PostgreSQL server exited while starting, as its log says (the causes both backends
/// turn into a fix).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartFailure<'a> {
    /// `could not access file "LIB"`: a library of `shared_preload_libraries` is not installed.
    MissingLibrary(&'a str),
    /// `database files are incompatible with server`, with the major version that made the
    /// data when the log names it.
    OtherMajor(Option<&'a str>),
    /// The server could not listen on its port (another program took it).
    PortTaken,
    /// The server refused a setting: `unrecognized configuration parameter "NAME"`, `invalid
    /// value for parameter "NAME"` and the like, with the setting's name.
    BadSetting(&'a str),
}

impl<'a> StartFailure<'a> {
    pub(crate) fn read(log: &'a str) -> Option<StartFailure<'a>> {
        if let Some(lib) = log.split("could not access file \"").nth(1).and_then(|r| r.split('"').next()) {
            return Some(StartFailure::MissingLibrary(lib));
        }
        if log.contains("database files are incompatible with server") {
            let made_by = log
                .split("initialized by PostgreSQL version ")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit() && c != '.').next())
                .filter(|v| !v.is_empty());
            return Some(StartFailure::OtherMajor(made_by));
        }
        if log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets") {
            return Some(StartFailure::PortTaken);
        }
        // The server's phrases for a setting it refuses (and not the same name in ALTER SYSTEM's
        // file, which the log then names: the generic fix points there).
        if !log.contains("postgresql.auto.conf") {
            // An extension only warns about its own settings: those lines are no refusal.
            for line in log.lines().filter(|l| !l.contains("WARNING:")) {
                let after = |phrase: &str| line.split(phrase).nth(1).and_then(|r| r.split('"').next()).filter(|n| !n.is_empty());
                let name = after("unrecognized configuration parameter \"")
                    .or_else(|| after("invalid value for parameter \""))
                    .or_else(|| after("is outside the valid range for parameter \""))
                    .or_else(|| if line.contains("\" requires a ") { after("parameter \"") } else { None });
                if let Some(name) = name {
                    return Some(StartFailure::BadSetting(name));
                }
            }
        }
        None
    }

    /// For a setting the server refused, what to do when it is one of the config's
    /// `[settings]` (`None` otherwise: the setting came from elsewhere); `again` is the command
    /// to run once it is corrected.
    pub(crate) fn settings_fix(&self, cluster: &citus_config::Cluster, again: &str) -> Option<String> {
        let StartFailure::BadSetting(name) = self else { return None };
        let lower = name.to_ascii_lowercase();
        cluster.settings.iter().find(|s| s.name == lower).map(|s| {
            format!(
                "the server refuses `{} = '{}'` of [settings] in {} (the lines above say why): correct or remove it, then run `{again}` again (the data is kept)",
                s.name,
                s.value,
                cluster.source.display()
            )
        })
    }
}

/// The error of a settings check that the server failed (`postgres -C` with the config's
/// `[settings]`, before any node stops): the node, what was left alone (`kept`), the server's
/// lines indented, and the fix: [`StartFailure::settings_fix`] when the server names one of
/// the config's settings, else to correct what the lines name in the config or in `files`.
pub(crate) fn settings_refused(
    cluster: &citus_config::Cluster,
    node: &citus_config::Node,
    stderr: &str,
    kept: &str,
    again: &str,
    files: &str,
) -> anyhow::Error {
    let fix = StartFailure::read(stderr)
        .and_then(|f| f.settings_fix(cluster, again))
        .unwrap_or_else(|| format!("correct what the lines above name in {} or in {files}, then run `{again}` again", cluster.source.display()));
    anyhow::anyhow!(
        "node {}: its server would not start with the config's settings, so {kept}; `postgres -C` said:\n{}\n    fix: {fix}",
        node.name,
        stderr.trim().lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
    )
}

/// A progress sink that drops every line.
pub fn quiet(_: &str) {}
