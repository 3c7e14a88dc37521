// lib/runtime/timer_heap.cpp - binary heap with index tracking.
#include "runtime/timer_heap.hpp"

#include <utility>

namespace fibers::detail {

void timer_heap::push(timer& t) {
  heap_.push_back(&t);
  t.index = heap_.size() - 1;
  sift_up(t.index);
}

void timer_heap::erase(timer& t) noexcept {
  if (!t.armed()) return;
  std::size_t i = t.index;
  timer* last = heap_.back();
  heap_.pop_back();
  t.index = timer::npos;
  if (last == &t) return;
  place(i, last);
  sift_up(i);
  sift_down(last->index);
}

timer* timer_heap::pop_due(clock::time_point now) noexcept {
  if (heap_.empty() || heap_.front()->when > now) return nullptr;
  timer* t = heap_.front();
  erase(*t);
  return t;
}

void timer_heap::sift_up(std::size_t i) noexcept {
  timer* t = heap_[i];
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (heap_[parent]->when <= t->when) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
}

void timer_heap::sift_down(std::size_t i) noexcept {
  timer* t = heap_[i];
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1]->when < heap_[child]->when) ++child;
    if (t->when <= heap_[child]->when) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, t);
}

}  // namespace fibers::detail
