"""Prints an nft script: the nftables backend's DR table layout (see
actors/src/lb/nft/render.rs) with N services of 4 destinations each, written by hand so
that the kernel's cost can be measured apart from hanode and libnftables.
`--rewrite K` prints instead the rewrite of service K's chain for 5 slots (what a
slot-count change does).
Usage: nft_floor_ruleset.py N | nft_floor_ruleset.py --rewrite K"""
import sys

t = "netdev hanode_floor"
out = [
    f"add table {t}",
    f"add map {t} svc4 {{ typeof ip daddr . meta l4proto . th dport : verdict; }}",
    f"add map {t} slots {{ typeof meta mark : meta mark; }}",
    f"add map {t} dst4 {{ typeof meta mark : ip daddr; }}",
    f"add map {t} flows4 {{ typeof ip saddr . th sport . meta mark : meta mark; flags dynamic,timeout; timeout 900s; size 16777216; }}",
    f"add chain {t} conn4",
    f"add chain {t} pick",
    f"add chain {t} fwd4",
    f"add rule {t} conn4 meta mark set ip saddr . th sport . meta mark map @flows4",
    f"add rule {t} pick meta mark & 0x8000 != 0 meta mark set meta mark map @slots",
    f'add rule {t} fwd4 fwd ip to meta mark map @dst4 device "veth0"',
    f'add chain {t} ingress {{ type filter hook ingress devices = {{ "veth0" }} priority -500; policy accept; }}',
    f"add rule {t} ingress ip daddr . meta l4proto . th dport vmap @svc4",
]


def service_rules(i, slots):
    tag = i << 16
    return [
        f"meta mark set {tag} jump conn4",
        f"meta mark {tag} meta mark set numgen inc mod {slots} offset {tag | 0x8000} jump pick",
        f"meta mark != {tag} update @flows4 {{ ip saddr . th sport . ( meta mark & 0xffff0000 ) timeout 900s : meta mark }} jump fwd4",
        "drop",
    ]


if sys.argv[1] == "--rewrite":
    k = int(sys.argv[2])
    print(f"flush chain {t} svc_{k}")
    print("\n".join(f"add rule {t} svc_{k} {r}" for r in service_rules(k, 5)))
    sys.exit()

for i in range(1, int(sys.argv[1]) + 1):
    tag = i << 16
    out.append(f"add chain {t} svc_{i}")
    out += [f"add rule {t} svc_{i} {r}" for r in service_rules(i, 4)]
    out.append(f"add element {t} svc4 {{ 198.19.{(i >> 8) % 256}.{i % 256} . tcp . {1000 + i % 30000} : jump svc_{i} }}")
    out.append(f"add element {t} slots {{ " + ", ".join(f"{tag | 0x8000 | s} : {tag | s + 1}" for s in range(4)) + " }")
    out.append(f"add element {t} dst4 {{ " + ", ".join(f"{tag | s + 1} : 198.18.0.{s + 1}" for s in range(4)) + " }")
print("\n".join(out))
