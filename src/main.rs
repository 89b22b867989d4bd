//! The `dockyard` binary: parse the command line and run the chosen role.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match dockyard::cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
