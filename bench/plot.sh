#!/bin/sh
# Plots p50 latency by payload, raw floor against duct, from duct-bench
# output (1-client lines), as a PNG. Needs gnuplot (Debian: gnuplot-nox).
#   bench/plot.sh bench-output.txt docs/bench-p50.png ["title"]
set -eu
in=$1
out=$2
title=${3:-"duct-bench: p50 round trip, 1 client"}
data=$(mktemp)
trap 'rm -f "$data"' EXIT
# payload raw_p50 duct_p50, one row per payload, from the clients=1 lines.
tr -d '\r' < "$in" | awk '/^bench / && / clients=1 / {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  print v["payload"], v["raw_p50_us"], v["duct_p50_us"] }' > "$data"
[ -s "$data" ] || { echo "plot.sh: no clients=1 bench lines in $in" >&2; exit 1; }
gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$out"
set title "$title"
set logscale xy
set xlabel "payload (bytes)"
set ylabel "p50 latency (microseconds)"
set xtics ("16 B" 16, "1 KiB" 1024, "64 KiB" 65536, "1 MiB" 1048576)
set key top left
set grid
plot "$data" using 1:2 with linespoints lw 2 pt 7 title "raw transport", \
     "$data" using 1:3 with linespoints lw 2 pt 5 title "duct unary call"
GP
