#!/usr/bin/env bash
# check_peer.sh PEER_SERVER FIBERS_ECHO [PEER_ARGS...]
# Correctness check of a peer echo server for the benchmark suite (run by meson test): starts
# the server on a free port (it must accept "-p 0" and print "... listening on HOST:PORT ..."
# as its first line), drives it with fibers-echo's load client, which checks every echoed byte
# and exits non-zero on an error or corruption, then stops the server. No timing is asserted.
set -euo pipefail
server=$1 client=$2
shift 2
out=$(mktemp)
"$server" -p 0 "$@" >"$out" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$out"' EXIT

port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$out" | head -n1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "check_peer: $server exited:"; cat "$out"; exit 1; }
  sleep 0.05
done
[ -n "$port" ] || { echo "check_peer: $server printed no port:"; cat "$out"; exit 1; }

# Small messages on many connections, then messages larger than the servers' 64 KiB buffer
# (partial reads and writes).
"$client" load --port "$port" --conns 8 --size 1000 --duration 1 --warmup 0
"$client" load --port "$port" --conns 4 --size 100000 --duration 1 --warmup 0
kill -0 "$pid" || { echo "check_peer: $server died"; exit 1; }
echo "check_peer: $(basename "$server") echoed every byte exactly"
