// fibers/affinity.hpp - connection affinity: serve a connection on the I/O thread that runs
// where its packets arrive.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <optional>

namespace fibers {

class runtime;

/// The CPU on which the kernel last processed incoming packets for socket `fd`
/// (SO_INCOMING_CPU), or nullopt when the kernel does not know (no packet yet, not a socket).
/// For a connection accepted over loopback it is the CPU the connecting thread ran on; for one
/// from a network card, the CPU that took the receive queue's interrupt.
std::optional<int> incoming_cpu(int fd) noexcept;

/// The I/O thread of `rt` to serve connection `fd` on, so that its packets and its fiber share
/// a CPU: the thread last seen running on incoming_cpu(fd) (runtime::thread_on_cpu), else
/// `fallback`. Both ends of a loopback connection inside one process then land on one thread,
/// as the kernel's scheduler would place two OS threads that wake each other, and the
/// connection's socket buffers stay in that CPU's cache. I/O threads are not pinned: the
/// mapping follows where the scheduler last ran each thread, and a wrong guess costs only
/// locality, never correctness.
std::size_t affine_thread(const runtime& rt, int fd, std::size_t fallback) noexcept;

}  // namespace fibers
