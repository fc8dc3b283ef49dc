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

/// How long `down`, on either backend, waits for a node's clean shutdown before it names the
/// node as still stopping (a local server by its pid, a container by its id).
pub(crate) const STILL_STOPPING_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// The end of the line `setup` prints, on either backend, for a node this tool started whose
/// server is not running: the fix, and that `setup` waits anyway (an `up` may be starting it).
pub(crate) fn up_starts_it(cluster: &citus_config::Cluster) -> String {
    format!("`cargo xtask up` starts it (waiting up to {} s for one to start meanwhile)", cluster.ready_timeout_secs)
}

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

/// A new self-signed certificate for one node, in memory: `(key, certificate)` as PEM. A P-256
/// key (`openssl genpkey`, ~10 ms) where Citus would make an RSA-2048 one (0.1-0.5 s of CPU),
/// common name `citus-auto-ssl` as Citus's, 10 years. Both backends use it: the local one
/// writes the files into a new data directory itself, the docker one has the server write
/// them. Fails when `openssl` does, or when its output is not the
/// PEM text the caller can pass on as it is (letters, digits, `+/=`, `-`, blanks, newlines).
pub(crate) fn p256_certificate(openssl: &std::path::Path) -> anyhow::Result<(String, String)> {
    let run = |args: &[&str], input: &[u8]| -> anyhow::Result<String> {
        let out = duct::cmd(openssl, args).stdin_bytes(input).stdout_capture().stderr_capture().unchecked().run()?;
        if !out.status.success() {
            anyhow::bail!("`openssl {}` failed ({}): {}", args[0], out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        let pem = String::from_utf8(out.stdout).map_err(|_| anyhow::anyhow!("`openssl {}` printed no PEM text", args[0]))?;
        if !pem.starts_with("-----BEGIN ") || !pem.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=- \n".contains(&b)) {
            anyhow::bail!("`openssl {}` printed something other than one PEM block", args[0]);
        }
        Ok(pem)
    };
    let key = run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], b"")?;
    let crt = run(&["req", "-new", "-x509", "-key", "/dev/stdin", "-subj", "/CN=citus-auto-ssl", "-days", "3650"], key.as_bytes())?;
    Ok((key, crt))
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
    /// The server could not listen on its host: the name does not resolve, or is no address of
    /// this machine (`listen_addresses` is the node's client host on the local backend).
    HostNotHere,
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
        // Only when no address could be listened on (see HostNotHere below).
        if log.contains("Address already in use") && log.contains("could not create any TCP/IP sockets") {
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
        // Only when no address could be listened on: a server that cannot bind one of
        // `localhost`'s (no ::1 without IPv6) says so at every start and runs on the other.
        if log.contains("could not create any TCP/IP sockets")
            && (log.contains("could not translate host name") || log.contains("Cannot assign requested address"))
        {
            return Some(StartFailure::HostNotHere);
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

/// The outcome of a settings check on each of `nodes`, in order (`Ok(Some(lines))`: the
/// server refused, and printed these): the error to fail with, if any. Refusals are grouped by
/// [`settings_refused`]; a check that could not run at all is added after them, so that
/// neither hides the other.
pub(crate) fn settings_outcome(
    cluster: &citus_config::Cluster,
    nodes: &[&citus_config::Node],
    results: Vec<anyhow::Result<Option<String>>>,
    kept: &str,
    again: &str,
    files: impl Fn(&citus_config::Node) -> String,
) -> anyhow::Result<()> {
    let mut refusals = Vec::new();
    let mut failed = Vec::new();
    for (node, r) in nodes.iter().zip(results) {
        match r {
            Ok(None) => {}
            Ok(Some(lines)) => refusals.push((*node, lines)),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    let mut entries: Vec<String> = Vec::new();
    if !refusals.is_empty() {
        entries.push(settings_refused(cluster, &refusals, kept, again, files).to_string());
    }
    entries.extend(failed);
    if entries.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", entries.join("\n"))
    }
}

/// A server's log line without what `log_line_prefix` put before its severity (the default
/// `%m [%p] `: a time and a process id), so that the same refusal reads the same on every node.
fn without_prefix(line: &str) -> &str {
    const SEVERITIES: [&str; 8] = ["FATAL:  ", "PANIC:  ", "ERROR:  ", "WARNING:  ", "LOG:  ", "DETAIL:  ", "HINT:  ", "CONTEXT:  "];
    SEVERITIES.iter().filter_map(|s| line.find(s)).min().map_or(line, |i| &line[i..])
}

/// The error of a settings check that the servers failed (`postgres -C` with the config's
/// `[settings]`, before any node stops), from each refusing node and what its server printed:
/// what was left alone (`kept`), the server's lines indented, and the fix:
/// [`StartFailure::settings_fix`] when the server names one of the config's settings, else to
/// correct what the lines name in the config or in the node's files (`files`). Nodes whose
/// servers said the same (their lines without the log prefix) and get the same fix share one
/// entry that names them all, so a setting every node refuses is told once, not once per node.
fn settings_refused(
    cluster: &citus_config::Cluster,
    refusals: &[(&citus_config::Node, String)],
    kept: &str,
    again: &str,
    files: impl Fn(&citus_config::Node) -> String,
) -> anyhow::Error {
    // (nodes, the server's lines, fix), in the order of the first node of each.
    let mut groups: Vec<(Vec<&str>, String, String)> = Vec::new();
    for (node, stderr) in refusals {
        let fix = StartFailure::read(stderr)
            .and_then(|f| f.settings_fix(cluster, again))
            .unwrap_or_else(|| format!("correct what the lines above name in {} or in {}, then run `{again}` again", cluster.source.display(), files(node)));
        let said = stderr.trim().lines().map(|l| format!("    {}", without_prefix(l))).collect::<Vec<_>>().join("\n");
        match groups.iter_mut().find(|(_, s, f)| *s == said && *f == fix) {
            Some((nodes, _, _)) => nodes.push(&node.name),
            None => groups.push((vec![&node.name], said, fix)),
        }
    }
    let entries: Vec<String> = groups
        .into_iter()
        .map(|(nodes, said, fix)| {
            let whose = match nodes.as_slice() {
                [one] => format!("node {one}: its server"),
                many => format!("nodes {}: their servers", many.join(", ")),
            };
            format!("{whose} would not start with the config's settings, so {kept}; `postgres -C` said:\n{said}\n    fix: {fix}")
        })
        .collect();
    anyhow::anyhow!("{}", entries.join("\n"))
}

/// A progress sink that drops every line.
pub fn quiet(_: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_certificate_is_one_p256_key_and_its_certificate_each_time() {
        // ci/test.sh installs openssl; the local backend's tests need it too.
        let openssl = which::which("openssl").expect("openssl on PATH");
        let (key, crt) = p256_certificate(&openssl).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n") && key.ends_with("-----END PRIVATE KEY-----\n"), "{key}");
        assert!(crt.starts_with("-----BEGIN CERTIFICATE-----\n") && crt.ends_with("-----END CERTIFICATE-----\n"), "{crt}");
        let text = duct::cmd(&openssl, ["x509", "-noout", "-text"]).stdin_bytes(crt.as_bytes()).read().unwrap();
        assert!(text.contains("ASN1 OID: prime256v1") && text.contains("Subject: CN = citus-auto-ssl"), "{text}");
        // The certificate is of this key.
        let public = |args: &[&str], input: &str| duct::cmd(&openssl, args).stdin_bytes(input.as_bytes()).read().unwrap();
        assert_eq!(public(&["pkey", "-pubout"], &key), public(&["x509", "-noout", "-pubkey"], &crt));
        assert_ne!(p256_certificate(&openssl).unwrap().0, key, "each node its own key");
    }

    #[test]
    fn a_failing_or_foreign_openssl_is_an_error_naming_it() {
        let e = p256_certificate("/bin/false".as_ref()).unwrap_err().to_string();
        assert!(e.starts_with("`openssl genpkey` failed (exit status: 1)"), "{e}");
        // Something that prints what is not PEM (here the arguments it was given).
        let e = p256_certificate("/bin/echo".as_ref()).unwrap_err().to_string();
        assert_eq!(e, "`openssl genpkey` printed something other than one PEM block");
    }

    const CONFIG: &str = "database = \"db\"\n[coordinator]\nname = \"c\"\nport = 5600\n[[workers]]\nname = \"w1\"\nport = 5601\n[[workers]]\nname = \"w2\"\nport = 5602\n[settings]\nwork_mem = \"100TB\"\n";

    #[test]
    fn the_same_refusal_on_every_node_is_told_once_and_another_one_apart() {
        let cluster = citus_config::Cluster::parse(CONFIG, "citus.toml".as_ref()).unwrap();
        let nodes: Vec<_> = cluster.nodes().collect();
        let refused = |pid: u32| {
            format!(
                "2026-12-02 05:24:28.{pid} GMT [{pid}] FATAL:  invalid value for parameter \"work_mem\": \"100TB\"\n2026-12-02 05:24:28.{pid} GMT [{pid}] HINT:  Value exceeds integer range.\n"
            )
        };
        // w1's own postgresql.auto.conf holds a bad value too: another message, another fix.
        let own = "2026-12-02 05:24:28.1 GMT [7] LOG:  invalid value for parameter \"work_mem\": \"zz\"\n2026-12-02 05:24:28.1 GMT [7] FATAL:  configuration file \"/d/w1/postgresql.auto.conf\" contains errors\n";
        let refusals = vec![(nodes[0], refused(31924)), (nodes[1], own.to_string()), (nodes[2], refused(31912))];
        let e = settings_refused(&cluster, &refusals, "no node was restarted", "cargo xtask up --restart", |n| format!("{}'s files", n.name)).to_string();
        assert_eq!(
            e,
            "nodes c, w2: their servers would not start with the config's settings, so no node was restarted; `postgres -C` said:\n    \
             FATAL:  invalid value for parameter \"work_mem\": \"100TB\"\n    HINT:  Value exceeds integer range.\n    \
             fix: the server refuses `work_mem = '100TB'` of [settings] in citus.toml (the lines above say why): correct or remove it, then run `cargo xtask up --restart` again (the data is kept)\n\
             node w1: its server would not start with the config's settings, so no node was restarted; `postgres -C` said:\n    \
             LOG:  invalid value for parameter \"work_mem\": \"zz\"\n    FATAL:  configuration file \"/d/w1/postgresql.auto.conf\" contains errors\n    \
             fix: correct what the lines above name in citus.toml or in w1's files, then run `cargo xtask up --restart` again"
        );
    }

    #[test]
    fn a_check_that_could_not_run_is_told_beside_the_refusals() {
        let cluster = citus_config::Cluster::parse(CONFIG, "citus.toml".as_ref()).unwrap();
        let nodes: Vec<_> = cluster.nodes().collect();
        let refused = "FATAL:  invalid value for parameter \"work_mem\": \"100TB\"\n".to_string();
        let results = vec![Ok(Some(refused.clone())), Err(anyhow::anyhow!("node w1: starting postgres -C: No such file")), Ok(None)];
        let e = settings_outcome(&cluster, &nodes, results, "kept", "again", |_| String::new()).unwrap_err().to_string();
        assert!(e.starts_with("node c: its server would not start"), "{e}");
        assert!(e.ends_with("\nnode w1: starting postgres -C: No such file"), "{e}");
        assert!(settings_outcome(&cluster, &nodes, vec![Ok(None), Ok(None), Ok(None)], "kept", "again", |_| String::new()).is_ok());
    }

    #[test]
    fn a_line_without_a_severity_is_kept_whole() {
        assert_eq!(without_prefix("postgres: could not access the server configuration file"), "postgres: could not access the server configuration file");
        assert_eq!(without_prefix("2026-12-02 05:24:28 UTC [1] LOG:  x FATAL:  y"), "LOG:  x FATAL:  y");
    }
}
