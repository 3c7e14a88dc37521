// lib/net/affinity.cpp - SO_INCOMING_CPU and the I/O thread running on that CPU.
#include "fibers/affinity.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "fibers/runtime.hpp"

namespace fibers {

std::optional<int> incoming_cpu(int fd) noexcept {
  const int saved = errno;
  int cpu = -1;
  socklen_t len = sizeof cpu;
  const bool ok = ::getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &len) == 0 && cpu >= 0;
  errno = saved;
  if (!ok) return std::nullopt;
  return cpu;
}

std::size_t affine_thread(const runtime& rt, int fd, std::size_t fallback) noexcept {
  if (rt.io_threads() < 2) return fallback;
  const std::optional<int> cpu = incoming_cpu(fd);
  if (!cpu) return fallback;
  return rt.thread_on_cpu(*cpu).value_or(fallback);
}

}  // namespace fibers
