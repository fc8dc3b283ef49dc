//! Command-line flags of `cargo xtask` (parsed by xflags; `--help` is generated from these docs).
#![allow(unreachable_pub)]

use std::{ffi::OsString, path::PathBuf};

use citus_config::Backend;

xflags::xflags! {
    src "./src/flags.rs"

    /// Bring up a Citus cluster (coordinator + workers), set it up, and prove it works.
    /// The cluster is described in citus.toml at the workspace root; --config PATH or
    /// $CITUS_CONFIG picks another file. Progress goes to stderr, results to stdout.
    cmd xtask {
        /// Start every node (docker: from the generated compose file; local: initdb + postgres
        /// per node), wait until each accepts a login, then run `setup`. Existing data is
        /// started, never re-initialised. A node whose server exits while starting fails at
        /// once, with its last log lines and the likely fix.
        cmd up {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// `docker` or `local` (default: the backend of this cluster's last `up`, else the config's).
            optional -b, --backend backend: Backend
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the last `up --workers`, else the config's). Remembered: later tasks
            /// without --workers act on these nodes; the config's own count forgets it. 0 is a
            /// single-node Citus: `setup` gives the coordinator the shards.
            optional -w, --workers n: usize
            /// Only start the nodes; do not run `setup` (also the way to start plain PostgreSQL
            /// nodes, configured with `shared_preload_libraries = []`).
            optional --no-setup
            /// Restart each running local node whose settings (`[settings]`, `dev_speed`,
            /// `shared_preload_libraries`) or client address changed in the config since it
            /// started, with a clean shutdown; the data is kept. `postgres -C` parses the
            /// `[settings]` first: an unknown name or a value the server refuses fails it before
            /// any node stops. Without it, a node with changed settings is named and left
            /// running, and a node whose client address changed is refused (exit 1, before
            /// anything starts). On Docker, `up` recreates such containers either way, once
            /// `postgres -C` has parsed their new command.
            optional --restart
        }
        /// Create the database and the citus extension on every node, store the inter-node
        /// password (pg_dist_authinfo), set the coordinator host and register the workers on
        /// the coordinator (with no worker, a single-node Citus, give the coordinator the
        /// shards); repair what a re-run finds broken (a disabled, desynced or
        /// re-addressed worker). An installed citus extension older than the server's library
        /// is updated (ALTER EXTENSION citus UPDATE, workers first; it cannot be undone).
        /// Idempotent; safe to run twice at once. Works against any reachable nodes, including
        /// ones this tool did not start, waiting up to [wait] timeout_secs for each to accept a login;
        /// a node whose server is stopped (a local data directory with no server running on it,
        /// a Docker container that has exited or was never made) is named with the fix while
        /// setup waits: at once on the local backend, at its first refused login on Docker.
        cmd setup {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// `docker` or `local` (default: the backend of this cluster's last `up`, else the config's).
            optional -b, --backend backend: Backend
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the count the last `up --workers` started, else the config's).
            optional -w, --workers n: usize
            /// Print the plan (the SQL per node, for a fresh cluster) without connecting.
            optional --dry-run
            /// With --dry-run only: the Citus version to plan for, MAJOR.MINOR (default 13.2,
            /// the version the tool is tested with; a live setup reads the node's own).
            optional --citus-version version: String
            /// Drop the shard tables of an earlier cluster that this worker still holds, then
            /// register it (their rows are lost). Without it, setup refuses such a worker,
            /// whose coordinator was made anew: its shards would stay behind, orphaned.
            /// Repeatable, one worker of this run each; not with --dry-run.
            repeated --drop-orphaned-shards worker: String
        }
        /// Check the cluster: every node reachable with citus preloaded and installed at one
        /// version and the config's [settings] in effect, the coordinator host and exactly
        /// the configured workers registered and active, metadata in sync, every shard
        /// placement present on its node, all-pairs health, and a distributed round trip (it
        /// creates a distributed table citus_xtask_verify_*, writes 1000 rows, reads them back
        /// and drops it). Exits 0 only when every check passes.
        cmd verify {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// `docker` or `local` (default: the backend of this cluster's last `up`, else the config's).
            optional -b, --backend backend: Backend
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the count the last `up --workers` started, else the config's).
            optional -w, --workers n: usize
            /// Print the checks as JSON instead of a table.
            optional --json
        }
        /// Show, per node, whether its server runs (a local process or a container) and
        /// accepts the cluster's login, where its data is, and the settings of the config a
        /// running server still lacks (`up --restart` applies them to a local node, `up` to a
        /// container). Changes nothing. Exits 0 only when every node runs and accepts the login.
        cmd status {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// `docker` or `local` (default: the backend of this cluster's last `up`, else the config's).
            optional -b, --backend backend: Backend
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the count the last `up --workers` started, else the config's).
            optional -w, --workers n: usize
            /// Print the status as JSON instead of a table.
            optional --json
        }
        /// Stop the nodes, and any worker a larger `up --workers` left running. The data
        /// (local data directories, docker volumes) is kept.
        cmd down {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// `docker` or `local` (default: the backend of this cluster's last `up`, else the config's).
            optional -b, --backend backend: Backend
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the count the last `up --workers` started, else the config's).
            optional -w, --workers n: usize
            /// Also delete the data of the nodes it acts on (local data directories or docker
            /// volumes); any other node's of this cluster is named and kept. Also forgets the
            /// backend and the `up --workers` count recorded for the cluster: later tasks use
            /// the config's again.
            optional --purge
        }
        /// Print what a test runner needs to use the cluster: environment variables, Django
        /// DATABASES settings or pytest flags, following the CI or local test policy.
        cmd test-env {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// `docker` or `local` (default: the backend of this cluster's last `up`, else the config's).
            optional -b, --backend backend: Backend
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the count the last `up --workers` started, else the config's).
            optional -w, --workers n: usize
            /// shell (default), dotenv (quoted as python-dotenv reads it), json, github, django
            /// or pytest (the flags alone: `args=$(cargo xtask test-env --format pytest) &&
            /// pytest $args`, in two steps so that a failing test-env fails the line; the
            /// reasons go to stderr).
            optional -f, --format format: String
            /// ci or local (default: ci when $CI is `true` or `1`, else local).
            optional -p, --profile profile: String
            /// Django version the settings are for, X.Y (default 5.2): TEST.SERIALIZE is written
            /// only before 4.0.
            optional --django-version version: String
        }
        /// Open psql on one node (default: the coordinator), in the cluster's database as its
        /// user. The password goes in psql's environment, never on a command line. The host's
        /// psql (on PATH, else for local nodes [local] bin_dir's) connects to the node's client
        /// address; without one, a Docker node's own psql runs in its container. Arguments after `--` go to psql, e.g.
        /// `cargo xtask psql -- -c 'SELECT * FROM citus_get_active_worker_nodes()'`.
        /// Exits with psql's exit code; Ctrl-C cancels the running query, also for a psql in
        /// its container without a terminal (the tool cancels it there, then exits 130).
        cmd psql {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// `docker` or `local` (default: the backend of this cluster's last `up`, else the config's).
            optional -b, --backend backend: Backend
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the count the last `up --workers` started, else the config's).
            optional -w, --workers n: usize
            /// The node, by its name in the config (default: the coordinator).
            optional -n, --node name: String
            /// psql's own arguments (after `--`).
            repeated args: OsString
        }
        /// Print the last lines of each node's server log (or one node's), headed by the node
        /// and where its log is: the local data folder's `postgres.log`, or `docker logs`.
        cmd logs {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// `docker` or `local` (default: the backend of this cluster's last `up`, else the config's).
            optional -b, --backend backend: Backend
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the count the last `up --workers` started, else the config's).
            optional -w, --workers n: usize
            /// Only this node, by its name in the config.
            optional -n, --node name: String
            /// How many lines per node (default 50).
            optional -l, --lines n: usize
            /// Keep printing new lines as the servers write them, each after its node's name,
            /// until Ctrl-C or until its output closes (`| head`). On Docker a node is followed
            /// again when its container runs again (restarted, or made anew by `up`), and the
            /// follow ends once `down` has removed every followed container and none has come
            /// back for 5 s.
            optional -f, --follow
        }
        /// Print the docker compose file generated from the config: what
        /// compose/docker-compose.yml holds for the workspace's citus.toml. `up` runs the
        /// same services from its own copy in the cluster's folder (with the run's worker count
        /// and an owner label on each volume).
        cmd compose {
            /// Config file (default: $CITUS_CONFIG, else citus.toml at the workspace root).
            optional -c, --config path: PathBuf
            /// Number of workers: the first N configured, then derived ones on the next ports
            /// (default: the config's).
            optional -w, --workers n: usize
            /// Write it to the workspace's compose/docker-compose.yml instead of printing it
            /// (only from the workspace's citus.toml and its own worker count, which that
            /// file is checked against; redirect the output for another config).
            optional --write
        }
        /// Measure up/setup/verify/down against a bare baseline script; see docs/benchmarks.md.
        /// Builds and runs the benchmark crate (crates/citus-bench) on demand:
        /// `cargo xtask bench --help` lists its flags.
        cmd bench {}
    }
}
// generated start
// The following code is generated by `xflags` macro.
// Run `env UPDATE_XFLAGS=1 cargo build` to regenerate.
#[derive(Debug)]
pub struct Xtask {
    pub subcommand: XtaskCmd,
}

#[derive(Debug)]
pub enum XtaskCmd {
    Up(Up),
    Setup(Setup),
    Verify(Verify),
    Status(Status),
    Down(Down),
    TestEnv(TestEnv),
    Psql(Psql),
    Logs(Logs),
    Compose(Compose),
    Bench(Bench),
}

#[derive(Debug)]
pub struct Up {
    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub workers: Option<usize>,
    pub no_setup: bool,
    pub restart: bool,
}

#[derive(Debug)]
pub struct Setup {
    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub workers: Option<usize>,
    pub dry_run: bool,
    pub citus_version: Option<String>,
    pub drop_orphaned_shards: Vec<String>,
}

#[derive(Debug)]
pub struct Verify {
    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub workers: Option<usize>,
    pub json: bool,
}

#[derive(Debug)]
pub struct Status {
    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub workers: Option<usize>,
    pub json: bool,
}

#[derive(Debug)]
pub struct Down {
    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub workers: Option<usize>,
    pub purge: bool,
}

#[derive(Debug)]
pub struct TestEnv {
    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub workers: Option<usize>,
    pub format: Option<String>,
    pub profile: Option<String>,
    pub django_version: Option<String>,
}

#[derive(Debug)]
pub struct Psql {
    pub args: Vec<OsString>,

    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub workers: Option<usize>,
    pub node: Option<String>,
}

#[derive(Debug)]
pub struct Logs {
    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub workers: Option<usize>,
    pub node: Option<String>,
    pub lines: Option<usize>,
    pub follow: bool,
}

#[derive(Debug)]
pub struct Compose {
    pub config: Option<PathBuf>,
    pub workers: Option<usize>,
    pub write: bool,
}

#[derive(Debug)]
pub struct Bench;

impl Xtask {
    #[allow(dead_code)]
    pub fn from_env_or_exit() -> Self {
        Self::from_env_or_exit_()
    }

    #[allow(dead_code)]
    pub fn from_env() -> xflags::Result<Self> {
        Self::from_env_()
    }

    #[allow(dead_code)]
    pub fn from_vec(args: Vec<std::ffi::OsString>) -> xflags::Result<Self> {
        Self::from_vec_(args)
    }
}
// generated end
