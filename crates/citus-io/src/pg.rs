//! PostgreSQL connections to the nodes: connect, classify failures, and wait for readiness.

use std::{
    fmt,
    time::{Duration, Instant},
};

use citus_config::{Address, Cluster, Node};
use postgres::{error::SqlState, Client, NoTls};

use crate::Progress;

/// How to log in to every node.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// Where the password came from, for messages (never the password itself).
    pub origin: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: <from {}> }}", self.user, self.origin)
    }
}

/// Reads the password: the variable named by `password_env`, else `password_file`, else the
/// documented dev default.
pub fn credentials(cluster: &Cluster) -> anyhow::Result<Credentials> {
    let src = &cluster.password;
    let (password, origin) = match std::env::var(&src.env) {
        Ok(v) if !v.is_empty() => (v, format!("${}", src.env)),
        _ => match &src.file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read password_file {}: {e}; fix the path in {} or set ${}", path.display(), cluster.source.display(), src.env)
                })?;
                (text.lines().next().unwrap_or("").to_string(), format!("password_file {}", path.display()))
            }
            None => (citus_config::DEV_PASSWORD.to_string(), format!("the dev default (set ${} to change it)", src.env)),
        },
    };
    if password.is_empty() {
        // Only a password_file gets here: an empty variable counts as unset.
        let file = src.file.as_ref().map_or_else(|| "password_file".to_string(), |p| p.display().to_string());
        let fix = format!("write the password on the first line of {file}, or set ${}", src.env);
        anyhow::bail!(
            "the password from {origin} is empty; PostgreSQL needs a password for {} (config {})\n    fix: {fix}",
            cluster.user,
            cluster.source.display()
        );
    }
    Ok(Credentials { user: cluster.user.clone(), password, origin })
}

/// The coordinator's primary nodes in `pg_dist_node`, by node id: what `setup` plans from and
/// what `verify` checks the config against.
pub fn dist_nodes(c: &mut Client) -> Result<Vec<citus_plan::DistNode>, postgres::Error> {
    let rows = c.query_typed(
        "SELECT nodeid, groupid, nodename, nodeport, isactive, shouldhaveshards FROM pg_dist_node WHERE noderole = 'primary' ORDER BY nodeid",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| citus_plan::DistNode {
            nodeid: r.get(0),
            groupid: r.get(1),
            address: Address::new(r.get::<_, String>(2), u16::try_from(r.get::<_, i32>(3)).unwrap_or(0)),
            isactive: r.get(4),
            shouldhaveshards: r.get(5),
        })
        .collect())
}

/// The columns of a node's own Citus metadata that must match the coordinator's: its group id
/// (`pg_dist_local_group`) and how many nodes its `pg_dist_node` lists.
pub const OWN_METADATA_COLUMNS: &str = "(SELECT groupid FROM pg_dist_local_group), (SELECT count(*) FROM pg_dist_node)";

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered and refused the login: retrying will not help.
    Auth { node: String, address: Address, user: String, origin: String, detail: String },
    /// The database does not exist.
    NoDatabase { node: String, address: Address, database: String, detail: String },
    /// Not reachable (yet): refused, timed out, starting up, shutting down.
    Unreachable { node: String, address: Address, detail: String },
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Auth { node, address, user, origin, detail } => write!(
                f,
                "node {node} at {address}: authentication failed for user {user:?} ({detail}); the password from {origin} is not the one this node has, or its pg_hba.conf rejects this client\n    \
                 fix: give the tool the password the cluster was made with (the variable named by `password_env`, else `password_file`, else the dev default), \
                 or change the role's password on every node to this one; `cargo xtask down --purge` then `up` also starts over with it, but deletes the cluster's data"
            ),
            ConnectError::NoDatabase { node, address, database, detail } => {
                write!(
                    f,
                    "node {node} at {address}: database {database:?} does not exist ({detail}); `cargo xtask setup` creates the cluster's database on every node, and `maintenance_database` in the config must name one that exists (default \"postgres\")"
                )
            }
            ConnectError::Unreachable { node, address, detail } => write!(f, "node {node} at {address}: {detail}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    /// True when waiting longer may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }

    /// True when no server answered: refused, reset, timed out, or a login that overran its
    /// deadline; not a refusal the server gave itself (too many clients, starting up), whose
    /// [`describe`]d detail carries its SQLSTATE.
    pub fn no_answer(&self) -> bool {
        matches!(self, ConnectError::Unreachable { detail, .. } if !detail.contains("(SQLSTATE "))
    }
}

/// Full text of a postgres error, including the server's message and SQLSTATE.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}

thread_local! {
    /// The messages servers send as notices (NOTICE, WARNING) on this thread's connections
    /// while [`with_notices`] runs; `None` otherwise, and then they are dropped.
    static NOTICES: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` and returns its result with the notices the servers sent meanwhile on the
/// connections `f` used, each a message. A notice reaches the callback [`connect`] sets while
/// the client waits in a query, on the thread that called it: the `postgres` crate drives each
/// connection on a runtime of its own inside that call. Citus says only in a WARNING why
/// `citus_check_connection_to_node` returned false.
pub fn with_notices<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let outer = NOTICES.with(|n| n.borrow_mut().replace(Vec::new()));
    let result = f();
    let seen = NOTICES.with(|n| std::mem::replace(&mut *n.borrow_mut(), outer)).unwrap_or_default();
    (result, seen)
}

/// Why Citus could not reach another node, from the WARNING its connection check sent:
/// libpq's message without Citus's `connection to the remote node USER@HOST:PORT failed with
/// the following error: ` before it, on one line.
pub fn peer_failure(notices: &[String]) -> Option<String> {
    const HEAD: &str = "failed with the following error: ";
    let m = notices.iter().find(|m| m.contains(HEAD)).or(notices.last())?;
    let why = m.split_once(HEAD).map_or(m.as_str(), |(_, why)| why);
    Some(why.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Opens one connection to `node`'s client address, in `database`, within `timeout` for the
/// whole login: the client's `connect_timeout` covers only the TCP connect, and a server that
/// accepts connections but does not answer them (a postmaster stopped with SIGSTOP, a paused
/// container, an overloaded machine) would hold the login, and every wait and check behind
/// it, forever. The login runs on a thread of its own, left to end by itself when it overruns.
#[expect(clippy::result_large_err, reason = "a failed login is the rare path; its error carries the node, address and fix")]
pub fn connect(node: &Node, creds: &Credentials, database: &str, timeout: Duration) -> Result<Client, ConnectError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (n, c, db) = (node.clone(), creds.clone(), database.to_string());
    std::thread::spawn(move || {
        // A receiver gone (the login overran) drops the client, which closes the connection.
        let _ = tx.send(login(&n, &c, &db, timeout));
    });
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Unreachable {
            node: node.name.clone(),
            address: node.client.clone(),
            detail: format!(
                "it accepted the connection but did not answer the login within {:.1} s (a server stopped with SIGSTOP, a paused container, or an overloaded machine)",
                timeout.as_secs_f64()
            ),
        }),
    }
}

#[expect(clippy::result_large_err, reason = "as connect")]
fn login(node: &Node, creds: &Credentials, database: &str, timeout: Duration) -> Result<Client, ConnectError> {
    let mut cfg = postgres::Config::new();
    cfg.host(&node.client.host)
        .port(node.client.port)
        .user(&creds.user)
        .password(&creds.password)
        .dbname(database)
        .application_name("citus-xtask")
        .connect_timeout(timeout)
        .notice_callback(|n| {
            NOTICES.with(|seen| {
                if let Some(seen) = seen.borrow_mut().as_mut() {
                    seen.push(n.message().to_string());
                }
            });
        });
    cfg.connect(NoTls).map_err(|e| {
        let detail = describe(&e);
        let code = e.code().cloned();
        if code == Some(SqlState::INVALID_PASSWORD) || code == Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION) {
            ConnectError::Auth { node: node.name.clone(), address: node.client.clone(), user: creds.user.clone(), origin: creds.origin.clone(), detail }
        } else if code == Some(SqlState::INVALID_CATALOG_NAME) {
            ConnectError::NoDatabase { node: node.name.clone(), address: node.client.clone(), database: database.to_string(), detail }
        } else {
            ConnectError::Unreachable { node: node.name.clone(), address: node.client.clone(), detail }
        }
    })
}

/// Waits until `node` accepts a login at its client address, to the first of `databases`
/// that exists, retrying with backoff until `deadline`: the one readiness loop of `up` (both
/// backends) and `setup`. Returns the connection and the index of its database, for reuse.
/// Authentication errors fail at once, as does a missing last database. After each refused
/// attempt, `watch` looks at the server itself (has the process or container exited?) and
/// ends the wait with its error; at the deadline it is called with `timed_out` set and should
/// say why (log tail). Progress: a line when the wait exceeds 300 ms, another every 5 s, and
/// a "ready" line for a node that was not ready at the first attempt.
pub fn wait_started(
    node: &Node,
    creds: &Credentials,
    databases: &[&str],
    deadline: Instant,
    progress: Progress<'_>,
    mut watch: impl FnMut(bool, &ConnectError) -> anyhow::Result<()>,
) -> anyhow::Result<crate::ReadyConn> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(5);
    let mut last_note: Option<Instant> = None;
    let mut refused = false;
    loop {
        // Each attempt's whole login may take up to 10 s (a refused connection returns at
        // once; a slow machine's login still finishes), never much past the deadline.
        let timeout = deadline.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(200), Duration::from_secs(10));
        let mut attempt = Err(ConnectError::Unreachable { node: node.name.clone(), address: node.client.clone(), detail: "no database to try".into() });
        for (i, db) in databases.iter().enumerate() {
            attempt = connect(node, creds, db, timeout).map(|c| (c, i));
            if !matches!(attempt, Err(ConnectError::NoDatabase { .. })) || i + 1 == databases.len() {
                break;
            }
        }
        let e = match attempt {
            Ok(ready) => {
                if refused {
                    progress(&format!("ready: {} at {} ({:.2} s)", node.name, node.client, started.elapsed().as_secs_f64()));
                }
                return Ok(ready);
            }
            Err(e) if !e.is_transient() => return Err(e.into()),
            Err(e) => e,
        };
        refused = true;
        let timed_out = Instant::now() >= deadline;
        watch(timed_out, &e)?;
        if timed_out {
            anyhow::bail!(
                "node {} at {} did not accept a login within {:.0} s; last error: {e}. \
                 Is it running? (`cargo xtask up` starts it; raise [wait] timeout_secs for slow machines)",
                node.name,
                node.client,
                started.elapsed().as_secs_f64()
            );
        }
        let waited = started.elapsed();
        if waited >= Duration::from_millis(300) && last_note.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            progress(&format!("waiting for {} at {} ({:.0} s so far: {})", node.name, node.client, waited.as_secs_f64(), short(&e.to_string())));
            last_note = Some(Instant::now());
        }
        std::thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
        delay = next_delay(delay, started.elapsed());
    }
}

/// Backoff between readiness polls: doubling from 5 ms, but at most 20 ms during the first
/// 3 s (a local server usually starts within 50-150 ms, and a refused connection costs
/// nothing), at most 50 ms until 15 s (a container's first start runs initdb: 3-5 s on 2
/// cores, and each poll after it is ready but not yet seen is lost time), then up to 250 ms.
pub fn next_delay(delay: Duration, waited: Duration) -> Duration {
    let cap = match waited.as_secs() {
        0..3 => Duration::from_millis(20),
        3..15 => Duration::from_millis(50),
        _ => Duration::from_millis(250),
    };
    (delay * 2).min(cap)
}

fn short(s: &str) -> &str {
    let s = s.split_once(": ").map_or(s, |(_, rest)| rest);
    s.lines().next().unwrap_or(s)
}

/// [`wait_started`] for every node in parallel, each with its own list of databases to try
/// and `watch` as its watch, told which node. Results in node order.
pub fn wait_all(
    nodes: &[&Node],
    creds: &Credentials,
    databases: impl Fn(&Node) -> Vec<String> + Sync,
    deadline: Instant,
    progress: Progress<'_>,
    watch: &(dyn Fn(&Node, bool, &ConnectError) -> anyhow::Result<()> + Sync),
) -> Vec<anyhow::Result<crate::ReadyConn>> {
    let databases = &databases;
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| {
                s.spawn(move || {
                    let dbs = databases(n);
                    let refs: Vec<&str> = dbs.iter().map(String::as_str).collect();
                    wait_started(n, creds, &refs, deadline, progress, |timed_out, e| watch(n, timed_out, e))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("wait thread panicked")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_failure_is_libpqs_reason_on_one_line() {
        let warning = "connection to the remote node commcarehq@localhost:5602 failed with the following error: connection to server at \"localhost\" (127.0.0.1), port 5602 failed: FATAL:  password authentication failed for user \"commcarehq\"\n";
        assert_eq!(
            peer_failure(&["some other notice".into(), warning.into()]).as_deref(),
            Some("connection to server at \"localhost\" (127.0.0.1), port 5602 failed: FATAL: password authentication failed for user \"commcarehq\"")
        );
        assert_eq!(peer_failure(&["another\nwarning".into()]).as_deref(), Some("another warning"), "without Citus's words, the last notice");
        assert_eq!(peer_failure(&[]), None);
    }

    #[test]
    fn readiness_backoff_stays_short_while_servers_usually_start() {
        let ms = Duration::from_millis;
        let mut d = ms(5);
        let mut seen = Vec::new();
        for _ in 0..4 {
            d = next_delay(d, ms(100));
            seen.push(d);
        }
        assert_eq!(seen, [ms(10), ms(20), ms(20), ms(20)]);
        assert_eq!(next_delay(ms(20), Duration::from_secs(5)), ms(40));
        assert_eq!(next_delay(ms(40), Duration::from_secs(14)), ms(50));
        assert_eq!(next_delay(ms(50), Duration::from_secs(15)), ms(100));
        assert_eq!(next_delay(ms(200), Duration::from_secs(60)), ms(250));
    }

    #[test]
    fn an_empty_password_file_is_named_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("citus-io-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "\nsecond line\n").unwrap();
        let text = format!(
            "database = \"d\"\npassword_env = \"CITUS_IO_TEST_UNSET_{}\"\npassword_file = {:?}\n[coordinator]\nname = \"c\"\nport = 5600\n",
            std::process::id(),
            file.display().to_string()
        );
        let cluster = Cluster::parse(&text, &dir.join("citus.toml")).unwrap();
        let e = credentials(&cluster).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.starts_with(&format!("the password from password_file {} is empty", file.display())), "{e}");
        assert!(e.contains(&format!("fix: write the password on the first line of {}, or set $CITUS_IO_TEST_UNSET_", file.display())), "{e}");
    }
}
