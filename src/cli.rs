//! The command line: one subcommand per role of the binary, each owning its arguments
//! and its `run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "dockyard",
    version,
    about = "Container registries and pull-through mirrors on Kubernetes"
)]
pub struct Cli {
    /// Log format (default: the config's log.formatter, else text).
    #[arg(long, global = true, value_enum, env = "DOCKYARD_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry server (OCI Distribution v1.1, Docker Registry V2; registry:2 compatible).
    Serve(ServeArgs),
    /// Print a bcrypt htpasswd line for USER (replaces `htpasswd -Bbn`).
    Htpasswd(HtpasswdArgs),
    /// Print the CustomResourceDefinitions (crds/ is generated from this).
    Crd,
}

#[derive(Debug, Args)]
struct HtpasswdArgs {
    /// The user name.
    user: String,
    /// Read the password from standard input (first line) instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    /// bcrypt cost (4 to 31); each step doubles the time a login check takes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    cost: u32,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// distribution (registry:2) config.yml, as in `registry serve config.yml`.
    #[arg(value_name = "CONFIG")]
    config_file: Option<PathBuf>,
    /// Same as the positional CONFIG.
    #[arg(
        long = "config",
        short = 'c',
        env = "DOCKYARD_CONFIG",
        conflicts_with = "config_file"
    )]
    config: Option<PathBuf>,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => args.run(self.log_format),
            Command::Htpasswd(args) => args.run(),
            Command::Crd => {
                print!("{}", crate::operator::crd::all_yaml()?);
                Ok(())
            }
        }
    }
}

impl ServeArgs {
    fn run(self, log_format: Option<LogFormat>) -> anyhow::Result<()> {
        let path = self.config.or(self.config_file);
        let loaded = Config::load(path.as_deref(), std::env::vars())?;
        let config = loaded.config;
        let format = log_format
            .or_else(|| LogFormat::from_formatter(config.log.formatter.as_deref()))
            .unwrap_or_default();
        telemetry::init(format, config.log.level.as_deref());
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(crate::serve::run(config, crate::serve::shutdown_signal()))?;
        Ok(())
    }
}

impl HtpasswdArgs {
    fn run(self) -> anyhow::Result<()> {
        let password = if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        } else {
            prompt_password()?
        };
        anyhow::ensure!(!password.is_empty(), "the password is empty");
        let line = crate::auth::htpasswd_line(&self.user, &password, self.cost)
            .map_err(anyhow::Error::msg)?;
        println!("{line}");
        Ok(())
    }
}

/// Asks twice on the terminal, without echo (via `stty`), as `htpasswd` does.
fn prompt_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "no terminal to prompt on: use --password-stdin"
    );
    let stty = |arg: &str| std::process::Command::new("stty").arg(arg).status();
    let read = |label: &str| -> anyhow::Result<String> {
        eprint!("{label}");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        eprintln!();
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let _ = stty("-echo");
    let first = read("New password: ");
    let second = read("Re-type new password: ");
    let _ = stty("echo");
    let (first, second) = (first?, second?);
    anyhow::ensure!(first == second, "passwords do not match");
    Ok(first)
}
