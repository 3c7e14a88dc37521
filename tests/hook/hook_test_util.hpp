// tests/hook/hook_test_util.hpp - what the hook test files share: fd pairs closed on scope exit,
// the kernel's view of an fd's flags, the hook's park counters.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>

#include "fibers/hook.hpp"

namespace hook_test {

/// The kernel's flags, bypassing the hook's fcntl.
inline int kernel_flags(int fd) { return static_cast<int>(::syscall(SYS_fcntl, fd, F_GETFL)); }

/// Parks of `c` so far, process-wide.
inline std::uint64_t parked(fibers::hook::call c) { return fibers::hook::stats()[c]; }

/// Two fds (read end, write end), closed on destruction unless set to -1.
struct fd_pair {
  int r = -1, w = -1;
  ~fd_pair() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
};

inline fd_pair make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  return {p[0], p[1]};
}

inline fd_pair make_socketpair() {
  int p[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0) throw std::runtime_error("socketpair");
  return {p[0], p[1]};
}

}  // namespace hook_test
