// lib/sync/select.cpp - the type-erased engine of fibers::select.
//
// Like Go's selectgo: lock every channel involved in address order (so two selects over the
// same channels cannot deadlock), try the cases in a random order drawn afresh for each call
// (fairness: every ready case is equally likely to win), and if none is ready queue one node
// per channel case, all sharing one waiter: the first counterpart to claim the waiter
// completes its case and records the index; the other nodes are dropped by whoever finds
// them, or removed by us after waking.
#include "fibers/select.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>

namespace fibers::detail {
namespace {

// Cases up to this count are ordered and locked with arrays on the stack; more take one heap
// block each.
constexpr std::size_t inline_cases = 16;

// A fixed-size array that lives on the stack for up to inline_cases elements.
template <class T>
class small_array {
 public:
  explicit small_array(std::size_t n) : data_(inline_) {
    if (n > inline_cases) {
      heap_ = std::make_unique<T[]>(n);
      data_ = heap_.get();
    }
  }
  small_array(const small_array&) = delete;
  small_array& operator=(const small_array&) = delete;
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  T* begin() noexcept { return data_; }

 private:
  T inline_[inline_cases];
  std::unique_ptr<T[]> heap_;
  T* data_;
};

// splitmix64: a few multiplies per draw from a thread_local 64-bit state seeded once per
// thread (Go's cheaprand plays this part in selectgo). Not for secrets; only for the order in
// which select looks at its cases.
std::uint64_t cheap_random() noexcept {
  thread_local std::uint64_t state = [] {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) ^ rd();
  }();
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A number in [0, n) (Lemire's multiply-shift; the bias, n / 2^32, is far below anything a
// select could observe).
std::size_t random_below(std::size_t n) noexcept {
  return static_cast<std::size_t>((static_cast<std::uint64_t>(static_cast<std::uint32_t>(cheap_random())) * n) >> 32);
}

// Fills order[0..n) with a uniformly random permutation of 0..n-1 (Fisher-Yates "inside-out",
// as Go builds pollorder): the first ready case met while walking `order` is then equally
// likely to be any of the ready ones, wherever they sit among the empty ones.
void shuffle_order(small_array<std::size_t>& order, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t j = random_below(i + 1);
    if (j != i) order[i] = order[j];
    order[j] = i;
  }
}

class lock_set {
 public:
  lock_set(select_case* const* cases, std::size_t n) : mutexes_(n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (detail::spin_lock* m = cases[i]->mutex()) mutexes_[count_++] = m;
    }
    std::sort(mutexes_.begin(), mutexes_.begin() + count_);
    count_ = static_cast<std::size_t>(std::unique(mutexes_.begin(), mutexes_.begin() + count_) - mutexes_.begin());
  }
  void lock() {
    for (std::size_t i = 0; i < count_; ++i) mutexes_[i]->lock();
  }
  void unlock() {
    for (std::size_t i = count_; i > 0; --i) mutexes_[i - 1]->unlock();
  }

 private:
  small_array<detail::spin_lock*> mutexes_;
  std::size_t count_ = 0;
};

}  // namespace

std::size_t run_select(select_case* const* cases, std::size_t n) {
  lock_set locks(cases, n);
  clock::time_point until = clock::time_point::max();
  std::size_t timeout_index = n;
  std::size_t default_index = n;
  for (std::size_t i = 0; i < n; ++i) {
    if (cases[i]->is_default()) default_index = i;
    if (cases[i]->until() < until) {
      until = cases[i]->until();
      timeout_index = i;
    }
  }

  small_array<std::size_t> order(n);
  shuffle_order(order, n);
  locks.lock();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = order[k];
    if (cases[i]->mutex() == nullptr) continue;
    wake_batch wake;
    const op_result r = cases[i]->try_now(wake);
    if (r == op_result::would_block) continue;
    locks.unlock();
    wake.run();
    cases[i]->finish(r == op_result::closed);
    return i;
  }
  if (default_index != n) {
    locks.unlock();
    cases[default_index]->finish(false);
    return default_index;
  }

  waiter w;
  std::size_t fired = n;
  for (std::size_t i = 0; i < n; ++i) {
    if (cases[i]->mutex() != nullptr) cases[i]->enqueue(w, &fired, i);
  }
  locks.unlock();
  const wake_reason r = park(w, until, true, "select");
  locks.lock();
  for (std::size_t i = 0; i < n; ++i) {
    if (cases[i]->mutex() != nullptr) cases[i]->dequeue();
  }
  locks.unlock();

  switch (r) {
    case wake_reason::ready:
    case wake_reason::closed:
      cases[fired]->finish(r == wake_reason::closed);
      return fired;
    case wake_reason::timeout:
      if (timeout_index == n || clock::now() < until) {
        // Only the fiber's inherited deadline (with_deadline) can end a select without a
        // timeout case.
        throw std::system_error(std::make_error_code(std::errc::timed_out), "select");
      }
      cases[timeout_index]->finish(false);
      return timeout_index;
    default:
      throw canceled("select");
  }
}

}  // namespace fibers::detail
