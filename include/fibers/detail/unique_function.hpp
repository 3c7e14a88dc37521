// fibers/detail/unique_function.hpp - a move-only `void()` callable (std::move_only_function
// is C++23); lets spawn() take lambdas that own sockets.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

namespace fibers::detail {

class unique_function {
 public:
  unique_function() noexcept = default;
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, unique_function> && std::is_invocable_v<std::decay_t<F>&>)
  unique_function(F&& f)  // NOLINT: implicit by design
      : impl_(std::make_unique<model<std::decay_t<F>>>(std::forward<F>(f))) {}
  explicit operator bool() const noexcept { return static_cast<bool>(impl_); }
  void operator()() { impl_->call(); }

 private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual void call() = 0;
  };
  template <class F>
  struct model final : concept_t {
    explicit model(F&& f) : fn(std::move(f)) {}
    explicit model(const F& f) : fn(f) {}
    void call() override { fn(); }
    F fn;
  };
  std::unique_ptr<concept_t> impl_;
};

}  // namespace fibers::detail
