//! The command line: one subcommand per role of the binary, each owning its arguments
//! and its `run`.

use std::net::SocketAddr;
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
    /// Run the Kubernetes operator for Registry resources (leader-elected, /healthz /readyz /metrics).
    Operator(OperatorArgs),
    /// Run the node agent (a DaemonSet): make this node's containerd, CRI-O and Docker pull
    /// through the mirrors and trust the registries that select it.
    NodeAgent(NodeAgentArgs),
    /// Delete blobs and (with --delete-untagged) manifests nothing references, as
    /// `registry garbage-collect` does, but safe while the registry serves: it takes the
    /// collector's lock, and keeps what was pushed or relied on within the grace window.
    GarbageCollect(GcArgs),
    /// Print a bcrypt htpasswd line for USER (replaces `htpasswd -Bbn`).
    Htpasswd(HtpasswdArgs),
    /// Print the CustomResourceDefinitions (crds/ is generated from this).
    Crd,
}

#[derive(Debug, Args)]
struct NodeAgentArgs {
    /// This node's name (the chart passes spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// Namespace of the node plans and reports: the chart's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Where the node's root filesystem is (`/host` when the chart mounts it there). Every
    /// path below is a path on the node.
    #[arg(long, env = "DOCKYARD_HOST_ROOT", default_value = "/")]
    host_root: PathBuf,
    /// containerd's config file, read for its registry `config_path`.
    #[arg(
        long,
        env = "DOCKYARD_CONTAINERD_CONFIG",
        default_value = "/etc/containerd/config.toml"
    )]
    containerd_config: PathBuf,
    /// containerd's socket (containerd counts as present when it or the config exists).
    #[arg(
        long,
        env = "DOCKYARD_CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    containerd_socket: PathBuf,
    /// Where the agent records what it owns on the node.
    #[arg(
        long,
        env = "DOCKYARD_STATE_DIR",
        default_value = "/var/lib/dockyard/node-agent"
    )]
    state_dir: PathBuf,
    /// Send dockerd SIGHUP after daemon.json changed (needs the host PID namespace).
    #[arg(long, env = "DOCKYARD_RELOAD_DOCKER", default_value_t = false, action = clap::ArgAction::Set)]
    reload_docker: bool,
    /// Send CRI-O SIGHUP after its drop-in changed (needs the host PID namespace).
    #[arg(long, env = "DOCKYARD_RELOAD_CRIO", default_value_t = false, action = clap::ArgAction::Set)]
    reload_crio: bool,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "DOCKYARD_METRICS_ADDR", default_value = "0.0.0.0:8081")]
    metrics_addr: SocketAddr,
    /// Sync and renew the report at least this often.
    #[arg(long, env = "DOCKYARD_RESYNC_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    resync_seconds: u64,
}

impl NodeAgentArgs {
    fn run(self, log_format: Option<LogFormat>) -> anyhow::Result<()> {
        telemetry::init(log_format.unwrap_or_default(), None);
        let mut layout = crate::agent::Layout::node(self.host_root);
        layout.containerd_config = self.containerd_config;
        layout.containerd_socket = self.containerd_socket;
        layout.state_dir = self.state_dir;
        layout.reload_docker = self.reload_docker;
        layout.reload_crio = self.reload_crio;
        // The chart mounts the node's /run (not the /var/run symlink to it).
        layout.docker_pid_file = "/run/docker.pid".into();
        layout.crio_pid_file = "/run/crio/crio.pid".into();
        let settings = crate::agent::run::Settings {
            node: self.node,
            namespace: self.namespace,
            layout,
            metrics_addr: self.metrics_addr,
            resync: std::time::Duration::from_secs(self.resync_seconds),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(crate::agent::run::run(
            settings,
            crate::serve::shutdown_signal(),
        ))?;
        Ok(())
    }
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

/// The registry's configuration, as `serve` and `garbage-collect` take it.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// distribution (registry:2) config.yml, as in `registry serve config.yml`; REGISTRY_*
    /// environment variables override its keys.
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

impl ConfigArgs {
    /// Loads the configuration and starts logging as it says (unless `--log-format`).
    fn load(self, log_format: Option<LogFormat>) -> anyhow::Result<Config> {
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
        Ok(config)
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
struct GcArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print what would be deleted; delete nothing.
    #[arg(long, short = 'd')]
    dry_run: bool,
    /// Also delete manifests that no tag reaches (nor a tagged index, nor as a referrer of a
    /// kept manifest).
    #[arg(long, short = 'm')]
    delete_untagged: bool,
    /// Keep what was pushed or relied on more recently than this (Go duration; default
    /// storage.maintenance.gc.grace, else 1h). `0s` deletes everything unreferenced, as
    /// registry:2 does: only safe while nothing pushes.
    #[arg(long)]
    grace: Option<String>,
}

#[derive(Debug, Args)]
struct OperatorArgs {
    /// Image the registry pods run; normally the operator's own image (the chart sets it).
    #[arg(long, env = "DOCKYARD_IMAGE")]
    image: String,
    /// Namespace to watch for Registry resources (default: all namespaces).
    #[arg(long, env = "DOCKYARD_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address serving /healthz, /readyz and /metrics.
    #[arg(long, env = "DOCKYARD_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect one leader through a Lease; only the leader runs the controller.
    #[arg(long, env = "DOCKYARD_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "DOCKYARD_LEASE_NAME", default_value = "dockyard-operator")]
    lease_name: String,
    /// The operator's namespace: its leader-election Lease, the node plans and the node
    /// agents' reports live there (the chart passes the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long the Lease stays valid after its holder's last renewal; the longest a standby
    /// waits to take over.
    #[arg(long, env = "DOCKYARD_LEASE_DURATION_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_duration_seconds: u64,
    /// The holder renews the Lease this long before it would expire (below the duration).
    #[arg(long, env = "DOCKYARD_LEASE_GRACE_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3599))]
    lease_grace_seconds: u64,
    /// This instance's name as Lease holder and Event reporter (default: the host name plus a
    /// random suffix).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => args.run(self.log_format),
            Command::Operator(args) => args.run(self.log_format),
            Command::NodeAgent(args) => args.run(self.log_format),
            Command::GarbageCollect(args) => args.run(self.log_format),
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
        let config = self.config.load(log_format)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(crate::serve::run(config, crate::serve::shutdown_signal()))?;
        Ok(())
    }
}

impl GcArgs {
    fn run(self, log_format: Option<LogFormat>) -> anyhow::Result<()> {
        let config = self.config.load(log_format)?;
        let grace = match &self.grace {
            Some(text) => crate::config::parse_go_duration(text)
                .with_context(|| format!("--grace {text:?} is not a duration like 1h or 0s"))?,
            None => config.storage.maintenance.gc.grace()?,
        };
        let options = crate::content::GcOptions {
            dry_run: self.dry_run,
            delete_untagged: self.delete_untagged,
            grace,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let report = runtime.block_on(crate::serve::garbage_collect(&config, &options))?;
        print!("{}", crate::gc::render(&report, &options));
        Ok(())
    }
}

impl OperatorArgs {
    fn run(self, log_format: Option<LogFormat>) -> anyhow::Result<()> {
        use crate::operator::run::{self, LeaderElection, Settings};
        let OperatorArgs {
            image,
            namespace,
            metrics_addr,
            leader_election,
            lease_name,
            lease_namespace,
            lease_duration_seconds,
            lease_grace_seconds,
            identity,
        } = self;
        telemetry::init(log_format.unwrap_or_default(), None);
        let settings = Settings {
            image,
            namespace: namespace.filter(|n| !n.is_empty()),
            metrics_addr,
            identity: run::identity(identity),
            node_namespace: lease_namespace.clone(),
            leader_election: leader_election.then_some(LeaderElection {
                lease_name,
                lease_namespace,
                duration_seconds: lease_duration_seconds,
                grace_seconds: lease_grace_seconds,
            }),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(run::run(settings, crate::serve::shutdown_signal()))?;
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
