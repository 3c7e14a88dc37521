// lib/net/socket_base.cpp - fd ownership, registrations with the I/O threads that use a
// socket, close and release from any thread.
//
// A socket is registered with the reactor of the thread that created it (home_) and, on first
// use, with the reactor of every other I/O thread that calls it (remote_). Each thread only
// ever touches its own slot, so readiness bits and waiters need no lock; the price is one
// epoll_ctl per (socket, other thread) and a short lock per call off the home thread.
//
// close() may run anywhere. It marks the socket closed (fd_ = -1), then every registration is
// taken down on its own thread: inline for the calling thread, by a task posted to the others
// (their waiters wake with errc::closed). Only when the last of those is done is the fd closed:
// until then some thread may still be inside a read() on it, and a reused fd number would hand
// that read another connection's bytes (Go's fdMutex solves the same problem with a reference
// count per call; here the home thread's calls stay free of atomic read-modify-writes).
#include "fibers/detail/socket_base.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "net/socket_inline.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {

namespace {

/// Closes the fd when the last reference goes: the closing call's own and one per task posted
/// to another thread (run there, or destroyed unrun with a thread whose loop has ended).
struct fd_closer {
  explicit fd_closer(int f) noexcept : fd(f) {}
  int fd;
  std::atomic<int> refs{1};
  void unref() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      ::close(fd);
      delete this;
    }
  }
};

/// One reference to an fd_closer (or none), movable into a posted task.
class closer_ref {
 public:
  explicit closer_ref(fd_closer* c) noexcept : c_(c) {
    if (c_ != nullptr) c_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  closer_ref(closer_ref&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  closer_ref(const closer_ref&) = delete;
  closer_ref& operator=(const closer_ref&) = delete;
  ~closer_ref() {
    if (c_ != nullptr) c_->unref();
  }

 private:
  fd_closer* c_;
};

/// Takes `reg` down on its own thread (the caller): waiters wake with errc::closed, the slot
/// is freed (deregistered first unless that was done already).
void take_down_here(const io_registration& reg, bool deregistered) noexcept {
  io_slot* s = reg.slot;
  if (s->gen != reg.gen) return;  // defensive: only this socket's shutdown frees its slots
  take_and_fire(s->reader, wake_reason::closed);
  take_and_fire(s->writer, wake_reason::closed);
  // Operations a ring call queued go to the kernel now, while the fd is still this socket's:
  // the fd may be closed (and its number reused) as soon as this returns. Submitted, they
  // hold the file itself, and their fibers (just woken) cancel them.
  if (s->ring) {
    if (completion_source* c = reg.thread->reactor().completions.get()) c->before_poll();
  }
  if (deregistered) reg.thread->reactor().forget(s);
  else reg.thread->reactor().close(s);
}

/// Takes `reg` down from another thread: the fd leaves the thread's epoll set now (so a
/// released fd can be reused at once), the waiters are woken and the slot freed by a task on
/// the thread. Nothing to do if the thread has ended (its reactor went with it).
void take_down_remote(const io_registration& reg, fd_closer* closer, int fd) noexcept {
  io_thread::with_live(reg.thread, reg.thread_id, [&](io_thread& t) {
    t.reactor().deregister(fd);
    try {
      t.post([reg, ref = closer_ref(closer)] { take_down_here(reg, true); });
    } catch (const std::exception&) {
      // Out of memory: the thread's waiters (if any) keep waiting for their deadlines.
      std::fprintf(stderr, "libfibers: close fd %d: could not reach I/O thread %zu\n", fd, t.index());
    }
  });
}

}  // namespace

socket_base::socket_base(socket_base&& other) noexcept
    : fd_(other.fd_.exchange(-1, std::memory_order_relaxed)),
      home_(std::exchange(other.home_, {})),
      timeout_(other.timeout_),
      peer_(other.peer_),
      remote_(other.remote_.exchange(0, std::memory_order_relaxed)),
      read_deadline_(other.read_deadline_.load(std::memory_order_relaxed)),
      write_deadline_(other.write_deadline_.load(std::memory_order_relaxed)) {}

socket_base& socket_base::operator=(socket_base&& other) noexcept {
  if (this != &other) {
    close();
    reset_remote();
    fd_.store(other.fd_.exchange(-1, std::memory_order_relaxed), std::memory_order_relaxed);
    home_ = std::exchange(other.home_, {});
    timeout_ = other.timeout_;
    peer_ = other.peer_;
    remote_.store(other.remote_.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
    read_deadline_.store(other.read_deadline_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    write_deadline_.store(other.write_deadline_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  return *this;
}

socket_base::~socket_base() {
  close();
  reset_remote();
}

void socket_base::reset_remote() noexcept {
  delete as_regs(remote_.exchange(0, std::memory_order_acq_rel));
}

void socket_base::adopt(int fd, const endpoint& peer) {
  io_thread* t = io_thread::current();
  if (t == nullptr) {
    ::close(fd);
    throw std::logic_error("fibers: sockets can only be created on a libfibers runtime thread");
  }
  std::error_code ec;
  io_slot* slot = t->reactor().open(fd, ec);
  if (slot == nullptr) {
    ::close(fd);
    throw std::system_error(ec, "register fd with " + std::string(t->reactor().name()));
  }
  close();
  reset_remote();
  home_ = {t, t->id(), slot, slot->gen};
  peer_ = peer;
  fd_.store(fd, std::memory_order_release);
}

socket_base::io_handle socket_base::handle_slow(const char* op, int fd, std::error_code& ec) {
  if (fd < 0) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return {};
  }
  io_thread* t = io_thread::current();
  if (t == nullptr) {
    throw std::logic_error(std::string("fibers: ") + op +
                           ": socket calls that can wait run on a libfibers I/O thread (close() "
                           "and set_*_deadline() work from any thread)");
  }
  std::uintptr_t v = remote_.load(std::memory_order_acquire);
  if (v == 0) {
    auto fresh = std::make_unique<remote_registrations>();
    if (remote_.compare_exchange_strong(v, reinterpret_cast<std::uintptr_t>(fresh.get()),
                                        std::memory_order_acq_rel)) {
      v = reinterpret_cast<std::uintptr_t>(fresh.release());
    }
  }
  remote_registrations* regs = as_regs(v);
  if ((v & closed_bit) != 0 || regs == nullptr) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return {};
  }
  std::lock_guard lk(regs->mu);
  // close() seals remote_ and then sets `closed` under this lock: a registration made before
  // is in the list it takes down; none is made after.
  if (regs->closed) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return {};
  }
  for (const io_registration& r : regs->regs) {
    if (r.thread == t && r.thread_id == t->id()) return {fd, r.slot};
  }
  io_slot* slot = t->reactor().open(fd, ec);
  if (slot == nullptr) return {};
  try {
    regs->regs.push_back({t, t->id(), slot, slot->gen});
  } catch (...) {
    t->reactor().close(slot);
    throw;
  }
  slot->shared = true;
  if (regs->regs.size() == 1) mark_home_shared();
  return {fd, slot};
}

void socket_base::mark_home_shared() noexcept {
  // The home slot is the home thread's to touch: tell it there. Until the task runs, the home
  // thread just keeps getting (harmless) events for the socket.
  const io_registration home = home_;
  if (home.thread == nullptr) return;
  io_thread::with_live(home.thread, home.thread_id, [&](io_thread& t) {
    try {
      t.post([home] {
        if (home.slot->gen == home.gen) home.slot->shared = true;
      });
    } catch (const std::exception&) {
      // Out of memory: the home thread keeps being woken by the socket's events.
    }
  });
}

int socket_base::shut(bool close_fd) noexcept {
  const int fd = fd_.exchange(-1, std::memory_order_acq_rel);
  if (fd < 0) return -1;
  io_thread* self = io_thread::current();
  const std::uintptr_t v = remote_.fetch_or(closed_bit, std::memory_order_acq_rel);
  remote_registrations* regs = as_regs(v);
  if (regs != nullptr) {
    std::lock_guard lk(regs->mu);
    regs->closed = true;  // the list is final from here on
  }
  const bool only_here = (regs == nullptr || regs->regs.empty()) &&
                         (home_.thread == nullptr || home_.thread == self);
  if (only_here) {
    // The common case: nobody else can be inside a system call on fd.
    if (home_.thread != nullptr) take_down_here(home_, false);
    if (close_fd) ::close(fd);
    return fd;
  }
  fd_closer* closer = close_fd ? new (std::nothrow) fd_closer(fd) : nullptr;
  auto take_down = [&](const io_registration& reg) {
    if (reg.thread == self && reg.thread_id == self->id()) take_down_here(reg, false);
    else take_down_remote(reg, closer, fd);
  };
  if (home_.thread != nullptr) take_down(home_);
  if (regs != nullptr) {
    for (const io_registration& r : regs->regs) take_down(r);
  }
  if (closer != nullptr) closer->unref();
  else if (close_fd) ::close(fd);  // no memory for the closer: close now
  return fd;
}

void socket_base::close() noexcept { shut(true); }

int socket_base::release() noexcept { return shut(false); }

std::string socket_base::describe(const char* op) const {
  if (peer_.family() == AF_UNSPEC) return op;
  return std::string(op) + " " + peer_.to_string();
}

endpoint socket_base::local_endpoint() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int fd = fd_.load(std::memory_order_relaxed);
  if (fd < 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    throw std::system_error(fd < 0 ? EBADF : errno, std::generic_category(), describe("getsockname"));
  }
  return endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace fibers::detail
