#!/usr/bin/env bash
# Scenario S1 (shared/scenarios.md), runnable: a client network reached only through the
# default route, a TCP session from it to the host, and weft allocating networks on the host
# over and over without ever capturing the client's range. Everything happens in namespaces
# this script makes; it removes them on exit.
#
#   client (172.22.5.10/24) ── router (172.22.5.1 | 172.42.10.1) ── host (172.42.10.112/24)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
# .cargo/config.toml names the build target explicitly: target/<tuple>/release/.
# shellcheck source=../scripts/lib/toolchain.sh
source scripts/lib/toolchain.sh
WEFT=$PWD/$(weft_release_binary)
tag=s1ex$$
dir=$(mktemp -d)
cleanup() {
  set +e
  [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null
  for n in $(seq 0 7); do weft network rm "n$n" >/dev/null 2>&1; done
  for ns in client router host; do ip netns del "$tag-$ns" 2>/dev/null; done
  umount -l "$dir/run/netns" 2>/dev/null; rm -rf "$dir"
}
trap cleanup EXIT
weft() { nsenter --net=/run/netns/$tag-host "$WEFT" --state-dir "$dir/state" --run-dir "$dir/run" --config "$dir/weft.toml" "$@"; }

for ns in client router host; do ip netns add "$tag-$ns"; ip -n "$tag-$ns" link set lo up; done
ip -n $tag-client link add eth0 type veth peer name c0 netns $tag-router
ip -n $tag-router link add h0 type veth peer name eno8303 netns $tag-host
ip -n $tag-client addr add 172.22.5.10/24 dev eth0; ip -n $tag-client link set eth0 up
ip -n $tag-router addr add 172.22.5.1/24 dev c0; ip -n $tag-router link set c0 up
ip -n $tag-router addr add 172.42.10.1/24 dev h0; ip -n $tag-router link set h0 up
ip -n $tag-host addr add 172.42.10.112/24 dev eno8303; ip -n $tag-host link set eno8303 up
ip netns exec $tag-router sysctl -qw net.ipv4.ip_forward=1
ip -n $tag-client route add default via 172.22.5.1
ip -n $tag-host route add default via 172.42.10.1

echo "# a service on the host, and a client that keeps a TCP connection to it"
nsenter --net=/run/netns/$tag-host "$WEFT" tool serve 172.42.10.112:22 --count 9 --timeout 60 --hold 30 >/dev/null &
srv=$!
sleep 0.3
# A long-lived connection from the client, as the developers' SSH sessions in S1.
nsenter --net=/run/netns/$tag-client python3 -c '
import socket, time
s = socket.create_connection(("172.42.10.112", 22)); s.recv(100); time.sleep(30)' &
sleep 0.5

echo "# eight networks in a row; Docker would have handed out 172.22.0.0/16 as the sixth"
for n in $(seq 0 7); do weft network create "n$n" >/dev/null; done
weft network ls
echo
echo "# why n5 did not get 172.22.0.0/16"
weft network inspect n5 | grep -E 'skipped 172.22|subnet'
echo
echo "# the client still reaches the host"
nsenter --net=/run/netns/$tag-client "$WEFT" tool connect 172.42.10.112:22 --timeout 2 | head -1
echo
echo "# and an explicit --subnet over the client is refused, naming it"
weft network create bad --subnet 172.22.0.0/16 || true
