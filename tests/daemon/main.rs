//! End-to-end tests of `corral serve` against a real daemon on loopback, as root:
//! sandboxes are real. Each test starts its own daemon (own data dir, port, cgroups).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod cli;
mod code_interpreter;
mod debootstrap;
mod egress;
mod egress_fixture;
mod exec;
mod files;
mod govern_audit;
mod govern_policy;
mod lifecycle;
mod network;
mod openapi_check;
mod ports;
mod pty;
mod recipe_egress;
mod recipes;
mod restart;
mod rootfs;
mod secrets;
mod template_builds;
mod template_config;
mod template_imports;
mod templates;
mod tls;
