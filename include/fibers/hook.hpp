// fibers/hook.hpp - libfibers-hook: unmodified blocking code (plain libc calls, blocking
// client libraries) parks its fiber instead of its thread.
//
// Link libfibers-hook (`pkg-config --libs libfibers-hook`, which puts it before libc) or
// preload it (LD_PRELOAD=libfibers-hook.so). On a libfibers fiber, the interposed libc calls -
// socket, accept, connect, read/write and the recv/send family, poll/select, epoll_wait, the
// sleeps, getaddrinfo and gethostbyname(2)(_r) (through fibers::dns), getnameinfo's and
// gethostbyaddr(_r)'s reverse lookups (on the blocking pool) - park the fiber until the fd is
// ready; read/write/pread/pwrite on a regular file that must wait for the disk go through the
// file backend (fibers::file's) while the fiber parks. Everywhere else (plain threads, an I/O
// thread's loop, a fiber that disabled the hook) they are libc. README.md, "Porting blocking
// code", lists what is interposed and what is not. This header is only needed to control the
// hook or read its counters; the interposition works without it. FIBERS_HOOK=off in the
// environment turns the whole hook off (every call is libc) for diagnosis.
//
//     fibers::run([] {
//       fibers::spawn([] { legacy_blocking_client("127.0.0.1", 6379); }).join();  // parks
//       fibers::hook::disable_scope plain;  // in here, this fiber's calls block the thread
//       ...
//     });
#pragma once

#include "fibers/detail/config.hpp"

#include <array>
#include <cstddef>
#include <cstdint>

#include "fibers/dns.hpp"

namespace fibers::hook {

/// The interposed calls that can park, for stats().
enum class call : unsigned {
  accept, connect, read, write, readv, writev, recv, recvfrom, recvmsg, send, sendto, sendmsg,
  poll, select, sleep,
  getaddrinfo,    // lookups sent through fibers::dns (counted whether or not they parked)
  gethostbyname,  // gethostbyname(2)(_r) lookups sent through fibers::dns (the same)
  getnameinfo,    // reverse lookups run on the blocking pool (getnameinfo, gethostbyaddr(_r))
  epoll_wait,     // epoll_wait/epoll_pwait(2) on a user's epoll fd
  count_
};

/// The call's name ("accept", "poll" - ppoll counts as poll, pselect as select, every sleep
/// function as sleep, every gethostbyname variant as gethostbyname, epoll_pwait(2) as
/// epoll_wait).
const char* name(call c) noexcept;

/// How often each interposed call parked a fiber, process-wide since start.
struct call_stats {
  /// Parks per call, indexed by the call's number.
  std::array<std::uint64_t, static_cast<std::size_t>(call::count_)> parked{};
  /// Parks of call `c`.
  std::uint64_t operator[](call c) const noexcept { return parked[static_cast<std::size_t>(c)]; }
  /// All parks.
  std::uint64_t total() const noexcept {
    std::uint64_t n = 0;
    for (auto v : parked) n += v;
    return n;
  }
};

/// The counters (relaxed reads: a snapshot, not a consistent cut).
call_stats stats() noexcept;

/// False if FIBERS_HOOK=off was set at start: every interposed call is libc.
bool active() noexcept;

/// True if interposed calls made on the calling fiber park it (the hook is active and the
/// fiber has not disabled it). False on plain threads and I/O threads' loops.
bool enabled() noexcept;

/// Makes the calling fiber's interposed calls plain libc (they block the thread) until
/// enable(). Nests: each disable() needs an enable(). No effect off a fiber.
void disable() noexcept;
/// Undoes one disable() of the calling fiber.
void enable() noexcept;

/// The resolver options of the hook's lookups on fibers (getaddrinfo, gethostbyname*): the
/// DNS servers, attempts, per-try timeout, in-flight cap. `families` and `backend` are ignored
/// (the call's own family applies; the lookups are c-ares'). Default: dns::options{}, i.e.
/// /etc/resolv.conf and /etc/hosts. Process-wide; takes effect for lookups that start later.
void set_dns_options(const fibers::dns::options& opts);

/// disable() for a scope.
class disable_scope {
 public:
  disable_scope() noexcept { disable(); }
  ~disable_scope() { enable(); }
  disable_scope(const disable_scope&) = delete;
  disable_scope& operator=(const disable_scope&) = delete;
};

}  // namespace fibers::hook
