// lib/hook/real.hpp - the libc functions libfibers-hook interposes, resolved with
// dlsym(RTLD_NEXT) into one atomic pointer per symbol.
//
// A pointer is resolved on its first use (an interposed call may come from another library's
// static constructor, before ours ran) and all of them by the library's constructor. dlsym
// does not allocate on success, and nothing here allocates before it: a call that arrives
// during early start-up goes straight to libc.
#pragma once

#include <dlfcn.h>
#include <sys/syscall.h>
#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace fibers::hook::detail {

[[noreturn]] inline void missing_symbol(const char* name) noexcept {
  // No stdio buffers: this may run before they exist.
  // No stdio buffers (this may run before they exist), and not write(): it may be the one
  // missing.
  static const char msg[] = "libfibers-hook: dlsym(RTLD_NEXT) found no libc symbol ";
  (void)::syscall(SYS_write, 2, msg, sizeof msg - 1);
  (void)::syscall(SYS_write, 2, name, __builtin_strlen(name));
  (void)::syscall(SYS_write, 2, "\n", 1);
  std::abort();
}

template <class Fn>
struct real_fn {
  const char* name;
  std::atomic<Fn> fn{nullptr};
  Fn get() noexcept {
    Fn f = fn.load(std::memory_order_relaxed);
    if (f == nullptr) [[unlikely]] {
      f = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
      if (f == nullptr) missing_symbol(name);
      fn.store(f, std::memory_order_relaxed);
    }
    return f;
  }
};

#define FIBERS_HOOK_REAL_LIST(X)                                                              \
  X(socket, int (*)(int, int, int))                                                           \
  X(accept, int (*)(int, sockaddr*, socklen_t*))                                              \
  X(accept4, int (*)(int, sockaddr*, socklen_t*, int))                                        \
  X(connect, int (*)(int, const sockaddr*, socklen_t))                                        \
  X(read, ssize_t (*)(int, void*, size_t))                                                    \
  X(write, ssize_t (*)(int, const void*, size_t))                                             \
  X(pread, ssize_t (*)(int, void*, size_t, off_t))                                            \
  X(pwrite, ssize_t (*)(int, const void*, size_t, off_t))                                     \
  X(readv, ssize_t (*)(int, const iovec*, int))                                               \
  X(writev, ssize_t (*)(int, const iovec*, int))                                              \
  X(recv, ssize_t (*)(int, void*, size_t, int))                                               \
  X(recvfrom, ssize_t (*)(int, void*, size_t, int, sockaddr*, socklen_t*))                    \
  X(recvmsg, ssize_t (*)(int, msghdr*, int))                                                  \
  X(send, ssize_t (*)(int, const void*, size_t, int))                                         \
  X(sendto, ssize_t (*)(int, const void*, size_t, int, const sockaddr*, socklen_t))           \
  X(sendmsg, ssize_t (*)(int, const msghdr*, int))                                            \
  X(poll, int (*)(pollfd*, nfds_t, int))                                                      \
  X(ppoll, int (*)(pollfd*, nfds_t, const timespec*, const sigset_t*))                        \
  X(select, int (*)(int, fd_set*, fd_set*, fd_set*, timeval*))                                \
  X(pselect, int (*)(int, fd_set*, fd_set*, fd_set*, const timespec*, const sigset_t*))       \
  X(sleep, unsigned (*)(unsigned))                                                            \
  X(usleep, int (*)(useconds_t))                                                              \
  X(nanosleep, int (*)(const timespec*, timespec*))                                           \
  X(clock_nanosleep, int (*)(clockid_t, int, const timespec*, timespec*))                     \
  X(close, int (*)(int))                                                                      \
  X(dup, int (*)(int))                                                                        \
  X(dup2, int (*)(int, int))                                                                  \
  X(dup3, int (*)(int, int, int))                                                             \
  X(fcntl, int (*)(int, int, ...))                                                            \
  X(fcntl64, int (*)(int, int, ...))                                                          \
  X(ioctl, int (*)(int, unsigned long, ...))                                                  \
  X(setsockopt, int (*)(int, int, int, const void*, socklen_t))                               \
  X(pipe, int (*)(int*))                                                                      \
  X(pipe2, int (*)(int*, int))                                                                \
  X(socketpair, int (*)(int, int, int, int*))                                                 \
  X(eventfd, int (*)(unsigned, int))                                                          \
  X(epoll_create, int (*)(int))                                                               \
  X(epoll_create1, int (*)(int))                                                              \
  X(epoll_wait, int (*)(int, epoll_event*, int, int))                                         \
  X(epoll_pwait, int (*)(int, epoll_event*, int, int, const sigset_t*))

struct real_table {
#define FIBERS_HOOK_MEMBER(name, type) real_fn<type> name{#name};
  FIBERS_HOOK_REAL_LIST(FIBERS_HOOK_MEMBER)
#undef FIBERS_HOOK_MEMBER
};

/// The real functions (constant-initialised: usable before any constructor has run).
extern constinit real_table real;

/// Resolves every pointer (the library's constructor).
void resolve_all() noexcept;

}  // namespace fibers::hook::detail
