#!/bin/bash
# What one nftables change costs in the kernel alone, at N services (default 10000), in
# the nftables backend's table layout: each change is written once with nft, its netlink
# batch captured with strace, then replayed without nft (no cache, no parsing).
# Needs root, nft, strace, python3. Runs in its own namespace; touches nothing else.
#   tests/bench/nft-kernel-floor.sh [N]
set -euo pipefail
n=${1:-10000}
here=$(cd "$(dirname "$0")" && pwd)
ns=hanode-floor-$$
work=$(mktemp -d)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link add veth0 type veth peer name veth1
ip -n "$ns" link set veth0 up
in_ns() { ip netns exec "$ns" "$@"; }
python3 "$here/nft_floor_ruleset.py" "$n" > "$work/full.nft"
start=$(date +%s%N)
in_ns nft -f "$work/full.nft"
echo "full load of $n services x 4 (nft program): $(( ($(date +%s%N) - start) / 1000000 )) ms"

t="netdev hanode_floor"
mid=$((n / 2)); tag=$((mid << 16))
python3 "$here/nft_floor_ruleset.py" --rewrite "$mid" > "$work/chain.nft"
echo "add element $t dst4 { $((tag | 5)) : 198.18.0.5 }" > "$work/element-add.nft"
echo "delete element $t dst4 { $((tag | 5)) }" > "$work/element-delete.nft"
echo "add element $t svc4 { 198.19.255.255 . tcp . 9 : jump svc_$mid }" > "$work/verdict-add.nft"
echo "delete element $t svc4 { 198.19.255.255 . tcp . 9 }" > "$work/verdict-delete.nft"
capture() { in_ns strace -qq -e trace=sendmsg -e write=3 -o "$work/$1.strace" nft -f "$work/$1.nft"; }
timed() {
  local start; start=$(date +%s%N)
  in_ns nft -f "$work/$1.nft"
  echo "  nft program ($1: start, cache, parse, commit): $(( ($(date +%s%N) - start) / 1000000 )) ms"
}
echo "a service chain rewritten (flush + 4 rules: what a slot-count change does):"
timed chain
capture chain
echo "  kernel alone, replayed: $(in_ns python3 "$here/nft_floor_replay.py" 20 "$work/chain.strace")"
for kind in element verdict; do
  case $kind in
    element) echo "one element of a data map (dst4) added and deleted:";;
    verdict) echo "one verdict element of the service map (a service entry) added and deleted:";;
  esac
  timed $kind-add
  capture $kind-delete
  capture $kind-add
  in_ns python3 "$here/nft_floor_replay.py" 20 "$work/$kind-delete.strace" "$work/$kind-add.strace" | sed 's/^/  kernel alone, replayed: /'
done
