//! The outputs: variables (shell, dotenv, json, github), Django `DATABASES` and pytest flags.

use std::{collections::BTreeMap, fmt, str::FromStr};

use citus_config::{Backend, Cluster};

use crate::{quote, Policy};

/// What `render` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `export NAME='value'` lines for `eval "$(...)"`.
    Shell,
    /// `NAME=value` lines for a `.env` file (python-dotenv quoting).
    Dotenv,
    /// One JSON object: every variable, plus the reasons under `"reasons"`.
    Json,
    /// Lines to append to `$GITHUB_ENV`.
    Github,
    /// Python: the `DATABASES` entries of a Django settings module.
    Django,
    /// The pytest-django flags, on one line after the reasons.
    Pytest,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 6] = [Format::Shell, Format::Dotenv, Format::Json, Format::Github, Format::Django, Format::Pytest];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Shell => "shell",
            Format::Dotenv => "dotenv",
            Format::Json => "json",
            Format::Github => "github",
            Format::Django => "django",
            Format::Pytest => "pytest",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown format `{s}`: expected one of shell, dotenv, json, github, django, pytest"))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of the `django` output (the other formats ignore them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// The Django the settings are for: `TEST.SERIALIZE` is written only before 4.0 (4.0
    /// deprecated it, warning when it is set, and serializes only for `serialized_rollback`
    /// tests; 5.0 removed it). Default (5, 2).
    pub django_version: (u32, u32),
    /// The coordinator's `DATABASES` alias. Default `citus`.
    pub coordinator_alias: String,
    /// Worker *i* (from 1) gets the alias `{worker_alias_prefix}{i}`. Default `citus-worker`.
    pub worker_alias_prefix: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { django_version: (5, 2), coordinator_alias: "citus".into(), worker_alias_prefix: "citus-worker".into() }
    }
}

impl RenderOptions {
    /// The alias of worker `index` (0-based; the alias counts from 1).
    pub fn worker_alias(&self, index: usize) -> String {
        format!("{}{}", self.worker_alias_prefix, index + 1)
    }

    /// Checks that the aliases are non-empty and distinct for `workers` workers (a duplicate
    /// alias would silently replace an entry of the generated dict).
    pub fn check(&self, workers: usize) -> Result<(), String> {
        if self.coordinator_alias.is_empty() || self.worker_alias_prefix.is_empty() {
            return Err("database aliases must not be empty".into());
        }
        if (0..workers).any(|i| self.worker_alias(i) == self.coordinator_alias) {
            return Err(format!("coordinator alias `{}` is also a worker alias", self.coordinator_alias));
        }
        Ok(())
    }
}

/// Parses `--django-version`: `X`, `X.Y` or `X.Y.Z` (the patch level is ignored).
pub fn parse_django_version(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("bad Django version `{s}`: expected MAJOR.MINOR, e.g. 5.2");
    let mut parts = s.trim().split('.');
    let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let minor = match parts.next() {
        None => 0,
        Some(p) => p.parse().map_err(|_| bad())?,
    };
    match parts.next() {
        Some(p) if p.parse::<u32>().is_err() => return Err(bad()),
        _ => {}
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((major, minor))
}

/// Every variable the variable formats emit, in output order, as `(name, value)`.
///
/// Addresses: `*_HOST`/`*_PORT`, `CITUS_WORKERS` and `DATABASE_URL` are the client addresses
/// (what the tests connect to); `*_NODE_NAME` and `CITUS_WORKER_NODE_NAMES` are the cluster
/// addresses for `backend` (what the nodes use to reach each other, the seed's `CITUS_NODE_NAME`).
pub fn variables(cluster: &Cluster, backend: Backend, policy: &Policy, password: &str) -> Vec<(String, String)> {
    let c = &cluster.coordinator;
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut var = |name: &str, value: String| vars.push((name.to_owned(), value));
    var("CITUS_TEST_PROFILE", policy.profile.to_string());
    var("CITUS_DATABASE", cluster.database.clone());
    var("CITUS_TEST_DATABASE", policy.test_database_name(&cluster.database));
    var("CITUS_USER", cluster.user.clone());
    var("CITUS_PASSWORD", password.to_owned());
    var("CITUS_COORDINATOR_HOST", c.client.host.clone());
    var("CITUS_COORDINATOR_PORT", c.client.port.to_string());
    var("CITUS_COORDINATOR_NODE_NAME", cluster.cluster_address(c, backend).to_string());
    var(
        "DATABASE_URL",
        format!("postgres://{}:{}@{}/{}", quote::percent(&cluster.user), quote::percent(password), c.client, quote::percent(&cluster.database)),
    );
    var("CITUS_WORKER_COUNT", cluster.workers.len().to_string());
    var("CITUS_WORKERS", cluster.workers.iter().map(|w| w.client.to_string()).collect::<Vec<_>>().join(","));
    var("CITUS_WORKER_NODE_NAMES", cluster.workers.iter().map(|w| cluster.cluster_address(w, backend).to_string()).collect::<Vec<_>>().join(","));
    for (i, w) in cluster.workers.iter().enumerate() {
        let n = i + 1;
        var(&format!("CITUS_WORKER{n}_HOST"), w.client.host.clone());
        var(&format!("CITUS_WORKER{n}_PORT"), w.client.port.to_string());
        var(&format!("CITUS_WORKER{n}_NODE_NAME"), cluster.cluster_address(w, backend).to_string());
    }
    var("CITUS_SKIP_SETUP_MIGRATIONS", if policy.skip_setup_migrations() { "1" } else { "0" }.into());
    // Empty, not 0, when off: CommCare's pytest plugin treats any non-empty REUSE_DB as on.
    var("REUSE_DB", if policy.reuse_db() { "1" } else { "" }.into());
    var("CITUS_PYTEST_ARGS", policy.pytest_args().join(" "));
    vars
}

/// Renders what a test run needs to reach `cluster` in `format`.
///
/// `backend` decides the cluster addresses (`CITUS_NODE_NAME`); `password` appears in every
/// format but `pytest`. The output ends with a newline; comment lines carry the policy's reasons
/// except in `github` (whose file allows no comments), `json` (which has a `reasons` key) and
/// `pytest`, which is only the flags, for a command line (`pytest $(cargo xtask test-env
/// --format pytest)`: a `#` there would be an argument).
pub fn render(cluster: &Cluster, backend: Backend, policy: &Policy, format: Format, password: &str, opts: &RenderOptions) -> String {
    match format {
        Format::Shell => {
            let mut out = header(policy, format);
            for (name, value) in variables(cluster, backend, policy, password) {
                out.push_str(&format!("export {name}={}\n", quote::shell(&value)));
            }
            out
        }
        Format::Dotenv => {
            let mut out = header(policy, format);
            for (name, value) in variables(cluster, backend, policy, password) {
                if value.contains("${") {
                    out.push_str(&quote::comment(&format!("warning: {name} contains `${{`, which python-dotenv expands unless read with interpolate=False")));
                }
                out.push_str(&format!("{name}={}\n", quote::dotenv(&value)));
            }
            out
        }
        Format::Json => {
            let mut map: BTreeMap<String, serde_json::Value> = variables(cluster, backend, policy, password).into_iter().map(|(k, v)| (k, v.into())).collect();
            let reasons: BTreeMap<&str, serde_json::Value> =
                policy.decisions().iter().map(|d| (d.kind.key(), serde_json::json!({ "value": d.value, "reason": d.reason }))).collect();
            map.insert("reasons".into(), serde_json::to_value(reasons).expect("strings and bools serialize"));
            let mut out = serde_json::to_string_pretty(&map).expect("strings and bools serialize");
            out.push('\n');
            out
        }
        Format::Github => variables(cluster, backend, policy, password).iter().map(|(n, v)| quote::github(n, v)).collect(),
        Format::Django => django(cluster, backend, policy, password, opts),
        Format::Pytest => format!("{}\n", policy.pytest_args().join(" ")),
    }
}

/// The comment lines above the shell, dotenv and django outputs.
fn header(policy: &Policy, format: Format) -> String {
    let mut out = quote::comment(&format!("Citus test environment, profile {} (cargo xtask test-env --format {format})", policy.profile));
    for d in policy.decisions() {
        out.push_str(&quote::comment(&d.comment()));
    }
    out
}

fn django(cluster: &Cluster, backend: Backend, policy: &Policy, password: &str, opts: &RenderOptions) -> String {
    let py = quote::python;
    let serialize = opts.django_version < (4, 0);
    let mut out = header(policy, Format::Django);
    out.push_str(&quote::comment(&format!(
        "For Django {}.{}: {}",
        opts.django_version.0,
        opts.django_version.1,
        if serialize {
            "TEST.SERIALIZE is False (serializing the test database is slow)"
        } else {
            "no TEST.SERIALIZE (deprecated in Django 4.0, removed in 5.0)"
        }
    )));
    out.push_str(&quote::comment("Adds to a DATABASES defined above it (keep your 'default' there); else it defines DATABASES."));
    out.push_str(&quote::comment("Append it to your settings module (or exec it there): imported as a module of its own, it would not see that DATABASES."));
    if policy.fixed_database_name() {
        out.push_str(&quote::comment(
            "TEST.NAME is the real database: keep it (pytest-django --reuse-db, manage.py test --keepdb). Without that, a test run that finds it drops and recreates it without citus; pytest-xdist's per-process suffix (_gw0) would make new ones without citus.",
        ));
    }
    if !cluster.workers.is_empty() {
        out.push_str(&quote::comment(&format!(
            "A test whose `databases` include {} must include the workers too (or be '__all__'): Django refuses a TEST.DEPENDENCIES alias outside the run (\"Circular dependency in TEST[DEPENDENCIES]\").",
            quote::python(&opts.coordinator_alias)
        )));
    }
    out.push_str("DATABASES = globals().get('DATABASES') or {}\nDATABASES.update({\n");
    let worker_aliases: Vec<String> = (0..cluster.workers.len()).map(|i| opts.worker_alias(i)).collect();
    let test_name = policy.fixed_database_name().then_some(cluster.database.as_str());
    for (i, node) in cluster.nodes().enumerate() {
        let coordinator = i == 0;
        let alias = if coordinator { opts.coordinator_alias.clone() } else { worker_aliases[i - 1].clone() };
        let what = if coordinator { "coordinator".to_owned() } else { format!("worker {i}") };
        out.push_str(&format!("    {}: {{  # {what}\n", py(&alias)));
        let mut entry = |key: &str, value: String| out.push_str(&format!("        {}: {value},\n", py(key)));
        entry("ENGINE", py("django.db.backends.postgresql"));
        entry("NAME", py(&cluster.database));
        entry("USER", py(&cluster.user));
        entry("PASSWORD", py(password));
        entry("HOST", py(&node.client.host));
        entry("PORT", py(&node.client.port.to_string()));
        let mut test = Vec::new();
        if let Some(name) = test_name {
            test.push(format!("{}: {}", py("NAME"), py(name)));
        }
        // Workers say they depend on nothing: Django's implicit dependency of every alias on
        // 'default' would otherwise form a cycle when the coordinator's alias is 'default'.
        let deps: Vec<String> = if coordinator { worker_aliases.iter().map(|a| py(a)).collect() } else { Vec::new() };
        test.push(format!("{}: [{}]", py("DEPENDENCIES"), deps.join(", ")));
        if serialize {
            test.push(format!("{}: False", py("SERIALIZE")));
        }
        out.push_str(&format!("        {}: {{\n", py("TEST")));
        for t in test {
            out.push_str(&format!("            {t},\n"));
        }
        out.push_str("        },\n");
        let mut entry = |key: &str, value: String| out.push_str(&format!("        {}: {value},\n", py(key)));
        if !policy.skip_setup_migrations() {
            entry("ROLE", py(if coordinator { "citus_master" } else { "citus_worker" }));
        }
        if !coordinator {
            entry("CITUS_NODE_NAME", py(&cluster.cluster_address(node, backend).to_string()));
        }
        entry("DISABLE_SERVER_SIDE_CURSORS", "True".into());
        out.push_str("    },\n");
    }
    out.push_str("})\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_round_trips_through_strings() {
        for f in Format::ALL {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        assert!("yaml".parse::<Format>().is_err());
    }

    #[test]
    fn django_versions() {
        assert_eq!(parse_django_version("5.2"), Ok((5, 2)));
        assert_eq!(parse_django_version("4"), Ok((4, 0)));
        assert_eq!(parse_django_version("4.2.11"), Ok((4, 2)));
        for bad in ["", "x", "5.x", "5.2.x", "5.2.1.1", "-1.0"] {
            assert!(parse_django_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn alias_check() {
        assert!(RenderOptions::default().check(4).is_ok());
        let clash = RenderOptions { coordinator_alias: "w2".into(), worker_alias_prefix: "w".into(), ..Default::default() };
        assert!(clash.check(1).is_ok());
        assert!(clash.check(2).is_err());
    }
}
