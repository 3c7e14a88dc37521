#!/usr/bin/env bash
# libfibers developer entry point: the README's set-up, demo, test and bench commands.
#   ./tools/dev.sh deps        install what is missing (Debian 12, apt-get; no-op when present)
#   ./tools/dev.sh build       configure (if needed) and build into build/
#   ./tools/dev.sh test        deps + build + meson test (non-zero on any failure)
#   ./tools/dev.sh demo        deps + build + fibers-echo demo (server + load on loopback)
#   ./tools/dev.sh test-asan   the suite under ASan+UBSan (build-asan/)
#   ./tools/dev.sh test-tsan   the cross-thread suites under TSan (build-tsan/)
#   ./tools/dev.sh bench       deps + Go/Asio peers + release build (build-release/) + the
#                              benchmark suite bench/run_suite.py (args go to it: --quick, --reps N),
#                              then the proxy comparison (bench/proxy_bench.py, plain and TLS)
#   ./tools/dev.sh bench-proxy fibers-proxy vs haproxy vs socat (bench/proxy_bench.py; --reps N)
#   ./tools/dev.sh docs        HTML API reference into build/docs/html (Doxygen); fails on any
#                              public symbol without a doc comment
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
BUILD=${BUILD:-build}
JOBS=${JOBS:-2}

packages=(meson ninja-build pkg-config g++ libboost-context1.81-dev
          libc-ares-dev libssl-dev liburing-dev libgtest-dev libgmock-dev libbenchmark-dev
          libcli11-dev libfmt-dev gdb libboost-system1.81-dev cmake make openssl
          libcurl4-openssl-dev doxygen)
# (libboost-system1.81-dev: the Asio peer is built with the tests, whose check keeps it honest.)

# Only `bench` needs these: Go for go-echo and the Go micro-benchmarks, oneTBB for cpu_bench's
# fib comparison; haproxy, socat and strace for bench/proxy_bench.py (`bench-proxy`).
bench_packages=(golang-go libtbb-dev haproxy socat strace)

deps() {
  local missing=()
  for p in "${packages[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dev.sh: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

configure() {
  local werror=false
  [ "${CI:-}" = "true" ] && werror=true
  if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" --wrap-mode=nodownload --buildtype=debugoptimized -Dwerror=$werror "$@"
  fi
}

build() { configure "$@"; ninja -C "$BUILD" -j "$JOBS"; }

case "${1:-help}" in
  deps) deps ;;
  build) shift; deps; build "$@" ;;
  test)
    shift; deps; build "$@"
    meson test -C "$BUILD" --num-processes "$JOBS" --print-errorlogs ;;
  test-asan)
    # The whole suite with AddressSanitizer + UndefinedBehaviorSanitizer (fiber switches are
    # annotated by the scheduler; see lib/runtime/sanitizer.hpp).
    shift; deps
    BUILD=${BUILD_ASAN:-build-asan}
    build -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false -Dtools=false "$@"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
      meson test -C "$BUILD" --num-processes "$JOBS" --print-errorlogs --timeout-multiplier 3 ;;
  test-tsan)
    # The cross-thread suites with ThreadSanitizer (see tests/tsan.supp for what is suppressed
    # and why).
    shift; deps
    BUILD=${BUILD_TSAN:-build-tsan}
    # TSan's instrumented frames are several times larger: 256 KiB fiber stacks. -Wno-tsan:
    # GCC warns that TSan ignores atomic_thread_fence (Boost's intrusive_ptr_release and our
    # futex park word use one); the suites pass without TSan seeing them.
    build -Db_sanitize=thread -Db_lundef=false -Dbench=false -Dtools=false \
      -Ddefault_stack_kib=256 -Dcpp_args=-Wno-tsan "$@"
    TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$here/tests/tsan.supp} \
      meson test -C "$BUILD" --num-processes 1 --print-errorlogs --timeout-multiplier 5 \
        --suite tsan ;;
  demo)
    shift; deps; build
    "$BUILD/tools/fibers-echo/fibers-echo" demo "$@" ;;
  bench)
    shift; deps "${bench_packages[@]}"
    [ -f build-release/build.ninja ] ||
      meson setup build-release --wrap-mode=nodownload --buildtype=release -Dtests=false
    ninja -C build-release -j "$JOBS"
    python3 bench/run_suite.py --build build-release "$@"
    # Issue 18's proxy comparison (fibers-proxy vs haproxy vs socat, plain at 20k and 40k
    # rt/s paced, then TLS termination), in the same command; --quick shortens it too, and a
    # focused run (--scenarios) leaves it out.
    proxy_args=(--reps 3 --secs 3)
    for a in "$@"; do
      case "$a" in
        --quick) proxy_args=(--reps 1 --secs 1) ;;
        --scenarios*) exit 0 ;;
      esac
    done
    python3 bench/proxy_bench.py --build build-release "${proxy_args[@]}" --rate 20000,40000
    python3 bench/proxy_bench.py --build build-release "${proxy_args[@]}" --rate 5000 \
      --proxies fibers-proxy,haproxy --tls ;;
  bench-proxy)
    shift; deps "${bench_packages[@]}"
    [ -f build-release/build.ninja ] ||
      meson setup build-release --wrap-mode=nodownload --buildtype=release -Dtests=false
    ninja -C build-release -j "$JOBS" tools/fibers-proxy/fibers-proxy
    python3 bench/proxy_bench.py --build build-release "$@" ;;
  docs)
    shift; deps
    ./tools/api_docs.sh "$here" "$here/$BUILD/docs" ;;
  *)
    sed -n '2,12p' "$0"; exit 2 ;;
esac
