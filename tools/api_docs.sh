#!/usr/bin/env bash
# Generates the HTML API reference of include/fibers/ with Doxygen (docs/api/Doxyfile) into
# OUT_DIR and fails, listing them, when a public type, function or member has no doc comment.
# Usage: tools/api_docs.sh SOURCE_DIR OUT_DIR [HEADER_DIR]
#   HEADER_DIR replaces include/fibers (the test points it at a copy with a planted gap).
set -euo pipefail
src=$1
out=$2
headers=${3:-$src/include/fibers}
command -v doxygen >/dev/null || { echo "api_docs: doxygen is not installed (./tools/dev.sh deps)"; exit 1; }
mkdir -p "$out"
log="$out/doxygen-warnings.txt"
cd "$src"
# Later settings win: the output and header directories are overridden on stdin.
if ! { cat docs/api/Doxyfile
       echo "INPUT = docs/api/namespaces.dox $headers"
       echo "STRIP_FROM_PATH = $(dirname "$headers")"
       echo "OUTPUT_DIRECTORY = $out"
       echo "WARN_LOGFILE = $log"; } | doxygen - >/dev/null; then
  echo "api_docs: Doxygen failed; undocumented or badly documented public symbols:"
  cat "$log"
  exit 1
fi
[ -f "$out/html/index.html" ] || { echo "api_docs: no $out/html/index.html"; exit 1; }
echo "api_docs: $out/html/index.html"
