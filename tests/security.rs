//! Registry security as users and clients meet it, against a registry that requires htpasswd
//! logins: every route refused without credentials and revealing nothing, access rules and
//! anonymous pull (Dockyard extensions), failed logins limited in cost, connection timeouts and caps, htpasswd reloads,
//! `dockyard htpasswd`, real clients (podman, skopeo, containerd) logging in, and the OCI
//! conformance suite with credentials. `DOCKYARD_TEST_TARGET=distribution` runs them against
//! distribution 2.8.2, which skips the Dockyard extensions with a printed note. TLS is
//! covered by `tests/tls.rs`.

use dockyard_testkit as common;

#[path = "security/access.rs"]
mod access;
#[path = "security/clients.rs"]
mod clients;
#[path = "security/conformance.rs"]
mod conformance;
#[path = "security/connection.rs"]
mod connection;
#[path = "security/fixture.rs"]
mod fixture;
#[path = "security/login.rs"]
mod login;
#[path = "security/routes.rs"]
mod routes;
#[path = "security/timeouts.rs"]
mod timeouts;
#[path = "security/tls_clients.rs"]
mod tls_clients;
