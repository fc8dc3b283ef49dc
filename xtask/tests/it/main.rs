//! Integration tests of `cargo xtask`: the real binary against real servers and containers.
//!
//! Every test that needs PostgreSQL, Citus or Docker asks `citus_testkit::require` first,
//! which skips it loudly when the machine cannot run it.

mod cli;
mod docker;
mod faults;
mod harness;
mod local;
