// fibers/channel.hpp - Go-style channels between fibers (on any I/O thread) and plain threads.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <utility>

#include "fibers/clock.hpp"
#include "fibers/detail/ring_queue.hpp"
#include "fibers/detail/spin_lock.hpp"
#include "fibers/detail/wait_list.hpp"
#include "fibers/error.hpp"

namespace fibers {

template <class T>
class channel;

namespace detail {

/// Where a blocked receiver wants its value, and (for select) which case it was.
template <class T>
struct recv_slot {
  std::optional<T>* dest;
  std::size_t* fired = nullptr;  // select: set to `index` by whoever completes this case
  std::size_t index = 0;
};

/// A blocked sender's value.
template <class T>
struct send_slot {
  T* value;
  std::size_t* fired = nullptr;
  std::size_t index = 0;
};

enum class op_result { done, would_block, closed };

/// The shared state of a channel. Every *_locked member requires `mu` held; waiters it claims
/// go into `wake` and are scheduled after the caller unlocks.
template <class T>
struct channel_state {
  explicit channel_state(std::size_t cap) : capacity(cap) {}

  template <class U>
  op_result try_send_locked(U&& v, wake_batch& wake) {
    if (closed) return op_result::closed;
    if (wait_node* n = recvq.claim_front(wake_reason::ready)) {
      auto* slot = static_cast<recv_slot<T>*>(n->data);
      slot->dest->emplace(std::forward<U>(v));
      if (slot->fired != nullptr) *slot->fired = slot->index;
      wake.add(n);
      return op_result::done;
    }
    if (buffer.size() < capacity) {
      buffer.emplace_back(std::forward<U>(v));
      return op_result::done;
    }
    return op_result::would_block;
  }

  op_result try_recv_locked(std::optional<T>& out, wake_batch& wake) {
    if (!buffer.empty()) {
      out.emplace(std::move(buffer.front()));
      buffer.pop_front();
      // A slot freed up: move the first blocked sender's value into the buffer.
      if (wait_node* n = sendq.claim_front(wake_reason::ready)) {
        auto* slot = static_cast<send_slot<T>*>(n->data);
        buffer.emplace_back(std::move(*slot->value));
        if (slot->fired != nullptr) *slot->fired = slot->index;
        wake.add(n);
      }
      return op_result::done;
    }
    if (wait_node* n = sendq.claim_front(wake_reason::ready)) {  // unbuffered rendezvous
      auto* slot = static_cast<send_slot<T>*>(n->data);
      out.emplace(std::move(*slot->value));
      if (slot->fired != nullptr) *slot->fired = slot->index;
      wake.add(n);
      return op_result::done;
    }
    return closed ? op_result::closed : op_result::would_block;
  }

  void close_locked(wake_batch& wake) {
    closed = true;
    while (wait_node* n = recvq.claim_front(wake_reason::closed)) {
      auto* slot = static_cast<recv_slot<T>*>(n->data);
      if (slot->fired != nullptr) *slot->fired = slot->index;
      wake.add(n);
    }
    while (wait_node* n = sendq.claim_front(wake_reason::closed)) {
      auto* slot = static_cast<send_slot<T>*>(n->data);
      if (slot->fired != nullptr) *slot->fired = slot->index;
      wake.add(n);
    }
  }

  spin_lock mu;
  ring_queue<T> buffer;
  const std::size_t capacity;
  bool closed = false;
  wait_list recvq;  // nodes' data: recv_slot<T>*
  wait_list sendq;  // nodes' data: send_slot<T>*
};

/// Parks on queue `q` (guarded by `lk`, held on entry, released on return) until a
/// counterpart completes the operation; returns the error (timed_out, canceled, channel
/// closed) or {} on success.
inline std::error_code block_on(std::unique_lock<detail::spin_lock>& lk, wait_list& q, void* slot,
                                clock::time_point until) {
  waiter w;
  wait_node n(w, slot);
  q.push_back(n);
  lk.unlock();
  const wake_reason r = park(w, until, true, "channel");
  if (r == wake_reason::ready) return {};
  if (r == wake_reason::closed) return make_error_code(errc::channel_closed);
  lk.lock();
  q.remove(n);
  lk.unlock();
  if (r == wake_reason::timeout) return std::make_error_code(std::errc::timed_out);
  return make_error_code(errc::canceled);
}

}  // namespace detail

/// A typed, multi-producer multi-consumer channel. Copies of a channel object share one
/// channel (like Go's `chan T`), so capture it by value in the fibers and threads that use it.
///
/// capacity 0 is a rendezvous (a send waits for a receiver); any other capacity buffers that
/// many values (not only powers of two); channel<T>::unbounded never blocks senders.
/// Blocking calls park only the calling fiber (plain threads block), take a deadline, and are
/// cancellation points. close() lets receivers drain what is buffered, then they see the end;
/// senders - including ones blocked at that moment - get errc::channel_closed and keep their
/// value (it is never half-delivered).
///
///     fibers::channel<int> ch(16);
///     fibers::spawn([ch]() mutable { for (int i = 0; i < 3; ++i) ch.send(i); ch.close(); }).detach();
///     for (int v : ch) use(v);          // 0 1 2, then the loop ends
template <class T>
class channel {
 public:
  /// Capacity meaning "no limit".
  static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

  /// A channel buffering up to `capacity` values (0: unbuffered rendezvous).
  explicit channel(std::size_t capacity = 0)
      : st_(std::make_shared<detail::channel_state<T>>(capacity)) {}

  /// Sends `v`, waiting while the channel is full. Throws std::system_error with
  /// errc::channel_closed, std::errc::timed_out at the deadline, or fibers::canceled.
  void send(T v, deadline dl = {}) {
    std::error_code ec;
    send(std::move(v), ec, dl);
    throw_if_error(ec, "channel send");
  }
  /// Non-throwing send; returns true if sent.
  bool send(T v, std::error_code& ec, deadline dl = {}) {
    ec.clear();
    detail::wake_batch wake;
    std::unique_lock lk(st_->mu);
    switch (st_->try_send_locked(std::move(v), wake)) {
      case detail::op_result::done: lk.unlock(); return true;
      case detail::op_result::closed: ec = make_error_code(errc::channel_closed); return false;
      case detail::op_result::would_block: break;
    }
    detail::send_slot<T> slot{&v};
    ec = detail::block_on(lk, st_->sendq, &slot, dl.when());
    return !ec;
  }
  /// Sends without waiting: false if the channel is full or closed (then `v` is untouched).
  template <class U>
  bool try_send(U&& v) {
    detail::wake_batch wake;
    std::unique_lock lk(st_->mu);
    const bool sent = st_->try_send_locked(std::forward<U>(v), wake) == detail::op_result::done;
    lk.unlock();
    return sent;
  }

  /// Receives the next value, waiting while the channel is empty; std::nullopt once the channel
  /// is closed and drained. Throws std::errc::timed_out at the deadline, or fibers::canceled.
  std::optional<T> recv(deadline dl = {}) {
    std::error_code ec;
    auto v = recv(ec, dl);
    throw_if_error(ec, "channel recv");
    return v;
  }
  /// Non-throwing recv: nullopt with `ec` clear means closed and drained.
  std::optional<T> recv(std::error_code& ec, deadline dl = {}) {
    ec.clear();
    std::optional<T> out;
    detail::wake_batch wake;
    std::unique_lock lk(st_->mu);
    if (st_->try_recv_locked(out, wake) != detail::op_result::would_block) {
      lk.unlock();
      return out;
    }
    detail::recv_slot<T> slot{&out};
    ec = detail::block_on(lk, st_->recvq, &slot, dl.when());
    if (ec && ec == errc::channel_closed) ec.clear();  // closed while we waited: the end
    return out;
  }
  /// Receives without waiting: nullopt if nothing is buffered (or closed and drained).
  std::optional<T> try_recv() {
    std::optional<T> out;
    detail::wake_batch wake;
    std::unique_lock lk(st_->mu);
    st_->try_recv_locked(out, wake);
    lk.unlock();
    return out;
  }

  /// Closes the channel (idempotent): wakes every blocked receiver and sender.
  void close() {
    detail::wake_batch wake;
    std::unique_lock lk(st_->mu);
    if (!st_->closed) st_->close_locked(wake);
  }
  /// True once close() has been called.
  bool closed() const {
    std::lock_guard lk(st_->mu);
    return st_->closed;
  }
  /// Number of buffered values.
  std::size_t size() const {
    std::lock_guard lk(st_->mu);
    return st_->buffer.size();
  }
  /// The capacity given at construction.
  std::size_t capacity() const noexcept { return st_->capacity; }

  /// Input iterator that receives until the channel is closed and drained.
  class iterator {
   public:
    /// std::input_iterator requirements.
    ///@{
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    ///@}
    /// An end iterator.
    iterator() = default;
    /// Receives the first value from `ch` (blocks the fiber like recv()).
    explicit iterator(channel* ch) : ch_(ch) { ++*this; }
    /// The value received last.
    T& operator*() { return *cur_; }
    /// Receives the next value; becomes the end iterator once the channel is closed and drained.
    iterator& operator++() {
      cur_ = ch_->recv();
      if (!cur_) ch_ = nullptr;
      return *this;
    }
    /// As ++it.
    void operator++(int) { ++*this; }
    /// True once the channel is closed and drained.
    bool operator==(std::default_sentinel_t) const noexcept { return ch_ == nullptr; }

   private:
    channel* ch_ = nullptr;
    std::optional<T> cur_;
  };
  /// Range-for support: `for (auto v : ch)` receives until closed.
  iterator begin() { return iterator(this); }
  /// The end of the range-for.
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  template <class U, class F>
  friend class recv_case;
  template <class U, class F>
  friend class send_case;
  std::shared_ptr<detail::channel_state<T>> st_;
};

}  // namespace fibers
