#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and lints, runs the
# unit tests and the integration tests (each in network namespaces it creates), then checks
# that nothing was left behind in this machine's own namespace. Under sudo everything is built
# as you, with your Rust toolchain (see scripts/lib/toolchain.sh); only the test executables
# run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/toolchain.sh
. scripts/lib/toolchain.sh
if [ "$(id -u)" != 0 ]; then
  echo "the integration tests create namespaces: run this as root (sudo $0)" >&2
  exit 1
fi
weft_prepare_build

# Tests read back kernel state with these (the product itself never runs them).
need=()
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v setpriv >/dev/null || need+=(util-linux)
# strace kills weft at chosen system calls in the crash tests.
command -v strace >/dev/null || need+=(strace)
# Some tests bind and hold sockets with small python3 scripts.
command -v python3 >/dev/null || need+=(python3)
# The cluster store tests start etcd (inside their namespaces); the TLS one makes certificates.
command -v etcd >/dev/null || need+=(etcd-server)
command -v openssl >/dev/null || need+=(openssl)
weft_need_packages "the tests read kernel state back with them" "${need[@]}"
for tool in fmt clippy; do
  if ! weft_cargo "$tool" --version >/dev/null 2>&1; then
    echo "error: cargo $tool is missing; add it (as $WEFT_USER): rustup component add rustfmt clippy" >&2
    exit 1
  fi
done

before_links=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | tr '\n' ' ')
before_forwarding=$(cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding | tr '\n' ' ')
default_state() { for d in /var/lib/weft /run/weft; do [ ! -e "$d" ] || printf '%s ' "$d"; done; }
before_state=$(default_state)

echo "== cargo fmt --check"
weft_cargo fmt --all -- --check
echo "== cargo clippy"
if [ -t 2 ]; then
  weft_cargo clippy --all-targets -- -D warnings
else
  echo "(the first run checks every dependency: a minute or two)"
  weft_cargo clippy --all-targets --quiet -- -D warnings
fi
echo "== cargo test"
log=$(mktemp /tmp/weft-test.XXXXXX.log)
# `cargo test --all-targets`, split: the build as the user (cargo's own progress on a
# terminal), then every test executable it made, as root, one after the other as cargo runs
# them (all of them, also after a failure).
if [ ! -t 2 ]; then
  echo "== building the tests (the first build takes a few minutes)"
fi
if ! weft_cargo test --all-targets --no-run --message-format=json-render-diagnostics >"$log.json"; then
  echo "== the tests do not build"
  exit 1
fi
mapfile -t tests < <(grep -E '"profile":\{[^}]*"test":true' "$log.json" |
  grep -o '"executable":"[^"]*"' | cut -d'"' -f4)
rm -f "$log.json"
if [ ${#tests[@]} -eq 0 ]; then
  echo "== cargo listed no test executables"
  exit 1
fi
status=0
for t in "${tests[@]}"; do
  echo "running ${t#"$PWD"/}" >>"$log"
  "$t" >>"$log" 2>&1 || status=$?
done
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
after_forwarding=$(cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding | tr '\n' ' ')
if [ "$before_forwarding" != "$after_forwarding" ]; then
  echo "forwarding changed (ipv4 ipv6): before [$before_forwarding] after [$after_forwarding]"; left=1
fi
after_state=$(default_state)
if [ "$before_state" != "$after_state" ]; then
  echo "default state directories changed: before [$before_state] after [$after_state]"; left=1
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
