//! Dockyard: an OCI Distribution v1.1 registry server (a drop-in for registry:2) and,
//! around it, a Kubernetes operator for registries and pull-through mirrors.
//! See docs/architecture.md for the map of modules.

pub mod agent;
pub mod auth;
pub mod cli;
pub mod config;
pub mod content;
mod fsutil;
pub mod gc;
pub mod health;
pub mod metrics;
pub mod oci;
pub mod operator;
pub mod proxy;
pub mod registry;
pub mod serve;
pub mod server;
pub mod storage;
pub mod sys;
pub mod telemetry;
pub mod tls;
pub mod ui;
pub mod watch;
