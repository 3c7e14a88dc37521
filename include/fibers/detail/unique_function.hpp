// fibers/detail/unique_function.hpp - a move-only `void()` callable (std::move_only_function
// is C++23); lets spawn() take lambdas that own sockets.
//
// Callables of up to 48 bytes that move without throwing live inline (no allocation: spawn and
// post of a typical lambda allocate nothing for it); larger ones go to the heap.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace fibers::detail {

class unique_function {
 public:
  unique_function() noexcept = default;
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, unique_function> && std::is_invocable_v<std::decay_t<F>&>)
  unique_function(F&& f)  // NOLINT: implicit by design
  {
    using T = std::decay_t<F>;
    if constexpr (fits_inline<T>) {
      ::new (static_cast<void*>(storage_)) T(std::forward<F>(f));
      ops_ = &inline_ops<T>;
    } else {
      *reinterpret_cast<T**>(storage_) = new T(std::forward<F>(f));
      ops_ = &heap_ops<T>;
    }
  }
  unique_function(unique_function&& other) noexcept : ops_(other.ops_) {
    if (ops_ != nullptr) {
      ops_->move(other.storage_, storage_);
      other.ops_ = nullptr;
    }
  }
  unique_function& operator=(unique_function&& other) noexcept {
    if (this != &other) {
      reset();
      if (other.ops_ != nullptr) {
        other.ops_->move(other.storage_, storage_);
        ops_ = std::exchange(other.ops_, nullptr);
      }
    }
    return *this;
  }
  unique_function(const unique_function&) = delete;
  unique_function& operator=(const unique_function&) = delete;
  ~unique_function() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  void operator()() { ops_->call(storage_); }

 private:
  static constexpr std::size_t inline_size = 48;
  template <class T>
  static constexpr bool fits_inline = sizeof(T) <= inline_size &&
                                      alignof(T) <= alignof(std::max_align_t) &&
                                      std::is_nothrow_move_constructible_v<T>;
  struct ops {
    void (*call)(void* self);
    void (*move)(void* from, void* to) noexcept;  // leaves `from` destroyed
    void (*destroy)(void* self) noexcept;
  };
  template <class T>
  static constexpr ops inline_ops{
      [](void* self) { (*static_cast<T*>(self))(); },
      [](void* from, void* to) noexcept {
        ::new (to) T(std::move(*static_cast<T*>(from)));
        static_cast<T*>(from)->~T();
      },
      [](void* self) noexcept { static_cast<T*>(self)->~T(); }};
  template <class T>
  static constexpr ops heap_ops{
      [](void* self) { (**static_cast<T**>(self))(); },
      [](void* from, void* to) noexcept { *static_cast<T**>(to) = *static_cast<T**>(from); },
      [](void* self) noexcept { delete *static_cast<T**>(self); }};

  void reset() noexcept {
    if (ops_ != nullptr) std::exchange(ops_, nullptr)->destroy(storage_);
  }

  const ops* ops_ = nullptr;
  alignas(std::max_align_t) unsigned char storage_[inline_size];
};

}  // namespace fibers::detail
