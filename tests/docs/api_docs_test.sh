#!/usr/bin/env bash
# The API-reference check (tools/api_docs.sh) passes on include/fibers/ as it is, and fails,
# naming the symbol, on a copy of the headers with one undocumented public function planted.
# Usage: api_docs_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
work=$2/api_docs_test
rm -rf "$work"
mkdir -p "$work"
"$src/tools/api_docs.sh" "$src" "$work/ok"
grep -q 'stream_socket' "$work/ok/html/annotated.html" ||
  { echo "FAIL: the reference does not list fibers::stream_socket"; exit 1; }

mkdir -p "$work/planted/fibers"
cp "$src"/include/fibers/*.hpp "$work/planted/fibers/"
printf '\nnamespace fibers {\nint planted_undocumented(int x);\n}\n' >>"$work/planted/fibers/latch.hpp"
if out=$("$src/tools/api_docs.sh" "$src" "$work/bad" "$work/planted/fibers" 2>&1); then
  echo "FAIL: an undocumented public function passed the check"; exit 1
fi
grep -q 'planted_undocumented' <<<"$out" ||
  { echo "FAIL: the failure does not name the undocumented function:"; echo "$out"; exit 1; }
echo "PASS"
