#!/usr/bin/env bash
# libfibers as a Meson subproject: the examples' Meson project (examples/meson.build) with
# subprojects/libfibers (a link to this source tree) and subprojects/libfibers.wrap builds
# with a plain dependency('libfibers'), and the examples pass examples/check.sh.
# Usage: subproject_test.sh SOURCE_DIR
set -euo pipefail
src=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/consumer/subprojects"
cp "$src"/examples/*.cpp "$src/examples/meson.build" "$work/consumer/"
cp "$src/tests/install/libfibers.wrap" "$work/consumer/subprojects/"
ln -s "$src" "$work/consumer/subprojects/libfibers"
# The library only (no tests, tools or benchmarks of its own), unoptimised: it compiles fastest.
meson setup "$work/build" "$work/consumer" --wrap-mode=nodownload --buildtype=debug \
  -Dlibfibers:tests=false -Dlibfibers:tools=false -Dlibfibers:bench=false \
  -Dlibfibers:default_library=shared >/dev/null
ninja -C "$work/build" -j "${JOBS:-2}" >/dev/null
"$src/examples/check.sh" "$work/build"
