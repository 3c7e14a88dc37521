// fibers/detail/wait_list.hpp - an intrusive FIFO of waiting fibers/threads, for primitives
// (futures, channels, locks) that guard it with their own mutex.
#pragma once

#include <cstddef>

#include "fibers/detail/waiter.hpp"

namespace fibers::detail {

/// A waiter's entry in one primitive's queue. Lives on the waiter's stack. One waiter may have
/// nodes in several lists at once (select, when_any); the first claim wins.
struct wait_node {
  explicit wait_node(waiter& wt, void* d = nullptr, std::size_t t = 0) noexcept
      : w(&wt), data(d), tag(t) {}
  waiter* w;
  void* data;       // primitive-specific: where a value goes to / comes from
  std::size_t tag;  // primitive-specific: e.g. the select case index
  wait_node* prev = nullptr;
  wait_node* next = nullptr;
  bool linked = false;
};

/// FIFO of wait_nodes. Not thread-safe: the owning primitive holds its lock around every call.
class wait_list {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  void push_back(wait_node& n) noexcept {
    n.prev = tail_;
    n.next = nullptr;
    if (tail_ != nullptr) tail_->next = &n;
    else head_ = &n;
    tail_ = &n;
    n.linked = true;
  }
  /// Unlinks `n` if it is still queued; false if a waker already took it.
  bool remove(wait_node& n) noexcept {
    if (!n.linked) return false;
    if (n.prev != nullptr) n.prev->next = n.next;
    else head_ = n.next;
    if (n.next != nullptr) n.next->prev = n.prev;
    else tail_ = n.prev;
    n.prev = n.next = nullptr;
    n.linked = false;
    return true;
  }
  wait_node* front() const noexcept { return head_; }
  /// Unlinks nodes from the front until one whose waiter this call claims with `r`; returns it
  /// (schedule its waiter after dropping the lock) or nullptr. Nodes whose waiters gave up or
  /// were claimed elsewhere are dropped.
  wait_node* claim_front(wake_reason r) noexcept {
    while (wait_node* n = head_) {
      remove(*n);
      if (n->w->claim(r)) return n;
    }
    return nullptr;
  }

 private:
  wait_node* head_ = nullptr;
  wait_node* tail_ = nullptr;
};

/// Waiters claimed under a lock, scheduled after it is released. Reuses the nodes' links.
class wake_batch {
 public:
  wake_batch() = default;
  wake_batch(const wake_batch&) = delete;
  wake_batch& operator=(const wake_batch&) = delete;
  ~wake_batch() { run(); }
  /// Appends `n` (waiters are scheduled in the order they were claimed: FIFO fairness).
  void add(wait_node* n) noexcept {
    n->next = nullptr;
    if (tail_ != nullptr) tail_->next = n;
    else head_ = n;
    tail_ = n;
  }
  /// Claims every node of `list` with `r` (dropping those already claimed elsewhere).
  void claim_all(wait_list& list, wake_reason r) noexcept {
    while (wait_node* n = list.claim_front(r)) add(n);
  }
  /// Schedules the collected waiters (call after unlocking).
  void run() noexcept {
    while (wait_node* n = head_) {
      head_ = n->next;
      n->w->schedule();  // n may vanish now
    }
    tail_ = nullptr;
  }

 private:
  wait_node* head_ = nullptr;
  wait_node* tail_ = nullptr;
};

}  // namespace fibers::detail
