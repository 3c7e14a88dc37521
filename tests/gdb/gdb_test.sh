#!/usr/bin/env bash
# Drives gdb in batch mode against gdb_target: `info fibers` must list the two parked fibers
# with what they wait for, and `fiber bt` must show the functions they are parked in.
# Usage: gdb_test.sh GDB_TARGET SOURCE_DIR
set -euo pipefail
target=$1
src=$2
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
fail=0
expect() { grep -q -- "$1" <<<"$out" || { echo "MISSING: $1"; fail=1; }; }
expect "fiber [0-9]* 'gdb-sleeper'  waiting: sleep"
expect "fiber [0-9]* 'gdb-receiver'  waiting: channel"
expect "parked_in_sleep"
expect "parked_in_channel"
exit $fail
