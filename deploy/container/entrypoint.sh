#!/bin/sh
# The container's entrypoint: `sipwall run` on this node's SIP interface, with
# the arguments given to the container (the DaemonSet's: --config FILE
# --metrics ADDR). tests/tests/deploy.rs runs this same script outside a
# container.
#
# The interface: $SIPWALL_IFACE, or else the one that routes to the provider's
# first signalling address (a routing-table lookup; nothing is sent).
#
# Stopping (SIGTERM/SIGINT, as the kubelet sends on every pod restart and
# rolling update) kills sipwall with SIGKILL instead of passing the signal on:
# `sipwall run` detaches on SIGTERM, which would leave the node unfiltered
# until the next pod starts and drop the counters. Killed, it leaves the XDP
# link and the maps pinned, the kernel keeps enforcing the last policy, and
# the next `sipwall run` swaps its program into the pinned link in place. (A
# reload cut short this way leaves only the inactive copy of the policy
# half-written, which the next start rewrites.) SIGHUP is passed on: reload.
set -eu

provider=44.229.228.186
iface=${SIPWALL_IFACE:-}
if [ -z "$iface" ]; then
    iface=$(ip -o route get "$provider" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p')
    if [ -z "$iface" ]; then
        echo "sipwall-entrypoint: no route to the provider ($provider) to pick the interface by; set SIPWALL_IFACE" >&2
        exit 2
    fi
    echo "sipwall-entrypoint: filtering $iface, the interface that routes to $provider (set SIPWALL_IFACE to choose another)" >&2
fi

pid=
stopping=
on_stop() {
    stopping=1
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
}
trap on_stop TERM INT
trap 'if [ -n "$pid" ]; then kill -HUP "$pid" 2>/dev/null || true; fi' HUP

sipwall run -i "$iface" "$@" &
pid=$!
if [ -n "$stopping" ]; then on_stop; fi

while :; do
    status=0
    wait "$pid" || status=$?
    if [ -n "$stopping" ]; then
        wait "$pid" 2>/dev/null || true
        echo "sipwall-entrypoint: stopped; the filter stays on $iface with its pins, for the next start to take over" >&2
        exit 0
    fi
    # `wait` also returns when a trapped SIGHUP arrives; carry on unless
    # sipwall itself has ended.
    if ! kill -0 "$pid" 2>/dev/null; then
        exit "$status"
    fi
done
