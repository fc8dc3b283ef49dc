//! A throw-away cluster config in a temp dir, the xtask binary, and SQL helpers.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use citus_testkit::{free_ports, temp_dir, TempDir};

/// The dev password every test cluster uses unless a test says otherwise.
pub(crate) const PASSWORD: &str = "commcarehq";

/// A cluster described by a config file in its own temp dir; `Drop` runs `down --purge`
/// so no server outlives the test.
pub(crate) struct TestCluster {
    pub(crate) dir: TempDir,
    pub(crate) config: PathBuf,
    pub(crate) ports: Vec<u16>,
    pub(crate) name: String,
    pub(crate) backend: &'static str,
    pub(crate) database: String,
    pub(crate) user: String,
}

/// Options for [`TestCluster::new`].
pub(crate) struct Spec<'a> {
    pub(crate) name: &'a str,
    pub(crate) workers: usize,
    pub(crate) backend: &'static str,
    pub(crate) database: &'a str,
    pub(crate) user: &'a str,
    pub(crate) extra: &'a str,
    /// Top-level keys, written before the first table.
    pub(crate) top: &'a str,
    /// Sub-folder of the temp dir the config (and so the data) lives in.
    pub(crate) subdir: &'a str,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec { name: "it", workers: 2, backend: "local", database: "commcare_ucr_citus", user: "commcarehq", extra: "", top: "", subdir: "" }
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl TestCluster {
    pub(crate) fn new(spec: Spec<'_>) -> TestCluster {
        let dir = temp_dir("citus-xtask-it");
        let base = dir.path().join(spec.subdir);
        std::fs::create_dir_all(&base).unwrap();
        set_traversable(&base, dir.path());
        let ports = free_ports(spec.workers + 1);
        let mut text = format!(
            "name = {}\ndatabase = {}\nuser = {}\nbackend = \"{}\"\npassword_env = \"CITUS_IT_PASSWORD\"\n{}\n[coordinator]\nname = \"citus_master\"\nport = {}\n",
            toml_str(spec.name),
            toml_str(spec.database),
            toml_str(spec.user),
            spec.backend,
            spec.top,
            ports[0]
        );
        for (i, port) in ports[1..].iter().enumerate() {
            text.push_str(&format!("\n[[workers]]\nname = \"citus_worker{}\"\nport = {port}\n", i + 1));
        }
        text.push_str(spec.extra);
        let config = base.join("citus.toml");
        std::fs::write(&config, text).unwrap();
        TestCluster { dir, config, ports, name: spec.name.into(), backend: spec.backend, database: spec.database.into(), user: spec.user.into() }
    }

    /// Runs `cargo xtask <args...> --config <this cluster's file>` (`--config` before a `--`,
    /// whose arguments belong to another program).
    pub(crate) fn xtask(&self, args: &[&str]) -> Output {
        self.xtask_env(args, &[])
    }

    pub(crate) fn xtask_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("running xtask");
        eprintln!(
            "$ xtask {} -> {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Like [`xtask`](Self::xtask) and asserts success.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.xtask(args);
        assert!(out.status.success(), "xtask {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Client port of node `i` (0 = coordinator).
    pub(crate) fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Gives node `i` (0 = coordinator) `cluster_address = addr` in the config file and
    /// returns the file as it was, for the test to put back.
    pub(crate) fn set_cluster_address(&self, i: usize, addr: &str) -> String {
        let was = std::fs::read_to_string(&self.config).unwrap();
        let port = self.port(i);
        let now = was.replacen(&format!("port = {port}\n"), &format!("port = {port}\ncluster_address = \"{addr}\"\n"), 1);
        assert_ne!(now, was, "node {i}'s port line is not in the config");
        std::fs::write(&self.config, now).unwrap();
        was
    }

    /// A connection to node `i`'s `db`.
    pub(crate) fn connect(&self, i: usize, db: &str) -> postgres::Client {
        self.connect_with(i, db, PASSWORD)
    }

    /// Like [`connect`](Self::connect), for a cluster made with another password.
    pub(crate) fn connect_with(&self, i: usize, db: &str, password: &str) -> postgres::Client {
        postgres::Config::new()
            .host("localhost")
            .port(self.port(i))
            .user(&self.user)
            .password(password)
            .dbname(db)
            .connect_timeout(Duration::from_secs(5))
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to node {i} on {}: {e}", self.port(i)))
    }

    /// The data directory of node `name` (local backend).
    pub(crate) fn pgdata(&self, node: &str) -> PathBuf {
        self.config.parent().unwrap().join(".citus-data").join(&self.name).join(node).join("pgdata")
    }

    /// What lies beside a local node's data directory under a `pgdata.` name (a half-made
    /// copy of the template, say).
    pub(crate) fn beside_pgdata(&self, node: &str) -> Vec<String> {
        let dir = self.pgdata(node).parent().unwrap().to_path_buf();
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("pgdata.")).collect()
    }

    /// The postmaster pid of a local node.
    pub(crate) fn pid(&self, node: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.pgdata(node).join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Starts `cargo xtask <args...> --config <this cluster's file>` in the background, killed
    /// when the guard drops, and hands each line it writes to `stdout` (else stderr) to the
    /// receiver as it comes; the other stream is dropped.
    pub(crate) fn spawn_lines(&self, args: &[&str], stdout: bool) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Read};
        use std::process::Stdio;
        let (out, err) = if stdout { (Stdio::piped(), Stdio::null()) } else { (Stdio::null(), Stdio::piped()) };
        let mut child = KillOnDrop(self.command(args).stdout(out).stderr(err).spawn().expect("starting xtask"));
        let pipe: Box<dyn Read + Send> = if stdout { Box::new(child.0.stdout.take().expect("piped")) } else { Box::new(child.0.stderr.take().expect("piped")) };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }

    /// `xtask <args...> --config <this cluster's file>` (`--config` before a `--`, whose
    /// arguments belong to another program), with the test password and without `CI` or
    /// `CITUS_CONFIG` from the test's own environment; not started.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        let (own, passed_on) = args.split_at(args.iter().position(|a| *a == "--").unwrap_or(args.len()));
        c.args(own).arg("--config").arg(&self.config).args(passed_on).env("CITUS_IT_PASSWORD", PASSWORD).env_remove("CITUS_CONFIG").env_remove("CI");
        c
    }

    /// Waits until new sessions on node `i` see the server setting `name` = `want`: a
    /// postmaster reloads its configuration when it gets to the signal, not at once.
    pub(crate) fn wait_for_setting(&self, i: usize, name: &str, want: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let have: String = self.connect(i, "postgres").query_one("SELECT current_setting($1)", &[&name]).unwrap().get(0);
            if have == want {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "node {i} still has {name} = {have} 10 s after its reload");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to a local node's postmaster and waits until it is gone.
    pub(crate) fn kill(&self, node: &str, signal: i32) {
        let pid = self.pid(node).expect("node is running");
        // SAFETY: plain syscall.
        unsafe { libc::kill(pid, signal) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            assert!(std::time::Instant::now() < deadline, "{node} did not die");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits up to 5 s until process `pid` is gone, or a zombie waiting for the test process (a
/// subreaper) to reap it; false when it still runs then. `down` returns when a server has
/// removed its postmaster.pid, its last act; the process itself may take a few more
/// milliseconds to exit.
pub(crate) fn gone_soon(pid: i32) -> bool {
    let gone = || !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gone() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    gone()
}

/// The processes whose parent is `pid`, each with its command line (arguments joined by
/// spaces), read from /proc.
pub(crate) fn children_of(pid: u32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(1)?.parse::<u32>().ok()))
                == Some(pid)
        })
        .map(|p| {
            (p, std::fs::read(format!("/proc/{p}/cmdline")).map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end().to_string()).unwrap_or_default())
        })
        .collect()
}

pub(crate) fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))).unwrap_or(true)
}

fn set_traversable(path: &Path, root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = path.to_path_buf();
    loop {
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        if p == root || !p.pop() {
            break;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(["down", "--purge", "--backend", self.backend, "--config"]).arg(&self.config).env("CITUS_IT_PASSWORD", PASSWORD);
        match c.output() {
            Ok(o) if !o.status.success() => {
                eprintln!("cleanup `down --purge --config {}` failed: {}", self.config.display(), String::from_utf8_lossy(&o.stderr));
            }
            Ok(_) => {}
            Err(e) => eprintln!("cleanup `down --purge --config {}` could not be started: {e}", self.config.display()),
        }
    }
}

/// A child process that is killed and reaped when the guard is dropped, also when the test
/// panics first: for children that would otherwise run on (`logs --follow`).
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    /// The child's exit status once it exits, polled every 50 ms; fails the test, saying
    /// `still_runs`, when it runs `secs` s from now.
    pub(crate) fn exits_within(&mut self, secs: u64, still_runs: &str) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "{still_runs} ({secs} s)");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// A child started in a process group of its own (`process_group(0)`) whose whole group is
/// killed (SIGKILL) and the child reaped when the guard is dropped before [`wait`](Self::wait)
/// reaped it, also when the test panics first: the child's own children (`psql`, `cp`, `initdb`)
/// go too.
pub(crate) struct KillGroupOnDrop {
    child: std::process::Child,
    reaped: bool,
}

impl KillGroupOnDrop {
    pub(crate) fn new(child: std::process::Child) -> KillGroupOnDrop {
        KillGroupOnDrop { child, reaped: false }
    }

    /// The child's pid, which is its process group's id.
    pub(crate) fn pgid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The child's stderr, when it was piped.
    pub(crate) fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits for the child to exit; its group is left alone from then on (its id may be reused).
    pub(crate) fn wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().expect("waiting for the child");
        self.reaped = true;
        status
    }
}

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if !self.reaped {
            // Not reaped yet, so the id is still this group's. SAFETY: plain syscall.
            unsafe { libc::kill(-self.pgid(), libc::SIGKILL) };
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process held stopped (SIGSTOP) until the guard is dropped, which lets it go on (SIGCONT),
/// also when an assertion fails first: a server process that cannot finish its part of a
/// shutdown, such as a checkpointer.
pub(crate) struct Paused(i32);

impl Paused {
    pub(crate) fn new(pid: i32) -> Paused {
        // SAFETY: plain syscall.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "stopping pid {pid}");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: plain syscall.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Collects the lines of `rx` into the returned list until one contains `want`; fails the
/// test, with every line so far, when none has within `secs` seconds.
pub(crate) fn lines_until(rx: &std::sync::mpsc::Receiver<String>, want: &str, secs: u64) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !seen.iter().any(|l: &String| l.contains(want)) {
        assert!(std::time::Instant::now() < deadline, "no line {want:?} within {secs} s: {seen:#?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(l);
        }
    }
    seen
}

/// Text of an output's stdout + stderr.
pub(crate) fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
