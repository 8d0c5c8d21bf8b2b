#!/bin/bash
# Packets per second through a VIP on the nftables data plane (LVS-DR), with the VIP's
# service among N services (default: 10 and 10000), first and last in the table order
# (the last sits in the last shard: its packets cross every shard's ingress chain
# first). client -> director (netdev ingress: fwd to the real server's MAC) -> real
# server, on one bridge; the rate is what reaches the real server's interface while
# udp-flood sends 64-flow UDP for 5 s. Also the kernel memory our tables take (slab,
# before and after the load). Needs root, nft, a release build
# (cargo build --release --workspace --bins). Own namespaces; cleans up on exit.
#   tests/bench/nft-pps.sh [N...]
set -euo pipefail
bin=$(cd "$(dirname "$0")/../.." && pwd)/target/release
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10 10000)
p=pps$$
cleanup() { for n in sw c d r; do ip netns del "$p$n" 2>/dev/null || true; done; rm -f "/tmp/$p.json"; }
trap cleanup EXIT
for n in sw c d r; do ip netns add "$p$n"; done
ip -n "${p}sw" link add br0 type bridge; ip -n "${p}sw" link set br0 up
attach() { # ns port addr
  ip link add ens33 netns "$p$1" type veth peer name "$2" netns "${p}sw"
  ip -n "${p}sw" link set "$2" master br0; ip -n "${p}sw" link set "$2" up
  ip -n "$p$1" addr add "$3" dev ens33; ip -n "$p$1" link set ens33 up; ip -n "$p$1" link set lo up
}
attach c pc 198.18.116.100/24
attach d pd 198.18.116.130/24
attach r pr 198.18.116.131/24
first=198.18.116.134; last=198.20.0.1
for vip in $first $last; do
  ip -n "${p}r" addr add $vip/32 dev lo
  ip -n "${p}c" route add $vip/32 via 198.18.116.130
done
for kv in all.arp_ignore=1 all.arp_announce=2 lo.arp_ignore=1 lo.arp_announce=2; do
  ip netns exec "${p}r" sysctl -qw net.ipv4.conf.$kv
done
ip netns exec "${p}r" nft add table ip quiet \; add chain ip quiet out '{ type filter hook output priority 0; }' \; add rule ip quiet out icmp type destination-unreachable drop
slab() { ip netns exec "${p}d" true; awk '/^Slab:/ {print $2}' /proc/meminfo; }
table() { # N: the two measured services and N-2 others, DR to the real server
  python3 - "$1" "$first" "$last" > "/tmp/$p.json" <<'PY'
import json, sys
n, first, last = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def svc(addr, proto, port):
    return [{"Inet": {"proto": proto, "addr": addr, "port": port}},
            {"spec": {"sched": "wrr", "persistence": None, "ops": False},
             "dests": [[{"addr": "198.18.116.131", "port": port},
                        {"fwd": "Dr", "weight": 1, "u_thresh": 0, "l_thresh": 0}]]}]
t = [svc(first, "Udp", 9), svc(last, "Udp", 9)]
t += [svc("198.19.%d.%d" % (i // 250, i % 250 + 1), "Tcp", 80) for i in range(max(n - 2, 0))]
print(json.dumps(t))
PY
}
rx() { cat "/sys/class/net/ens33/statistics/rx_packets" 2>/dev/null || ip netns exec "${p}r" cat /sys/class/net/ens33/statistics/rx_packets; }
for n in "${sizes[@]}"; do
  before=$(slab)
  table "$n"
  ip netns exec "${p}d" "$bin/lb-sync" --backend nftables apply "/tmp/$p.json" > /dev/null
  after=$(slab)
  shards=$(ip netns exec "${p}d" nft list tables | grep -c 'netdev hanode')
  echo "BENCH services=$n shards=$shards slab_kib_delta=$((after - before))"
  for vip in $first $last; do
    r0=$(ip netns exec "${p}r" cat /sys/class/net/ens33/statistics/rx_packets)
    out=$(ip netns exec "${p}c" "$bin/udp-flood" "$vip:9" 5 64)
    r1=$(ip netns exec "${p}r" cat /sys/class/net/ens33/statistics/rx_packets)
    sent=$(echo "$out" | awk '{print $2}')
    which=$([ "$vip" = "$first" ] && echo first || echo last)
    echo "BENCH services=$n vip=$which sent_pps=$((sent / 5)) delivered_pps=$(((r1 - r0) / 5))"
  done
  ip netns exec "${p}d" "$bin/lb-sync" --backend nftables teardown
done
