// lib/runtime/context.hpp - what an I/O thread switches between, and the queues that hold it.
//
// A context is either a fiber (fiber_state derives from it) or the I/O thread's own scheduler
// loop, which runs on the OS thread's stack. Switching is Boost.Context's fcontext jump: while
// a context is switched out, `fctx` points at its registers saved on its own stack. Every
// switch passes the context being left as the jump's data, and the resumed side stores the
// left context's fctx (io_thread::after_resume), so no switch needs more than one jump.
#pragma once

#include <atomic>

#include <boost/context/detail/fcontext.hpp>

#include "runtime/sanitizer.hpp"

namespace fibers::detail {

/// One execution context of an I/O thread: a fiber, or the thread's scheduler loop.
struct context {
  boost::context::detail::fcontext_t fctx = nullptr;  // saved registers while switched out
  context* next = nullptr;  // link in a ready_queue or a remote_queue (never both at once)
  bool is_fiber = false;
  sanitizer_context san;  // ASan/TSan bookkeeping (empty without sanitizers)
};

/// The FIFO of contexts ready to run on one I/O thread. Intrusive (no allocation); home thread
/// only.
class ready_queue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  context* front() const noexcept { return head_; }
  void push_back(context* c) noexcept {
    c->next = nullptr;
    if (tail_ != nullptr) tail_->next = c;
    else head_ = c;
    tail_ = c;
  }
  /// Precondition: not empty.
  context* pop_front() noexcept {
    context* c = head_;
    head_ = c->next;
    if (head_ == nullptr) tail_ = nullptr;
    return c;
  }

 private:
  context* head_ = nullptr;
  context* tail_ = nullptr;
};

/// Contexts woken from other threads for one I/O thread: any thread pushes, the home thread
/// takes them all at once. A lock-free stack whose drain restores the push order.
class remote_queue {
 public:
  /// Any thread. The release publishes what the waker wrote before (the waiter's reason).
  void push(context* c) noexcept {
    context* head = head_.load(std::memory_order_relaxed);
    do {
      c->next = head;
    } while (!head_.compare_exchange_weak(head, c, std::memory_order_release, std::memory_order_relaxed));
  }
  bool empty() const noexcept { return head_.load(std::memory_order_relaxed) == nullptr; }
  /// Home thread: moves every pushed context to the back of `q`, oldest first.
  void drain_into(ready_queue& q) noexcept {
    if (empty()) return;
    context* lifo = head_.exchange(nullptr, std::memory_order_acquire);
    context* fifo = nullptr;
    while (lifo != nullptr) {
      context* next = lifo->next;
      lifo->next = fifo;
      fifo = lifo;
      lifo = next;
    }
    while (fifo != nullptr) {
      context* next = fifo->next;
      q.push_back(fifo);
      fifo = next;
    }
  }

 private:
  std::atomic<context*> head_{nullptr};
};

}  // namespace fibers::detail
