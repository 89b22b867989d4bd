//! Web UI tests: the registry's router with the UI beside it, driven with `oneshot` over
//! the memory driver, asserting statuses, headers and the DOM contract's ids.

#[path = "tests/access.rs"]
mod access;
#[path = "tests/browse.rs"]
mod browse;
#[path = "tests/manage.rs"]
mod manage;
#[path = "tests/mirror.rs"]
mod mirror;
#[path = "tests/probe.rs"]
mod probe;
#[path = "tests/scale.rs"]
mod scale;
#[path = "tests/sessions.rs"]
mod sessions;
#[path = "tests/support.rs"]
mod support;
