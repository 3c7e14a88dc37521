// lib/sync/future.cpp - the non-template part of futures: waiting, publishing, when_any.
#include "fibers/future.hpp"

#include "runtime/waiter.hpp"

namespace fibers::detail {

std::unique_lock<detail::spin_lock> future_base::lock_unset() {
  std::unique_lock lk(mu_);
  if (ready_) throw std::future_error(std::future_errc::promise_already_satisfied);
  return lk;
}

void future_base::publish(std::unique_lock<detail::spin_lock>& lk) noexcept {
  ready_ = true;
  wake_batch wake;
  wake.claim_all(waiters_, wake_reason::ready);
  lk.unlock();
  // `wake` schedules the claimed waiters as it goes out of scope, after the unlock.
}

void future_base::set_exception(std::exception_ptr e) {
  auto lk = lock_unset();
  error_ = std::move(e);
  publish(lk);
}

bool future_base::add_waiter(wait_node& n) {
  std::lock_guard lk(mu_);
  if (ready_) return false;
  waiters_.push_back(n);
  return true;
}

void future_base::remove_waiter(wait_node& n) {
  std::lock_guard lk(mu_);
  waiters_.remove(n);
}

bool future_base::wait_until(clock::time_point until, const char* what, bool cancelable) {
  waiter w;
  wait_node n(w);
  if (!add_waiter(n)) return true;
  // On a CPU pool worker the wait runs other pool tasks meanwhile (issue 12).
  const wake_reason r = park_helping(w, until, cancelable, "future");
  if (r != wake_reason::ready) remove_waiter(n);
  if (r == wake_reason::canceled) throw canceled(what);
  return r == wake_reason::ready || ready();
}

std::optional<std::size_t> wait_any(future_base* const* states, std::size_t n, clock::time_point until) {
  auto first_ready = [&]() -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < n; ++i) {
      if (states[i]->ready()) return i;
    }
    return std::nullopt;
  };
  if (auto i = first_ready()) return i;
  waiter w;
  std::vector<wait_node> nodes;
  nodes.reserve(n);
  for (std::size_t i = 0; i < n; ++i) nodes.emplace_back(w, nullptr, i);
  bool queued_all = true;
  std::size_t queued = 0;
  for (; queued < n; ++queued) {
    if (!states[queued]->add_waiter(nodes[queued])) {
      queued_all = false;
      break;
    }
  }
  wake_reason r = wake_reason::ready;
  if (queued_all) {
    r = park_helping(w, until, true, "when_any");
  } else if (!w.claim(wake_reason::ready)) {
    r = park_helping(w, until, true, "when_any");  // a future we queued on fired meanwhile: consume its schedule
  }
  for (std::size_t i = 0; i < queued; ++i) states[i]->remove_waiter(nodes[i]);
  if (r == wake_reason::canceled) throw canceled("when_any");
  return first_ready();
}

}  // namespace fibers::detail
