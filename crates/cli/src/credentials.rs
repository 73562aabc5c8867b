//! (Being written.)

use crate::ClientOpts;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Cmd {}

pub async fn run(_o: &ClientOpts, cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {}
}
