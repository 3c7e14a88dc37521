#!/usr/bin/env bash
# The deliberate use-after-free must be reported by ASan, naming the function on the fiber.
set -uo pipefail
out=$("$1" 2>&1)
status=$?
echo "$out"
if [ $status -eq 0 ]; then echo "FAIL: the program exited 0 (ASan did not stop it)"; exit 1; fi
grep -q "heap-use-after-free" <<<"$out" || { echo "FAIL: no heap-use-after-free report"; exit 1; }
grep -q "read_after_free_in_fiber" <<<"$out" || { echo "FAIL: report does not name the fiber's function"; exit 1; }
echo "OK: ASan caught the use-after-free on a fiber stack"
