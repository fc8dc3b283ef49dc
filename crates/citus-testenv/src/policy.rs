//! The test profile (ci or local) and the decisions it implies, each with its reason.

use std::{fmt, str::FromStr};

/// Where the tests run: a CI job or a developer's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// A CI job: reuse the database `cargo xtask up` set up, skip the expensive setup.
    Ci,
    /// A developer machine: let the test run create and migrate its databases.
    Local,
}

impl Profile {
    /// The name used on the command line and in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Ci => "ci",
            Profile::Local => "local",
        }
    }

    /// Picks the profile: `explicit` (from `--profile`) wins; otherwise [`Profile::Ci`] when
    /// `ci_env` (the caller's value of the `CI` variable) is `true` or `1`, else
    /// [`Profile::Local`]. Returns the profile and a one-line reason for it.
    pub fn choose(explicit: Option<Profile>, ci_env: Option<&str>) -> (Profile, &'static str) {
        match (explicit, ci_env.map(str::trim)) {
            (Some(Profile::Ci), _) => (Profile::Ci, "chosen explicitly (--profile ci)"),
            (Some(Profile::Local), _) => (Profile::Local, "chosen explicitly (--profile local)"),
            (None, Some(v)) if v == "1" || v.eq_ignore_ascii_case("true") => {
                (Profile::Ci, "the CI variable is `true` or `1`, as GitHub Actions, Travis CI and most CI services set it")
            }
            (None, Some(_)) => (Profile::Local, "the CI variable is set, but not to `true` or `1`: treated as a developer machine"),
            (None, None) => (Profile::Local, "the CI variable is not set: treated as a developer machine"),
        }
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ci" => Ok(Profile::Ci),
            "local" => Ok(Profile::Local),
            other => Err(format!("unknown profile `{other}`: expected `ci` or `local`")),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a [`Decision`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecisionKind {
    /// `TEST.NAME` is the cluster's real database instead of Django's `test_`-prefixed name.
    FixedDatabaseName,
    /// `ROLE` is left unset (CommCare's Citus setup migrations do not run) and pytest-django
    /// gets `--nomigrations`.
    SkipSetupMigrations,
    /// The existing database is reused instead of created and torn down
    /// (`REUSE_DB=1`, pytest-django `--reuse-db`).
    ReuseDb,
}

impl DecisionKind {
    /// Every kind, in output order.
    pub const ALL: [DecisionKind; 3] = [DecisionKind::FixedDatabaseName, DecisionKind::SkipSetupMigrations, DecisionKind::ReuseDb];

    /// The key used in the JSON output's `reasons` object.
    pub fn key(self) -> &'static str {
        match self {
            DecisionKind::FixedDatabaseName => "fixed_database_name",
            DecisionKind::SkipSetupMigrations => "skip_setup_migrations",
            DecisionKind::ReuseDb => "reuse_db",
        }
    }

    /// The words used in comments.
    pub fn label(self) -> &'static str {
        match self {
            DecisionKind::FixedDatabaseName => "fixed database name",
            DecisionKind::SkipSetupMigrations => "skip setup migrations",
            DecisionKind::ReuseDb => "reuse db",
        }
    }
}

/// One decision of a [`Policy`]: a yes/no value and the one-line reason outputs show as a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub kind: DecisionKind,
    pub value: bool,
    /// One line, no newline.
    pub reason: &'static str,
}

impl Decision {
    /// `# <label>: yes|no: <reason>` without the `# `.
    pub fn comment(&self) -> String {
        format!("{}: {}: {}", self.kind.label(), if self.value { "yes" } else { "no" }, self.reason)
    }
}

/// How a test run treats the cluster's database: the decisions for a [`Profile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub profile: Profile,
    decisions: [Decision; 3],
}

impl Policy {
    /// The decisions of `profile`.
    ///
    /// In CI the tests use the cluster's real database as `TEST.NAME`, the one `cargo xtask
    /// up` made and set up on every node, and reuse it untouched. Locally they use Django's
    /// `test_` database, which the run creates, migrates and drops itself, so the cluster's
    /// own database and its data are never touched.
    pub fn new(profile: Profile) -> Policy {
        let d = |kind, value, reason| Decision { kind, value, reason };
        let decisions = match profile {
            Profile::Ci => [
                d(
                    DecisionKind::FixedDatabaseName,
                    true,
                    "TEST.NAME is the cluster's real database, not Django's `test_` one: `cargo xtask up` made only the real one on every node, and a second run once failed on the prefix",
                ),
                d(
                    DecisionKind::SkipSetupMigrations,
                    true,
                    "ROLE is left unset (CommCare's Citus setup migrations run only when it is set) and pytest-django gets --nomigrations: `cargo xtask up` already installed citus and registered the workers",
                ),
                d(
                    DecisionKind::ReuseDb,
                    true,
                    "the database is reused, not created and torn down (REUSE_DB=1, pytest-django --reuse-db): it already exists on every node",
                ),
            ],
            Profile::Local => [
                d(
                    DecisionKind::FixedDatabaseName,
                    false,
                    "TEST.NAME is Django's `test_` database, which the run creates and drops itself: the cluster's own database and its data are never touched by a local test run",
                ),
                d(
                    DecisionKind::SkipSetupMigrations,
                    false,
                    "ROLE is set (citus_master/citus_worker): the run creates and migrates the test databases, workers before the coordinator (TEST.DEPENDENCIES)",
                ),
                d(
                    DecisionKind::ReuseDb,
                    false,
                    "the test databases are created fresh and torn down after the run (pytest-django --create-db); REUSE_DB is empty, as CommCare treats any non-empty value, even 0, as reuse",
                ),
            ],
        };
        Policy { profile, decisions }
    }

    /// All decisions, in output order.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The decision about `kind`.
    pub fn get(&self, kind: DecisionKind) -> &Decision {
        self.decisions.iter().find(|d| d.kind == kind).expect("every kind has a decision")
    }

    /// Overrides one decision (e.g. from a command-line flag), with the reason outputs will show.
    pub fn set(&mut self, kind: DecisionKind, value: bool, reason: &'static str) {
        let d = self.decisions.iter_mut().find(|d| d.kind == kind).expect("every kind has a decision");
        d.value = value;
        d.reason = reason;
    }

    pub fn fixed_database_name(&self) -> bool {
        self.get(DecisionKind::FixedDatabaseName).value
    }

    pub fn skip_setup_migrations(&self) -> bool {
        self.get(DecisionKind::SkipSetupMigrations).value
    }

    pub fn reuse_db(&self) -> bool {
        self.get(DecisionKind::ReuseDb).value
    }

    /// The database the tests use: `database` itself with a fixed name, else Django's default
    /// `test_` + `database`.
    pub fn test_database_name(&self, database: &str) -> String {
        if self.fixed_database_name() {
            database.to_owned()
        } else {
            format!("test_{database}")
        }
    }

    /// The pytest-django flags: `--reuse-db` or `--create-db`, then `--nomigrations` when the
    /// setup migrations are skipped.
    pub fn pytest_args(&self) -> Vec<&'static str> {
        let mut args = vec![if self.reuse_db() { "--reuse-db" } else { "--create-db" }];
        if self.skip_setup_migrations() {
            args.push("--nomigrations");
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_profile_wins_over_ci_variable() {
        assert_eq!(Profile::choose(Some(Profile::Local), Some("true")).0, Profile::Local);
        assert_eq!(Profile::choose(Some(Profile::Ci), None).0, Profile::Ci);
    }

    #[test]
    fn ci_variable_decides_otherwise() {
        for v in ["true", "1", "TRUE", "True", " true\n"] {
            assert_eq!(Profile::choose(None, Some(v)).0, Profile::Ci, "{v:?}");
        }
        for v in ["", "0", "false", "yes"] {
            assert_eq!(Profile::choose(None, Some(v)).0, Profile::Local, "{v:?}");
        }
        assert_eq!(Profile::choose(None, None).0, Profile::Local);
    }

    #[test]
    fn profile_round_trips_through_strings() {
        for p in [Profile::Ci, Profile::Local] {
            assert_eq!(p.to_string().parse::<Profile>(), Ok(p));
        }
        assert!("CI".parse::<Profile>().unwrap_err().contains("expected `ci` or `local`"));
    }

    #[test]
    fn reasons_are_single_lines() {
        for p in [Profile::Ci, Profile::Local] {
            let policy = Policy::new(p);
            assert_eq!(policy.decisions().len(), DecisionKind::ALL.len());
            for (d, k) in policy.decisions().iter().zip(DecisionKind::ALL) {
                assert_eq!(d.kind, k);
                assert!(!d.reason.contains(['\n', '\r']), "{}", d.reason);
            }
        }
        for ci in [None, Some("1"), Some("x")] {
            for e in [None, Some(Profile::Ci), Some(Profile::Local)] {
                assert!(!Profile::choose(e, ci).1.contains('\n'));
            }
        }
    }

    #[test]
    fn ci_and_local_policies() {
        let ci = Policy::new(Profile::Ci);
        assert!(ci.fixed_database_name() && ci.skip_setup_migrations() && ci.reuse_db());
        assert_eq!(ci.pytest_args(), ["--reuse-db", "--nomigrations"]);
        assert_eq!(ci.test_database_name("db"), "db");
        let local = Policy::new(Profile::Local);
        assert!(!local.fixed_database_name() && !local.skip_setup_migrations() && !local.reuse_db());
        assert_eq!(local.pytest_args(), ["--create-db"]);
        // A local run never drops the cluster's own database: it uses Django's test_ one.
        assert_eq!(local.test_database_name("db"), "test_db");
        let mut custom = local.clone();
        custom.set(DecisionKind::FixedDatabaseName, true, "fixed");
        assert_eq!(custom.test_database_name("db"), "db");
        // The overridden decision is what the outputs' comments show; the others are untouched.
        let comments: Vec<String> = custom.decisions().iter().map(Decision::comment).collect();
        let local_comments: Vec<String> = local.decisions().iter().map(Decision::comment).collect();
        assert_eq!(comments[0], "fixed database name: yes: fixed");
        assert_eq!(comments[1..], local_comments[1..]);
        assert_eq!(custom.pytest_args(), ["--create-db"]);
    }
}
