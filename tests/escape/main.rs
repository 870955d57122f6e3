//! The red-team escape suite: every test is an attempt to get out of, or past, a
//! `corral run` sandbox, and asserts the exact secure outcome the attempt meets inside
//! (the errno, usually) and, where the attempt aims at the host, that nothing changed
//! on the host. It only grows: a new escape idea becomes a new test here.
//!
//! The probes are Python (`/usr/bin/python3` inside, from the host's read-only /usr)
//! with ctypes for raw system calls. Each probe prints one `name outcome` line per
//! attempt, where the outcome is `ok`, a return value or an errno name, and the test
//! compares the lines with the outcomes it expects.
//!
//! Tests run in parallel: every name, path, port and socket a test creates is unique,
//! and everything a test creates on the host it removes again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod probe;

mod devices;
mod exhaustion;
mod files;
mod inheritance;
mod namespaces;
mod neighbours;
mod network;
mod privilege;
mod processes;
mod procfs;
mod syscalls;
