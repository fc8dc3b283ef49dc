//! What a test run needs to reach the Citus cluster, and the CI/local policy behind it.
//!
//! This crate is pure: no IO, no environment reading. The caller (`cargo xtask test-env`)
//! passes the [`Cluster`](citus_config::Cluster), the backend, the password and the value of
//! the `CI` variable in, and prints what [`render`] returns.
//!
//! - [`Profile::choose`] picks `ci` or `local` (an explicit `--profile` wins, else `CI=true`/`1`).
//! - [`Policy::new`] turns the profile into [`Decision`]s, each with a one-line reason that the
//!   outputs show as comments: the fixed test database name, skipping the setup migrations
//!   (`ROLE` unset, `--nomigrations`), reusing the database (`REUSE_DB=1`, `--reuse-db`).
//! - [`render`] writes one [`Format`]: variables for a shell, a `.env` file, JSON or
//!   `$GITHUB_ENV`; a Django `DATABASES` block; or the pytest-django flags.
//!
//! ```
//! use citus_config::{Backend, Cluster};
//! use citus_testenv::{render, Format, Policy, Profile, RenderOptions};
//!
//! let text = "database = \"app\"\nuser = \"me\"\n[coordinator]\nname = \"coord\"\nport = 5600\n[[workers]]\nname = \"w1\"\nport = 5601\n";
//! let cluster = Cluster::parse(text, "citus.toml".as_ref()).unwrap();
//! let (profile, _reason) = Profile::choose(None, Some("true"));
//! assert_eq!(profile, Profile::Ci);
//! let policy = Policy::new(profile);
//!
//! let shell = render(&cluster, Backend::Docker, &policy, Format::Shell, "s3cret", &RenderOptions::default());
//! assert!(shell.contains("export DATABASE_URL='postgres://me:s3cret@localhost:5600/app'\n"));
//! assert!(shell.contains("export CITUS_WORKER1_NODE_NAME='w1:5432'\n"));
//! assert!(shell.contains("export REUSE_DB='1'\n"));
//!
//! let pytest = render(&cluster, Backend::Docker, &policy, Format::Pytest, "s3cret", &RenderOptions::default());
//! assert_eq!(pytest, "--reuse-db --nomigrations\n");
//! assert!(!pytest.contains("s3cret"));
//! ```

mod policy;
mod quote;
mod render;

pub use policy::{Decision, DecisionKind, Policy, Profile};
pub use render::{parse_django_version, render, variables, Format, RenderOptions};
