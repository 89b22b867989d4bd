#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (tests/setup.sh: Debian packages, Go-built tools, kubectl/helm), checks formatting
# and lints, then runs every unit, API and black-box test with real clients.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh
export PATH="$PWD/.tools/bin:$PATH"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked
