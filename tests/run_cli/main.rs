//! `corral run`: options, defaults, exit statuses, JSON output, bad input, signals to
//! corral itself and the sweep of stale cgroups. Each test uses its own `Env` (state
//! dir, runtime dir, cgroup parent), so the tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod bad_input;
mod basics;
mod egress;
#[path = "../daemon/egress_fixture.rs"]
mod egress_fixture;
mod environment;
mod exit_status;
mod limits;
mod mounts;
mod network;
mod output;
mod signals;
mod stdin;
mod sweep;
