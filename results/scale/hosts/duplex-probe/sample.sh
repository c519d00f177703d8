#!/bin/bash
# Read one emulated host's card while a benchmark runs: bash sample.sh HOST SECONDS OUT
# HOST: the end of the host's namespace name (ps, w0, ...); SECONDS between reads; OUT: one line per read,
# "unix-time rx_bytes tx_bytes" of eth0 in that namespace. Waits for the namespace, stops when it is gone.
host=$1; every=$2; out=$3
for i in $(seq 1 600); do ns=$(ip netns list | awk '{print $1}' | grep "${host}\$" | head -1); [ -n "$ns" ] && break; sleep 0.5; done
echo "ns=$ns" > "$out"
while v=$(ip netns exec "$ns" cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes 2>/dev/null | tr '\n' ' ') && [ -n "$v" ]; do
  echo "$(date +%s.%N) $v" >> "$out"; sleep "$every"
done
