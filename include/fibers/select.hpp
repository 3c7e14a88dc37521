// fibers/select.hpp - wait on several channel operations at once (Go's select).
#pragma once

#include "fibers/detail/config.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <mutex>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "fibers/channel.hpp"
#include "fibers/clock.hpp"
#include "fibers/detail/spin_lock.hpp"
#include "fibers/error.hpp"

namespace fibers {

namespace detail {

/// What select() needs from each case, type-erased.
class select_case {
 public:
  virtual ~select_case() = default;
  /// The lock of the channel (nullptr for timeout/default cases).
  virtual detail::spin_lock* mutex() noexcept { return nullptr; }
  /// Under the lock: complete now if possible.
  virtual op_result try_now(wake_batch&) { return op_result::would_block; }
  /// Under the lock: queue `w` on the channel, recording `fired` / `index` for the completer.
  virtual void enqueue(waiter&, std::size_t*, std::size_t) {}
  /// Under the lock: take the queued node out again (if nobody took it).
  virtual void dequeue() {}
  /// After the case fired (closed: the channel was closed): run the handler.
  virtual void finish(bool closed) = 0;
  /// Deadline of a timeout case; time_point::max() for others.
  virtual clock::time_point until() const noexcept { return clock::time_point::max(); }
  virtual bool is_default() const noexcept { return false; }
};

/// Runs a select over `cases` (see fibers::select). Returns the index of the case that ran.
std::size_t run_select(select_case* const* cases, std::size_t n);

}  // namespace detail

/// A select case receiving from `ch`; the handler gets the value, or std::nullopt if the
/// channel is closed and drained.
template <class T, class F>
class recv_case final : public detail::select_case {
 public:
  /// Builds the case (select() users call the builders below instead).
  recv_case(channel<T>& ch, F f) : st_(ch.st_.get()), f_(std::move(f)) {}
  /// @cond internal
  detail::spin_lock* mutex() noexcept override { return &st_->mu; }
  detail::op_result try_now(detail::wake_batch& wake) override { return st_->try_recv_locked(value_, wake); }
  void enqueue(detail::waiter& w, std::size_t* fired, std::size_t index) override {
    slot_ = {&value_, fired, index};
    node_.emplace(w, &slot_);
    st_->recvq.push_back(*node_);
  }
  void dequeue() override { st_->recvq.remove(*node_); }
  void finish(bool) override { f_(std::move(value_)); }
  /// @endcond

 private:
  detail::channel_state<T>* st_;
  F f_;
  std::optional<T> value_;
  detail::recv_slot<T> slot_{nullptr};
  std::optional<detail::wait_node> node_;
};

/// A select case sending `value` on `ch`; the handler runs once the value is sent. If the
/// channel is (or gets) closed, select throws errc::channel_closed.
template <class T, class F>
class send_case final : public detail::select_case {
 public:
  /// Builds the case (select() users call the builders below instead).
  send_case(channel<T>& ch, T value, F f) : st_(ch.st_.get()), value_(std::move(value)), f_(std::move(f)) {}
  /// @cond internal
  detail::spin_lock* mutex() noexcept override { return &st_->mu; }
  detail::op_result try_now(detail::wake_batch& wake) override { return st_->try_send_locked(std::move(value_), wake); }
  void enqueue(detail::waiter& w, std::size_t* fired, std::size_t index) override {
    slot_ = {&value_, fired, index};
    node_.emplace(w, &slot_);
    st_->sendq.push_back(*node_);
  }
  void dequeue() override { st_->sendq.remove(*node_); }
  void finish(bool closed) override {
    if (closed) throw std::system_error(make_error_code(errc::channel_closed), "select send");
    f_();
  }
  /// @endcond

 private:
  detail::channel_state<T>* st_;
  T value_;
  F f_;
  detail::send_slot<T> slot_{nullptr};
  std::optional<detail::wait_node> node_;
};

/// A select case that runs when `dl` passes before any channel case is ready.
template <class F>
class timeout_case final : public detail::select_case {
 public:
  /// Builds the case (select() users call the builders below instead).
  timeout_case(deadline dl, F f) : until_(dl.when()), f_(std::move(f)) {}
  /// @cond internal
  clock::time_point until() const noexcept override { return until_; }
  void finish(bool) override { f_(); }
  /// @endcond

 private:
  clock::time_point until_;
  F f_;
};

/// A select case that runs at once when no channel case is ready (Go's `default:`).
template <class F>
class default_case final : public detail::select_case {
 public:
  /// Builds the case (select() users call the builders below instead).
  explicit default_case(F f) : f_(std::move(f)) {}
  /// @cond internal
  bool is_default() const noexcept override { return true; }
  void finish(bool) override { f_(); }
  /// @endcond

 private:
  F f_;
};

/// Case builders for select(): receive from `ch` (the handler gets std::optional<T>), send
/// `value` on `ch`, run when `dl` passes, or run at once when nothing else is ready.
///@{
template <class T, class F>
recv_case<T, F> on_recv(channel<T>& ch, F f) { return {ch, std::move(f)}; }
template <class T, class U, class F>
send_case<T, F> on_send(channel<T>& ch, U&& value, F f) { return {ch, T(std::forward<U>(value)), std::move(f)}; }
template <class F>
timeout_case<F> on_timeout(deadline dl, F f) { return {dl, std::move(f)}; }
template <class F>
default_case<F> on_default(F f) { return default_case<F>(std::move(f)); }
///@}

/// Waits until one of the cases can proceed, performs exactly that one, runs its handler and
/// returns its index (argument order). When several are ready, each of them is equally likely
/// to be picked (Go's rule: the cases are tried in a fresh random order on every call,
/// wherever the ready ones sit among the others), so no case starves. With an on_default case
/// it never waits; with an on_timeout case it gives up at that deadline. A cancellation point:
/// throws fibers::canceled. Channels may be shared with fibers on other I/O threads and plain
/// threads. Allocates nothing of its own for up to 16 cases.
///
///     fibers::select(
///         fibers::on_recv(jobs, [&](std::optional<job> j) { ... }),
///         fibers::on_send(results, r, [&] { ... }),
///         fibers::on_timeout(100ms, [&] { ... }));
template <class... C>
std::size_t select(C&&... cases) {
  static_assert(sizeof...(C) > 0, "select needs at least one case");
  detail::select_case* list[] = {&cases...};
  return detail::run_select(list, sizeof...(C));
}

}  // namespace fibers
