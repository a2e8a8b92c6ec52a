#!/usr/bin/env bash
# Runs every Basalt test: formatting, lints, unit, cluster and image tests.
# Installs what the tests need first (idempotent), so a fresh machine works.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --profile ci
