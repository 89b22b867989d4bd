//! The `dockyard` binary: parse the command line and run the chosen role.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    dockyard::cli::Cli::parse().run()
}
