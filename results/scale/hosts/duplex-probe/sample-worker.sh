#!/bin/bash
# sample the PS namespace's eth0 counters every 0.1 s once it appears
for i in $(seq 1 600); do ns=$(ip netns list | awk '{print $1}' | grep "w0$" | head -1); [ -n "$ns" ] && break; sleep 0.5; done
echo "ns=$ns" > /tmp/samplesw.txt
for i in $(seq 1 3000); do
  v=$(ip netns exec $ns cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes 2>/dev/null | tr '\n' ' ') || break
  [ -z "$v" ] && break
  echo "$(date +%s.%N) $v" >> /tmp/samplesw.txt; sleep 0.02
done
