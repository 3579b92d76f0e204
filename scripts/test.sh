#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and lints, runs the
# unit tests and the integration tests (each in network namespaces it creates), then checks
# that nothing was left behind in this machine's own namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "the integration tests create namespaces: run this as root (sudo $0)" >&2
  exit 1
fi

# Tests read back kernel state with these (the product itself never runs them).
need=()
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v setpriv >/dev/null || need+=(util-linux)
# strace kills weft at chosen system calls in the crash tests.
command -v strace >/dev/null || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

before_links=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | tr '\n' ' ')

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
log=$(mktemp /tmp/weft-test.XXXXXX.log)
status=0
cargo test --all-targets >"$log" 2>&1 || status=$?
grep -E '^(test result|running|error|failures:|---- |SKIPPED)|panicked' "$log" || true
if [ "$status" != 0 ]; then
  echo "== tests failed; full log in $log"
  grep -A40 '^failures:' "$log" | head -200
  exit "$status"
fi

echo "== leftovers in this machine's namespace"
sleep 1
left=0
if ip netns list | grep -q '^wt-'; then
  echo "namespaces left: $(ip netns list | grep '^wt-' | tr '\n' ' ')"; left=1
fi
after_links=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | tr '\n' ' ')
if [ "$before_links" != "$after_links" ]; then
  echo "links changed: before [$before_links] after [$after_links]"; left=1
fi
if nft list tables 2>/dev/null | grep -q weft; then
  echo "nftables tables left: $(nft list tables | grep weft)"; left=1
fi
if ls -d /tmp/wt-* >/dev/null 2>&1; then
  echo "temporary directories left: $(ls -d /tmp/wt-*)"; left=1
fi
if [ "$left" != 0 ]; then
  echo "FAILED: the suite left things behind"
  exit 1
fi
echo "nothing left behind"
