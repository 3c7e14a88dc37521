// lib/cpu/chase_lev.hpp - the Chase-Lev work-stealing deque of one CPU worker.
//
// The owner pushes and pops at the bottom (LIFO: the task it spawned last is the one whose data
// is hot in its cache); thieves take from the top (FIFO: the oldest task, usually the biggest
// piece of a recursive split). Lock-free; the only contention is on `top_` when a thief and
// the owner go for the last element, or two thieves for the same one.
//
// Memory orders follow Le, Pop, Cohen, Zappa Nardelli, "Correct and Efficient Work-Stealing for
// Weak Memory Models" (PPoPP 2013), Fig. 1, with each "relaxed access + standalone fence" pair
// replaced by one access at least as strong, because ThreadSanitizer does not model
// atomic_thread_fence and would report false races. On x86-64 the generated code is the same
// (a seq_cst store is the paper's xchg/mfence, every load is a plain mov). The mapping:
//
//   paper                                            here
//   push:  fence(release); bottom = b+1 (relaxed)    bottom.store(b+1, release)
//   take:  bottom = b (relaxed); fence(seq_cst);     bottom.store(b, seq_cst);
//          t = top (relaxed)                         t = top.load(seq_cst)
//   take:  bottom = b+1 (relaxed)  [restores]        bottom.store(b+1, release)
//   steal: t = top (acquire); fence(seq_cst);        t = top.load(seq_cst);
//          b = bottom (acquire)                      b = bottom.load(seq_cst)
//   steal: a = array (consume)                       array.load(acquire)
//   CAS on top: seq_cst / relaxed                    same
//
// Unlike the paper's integers our elements are pointers to tasks built by the owner, so a thief
// must be synchronized with the owner's writes to the task, not just see the pointer: every
// store to `bottom_` is therefore at least a release (the paper's restoring stores in take()
// are relaxed), and whichever bottom value a thief reads carries all earlier pushes with it.
//
// The array grows (doubling) when full and never shrinks. A thief may still be reading an old
// array after the owner swapped in a bigger one, so old arrays are retired, not freed, until the
// deque is destroyed (memory stays below twice the largest size reached).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

namespace fibers::cpu::detail {

template <class T>
  requires std::is_pointer_v<T>
class chase_lev_deque {
 public:
  explicit chase_lev_deque(std::size_t log2_capacity = 8)
      : array_(new ring(std::int64_t{1} << log2_capacity)) {}
  chase_lev_deque(const chase_lev_deque&) = delete;
  chase_lev_deque& operator=(const chase_lev_deque&) = delete;
  ~chase_lev_deque() { delete array_.load(std::memory_order_relaxed); }

  /// Owner only: adds `x` at the bottom (grows the array when full).
  void push(T x) {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    const std::int64_t t = top_.load(std::memory_order_acquire);
    ring* a = array_.load(std::memory_order_relaxed);
    if (b - t > a->capacity - 1) a = grow(a, t, b);
    a->put(b, x);
    bottom_.store(b + 1, std::memory_order_release);
  }

  /// Owner only: takes the element at the bottom, or nullptr when empty.
  T pop() noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    ring* a = array_.load(std::memory_order_relaxed);
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    if (t > b) {  // was empty
      bottom_.store(b + 1, std::memory_order_release);
      return nullptr;
    }
    T x = a->get(b);
    if (t == b) {
      // The last element: thieves may be going for it too; whoever moves top wins.
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
        x = nullptr;
      }
      bottom_.store(b + 1, std::memory_order_release);
    }
    return x;
  }

  /// Any thread: takes the element at the top. Returns nullptr when the deque is empty or when
  /// another thread took that element first; `lost_race` tells the two apart (worth a retry).
  T steal(bool& lost_race) noexcept {
    lost_race = false;
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    const std::int64_t b = bottom_.load(std::memory_order_seq_cst);
    if (t >= b) return nullptr;
    ring* a = array_.load(std::memory_order_acquire);
    T x = a->get(t);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      lost_race = true;
      return nullptr;
    }
    return x;
  }

  /// Any thread: true if the deque looked non-empty (a hint; callers order it with fences).
  bool maybe_nonempty() const noexcept {
    return bottom_.load(std::memory_order_acquire) > top_.load(std::memory_order_acquire);
  }

 private:
  struct ring {
    explicit ring(std::int64_t cap) : capacity(cap), slots(new std::atomic<T>[static_cast<std::size_t>(cap)]) {}
    T get(std::int64_t i) const noexcept { return slots[i & (capacity - 1)].load(std::memory_order_relaxed); }
    void put(std::int64_t i, T x) noexcept { slots[i & (capacity - 1)].store(x, std::memory_order_relaxed); }
    const std::int64_t capacity;  // a power of two
    std::unique_ptr<std::atomic<T>[]> slots;
  };

  ring* grow(ring* old, std::int64_t t, std::int64_t b) {
    auto bigger = std::make_unique<ring>(old->capacity * 2);
    for (std::int64_t i = t; i < b; ++i) bigger->put(i, old->get(i));
    retired_.emplace_back(old);  // a thief may still read it
    ring* a = bigger.release();
    array_.store(a, std::memory_order_release);
    return a;
  }

  alignas(64) std::atomic<std::int64_t> top_{0};
  alignas(64) std::atomic<std::int64_t> bottom_{0};
  alignas(64) std::atomic<ring*> array_;
  std::vector<std::unique_ptr<ring>> retired_;  // owner only
};

}  // namespace fibers::cpu::detail
