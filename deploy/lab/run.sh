#!/usr/bin/env bash
# The seed's lab, for real: two directors (lvs01, lvs02) and a Raft witness, two real
# servers and a client in network namespaces on 198.18.116.0/24 (the seed's
# 192.168.116/24, mapped), configured from the seed's own keepalived files through
# `hactl import` + `hactl propose`, then the seed's tests with curl. Prints one row per
# step (PASS/FAIL, measured time) and tears everything down on exit, even on failure or
# Ctrl-C.
#
#   deploy/lab/run.sh [--bin-dir DIR] [--acceptance]
#
# Without --bin-dir it builds the project (release) first. --acceptance adds the steps
# the end-to-end test checks beyond the seed's (removing a real server through Raft, kill -9
# of the director holding the VIP, the config fence). Needs root, iproute2, nftables, curl.
# Exit status: 0 when every step passes.
set -uo pipefail
# `grep -q` in a pipeline under pipefail can fail on a match: it exits at the first match,
# and a writer that prints line by line (ip does) then dies of SIGPIPE. This reads it all.
has_line() { grep "$@" >/dev/null; }
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=""
ACCEPTANCE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN=$(cd "$2" && pwd); shift 2 ;;
        --acceptance) ACCEPTANCE=1; shift ;;
        *) echo "usage: $0 [--bin-dir DIR] [--acceptance]" >&2; exit 2 ;;
    esac
done
if [ -z "$BIN" ]; then
    echo "building (cargo build --release --bins)..."
    cargo build --release --workspace --bins -q || exit 2
    BIN="$ROOT/target/release"
fi
for b in hanode hactl tiny-web; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b" >&2; exit 2; }
done

P="halab$$"                       # namespace prefix: unique per run
NS=(sw client lvs01 lvs02 witness rs01 rs02)
WORK=$(mktemp -d /tmp/halab.XXXXXX)
NET=198.18.116
VIP=$NET.134
declare -A ADDR=([client]=100 [lvs01]=130 [lvs02]=135 [witness]=137 [rs01]=131 [rs02]=132)

cleanup() {
    trap - EXIT INT TERM
    for n in "${NS[@]}"; do
        for pid in $(ip netns pids "$P-$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    done
    sleep 0.2
    for n in "${NS[@]}"; do ip netns del "$P-$n" 2>/dev/null; done
    if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

in_ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }
now_ms() { date +%s%3N; }
fail_setup() { echo "lab setup failed: $*" >&2; KEEP_LOGS=1; exit 2; }

# ---- topology -----------------------------------------------------------------------
for n in "${NS[@]}"; do ip netns add "$P-$n" || fail_setup "netns $n"; ip -n "$P-$n" link set lo up; done
ip -n "$P-sw" link add br0 type bridge && ip -n "$P-sw" link set br0 up || fail_setup bridge
for n in client lvs01 lvs02 witness rs01 rs02; do
    ip link add ens33 netns "$P-$n" type veth peer name "p-$n" netns "$P-sw" || fail_setup "veth $n"
    ip -n "$P-sw" link set "p-$n" master br0 up
    ip -n "$P-$n" addr add "$NET.${ADDR[$n]}/24" dev ens33
    ip -n "$P-$n" link set ens33 up
done
for n in lvs01 lvs02; do
    in_ns $n sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.ens33.send_redirects=0
done
for n in rs01 rs02; do
    # LVS-DR real servers: the VIP on lo, never answering ARP for it.
    ip -n "$P-$n" addr add "$VIP/32" dev lo
    in_ns $n sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
        net.ipv4.conf.lo.arp_ignore=1 net.ipv4.conf.lo.arp_announce=2
done
start_web() { in_ns "$1" "$BIN/tiny-web" 0.0.0.0:80 "this is ${1^^}" >"$WORK/web-$1.log" 2>&1 & }
stop_web() { for pid in $(ip netns pids "$P-$1"); do kill -9 "$pid" 2>/dev/null; done; }
start_web rs01; start_web rs02

# ---- configuration: the seed's two files, addresses mapped, merged -------------------
SEED="$ROOT/deploy/lab/seed"
for f in lvs01-master lvs02-backup; do
    sed "s/192\.168\.116\./$NET./g" "$SEED/keepalived.$f.conf" >"$WORK/$f.conf"
done
"$BIN/hactl" import --node "lvs01=$WORK/lvs01-master.conf" --node "lvs02=$WORK/lvs02-backup.conf" \
    -o "$WORK/cluster.conf" >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log"; fail_setup "hactl import"; }

# ---- certificates: a lab CA, one certificate per director, one for the operator ------
PKI="$WORK/pki"
"$BIN/hactl" cert init --dir "$PKI" --name "halab CA" >"$WORK/pki.log" 2>&1 || { cat "$WORK/pki.log"; fail_setup "hactl cert init"; }
for n in lvs01 lvs02 witness; do
    "$BIN/hactl" cert issue --dir "$PKI" --node "$n" --ip "$NET.${ADDR[$n]}" >>"$WORK/pki.log" 2>&1 \
        || { cat "$WORK/pki.log"; fail_setup "hactl cert issue --node $n"; }
done
"$BIN/hactl" cert issue --dir "$PKI" --client lab --role operator >>"$WORK/pki.log" 2>&1 \
    || { cat "$WORK/pki.log"; fail_setup "hactl cert issue --client lab"; }

# ---- directors: Raft and the admin API over mutual TLS ---------------------------------
start_node() {  # name extra-args...
    local n=$1; shift
    in_ns "$n" env RUST_LOG=info,openraft=warn "$BIN/hanode" --name "$n" --data-dir "$WORK/$n" \
        --listen "$NET.${ADDR[$n]}:7101" --tls-ca "$PKI/ca.pem" --tls-cert "$PKI/$n.pem" --tls-key "$PKI/$n.key" \
        "$@" >"$WORK/$n.log" 2>&1 &
}
# The operator's credentials, for hactl and curl.
OPS=(--cacert "$PKI/ca.pem" --cert "$PKI/lab.pem" --key "$PKI/lab.key")
HOOKS=()
[ -n "$ACCEPTANCE" ] && HOOKS=(--test-hooks)
start_node lvs01 --bootstrap --dataplane "${DATAPLANE:-auto}" "${HOOKS[@]}"
sleep 1
start_node lvs02 --join "$NET.130:7101" --dataplane "${DATAPLANE:-auto}" "${HOOKS[@]}"
start_node witness --join "$NET.130:7101" --control-plane-only
CLUSTER="$NET.130:7101,$NET.135:7101,$NET.137:7101"
hactl() { in_ns witness "$BIN/hactl" --cluster "$CLUSTER" --ca "$PKI/ca.pem" --cert "$PKI/lab.pem" --key "$PKI/lab.key" "$@"; }

wait_until() {  # seconds command...: poll every 100 ms
    local limit=$1; shift
    local end=$(( $(now_ms) + limit * 1000 ))
    while [ "$(now_ms)" -lt "$end" ]; do "$@" && return 0; sleep 0.1; done
    return 1
}
voters3() { hactl cluster members 2>/dev/null | grep -c voter | has_line '^3$'; }
wait_until 60 voters3 || fail_setup "the three directors did not form a cluster (logs: $WORK)"

# ---- the tests ------------------------------------------------------------------------
ROWS=()
FAILED=0
row() {  # step result ms detail
    ROWS+=("$(printf '%-4s %-58s %-5s %8s  %s' "$1" "$2" "$3" "$4" "$5")")
    printf '%-4s %-58s %-5s %8s  %s\n' "$1" "$2" "$3" "$4" "$5"
    [ "$3" = PASS ] || FAILED=1
}
curl_vip() { in_ns client curl -s -m 1 "http://$VIP/" 2>/dev/null; }
# N answers in a row, newline separated.
answers() { local i; for i in $(seq "$1"); do curl_vip || echo "(no answer)"; done; }
alternates() {  # the last 4 answers alternate between RS01 and RS02
    local a; a=$(answers 4)
    [ "$(echo "$a" | grep -c '^this is RS0[12]$')" = 4 ] || return 1
    [ "$(echo "$a" | uniq | wc -l)" = 4 ]
}
only_rs02() { [ "$(answers 4 | sort -u)" = "this is RS02" ]; }
vip_on() { ip -n "$P-$1" -o addr show dev ens33 | has_line " $VIP/"; }
table_has() {  # node pattern
    hactl table --node "$1" 2>/dev/null | has_line "$2"
}

echo
echo "seed lab: client .100, lvs01 .130, lvs02 .135, rs01 .131, rs02 .132, VIP .134, witness .137"
printf '%-4s %-58s %-5s %8s  %s\n' STEP WHAT RESULT MS DETAIL

t0=$(now_ms)
hactl propose -f "$WORK/cluster.conf" --reason "seed import (lvs01, lvs02)" --author lab >"$WORK/propose1.log" 2>&1 \
    || { cat "$WORK/propose1.log"; fail_setup "hactl propose"; }
if wait_until 30 alternates; then
    row 1 "curl alternates RS01/RS02 (from propose)" PASS $(( $(now_ms) - t0 )) "$(answers 4 | tr '\n' ' ')"
else
    row 1 "curl alternates RS01/RS02 (from propose)" FAIL $(( $(now_ms) - t0 )) "$(answers 4 | tr '\n' ' ')"
fi
vip_on lvs01 || row 1b "VIP on lvs01 (MASTER)" FAIL 0 "VIP not on lvs01"

# Worst case for the seed's HTTP_GET: delay_loop 6 + 3 tries x (connect_timeout 3 +
# delay_before_retry 3).
t0=$(now_ms); stop_web rs01
if wait_until 40 only_rs02; then
    row 2 "rs01 web server stopped -> only RS02" PASS $(( $(now_ms) - t0 )) "checker worst case 24000 ms"
else
    row 2 "rs01 web server stopped -> only RS02" FAIL $(( $(now_ms) - t0 )) "$(answers 4 | tr '\n' ' ')"
fi

t0=$(now_ms); start_web rs01
if wait_until 30 alternates; then
    row 3 "rs01 web server started -> alternation again" PASS $(( $(now_ms) - t0 )) "$(answers 4 | tr '\n' ' ')"
else
    row 3 "rs01 web server started -> alternation again" FAIL $(( $(now_ms) - t0 )) "$(answers 4 | tr '\n' ' ')"
fi

t0=$(now_ms); ip -n "$P-lvs01" link set ens33 down
if wait_until 15 vip_on lvs02 && wait_until 10 alternates; then
    row 4 "lvs01 ens33 down -> VIP on lvs02, curl answers" PASS $(( $(now_ms) - t0 )) "$(answers 2 | tr '\n' ' ')"
else
    row 4 "lvs01 ens33 down -> VIP on lvs02, curl answers" FAIL $(( $(now_ms) - t0 )) "VIP on lvs02: $(vip_on lvs02 && echo yes || echo no)"
fi

t0=$(now_ms); ip -n "$P-lvs01" link set ens33 up
back() { vip_on lvs01 && ! vip_on lvs02; }
if wait_until 20 back && wait_until 10 alternates; then
    row 5 "lvs01 ens33 up -> VIP back on lvs01 (preempt)" PASS $(( $(now_ms) - t0 )) "$(answers 2 | tr '\n' ' ')"
else
    row 5 "lvs01 ens33 up -> VIP back on lvs01 (preempt)" FAIL $(( $(now_ms) - t0 )) "VIP on lvs01: $(vip_on lvs01 && echo yes || echo no)"
fi

# A weight change through Raft: both directors' tables change, at the same version.
t0=$(now_ms)
awk -v rs="real_server $NET.131 80" '
    index($0, rs) { inside = 1 }
    inside && $1 == "weight" { sub(/weight 1/, "weight 2"); inside = 0 }
    { print }' "$WORK/cluster.conf" >"$WORK/cluster2.conf"
hactl propose -f "$WORK/cluster2.conf" --reason "rs01 weight 2" --author lab >"$WORK/propose2.log" 2>&1
VERSION=$(hactl status --format json 2>/dev/null | grep -o '"version": [0-9]*' | head -1 | grep -o '[0-9]*$')
both() {
    for n in lvs01 lvs02; do
        hactl table --node $n 2>/dev/null | grep -Eq "$NET\.131:80 +Route +2 " || return 1
        hactl table --node $n 2>/dev/null | has_line "table at config version $VERSION)" || return 1
    done
}
if wait_until 20 both; then
    row 6 "propose rs01 weight 2 -> both tables, version $VERSION" PASS $(( $(now_ms) - t0 )) "$(hactl table --node lvs02 | grep 131:80 | tr -s ' ')"
else
    row 6 "propose rs01 weight 2 -> both tables, version $VERSION" FAIL $(( $(now_ms) - t0 )) "$(cat "$WORK/propose2.log" | tail -2 | tr '\n' ' ')"
fi

# How long the fence was held on lvs01 for that proposal (its table catching up): the
# delay a takeover at that moment would have had.
ts() { date -d "$(echo "$1" | awk '{print $1}')" +%s%3N 2>/dev/null; }
held=$(grep "config fence held" "$WORK/lvs01.log" | tail -1)
lifted=$(grep "config fence lifted" "$WORK/lvs01.log" | tail -1)
if [ -n "$held" ] && [ -n "$lifted" ]; then
    echo "     (config fence on lvs01 for version $VERSION: held $(( $(ts "$lifted") - $(ts "$held") )) ms while its table caught up)"
fi

if [ -n "$ACCEPTANCE" ]; then
    # 7: a proposal removing RS01 while the VIP is on lvs01.
    t0=$(now_ms)
    awk -v rs="real_server $NET.131 80" '
        index($0, rs) { skip = 1; depth = 0 }
        skip { n = gsub(/\{/, "{"); m = gsub(/\}/, "}"); depth += n - m; if (depth <= 0 && (n + m) > 0) skip = 0; next }
        { print }' "$WORK/cluster2.conf" >"$WORK/cluster3.conf"
    hactl propose -f "$WORK/cluster3.conf" --reason "remove rs01" --author lab >"$WORK/propose3.log" 2>&1
    V7=$(hactl status --format json 2>/dev/null | grep -o '"version": [0-9]*' | head -1 | grep -o '[0-9]*$')
    gone() {
        for n in lvs01 lvs02; do
            local t; t=$(hactl table --node $n 2>/dev/null) || return 1
            echo "$t" | has_line "$NET\.131:80" && return 1
            echo "$t" | has_line "table at config version $V7)" || return 1
        done
    }
    if vip_on lvs01 && wait_until 20 gone && wait_until 5 only_rs02; then
        row 7 "propose without rs01 -> both tables lose it, version $V7" PASS $(( $(now_ms) - t0 )) "$(answers 2 | tr '\n' ' ')"
    else
        row 7 "propose without rs01 -> both tables lose it, version $V7" FAIL $(( $(now_ms) - t0 )) "$(tail -2 "$WORK/propose3.log" | tr '\n' ' ')"
    fi

    # 8: kill -9 of the hanode holding the VIP.
    t0=$(now_ms)
    for pid in $(ip netns pids "$P-lvs01"); do kill -9 "$pid"; done
    equal_table() { hactl table --node lvs02 2>/dev/null | has_line "(equal to the desired table)" &&
        hactl table --node lvs02 2>/dev/null | has_line "table at config version $V7)"; }
    # lvs02 learns of the death from the refused transport connection (fast path): it
    # takes over after Skew_Time, not after the 3 s master-down timer.
    fast_path() { grep "to=MASTER" "$WORK/lvs02.log" | tail -1 | has_line "director process is gone"; }
    if wait_until 15 vip_on lvs02 && t8=$(( $(now_ms) - t0 )) && fast_path &&
        wait_until 10 equal_table && wait_until 5 only_rs02; then
        row 8 "kill -9 hanode on lvs01 -> VIP on lvs02, table = committed" PASS $(( $(now_ms) - t0 )) "VIP after $t8 ms (fast path), version $V7"
    else
        row 8 "kill -9 hanode on lvs01 -> VIP on lvs02, table = committed" FAIL $(( $(now_ms) - t0 )) "VIP on lvs02: $(vip_on lvs02 && echo yes || echo no); lvs02: $(grep "to=MASTER" "$WORK/lvs02.log" | tail -1 | grep -o 'reason=.*priority' )"
    fi

    # 9: the fence. RS01 comes back while lvs01 is down; lvs01 restarts with its data
    # plane held at the old version: it must not preempt until its table has caught up.
    hactl propose -f "$WORK/cluster2.conf" --reason "rs01 back" --author lab >"$WORK/propose4.log" 2>&1
    start_node lvs01 --dataplane "${DATAPLANE:-auto}" --test-hooks --test-hold-table "$V7"
    fenced() { hactl status --format json 2>/dev/null | has_line '"held_by_fence": true'; }
    t0=$(now_ms)
    ok=1
    why=""
    wait_until 20 fenced || { ok=0; why="lvs01 never held a claim at the fence"; }
    # Well past lvs01's preemption time (3 x advert + skew): still not master.
    sleep 5
    if [ $ok = 1 ] && ! { vip_on lvs02 && ! vip_on lvs01; }; then
        ok=0
        why="while held: VIP on lvs02 $(vip_on lvs02 && echo yes || echo no), on lvs01 $(vip_on lvs01 && echo yes || echo no)"
    fi
    t1=$(now_ms)
    in_ns witness curl -s "${OPS[@]}" -X POST -d '{"version": null}' "https://$NET.130:7101/v1/debug/hold-table" >/dev/null
    if [ $ok = 1 ] && wait_until 15 back && wait_until 10 alternates; then
        row 9 "fence: lvs01 table held -> no preempt; released -> VIP" PASS $(( $(now_ms) - t1 )) "held $(( t1 - t0 )) ms without preempting"
    else
        row 9 "fence: lvs01 table held -> no preempt; released -> VIP" FAIL $(( $(now_ms) - t1 )) "${why:-after release: VIP on lvs01 $(vip_on lvs01 && echo yes || echo no)}"
    fi

    # 10: a VRRP change through Raft is applied per instance: a new instance starts,
    # VI_1 (unchanged) keeps running as MASTER, without a transition.
    t0=$(now_ms)
    vi1_before=$(grep "VRRP transition" "$WORK/lvs01.log" | grep -c "VI_1")
    { cat "$WORK/cluster2.conf"; cat <<EOF2
vrrp_instance VI_2 {
    state BACKUP
    interface ens33
    virtual_router_id 52
    @lvs01 priority 100
    @lvs02 priority 90
    advert_int 1
    virtual_ipaddress {
        $NET.140/24 dev ens33
    }
}
EOF2
    } >"$WORK/cluster5.conf"
    hactl propose -f "$WORK/cluster5.conf" --reason "second VRRP instance" --author lab >"$WORK/propose5.log" 2>&1
    vi2_up() { ip -n "$P-lvs01" -o addr show dev ens33 | has_line " $NET.140/"; }
    reconfigured() { grep "VRRP reconfigured" "$WORK/lvs01.log" | has_line "kept VI_1, started VI_2"; }
    if wait_until 15 vi2_up && reconfigured && vip_on lvs01 && ! vip_on lvs02 \
        && [ "$(grep "VRRP transition" "$WORK/lvs01.log" | grep -c "VI_1")" = "$vi1_before" ]; then
        row 10 "propose VI_2 -> VI_2 starts, VI_1 stays MASTER untouched" PASS $(( $(now_ms) - t0 )) "$(grep "VRRP reconfigured" "$WORK/lvs01.log" | tail -1 | sed 's/.*VRRP reconfigured: //')"
    else
        row 10 "propose VI_2 -> VI_2 starts, VI_1 stays MASTER untouched" FAIL $(( $(now_ms) - t0 )) "VI_2 up: $(vi2_up && echo yes || echo no); $(tail -2 "$WORK/propose5.log" | tr '\n' ' ')"
    fi
fi

echo
hactl status || true
echo
echo "events (hactl events, last 30):"
hactl events 2>/dev/null | tail -30 || true
echo
if [ "$FAILED" != 0 ]; then
    # The logs stay on this machine; a CI run shows only what is printed.
    for n in lvs01 lvs02; do
        echo "$n.log (last 40 lines, without checker and Raft chatter):"
        grep -v "check transition\|openraft" "$WORK/$n.log" | tail -40 | cut -c1-240
        echo
    done
fi
if [ "$FAILED" = 0 ]; then echo "ALL STEPS PASS"; else echo "SOME STEPS FAILED (logs kept)"; KEEP_LOGS=1; fi
exit "$FAILED"
