//! The Docker test image, built locally with mmdebstrap from the host's apt sources (no registry needed), once per machine.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::need::{is_root, loud, pg_dirs, Env};
use crate::process::{output, run_with_timeout};

/// The entrypoint script put at `/usr/local/bin/docker-entrypoint.sh`.
pub const ENTRYPOINT_SCRIPT: &str = include_str!("../image/docker-entrypoint.sh");

/// The repository part of the image tags.
pub const IMAGE_REPOSITORY: &str = "citus-xtask-test";

/// Bump when the build recipe changes in a way the hashed inputs miss.
const RECIPE_VERSION: &str = "citus-testkit image recipe 2";

/// Serialises builds across processes (and threads).
const LOCK_FILE: &str = "/tmp/citus-xtask-test-image.lock";

/// Keeps `initdb` from running at package install time: the entrypoint
/// creates the cluster at first start, in PGDATA.
const INHIBIT_MAIN_CLUSTER: &str = "create_main_cluster = false\n";

/// Left out of the image to keep it small.
const DPKG_OPTIONS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/doc/*/copyright",
];

/// The Debian packages every image has (the shared libraries of the host's Citus add theirs:
/// `citus_library_packages`).
pub fn image_packages(pg_major: u32) -> Vec<String> {
    vec![format!("postgresql-{pg_major}"), format!("postgresql-client-{pg_major}"), "util-linux".to_string(), "procps".to_string()]
}

/// What one image is built from.
struct Recipe {
    suite: String,
    citus: Vec<CopyIn>,
    /// [`image_packages`] plus the packages of the libraries the host's Citus files load.
    packages: Vec<String>,
}

impl Recipe {
    fn for_env(env: &Env) -> anyhow::Result<Recipe> {
        let citus = citus_files(env)?;
        let mut packages = image_packages(env.pg_major);
        for p in citus_library_packages(&citus)? {
            if !packages.contains(&p) {
                packages.push(p);
            }
        }
        Ok(Recipe { suite: host_codename(), citus, packages })
    }
}

/// The `docker import --change` instructions.
fn image_changes(pg_major: u32, hash: &str) -> Vec<String> {
    vec![
        format!(
            "ENV PATH=/usr/lib/postgresql/{pg_major}/bin:/usr/local/sbin:/usr/local/bin:\
             /usr/sbin:/usr/bin:/sbin:/bin"
        ),
        "ENV PGDATA=/var/lib/postgresql/data".to_string(),
        "ENV LANG=C.UTF-8".to_string(),
        "ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]".to_string(),
        "CMD [\"postgres\"]".to_string(),
        "STOPSIGNAL SIGINT".to_string(),
        "EXPOSE 5432".to_string(),
        format!("LABEL org.citus-xtask.test-image={hash}"),
    ]
}

/// A host file or directory copied into the image, into `dest_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopyIn {
    host: PathBuf,
    dest_dir: String,
}

/// The host's Citus files and where they go in the image.
fn citus_files(env: &Env) -> anyhow::Result<Vec<CopyIn>> {
    if !env.has_citus {
        return Ok(Vec::new());
    }
    let (pkglibdir, sharedir) = pg_dirs(&env.bin_dir, env.pg_major);
    let major = env.pg_major;
    let mut files = Vec::new();
    let lib_dest = format!("/usr/lib/postgresql/{major}/lib");
    for entry in sorted_entries(&pkglibdir)? {
        let name = file_name(&entry);
        let wanted = (name.starts_with("citus") && name.ends_with(".so") && entry.is_file()) || (name == "citus_decoders" && entry.is_dir());
        if wanted {
            files.push(CopyIn { host: entry, dest_dir: lib_dest.clone() });
        }
    }
    let ext_dest = format!("/usr/share/postgresql/{major}/extension");
    for entry in sorted_entries(&sharedir.join("extension"))? {
        if file_name(&entry).starts_with("citus") && entry.is_file() {
            files.push(CopyIn { host: entry, dest_dir: ext_dest.clone() });
        }
    }
    if !files.iter().any(|f| file_name(&f.host) == "citus.so") {
        bail!("Env says Citus is installed, but there is no citus.so in {}", pkglibdir.display());
    }
    Ok(files)
}

/// The Debian packages that hold the shared libraries the host's Citus files load (`ldd`),
/// so that the image can load a Citus built with optional libraries: Citus links libcurl
/// (its statistics collection) when libcurl's headers were there at its build, and the
/// PostgreSQL server package does not pull libcurl in. A library that no package owns, or that
/// the host itself cannot find, is an error naming it.
fn citus_library_packages(citus: &[CopyIn]) -> anyhow::Result<Vec<String>> {
    let mut objects = Vec::new();
    for f in citus {
        shared_objects(&f.host, &mut objects)?;
    }
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let ldd = which::which("ldd").map_err(|_| anyhow::anyhow!("ldd (Debian: libc-bin) is missing: it finds the libraries Citus needs in the test image"))?;
    let text = output(Command::new(ldd).args(&objects))?;
    let (libs, missing) = parse_ldd(&text);
    if !missing.is_empty() {
        bail!(
            "the host's Citus needs libraries this machine does not have ({}): `ldd` on {} says \"not found\"",
            missing.join(", "),
            objects.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
        );
    }
    // dpkg knows a library by the path its package ships, which on a merged-/usr system may
    // differ from the one the loader reports by a leading /usr.
    let candidates = |lib: &Path| -> Vec<PathBuf> {
        let s = lib.to_string_lossy();
        let mut c = vec![lib.to_path_buf()];
        if s.starts_with("/lib") {
            c.push(PathBuf::from(format!("/usr{s}")));
        } else if let Some(rest) = s.strip_prefix("/usr").filter(|r| r.starts_with("/lib")) {
            c.push(PathBuf::from(rest));
        }
        c
    };
    let all: Vec<PathBuf> = libs.iter().flat_map(|l| candidates(l)).collect();
    // dpkg-query exits 1 when any path has no owner; the owned ones are still on stdout.
    let out = Command::new("dpkg-query")
        .arg("--search")
        .args(&all)
        .stdin(Stdio::null())
        .output()
        .context("running dpkg-query --search (the image is built from Debian's packages)")?;
    let owners = parse_dpkg_search(&String::from_utf8_lossy(&out.stdout));
    let mut packages = Vec::new();
    let mut unowned = Vec::new();
    for lib in &libs {
        match candidates(lib).iter().find_map(|c| owners.iter().find(|(_, p)| p == c)) {
            Some((pkg, _)) if !packages.contains(pkg) => packages.push(pkg.clone()),
            Some(_) => {}
            None => unowned.push(lib.display().to_string()),
        }
    }
    if !unowned.is_empty() {
        bail!("the host's Citus loads libraries that no Debian package owns, so the test image cannot install them: {}", unowned.join(", "));
    }
    Ok(packages)
}

/// The `.so` files at `path` (a file, or a folder such as `citus_decoders`, recursively).
fn shared_objects(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        for entry in sorted_entries(path)? {
            shared_objects(&entry, out)?;
        }
    } else if file_name(path).ends_with(".so") {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The libraries `ldd` resolved (sorted, each once) and the names it could not find. The
/// dynamic loader itself and the vDSO have no `=>` and are left out (libc6 is in every image).
pub(crate) fn parse_ldd(text: &str) -> (Vec<PathBuf>, Vec<String>) {
    let mut libs = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    for line in text.lines() {
        let Some((name, target)) = line.split_once("=>") else { continue };
        let target = target.trim();
        if target.starts_with("not found") {
            let name = name.trim().to_string();
            if !missing.contains(&name) {
                missing.push(name);
            }
        } else if let Some(path) = target.split(" (").next().filter(|p| p.starts_with('/')) {
            libs.insert(PathBuf::from(path));
        }
    }
    (libs.into_iter().collect(), missing)
}

/// `(package, path)` pairs from `dpkg-query --search` output (`pkg[:arch][, pkg2]: path`),
/// the first package of each line, without its architecture; diversion lines are skipped.
pub(crate) fn parse_dpkg_search(text: &str) -> Vec<(String, PathBuf)> {
    text.lines()
        .filter(|l| !l.starts_with("diversion "))
        .filter_map(|l| {
            let (pkgs, path) = l.split_once(": ")?;
            let first = pkgs.split(',').next()?.trim();
            let pkg = first.split(':').next()?.trim();
            (!pkg.is_empty() && path.starts_with('/')).then(|| (pkg.to_string(), PathBuf::from(path.trim())))
        })
        .collect()
}

fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Feeds a file (or a directory, recursively) into the hash: relative
/// path, size, mtime and bytes.
fn hash_tree(hasher: &mut Sha256, path: &Path, rel: &str) -> anyhow::Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        hasher.update(format!("dir {rel}\n"));
        for entry in sorted_entries(path)? {
            let child = format!("{rel}/{}", file_name(&entry));
            hash_tree(hasher, &entry, &child)?;
        }
    } else {
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or_default();
        hasher.update(format!("file {rel} {} {mtime} {:o}\n", meta.len(), meta.mode() & 0o7777));
        hasher.update(fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    Ok(())
}

/// The tag of the image for `env`: `citus-xtask-test:pg<major>-<hash>`,
/// where the hash covers the recipe, the entrypoint script, the package
/// list, the suite and the host's Citus files (bytes, sizes, mtimes).
pub fn test_image_tag(env: &Env) -> anyhow::Result<String> {
    let r = Recipe::for_env(env)?;
    Ok(format!("{IMAGE_REPOSITORY}:pg{}-{}", env.pg_major, recipe_hash(env.pg_major, &r.suite, &r.packages, &r.citus)?))
}

fn recipe_hash(pg_major: u32, suite: &str, packages: &[String], citus: &[CopyIn]) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(format!("{RECIPE_VERSION}\nsuite {suite}\nmajor {pg_major}\n"));
    h.update(format!("packages {}\n", packages.join(",")));
    h.update(format!("dpkg {}\n", DPKG_OPTIONS.join(" ")));
    h.update(format!("changes {}\n", image_changes(pg_major, "").join("\n")));
    h.update(format!("createcluster {INHIBIT_MAIN_CLUSTER}"));
    h.update(format!("entrypoint {}\n", ENTRYPOINT_SCRIPT.len()));
    h.update(ENTRYPOINT_SCRIPT);
    for file in citus {
        let rel = format!("{}/{}", file.dest_dir, file_name(&file.host));
        hash_tree(&mut h, &file.host, &rel)?;
    }
    let digest = h.finalize();
    let mut hex = String::new();
    for byte in &digest[..6] {
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

/// Returns the tag of the test image for `env` (see [`test_image_tag`]),
/// building it into the local Docker engine first if it is not there.
///
/// The build happens at most once per machine: concurrent callers (other
/// test binaries included) wait on a lock file in /tmp and then find the
/// image. Building needs root (or working user namespaces), `mmdebstrap`
/// and the host's apt sources; it takes minutes and prints progress to
/// stderr. The image is Debian (the host's release) with PostgreSQL
/// `env.pg_major` from the host's apt sources, the host's Citus files when
/// `env.has_citus`, and an entrypoint compatible with the official postgres
/// image's `POSTGRES_USER`, `POSTGRES_PASSWORD(_FILE)`, `POSTGRES_DB` and
/// `PGDATA`.
pub fn test_image(env: &Env) -> anyhow::Result<String> {
    let r = Recipe::for_env(env)?;
    let hash = recipe_hash(env.pg_major, &r.suite, &r.packages, &r.citus)?;
    let tag = format!("{IMAGE_REPOSITORY}:pg{}-{hash}", env.pg_major);
    if image_exists(&tag)? {
        return Ok(tag);
    }
    let _lock = BuildLock::acquire(Path::new(LOCK_FILE), &tag)?;
    if image_exists(&tag)? {
        return Ok(tag);
    }
    build(env.pg_major, &r, &hash, &tag)?;
    Ok(tag)
}

fn image_exists(tag: &str) -> anyhow::Result<bool> {
    let out =
        Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", tag]).stdin(Stdio::null()).output().context("running docker image inspect")?;
    if out.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.to_lowercase().contains("no such image") {
        Ok(false)
    } else {
        bail!("docker image inspect {tag} failed: {}", stderr.trim())
    }
}

/// Whether the test images a test asking for Docker and PostgreSQL uses can be had here: `Ok`
/// when this process can build them (`mmdebstrap` on PATH, and root or user namespaces for its
/// unshare mode), else when the Docker engine already has them (the image for `env` and, when
/// `env.has_citus`, the one without Citus that tests of plain PostgreSQL nodes use); else the
/// reason, naming what is missing. Building is what [`test_image`] does when the image is not
/// there, so a test that passes this gets its image.
pub(crate) fn obtainable(env: &Env) -> Result<(), String> {
    let Some(blocker) = build_blocker() else {
        return Ok(());
    };
    let mut variants = vec![env.clone()];
    if env.has_citus {
        variants.push(Env { has_citus: false, ..env.clone() });
    }
    let mut missing = Vec::new();
    for variant in &variants {
        let tag =
            test_image_tag(variant).map_err(|e| format!("the test image cannot be built here ({blocker}), and which one to look for is unknown: {e:#}"))?;
        match image_exists(&tag) {
            Ok(true) => {}
            Ok(false) => missing.push(tag),
            Err(e) => return Err(format!("the test image cannot be built here ({blocker}), and looking for it failed: {e:#}")),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let (what, is) = if missing.len() == 1 { ("image", "is") } else { ("images", "are") };
    Err(format!("the test {what} {} {is} not in the Docker engine and cannot be built here: {blocker}", missing.join(" and ")))
}

/// What keeps this process from building the test image, if anything: `mmdebstrap` missing,
/// or neither root nor the user namespaces of mmdebstrap's unshare mode.
fn build_blocker() -> Option<String> {
    if which::which("mmdebstrap").is_err() {
        return Some(
            "mmdebstrap, which builds the image, is not on PATH (ci/test.sh installs it, \
             `apt-get install mmdebstrap`, when a Docker engine answers)"
                .to_string(),
        );
    }
    if is_root() {
        return None;
    }
    unshare_blocker().map(|why| {
        format!(
            "this process is not root, and mmdebstrap's unshare mode cannot run: {why} (run the tests as root, \
             or give this user subordinate ids: `usermod --add-subuids 100000-165535 --add-subgids \
             100000-165535 <user>`)"
        )
    })
}

/// Why mmdebstrap's unshare mode (a user namespace with this user's subordinate ids) cannot run
/// here, if it cannot.
fn unshare_blocker() -> Option<String> {
    for tool in ["newuidmap", "newgidmap"] {
        if which::which(tool).is_err() {
            return Some(format!("{tool} is not on PATH (Debian: uidmap)"));
        }
    }
    let user = current_user_name();
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        let listed = text.lines().any(|l| {
            let owner = l.split(':').next().unwrap_or_default();
            !owner.is_empty() && (Some(owner) == user.as_deref() || owner == current_uid().to_string())
        });
        if !listed {
            return Some(format!("{file} has no range for {}", user.as_deref().unwrap_or("this user")));
        }
    }
    let mut probe = Command::new("unshare");
    probe.args(["--user", "--map-root-user", "true"]);
    match run_with_timeout(&mut probe, Duration::from_secs(10)) {
        Ok(out) if out.success => None,
        Ok(out) => Some(format!("`unshare --user --map-root-user true` failed: {}", out.stderr.trim())),
        Err(_) => Some("`unshare --user --map-root-user true` could not be run".to_string()),
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn current_user_name() -> Option<String> {
    // SAFETY: getpwuid returns NULL or a pointer to static storage, read here at once and not kept.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    }
}

/// An exclusive `flock` on a lock file, released on drop.
struct BuildLock {
    _file: File,
}

impl BuildLock {
    fn acquire(path: &Path, tag: &str) -> anyhow::Result<BuildLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o666));
        let fd = file.as_raw_fd();
        // SAFETY: fd is an open descriptor owned by `file`.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(BuildLock { _file: file });
        }
        progress(&format!("another process holds {}: waiting for it to build {tag}", path.display()));
        loop {
            // SAFETY: as above.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                return Ok(BuildLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

fn progress(line: &str) {
    loud(&format!("[citus-testkit image] {line}\n"));
}

fn build(pg_major: u32, recipe: &Recipe, hash: &str, tag: &str) -> anyhow::Result<()> {
    let (suite, citus) = (recipe.suite.as_str(), recipe.citus.as_slice());
    let mmdebstrap = which::which("mmdebstrap").map_err(|_| {
        anyhow::anyhow!(
            "building the test image {tag} needs mmdebstrap, which is not installed: \
             apt-get install mmdebstrap"
        )
    })?;
    let started = Instant::now();
    progress(&format!("building {tag}: Debian {suite} with {} (this takes minutes, once per machine)", recipe.packages.join(", ")));

    let base = if Path::new("/var/tmp").is_dir() { "/var/tmp" } else { "/tmp" };
    let work = tempfile::Builder::new().prefix("citus-testkit-image-").tempdir_in(base).context("creating a work directory")?;
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))?;

    let sources = work.path().join("host.sources");
    fs::write(&sources, host_apt_sources(suite)?)?;

    let stage = work.path().join("stage");
    let createcluster_d = stage.join("postgresql-common/createcluster.d");
    fs::create_dir_all(&createcluster_d)?;
    fs::write(createcluster_d.join("inhibit-main-cluster.conf"), INHIBIT_MAIN_CLUSTER)?;
    let entrypoint = stage.join("docker-entrypoint.sh");
    fs::write(&entrypoint, ENTRYPOINT_SCRIPT)?;
    fs::set_permissions(&entrypoint, fs::Permissions::from_mode(0o755))?;

    let mut hooks =
        vec![("--essential-hook", copy_in(&[stage.join("postgresql-common")], "/etc")?), ("--customize-hook", copy_in(&[entrypoint], "/usr/local/bin")?)];
    let mut dest_dirs: Vec<&str> = citus.iter().map(|f| f.dest_dir.as_str()).collect();
    dest_dirs.dedup();
    for dest in dest_dirs {
        let hosts: Vec<PathBuf> = citus.iter().filter(|f| f.dest_dir == dest).map(|f| f.host.clone()).collect();
        hooks.push(("--customize-hook", copy_in(&hosts, dest)?));
    }

    let tarball = work.path().join("rootfs.tar");
    let mut cmd = Command::new(mmdebstrap);
    cmd.arg("--variant=minbase").arg(format!("--include={}", recipe.packages.join(",")));
    for opt in DPKG_OPTIONS {
        cmd.arg(format!("--dpkgopt={opt}"));
    }
    for (option, hook) in &hooks {
        cmd.arg(format!("{option}={hook}"));
    }
    cmd.arg(suite).arg(&tarball).arg(&sources);
    run_streaming(&mut cmd, "mmdebstrap")?;
    let size = fs::metadata(&tarball).map(|m| m.len()).unwrap_or_default();
    progress(&format!("root file system ready ({} MiB) after {}; importing it as {tag}", size / (1 << 20), elapsed(started)));

    import_image(&tarball, tag, &image_changes(pg_major, hash))?;
    fs::remove_file(&tarball)?;
    drop(work);
    progress(&format!("built {tag} in {}", elapsed(started)));
    Ok(())
}

/// `docker import`s the root file system with `changes`. Engines before
/// Docker 23 refuse `STOPSIGNAL` there: they get the image without it,
/// under `<tag>-base`, plus a one-line legacy-builder build adding it (the
/// base is local, nothing is pulled).
fn import_image(tarball: &Path, tag: &str, changes: &[String]) -> anyhow::Result<()> {
    let import = |changes: &[&String], tag: &str| {
        let mut cmd = Command::new("docker");
        cmd.arg("import");
        for change in changes {
            cmd.arg("--change").arg(change);
        }
        cmd.arg("--message").arg("citus-testkit test image").arg(tarball).arg(tag);
        output(&mut cmd)
    };
    let all: Vec<&String> = changes.iter().collect();
    let err = match import(&all, tag) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if !format!("{err:#}").contains("stopsignal is not a valid change command") {
        return Err(err.context("docker import of the test image"));
    }
    progress("this Docker engine takes no STOPSIGNAL in docker import: adding it with a build step");
    let (stop, rest): (Vec<&String>, Vec<&String>) = changes.iter().partition(|c| c.starts_with("STOPSIGNAL "));
    let base = format!("{tag}-base");
    import(&rest, &base).context("docker import of the test image")?;
    let mut dockerfile = format!("FROM {base}\n");
    for line in stop {
        dockerfile.push_str(line);
        dockerfile.push('\n');
    }
    let mut build = Command::new("docker");
    build.args(["build", "--force-rm", "--quiet", "--tag", tag, "-"]).env("DOCKER_BUILDKIT", "0");
    let built = run_with_stdin(&mut build, &dockerfile);
    let _ = output(Command::new("docker").args(["image", "rm", &base]));
    built.context("adding STOPSIGNAL to the test image with docker build")
}

/// Runs `cmd` with `input` on its stdin; error quoting its stderr.
fn run_with_stdin(cmd: &mut Command, input: &str) -> anyhow::Result<()> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("starting {cmd:?}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn elapsed(since: Instant) -> String {
    let secs = since.elapsed().as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}

/// An mmdebstrap `copy-in` special hook. mmdebstrap splits it on
/// whitespace, so paths holding whitespace or quotes are refused.
fn copy_in(hosts: &[PathBuf], inside: &str) -> anyhow::Result<String> {
    let mut hook = String::from("copy-in");
    for path in hosts.iter().map(|p| p.to_string_lossy()).chain([inside.into()]) {
        if path.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
            bail!("cannot copy {path:?} into the image: whitespace or quotes in the path");
        }
        hook.push(' ');
        hook.push_str(&path);
    }
    Ok(hook)
}

/// Runs `cmd`, echoing its stderr lines as progress; on failure the error
/// quotes the last lines.
fn run_streaming(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().with_context(|| format!("starting {what}"))?;
    let mut tail: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            progress(&format!("{what}: {line}"));
            tail.push(line);
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{what} failed ({status}); its last lines:\n{}", tail.join("\n"));
    }
    Ok(())
}

// ------------------------------------------------------- host apt sources

/// The host's release codename (`VERSION_CODENAME` of /etc/os-release),
/// bookworm when unknown.
fn host_codename() -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(|v| v.trim().trim_matches('"').to_string())))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "bookworm".to_string())
}

/// The host's apt sources for `suite` as a deb822 file for mmdebstrap:
/// from /etc/apt/sources.list and /etc/apt/sources.list.d/*.list and
/// *.sources, binary (`deb`) entries only, suites of other releases
/// dropped.
fn host_apt_sources(suite: &str) -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(mut more) = sorted_entries(Path::new("/etc/apt/sources.list.d")) {
        more.retain(|p| {
            let name = file_name(p);
            name.ends_with(".list") || name.ends_with(".sources")
        });
        files.extend(more);
    }
    let mut stanzas = Vec::new();
    for file in &files {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        if file_name(file).ends_with(".sources") {
            stanzas.extend(parse_deb822(&text));
        } else {
            stanzas.extend(parse_one_line(&text));
        }
    }
    let kept: Vec<Stanza> = stanzas.into_iter().filter_map(|s| s.for_suite(suite)).collect();
    if kept.is_empty() {
        bail!(
            "none of the host's apt sources ({}) has a binary entry for {suite}; the test \
             image is built from them",
            files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(render_deb822(&kept))
}

/// One deb822 source stanza: its fields, values verbatim (continuation
/// lines included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: String) {
        match self.fields.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some(field) => field.1 = value,
            None => self.fields.push((key.to_string(), value)),
        }
    }

    /// This stanza restricted to binary packages of `suite` (and its
    /// `-updates`, `-security`, ... suites), or None.
    pub(crate) fn for_suite(mut self, suite: &str) -> Option<Stanza> {
        if self.get("Enabled").is_some_and(|v| v.trim().eq_ignore_ascii_case("no")) {
            return None;
        }
        if !self.get("Types")?.split_whitespace().any(|t| t == "deb") {
            return None;
        }
        let suites: Vec<&str> = self
            .get("Suites")?
            .split_whitespace()
            .filter(|s| *s == suite || s.strip_prefix(suite).is_some_and(|rest| rest.starts_with('-') || rest.starts_with('/')))
            .collect();
        if suites.is_empty() {
            return None;
        }
        let suites = suites.join(" ");
        self.set("Types", "deb".to_string());
        self.set("Suites", suites);
        Some(self)
    }
}

/// Stanzas of a deb822 `.sources` file.
pub(crate) fn parse_deb822(text: &str) -> Vec<Stanza> {
    let mut stanzas = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !fields.is_empty() {
                stanzas.push(Stanza { fields: std::mem::take(&mut fields) });
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line);
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    if !fields.is_empty() {
        stanzas.push(Stanza { fields });
    }
    stanzas
}

/// Stanzas for the entries of a one-line-style `sources.list`.
pub(crate) fn parse_one_line(text: &str) -> Vec<Stanza> {
    let mut stanzas = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")) else {
            continue;
        };
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(inner) => match inner.split_once(']') {
                Some((opts, rest)) => (opts, rest),
                None => continue,
            },
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        let components: Vec<&str> = words.collect();
        let mut fields = vec![("Types".to_string(), "deb".to_string()), ("URIs".to_string(), uri.to_string()), ("Suites".to_string(), suite.to_string())];
        if !components.is_empty() {
            fields.push(("Components".to_string(), components.join(" ")));
        }
        for option in options.split_whitespace() {
            let Some((key, value)) = option.split_once('=') else {
                continue;
            };
            let key = match key {
                "signed-by" => "Signed-By",
                "arch" => "Architectures",
                "trusted" => "Trusted",
                "lang" => "Languages",
                _ => continue,
            };
            fields.push((key.to_string(), value.replace(',', " ")));
        }
        stanzas.push(Stanza { fields });
    }
    stanzas
}

pub(crate) fn render_deb822(stanzas: &[Stanza]) -> String {
    let mut out = String::new();
    for stanza in stanzas {
        for (key, value) in &stanza.fields {
            if value.is_empty() || value.starts_with('\n') {
                let _ = writeln!(out, "{key}:{value}");
            } else {
                let _ = writeln!(out, "{key}: {value}");
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_keep_the_release_and_drop_the_rest() {
        let text = "\
Types: deb deb-src
# a comment
URIs: http://repo.invalid/debian
Suites: bookworm bookworm-updates trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://repo.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 xyz
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb-src
URIs: http://repo.invalid/debian
Suites: bookworm

Enabled: no
Types: deb
URIs: http://repo.invalid/off
Suites: bookworm

Types: deb
URIs: http://repo.invalid/other
Suites: nodistro cloud-sdk-bookworm
";
        let kept: Vec<Stanza> = parse_deb822(text).into_iter().filter_map(|s| s.for_suite("bookworm")).collect();
        assert_eq!(
            render_deb822(&kept),
            "\
Types: deb
URIs: http://repo.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://repo.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 xyz
 -----END PGP PUBLIC KEY BLOCK-----

"
        );
    }

    #[test]
    fn one_line_sources_become_stanzas() {
        let text = "\
# comment
deb [arch=amd64,arm64 signed-by=/k.gpg] http://repo.invalid/debian bookworm main contrib # tail
deb-src http://repo.invalid/debian bookworm main
deb http://repo.invalid/debian-security bookworm-security main
deb http://repo.invalid/x cloud-sdk-bookworm main
";
        let kept: Vec<Stanza> = parse_one_line(text).into_iter().filter_map(|s| s.for_suite("bookworm")).collect();
        assert_eq!(
            render_deb822(&kept),
            "\
Types: deb
URIs: http://repo.invalid/debian
Suites: bookworm
Components: main contrib
Architectures: amd64 arm64
Signed-By: /k.gpg

Types: deb
URIs: http://repo.invalid/debian-security
Suites: bookworm-security
Components: main

"
        );
    }

    #[test]
    fn copy_in_hooks_refuse_odd_paths() {
        assert_eq!(copy_in(&[PathBuf::from("/a/b.so"), PathBuf::from("/c")], "/usr/lib").unwrap(), "copy-in /a/b.so /c /usr/lib");
        assert!(copy_in(&[PathBuf::from("/a b")], "/x").is_err());
    }

    #[test]
    fn tag_hash_follows_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let so = dir.path().join("citus.so");
        fs::write(&so, "one").unwrap();
        let files = vec![CopyIn { host: so.clone(), dest_dir: "/usr/lib/postgresql/15/lib".to_string() }];
        let pkgs = image_packages(15);
        let a = recipe_hash(15, "bookworm", &pkgs, &files).unwrap();
        assert_eq!(a.len(), 12);
        assert_eq!(a, recipe_hash(15, "bookworm", &pkgs, &files).unwrap());
        assert_ne!(a, recipe_hash(16, "bookworm", &pkgs, &files).unwrap());
        assert_ne!(a, recipe_hash(15, "bookworm", &pkgs, &[]).unwrap());
        let mut more = pkgs.clone();
        more.push("libcurl4".into());
        assert_ne!(a, recipe_hash(15, "bookworm", &more, &files).unwrap());
        fs::write(&so, "two").unwrap();
        assert_ne!(a, recipe_hash(15, "bookworm", &pkgs, &files).unwrap());
    }

    #[test]
    fn ldd_output_gives_resolved_libraries_and_missing_names() {
        let text = "\
/usr/lib/postgresql/15/lib/citus.so:
\tlinux-vdso.so.1 (0x00007ffd)
\tlibcurl.so.4 => /lib/x86_64-linux-gnu/libcurl.so.4 (0x00007f11)
\tlibpq.so.5 => /lib/x86_64-linux-gnu/libpq.so.5 (0x00007f12)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f13)
/usr/lib/postgresql/15/lib/citus_columnar.so:
\tlibpq.so.5 => /lib/x86_64-linux-gnu/libpq.so.5 (0x00007f12)
\tlibodd.so.1 => not found
";
        let (libs, missing) = parse_ldd(text);
        assert_eq!(libs, [PathBuf::from("/lib/x86_64-linux-gnu/libcurl.so.4"), PathBuf::from("/lib/x86_64-linux-gnu/libpq.so.5")]);
        assert_eq!(missing, ["libodd.so.1"]);
    }

    #[test]
    fn dpkg_search_output_gives_the_first_package_without_its_architecture() {
        let text = "\
libcurl4:amd64: /usr/lib/x86_64-linux-gnu/libcurl.so.4
libc6:amd64, libc6-dbg: /lib/x86_64-linux-gnu/libc.so.6
diversion by foo from: /usr/lib/x/libz.so.1
libzstd1: /usr/lib/x86_64-linux-gnu/libzstd.so.1
";
        assert_eq!(
            parse_dpkg_search(text),
            [
                ("libcurl4".to_string(), PathBuf::from("/usr/lib/x86_64-linux-gnu/libcurl.so.4")),
                ("libc6".to_string(), PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")),
                ("libzstd1".to_string(), PathBuf::from("/usr/lib/x86_64-linux-gnu/libzstd.so.1")),
            ]
        );
    }
}
