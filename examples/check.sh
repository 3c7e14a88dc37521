#!/usr/bin/env bash
# Runs every example from BIN_DIR and checks its output. Needs python3 (a local HTTP server)
# and openssl (a local HTTPS server with a certificate made here). Loopback only.
# Usage: examples/check.sh BIN_DIR
set -euo pipefail
bin=$1
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "examples/check.sh: $*"; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; fail "nothing listens on $1"; }

out=$("$bin/hello")
[ "$out" = $'hello from the main fiber\nthe other fiber answered 42' ] || fail "hello: $out"

out=$("$bin/chat" demo)
want="client 0 heard: [hello from 0] [hello from 1] [hello from 2]"
[ "$(echo "$out" | head -n 1)" = "$want" ] && [ "$(echo "$out" | wc -l)" -eq 3 ] || fail "chat: $out"

printf 'the fiber and the thread\nthe fiber\n' >"$work/a.txt"
printf 'THE end\n' >"$work/b.txt"
out=$("$bin/word_count" "$work/a.txt" "$work/b.txt" | tr -s ' ')
[ "$out" = $' 4 the\n 2 fiber\n 1 and\n 1 end\n 1 thread' ] || fail "word_count: $out"
"$bin/word_count" | grep -q "fiber" || fail "word_count over generated text"
if "$bin/word_count" "$work/nope.txt" 2>"$work/err"; then fail "word_count of a missing file succeeded"; fi
grep -q "word_count: open $work/nope.txt: No such file or directory" "$work/err" || fail "word_count: $(cat "$work/err")"

mkdir -p "$work/www"
echo "hello over http" >"$work/www/hello.txt"
port=$(free_port)
(cd "$work/www" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
wait_port "$port"
out=$("$bin/http_get" "http://localhost:$port/hello.txt")
[ "$out" = "hello over http" ] || fail "http_get http: $out"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
tport=$(free_port)
(cd "$work/www" && exec openssl s_server -accept "$tport" -cert "$work/cert.pem" -key "$work/key.pem" -WWW -quiet >/dev/null 2>&1) &
pids+=($!)
wait_port "$tport"
out=$("$bin/http_get" --ca "$work/cert.pem" "https://localhost:$tport/hello.txt")
[ "$out" = "hello over http" ] || fail "http_get https: $out"
if "$bin/http_get" "https://localhost:$tport/hello.txt" 2>"$work/err"; then
  fail "http_get trusted a self-signed certificate"
fi
grep -q "certificate verify failed" "$work/err" || fail "http_get: $(cat "$work/err")"
echo "examples: all ok"
