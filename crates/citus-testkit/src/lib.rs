//! The one helper that decides whether an integration test needing PostgreSQL, Citus or Docker can run on this machine.
//!
//! # Skip policy
//!
//! A test that needs something from the machine starts with
//!
//! ```no_run
//! use citus_testkit::{require, Need};
//! let Some(env) = require("cluster_up", &[Need::Postgres, Need::Citus]) else {
//!     return;
//! };
//! ```
//!
//! [`require`] checks each [`Need`] once per process:
//!
//! * [`Need::Postgres`]: `initdb`, `pg_ctl` and `postgres` in `pg_config
//!   --bindir`, else in the highest `/usr/lib/postgresql/<N>/bin`; and, when
//!   the test runs as root, a `postgres` OS user (initdb refuses to run as
//!   root, so servers run as that user; directories they use must be
//!   world-traversable, see [`temp_dir`]).
//! * [`Need::Citus`]: `<pkglibdir>/citus.so` and
//!   `<sharedir>/extension/citus.control` of that PostgreSQL. Citus is built
//!   outside the repository and installed into it (see DEVELOPERS.md).
//! * [`Need::Docker`]: `docker info` answers within 10 s and there is a
//!   compose (`docker compose` v2, else `docker-compose` v1). Together with
//!   [`Need::Postgres`], which is what the tests that use [`test_image`] ask
//!   for, also the test image: already in the engine (with and without
//!   Citus, when the host has Citus), or buildable here (`mmdebstrap` on
//!   PATH, and root or user namespaces for its unshare mode).
//!
//! When a need is missing the test is **skipped**: a block
//!
//! ```text
//! ==== SKIPPED cluster_up: needs Citus, but /usr/lib/postgresql/15/lib/citus.so does not exist (...) ====
//! ```
//!
//! goes to the process's stderr (bypassing libtest's capture, so `cargo
//! test` shows it without `--nocapture`), `require` returns `None` and the
//! test returns early, counting as passed. cargo-nextest keeps a passing
//! test's output to itself, so the block also goes, one line per need, to
//! the file that `CITUS_XTASK_SKIP_LOG` names ([`SKIP_LOG_VAR`]), when it is
//! set; `ci/test.sh` sets it and lists the skips after the run. A machine
//! without PostgreSQL, Citus or Docker thus still runs the suite green, and
//! says what it skipped. A test that cannot run for a reason of its own (a
//! program it reads its output with is missing, say) skips the same way with
//! [`skip`].
//!
//! # `CITUS_XTASK_REQUIRE`
//!
//! Where skipping would hide a problem (a CI runner that is meant to have
//! everything), set `CITUS_XTASK_REQUIRE` to a comma separated list of needs,
//! e.g. `CITUS_XTASK_REQUIRE=postgres,citus,docker` (or `all`): a test that
//! needs one of those and finds it missing panics, with the same reason,
//! instead of skipping. Needs not listed still skip; unknown names panic.
//!
//! # The rest
//!
//! * [`free_port`] / [`free_ports`]: ports no one else in this process, and
//!   as far as possible no other test process, gets.
//! * [`temp_dir`]: a 0755 directory under /tmp, deleted on drop.
//! * [`test_image`]: the Docker image `citus-xtask-test:pg<major>-<hash>`,
//!   built locally (no registry is needed) with mmdebstrap from the host's
//!   apt sources, with the host's Citus when there is one; once per machine.
//! * [`ContainerGuard`], [`ComposeProjectGuard`],
//!   [`cleanup_compose_project`]: remove what a test created in Docker, even
//!   when it panics.

mod docker;
mod image;
mod need;
mod ports;
mod process;
mod tmp;

pub use docker::{cleanup_compose_project, compose_project_objects, normalize_project_name, ComposeProjectGuard, ContainerGuard};
pub use image::{image_packages, test_image, test_image_tag, ENTRYPOINT_SCRIPT, IMAGE_REPOSITORY};
pub use need::{require, skip, Env, Need, DEFAULT_PG_MAJOR, REQUIRE_VAR, SKIP_LOG_VAR};
pub use ports::{free_port, free_ports};
pub use tmp::{temp_dir, TempDir};
