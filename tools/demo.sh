#!/bin/sh
# The main job on defaults: two vdens-fast namespaces joined by ptp://, each with vde0 addressed
# 10.0.0.1/24 and 10.0.0.2/24; the second pings the first and, when iperf3 is installed, runs a
# 3-second TCP transfer to it. Traffic stays inside the two namespaces. Cleans up on exit.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
VF=${VDENS_FAST:-$here/target/release/vdens-fast}
[ -x "$VF" ] || { echo "demo: $VF not found: run cargo build --release first" >&2; exit 1; }
dir=$(mktemp -d /tmp/vdens-fast-demo.XXXXXX)
chmod 0755 "$dir"
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Namespace A: the server side. It stays up until the flag file appears (or 30 s pass).
"$VF" ptp://"$dir"/cable sh -c '
    ip link set lo up && ip addr add 10.0.0.1/24 dev vde0 && ip link set vde0 up
    command -v iperf3 >/dev/null && iperf3 -s -D -1 >/dev/null 2>&1
    echo up > "$0"/a-ready
    for i in $(seq 300); do [ -e "$0"/done ] && exit 0; sleep 0.1; done' "$dir" &
pid=$!
for i in $(seq 100); do [ -e "$dir"/a-ready ] && break; sleep 0.1; done
[ -e "$dir"/a-ready ] || { echo "demo: namespace A did not come up" >&2; exit 1; }

# Namespace B: the client side.
"$VF" ptp://"$dir"/cable sh -c '
    ip link set lo up && ip addr add 10.0.0.2/24 dev vde0 && ip link set vde0 up
    echo "== inside namespace B: $(ip -br addr show vde0)"
    ping -n -c 3 -i 0.2 -w 10 10.0.0.1
    if command -v iperf3 >/dev/null; then iperf3 -c 10.0.0.1 -t 3 -f g | tail -4; fi
    touch "$0"/done' "$dir"
rc=$?
wait "$pid" 2>/dev/null || true
pid=
echo "== demo finished with status $rc"
exit $rc
