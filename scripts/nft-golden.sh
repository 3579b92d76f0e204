#!/bin/bash
# Captures what nft sends (`nft --debug=mnl`) for statements equivalent to the expressions and
# objects weft's nf_tables encoder emits, in a scratch network namespace deleted at the end.
# Prints, per statement, `## <nft command>` and `<NFT_MSG_*> <family> <attributes in hex>`;
# src/adapters/nftables/golden_data.rs holds that output and golden.rs compares weft's bytes
# with it. Run as root with nftables installed (scripts/test.sh installs it).
set -e
NS=wt-golden-$$
ip netns add $NS
trap "ip netns del $NS" EXIT
n() { ip netns exec $NS nft "$@"; }
n -f - <<'NFT'
table inet t {
  set bridges { type ifname; }
  set pairs { type ifname . ifname; }
  set masq4 { type ipv4_addr; flags interval; }
  set local4 { type ipv4_addr . ipv4_addr; flags interval; }
  map dnat4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
  map dnat4any { type inet_proto . inet_service : ipv4_addr . inet_service; }
  chain user { }
  chain c { type filter hook forward priority 0; }
  chain raw { type filter hook prerouting priority -300; }
  chain pre { type nat hook prerouting priority -100; }
  chain post { type nat hook postrouting priority 100; }
}
table bridge t {
  set src4 { type ifname . ether_addr . ipv4_addr; }
  set src6 { type ifname . ether_addr . ipv6_addr; }
  set ports { type ifname; }
  chain x { }
  chain c { type filter hook prerouting priority -300; }
  chain in { type filter hook input priority -300; }
}
NFT
cap() {
  local label="$1"; shift
  echo "## $label"
  ip netns exec $NS nft --debug=mnl "$@" 2>&1 | python3 "$(dirname "$0")/nft-golden.py" | awk '$1==0||$1==3||$1==6||$1==9||$1==12'
}
cap "add rule inet t c iifname \"br0\" accept" add rule inet t c iifname '"br0"' accept
cap "add rule bridge t c iifname != \"wv*\" return" add rule bridge t c iifname != '"wv*"' return
cap "add rule inet t c iifname @bridges drop" add rule inet t c iifname @bridges drop
cap "add rule inet t c iifname != @bridges return" add rule inet t c iifname != @bridges return
cap "add rule inet t c iifname . oifname @pairs accept" add rule inet t c iifname . oifname @pairs accept
cap "add rule inet t c ct state established,related accept" add rule inet t c ct state established,related accept
cap "add rule inet t c ct status dnat accept" add rule inet t c ct status dnat accept
cap "add rule inet t post ip saddr @masq4 masquerade" add rule inet t post ip saddr @masq4 masquerade
cap "add rule inet t c ip daddr 127.0.0.0/8 return" add rule inet t c ip daddr 127.0.0.0/8 return
cap "add rule inet t c ip daddr & 255.0.0.0 == 127.0.0.0 return" add rule inet t c ip daddr '&' 255.0.0.0 == 127.0.0.0 return
cap "add rule inet t raw ip saddr . ip daddr @local4 notrack" add rule inet t raw ip saddr . ip daddr @local4 notrack
cap "add rule inet t pre fib daddr type local dnat ip to meta l4proto . th dport map @dnat4any" add rule inet t pre fib daddr type local dnat ip to meta l4proto . th dport map @dnat4any
cap "add rule inet t pre dnat ip to ip daddr . meta l4proto . th dport map @dnat4" add rule inet t pre dnat ip to ip daddr . meta l4proto . th dport map @dnat4
cap "add rule inet t c jump user" add rule inet t c jump user
cap "add rule bridge t c goto x" add rule bridge t c goto x
cap "add rule bridge t c ether type ip6 drop" add rule bridge t c ether type ip6 drop
cap "add rule bridge t x iifname . ether saddr . ip saddr != @src4 drop" add rule bridge t x iifname . ether saddr . ip saddr != @src4 drop
cap "add rule bridge t x iifname . ether saddr . ip6 saddr != @src6 drop" add rule bridge t x iifname . ether saddr . ip6 saddr != @src6 drop
cap "add rule bridge t x iifname . arp saddr ether . arp saddr ip != @src4 drop" add rule bridge t x iifname . arp saddr ether . arp saddr ip != @src4 drop
cap "add rule bridge t x meta l4proto ipv6-icmp @th,0,8 0x86 drop" add rule bridge t x meta l4proto ipv6-icmp @th,0,8 0x86 drop
cap "add rule bridge t x @th,192,16 != 0x0201 drop" add rule bridge t x @th,192,16 != 0x0201 drop
cap "add table bridge w { comment \"weft:0a1b2c3d /var/lib/weft\" }" add table bridge w '{ comment "weft:0a1b2c3d /var/lib/weft" ; }'
cap "add chain bridge t pre { type filter hook prerouting priority -300; policy accept; }" add chain bridge t pre '{ type filter hook prerouting priority -300; policy accept; }'
cap "add set bridge t g4 { type ifname . ether_addr . ipv4_addr; }" add set bridge t g4 '{ type ifname . ether_addr . ipv4_addr; }'
ip netns exec $NS nft add set bridge t e4 '{ type ifname . ether_addr . ipv4_addr; }'
cap "add element bridge t e4 { \"wv1\" . 02:42:0a:00:00:02 . 10.0.0.2 }" add element bridge t e4 '{ "wv1" . 02:42:0a:00:00:02 . 10.0.0.2 }'
cap "add rule bridge t in ether daddr & ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00 iifname @ports drop" add rule bridge t in ether daddr '&' ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00 iifname @ports drop
cap "add rule bridge t x ip6 nexthdr != 58 drop" add rule bridge t x ip6 nexthdr != 58 drop
cap "add rule bridge t x ip6 length 24 accept" add rule bridge t x ip6 length 24 accept
cap "add chain bridge t i { type filter hook input priority -300; policy accept; }" add chain bridge t i '{ type filter hook input priority -300; policy accept; }'
