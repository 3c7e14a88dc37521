#!/usr/bin/env bash
# Drives gdb in batch mode against gdb_target: `info fibers` must list the two parked fibers
# with what they wait for, and `fiber bt` must show the functions they are parked in.
# The helper needs libfibers' debug info. Without it (a release build), both commands must say
# so in one clear line (no Python traceback), and the test is skipped (exit 77).
# Usage: gdb_test.sh GDB_TARGET SOURCE_DIR LIBFIBERS
set -euo pipefail
target=$1
src=$2
lib=$3
fail=0
expect() { grep -q -- "$1" <<<"$out" || { echo "MISSING: $1"; fail=1; }; }
forbid() { if grep -q -- "$1" <<<"$out"; then echo "UNEXPECTED: $1"; fail=1; fi; }

sections=$(readelf -S --wide "$lib") || { echo "readelf -S $lib failed (binutils missing?)"; exit 1; }
if ! grep -q ' \.debug_info ' <<<"$sections"; then
  out=$(gdb -batch -nx -q \
    -ex "source $src/tools/gdb/fibers.py" \
    -ex "break ready_for_gdb" \
    -ex "run" \
    -ex "info fibers" \
    -ex "fiber bt 1" \
    -ex "kill" \
    "$target" 2>&1) || true
  echo "$out"
  [ "$(grep -c -- "libfibers has no debug info" <<<"$out")" -eq 2 ] \
    || { echo "MISSING: 'libfibers has no debug info' from both info fibers and fiber bt"; fail=1; }
  forbid "Traceback"
  forbid "Python Exception"
  [ $fail -eq 0 ] || exit 1
  echo "SKIP: $lib has no debug info (a release build?): the gdb helper needs -g;" \
       "only its 'no debug info' message was checked"
  exit 77
fi

out=$(gdb -batch -nx -q \
  -ex "source $src/tools/gdb/fibers.py" \
  -ex "set pagination off" \
  -ex "break ready_for_gdb" \
  -ex "run" \
  -ex "info fibers" \
  -ex "python import gdb; [gdb.execute('fiber bt %d 12' % int(st['id'])) for t, st in __import__('__main__')._fibers() if int(st['wait_what']) != 0]" \
  -ex "kill" \
  "$target" 2>&1) || true
echo "$out"
expect "fiber [0-9]* 'gdb-sleeper'  waiting: sleep"
expect "fiber [0-9]* 'gdb-receiver'  waiting: channel"
expect "parked_in_sleep"
expect "parked_in_channel"
exit $fail
