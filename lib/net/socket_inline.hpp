// lib/net/socket_inline.hpp - the per-call fast path of every socket operation, inline in the
// library's socket code (the public header only declares it: it needs the runtime's
// internals). On the thread that created the socket a call costs an fd load, a thread-local
// compare and, when no deadline of any kind applies, three more loads: no lock, no atomic
// read-modify-write, no clock read.
#pragma once

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <vector>
#include <system_error>

#include "fibers/detail/socket_base.hpp"
#include "reactor/reactor.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"

namespace fibers::detail {

/// The registrations of a socket with I/O threads other than its home.
struct remote_registrations {
  std::mutex mu;
  bool closed = false;  // set by close()/release(): the list is final
  std::vector<io_registration> regs;
};

/// Low bit of socket_base::remote_: the socket is closed, no thread may register any more.
inline constexpr std::uintptr_t closed_bit = 1;

inline remote_registrations* as_regs(std::uintptr_t v) noexcept {
  return reinterpret_cast<remote_registrations*>(v & ~closed_bit);
}

inline socket_base::io_handle socket_base::handle_for(const char* op, std::error_code& ec) {
  const int fd = fd_.load(std::memory_order_relaxed);
  if (fd >= 0 && io_thread::current() == home_.thread) [[likely]] return {fd, home_.slot};
  return handle_slow(op, fd, ec);
}

inline bool socket_base::expired(io_dir dir, deadline dl, call_limit& lim, std::error_code& ec) const noexcept {
  const auto& dir_deadline = dir == io_dir::read ? read_deadline_ : write_deadline_;
  if (!dl.is_set() && !timeout_ && load_deadline(dir_deadline) == clock::time_point::max()) [[likely]] {
    const fiber_state* st = io_thread::current()->running_fiber();
    if (st == nullptr || st->inherited_deadline == clock::time_point::max()) [[likely]] return false;
  }
  if (!limit_passed(dir, dl, lim)) return false;
  ec = std::make_error_code(std::errc::timed_out);
  return true;
}

/// The waiter registration of `dir` on a slot.
inline waiter*& waiter_of(io_slot* s, io_dir dir) noexcept { return dir == io_dir::read ? s->reader : s->writer; }

/// True if the calling I/O thread's stream sockets do their I/O on its io_uring ring
/// (runtime_options::sockets).
inline bool ring_sockets() noexcept { return io_thread::current()->socket_ring() != nullptr; }

/// errno as an error_code.
inline std::error_code last_error() noexcept { return {errno, std::generic_category()}; }

}  // namespace fibers::detail
