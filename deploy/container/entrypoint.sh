#!/bin/sh
# The container's entrypoint: `sipwall run --keep-attached` on this node's SIP
# interface, with the arguments given to the container (the DaemonSet's:
# --config FILE --metrics ADDR). tests/tests/deploy.rs runs this same script
# outside a container.
#
# The interface: $SIPWALL_IFACE, or else the one that routes to the provider's
# first signalling address (a routing-table lookup; nothing is sent).
#
# sipwall replaces this shell (exec), so it is PID 1 of the container and gets
# the kubelet's signals itself. --keep-attached: on SIGTERM (every pod restart
# and rolling update) sipwall leaves the XDP link and the maps pinned on the
# host's bpffs, the kernel keeps enforcing the last policy, and the next pod's
# `sipwall run` swaps its program into the pinned link in place, keeping the
# counters. `sipwall run` follows its configuration file (the ConfigMap's
# `..data` swaps) by itself; SIGHUP reloads too.
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

exec sipwall run --keep-attached -i "$iface" "$@"
