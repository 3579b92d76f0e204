#!/usr/bin/env bash
# Builds weft if needed and runs `weft demo`: two networks, sandboxes pinging, isolation and
# outbound NAT, all inside a throwaway network namespace that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "weft creates namespaces and interfaces: run this as root (sudo $0)" >&2
  exit 1
fi
cargo build --release --quiet
exec target/release/weft demo
