//! Integration tests: the real `warrant` binary, a real SQLite file in a temp data
//! directory, real HTTP over loopback. One test binary (link time on two cores).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod harness;
mod pg;

mod bad_input;
mod browser;
mod certification;
mod durability;
mod e2e;
mod evidence;
mod governance;
mod governance_cli;
mod humans_cli;
mod killswitch;
mod migrate;
mod mtls;
mod oauth;
mod oidc;
mod openapi;
mod replicas;
mod roles;
mod takeover;
mod tamper;
