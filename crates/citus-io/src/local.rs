//! The local-process backend: one `postgres` per node on this machine, from a cached
//! pristine `initdb` template, run as the `postgres` OS user when the tool runs as root.
//!
//! Servers are started directly (`postgres -D <pgdata>`, never through a shell or
//! `pg_ctl`, whose start command goes through `/bin/sh`), in their own process group so
//! they outlive the tool, and stopped by signalling the postmaster (SIGINT: PostgreSQL's
//! "fast" shutdown, a clean one with a checkpoint).

use std::{
    fs,
    io::Write,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use citus_config::{Cluster, Node};

use crate::{pg, state, Progress};

/// The PostgreSQL installation and the OS user the servers run as.
#[derive(Debug, Clone)]
pub struct Local {
    pub bin_dir: PathBuf,
    /// uid, gid and name of the user the servers run as (`postgres` when we are root).
    pub run_as: Option<(u32, u32, String)>,
    /// That user's home: the servers' `HOME`, where libpq inside Citus looks for `~/.postgresql`.
    pub home: Option<PathBuf>,
    /// The `openssl` program, which makes each new node's TLS certificate (see `Local::make_certificate`).
    pub openssl: Option<PathBuf>,
    /// `[local] data_dir` and the config file that sets it, for the fix of a full file system.
    pub data_dir: PathBuf,
    pub source: PathBuf,
}

/// What [`Local::ensure_data`] found or did.
#[derive(Debug)]
pub enum DataDir {
    /// The node's data directory was there already; it is used as it is.
    Existing,
    /// Made now. `certificate` is `Err(why)` when the node got no TLS certificate of its own
    /// (Citus then makes one at `CREATE EXTENSION citus`).
    New { certificate: Result<(), String> },
}

/// The TLS settings Citus writes (ALTER SYSTEM) when `CREATE EXTENSION citus` finds `ssl` off
/// and its `citus.node_conninfo` requires TLS (`sslmode=require`, the default): the ciphers
/// are Citus's own list (`CITUS_DEFAULT_SSL_CIPHERS` in its `enable_ssl.c`). `up` writes them
/// for a node that has the certificate `Local::make_certificate` made.
const TLS_SETTINGS: &str = "# TLS between the nodes as Citus sets it up itself at CREATE EXTENSION citus, with the\n\
# certificate in this data directory (server.crt, server.key; `up` makes one for each node it creates)\n\
ssl = on\n\
ssl_ciphers = 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384'\n";

/// Finds `initdb` and `postgres` (config `local.bin_dir`, else `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/*/bin`) and decides which user runs the servers.
pub fn detect(cluster: &Cluster) -> anyhow::Result<Local> {
    let bin_dir = match &cluster.local.bin_dir {
        Some(d) => d.clone(),
        None => find_bin_dir().ok_or_else(|| {
            anyhow::anyhow!(
                "no PostgreSQL server binaries found (initdb, postgres): install them (Debian: `apt-get install postgresql`) or set [local] bin_dir in {}",
                cluster.source.display()
            )
        })?,
    };
    for b in ["initdb", "postgres"] {
        if !bin_dir.join(b).exists() {
            bail!(
                "{} does not exist: install the PostgreSQL server (Debian: `apt-get install postgresql`) or fix [local] bin_dir in {}",
                bin_dir.join(b).display(),
                cluster.source.display()
            );
        }
    }
    // SAFETY: geteuid has no preconditions.
    let (run_as, home) = if unsafe { libc::geteuid() } == 0 {
        let (uid, gid, name, home) = lookup_user("postgres").ok_or_else(|| anyhow::anyhow!("running as root, but there is no `postgres` OS user to run the servers (initdb refuses root): create one (`useradd --system postgres`) or run as a normal user"))?;
        (Some((uid, gid, name)), Some(home))
    } else {
        (None, None)
    };
    Ok(Local { bin_dir, run_as, home, openssl: which::which("openssl").ok(), data_dir: cluster.local.data_dir.clone(), source: cluster.source.clone() })
}

/// The citus version a new local node would get: `default_version` of `citus.control` in the
/// extension folder of the PostgreSQL `up` would use, and that file; `None` when there is no
/// such PostgreSQL or it has no Citus. Reads files and runs its `pg_config`; connects to nothing.
pub fn installed_citus(cluster: &Cluster) -> Option<(String, PathBuf)> {
    let bin_dir = cluster.local.bin_dir.clone().or_else(find_bin_dir)?;
    let out = std::process::Command::new(bin_dir.join("pg_config")).arg("--sharedir").output().ok()?;
    let control = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("extension").join("citus.control");
    let text = fs::read_to_string(&control).ok()?;
    let version =
        text.lines().find_map(|l| l.trim().strip_prefix("default_version")?.trim().strip_prefix('=').map(|v| v.trim().trim_matches('\'').to_string()))?;
    Some((version, control))
}

/// `pg_config --bindir` of a `pg_config` on PATH that is not Debian's `/usr/bin/pg_config`
/// (a wrapper script that costs ~40 ms and picks the newest `/usr/lib/postgresql/N`, as the
/// second step does without it), then that Debian layout, then `/usr/bin/pg_config` itself.
fn find_bin_dir() -> Option<PathBuf> {
    let from_pg_config = |pg_config: &Path| -> Option<PathBuf> {
        let out = std::process::Command::new(pg_config).arg("--bindir").output().ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        (dir.join("initdb").exists() && dir.join("postgres").exists()).then_some(dir)
    };
    let on_path = which::which("pg_config").ok();
    let system = Path::new("/usr/bin/pg_config");
    if let Some(p) = on_path.as_deref().filter(|p| *p != system) {
        if let Some(dir) = from_pg_config(p) {
            return Some(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).or_else(|| on_path.filter(|p| p == system).and_then(|p| from_pg_config(&p)))
}

fn lookup_user(name: &str) -> Option<(u32, u32, String, PathBuf)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage, read at once.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null, points to a valid passwd struct.
    let (uid, gid, dir) = unsafe { ((*pw).pw_uid, (*pw).pw_gid, std::ffi::CStr::from_ptr((*pw).pw_dir)) };
    Some((uid, gid, name.to_string(), PathBuf::from(dir.to_string_lossy().into_owned())))
}

/// A node's files.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub dir: PathBuf,
    pub pgdata: PathBuf,
    pub log: PathBuf,
}

/// Where `node`'s data and log live.
pub fn paths(cluster: &Cluster, node: &Node) -> NodePaths {
    NodePaths::in_dir(state::cluster_dir(cluster).join(&node.name))
}

impl NodePaths {
    /// The files of the node whose folder is `dir`.
    fn in_dir(dir: PathBuf) -> NodePaths {
        NodePaths { pgdata: dir.join("pgdata"), log: dir.join("postgres.log"), dir }
    }
}

impl Local {
    /// Environment changes for every server-side program: the servers' libpq (Citus's
    /// inter-node connections) must not see our `PG*` variables or look for client
    /// certificates in our home. `None` removes the variable.
    fn server_env(&self) -> Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> {
        let mut env: Vec<_> = std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("PG")).map(|(k, _)| (k, None)).collect();
        if let Some((_, _, name)) = &self.run_as {
            env.push(("USER".into(), Some(name.into())));
            env.push(("LOGNAME".into(), Some(name.into())));
        }
        if let Some(home) = &self.home {
            env.push(("HOME".into(), Some(home.into())));
        }
        env
    }

    /// A short-lived server-side command (initdb, cp, postgres --single) as the servers' user.
    fn command(&self, program: impl AsRef<Path>) -> std::process::Command {
        let mut c = std::process::Command::new(program.as_ref());
        if let Some((uid, gid, _)) = &self.run_as {
            c.uid(*uid).gid(*gid);
        }
        for (k, v) in self.server_env() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid, _)) = &self.run_as {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid)).with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }

    fn run(&self, mut c: std::process::Command, what: &str) -> anyhow::Result<()> {
        let out = c.stdin(std::process::Stdio::null()).output().with_context(|| format!("starting {what}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            // `cp` says one line per file it could not copy: the first ones tell.
            let lines: Vec<&str> = err.trim().lines().collect();
            let shown = match lines.len() {
                0..=6 => lines.join("\n"),
                n => format!("{}\n({} more lines)", lines[..4].join("\n"), n - 4),
            };
            if err.contains("No space left on device") {
                bail!(
                    "{what} failed: the file system is full (No space left on device): {}\n{}\n    fix: free space on the file system of {} (`df -h` shows it), or set [local] data_dir in {} to another one; each node's data directory takes about 50 MB, and the initdb template as much once",
                    out.status,
                    shown,
                    self.data_dir.display(),
                    self.source.display()
                );
            }
            let user = self.run_as.as_ref().map_or(String::new(), |(_, _, u)| format!(" (as OS user {u}: it must be able to enter every parent folder)"));
            bail!("{what} failed{user}: {}\n{shown}", out.status);
        }
        Ok(())
    }

    /// `initdb --version`, shown when the template is built.
    fn version(&self) -> anyhow::Result<String> {
        let out = std::process::Command::new(self.bin_dir.join("initdb")).arg("--version").output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Where the pristine template for these credentials lives (it may not exist yet).
    fn template_dir(&self, cluster: &Cluster, creds: &pg::Credentials) -> anyhow::Result<PathBuf> {
        // Keyed by the server binary itself (path, size, mtime: an upgraded package gets a new
        // template) without running it, and by the role, password and verifier rounds baked in.
        let postgres = self.bin_dir.join("postgres");
        let meta = fs::metadata(&postgres).with_context(|| format!("reading {}", postgres.display()))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let binary = format!("{}:{}:{mtime}", postgres.display(), meta.len());
        let rounds = format!("scram-iterations={}", cluster.local.scram_iterations);
        let root = cluster.local.data_dir.join(".templates");
        let key = template_key(&root, &[binary.as_bytes(), creds.user.as_bytes(), creds.password.as_bytes(), cluster.database.as_bytes(), rounds.as_bytes()])?;
        Ok(root.join(key))
    }

    /// Returns the pristine template data directory for these credentials, creating it
    /// once. It never has the citus extension in it: copies of a data directory in which
    /// `CREATE EXTENSION citus` ran share Citus's server id and cannot join one cluster.
    pub fn template(&self, cluster: &Cluster, creds: &pg::Credentials, progress: Progress<'_>) -> anyhow::Result<PathBuf> {
        let dir = self.template_dir(cluster, creds)?;
        if dir.join("PG_VERSION").exists() {
            return Ok(dir);
        }
        let root = dir.parent().expect("the template folder has a parent");
        let key = dir.file_name().expect("the template folder has a name").to_string_lossy().into_owned();
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        // Only the tool's own folder: `[local] data_dir` is the user's (`up` made it enterable
        // if it made it, see `make_dirs_enterable`).
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).ok();
        self.chown(root)?;
        remove_stale_partials(root, &format!("{key}.tmp"));
        let tmp = root.join(format!("{key}.tmp{}", std::process::id()));
        progress(&format!("initdb: creating the pristine template ({}) once; later clusters copy it", self.version()?));
        let t0 = Instant::now();
        self.init_data_dir(&tmp, creds, cluster)?;
        match fs::rename(&tmp, &dir) {
            Ok(()) => {}
            Err(_) if dir.join("PG_VERSION").exists() => {
                let _ = fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display())),
        }
        progress(&format!("initdb: template ready ({:.2} s)", t0.elapsed().as_secs_f64()));
        if let Some(note) = other_templates(root, &key) {
            progress(&note);
        }
        Ok(dir)
    }

    /// Makes a pristine data directory at `pgdata` (which must not exist; its parent must be
    /// the servers' user's): `initdb`, then the configured role and database, then the line
    /// that includes the settings `up` writes. What the template holds and what a node
    /// initialised without it holds are made here, alike.
    fn init_data_dir(&self, pgdata: &Path, creds: &pg::Credentials, cluster: &Cluster) -> anyhow::Result<()> {
        // Every role gets the password as a SCRAM verifier with `[local] scram_iterations`
        // rounds (PostgreSQL stores a verifier as it is), so the plain password is never
        // written to disk here. initdb reads the bootstrap superuser's from a file (0600, the
        // servers' user's), deleted after it; one that an interrupted run left (its pid gone)
        // is deleted here.
        let verifier = crate::scram::verifier(&creds.password, cluster.local.scram_iterations);
        let parent = pgdata.parent().expect("a data directory has a parent");
        remove_stale_partials(parent, PWFILE);
        let pwfile = parent.join(format!("{PWFILE}{}", std::process::id()));
        {
            let mut f =
                fs::OpenOptions::new().write(true).create_new(true).mode_0600().open(&pwfile).with_context(|| format!("creating {}", pwfile.display()))?;
            f.write_all(verifier.as_bytes())?;
        }
        self.chown(&pwfile)?;
        // initdb's bootstrap superuser is the OS user (initdb quotes names badly: a role
        // name with `"` breaks it); the configured role is made in single-user mode below.
        let os_user = self.os_user();
        let mut c = self.command(self.bin_dir.join("initdb"));
        c.arg("-D").arg(pgdata).arg(format!("--username={os_user}")).arg(format!("--pwfile={}", pwfile.display()));
        c.args(["--auth=scram-sha-256", "--no-sync", "--encoding=UTF8", "--locale=C", "--no-instructions"]);
        let r = self.run(c, "initdb");
        let _ = fs::remove_file(&pwfile);
        let r = r.and_then(|()| self.create_role_and_database(pgdata, &os_user, creds, &verifier, &cluster.database)).and_then(|()| {
            let file = pgdata.join("postgresql.conf");
            let mut conf = fs::OpenOptions::new().append(true).open(&file).with_context(|| format!("opening {}", file.display()))?;
            writeln!(conf, "\n# settings of cargo xtask (rewritten on every start)\ninclude_if_exists = '{SETTINGS_FILE}'")
                .with_context(|| format!("writing the include of {SETTINGS_FILE} into {}", file.display()))
        });
        if r.is_err() {
            let _ = fs::remove_dir_all(pgdata);
        }
        r
    }

    /// The OS user the servers run as, which is also initdb's bootstrap superuser.
    fn os_user(&self) -> String {
        if let Some((_, _, name)) = &self.run_as {
            return name.clone();
        }
        // SAFETY: getpwuid returns NULL or a pointer to static storage, read at once.
        unsafe {
            let pw = libc::getpwuid(libc::geteuid());
            if pw.is_null() {
                return "postgres".into();
            }
            std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
        }
    }

    /// Creates the configured superuser and the target database (empty, owned by that role) in
    /// a fresh data directory, through single-user mode (SQL on stdin, no network, no shell).
    /// Only the SCRAM verifier of the password is sent. An empty database is as pristine as
    /// initdb's own: `CREATE EXTENSION citus` still runs in each node's copy.
    fn create_role_and_database(&self, pgdata: &Path, os_user: &str, creds: &pg::Credentials, verifier: &str, database: &str) -> anyhow::Result<()> {
        use postgres_protocol::escape::{escape_identifier, escape_literal};
        let mut sql = String::new();
        if creds.user != os_user {
            sql.push_str(&format!("CREATE ROLE {} SUPERUSER LOGIN PASSWORD {};\n\n", escape_identifier(&creds.user), escape_literal(verifier)));
        }
        if !["postgres", "template0", "template1"].contains(&database) {
            sql.push_str(&format!("CREATE DATABASE {} OWNER {};\n\n", escape_identifier(database), escape_identifier(&creds.user)));
        }
        if sql.is_empty() {
            return Ok(());
        }
        let mut c = self.command(self.bin_dir.join("postgres"));
        c.arg("--single").arg("-j").arg("-D").arg(pgdata).arg("-c").arg("log_statement=none").arg("template1");
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().context("starting postgres --single")?;
        child.stdin.take().expect("piped").write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || stdout.contains("ERROR") {
            bail!(
                "creating role {:?} and database {database:?} in the template failed: {}{}",
                creds.user,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Creates `node`'s data directory unless it exists, by copying `template`, or with its own
    /// `initdb` when `template` is None, and gives it its own TLS certificate; never
    /// re-initialises.
    pub fn ensure_data(&self, cluster: &Cluster, node: &Node, creds: &pg::Credentials, template: Option<&Path>) -> anyhow::Result<DataDir> {
        let p = paths(cluster, node);
        if p.pgdata.join("PG_VERSION").exists() {
            return Ok(DataDir::Existing);
        }
        if state::non_empty_dir(&p.pgdata) {
            bail!(
                "node {}: {} exists but is not a PostgreSQL data directory; it is left untouched. Move it away, or remove it yourself if you are sure",
                node.name,
                p.pgdata.display()
            );
        }
        fs::create_dir_all(&p.dir).with_context(|| format!("creating {}", p.dir.display()))?;
        fs::set_permissions(&p.dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("node {}: making {} private (mode 0700)", node.name, p.dir.display()))?;
        self.chown(&p.dir)?;
        let _ = fs::remove_dir(&p.pgdata);
        // Made beside it and renamed into place, so an interrupted `up` (Ctrl-C reaches `cp`
        // and initdb too) never leaves a half-made `pgdata` behind: the next `up` finds no
        // data directory and makes it again. The partial copy of a run that is gone was never
        // started by a server; it is removed.
        remove_stale_partials(&p.dir, PARTIAL_COPY);
        let partial = p.dir.join(format!("{PARTIAL_COPY}{}", std::process::id()));
        match template {
            Some(template) => {
                let mut c = self.command("cp");
                c.arg("-a").arg("--reflink=auto").arg("--").arg(template).arg(&partial);
                if let Err(e) = self.run(c, &format!("copying the template for node {}", node.name)) {
                    let _ = fs::remove_dir_all(&partial);
                    return Err(e);
                }
            }
            None => self.init_data_dir(&partial, creds, cluster).with_context(|| format!("node {}: creating its data directory", node.name))?,
        }
        let certificate = self.make_certificate(&partial);
        fs::rename(&partial, &p.pgdata)
            .with_context(|| format!("node {}: moving its new data directory {} into place as {}", node.name, partial.display(), p.pgdata.display()))?;
        Ok(DataDir::New { certificate })
    }

    /// Makes a self-signed certificate and key for a new data directory (`server.crt`,
    /// `server.key`, PostgreSQL's default names), so that the node starts with TLS on.
    ///
    /// Citus's inter-node connections require TLS by default, so `CREATE EXTENSION citus` on a
    /// server with `ssl` off turns it on and makes such a certificate itself, with an RSA-2048
    /// key: 0.1-0.5 s of CPU per node on the machine measured, more than the rest of the
    /// extension's creation in some runs (docs/performance.md). The same certificate with a
    /// P-256 key (common name `citus-auto-ssl`, as Citus's) takes ~10 ms. Like Citus's, it
    /// encrypts and authenticates nothing: `sslmode=require` checks no certificate. Each node gets its own
    /// key; none is in the template. `Err(why)` leaves the node without one, and Citus makes it.
    fn make_certificate(&self, pgdata: &Path) -> Result<(), String> {
        let Some(openssl) = &self.openssl else { return Err("no `openssl` program on PATH".into()) };
        let (key_file, crt_file) = (pgdata.join("server.key"), pgdata.join("server.crt"));
        let write = |path: &Path, pem: &str, mode: u32| -> anyhow::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).with_context(|| format!("creating {}", path.display()))?;
            f.write_all(pem.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            self.chown(path)
        };
        // PostgreSQL refuses a key file that others can read.
        let made = crate::p256_certificate(openssl).and_then(|(key, crt)| write(&key_file, &key, 0o600).and_then(|()| write(&crt_file, &crt, 0o644)));
        made.map_err(|e| {
            let _ = fs::remove_file(&key_file);
            let _ = fs::remove_file(&crt_file);
            format!("{e:#}")
        })
    }

    /// Fails, naming the entry and the fix, when the server would refuse a name or value of the
    /// config's `[settings]`, without starting a server: `postgres -C port` with each of them as
    /// `-c name=value` parses them as a start does (and then reads `node`'s config files) and
    /// exits before it looks at the data directory's lock, so it also runs beside the node's
    /// server. Not checked here: an extension's own settings (only once it loads), and what the
    /// server checks later in its start (combinations such as `wal_level = minimal` with
    /// `max_wal_senders` > 0, shared memory, preloaded libraries). As `-c` options the values
    /// also win over postgresql.auto.conf, where at a start that file wins over them.
    /// `Ok(Some(lines))`: the server refused, and these are what it printed.
    fn check_settings(&self, cluster: &Cluster, node: &Node) -> anyhow::Result<Option<String>> {
        if cluster.settings.is_empty() {
            return Ok(None);
        }
        let pgdata = paths(cluster, node).pgdata;
        let mut c = self.command(self.bin_dir.join("postgres"));
        c.arg("-D").arg(&pgdata).args(["-C", "port"]);
        for s in &cluster.settings {
            c.arg("-c").arg(format!("{}={}", s.name, s.value));
        }
        let out = c
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("node {}: starting postgres -C to check the config's [settings]", node.name))?;
        Ok((!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned()))
    }

    fn write_settings(&self, cluster: &Cluster, node: &Node) -> anyhow::Result<()> {
        let file = paths(cluster, node).pgdata.join(SETTINGS_FILE);
        fs::write(&file, settings(cluster, node)).with_context(|| format!("node {}: writing its settings to {}", node.name, file.display()))?;
        self.chown(&file)
    }

    /// Starts `node` unless it is running. Returns the server's handle when it was started
    /// now. The server (started with duct, in its own process group, so Ctrl-C in the
    /// terminal does not reach it) outlives this process: dropping the handle does not kill it.
    pub fn start(&self, cluster: &Cluster, node: &Node) -> anyhow::Result<Option<duct::Handle>> {
        let p = paths(cluster, node);
        if running_pid(&p.pgdata).is_some() {
            return Ok(None);
        }
        remove_stale_pid_file(&p.pgdata);
        check_port_free(cluster, node)?;
        self.write_settings(cluster, node)?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .with_context(|| format!("node {}: opening its server log {}", node.name, p.log.display()))?;
        self.chown(&p.log)?;
        let mut expr = duct::cmd(self.bin_dir.join("postgres"), [std::ffi::OsStr::new("-D"), p.pgdata.as_os_str()])
            .stdin_null()
            .stdout_file(log.try_clone()?)
            .stderr_file(log)
            .unchecked();
        for (k, v) in self.server_env() {
            expr = match v {
                Some(v) => expr.env(k, v),
                None => expr.env_remove(k),
            };
        }
        let ids = self.run_as.as_ref().map(|(u, g, _)| (*u, *g));
        let handle = expr
            .before_spawn(move |c| {
                if let Some((uid, gid)) = ids {
                    c.uid(uid).gid(gid);
                }
                c.process_group(0);
                Ok(())
            })
            .start()
            .with_context(|| format!("starting postgres for node {}", node.name))?;
        Ok(Some(handle))
    }
}

/// A node whose postmaster [`signal_stop`] has asked to shut down.
#[derive(Debug)]
pub struct Stopping {
    name: String,
    pid: i32,
    pgdata: PathBuf,
    log: PathBuf,
    since: Instant,
}

/// Asks `node` for a clean ("fast") shutdown, SIGINT to its postmaster, without waiting for it
/// ([`Stopping::wait`] does); None when it is not running. [`down`] signals every node first
/// and then waits for each.
pub fn signal_stop(cluster: &Cluster, node: &Node) -> anyhow::Result<Option<Stopping>> {
    signal_dir(&node.name, paths(cluster, node))
}

fn signal_dir(name: &str, p: NodePaths) -> anyhow::Result<Option<Stopping>> {
    let Some(pid) = running_pid(&p.pgdata) else { return Ok(None) };
    // SAFETY: plain syscall on a pid read from the node's own postmaster.pid.
    if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
        let e = std::io::Error::last_os_error();
        let fix = if e.raw_os_error() == Some(libc::EPERM) {
            "run `cargo xtask down` as the user that started it (or root)"
        } else {
            "check that pid with `ps`; `cargo xtask status` shows what runs"
        };
        bail!("node {name}: cannot signal its postgres (pid {pid}, from {}): {e}\n    fix: {fix}", p.pgdata.join("postmaster.pid").display());
    }
    Ok(Some(Stopping { name: name.to_string(), pid, pgdata: p.pgdata, log: p.log, since: Instant::now() }))
}

/// The node folders in the cluster's folder that are not among `cluster`'s nodes: workers an
/// earlier `up --workers N` started beyond the count this run acts on.
pub(crate) fn other_node_dirs(cluster: &Cluster) -> Vec<(String, NodePaths)> {
    let Ok(entries) = fs::read_dir(state::cluster_dir(cluster)) else { return Vec::new() };
    let mut found: Vec<(String, NodePaths)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let p = NodePaths::in_dir(e.path());
            let known = name.starts_with('.') || cluster.nodes().any(|n| n.name == name);
            (!known && p.pgdata.join("PG_VERSION").exists()).then_some((name, p))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

impl Stopping {
    /// Waits until the node has exited, repeating the shutdown's SIGTERM to its Citus
    /// maintenance daemons while it takes long (see [`citus_maintenance_daemons`]).
    pub fn wait(&self, timeout: Duration, progress: Progress<'_>) -> anyhow::Result<()> {
        let (pid, name) = (self.pid, &self.name);
        let deadline = self.since + timeout;
        let mut next_nudge = self.since + DAEMON_NUDGE_AFTER;
        let mut said = false;
        while alive(pid) && self.pgdata.join("postmaster.pid").exists() {
            let now = Instant::now();
            if !said && now > self.since + crate::STILL_STOPPING_AFTER {
                // A clean shutdown ends with a checkpoint: after a test run that wrote much,
                // that takes a while.
                progress(&format!(
                    "{name} (pid {pid}): still stopping after {} s (a clean shutdown: its sessions end, then its checkpoint; waiting up to {} s, see {})",
                    crate::STILL_STOPPING_AFTER.as_secs(),
                    timeout.as_secs(),
                    self.log.display()
                ));
                said = true;
            }
            if now > deadline {
                bail!(
                    "node {name} (pid {pid}) did not stop within {} s; see {}\n    fix: wait and run `cargo xtask down` again, or stop it at once with `kill -QUIT {pid}` (an immediate stop: the data is kept, recovered at the next start)",
                    timeout.as_secs(),
                    self.log.display()
                );
            }
            if now > next_nudge {
                for daemon in citus_maintenance_daemons(pid) {
                    // SAFETY: plain syscall on a child of the node's postmaster, read from /proc just now.
                    unsafe { libc::kill(daemon, libc::SIGTERM) };
                }
                next_nudge = now + DAEMON_NUDGE_AFTER;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        Ok(())
    }
}

/// How long [`Stopping::wait`] waits before it repeats the shutdown's SIGTERM to Citus's maintenance
/// daemons, and then between repeats.
const DAEMON_NUDGE_AFTER: Duration = Duration::from_millis(250);

/// The pids of the Citus maintenance daemons among `postmaster`'s children (one per database
/// with the extension; process title `Citus Maintenance Daemon`).
///
/// In a fast shutdown the postmaster sends each of them SIGTERM, whose handler only sets a flag
/// and the process latch. When it arrives while the daemon waits for the other nodes (its
/// distributed deadlock detection asks every node, every 2 s by default), the wait for their
/// answers resets the latch, and the daemon then sleeps out its whole timeout before it sees
/// the flag: one node took ~2.3 s instead of ~0.3 s to stop in about one `down` of a 1 + 8
/// cluster in three (11 of 29 measured, docs/performance.md). The same signal again only sets the latch again.
pub fn citus_maintenance_daemons(postmaster: i32) -> Vec<i32> {
    // The postmaster is single-threaded: its main thread's `children` lists them all. Where the
    // kernel has no such file, every process's parent is read instead.
    let children: Vec<i32> = match fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")) {
        Ok(list) => list.split_whitespace().filter_map(|p| p.parse().ok()).collect(),
        Err(_) => fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                // The parent pid is the second field after the `)` that ends the command name.
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok()) == Some(postmaster)
            })
            .collect(),
    };
    children.into_iter().filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(24).any(|w| w == b"Citus Maintenance Daemon"))).collect()
}

/// The postmaster's pid if `pgdata/postmaster.pid` names a live postgres process whose working
/// folder is `pgdata` (a postmaster works in its data directory): after a crash or a reboot,
/// the file's pid may be another process's by now, another PostgreSQL server's even, which
/// `down` must not stop. A process whose folder cannot be read (another user's) is not ours.
pub fn running_pid(pgdata: &Path) -> Option<i32> {
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if !alive(pid) {
        return None;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("postgres") {
        return None;
    }
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    (fs::canonicalize(pgdata).ok()? == cwd).then_some(pid)
}

/// The file in each data directory that `up` writes the server's settings to on every start
/// (included by its postgresql.conf).
pub(crate) const SETTINGS_FILE: &str = "citus-xtask.conf";

/// The settings `up` gives `node`'s server from the config (what [`SETTINGS_FILE`] holds).
fn settings(cluster: &Cluster, node: &Node) -> String {
    let pgdata = paths(cluster, node).pgdata;
    let mut text = format!(
        "# Written by `cargo xtask up` from {} on every start: edit that file, not this one.\n\
         port = {}\nlisten_addresses = {}\nunix_socket_directories = ''\nshared_preload_libraries = {}\n\
         max_connections = 200\n",
        cluster.source.display(),
        node.client.port,
        conf_quote(&node.client.host),
        conf_quote(&cluster.shared_preload_libraries.join(",")),
    );
    if pgdata.join("server.crt").exists() && pgdata.join("server.key").exists() {
        text.push_str(TLS_SETTINGS);
    }
    if cluster.local.dev_speed {
        text.push_str(
            "# dev_speed = true: a killed server loses nothing, but a machine (OS) crash can corrupt the data\nfsync = off\nfull_page_writes = off\n",
        );
    }
    if !cluster.settings.is_empty() {
        // PostgreSQL uses the last line of a setting given twice: these win over the above.
        text.push_str("# [settings] of the config\n");
        for s in &cluster.settings {
            text.push_str(&format!("{} = {}\n", s.name, conf_quote(&s.value)));
        }
    }
    text
}

/// The settings whose values differ between `started` (the settings file a running server
/// was started with) and `now` (what the config gives it now), by name.
fn changed_settings(started: &str, now: &str) -> Vec<String> {
    let parse = |text: &str| -> std::collections::BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| !k.trim_start().starts_with('#'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    };
    let (before, after) = (parse(started), parse(now));
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
    keys.into_iter().cloned().collect()
}

/// The address a running server of `node` listens on (its postmaster.pid), when it is not the
/// node's client address in the config.
fn moved_address(pgdata: &Path, node: &Node) -> Option<(String, u16)> {
    running_address(pgdata).filter(|(h, p)| *p != node.client.port || (!h.is_empty() && *h != node.client.host))
}

/// The settings `node`'s running server lacks: those whose values in the settings file it
/// started with differ from what the config gives it now, by name.
fn settings_changed(cluster: &Cluster, node: &Node) -> Vec<String> {
    let pgdata = paths(cluster, node).pgdata;
    let started = fs::read_to_string(pgdata.join(SETTINGS_FILE)).unwrap_or_default();
    let mut changed = changed_settings(&started, &settings(cluster, node));
    // Without `openssl`, a server starts without TLS settings and Citus's CREATE EXTENSION
    // then makes the certificate and turns TLS on itself (ALTER SYSTEM, reload): the server
    // already runs with what the next start's TLS settings would give it.
    let citus_tls = fs::read_to_string(pgdata.join("postgresql.auto.conf")).is_ok_and(|t| t.lines().any(|l| l.trim_start().starts_with("ssl = 'on'")));
    if citus_tls && !started.contains("\nssl = on") {
        let tls_keys: Vec<&str> = TLS_SETTINGS.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).map(|(k, _)| k.trim()).collect();
        changed.retain(|k| !tls_keys.contains(&k.as_str()));
    }
    changed
}

/// What `node`'s running server lacks of the config, which `up --restart` would apply: the
/// settings changed since it started, by name (a new client address shows as `port` or
/// `listen_addresses`). Empty when it runs as configured, or does not run.
pub fn changed_since_start(cluster: &Cluster, node: &Node) -> Vec<String> {
    if running_pid(&paths(cluster, node).pgdata).is_none() {
        return Vec::new();
    }
    settings_changed(cluster, node)
}

/// Says, per node whose data directory this tool made and that no server runs on, that
/// `cargo xtask up` starts it: at once, not only when a wait for it runs out (`setup` still
/// waits, since a node may be starting).
pub fn say_stopped(cluster: &Cluster, progress: Progress<'_>) {
    for n in cluster.nodes() {
        let pgdata = paths(cluster, n).pgdata;
        if running_pid(&pgdata).is_none() && pgdata.join("PG_VERSION").exists() {
            progress(&format!("{}: no server runs on its data directory {}: {}", n.name, pgdata.display(), crate::up_starts_it(cluster)));
        }
    }
}

/// Makes each folder on the way to `dir` that does not exist yet, mode 0755 whatever the umask,
/// so that the servers' user can enter it ([`closed_folder`] counts on that); folders that
/// exist are left as they are.
fn make_dirs_enterable(dir: &Path) -> std::io::Result<()> {
    let mut p = PathBuf::new();
    for part in dir.components() {
        p.push(part);
        match fs::create_dir(&p) {
            Ok(()) => fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The first existing folder on the way to `dir` that user `uid` (primary group `gid`) may
/// not enter, with its mode; folders that do not exist yet are made by `up`, enterable.
fn closed_folder(dir: &Path, uid: u32, gid: u32) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut p = PathBuf::new();
    for part in dir.components() {
        p.push(part);
        let m = fs::metadata(&p).ok().filter(fs::Metadata::is_dir)?;
        let mode = m.mode() & 0o7777;
        let x = if m.uid() == uid {
            0o100
        } else if m.gid() == gid {
            0o010
        } else {
            0o001
        };
        if mode & x == 0 {
            return Some((p, mode));
        }
    }
    None
}

/// The listen address and port a running server wrote to its postmaster.pid (lines 6 and 4;
/// the address is empty when it listens on no TCP address).
fn running_address(pgdata: &Path) -> Option<(String, u16)> {
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let port = lines.get(3)?.trim().parse().ok()?;
    Some((lines.get(5).map_or("", |l| l.trim()).to_string(), port))
}

/// A postmaster killed hard whose parent has not reaped it yet is a zombie: dead, but
/// PostgreSQL's own stale-lock check (`kill(pid, 0)`) thinks it alive and refuses to start.
/// Its `postmaster.pid` is removed; any other is left for PostgreSQL to judge.
fn remove_stale_pid_file(pgdata: &Path) {
    let file = pgdata.join("postmaster.pid");
    let Some(pid) = fs::read_to_string(&file).ok().and_then(|t| t.lines().next()?.trim().parse::<i32>().ok()) else { return };
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
    if zombie {
        let _ = fs::remove_file(&file);
    }
}

/// Prefix of a template copy in progress, beside the node's `pgdata`; the copying
/// process's pid follows.
const PARTIAL_COPY: &str = "pgdata.partial";

/// Prefix of initdb's password file, beside the data directory being made; the pid follows.
const PWFILE: &str = ".initdb-pwfile";

/// A note about the templates in `root` other than `key`'s: a new template is made when the
/// server binary (an upgraded package), the role, the password, the database or the SCRAM
/// rounds change, and the old ones stay. They are data directories, so they are named, never
/// deleted.
fn other_templates(root: &Path, key: &str) -> Option<String> {
    let others: Vec<PathBuf> = fs::read_dir(root)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name != key && name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()) && e.path().join("PG_VERSION").exists()
        })
        .map(|e| e.path())
        .collect();
    if others.is_empty() {
        return None;
    }
    let bytes: u64 = others.iter().map(|p| tree_size(p)).sum();
    Some(format!(
        "initdb: {} older template(s) in {} ({:.0} MB), made for another server binary, role, password, database or scram_iterations, are no longer used by this config: {}. \
         They are caches: delete them by hand (`rm -r`) if no other config in this data folder uses them",
        others.len(),
        root.display(),
        bytes as f64 / 1e6,
        others.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
    ))
}

/// The bytes of the files under `dir` (what `du` would count, near enough), following no links.
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Removes the entries of `dir` named `<prefix><pid>` whose process is gone: copies,
/// template builds and initdb password files an interrupted run left. No server ever ran on
/// those data directories.
fn remove_stale_partials(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix).and_then(|p| p.parse::<i32>().ok()) else { continue };
        if !alive(pid) {
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) { fs::remove_dir_all(e.path()) } else { fs::remove_file(e.path()) };
        }
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: it has exited and only waits to be reaped.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The last lines of a node's log, for error messages.
pub fn log_tail(cluster: &Cluster, node: &Node, lines: usize) -> String {
    let p = paths(cluster, node);
    let tail = tail_lines(&p.log, lines).unwrap_or_default().join("\n    ");
    format!("last lines of {}:\n    {tail}", p.log.display())
}

/// The last `lines` lines `node`'s server wrote to its log from byte `from` on (what one
/// start logged), and the text to show for them; the log's last lines when that start wrote
/// none.
fn log_since(cluster: &Cluster, node: &Node, from: u64, lines: usize) -> (String, String) {
    let p = paths(cluster, node);
    match tail_lines_from(&p.log, from, lines) {
        Ok(new) if !new.is_empty() => {
            let shown = format!("what it logged ({}):\n    {}", p.log.display(), new.join("\n    "));
            (new.join("\n"), shown)
        }
        _ => (String::new(), log_tail(cluster, node, lines)),
    }
}

/// What to do about `node`'s server (binaries in `bin_dir`) that exited while starting, from
/// what it logged.
pub fn exit_fix(cluster: &Cluster, bin_dir: &Path, node: &Node, log: &str) -> String {
    let source = cluster.source.display();
    let bin = bin_dir.display();
    let failure = crate::StartFailure::read(log);
    if let Some(fix) = failure.as_ref().and_then(|f| f.settings_fix(cluster, "cargo xtask up")) {
        return fix;
    }
    match failure {
        Some(crate::StartFailure::MissingLibrary("citus")) => format!(
            "the PostgreSQL in {bin} has no Citus: install Citus built for it (its citus.so goes in that PostgreSQL's `pg_config --pkglibdir`), \
             or set [local] bin_dir in {source} to a PostgreSQL that has it; for plain PostgreSQL nodes, set shared_preload_libraries = [] and use `cargo xtask up --no-setup`"
        ),
        Some(crate::StartFailure::MissingLibrary(lib)) => {
            format!("the PostgreSQL in {bin} has no library {lib:?}: install it for that PostgreSQL, or remove it from shared_preload_libraries in {source}")
        }
        Some(crate::StartFailure::OtherMajor(made_by)) => {
            let (by, dir) = match made_by {
                Some(v) => (format!("PostgreSQL {v}"), format!(" (Debian: /usr/lib/postgresql/{v}/bin)")),
                None => ("another PostgreSQL major version".to_string(), String::new()),
            };
            format!(
                "the data directory {} was made by {by}, not by the PostgreSQL in {bin}. Set [local] bin_dir in {source} to that version's server binaries{dir}, \
                 or delete this cluster's data with `cargo xtask down --purge` (it is lost)",
                paths(cluster, node).pgdata.display()
            )
        }
        Some(crate::StartFailure::PortTaken) => format!(
            "another program took port {} while {} started: stop it (`ss -ltnp` names it), or {}",
            node.client.port,
            node.name,
            cluster.port_fix(node)
        ),
        Some(crate::StartFailure::HostNotHere) => host_fix(cluster, node),
        Some(crate::StartFailure::BadSetting(_)) | None => format!(
            "the log lines above say why. Fix that, then run `cargo xtask up` again (the data is kept); `cargo xtask logs --node {}` shows more",
            node.name
        ),
    }
}

/// `node`'s server log and its last `lines` lines, or `None` when it has no log (never
/// started by this tool).
pub fn log_lines(cluster: &Cluster, node: &Node, lines: usize) -> anyhow::Result<(PathBuf, Option<Vec<String>>)> {
    log_lines_and_end(cluster, node, lines).map(|(log, tail, _)| (log, tail))
}

/// [`log_lines`], and the length of the log they were read from: where
/// [`follow_logs`] goes on without a line lost or repeated (0 when there is no log yet).
pub fn log_lines_and_end(cluster: &Cluster, node: &Node, lines: usize) -> anyhow::Result<(PathBuf, Option<Vec<String>>, u64)> {
    let log = paths(cluster, node).log;
    let end = match fs::metadata(&log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((log, None, 0)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
    };
    let tail = tail_lines_between(&log, 0, end, lines).with_context(|| format!("reading {}", log.display()))?;
    Ok((log, Some(tail), end))
}

/// How often [`follow_logs`] looks for new lines when none came.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Follows the server logs of `nodes`, each from byte `from[i]` on (see
/// [`log_lines_and_end`]), calling `line` with the node and each whole line written since,
/// until the process is interrupted or `line` breaks (its reader went away). A log that is
/// deleted (`down --purge`) or starts over is followed from the start of the new one; a node
/// without a log is waited for.
pub fn follow_logs(cluster: &Cluster, nodes: &[&Node], from: &[u64], line: &mut dyn FnMut(&Node, &str) -> std::ops::ControlFlow<()>) -> anyhow::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    struct Followed {
        log: PathBuf,
        pos: u64,
        /// The file's inode: another one is a new log, read from its start.
        inode: Option<u64>,
        partial: Vec<u8>,
    }
    let mut files: Vec<Followed> = nodes
        .iter()
        .zip(from)
        .map(|(n, f)| {
            let log = paths(cluster, n).log;
            let inode = fs::metadata(&log).ok().map(|m| m.ino());
            Followed { log, pos: *f, inode, partial: Vec::new() }
        })
        .collect();
    loop {
        let mut read_any = false;
        for (node, Followed { log, pos, inode, partial }) in nodes.iter().zip(files.iter_mut()) {
            let Ok(mut f) = fs::File::open(&*log) else {
                (*pos, *inode) = (0, None);
                partial.clear();
                continue;
            };
            let meta = f.metadata().with_context(|| format!("reading {}", log.display()))?;
            let len = meta.len();
            if len < *pos || *inode != Some(meta.ino()) {
                (*pos, *inode) = (0, Some(meta.ino()));
                partial.clear();
            }
            if len == *pos {
                continue;
            }
            f.seek(SeekFrom::Start(*pos)).and_then(|_| f.take(len - *pos).read_to_end(partial)).with_context(|| format!("reading {}", log.display()))?;
            *pos = len;
            read_any = true;
            while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
                let text: Vec<u8> = partial.drain(..=nl).collect();
                if line(node, String::from_utf8_lossy(&text[..nl]).trim_end_matches('\r')).is_break() {
                    return Ok(());
                }
            }
        }
        if !read_any {
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// The last `lines` lines of the file at `path`, reading only as much of its end as they need
/// (a server log grows for as long as the cluster lives).
fn tail_lines(path: &Path, lines: usize) -> std::io::Result<Vec<String>> {
    tail_lines_from(path, 0, lines)
}

/// Like [`tail_lines`], of the part of the file from byte `from` on (`from` is where a line
/// starts: the log's length before a server start).
fn tail_lines_from(path: &Path, from: u64, lines: usize) -> std::io::Result<Vec<String>> {
    tail_lines_between(path, from, u64::MAX, lines)
}

/// Like [`tail_lines_from`], of the part of the file before byte `end` (where a line starts).
fn tail_lines_between(path: &Path, from: u64, end: u64, lines: usize) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len().min(end);
    let mut chunk: u64 = 64 << 10;
    loop {
        let start = len.saturating_sub(chunk).max(from);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        (&mut f).take(len - start).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let mut all: Vec<&str> = text.lines().collect();
        // A chunk that starts mid-file may start mid-line: that first piece is not a line.
        if start > from && !all.is_empty() {
            all.remove(0);
        }
        if all.len() >= lines || start == from {
            return Ok(all[all.len().saturating_sub(lines)..].iter().map(|l| l.to_string()).collect());
        }
        chunk *= 4;
    }
}

/// The fix for a local node whose server cannot listen on its client host.
fn host_fix(cluster: &Cluster, node: &Node) -> String {
    format!(
        "a local server listens on its node's client host: set `host` of {} in {} to `localhost` or an address of this machine (a Docker service name, such as `{}`, resolves only inside a compose network: that is the docker backend's cluster address)",
        node.name,
        cluster.source.display(),
        node.name
    )
}

/// Refuses, before anything is started for `node`, a client port another program listens on,
/// and a client host the server could not listen on (a name that does not resolve, or no
/// address of this machine). For `localhost`, each of its two addresses must be free of other
/// programs, and one it cannot have (no ::1 without IPv6) is no reason to refuse.
fn check_port_free(cluster: &Cluster, node: &Node) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let host = node.client.host.as_str();
    let addrs: Vec<std::net::SocketAddr> = if host == "localhost" {
        vec![(std::net::Ipv4Addr::LOCALHOST, node.client.port).into(), (std::net::Ipv6Addr::LOCALHOST, node.client.port).into()]
    } else {
        match (host, node.client.port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => bail!(
                "node {}: its client host `{host}` ({}) does not resolve ({e}), so its server could not listen there. Nothing was started for this node.\n    fix: {}",
                node.name,
                node.client,
                host_fix(cluster, node)
            ),
        }
    };
    let mut not_here = Vec::new();
    for a in &addrs {
        if let Err(e) = std::net::TcpListener::bind(a) {
            if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                not_here.push(format!("{}: {e}", a.ip()));
            }
            if e.kind() == std::io::ErrorKind::AddrInUse {
                let by = holder(node.client.port);
                // docker-proxy publishes a container's port: most likely this very cluster,
                // still up on the Docker backend.
                let docker =
                    by.as_deref().is_some_and(|h| h.starts_with("docker-proxy")) && state::recorded_backend(cluster) == Some(citus_config::Backend::Docker);
                bail!(
                    "node {}: client port {} ({}) is already in use{}; {}. Nothing was started for this node",
                    node.name,
                    node.client.port,
                    node.client,
                    by.map_or(String::new(), |h| format!(" by {h}")),
                    if docker {
                        format!(
                            "cluster `{}` was started on the Docker backend: stop it first (`cargo xtask down --backend docker`; its volumes are kept)",
                            cluster.name
                        )
                    } else {
                        format!("stop that program, or {}", cluster.port_fix(node))
                    }
                );
            }
        }
    }
    if host != "localhost" && !addrs.is_empty() && not_here.len() == addrs.len() {
        bail!(
            "node {}: its client host `{host}` ({}) is no address of this machine ({}), so its server could not listen there. Nothing was started for this node.\n    fix: {}",
            node.name,
            node.client,
            not_here.join("; "),
            host_fix(cluster, node)
        );
    }
    Ok(())
}

/// Names the process listening on `port`, from `ss` when it is installed.
pub(crate) fn holder(port: u16) -> Option<String> {
    let ss = which::which("ss").ok()?;
    let out = std::process::Command::new(ss).args(["-Hltnp", &format!("sport = :{port}")]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let users = text.lines().find_map(|l| l.split_once("users:((").map(|(_, u)| u.to_string()))?;
    let mut parts = users.split(',');
    let name = parts.next()?.trim_matches('"');
    let pid = parts.next().and_then(|p| p.strip_prefix("pid=")).unwrap_or("?");
    Some(format!("{name} (pid {pid})"))
}

/// Quotes a value for postgresql.conf.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A template folder's name: 16 hex digits of HMAC-SHA-256 over `parts` (each ended by a NUL),
/// keyed with this data folder's own secret (`.templates/.key`, 32 random bytes, readable by
/// its owner only, made on first use). The parts include the password, and the folder names
/// can be listed by anyone who can enter the data folder: a name made with a public function
/// could be tried against guesses of the password; without the key it cannot.
fn template_key(root: &Path, parts: &[&[u8]]) -> anyhow::Result<String> {
    use hmac::{KeyInit, Mac};
    let secret = template_secret(root)?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
        mac.update(&[0]);
    }
    Ok(mac.finalize().into_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// The data folder's template secret (see [`template_key`]). Two `up`s making it at once both
/// end up with the first one's: each writes its own file and links it into place, which only
/// one link does.
fn template_secret(root: &Path) -> anyhow::Result<Vec<u8>> {
    let path = root.join(".key");
    let read = |p: &Path| fs::read(p).ok().filter(|k| k.len() == 32);
    if let Some(k) = read(&path) {
        return Ok(k);
    }
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    // What an `up` killed between writing its key and linking it left.
    remove_stale_partials(root, ".key.tmp");
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))?;
    let tmp = root.join(format!(".key.tmp{}", std::process::id()));
    let written = fs::OpenOptions::new().write(true).create(true).truncate(true).mode_0600().open(&tmp).and_then(|mut f| std::io::Write::write_all(&mut f, &k));
    written.with_context(|| format!("writing {}", tmp.display()))?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(k.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path)
            .ok_or_else(|| anyhow::anyhow!("{} is not a 32-byte key; fix: delete it (the templates it named are then made anew, once)", path.display())),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Starts every node (creating data directories from the template where missing), in
/// parallel, and waits until each accepts a login. A server that exits while starting fails
/// at once with the tail of its log. Returns each node's ready connection (see [`crate::Ready`]).
/// `on_started` runs on each node's thread as soon as a server this call started is ready.
/// A running server started with other settings or at another client address than the config
/// now gives it is named and left running, or, with `restart`, stopped (a clean, fast
/// shutdown) and started again with them.
/// Holds the cluster's [`state::UpLock`] throughout: a concurrent `up` of it waits. Once it
/// holds it, writes `workers` to the cluster's record ([`state::lock_up`]).
pub fn up(
    cluster: &Cluster,
    creds: &pg::Credentials,
    workers: state::WorkersRecord,
    on_started: Option<crate::OnStarted<'_>>,
    restart: bool,
    progress: Progress<'_>,
) -> anyhow::Result<crate::Ready> {
    let local = detect(cluster)?;
    if let Some((uid, gid, user)) = &local.run_as {
        let data_dir = std::path::absolute(&cluster.local.data_dir).unwrap_or_else(|_| cluster.local.data_dir.clone());
        if let Some((folder, mode)) = closed_folder(&data_dir, *uid, *gid) {
            bail!(
                "the servers run as OS user {user} (initdb refuses root), which cannot enter {} (mode {mode:o}) on the way to [local] data_dir {}.\n    fix: let it in (`chmod o+x {}`), or set [local] data_dir in {} to a folder it can reach (e.g. under /tmp or /var/tmp)",
                folder.display(),
                data_dir.display(),
                folder.display(),
                cluster.source.display()
            );
        }
        make_dirs_enterable(&data_dir).map_err(|e| state::file_error(cluster, "creating", &data_dir, e))?;
    }
    let _lock = state::lock_up(cluster, workers, progress)?;
    let nodes: Vec<&Node> = cluster.nodes().collect();
    // Refuse before starting anything when a port is taken by something else, or when a node's
    // server already runs at another address than the config now gives it (it would never
    // answer there: the wait would run out), unless told to restart it.
    let mut to_restart: Vec<(&Node, String)> = Vec::new();
    for n in &nodes {
        let pgdata = paths(cluster, n).pgdata;
        match running_pid(&pgdata) {
            None => check_port_free(cluster, n)?,
            Some(pid) => {
                if let Some((host, port)) = moved_address(&pgdata, n) {
                    if restart {
                        to_restart.push((n, format!("it listens on {host}:{port}, the config gives it {}", n.client)));
                        continue;
                    }
                    bail!(
                        "node {}: its server (pid {pid}) already runs, listening on {host}:{port}, but {} now gives it {}.\n    fix: restart it at the new address: `cargo xtask up --restart` (the data is kept)",
                        n.name,
                        cluster.source.display(),
                        n.client
                    );
                }
                let changed = settings_changed(cluster, n);
                if !changed.is_empty() && restart {
                    to_restart.push((n, format!("the config changed {}", changed.join(", "))));
                } else if !changed.is_empty() {
                    progress(&format!(
                        "{}: runs with settings the config has changed since it started ({}): `cargo xtask up --restart` applies them",
                        n.name,
                        changed.join(", ")
                    ));
                }
            }
        }
    }
    // A node moving to another address needs that address free: checked before any node is
    // stopped. Then every node to restart is signalled before any is waited for, as in `down`,
    // and each is waited for even when another fails. They start again below; when one
    // did not stop, `up` fails instead, naming the ones that did and are now down.
    for (n, _) in &to_restart {
        if moved_address(&paths(cluster, n).pgdata, n).is_some() {
            check_port_free(cluster, n)?;
        }
    }
    // The settings are checked too, on every node to restart (each has its own config files):
    // a name or value the server refuses would leave them all stopped.
    let checked: Vec<anyhow::Result<Option<String>>> = std::thread::scope(|s| {
        let hs: Vec<_> = to_restart.iter().map(|(n, _)| s.spawn(|| local.check_settings(cluster, n))).collect();
        hs.into_iter().map(|h| h.join().expect("settings check thread panicked")).collect()
    });
    let checked_nodes: Vec<&Node> = to_restart.iter().map(|(n, _)| *n).collect();
    crate::settings_outcome(cluster, &checked_nodes, checked, "no node was restarted (they run as before)", "cargo xtask up --restart", |n| {
        format!("{}'s config files", paths(cluster, n).pgdata.display())
    })?;
    let stopping: Vec<(&Node, anyhow::Result<Option<Stopping>>)> = to_restart
        .iter()
        .map(|(n, why)| {
            progress(&format!("{}: restarting: {why}", n.name));
            (*n, signal_stop(cluster, n))
        })
        .collect();
    let stopped: Vec<(&Node, anyhow::Result<()>)> =
        stopping.into_iter().map(|(n, s)| (n, s.and_then(|s| s.map_or(Ok(()), |s| s.wait(Duration::from_secs(60), progress))))).collect();
    restart_stops(stopped)?;
    let missing: Vec<&Node> = nodes.iter().copied().filter(|n| !paths(cluster, n).pgdata.join("PG_VERSION").exists()).collect();
    state::record_backend(cluster, citus_config::Backend::Local)?;
    fs::set_permissions(state::cluster_dir(cluster), fs::Permissions::from_mode(0o755)).ok();
    // When the template has to be built (a first run), its initdb keeps one core busy. On a
    // machine with another core, the first node without data (the coordinator on a new
    // cluster) runs its own initdb there meanwhile, so that it starts, and creates its
    // extension, while the template is copied for the others.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let direct = match missing.as_slice() {
        [first, _, ..] if cores >= 2 && !local.template_dir(cluster, creds)?.join("PG_VERSION").exists() => Some(*first),
        _ => None,
    };
    let results: Vec<anyhow::Result<crate::ReadyConn>> = std::thread::scope(|s| {
        let local = &local;
        let mut direct_init = direct.map(|n| s.spawn(move || local.ensure_data(cluster, n, creds, None)));
        let template = if missing.is_empty() {
            None
        } else {
            match local.template(cluster, creds, progress) {
                Ok(t) => Some(t),
                Err(e) => {
                    // The other node's own initdb finishes (a valid data directory, used next time).
                    let _ = direct_init.take().map(|h| h.join());
                    return vec![Err(e)];
                }
            }
        };
        let deadline = Instant::now() + Duration::from_secs(cluster.ready_timeout_secs);
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                let template = template.clone();
                let own_init = if direct.is_some_and(|d| d.name == n.name) { direct_init.take() } else { None };
                s.spawn(move || -> anyhow::Result<crate::ReadyConn> {
                    let (made, how) = match own_init {
                        Some(h) => (h.join().expect("initdb thread panicked")?, " (its own initdb, run while the template was built)"),
                        None if template.is_some() => (local.ensure_data(cluster, n, creds, template.as_deref())?, ""),
                        None => (DataDir::Existing, ""),
                    };
                    if let DataDir::New { certificate } = made {
                        let tls = match certificate {
                            Ok(()) => String::new(),
                            Err(why) => format!(
                                "; it has no TLS certificate of its own ({why}), so CREATE EXTENSION citus will make one (0.1-0.5 s of CPU; install openssl to skip that)"
                            ),
                        };
                        progress(&format!("{}: new data directory {}{how}{tls}", n.name, paths(cluster, n).pgdata.display()));
                    }
                    let log_from = fs::metadata(paths(cluster, n).log).map_or(0, |m| m.len());
                    let mut child = local.start(cluster, n)?;
                    if child.is_none() {
                        progress(&format!("{}: already running", n.name));
                    }
                    let ready = pg::wait_started(n, creds, &[&cluster.database, &cluster.maintenance_database], deadline, progress, |timed_out, e| {
                        if let Some(out) = child.as_ref().map(|c| c.try_wait()).transpose()?.flatten() {
                            // Another postmaster took the data directory first: one that an
                            // interrupted `up` started a moment ago and that had not written its
                            // postmaster.pid yet when this run looked. Wait for that one.
                            if let Some(pid) = running_pid(&paths(cluster, n).pgdata) {
                                progress(&format!("{}: already starting (postgres pid {pid}); waiting for it", n.name));
                                child = None;
                                return Ok(());
                            }
                            let (logged, shown) = log_since(cluster, n, log_from, 15);
                            bail!(
                                "node {} at {}: postgres exited while starting ({}); {shown}\n    fix: {}",
                                n.name,
                                n.client,
                                out.status,
                                exit_fix(cluster, &local.bin_dir, n, &logged)
                            );
                        }
                        if timed_out {
                            bail!(
                                "node {} at {} did not accept a login within {} s (last error: {e}); {}\n    \
                                 fix: raise [wait] timeout_secs in {} on a slow machine, or see the log; its server keeps running (`cargo xtask status` shows when it accepts the login, `cargo xtask down` stops it)",
                                n.name,
                                n.client,
                                cluster.ready_timeout_secs,
                                log_tail(cluster, n, 15),
                                cluster.source.display()
                            );
                        }
                        Ok(())
                    })?;
                    match on_started {
                        Some(f) if child.is_some() => f(n, ready),
                        _ => Ok(ready),
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("node thread panicked")).collect()
    });
    crate::all_nodes(results)
}

/// What stopping the nodes of an `up --restart` came to: `Ok` when every one stopped, else one
/// error with each failure (each names its node and fix) and then the nodes that did stop,
/// which `up` does not start again, with the task that does.
fn restart_stops(stopped: Vec<(&Node, anyhow::Result<()>)>) -> anyhow::Result<()> {
    if stopped.iter().all(|(_, r)| r.is_ok()) {
        return Ok(());
    }
    let down: Vec<&str> = stopped.iter().filter(|(_, r)| r.is_ok()).map(|(n, _)| n.name.as_str()).collect();
    let errs: Vec<String> = stopped.into_iter().filter_map(|(_, r)| r.err()).map(|e| format!("{e:#}")).collect();
    let rest = if down.is_empty() {
        String::new()
    } else {
        format!("\n{} stopped for the restart and did not start again (data kept): `cargo xtask up` starts them", down.join(", "))
    };
    bail!("up --restart: {}{rest}", errs.join("\n"))
}

/// The prefix of a node folder that `down --purge` renamed aside before deleting it.
const PURGING: &str = ".purging-";

/// Stops every node in parallel (clean shutdown); keeps the data unless `purge`.
/// Returns how many servers it stopped (0: none of the cluster's was running here) and how
/// many node folders it deleted.
pub fn down(cluster: &Cluster, purge: bool, progress: Progress<'_>) -> anyhow::Result<(usize, usize)> {
    // Not while an `up` of the cluster starts nodes (it holds the same lock; see state).
    let _lock = state::lock_down(cluster, progress)?;
    // Every node is signalled before any is waited for. With a thread per node doing both, the
    // first nodes' shutdowns took both cores of the machine measured, and the threads of the
    // last ones got to their signal ~200 ms later (2 of 9 on 1 + 8, strace), holding `down` up.
    // (node, what the line after its stop says, its signal)
    let mut signalled: Vec<(&str, String, anyhow::Result<Option<Stopping>>)> =
        cluster.nodes().map(|n| (n.name.as_str(), format!("{} at {}", n.name, n.client), signal_stop(cluster, n))).collect();
    // A server of a node folder beyond this run's nodes (an `up --workers 8` before an `up
    // --workers 2`) is stopped too: nothing else would, and its data is kept either way.
    let others = other_node_dirs(cluster);
    for (name, p) in &others {
        if running_pid(&p.pgdata).is_some() {
            let what = format!("{name} (not one of this run's {} worker(s); its data is kept)", cluster.workers.len());
            signalled.push((name, what, signal_dir(name, p.clone())));
        }
    }
    let results: Vec<anyhow::Result<bool>> = std::thread::scope(|s| {
        let hs: Vec<_> = signalled
            .into_iter()
            .map(|(name, what, signal)| {
                s.spawn(move || match signal? {
                    Some(stopping) => {
                        stopping.wait(Duration::from_secs(60), progress)?;
                        progress(&format!("stopped {what}"));
                        Ok(true)
                    }
                    None => {
                        progress(&format!("{name} was not running"));
                        Ok(false)
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("stop thread panicked")).collect()
    });
    let stopped = crate::all_nodes(results)?.into_iter().filter(|s| *s).count();
    let mut purged = 0;
    if purge {
        // Only the nodes this run names are deleted; another node folder is said, and kept.
        for (name, p) in &others {
            progress(&format!(
                "kept {name}'s data in {}: not one of this run's {} worker(s); `down --purge --workers N`, N the count that started it, deletes it",
                p.dir.display(),
                cluster.workers.len()
            ));
        }
        // Each node folder is first renamed aside (one step), then deleted: a purge cut short
        // (Ctrl-C, a file it may not delete) leaves no half-deleted data directory under the
        // node's name for the next `up` to start, only a `.purging-*` folder, which the next
        // purge deletes.
        let dir = state::cluster_dir(cluster);
        for n in cluster.nodes() {
            let p = paths(cluster, n);
            if p.dir.exists() {
                let aside = dir.join(format!("{PURGING}{}-{}", n.name, std::process::id()));
                let doomed = if fs::rename(&p.dir, &aside).is_ok() { aside } else { p.dir.clone() };
                fs::remove_dir_all(&doomed).with_context(|| {
                    format!(
                        "node {}: deleting its data folder ({}, from {}); fix: delete it by hand as the user that ran `up` (or root), then run `cargo xtask down --purge` again",
                        n.name,
                        doomed.display(),
                        p.dir.display()
                    )
                })?;
                progress(&format!("purged {} ({})", n.name, p.dir.display()));
                purged += 1;
            }
        }
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(PURGING) && fs::remove_dir_all(e.path()).is_ok() {
                progress(&format!("deleted {}, left by a purge that was cut short", e.path().display()));
            }
        }
        state::forget(cluster);
    }
    Ok((stopped, purged))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that failed for a full file system gets that fix, its first lines only (cp
    /// says one line per file); another failure keeps its output and gets none.
    #[test]
    fn a_full_file_system_is_named_with_the_fix() {
        let local =
            Local { bin_dir: "/pg/bin".into(), run_as: None, home: None, openssl: None, data_dir: "/w/.citus-data".into(), source: "/w/citus.toml".into() };
        let failing = |stderr: &str| {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &format!("printf '{stderr}' >&2; exit 1")]);
            local.run(c, "copying the template for node w1").unwrap_err().to_string()
        };
        let full: String = (0..40).map(|i| format!("cp: error copying f{i}: No space left on device\\n")).collect();
        let e = failing(&full);
        assert!(e.starts_with("copying the template for node w1 failed: the file system is full (No space left on device)"), "{e}");
        assert!(e.contains("f3: No space") && !e.contains("f4: No space") && e.contains("(36 more lines)"), "{e}");
        assert!(e.contains("fix: free space on the file system of /w/.citus-data") && e.contains("set [local] data_dir in /w/citus.toml"), "{e}");
        let e = failing("initdb: error: invalid locale settings\\n");
        assert!(e.ends_with("initdb: error: invalid locale settings") && !e.contains("fix:"), "{e}");
    }

    /// A live process that `postmaster.pid` names counts as the node's server only when it works
    /// in that data directory: a pid reused by a process elsewhere (another server) does not.
    #[test]
    fn a_reused_pid_of_a_process_elsewhere_is_no_running_server() {
        let pgdata = std::env::temp_dir().join(format!("citus-io-pid-{}", std::process::id()));
        fs::create_dir_all(&pgdata).unwrap();
        let postgres_in = |dir: &Path| std::process::Command::new("bash").args(["-c", "exec -a postgres sleep 30"]).current_dir(dir).spawn().unwrap();
        for (dir, ours) in [(std::env::temp_dir(), false), (pgdata.clone(), true)] {
            let mut child = postgres_in(&dir);
            let pid = child.id() as i32;
            fs::write(pgdata.join("postmaster.pid"), format!("{pid}\n{}\n", pgdata.display())).unwrap();
            // Until bash has exec'd, the command line is bash's.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).starts_with("postgres") {
                assert!(Instant::now() < deadline, "sleep never ran as `postgres`");
                std::thread::sleep(Duration::from_millis(5));
            }
            let seen = running_pid(&pgdata);
            child.kill().unwrap();
            child.wait().unwrap();
            assert_eq!(seen, ours.then_some(pid), "a postgres process working in {}", dir.display());
        }
        fs::remove_dir_all(&pgdata).unwrap();
    }

    /// Folders `up` makes on the way to `[local] data_dir` are enterable (0755, whatever the
    /// umask); folders that exist keep their mode, such as /tmp's 1777 (before, building the
    /// template set `data_dir` itself to 0755, dropping /tmp's sticky bit when it was /tmp).
    #[test]
    fn only_the_folders_up_makes_on_the_way_to_data_dir_get_a_mode() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("citus-io-enterable-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o1777)).unwrap();
        let dir = root.join("a").join("b");
        make_dirs_enterable(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&root), mode(&root.join("a")), mode(&dir)), (0o1777, 0o755, 0o755));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).unwrap();
        make_dirs_enterable(&dir).unwrap();
        assert_eq!(mode(&dir), 0o711, "an existing folder was changed");
        fs::remove_dir_all(&root).unwrap();
    }

    /// The first folder another user cannot enter is found on the way down; one that does not
    /// exist yet ends the search (`up` makes it).
    #[test]
    fn the_first_folder_the_servers_user_cannot_enter_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("citus-io-closed-{}", std::process::id()));
        let (outer, inner) = (root.join("outer"), root.join("outer").join("inner"));
        fs::create_dir_all(&inner).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&outer, fs::Permissions::from_mode(0o700)).unwrap();
        // A user and group that own none of it: only the "others" bits count.
        let (uid, gid) = (65_534, 65_534);
        let data_dir = inner.join("not-yet").join(".citus-data");
        assert_eq!(closed_folder(&data_dir, uid, gid), Some((outer.clone(), 0o700)));
        fs::set_permissions(&outer, fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(closed_folder(&data_dir, uid, gid), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn changed_settings_are_named_and_comments_are_not() {
        let started = "# Written from /a/citus.toml\nport = 7001\nfsync = off\nfull_page_writes = off\nssl = on\n";
        let now = "# Written from /b/citus.toml\nport = 7001\nssl = on\nmax_connections = 200\n";
        assert_eq!(changed_settings(started, now), ["fsync", "full_page_writes", "max_connections"]);
        assert!(changed_settings(now, now).is_empty());
        assert!(changed_settings(now, &now.replace("/b/", "/elsewhere/")).is_empty(), "the header comment names the config file");
    }

    /// A node that did not stop fails `up --restart` with its own error, and the nodes that
    /// did stop, now down, are named with the task that starts them.
    #[test]
    fn a_restart_that_stops_only_some_nodes_names_the_ones_left_down() {
        let c = Cluster::parse(
            "database = \"d\"\n[coordinator]\nname = \"m\"\nport = 7000\n[[workers]]\nname = \"w1\"\nport = 7001\n[[workers]]\nname = \"w2\"\nport = 7002\n",
            Path::new("/w/citus.toml"),
        )
        .unwrap();
        let nodes: Vec<&Node> = c.nodes().collect();
        assert!(restart_stops(nodes.iter().map(|n| (*n, Ok(()))).collect()).is_ok());
        let e = restart_stops(vec![(nodes[0], Ok(())), (nodes[1], Err(anyhow::anyhow!("node w1 (pid 7) did not stop within 60 s"))), (nodes[2], Ok(()))])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "up --restart: node w1 (pid 7) did not stop within 60 s\nm, w2 stopped for the restart and did not start again (data kept): `cargo xtask up` starts them"
        );
        let e = restart_stops(vec![(nodes[1], Err(anyhow::anyhow!("node w1: cannot signal its postgres")))]).unwrap_err().to_string();
        assert_eq!(e, "up --restart: node w1: cannot signal its postgres", "no node left down to name");
    }

    #[test]
    fn exit_fix_reads_what_the_server_logged() {
        let c =
            Cluster::parse("database = \"d\"\n[coordinator]\nname = \"m\"\nport = 7000\n[[workers]]\nname = \"w1\"\nport = 7001\n", Path::new("/w/citus.toml"))
                .unwrap();
        let (w, bin) = (&c.workers[0], Path::new("/pg/15/bin"));
        let fix = exit_fix(&c, bin, w, "FATAL:  could not access file \"citus\": No such file or directory");
        assert!(fix.starts_with("the PostgreSQL in /pg/15/bin has no Citus: install Citus built for it"), "{fix}");
        assert!(fix.contains("set [local] bin_dir in /w/citus.toml") && fix.contains("shared_preload_libraries = []"), "{fix}");
        let fix = exit_fix(&c, bin, w, "FATAL:  could not access file \"pg_cron\": No such file or directory");
        assert!(
            fix.contains("has no library \"pg_cron\": install it for that PostgreSQL, or remove it from shared_preload_libraries in /w/citus.toml"),
            "{fix}"
        );
        let log = "FATAL:  database files are incompatible with server\nDETAIL:  The data directory was initialized by PostgreSQL version 14, which is not compatible with this version 15.20.";
        let fix = exit_fix(&c, bin, w, log);
        assert!(fix.contains("w1/pgdata was made by PostgreSQL 14, not by the PostgreSQL in /pg/15/bin"), "{fix}");
        assert!(fix.contains("(Debian: /usr/lib/postgresql/14/bin)") && fix.contains("`cargo xtask down --purge` (it is lost)"), "{fix}");
        let fix = exit_fix(&c, bin, w, "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\nFATAL:  could not create any TCP/IP sockets");
        assert!(fix.starts_with("another program took port 7001 while w1 started"), "{fix}");
        // One of `localhost`'s addresses that cannot be had, while the server listens on the
        // other, is not why a start failed.
        for bind in ["Cannot assign requested address", "Address already in use"] {
            let log = format!("LOG:  could not bind IPv6 address \"::1\": {bind}\nFATAL:  could not map anonymous shared memory: Cannot allocate memory");
            assert!(exit_fix(&c, bin, w, &log).contains("`cargo xtask logs --node w1` shows more"), "{log}");
        }
        // A host the server cannot listen on is no taken port, though both end in the same FATAL.
        for log in [
            "LOG:  could not translate host name \"citus_worker1\", service \"7001\" to address: Name or service not known\nWARNING:  could not create listen socket for \"citus_worker1\"\nFATAL:  could not create any TCP/IP sockets",
            "LOG:  could not bind IPv4 address \"192.0.2.1\": Cannot assign requested address\nWARNING:  could not create listen socket for \"192.0.2.1\"\nFATAL:  could not create any TCP/IP sockets",
        ] {
            let fix = exit_fix(&c, bin, w, log);
            assert!(fix.starts_with("a local server listens on its node's client host: set `host` of w1 in /w/citus.toml to `localhost`"), "{fix}");
        }
        assert!(exit_fix(&c, bin, w, "PANIC:  something else").contains("`cargo xtask logs --node w1` shows more"));
        // A setting of [settings] the server does not know: the fix names it and the config.
        let c = Cluster::parse(
            "database = \"d\"\n[coordinator]\nname = \"m\"\nport = 7000\n[[workers]]\nname = \"w1\"\nport = 7001\n[settings]\nMax_Conections = 4\n",
            Path::new("/w/citus.toml"),
        )
        .unwrap();
        let log = "LOG:  unrecognized configuration parameter \"max_conections\" in file \"/d/pgdata/citus-xtask.conf\" line 17\nFATAL:  configuration file \"/d/pgdata/citus-xtask.conf\" contains errors";
        let fix = exit_fix(&c, bin, &c.workers[0], log);
        assert_eq!(
            fix,
            "the server refuses `max_conections = '4'` of [settings] in /w/citus.toml (the lines above say why): correct or remove it, then run `cargo xtask up` again (the data is kept)"
        );
    }

    /// A client host that does not resolve, or that is no address of this machine, is refused
    /// before anything starts, with the node, its address and the fix; `localhost` and an
    /// address of this machine pass.
    #[test]
    fn a_client_host_the_server_cannot_listen_on_is_refused_before_it_starts() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = |host: &str| {
            Cluster::parse(&format!("database = \"d\"\n[coordinator]\nname = \"m\"\nhost = \"{host}\"\nport = {port}\n"), Path::new("/w/citus.toml")).unwrap()
        };
        for host in ["localhost", "127.0.0.1"] {
            let c = cluster(host);
            check_port_free(&c, &c.coordinator).unwrap();
        }
        let c = cluster("citus-xtask-no-such-host.invalid");
        let e = check_port_free(&c, &c.coordinator).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("node m: its client host `citus-xtask-no-such-host.invalid` (citus-xtask-no-such-host.invalid:{port}) does not resolve (")),
            "{e}"
        );
        assert!(
            e.contains("Nothing was started for this node")
                && e.contains("fix: a local server listens on its node's client host: set `host` of m in /w/citus.toml"),
            "{e}"
        );
        // 192.0.2.1 (TEST-NET-1, RFC 5737) is the address of no machine; unless the kernel lets
        // any address be bound (net.ipv4.ip_nonlocal_bind = 1).
        if std::net::TcpListener::bind("192.0.2.1:0").is_ok() {
            return;
        }
        let c = cluster("192.0.2.1");
        let e = check_port_free(&c, &c.coordinator).unwrap_err().to_string();
        assert!(e.starts_with(&format!("node m: its client host `192.0.2.1` (192.0.2.1:{port}) is no address of this machine (192.0.2.1: ")), "{e}");
        assert!(e.contains("fix: a local server listens"), "{e}");
    }

    #[test]
    fn template_names_are_keyed_by_the_data_folders_own_secret() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("citus-io-template-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let parts = |pw: &'static str| -> [&'static [u8]; 3] { [b"/usr/lib/postgresql/15/bin/postgres:1:2", b"commcarehq", pw.as_bytes()] };
        // The half-written key of an `up` that is gone (no pid above 2^22) goes with the first key.
        fs::create_dir_all(&dir).unwrap();
        let stale = dir.join(format!(".key.tmp{}", (1 << 22) + 1));
        fs::write(&stale, b"half").unwrap();
        let a = template_key(&dir, &parts("commcarehq")).unwrap();
        assert!(!stale.exists(), "{} was left", stale.display());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        assert_eq!(template_key(&dir, &parts("commcarehq")).unwrap(), a, "the same parts give the same name");
        assert_ne!(template_key(&dir, &parts("other")).unwrap(), a, "another password, another template");
        let key = dir.join(".key");
        assert_eq!(fs::read(&key).unwrap().len(), 32);
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        // Another data folder has another secret, so the same parts get another name.
        let other = dir.join("other");
        assert_ne!(template_key(&other, &parts("commcarehq")).unwrap(), a);
        // A damaged key is named, with the fix, not used.
        fs::write(&key, b"short").unwrap();
        let e = template_key(&dir, &parts("commcarehq")).unwrap_err().to_string();
        assert!(e.contains("is not a 32-byte key; fix: delete it"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_partial_copies_of_runs_that_are_gone_are_removed() {
        let root = std::env::temp_dir().join(format!("citus-io-partials-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        // Above the largest pid Linux hands out (2^22): never alive.
        let gone = format!("{PARTIAL_COPY}{}", (1 << 22) + 1);
        let mine = format!("{PARTIAL_COPY}{}", std::process::id());
        for d in [gone.as_str(), mine.as_str(), "pgdata", "pgdata.partialx"] {
            fs::create_dir_all(root.join(d).join("base")).unwrap();
        }
        remove_stale_partials(&root, PARTIAL_COPY);
        // initdb's password file of a run that is gone is a file, not a folder.
        let gone_pw = format!("{PWFILE}{}", (1 << 22) + 1);
        fs::write(root.join(&gone_pw), "secret").unwrap();
        remove_stale_partials(&root, PWFILE);
        let mut left: Vec<String> = fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["pgdata", mine.as_str(), "pgdata.partialx"]);
        fs::remove_dir_all(&root).unwrap();
    }

    /// Only the end of the file is read, and a line the chunk cut in two is never shown.
    #[test]
    fn the_last_lines_of_a_long_log_are_its_last_lines() {
        let root = std::env::temp_dir().join(format!("citus-io-tail-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        let log = root.join("postgres.log");
        let text: String = (0..20_000).map(|i| format!("line {i} {}\n", "x".repeat(i % 37))).collect();
        fs::write(&log, &text).unwrap();
        let want: Vec<String> = text.lines().skip(20_000 - 3).map(str::to_string).collect();
        assert_eq!(tail_lines(&log, 3).unwrap(), want);
        // More lines than the first 64 KiB chunk holds: it reads further back.
        let many = tail_lines(&log, 5_000).unwrap();
        assert_eq!(many.len(), 5_000);
        assert_eq!(many[0], text.lines().nth(15_000).unwrap());
        // More lines than the file has: all of them.
        assert_eq!(tail_lines(&log, 1_000_000).unwrap().len(), 20_000);
        assert_eq!(tail_lines(&root.join("missing.log"), 3).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        // From where line 19 990 starts (a start's first line): only the lines after it, all of
        // that line included, never one before it.
        let from = text.lines().take(19_990).map(|l| l.len() as u64 + 1).sum::<u64>();
        let since = tail_lines_from(&log, from, 50).unwrap();
        assert_eq!(since, text.lines().skip(19_990).map(str::to_string).collect::<Vec<_>>());
        assert_eq!(tail_lines_from(&log, from, 3).unwrap(), want);
        assert!(tail_lines_from(&log, text.len() as u64, 3).unwrap().is_empty());
        fs::remove_dir_all(&root).unwrap();
    }

    /// The older templates are named with their size, the current one and anything that is
    /// not a finished template (a partial copy, a stray folder) are not, and nothing is removed.
    #[test]
    fn older_templates_are_named_and_kept() {
        let root = std::env::temp_dir().join(format!("citus-io-templates-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (current, old1, old2) = ("00000000000000aa", "00000000000000bb", "00000000000000cc");
        for (name, bytes) in [(current, 1_000_000), (old1, 2_000_000), (old2, 1_500_000)] {
            fs::create_dir_all(root.join(name).join("base/1")).unwrap();
            fs::write(root.join(name).join("PG_VERSION"), "15\n").unwrap();
            fs::write(root.join(name).join("base/1/1259"), vec![0u8; bytes]).unwrap();
        }
        fs::create_dir_all(root.join("00000000000000dd.tmp4242")).unwrap();
        fs::create_dir_all(root.join("00000000000000ee")).unwrap(); // no PG_VERSION: not a finished template
        let note = other_templates(&root, current).expect("a note");
        assert!(note.starts_with(&format!("initdb: 2 older template(s) in {} (4 MB)", root.display())), "{note}");
        assert!(note.contains(old1) && note.contains(old2) && !note.contains(current) && !note.contains("dd") && !note.contains("ee"), "{note}");
        assert!(note.contains("delete them by hand"), "{note}");
        assert!(root.join(old1).exists() && root.join(old2).exists());
        fs::remove_dir_all(root.join(old1)).unwrap();
        fs::remove_dir_all(root.join(old2)).unwrap();
        assert_eq!(other_templates(&root, current), None, "only the current template is left");
        fs::remove_dir_all(&root).unwrap();
    }
}
