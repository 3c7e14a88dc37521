// fibers/detail/ring_queue.hpp - the FIFO buffer inside a channel.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace fibers::detail {

/// A growable FIFO of T in one power-of-two ring: push at the back, pop at the front, no
/// allocation once it has grown to the largest size it is used at. std::deque allocates and
/// frees a block every few hundred bytes of traffic, which a buffered channel paid on every
/// lap of its buffer.
template <class T>
class ring_queue {
 public:
  ring_queue() = default;
  ring_queue(const ring_queue&) = delete;
  ring_queue& operator=(const ring_queue&) = delete;
  ~ring_queue() {
    clear();
    std::allocator<T>().deallocate(data_, cap_);
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& front() noexcept { return data_[head_]; }

  /// Appends a T made from `args`; grows (doubling) when full. Strong guarantee: if the
  /// element's construction or the growth throws, the queue is unchanged.
  template <class... Args>
  void emplace_back(Args&&... args) {
    if (size_ == cap_) grow();
    ::new (static_cast<void*>(data_ + ((head_ + size_) & (cap_ - 1)))) T(std::forward<Args>(args)...);
    ++size_;
  }

  void pop_front() noexcept {
    data_[head_].~T();
    head_ = (head_ + 1) & (cap_ - 1);
    --size_;
  }

  void clear() noexcept {
    while (size_ != 0) pop_front();
  }

 private:
  void grow() {
    const std::size_t cap = cap_ == 0 ? 16 : cap_ * 2;
    T* data = std::allocator<T>().allocate(cap);
    std::size_t moved = 0;
    try {
      for (; moved < size_; ++moved) {
        ::new (static_cast<void*>(data + moved)) T(std::move_if_noexcept(data_[(head_ + moved) & (cap_ - 1)]));
      }
    } catch (...) {
      for (std::size_t i = 0; i < moved; ++i) data[i].~T();
      std::allocator<T>().deallocate(data, cap);
      throw;
    }
    for (std::size_t i = 0; i < size_; ++i) data_[(head_ + i) & (cap_ - 1)].~T();
    std::allocator<T>().deallocate(data_, cap_);
    data_ = data;
    cap_ = cap;
    head_ = 0;
  }

  T* data_ = nullptr;
  std::size_t cap_ = 0;  // 0 or a power of two
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace fibers::detail
