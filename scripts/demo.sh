#!/usr/bin/env bash
# Builds weft if needed and runs `weft demo`: an office subnet weft skips (and says why), two
# networks, sandboxes pinging, isolation, outbound NAT, a published port and a repair, all
# inside throwaway network namespaces that are removed afterwards (also on Ctrl-C).
# Under sudo the build runs as you, with your Rust toolchain (see scripts/lib/toolchain.sh);
# only the demo itself runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/toolchain.sh
. scripts/lib/toolchain.sh
if [ "$(id -u)" != 0 ]; then
  echo "weft creates namespaces and interfaces: run this as root (sudo $0)" >&2
  exit 1
fi
weft_prepare_build
weft_build_release
exec "$(weft_release_binary)" demo
