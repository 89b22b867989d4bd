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
