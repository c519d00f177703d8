#!/bin/bash
# bash cpu.sh SECONDS OUT: the machine's busy fraction (all cores) every SECONDS, "unix-time busy" a line, until killed.
every=$1; out=$2; : > "$out"
read -r _ u n s i w q sq st _ < /proc/stat; pb=$((u+n+s+q+sq+st)); pt=$((pb+i+w))
while sleep "$every"; do
  read -r _ u n s i w q sq st _ < /proc/stat; b=$((u+n+s+q+sq+st)); t=$((b+i+w))
  echo "$(date +%s.%N) $(awk -v db=$((b-pb)) -v dt=$((t-pt)) 'BEGIN{printf "%.3f", (dt>0?db/dt:0)}')" >> "$out"; pb=$b; pt=$t
done
