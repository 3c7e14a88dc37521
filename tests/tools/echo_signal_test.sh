#!/usr/bin/env bash
# fibers-echo serve drains on SIGTERM and SIGINT (awaited with fibers::signal_set): it prints
# the signal, shuts down and exits 0, also while a client is connected.
set -euo pipefail
echo_bin=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for sig in TERM INT; do
  "$echo_bin" serve --port 0 --threads 2 --stats-interval 0 >"$out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "serving on" "$out" && break; sleep 0.05; done
  port=$(sed -n 's/.*serving on 127.0.0.1:\([0-9]*\).*/\1/p' "$out")
  [ -n "$port" ] || { echo "server did not start"; cat "$out"; exit 1; }
  exec 3<>"/dev/tcp/127.0.0.1/$port"   # an idle client stays connected
  kill -"$sig" "$pid"
  rc=0; wait "$pid" || rc=$?
  exec 3>&-
  cat "$out"
  [ "$rc" -eq 0 ] || { echo "exit status $rc after SIG$sig"; exit 1; }
  grep -q "SIG$sig, shutting down" "$out" || { echo "no drain message for SIG$sig"; exit 1; }
  grep -q "served 1 connections" "$out" || { echo "the connected client was not counted"; exit 1; }
done
echo "ok"
