#!/usr/bin/env bash
# lab.sh - a small LAN on one machine for Tally's lab tests (tests/lab) and scripts/bench_discovery.py.
#
# Each host is a Linux network namespace with one interface, eth0 = 10.77.0.<i>/24 (plus IPv6
# link-local), cabled by a veth pair to a bridge that lives in a namespace of its own (the switch).
# The root namespace is not touched (only /run/netns entries appear) and the hosts have no default
# route, so nothing reaches the machine's real network. mDNS works: the bridge floods multicast
# (IGMP snooping off) and each host routes 224.0.0.0/4 out of eth0.
#
# Names: every namespace is prefixed by $TALLY_LAB_PREFIX (default "tally-"): hosts are
# <prefix>h1..<prefix>hN, the switch <prefix>sw. Two labs with different prefixes coexist (their
# addresses may be the same: they are separate segments). tests/lab picks a prefix per test run.
#
# Usage (root; iproute2):
#   lab.sh up N            make hosts 1..N and the switch (repairs what is missing; idempotent)
#   lab.sh down            end every process inside this prefix's namespaces and delete them
#   lab.sh exec I CMD...   run CMD on host I (the cwd and filesystem are shared; use absolute paths)
#   lab.sh cut I           unplug host I's cable: its eth0 loses carrier
#   lab.sh heal I          plug it back in (undoes cut and isolate)
#   lab.sh isolate I       detach host I's port from the switch while its carrier stays up
#                          (a silent partition: the host only sees timeouts)
#   lab.sh status          this prefix's hosts, addresses and switch ports
#   lab.sh prune           take down every lab (any prefix) whose owner process has ended
#                          (leftovers of an interrupted run); live labs are left alone
#
# Env: TALLY_LAB_PREFIX  namespace name prefix ([A-Za-z0-9_.-], at most 40 characters)
#      TALLY_LAB_OWNER   pid whose lifetime the lab is tied to for `prune` (default: the caller, $PPID)
set -euo pipefail

PREFIX=${TALLY_LAB_PREFIX:-tally-}
OWNER=${TALLY_LAB_OWNER:-$PPID}
SUBNET=10.77.0
TAG=tally-lab  # written as the alias of every lab namespace's `lo`: how down/prune recognise ours

fail() { echo "lab.sh: $*" >&2; exit 1; }

[[ "$PREFIX" =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || fail "TALLY_LAB_PREFIX must be 1-40 of [A-Za-z0-9_.-], not '$PREFIX'"
[[ "$OWNER" =~ ^[0-9]+$ ]] || fail "TALLY_LAB_OWNER must be a pid, not '$OWNER'"
SW=${PREFIX}sw

host_ns() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 250 ] || fail "host index must be 1..250, not '${1:-}'"
    echo "${PREFIX}h$1"
}
have_ns() { [ -e "/run/netns/$1" ]; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# A process is identified by pid and start time, so a recycled pid does not keep a dead run's lab alive.
started_at() { [ -r "/proc/$1/stat" ] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20; }
OWNER_ID="$OWNER:$(started_at "$OWNER" || echo 0)"

# Marks a fresh namespace as ours: "tally-lab prefix=P owner=PID:START".
new_ns() {
    local ns=$1
    have_ns "$ns" || ip netns add "$ns"
    ip -n "$ns" link set lo alias "$TAG prefix=$PREFIX owner=$OWNER_ID"
    ip -n "$ns" link set lo up
}

tag_of() { ip -n "$1" -o link show lo 2>/dev/null | sed -n "s/.*alias \($TAG .*\)$/\1/p"; }

# ---- up ----------------------------------------------------------------------------------------

make_switch() {
    new_ns "$SW"
    # the switch has no address of its own: no IPv6 on it means no solicitations or MLD from it
    in_ns "$SW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$SW" link show br0 >/dev/null 2>&1 ||
        ip -n "$SW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$SW" link set br0 up
}

make_host() {
    local i=$1 ns; ns=$(host_ns "$1")
    new_ns "$ns"
    # set before eth0 exists (a new device copies "default"): link-local IPv6 without duplicate
    # address detection, so the address is usable at once; no router solicitations
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
        net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.default.dad_transmits=0 net.ipv6.conf.default.accept_ra=0 \
        net.ipv6.conf.default.router_solicitations=0
    if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
        ip -n "$SW" link del "p$i" 2>/dev/null || true
        ip -n "$SW" link add "p$i" type veth peer name eth0 netns "$ns"
        # a fixed MAC per host keeps packet captures readable
        ip -n "$ns" link set eth0 address "$(printf '02:77:00:00:00:%02x' "$i")"
    fi
    ip -n "$SW" link set "p$i" master br0 up
    ip -n "$ns" addr replace "$SUBNET.$i/24" dev eth0
    ip -n "$ns" link set eth0 multicast on up
    # mDNS tools that do not pick an interface themselves send multicast this way; no default route
    ip -n "$ns" route replace 224.0.0.0/4 dev eth0
}

cmd_up() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] || fail "usage: lab.sh up N"
    host_ns "$1" >/dev/null
    make_switch
    local i
    for ((i = 1; i <= $1; i++)); do make_host "$i"; done
}

# ---- down / prune ------------------------------------------------------------------------------

# TERM each process running in the namespace, then KILL what is left after 2 s.
end_processes() {
    local ns=$1 pids n
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    kill -TERM $pids 2>/dev/null || true
    for ((n = 0; n < 20; n++)); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] || return 0
        sleep 0.1
    done
    kill -KILL $pids 2>/dev/null || true
}

remove_ns() { end_processes "$1"; ip netns del "$1" 2>/dev/null || true; }

lab_namespaces() { ip netns list 2>/dev/null | cut -d' ' -f1; }

cmd_down() {
    local ns
    for ns in $(lab_namespaces); do
        [[ "$(tag_of "$ns")" == "$TAG prefix=$PREFIX "* ]] && remove_ns "$ns"
    done
    return 0
}

owner_alive() {  # "PID:START"
    local pid=${1%%:*} start=${1#*:}
    [ "$(started_at "$pid" || true)" = "$start" ]
}

cmd_prune() {
    local ns tag owner
    for ns in $(lab_namespaces); do
        tag=$(tag_of "$ns")
        [ -n "$tag" ] || continue
        owner=${tag##* owner=}
        if ! owner_alive "$owner"; then
            echo "pruning $ns ($tag)"
            remove_ns "$ns"
        fi
    done
}

# ---- using the lab -----------------------------------------------------------------------------

cmd_exec() {
    local ns; ns=$(host_ns "${1:-}"); shift
    [ $# -gt 0 ] || fail "usage: lab.sh exec I CMD..."
    have_ns "$ns" || fail "$ns does not exist (lab.sh up first)"
    exec ip netns exec "$ns" "$@"
}

cmd_cut() { host_ns "${1:-}" >/dev/null; ip -n "$SW" link set "p$1" down; }
cmd_isolate() { host_ns "${1:-}" >/dev/null; ip -n "$SW" link set "p$1" nomaster; }
cmd_heal() { host_ns "${1:-}" >/dev/null; ip -n "$SW" link set "p$1" master br0 up; }

cmd_status() {
    have_ns "$SW" || { echo "no lab with prefix $PREFIX"; return 0; }
    echo "switch $SW:"
    bridge -n "$SW" link show
    local ns
    for ns in $(lab_namespaces | sort -V); do
        [[ "$ns" =~ ^${PREFIX//./\\.}h[0-9]+$ ]] || continue
        echo "$ns: $(ip -n "$ns" -br addr show dev eth0 | tr -s ' ')"
    done
}

cmd=${1:-}
shift || true
case $cmd in
up | down | exec | cut | heal | isolate | status | prune) ;;
*) sed -n '2,28p' "$0" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || fail "needs root (it creates network namespaces)"
"cmd_$cmd" "$@"
