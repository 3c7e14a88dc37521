// lib/reactor/uring.cpp - the io_uring completion source (see completion.hpp).
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "fibers/error.hpp"
#include "reactor/completion.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {
namespace {

constexpr unsigned sq_entries = 256;
// Room for every operation a thread is likely to have in flight at once (each fiber has at
// most one), so the kernel rarely has to keep completions on its overflow list.
constexpr unsigned cq_entries = 4096;

// FIBERS_URING_SUBMIT=immediate submits each SQE as it is queued and reaps at once, so an
// operation the kernel completes inline (a page-cache read) needs no park; the default
// ("batch") submits before the next reactor poll. Read when a ring is set up, so
// bench/file_bench.cpp can compare both in one run (docs/DESIGN.md, "Files", has the
// figures).
bool submit_immediately() noexcept {
  const char* e = std::getenv("FIBERS_URING_SUBMIT");
  return e != nullptr && std::strcmp(e, "immediate") == 0;
}

}  // namespace

uring* uring::ensure(io_thread& t, bool drive) noexcept {
  // The reactor's completion source is always a uring: it is the only kind there is. A later
  // backend with another kind would make this a checked cast.
  auto& c = t.reactor().completions;
  if (!c) [[unlikely]] {
    auto* u = new (std::nothrow) uring;
    if (u == nullptr) return nullptr;  // try again next time
    c.reset(u);
    // A failed set-up is kept (usable_ stays false): io_uring is not probed again here.
    u->setup(t, drive);
  }
  return static_cast<uring*>(c.get());
}

uring* uring::of(io_thread& t) noexcept {
  uring* u = ensure(t, false);
  return u != nullptr && u->usable_ ? u : nullptr;
}

uring* uring::start_driving(io_thread& t) noexcept {
  uring* u = ensure(t, true);
  return u != nullptr && u->usable_ && u->drive_ ? u : nullptr;
}

namespace {
// user_data of the reactor fd's multishot poll. An operation's user_data is the address of
// its uring_op (never 1), a cancel request's is 0.
constexpr std::uint64_t epoll_tag = 1;
}  // namespace

int uring::drive(class reactor& r, clock::duration timeout) noexcept {
  if (!epoll_armed_) {
    if (io_uring_sqe* s = sqe(); s != nullptr) {
      io_uring_prep_poll_multishot(s, r.native_handle(), POLLIN);
      io_uring_sqe_set_data64(s, epoll_tag);
      epoll_armed_ = true;
    }
  }
  // Events the reactor's last poll left behind raise no new readiness of its fd: look now.
  if (r.more_pending()) timeout = clock::duration::zero();
  if (timeout == clock::duration::zero()) {
    // Submits and runs the completions the kernel deferred to this thread, without waiting.
    io_uring_submit_and_get_events(&ring_);
  } else {
    __kernel_timespec ts{};
    __kernel_timespec* tsp = nullptr;
    if (timeout > clock::duration::zero()) {
      const auto ns = timeout.count();
      ts.tv_sec = ns / 1'000'000'000;
      ts.tv_nsec = ns % 1'000'000'000;
      tsp = &ts;
    }
    io_uring_cqe* cqe = nullptr;
    // -ETIME (the timeout), -EINTR (a signal): nothing to do, the loop goes round.
    io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, tsp, nullptr);
  }
  ++stats_.submits;
  queued_ = io_uring_sq_ready(&ring_);  // what the kernel did not take goes next time
  int events = static_cast<int>(reap());
  // epoll_ready_ may also have been set by a reap outside drive() (uring::wait, immediate mode).
  if (epoll_ready_ || r.more_pending()) {
    epoll_ready_ = false;
    events += r.poll(clock::duration::zero());
  }
  return events;
}

bool uring::setup(io_thread& t, bool drive) noexcept {
  immediate_ = submit_immediately();
  // SINGLE_ISSUER: only this thread ever submits (and the kernel can skip locking for it);
  // SUBMIT_ALL: one bad SQE in a batch does not hold back the others. DEFER_TASKRUN (Linux
  // 6.1, needs SINGLE_ISSUER): completion work runs only when this thread enters the ring,
  // never by interrupting it, which is what lets the ring drive the thread. Older kernels
  // refuse these flags: fall back to the plain set-up (which never drives).
  io_uring_params p{};
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER;
  if (drive) p.flags |= IORING_SETUP_DEFER_TASKRUN;
  p.cq_entries = cq_entries;
  int r = io_uring_queue_init_params(sq_entries, &ring_, &p);
  drive_ = r == 0 && drive;
  if (r == -EINVAL) {
    p = {};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    r = io_uring_queue_init_params(sq_entries, &ring_, &p);
  }
  if (r < 0) return false;
  ring_ok_ = true;
  probe_ = io_uring_get_probe_ring(&ring_);
  if (!supports(IORING_OP_READ) || !supports(IORING_OP_WRITE) || !supports(IORING_OP_ASYNC_CANCEL)) {
    drive_ = false;
    return false;
  }
  if (drive_) {
    if (!supports(IORING_OP_RECV) || !supports(IORING_OP_SEND) || !supports(IORING_OP_POLL_ADD)) {
      drive_ = false;
      return false;
    }
    usable_ = true;  // completions are reaped by drive(): no eventfd
    return true;
  }
  efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd_ < 0) return false;
  if (io_uring_register_eventfd(&ring_, efd_) != 0) return false;
  std::error_code ec;
  reactor_ = &t.reactor();
  slot_ = reactor_->open(efd_, io_handler{&uring::on_event, this}, ec);
  usable_ = slot_ != nullptr;
  return usable_;
}

uring::~uring() {
  // Runs on the I/O thread when its loop ends (io_thread::main): no fiber is left, so no
  // operation is in flight; the CQEs of cancel requests nobody reaped go with the ring.
  if (slot_ != nullptr) reactor_->close(slot_);
  if (probe_ != nullptr) io_uring_free_probe(probe_);
  if (ring_ok_) io_uring_queue_exit(&ring_);
  if (efd_ >= 0) ::close(efd_);
}

io_uring_sqe* uring::sqe() noexcept {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  if (s == nullptr) {
    submit();  // the queue is full: send this batch now
    s = io_uring_get_sqe(&ring_);
    if (s == nullptr) return nullptr;
  }
  ++queued_;
  return s;
}

void uring::submit() noexcept {
  int r;
  do {
    r = io_uring_submit(&ring_);
  } while (r == -EINTR);
  ++stats_.submits;
  // What the kernel did not take (EAGAIN/EBUSY under memory pressure) stays queued and goes
  // with the next poll.
  queued_ = io_uring_sq_ready(&ring_);
}

unsigned uring::reap() noexcept {
  io_uring_cqe* cqes[64];
  unsigned total = 0;
  for (;;) {
    // peek_batch also asks the kernel to flush completions it kept on its overflow list.
    const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, 64);
    if (n == 0) return total;
    total += n;
    for (unsigned i = 0; i < n; ++i) {
      if (cqes[i]->user_data == epoll_tag) {
        epoll_ready_ = true;
        // A multishot poll the kernel ended (no F_MORE) is armed again by the next drive().
        if ((cqes[i]->flags & IORING_CQE_F_MORE) == 0) epoll_armed_ = false;
        continue;
      }
      // user_data 0: the CQE of a cancel request, which nobody waits for.
      auto* op = reinterpret_cast<uring_op*>(static_cast<std::uintptr_t>(cqes[i]->user_data));
      if (op == nullptr) continue;
      op->res = cqes[i]->res;
      op->flags = cqes[i]->flags;
      op->done = true;
      // Only queues the fiber: `op` (on its stack) stays valid while this loop runs.
      take_and_fire(op->w, wake_reason::ready);
    }
    io_uring_cq_advance(&ring_, n);
    stats_.reaped += n;
  }
}

void uring::on_event(void* ctx, io_slot&, std::uint32_t) noexcept {
  // The eventfd is registered edge-triggered and every CQE the kernel posts signals it (a new
  // edge), so its counter need not be read: one syscall fewer per batch. (It would take 2^64
  // completions to saturate it.)
  static_cast<uring*>(ctx)->reap();
}

void uring::cancel_and_wait(uring_op& op, int fd) noexcept {
  if (op.done) return;
  if (io_uring_sqe* s = sqe(); s != nullptr) {
    io_uring_prep_cancel64(s, reinterpret_cast<std::uintptr_t>(&op), 0);
    io_uring_sqe_set_data64(s, 0);
    submit();
  }
  // Without an SQE for the cancel (the kernel takes no submissions), the operation can still
  // only complete by itself: wait for that.
  while (!op.done) {
    waiter w;
    op.w = &w;
    park(w, clock::time_point::max(), false, "io_uring cancel", fd);
    op.w = nullptr;
  }
}

int uring::wait(uring_op& op, clock::time_point until, bool cancelable, const char* what, int fd,
                std::error_code& ec) noexcept {
  ec.clear();
  ++stats_.ops;
  if (immediate_) {
    submit();
    reap();  // a page-cache read has completed inside io_uring_enter: no park
  }
  if (op.done) return op.res;
  waiter w;
  op.w = &w;
  const wake_reason r = park(w, until, cancelable, what, fd);
  op.w = nullptr;
  if (op.done) return op.res;  // completed (also when the CQE beat a timer that fired first)
  // The wait ended first (timeout or cancellation): cancel the operation in the kernel and
  // wait for its CQE, which comes either way (canceled, or completed after all).
  cancel_and_wait(op, fd);
  // An operation interrupted in an io_uring worker thread reports EINTR.
  if (op.res == -ECANCELED || op.res == -EINTR) {
    ec = r == wake_reason::timeout ? std::make_error_code(std::errc::timed_out) : make_error_code(errc::canceled);
    return -ECANCELED;
  }
  return op.res;
}

}  // namespace fibers::detail
