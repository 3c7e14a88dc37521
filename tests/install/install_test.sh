#!/usr/bin/env bash
# Stages `meson install` into a temporary DESTDIR and builds tests/install/consumer.cpp out of
# tree with nothing but `pkg-config --cflags --libs libfibers`, then runs it.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --no-rebuild --destdir "$stage" --quiet
pc=$(find "$stage" -name libfibers.pc | head -n 1)
[ -n "$pc" ] || { echo "libfibers.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$stage
flags=$(pkg-config --cflags --libs libfibers)
echo "pkg-config --cflags --libs libfibers: $flags"
libdir=$(dirname "$(find "$stage" -name 'libfibers.so' | head -n 1)")
# shellcheck disable=SC2086
# CONSUMER_FLAGS: the sanitizer flags when the library itself was built with sanitizers.
c++ ${CONSUMER_FLAGS:-} -o "$stage/consumer" "$src/tests/install/consumer.cpp" $flags
LD_LIBRARY_PATH=$libdir "$stage/consumer"
