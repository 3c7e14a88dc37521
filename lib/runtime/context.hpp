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

// x86-64 ELF has its own switch (switch.cpp); elsewhere Boost.Context's. Not in a build with
// shadow stacks (-fcf-protection=return/full sets bit 2 of __CET__): its `ret` into another
// context's stack would fault where the kernel enforces them, while Boost's jump switches the
// shadow stack too.
#if defined(__x86_64__) && defined(__ELF__) && !(defined(__CET__) && (__CET__ & 2))
#define FIBERS_OWN_JUMP 1
extern "C" boost::context::detail::transfer_t fibers_jump_context(boost::context::detail::fcontext_t to,
                                                                  void* data) noexcept;
#else
#define FIBERS_OWN_JUMP 0
#endif

namespace fibers::detail {

/// Switches to `to` (a context saved by a switch, or fresh from make_fcontext), passing `data`;
/// returns when something switches back, with that side's saved context and data. Boost's
/// jump_fcontext, except that the x86-64 version keeps the CPU's return predictor in step
/// (switch.cpp).
inline boost::context::detail::transfer_t jump_context(boost::context::detail::fcontext_t to, void* data) noexcept {
#if FIBERS_OWN_JUMP
  return fibers_jump_context(to, data);
#else
  return boost::context::detail::jump_fcontext(to, data);
#endif
}

/// One execution context of an I/O thread: a fiber, or the thread's scheduler loop.
struct context {
  boost::context::detail::fcontext_t fctx = nullptr;  // saved registers while switched out
  context* next = nullptr;  // link in a ready_queue or a remote_queue (never both at once)
  context* batch_last = nullptr;  // in a backlog_queue, on a batch's first fiber: its last
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
  /// Appends the chain first..last (linked through next; last->next is null).
  void append(context* first, context* last) noexcept {
    if (tail_ != nullptr) tail_->next = first;
    else head_ = first;
    tail_ = last;
  }

 private:
  context* head_ = nullptr;
  context* tail_ = nullptr;
};

/// New fibers not yet admitted to the ready queue (io_thread::make_ready_new), in spawn order,
/// cut into batches as they arrive. Taking a batch relinks its two ends and never walks it:
/// each fiber's state is on its own stack page, and walking them cost a cache miss per fiber
/// (about 7 % of spawn_batch_join). Home thread only.
class backlog_queue {
 public:
  explicit backlog_queue(unsigned batch) noexcept : batch_(batch) {}
  bool empty() const noexcept { return head_ == nullptr; }
  void push_back(context* c) noexcept {
    c->next = nullptr;
    if (head_ == nullptr) {
      head_ = open_ = c;
      open_count_ = 0;
    } else {
      if (open_count_ == batch_) {  // the open batch is full: close it, c opens the next one
        open_->batch_last = tail_;
        open_ = c;
        open_count_ = 0;
      }
      tail_->next = c;
    }
    tail_ = c;
    ++open_count_;
  }
  /// Moves the oldest batch to the back of `q`; returns how many contexts it held.
  /// Precondition: not empty.
  unsigned pop_batch_into(ready_queue& q) noexcept {
    context* first = head_;
    context* last;
    unsigned n;
    if (first == open_) {  // the last batch: everything
      last = tail_;
      n = open_count_;
      head_ = tail_ = open_ = nullptr;
      open_count_ = 0;
    } else {
      last = first->batch_last;
      n = batch_;
      head_ = last->next;
      last->next = nullptr;
    }
    q.append(first, last);
    return n;
  }

 private:
  const unsigned batch_;
  context* head_ = nullptr;
  context* tail_ = nullptr;
  context* open_ = nullptr;  // first context of the last batch, which is still filling
  unsigned open_count_ = 0;  // contexts in that batch
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
