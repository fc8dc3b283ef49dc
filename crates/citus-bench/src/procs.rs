//! Processes for the benchmark: timed children with their peak memory and progress lines,
//! free loopback ports, scratch folders that leave no server behind, and the `postgres` OS user.

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;

/// How often the peak memory of a running child is sampled.
const MEMORY_POLL: Duration = Duration::from_millis(2);

/// One finished child process.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) secs: f64,
    pub(crate) status: ExitStatus,
    /// The child's own peak resident set (`VmHWM`, KiB), last sampled while it ran.
    pub(crate) peak_kib: Option<u64>,
    pub(crate) stdout: String,
    /// Every stderr line with the seconds since the child was spawned.
    pub(crate) stderr: Vec<(f64, String)>,
}

impl Measured {
    /// The end of stderr and stdout, for error messages.
    pub(crate) fn tail(&self, lines: usize) -> String {
        let mut all: Vec<&str> = self.stderr.iter().map(|(_, l)| l.as_str()).collect();
        all.extend(self.stdout.lines());
        all[all.len().saturating_sub(lines)..].join("\n    ")
    }
}

/// Runs `cmd` to its end and times it from just before the spawn to the moment it is reaped.
/// Meanwhile one thread samples its `VmHWM` in /proc every few milliseconds (the high-water
/// mark of its own resident memory, not its children's) and two threads collect its output.
pub(crate) fn run_measured(mut cmd: Command) -> anyhow::Result<Measured> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let what = format!("{:?}", cmd.get_program());
    let t0 = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let pid = child.id();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let out_h = s.spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(out).read_to_string(&mut text);
            text
        });
        let err_h = s.spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                lines.push((t0.elapsed().as_secs_f64(), line));
            }
            lines
        });
        let done = &done;
        let mem_h = s.spawn(move || {
            let mut peak: Option<u64> = None;
            while !done.load(Ordering::Relaxed) {
                if let Some(k) = vm_hwm(pid) {
                    peak = Some(peak.map_or(k, |p| p.max(k)));
                }
                std::thread::sleep(MEMORY_POLL);
            }
            peak
        });
        let status = child.wait();
        let secs = t0.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let peak_kib = mem_h.join().expect("memory thread");
        let stdout = out_h.join().expect("stdout thread");
        let stderr = err_h.join().expect("stderr thread");
        Ok(Measured { secs, status: status.with_context(|| format!("waiting for {what}"))?, peak_kib, stdout, stderr })
    })
}

/// `VmHWM` of a live process, in KiB (none once it has exited: a zombie has no memory).
fn vm_hwm(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `n` distinct free TCP ports on 127.0.0.1, found by letting the kernel pick them.
pub(crate) fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind(("127.0.0.1", 0))).collect::<Result<_, _>>().context("finding a free port on 127.0.0.1")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The OS user the servers run as: `postgres` when we are root (initdb refuses root).
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub(crate) ids: Option<(u32, u32)>,
    pub(crate) name: String,
    pub(crate) home: Option<PathBuf>,
}

impl RunAs {
    pub(crate) fn from_local(local: &citus_io::local::Local) -> RunAs {
        match &local.run_as {
            Some((uid, gid, name)) => RunAs { ids: Some((*uid, *gid)), name: name.clone(), home: local.home.clone() },
            None => RunAs { ids: None, name: current_user(), home: None },
        }
    }

    /// A command run as that user, without our PG* variables (as the tool does for its servers).
    pub(crate) fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut c = Command::new(program.as_ref());
        if let Some((uid, gid)) = self.ids {
            c.uid(uid).gid(gid).env("USER", &self.name).env("LOGNAME", &self.name);
        }
        if let Some(home) = &self.home {
            c.env("HOME", home);
        }
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PG") {
                c.env_remove(k);
            }
        }
        c
    }

    /// Gives `path` to that user (when we are root).
    pub(crate) fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }
}

fn current_user() -> String {
    if let Some(u) = std::env::var_os("USER").or_else(|| std::env::var_os("LOGNAME")) {
        return u.to_string_lossy().into_owned();
    }
    Command::new("id").arg("-un").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_else(|_| "postgres".into())
}

/// Folders of one cycle (or of the whole run). Dropping it, on success or on any error path,
/// stops every PostgreSQL server whose `postmaster.pid` lies below them, then deletes them,
/// or, when the run keeps spent data until its end ([`Scratch::keep_in`]), moves them there.
#[derive(Debug)]
pub(crate) struct Scratch {
    paths: Vec<PathBuf>,
    spent: Option<PathBuf>,
}

impl Scratch {
    pub(crate) fn new(paths: Vec<PathBuf>) -> Scratch {
        Scratch { paths, spent: None }
    }

    /// Moves the folders into `spent` (a folder of the run, deleted with it) instead of
    /// deleting them, when `spent` is given. On an ext4 without a journal, creating a file
    /// skips every inode freed in the last minute or more, one buffer lookup each, so the
    /// cycles after a deletion of thousands of files would pay for it (docs/performance.md).
    pub(crate) fn keep_in(paths: Vec<PathBuf>, spent: Option<&Path>) -> Scratch {
        Scratch { paths, spent: spent.map(Path::to_path_buf) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.paths {
            let killed = kill_servers_below(p);
            if killed > 0 {
                crate::progress(&format!("bench: stopped {killed} leftover server(s) under {}", p.display()));
            }
            if let Some(spent) = &self.spent {
                if !p.exists() {
                    continue;
                }
                let name = p.file_name().map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
                let moved = (0..1000).map(|i| spent.join(format!("{name}.{i}"))).find(|d| !d.exists()).is_some_and(|d| std::fs::rename(p, d).is_ok());
                if moved {
                    continue;
                }
            }
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Bytes free for an unprivileged user in the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

extern "C" {
    // From the C library std already links; no crate needed for one call.
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGKILL: i32 = 9;
const SIGQUIT: i32 = 3;

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain syscall; the pid was checked to be a live postgres just before.
    unsafe {
        kill(pid, sig);
    }
}

/// A live (not zombie) process whose command line mentions postgres.
fn live_postgres(pid: i32) -> bool {
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
    alive && String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).contains("postgres")
}

/// Stops every server with a `postmaster.pid` below `root` (up to 6 levels down): SIGQUIT
/// (immediate shutdown), then SIGKILL after 5 s. Returns how many were running.
pub(crate) fn kill_servers_below(root: &Path) -> usize {
    let mut pids = Vec::new();
    find_pid_files(root, 6, &mut pids);
    let pids: Vec<i32> = pids.into_iter().filter(|p| live_postgres(*p)).collect();
    for &p in &pids {
        signal(p, SIGQUIT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| live_postgres(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for &p in &pids {
        if live_postgres(p) {
            signal(p, SIGKILL);
        }
    }
    pids.len()
}

fn find_pid_files(dir: &Path, depth: usize, out: &mut Vec<i32>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name() == "postmaster.pid" {
            if let Some(pid) = std::fs::read_to_string(&path).ok().and_then(|t| t.lines().next()?.trim().parse().ok()) {
                out.push(pid);
            }
        } else if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
            find_pid_files(&path, depth - 1, out);
        }
    }
}

/// Cleans the scratch folders of earlier runs that were interrupted (Ctrl-C skips the
/// cleanup): `<scratch>/citus-bench-<pid>` whose process is gone.
pub(crate) fn clean_stale_roots(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("citus-bench-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let killed = kill_servers_below(&e.path());
        crate::progress(&format!(
            "bench: removing {} left by an interrupted run{}",
            e.path().display(),
            if killed > 0 { format!(" ({killed} server(s) stopped)") } else { String::new() }
        ));
        let _ = std::fs::remove_dir_all(e.path());
    }
}

/// Creates `dir` (and parents), readable and enterable by everyone: the servers' user must
/// be able to walk into it.
/// Writes every dirty page out (`sync(2)`), untimed, before a cycle starts, so that no cycle
/// is timed while the kernel flushes what the one before it wrote. Every side gets it.
pub(crate) fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

pub(crate) fn open_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).with_context(|| format!("chmod 0755 {}", dir.display()))
}

/// First line of a command's stdout, if it ran.
pub(crate) fn first_line(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string())
}
