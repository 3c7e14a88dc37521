#!/usr/bin/env bash
# Stages `meson install` into a temporary DESTDIR and builds tests/install/consumer.cpp out of
# tree three ways, running each: with nothing but `pkg-config --cflags --libs libfibers`;
# linked statically (libfibers.a + `pkg-config --static`), when the static library was built;
# and as a CMake project with find_package(libfibers CONFIG) (tests/install/cmake).
# It also checks the installed .pc has no build-machine paths and forces no -std flag.
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
# The .pc forces no standard: the consumer picks C++20, and an older one gets a clear #error.
if c++ -std=c++17 -fsyntax-only $(pkg-config --cflags libfibers) "$src/tests/install/consumer.cpp" 2>"$stage/cxx17.err"; then
  echo "a C++17 build of the headers did not fail"; exit 1
fi
grep -q "libfibers needs C++20 or later" "$stage/cxx17.err" || { cat "$stage/cxx17.err"; exit 1; }
c++ -std=c++20 ${CONSUMER_FLAGS:-} -o "$stage/consumer" "$src/tests/install/consumer.cpp" $flags
LD_LIBRARY_PATH=$libdir "$stage/consumer"

grep -q -- "-std=" "$pc" && { echo "libfibers.pc forces a -std flag on consumers"; exit 1; }
grep -q "/usr/lib/.*\.so" "$pc" && { echo "libfibers.pc names a build-machine library path"; exit 1; }

# Static: libfibers.a, its private dependencies from pkg-config --static.
if [ -f "$libdir/libfibers.a" ]; then
  static_libs=$(pkg-config --static --libs libfibers | sed "s|-lfibers|$libdir/libfibers.a|")
  # shellcheck disable=SC2086
  c++ -std=c++20 ${CONSUMER_FLAGS:-} -o "$stage/consumer-static" "$src/tests/install/consumer.cpp" \
    $(pkg-config --cflags libfibers) $static_libs
  if ldd "$stage/consumer-static" | grep -q libfibers; then
    echo "consumer-static still needs libfibers.so"; exit 1
  fi
  "$stage/consumer-static"
else
  echo "no libfibers.a (default_library=shared): static link not tested"
fi

# CMake: find_package(libfibers CONFIG REQUIRED) -> libfibers::libfibers.
if command -v cmake >/dev/null; then
  cfg=$(dirname "$(find "$stage" -name libfibersConfig.cmake | head -n 1)")
  cmake -S "$src/tests/install/cmake" -B "$stage/cmake-build" -Dlibfibers_DIR="$cfg" \
    -DCMAKE_CXX_FLAGS="${CONSUMER_FLAGS:-}" >/dev/null
  cmake --build "$stage/cmake-build" >/dev/null
  LD_LIBRARY_PATH=$libdir "$stage/cmake-build/consumer"
else
  echo "cmake missing (./tools/dev.sh deps installs it)"; exit 1
fi

# The examples, built with their Makefile (pkg-config only) and their CMakeLists.txt, each set
# run through examples/check.sh. Not under sanitizers (the library's own suite covers them).
if [ -z "${CONSUMER_FLAGS:-}" ]; then
  mkdir -p "$stage/ex-make" "$stage/ex-cmake"
  make -s -C "$src/examples" OUT="$stage/ex-make" CXXFLAGS=-O1
  LD_LIBRARY_PATH=$libdir "$src/examples/check.sh" "$stage/ex-make"
  cmake -S "$src/examples" -B "$stage/ex-cmake" -Dlibfibers_DIR="$cfg" \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$stage/ex-cmake" -j "${JOBS:-2}" >/dev/null
  LD_LIBRARY_PATH=$libdir "$src/examples/check.sh" "$stage/ex-cmake"
fi
