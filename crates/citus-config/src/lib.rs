//! The Citus cluster described in TOML: nodes, addresses, credentials source and backend settings.
//!
//! This crate is pure: [`Cluster::parse`] takes the file's text (and its path, for
//! messages) and returns a validated [`Cluster`] or a [`ConfigError`] that names the
//! file, line and column with a caret under the offending text.
//!
//! Every node has two addresses:
//! - the **client address** (`host`/`port`): what this tool and your tests use, e.g. `localhost:5601`;
//! - the **cluster address**: what the other nodes use to reach it (the seed's
//!   `CITUS_NODE_NAME`, `host:port`). It defaults per [`Backend`]: the service name and
//!   5432 inside a compose network, the client address for local processes; set
//!   `cluster_address` on a node to override it.
//!
//! ```
//! let text = r#"
//! database = "app"
//! [coordinator]
//! name = "coord"
//! port = 5600
//! [[workers]]
//! name = "w1"
//! port = 5601
//! "#;
//! let cluster = citus_config::Cluster::parse(text, "citus.toml".as_ref()).unwrap();
//! let w1 = &cluster.workers[0];
//! assert_eq!(cluster.cluster_address(w1, citus_config::Backend::Docker).to_string(), "w1:5432");
//! assert_eq!(cluster.cluster_address(w1, citus_config::Backend::Local).to_string(), "localhost:5601");
//! ```

use std::{
    collections::BTreeMap,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::Deserialize;
use toml::Spanned;

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The password used when neither `password_env` names a set variable nor `password_file` is given.
/// It is the seed's (CommCare HQ's) development password; never use it outside a dev machine or CI.
pub const DEV_PASSWORD: &str = "commcarehq";

/// Which machinery starts the nodes; it decides the default cluster addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One container per node, from a generated compose file.
    Docker,
    /// `initdb` + `postgres` per node on this machine.
    Local,
}

impl Backend {
    /// The name used on the command line and in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Docker => "docker",
            Backend::Local => "local",
        }
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "docker" => Ok(Backend::Docker),
            "local" => Ok(Backend::Local),
            other => Err(format!("unknown backend `{other}`: expected `docker` or `local`")),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `host:port` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    pub fn new(host: impl Into<String>, port: u16) -> Address {
        Address { host: host.into(), port }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Whether servers listening on `a` and on `b` (each a node's `host`) would take one address:
/// the same name or IP, `localhost` next to 127.0.0.1 or ::1 (it is both), or a wildcard
/// (0.0.0.0, ::) next to an address of its family. Other names are told apart by spelling
/// only (the config is read without name lookups).
fn one_listen_address(a: &str, b: &str) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let trim = |h: &str| h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let addrs = |h: &str| -> Option<Vec<IpAddr>> {
        let h = trim(h);
        if h == "localhost" {
            Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)])
        } else {
            h.parse().ok().map(|ip| vec![ip])
        }
    };
    match (addrs(a), addrs(b)) {
        (Some(x), Some(y)) => x.iter().any(|p| y.iter().any(|q| p == q || (p.is_ipv4() == q.is_ipv4() && (p.is_unspecified() || q.is_unspecified())))),
        _ => trim(a) == trim(b),
    }
}

/// Checks a node's host: an IPv4 or IPv6 address (without brackets) or a host name of ASCII
/// letters, digits, `-` and `_` (compose service names have underscores) in dot-separated
/// labels of 1 to 63 characters, at most 253 in all. The host ends up in a URL
/// (`DATABASE_URL`), a `host:port` list (`CITUS_WORKERS`), the server's `listen_addresses`
/// (local backend) and Citus's `pg_dist_node`, none of which takes anything else.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if inner.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(format!("host `{host}`: write an IPv6 address without brackets (`{inner}`)"));
        }
    }
    if let Some((ip, _)) = host.split_once('%').filter(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok()) {
        return Err(format!("host `{host}`: an IPv6 address with a zone is not supported (it would need escaping in every URL and list): use `{ip}` only if it is not link-local, or a loopback or global address"));
    }
    if host.contains(':') {
        return Err(format!("host `{host}` is neither an IP address nor a host name (is a `:port` part in it? the port is a key of its own)"));
    }
    if !host.is_ascii() {
        return Err(format!("host `{host}` is not ASCII: write an internationalised name in its `xn--` form"));
    }
    if host.len() > 253 {
        return Err(format!("host `{host}` is {} characters long; a host name has at most 253", host.len()));
    }
    // A fully qualified name may end in one dot.
    for label in host.strip_suffix('.').unwrap_or(host).split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("host `{host}` is not a host name: each part between dots has 1 to 63 characters"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(format!("host `{host}` is not a host name: {c:?} is not allowed (letters, digits, `-`, `_` and `.` are)"));
        }
    }
    Ok(())
}

impl FromStr for Address {
    type Err = String;
    /// Parses `host:port` (`[v6]:port` for IPv6 literals), as in the seed's `CITUS_NODE_NAME`;
    /// the host must pass [`check_host`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("`{s}` is not `host:port`"))?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
            _ if host.starts_with('[') => return Err(format!("`{s}`: `{host}` is not an IPv6 address in brackets")),
            _ if host.contains(':') => return Err(format!("`{s}`: an IPv6 address is written in brackets, `[{host}]:{port}`")),
            _ => host,
        };
        if host.is_empty() {
            return Err(format!("`{s}` has an empty host"));
        }
        check_host(host).map_err(|e| format!("`{s}`: {e}"))?;
        let port: u16 = port.parse().map_err(|_| format!("`{s}`: port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(format!("`{s}`: port must be a number from 1 to 65535"));
        }
        Ok(Address::new(host, port))
    }
}

/// Coordinator or worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Worker,
}

/// One PostgreSQL server of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node's name: container/service name (docker), data folder name (local).
    pub name: String,
    pub role: Role,
    /// What this tool and the tests connect to.
    pub client: Address,
    /// Explicit cluster address (the seed's `CITUS_NODE_NAME`); `None` means the backend default.
    pub cluster_address: Option<Address>,
    /// A worker [`Cluster::with_workers`] made beyond the configured ones: not in the file.
    pub derived: bool,
}

/// Where the password comes from. The password itself is never stored in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSource {
    /// Environment variable read first (default `CITUS_PASSWORD`).
    pub env: String,
    /// File read when the variable is unset (first line, without the newline).
    pub file: Option<PathBuf>,
}

/// Settings of the docker backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSettings {
    /// Image of every node.
    pub image: String,
    /// PostgreSQL major version inside the image; decides where the data volume is mounted.
    pub pg_major: u32,
    /// Host address the client ports are published on.
    pub bind: String,
}

impl DockerSettings {
    /// Where the image's PostgreSQL keeps its data: images built on PostgreSQL 18 and later
    /// use `/var/lib/postgresql`, older ones `/var/lib/postgresql/data`.
    pub fn data_mount(&self) -> &'static str {
        if self.pg_major >= 18 {
            "/var/lib/postgresql"
        } else {
            "/var/lib/postgresql/data"
        }
    }
}

/// Settings of the local-process backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    /// Root of the data directories (relative paths are resolved against the config file's folder).
    pub data_dir: PathBuf,
    /// Folder holding `initdb`, `pg_ctl` and `postgres`; `None` means ask `pg_config --bindir`.
    pub bin_dir: Option<PathBuf>,
    /// Development-speed settings (fsync and full_page_writes off). Data survives
    /// `down` and a killed server, not a machine (OS) crash.
    pub dev_speed: bool,
    /// Iteration count of the SCRAM-SHA-256 verifier that new data directories get for the
    /// password (PostgreSQL's own default is 4096). Every login, including each connection
    /// Citus opens between the nodes, pays this many HMAC rounds on the client side.
    pub scram_iterations: u32,
}

/// Default of `[local] scram_iterations`: a login costs ~6 ms less than at PostgreSQL's 4096
/// (docs/performance.md); the password is also stored in plain text in Citus's
/// `pg_dist_authinfo`, so more rounds would not protect it from whoever can read the verifier.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 16;

/// The validated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Cluster name: the compose project name and the folder of its local data.
    pub name: String,
    /// The database created on every node, with `citus` in it.
    pub database: String,
    /// Database the tool connects to before `database` exists.
    pub maintenance_database: String,
    pub user: String,
    pub password: PasswordSource,
    /// Backend used when the command line does not say.
    pub backend: Backend,
    pub coordinator: Node,
    pub workers: Vec<Node>,
    /// Configured workers this run leaves out (a `--workers` below the config's count, see
    /// [`Cluster::with_workers`]), in the config's order.
    pub left_out: Vec<Node>,
    pub docker: DockerSettings,
    pub local: LocalSettings,
    /// The server's `shared_preload_libraries`, in order. `citus` must come first when it is
    /// present; without it the nodes are plain PostgreSQL and `setup` refuses to run.
    pub shared_preload_libraries: Vec<String>,
    /// Server settings of every node from `[settings]`, by lower-cased name, each once. The
    /// backends give them to the servers after their own, so they win over the tool's defaults.
    pub settings: Vec<Setting>,
    /// How long to wait for nodes to accept a login.
    pub ready_timeout_secs: u64,
    /// The file this came from, for messages.
    pub source: PathBuf,
}

/// One PostgreSQL server setting of `[settings]`, given to every node at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The setting's name, lower-cased (PostgreSQL's names are case-insensitive); a dotted name
    /// such as `citus.shard_count` for an extension's setting.
    pub name: String,
    /// Its value as PostgreSQL reads it: a TOML string as written, a boolean as `on`/`off`, a
    /// number in decimal. The backends quote it where their syntax needs it.
    pub value: String,
}

/// Settings the tool sets itself from other keys, or that would move what it manages, with
/// what to use instead. `[settings]` refuses them.
pub const RESERVED_SETTINGS: &[(&str, &str)] = &[
    ("port", "the node's `port` sets it (a container always listens on 5432)"),
    ("listen_addresses", "the node's `host` sets it on the local backend; on Docker the server listens on every container address and `[docker] bind` decides where the port is published"),
    ("unix_socket_directories", "the backends set it: no socket for local servers, the image's own in a container"),
    ("shared_preload_libraries", "use the top-level `shared_preload_libraries` key, which both backends and `verify` read"),
    ("data_directory", "the data lives where `[local] data_dir` or the node's Docker volume puts it"),
    ("config_file", "the data directory's own postgresql.conf is read; put settings here instead"),
    ("hba_file", "the tool writes pg_hba.conf in the data directory (SCRAM for every connection)"),
    ("ident_file", "the tool uses the data directory's own pg_ident.conf"),
    ("include", "`include` is a configuration-file directive, not a setting"),
    ("include_dir", "`include_dir` is a configuration-file directive, not a setting"),
    ("include_if_exists", "`include_if_exists` is a configuration-file directive, not a setting"),
];

/// A config that could not be read or is invalid.
#[derive(Debug)]
pub enum ConfigError {
    /// The text is not valid TOML or does not have the expected shape.
    Parse { path: String, message: String },
    /// A value is well-formed but not acceptable (duplicates, ranges, lengths).
    Invalid(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Parse { path, message } => write!(f, "{path}: {message}"),
            ConfigError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default = "default_name")]
    name: Spanned<String>,
    database: Spanned<String>,
    #[serde(default = "default_maintenance")]
    maintenance_database: Spanned<String>,
    #[serde(default = "default_user")]
    user: Spanned<String>,
    #[serde(default = "default_password_env")]
    password_env: Spanned<String>,
    password_file: Option<PathBuf>,
    #[serde(default = "default_backend")]
    backend: Backend,
    #[serde(default = "default_preload")]
    shared_preload_libraries: Spanned<Vec<Spanned<String>>>,
    coordinator: RawNode,
    #[serde(default)]
    workers: Vec<RawNode>,
    #[serde(default)]
    docker: RawDocker,
    #[serde(default)]
    local: RawLocal,
    #[serde(default)]
    wait: RawWait,
    #[serde(default)]
    /// Spanned keys too: an error about a setting's name points at the name.
    settings: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    port: Spanned<i64>,
    #[serde(default = "default_host")]
    host: Spanned<String>,
    cluster_address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    #[serde(default = "default_image")]
    image: String,
    #[serde(default = "default_pg_major")]
    pg_major: u32,
    #[serde(default = "default_bind")]
    bind: Spanned<String>,
}

impl Default for RawDocker {
    fn default() -> Self {
        RawDocker { image: default_image(), pg_major: default_pg_major(), bind: default_bind() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    bin_dir: Option<PathBuf>,
    #[serde(default = "default_true")]
    dev_speed: bool,
    #[serde(default = "default_scram_iterations")]
    scram_iterations: Spanned<u32>,
}

fn default_scram_iterations() -> Spanned<u32> {
    unspanned(DEFAULT_SCRAM_ITERATIONS)
}

impl Default for RawLocal {
    fn default() -> Self {
        RawLocal { data_dir: default_data_dir(), bin_dir: None, dev_speed: true, scram_iterations: default_scram_iterations() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWait {
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

impl Default for RawWait {
    fn default() -> Self {
        RawWait { timeout_secs: default_timeout() }
    }
}

fn unspanned<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}
fn default_name() -> Spanned<String> {
    unspanned("citus".into())
}
fn default_maintenance() -> Spanned<String> {
    unspanned("postgres".into())
}
fn default_user() -> Spanned<String> {
    unspanned("postgres".into())
}
fn default_password_env() -> Spanned<String> {
    unspanned("CITUS_PASSWORD".into())
}
fn default_preload() -> Spanned<Vec<Spanned<String>>> {
    unspanned(vec![unspanned("citus".into())])
}
fn default_backend() -> Backend {
    Backend::Docker
}
fn default_host() -> Spanned<String> {
    unspanned("localhost".into())
}
/// The default image: a pinned tag of the official Citus image built on PostgreSQL 15, of
/// the Citus minor the tool is tested with (13.2; `setup --dry-run`'s default too). Tags
/// follow citusdata/docker's publishing: `X.Y.Z-pgNN` for each release and PostgreSQL major.
pub const DEFAULT_IMAGE: &str = "citusdata/citus:13.2.0-pg15";
fn default_image() -> String {
    DEFAULT_IMAGE.into()
}
fn default_pg_major() -> u32 {
    15
}
fn default_bind() -> Spanned<String> {
    unspanned("127.0.0.1".into())
}
fn default_data_dir() -> PathBuf {
    ".citus-data".into()
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> u64 {
    60
}

/// Renders a message pointing at `span` of `src`, in the style of the TOML parser's own errors.
fn span_error(path: &Path, src: &str, span: Range<usize>, message: &str) -> String {
    let start = span.start.min(src.len());
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let line_no = src[..start].matches('\n').count() + 1;
    let col = src[line_start..start].chars().count() + 1;
    let width = src[start..span.end.min(line_end).max(start)].chars().count().max(1);
    let gutter = " ".repeat(line_no.to_string().len());
    format!(
        "{path}:{line_no}:{col}: {message}\n{gutter} |\n{line_no} | {}\n{gutter} | {}{}\n",
        &src[line_start..line_end],
        " ".repeat(col - 1),
        "^".repeat(width),
        path = path.display(),
    )
}

impl Cluster {
    /// Reads and validates a config file's text. `path` is only used in messages and to
    /// resolve relative paths (`local.data_dir`, `password_file`).
    pub fn parse(src: &str, path: &Path) -> Result<Cluster, ConfigError> {
        let raw: RawCluster = toml::from_str(src).map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })?;
        let mut errors = Vec::new();
        let mut err = |span: Range<usize>, msg: String| {
            if span.is_empty() {
                errors.push(format!("{}: {msg}", path.display()));
            } else {
                errors.push(span_error(path, src, span, &msg));
            }
        };

        for (what, value) in [("name", &raw.name), ("database", &raw.database), ("user", &raw.user), ("maintenance_database", &raw.maintenance_database)] {
            check_identifier(what, value, &mut err);
        }

        // The cluster's folder under `[local] data_dir`: one path component, not `.`, `..` or a
        // hidden folder such as `.templates` (which `down --purge` would then purge into).
        let name = raw.name.get_ref();
        if name.starts_with('.') || name.contains(['/', '\\']) {
            err(
                raw.name.span(),
                format!("name `{name}` is the folder of the cluster's data under [local] data_dir: it may not start with `.` or contain `/` or `\\`"),
            );
        }

        let var = raw.password_env.get_ref();
        if var.is_empty() || var.starts_with(|c: char| c.is_ascii_digit()) || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            err(
                raw.password_env.span(),
                format!("password_env `{var}` is not an environment variable name (letters, digits and `_`, not starting with a digit)"),
            );
        }

        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let mut nodes = Vec::new();
        let mut spans = Vec::new();
        for (i, rn) in std::iter::once(&raw.coordinator).chain(raw.workers.iter()).enumerate() {
            let role = if i == 0 { Role::Coordinator } else { Role::Worker };
            check_identifier("node name", &rn.name, &mut err);
            let n = rn.name.get_ref();
            let valid = n.starts_with(|c: char| c.is_ascii_alphanumeric()) && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !n.is_empty() && !valid {
                err(rn.name.span(), format!("node name `{n}` may hold only ASCII letters, digits, `_`, `.` and `-`, starting with a letter or digit: it is a compose service name, a host name on the cluster network and a folder name"));
            }
            let port = match u16::try_from(*rn.port.get_ref()) {
                Ok(p) if p > 0 => p,
                _ => {
                    err(rn.port.span(), format!("port {} is out of range: a client port is a number from 1 to 65535", rn.port.get_ref()));
                    0
                }
            };
            let cluster_address = match &rn.cluster_address {
                None => None,
                Some(s) => match s.get_ref().parse::<Address>() {
                    Ok(a) => Some(a),
                    Err(e) => {
                        err(s.span(), format!("bad cluster_address: {e} (expected `host:port`, the address the other nodes use)"));
                        None
                    }
                },
            };
            if let Err(e) = check_host(rn.host.get_ref()) {
                let span = if rn.host.span().is_empty() { rn.name.span() } else { rn.host.span() };
                err(span, format!("node `{}`: {e}", rn.name.get_ref()));
            }
            spans.push((rn.name.span(), rn.port.span()));
            nodes.push(Node { name: rn.name.get_ref().clone(), role, client: Address::new(rn.host.get_ref().clone(), port), cluster_address, derived: false });
        }
        let mut seen_names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if let Some(&j) = seen_names.get(n.name.as_str()) {
                err(spans[i].0.clone(), format!("duplicate node name `{}` (also used by node {} in this file): every node needs its own name", n.name, j + 1));
            } else {
                seen_names.insert(&n.name, i);
            }
            if n.client.port == 0 {
                continue;
            }
            let same = nodes[..i].iter().find(|m| m.client.port == n.client.port && one_listen_address(&m.client.host, &n.client.host));
            if let Some(m) = same {
                let how = if m.client.host == n.client.host {
                    format!("already used by `{}`", m.name)
                } else {
                    format!("`{}` is at {}, and {} and {} listen on one address", m.name, m.client, m.client.host, n.client.host)
                };
                err(spans[i].1.clone(), format!("duplicate client address {} ({how}): every node needs its own port", n.client));
            }
        }
        check_preload(&raw.shared_preload_libraries, &mut err);
        let bind = raw.docker.bind.get_ref();
        let unbracketed = bind.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(bind);
        if unbracketed.parse::<std::net::IpAddr>().is_err() {
            err(
                raw.docker.bind.span(),
                format!("docker.bind `{bind}` is not an IP address: Docker publishes ports on an address of this machine, not a host name (127.0.0.1 for this machine only, 0.0.0.0 for every interface, ::1 for IPv6 loopback)"),
            );
        }
        if raw.wait.timeout_secs == 0 {
            err(0..0, "wait.timeout_secs must be at least 1".into());
        }
        if *raw.local.scram_iterations.get_ref() == 0 {
            err(raw.local.scram_iterations.span(), "local.scram_iterations must be at least 1 (PostgreSQL's own default is 4096)".into());
        }
        let mut settings = BTreeMap::new();
        let mut in_file_order: Vec<_> = raw.settings.iter().collect();
        in_file_order.sort_by_key(|(k, _)| k.span().start);
        for (name, value) in in_file_order {
            flatten_setting(name.get_ref(), value.get_ref(), Spans { name: name.span(), value: value.span() }, &mut settings, &mut err);
        }
        if let Some(span) = ssl_off_under_required_tls(&settings, &raw.settings) {
            err(
                span,
                "settings.ssl = off: Citus connects between the nodes with `sslmode=require` (its default citus.node_conninfo): its CREATE EXTENSION turns ssl back on with ALTER SYSTEM, and a server without it fails every connection from the other nodes (\"server does not support SSL, but SSL was required\"); leave ssl on, or also set citus.node_conninfo = \"sslmode=prefer\" (or \"sslmode=disable\")".into(),
            );
        }
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors.join("\n")));
        }
        let mut nodes = nodes.into_iter();
        let coordinator = nodes.next().expect("coordinator is always present");
        Ok(Cluster {
            name: raw.name.into_inner(),
            database: raw.database.into_inner(),
            maintenance_database: raw.maintenance_database.into_inner(),
            user: raw.user.into_inner(),
            password: PasswordSource { env: raw.password_env.into_inner(), file: raw.password_file.map(resolve) },
            backend: raw.backend,
            coordinator,
            workers: nodes.collect(),
            left_out: Vec::new(),
            docker: DockerSettings { image: raw.docker.image, pg_major: raw.docker.pg_major, bind: raw.docker.bind.into_inner() },
            local: LocalSettings {
                data_dir: resolve(raw.local.data_dir),
                bin_dir: raw.local.bin_dir.map(resolve),
                dev_speed: raw.local.dev_speed,
                scram_iterations: raw.local.scram_iterations.into_inner(),
            },
            shared_preload_libraries: raw.shared_preload_libraries.into_inner().into_iter().map(Spanned::into_inner).collect(),
            settings: settings.into_iter().map(|(name, value)| Setting { name, value }).collect(),
            ready_timeout_secs: raw.wait.timeout_secs,
            source: path.to_path_buf(),
        })
    }

    /// True when the nodes preload Citus (it is then the first of `shared_preload_libraries`).
    pub fn preloads_citus(&self) -> bool {
        self.shared_preload_libraries.first().is_some_and(|l| l == "citus")
    }

    /// All nodes, coordinator first.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.coordinator).chain(self.workers.iter())
    }

    /// Finds a node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes().find(|n| n.name == name)
    }

    /// The address the other nodes use to reach `node`: its `cluster_address` if set, else
    /// the backend's default (service name and 5432 on docker; the client address locally).
    pub fn cluster_address(&self, node: &Node, backend: Backend) -> Address {
        if let Some(a) = &node.cluster_address {
            return a.clone();
        }
        match backend {
            Backend::Docker => Address::new(node.name.clone(), 5432),
            Backend::Local => node.client.clone(),
        }
    }

    /// How to give `node` another client port, for the messages about a taken one: its `port`
    /// in the file, or, for a worker `--workers` derived, a `[[workers]]` entry of its own.
    pub fn port_fix(&self, node: &Node) -> String {
        if node.derived {
            format!(
                "give {} another `port` in {}: it is not in the file (`--workers` derived it on the port after the previous worker's), so add it under [[workers]] with a free `port`, or use fewer workers",
                node.name,
                self.source.display()
            )
        } else {
            format!("give {} another `port` in {}", node.name, self.source.display())
        }
    }

    /// The worker a larger `--workers` would derive at cluster address `addr`, with the
    /// worker count that first includes it (`citus_worker3`, 3): how a node registered by an
    /// earlier, larger `up --workers` is named once a smaller run leaves it out. Looks up to
    /// 256 workers beyond this run's.
    pub fn derived_worker_at(&self, backend: Backend, addr: &Address) -> Option<(String, usize)> {
        let n = self.workers.len();
        let configured = n + self.left_out.len();
        let wide = (configured + 1..=configured + 256).rev().chain([configured]).find_map(|k| self.clone().with_workers(k).ok())?;
        wide.workers.iter().enumerate().skip(n).find(|(_, w)| &wide.cluster_address(w, backend) == addr).map(|(i, w)| (w.name.clone(), i + 1))
    }

    /// Returns the cluster with exactly `n` workers: the first `n` configured ones, then
    /// derived ones named after the last worker's name with its number counted up
    /// (`citus_worker3`, `citus_worker4`, ...) on the next client ports.
    pub fn with_workers(mut self, n: usize) -> Result<Cluster, ConfigError> {
        if n <= self.workers.len() {
            let mut out = self.workers.split_off(n);
            out.append(&mut self.left_out);
            self.left_out = out;
            return Ok(self);
        }
        // The configured workers an earlier `with_workers` left out come back first.
        let back = self.left_out.len().min(n - self.workers.len());
        self.workers.extend(self.left_out.drain(..back));
        if n == self.workers.len() {
            return Ok(self);
        }
        let last = self.workers.last().cloned().unwrap_or_else(|| Node {
            name: format!("{}_worker0", self.coordinator.name),
            role: Role::Worker,
            client: self.coordinator.client.clone(),
            cluster_address: None,
            derived: true,
        });
        let stem = last.name.trim_end_matches(|c: char| c.is_ascii_digit());
        let mut number: usize = last.name[stem.len()..].parse().unwrap_or(self.workers.len());
        let mut port = last.client.port;
        while self.workers.len() < n {
            number += 1;
            port =
                port.checked_add(1).ok_or_else(|| ConfigError::Invalid(format!("--workers {n}: derived worker ports run past 65535 after `{}`", last.name)))?;
            let name = format!("{stem}{number}");
            // By port alone: `localhost` and `127.0.0.1` are one address to a server, and on
            // Docker every client port is published on the same bind address.
            if self.nodes().any(|x| x.name == name || x.client.port == port) {
                return Err(ConfigError::Invalid(format!(
                    "--workers {n}: the derived worker `{name}` on port {port} collides with a configured node; configure the extra workers explicitly in {}",
                    self.source.display()
                )));
            }
            if name.len() > MAX_IDENTIFIER_BYTES {
                return Err(ConfigError::Invalid(format!("--workers {n}: derived name `{name}` is longer than {MAX_IDENTIFIER_BYTES} bytes")));
            }
            self.workers.push(Node { name, role: Role::Worker, client: Address::new(last.client.host.clone(), port), cluster_address: None, derived: true });
        }
        Ok(self)
    }
}

fn check_identifier(what: &str, value: &Spanned<String>, err: &mut impl FnMut(Range<usize>, String)) {
    let v = value.get_ref();
    if v.is_empty() {
        err(value.span(), format!("{what} must not be empty"));
    } else if v.len() > MAX_IDENTIFIER_BYTES {
        err(
            value.span(),
            format!(
                "{what} `{v}` is {} bytes long; PostgreSQL silently truncates names to {MAX_IDENTIFIER_BYTES} bytes, so two names could collide: shorten it",
                v.len()
            ),
        );
    } else if v.chars().any(char::is_control) {
        err(value.span(), format!("{what} {v:?} contains a control character (a newline, tab or NUL): use printable characters only"));
    }
}

/// Adds the setting `name` of `[settings]` (a nested table, as TOML makes of a dotted key such
/// as `citus.shard_count = 4`, adds one setting per leaf, its name joined with dots) to `out`.
/// Where a setting of `[settings]` is in the file: its name (the first key of a dotted or
/// nested one) and its value (the table, for a nested one).
#[derive(Clone)]
struct Spans {
    name: Range<usize>,
    value: Range<usize>,
}

fn flatten_setting(name: &str, value: &toml::Value, span: Spans, out: &mut BTreeMap<String, String>, err: &mut impl FnMut(Range<usize>, String)) {
    let text = match value {
        toml::Value::Table(table) => {
            for (part, v) in table {
                flatten_setting(&format!("{name}.{part}"), v, span.clone(), out, err);
            }
            return;
        }
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => (if *b { "on" } else { "off" }).to_string(),
        toml::Value::Array(_) | toml::Value::Datetime(_) => {
            err(span.value, format!("settings.{name}: a setting's value is a string, a number or a boolean (a list setting is one string: \"a,b\")"));
            return;
        }
    };
    let lower = name.to_ascii_lowercase();
    // What PostgreSQL's configuration-file reader takes (the local backend writes them there):
    // an identifier, or two joined by one dot.
    let identifier =
        |part: &str| part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let parts: Vec<&str> = lower.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| identifier(p)) {
        err(span.name, format!("settings: `{name}` is not a PostgreSQL setting name (ASCII letters, digits and `_`, not starting with a digit; an extension's settings as `prefix.name`, one dot)"));
    } else if let Some((_, why)) = RESERVED_SETTINGS.iter().find(|(n, _)| *n == lower) {
        err(span.name, format!("settings.{name} is not accepted: {why}"));
    } else if text.chars().any(char::is_control) {
        err(span.value, format!("settings.{name}: the value {text:?} contains a control character (a newline, tab or NUL)"));
    } else if out.insert(lower.clone(), text).is_some() {
        err(span.name, format!("settings: `{name}` sets `{lower}` a second time (PostgreSQL's setting names are case-insensitive)"));
    }
}

/// A boolean as PostgreSQL reads one (its `parse_bool`): `on`/`off`, `1`/`0`, and any unique
/// prefix of `true`, `false`, `yes`, `no` (`o` alone is not one), without regard to case.
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(&v);
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || v == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

/// Where `ssl` is turned off while Citus's connections between the nodes still require TLS:
/// `citus.node_conninfo` unset (Citus's default is `sslmode=require`) or set with `sslmode`
/// `require` or `verify-*`. A conninfo without `sslmode` gets libpq's `prefer`.
fn ssl_off_under_required_tls(settings: &BTreeMap<String, String>, raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>) -> Option<Range<usize>> {
    let off = settings.get("ssl").and_then(|v| parse_bool(v)) == Some(false);
    let required = match settings.get("citus.node_conninfo") {
        None => true,
        Some(conninfo) => {
            // libpq's `keyword = value` pairs, spaces around `=` allowed, values maybe quoted.
            let mut tidy = conninfo.to_ascii_lowercase();
            while tidy.contains(" =") || tidy.contains("= ") {
                tidy = tidy.replace(" =", "=").replace("= ", "=");
            }
            let mode = tidy.split_whitespace().find_map(|kv| kv.strip_prefix("sslmode=")).map(|m| m.trim_matches('\''));
            mode.is_some_and(|m| m == "require" || m.starts_with("verify"))
        }
    };
    (off && required).then(|| raw.iter().find(|(k, _)| k.get_ref().eq_ignore_ascii_case("ssl")).map_or(0..0, |(_, v)| v.span()))
}

/// Library names go into a server setting and a command line: no quotes, commas or spaces.
fn check_preload(list: &Spanned<Vec<Spanned<String>>>, err: &mut impl FnMut(Range<usize>, String)) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, lib) in list.get_ref().iter().enumerate() {
        let v = lib.get_ref();
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "_-./$".contains(c)) {
            err(
                lib.span(),
                format!("shared_preload_libraries entry {v:?} is not a library name (ASCII letters, digits and `_-./$`, e.g. \"pg_stat_statements\")"),
            );
        } else if !seen.insert(v.as_str()) {
            err(lib.span(), format!("shared_preload_libraries lists `{v}` twice"));
        } else if v == "citus" && i > 0 {
            err(lib.span(), "citus must be the first entry of shared_preload_libraries (Citus refuses to load otherwise): move it to the front".into());
        }
    }
}

#[cfg(test)]
mod tests;
