//! Logging setup: human-readable by default, JSON on request; the level comes from
//! `RUST_LOG`, else the config's `log.level`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// distribution's `log.formatter` (`text`, `json`, `logstash`).
    pub fn from_formatter(f: Option<&str>) -> Option<LogFormat> {
        match f? {
            "json" | "logstash" => Some(LogFormat::Json),
            "text" => Some(LogFormat::Text),
            _ => None,
        }
    }
}

/// Installs the global subscriber. `level` is distribution's `log.level` (error, warn, info, debug).
pub fn init(format: LogFormat, level: Option<&str>) {
    let default = match level.unwrap_or("info") {
        "error" | "panic" | "fatal" => "error",
        "warn" | "warning" => "warn",
        "debug" => "debug",
        "trace" => "trace",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
