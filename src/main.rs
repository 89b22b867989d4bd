//! The `dockyard` binary: parse the command line and run the chosen role.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    fewer_malloc_arenas();
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

/// glibc gives each thread that allocates its own arena (up to 8 per core), and blob reads run
/// on many blocking threads: two arenas keep the resident size near what is really in use.
fn fewer_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
