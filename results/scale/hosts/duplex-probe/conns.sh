#!/bin/bash
# bash conns.sh HOST SECONDS OUT: the established TCP connections of one emulated host (ss -tn), every SECONDS.
host=$1; every=$2; out=$3
for i in $(seq 1 600); do ns=$(ip netns list | awk '{print $1}' | grep "${host}\$" | head -1); [ -n "$ns" ] && break; sleep 0.5; done
echo "ns=$ns" > "$out"
while ip netns list | grep -q "^$ns"; do
  echo "t=$(date +%s.%N)" >> "$out"
  ip netns exec "$ns" ss -tni state established >> "$out" 2>/dev/null
  sleep "$every"
done
