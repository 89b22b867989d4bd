//! The `dockyard` binary: parse the command line and run the chosen role.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match dockyard::cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain, skipping causes a message already quotes.
            let mut message = e.to_string();
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
