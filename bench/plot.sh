#!/bin/sh
# Plots duct-bench output as a PNG with gnuplot (Debian: gnuplot-nox).
#   bench/plot.sh bench-output.txt docs/bench-p50.png ["title"]
#     p50 latency by payload, raw floor against duct (the unary clients=1 lines)
#   bench/plot.sh --stream bench-output.txt docs/bench-stream.png ["title"]
#     messages per second on one stream by payload, raw one-way floor
#     against a duct server stream (the mode=stream lines)
#   bench/plot.sh --peers bench-output.txt docs/bench-peers.png ["title"]
#     p50 latency by payload, 1 client: raw floor, duct, and the peers of
#     `duct-bench --peers` (transport=grpc-uds and transport=sdbus lines)
set -eu
mode=p50
if [ "${1:-}" = "--stream" ] || [ "${1:-}" = "--peers" ]; then
  mode=${1#--}
  shift
fi
in=$1
out=$2
data=$(mktemp)
trap 'rm -f "$data"' EXIT
if [ "$mode" = p50 ]; then
  title=${3:-"duct-bench: p50 round trip, 1 client"}
  # payload raw_p50 duct_p50, one row per payload, from the unary clients=1
  # lines of duct (not the peers' lines of --peers).
  tr -d '\r' < "$in" | awk '/^bench transport=(posix|npipe) / && / clients=1 / && !/ mode=/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print v["payload"], v["raw_p50_us"], v["duct_p50_us"] }' > "$data"
  [ -s "$data" ] || { echo "plot.sh: no clients=1 bench lines in $in" >&2; exit 1; }
  ylabel="p50 latency (microseconds)"
  xtics='("16 B" 16, "1 KiB" 1024, "64 KiB" 65536, "1 MiB" 1048576)'
  key="top left"
  raw_title="raw transport"
  duct_title="duct unary call"
elif [ "$mode" = peers ]; then
  title=${3:-"duct-bench --peers: p50 round trip, 1 client"}
  # payload raw duct grpc sdbus, one row per payload; "?" where a peer has
  # no line (not built), which gnuplot leaves out.
  tr -d '\r' < "$in" | awk '/^bench / && / clients=1 / && !/ mode=/ {
    delete v
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    p = v["payload"]
    if (!(p in seen)) { seen[p] = 1; order[n++] = p }
    if (v["transport"] == "grpc-uds") grpc[p] = v["peer_p50_us"]
    else if (v["transport"] == "sdbus") sdbus[p] = v["peer_p50_us"]
    else { raw[p] = v["raw_p50_us"]; duct[p] = v["duct_p50_us"] }
  }
  END {
    for (i = 0; i < n; i++) {
      p = order[i]
      print p, (p in raw) ? raw[p] : "?", (p in duct) ? duct[p] : "?",
            (p in grpc) ? grpc[p] : "?", (p in sdbus) ? sdbus[p] : "?"
    }
  }' > "$data"
  [ -s "$data" ] || { echo "plot.sh: no clients=1 bench lines in $in" >&2; exit 1; }
  grep -q '[0-9] [0-9.?]* [0-9.?]* [0-9.]' "$data" ||
    { echo "plot.sh: no peer lines (run duct-bench --peers) in $in" >&2; exit 1; }
  gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$out"
set title "$title"
set datafile missing "?"
set logscale xy
set xlabel "payload (bytes)"
set ylabel "p50 latency (microseconds)"
set xtics ("16 B" 16, "1 KiB" 1024, "64 KiB" 65536, "1 MiB" 1048576)
set key top left
set grid
plot "$data" using 1:2 with linespoints lw 2 pt 7 title "raw transport", \
     "$data" using 1:3 with linespoints lw 2 pt 5 title "duct unary call", \
     "$data" using 1:4 with linespoints lw 2 pt 9 title "gRPC C++, Unix socket", \
     "$data" using 1:5 with linespoints lw 2 pt 11 title "sd-bus via dbus-daemon"
GP
  exit 0
else
  title=${3:-"duct-bench: messages per second on one stream"}
  # payload raw_msgs_per_s duct_msgs_per_s, one row per payload.
  tr -d '\r' < "$in" | awk '/^bench / && / mode=stream / {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print v["payload"], v["raw_msgs_per_s"], v["duct_msgs_per_s"] }' > "$data"
  [ -s "$data" ] || { echo "plot.sh: no mode=stream bench lines in $in" >&2; exit 1; }
  ylabel="messages per second"
  xtics='("16 B" 16, "1 KiB" 1024, "64 KiB" 65536)'
  key="bottom left"
  raw_title="raw transport, one way"
  duct_title="duct server stream"
fi
gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$out"
set title "$title"
set logscale xy
set xlabel "payload (bytes)"
set ylabel "$ylabel"
set xtics $xtics
set key $key
set grid
plot "$data" using 1:2 with linespoints lw 2 pt 7 title "$raw_title", \
     "$data" using 1:3 with linespoints lw 2 pt 5 title "$duct_title"
GP
