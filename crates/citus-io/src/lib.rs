//! The one crate that does IO for a Citus cluster: PostgreSQL connections, readiness,
//! applying the setup plan, verification, and the local-process and docker backends.
//!
//! The pure crates decide *what* (`citus-config`, `citus-plan`, `citus-compose`); this crate
//! does it. Other tooling can reuse it: e.g. `setup::run` against nodes it started itself.
//!
//! Progress goes through a [`Progress`] callback (one line per event); results come back
//! as values. Errors name the node, its address and the likely fix.

pub mod docker;
pub mod local;
pub mod pg;
pub mod setup;
pub mod state;
pub mod verify;

/// Receives one human-readable progress line at a time (the xtask prints them to stderr).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// A progress sink that drops every line.
pub fn quiet(_: &str) {}
