//! HTTPS as users meet it: skopeo and curl over TLS with a CA they trust, HTTP/2 by ALPN, the
//! TLS versions served, client certificates required by `clientcas`, and certificate rotation
//! under load (new connections get the new certificate, none fails, a broken replacement is
//! ignored). `DOCKYARD_TEST_TARGET=distribution` runs them against distribution 2.8.2, which
//! skips what it lacks (live reload) with a printed note.

use dockyard_testkit as common;

#[path = "tls/clients.rs"]
mod clients;
#[path = "tls/pki.rs"]
mod pki;
#[path = "tls/rotation.rs"]
mod rotation;
