// lib/runtime/fiber.cpp - the fiber's body and handle, this_fiber (spawn_fiber: spawn.cpp).
#include "fibers/fiber.hpp"

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <system_error>

#include "fibers/error.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/stack_pool.hpp"
#include "runtime/waiter.hpp"

namespace fibers {
namespace detail {
void throw_not_io_thread(const char* what) {
  throw std::logic_error(std::string(what) +
                         ": not on a libfibers runtime thread (start fibers with "
                         "runtime::run or runtime::post)");
}

fiber_state::fiber_state(std::string&& n, unique_function&& f, io_thread* h)
    : fn(std::move(f)), id(h->take_fiber_id()), home(h) {
  is_fiber = true;
  if (!n.empty()) name = std::move(n);  // an unnamed fiber's stays empty without a copy
}

void fiber_state::destroy() noexcept {
  stack_pool* p = pool;
  boost::context::stack_context sc = stack;
  this->~fiber_state();  // it lives on the stack it is about to give back
  p->deallocate(sc);
}

const std::string& fiber_state::display_name() {
  if (name.empty()) name = "fiber-" + std::to_string(id);
  return name;
}

void fiber_state::run() noexcept {
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
  fn = unique_function{};  // destroy what the body captured while still on this fiber
  home->timers().erase(deadline_timer);  // armed since a park with a deadline, maybe (waiter.cpp)
  home->remove_fiber(this);
  std::uintptr_t prev = completion.load(std::memory_order_acquire);
  if ((prev & (here_bit | detached_bit)) != 0) {
    // The handle's owner is parked in join() on this thread, or gone: nobody else writes
    // `completion` now, and every claimer of a joiner of this thread runs on this thread.
    completion.store(prev | done_bit, std::memory_order_release);
    if (auto* j = reinterpret_cast<waiter*>(prev & ~flag_bits); j != nullptr && j->claim_here(wake_reason::ready)) {
      joiner_here = true;
      j->schedule();
    }
  } else {
    prev = completion.fetch_or(done_bit, std::memory_order_acq_rel);
    if (auto* j = reinterpret_cast<waiter*>(prev & ~flag_bits)) j->fire(wake_reason::ready);
  }
  if ((prev & detached_bit) != 0 && error) report_detached_error(*this, error);
}

void fiber_state::cancel_here() noexcept {
  cancel_requested.fetch_or(cancel_external, std::memory_order_relaxed);
  if (current_wait != nullptr) current_wait->fire(wake_reason::canceled);
}

void fiber_state::scope_cancel() noexcept {
  cancel_requested.fetch_add(cancel_scope_unit, std::memory_order_relaxed);
  if (current_wait != nullptr) current_wait->fire(wake_reason::canceled);
}

void report_stack_overflow(const fiber_state& st) noexcept {
  std::fprintf(stderr,
               "libfibers: stack overflow in fiber '%s' (id %llu): its %zu-byte stack was "
               "exhausted (canary overwritten). Keep large buffers off the stack or raise "
               "runtime_options::stack_size (or spawn_options::stack_size for this fiber).\n",
               st.name.empty() ? "(unnamed)" : st.name.c_str(), static_cast<unsigned long long>(st.id),
               st.stack_size);
  std::abort();
}

void report_detached_error(fiber_state& st, std::exception_ptr e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const canceled&) {
    // A canceled fiber unwinding is the normal way it ends.
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "libfibers: detached fiber '%s' ended with an exception: %s\n",
                 st.display_name().c_str(), ex.what());
  } catch (...) {
    std::fprintf(stderr, "libfibers: detached fiber '%s' ended with a non-std exception\n",
                 st.display_name().c_str());
  }
}

}  // namespace detail

namespace {
[[noreturn]] void abort_joinable(const detail::fiber_state& st) noexcept {
  std::fprintf(stderr,
               "libfibers: fiber '%s' (id %llu) handle destroyed while joinable: call join() "
               "or detach() before the handle goes away\n",
               st.name.empty() ? "(unnamed)" : st.name.c_str(), static_cast<unsigned long long>(st.id));
  std::abort();
}

enum class join_end { joined, timed_out, inherited_deadline, canceled };

// Waits for `st` to end, or until `until`. Cancelable (and bounded by the caller's inherited
// deadline) only while `st` itself has not been asked to cancel: a fiber on its way out is
// waited for regardless, so a canceled caller can still cancel and join it.
join_end wait_for_end(detail::fiber_state* st, clock::time_point until) noexcept {
  using detail::fiber_state;
  using detail::wake_reason;
  // On the fiber's home thread run() cannot run while this code does, and nobody else writes
  // `completion` (fiber_state.hpp): plain loads and stores instead of CAS.
  const bool here = detail::io_thread::current() == st->home;
  for (;;) {
    const bool cancelable = !st->cancel_requested.load(std::memory_order_relaxed);
    if (here && (st->completion.load(std::memory_order_acquire) & fiber_state::done_bit) != 0) {
      return join_end::joined;  // done already (the acquire makes its error visible)
    }
    detail::waiter& w = st->joiner.emplace();  // a fiber parks, a plain thread blocks
    const auto mine = reinterpret_cast<std::uintptr_t>(&w) | (here ? fiber_state::here_bit : 0);
    if (here) {
      st->completion.store(mine, std::memory_order_relaxed);
    } else {
      std::uintptr_t idle = 0;
      if (!st->completion.compare_exchange_strong(idle, mine, std::memory_order_acq_rel, std::memory_order_acquire)) {
        return join_end::joined;  // done already (the acquire makes its error visible)
      }
    }
    const wake_reason r = detail::park(w, until, cancelable, "join");
    if (r == wake_reason::ready) return join_end::joined;
    // Gave up: take the waiter back. If run() got to it first, the fiber has ended (its
    // fire() finds `w` claimed and leaves it): that is a join after all.
    if (here) {
      if ((st->completion.load(std::memory_order_acquire) & fiber_state::done_bit) != 0) return join_end::joined;
      st->completion.store(0, std::memory_order_relaxed);
    } else {
      std::uintptr_t expected = mine;
      if (!st->completion.compare_exchange_strong(expected, 0, std::memory_order_acq_rel, std::memory_order_acquire)) {
        return join_end::joined;
      }
    }
    if (r == wake_reason::timeout && clock::now() >= until) return join_end::timed_out;
    if (st->cancel_requested.load(std::memory_order_relaxed)) continue;  // canceled meanwhile: wait on
    return r == wake_reason::canceled ? join_end::canceled : join_end::inherited_deadline;
  }
}

// "join fiber '<name>'", for the errors of a join that gave up. Does not fill in the default
// name (display_name() does), since the fiber may be running on another thread.
std::string join_what(const detail::fiber_state& st) {
  return "join fiber '" + (st.name.empty() ? "fiber-" + std::to_string(st.id) : st.name) + "'";
}

// True when the running fiber's own waits can no longer succeed (canceled, or past its
// inherited deadline) and `st` is not that fiber.
bool caller_cannot_wait(const detail::fiber_state* st) noexcept {
  if (detail::io_thread::current() == nullptr) return false;
  const detail::fiber_state* self = detail::current_fiber_state();
  if (self == nullptr || self == st) return false;
  return self->cancel_requested.load(std::memory_order_relaxed) || self->inherited_deadline <= clock::now();
}
}  // namespace

fiber& fiber::operator=(fiber&& other) noexcept {
  if (this != &other) {
    if (state_ != nullptr) drop_joinable();
    state_ = std::exchange(other.state_, nullptr);
  }
  return *this;
}

fiber::~fiber() {
  if (state_ != nullptr) drop_joinable();
}

void fiber::drop_joinable() noexcept {
  // A canceled or expired fiber unwinding past its child's handle: its join() gave up (or was
  // never reached), and the child may use its stack. Stop the child and wait for it.
  if (!caller_cannot_wait(state_)) abort_joinable(*state_);
  cancel();
  (void)wait_for_end(state_, clock::time_point::max());  // the child is canceled: not interruptible
  release();
}

void fiber::release() noexcept {
  state_->unref();
  state_ = nullptr;
}

void fiber::check_joinable(const char* what) const {
  if (state_ == nullptr) throw std::logic_error(std::string("fibers::fiber::") + what + ": fiber is not joinable");
  if (const detail::io_thread* t = detail::io_thread::current(); t != nullptr && t->running_fiber() == state_) {
    throw std::logic_error(std::string("fibers::fiber::") + what + ": fiber '" + state_->display_name() +
                           "' joins itself");
  }
}

bool fiber::join_until(deadline dl) {
  check_joinable("join");
  switch (wait_for_end(state_, dl.when())) {
    case join_end::joined:
      break;
    case join_end::timed_out:
    case join_end::inherited_deadline:
      return false;
    case join_end::canceled:
      throw canceled(join_what(*state_));
  }
  std::exception_ptr e = state_->error;
  release();
  if (e) std::rethrow_exception(e);
  return true;
}

void fiber::join() {
  check_joinable("join");
  switch (wait_for_end(state_, clock::time_point::max())) {
    case join_end::joined:
      break;
    case join_end::timed_out:  // not with time_point::max()
    case join_end::inherited_deadline:
      throw std::system_error(std::make_error_code(std::errc::timed_out), join_what(*state_));
    case join_end::canceled:
      throw canceled(join_what(*state_));
  }
  std::exception_ptr e = state_->error;
  release();
  if (e) std::rethrow_exception(e);
}

void fiber::detach() {
  if (state_ == nullptr) throw std::logic_error("fibers::fiber::detach: fiber is not joinable");
  std::uintptr_t prev;
  if (detail::io_thread::current() == state_->home) {
    // run() cannot run meanwhile, and nobody else writes `completion` (fiber_state.hpp).
    prev = state_->completion.load(std::memory_order_acquire);
    state_->completion.store(prev | detail::fiber_state::detached_bit, std::memory_order_release);
  } else {
    prev = state_->completion.fetch_or(detail::fiber_state::detached_bit, std::memory_order_acq_rel);
  }
  if ((prev & detail::fiber_state::done_bit) != 0 && state_->error) {
    detail::report_detached_error(*state_, state_->error);
  }
  release();
}

void fiber::cancel() {
  if (state_ == nullptr) return;
  detail::fiber_state* st = state_;
  if (detail::io_thread::current() == st->home) {
    st->cancel_here();
    return;
  }
  if ((st->completion.load(std::memory_order_acquire) & detail::fiber_state::done_bit) != 0) return;
  st->cancel_requested.fetch_or(detail::fiber_state::cancel_external, std::memory_order_relaxed);
  // The wait record lives on the fiber's stack and only its home thread may touch it.
  st->add_ref();
  st->home->post([st] {
    st->cancel_here();
    st->unref();
  });
}

std::uint64_t fiber::id() const noexcept { return state_ ? state_->id : 0; }

const std::string& fiber::name() const {
  if (state_ == nullptr) throw std::logic_error("fibers::fiber::name: empty fiber handle");
  return state_->display_name();
}

namespace this_fiber {

void yield() {
  detail::io_thread& t = detail::require_io_thread("fibers::this_fiber::yield");
  if (t.running_fiber() == nullptr) return;  // a task on the scheduler loop: nothing to yield to
  t.yield_running();
}

void sleep_until(clock::time_point tp, std::error_code& ec) {
  detail::require_io_thread("fibers::this_fiber::sleep");
  ec.clear();
  detail::waiter w;
  switch (detail::park(w, tp, true, "sleep")) {
    case detail::wake_reason::canceled:
      ec = make_error_code(errc::canceled);
      break;
    case detail::wake_reason::timeout:
      // Woken before tp: the fiber's inherited deadline (with_deadline) expired.
      if (clock::now() < tp) ec = std::make_error_code(std::errc::timed_out);
      break;
    default:
      break;
  }
}

void sleep_until(clock::time_point tp) {
  std::error_code ec;
  sleep_until(tp, ec);
  throw_if_error(ec, "sleep");
}

void cancel() {
  detail::io_thread& t = detail::require_io_thread("fibers::this_fiber::cancel");
  detail::fiber_state* st = t.running_fiber();
  if (st == nullptr) {
    throw std::logic_error("fibers::this_fiber::cancel: not on a fiber (a task posted to an I/O thread)");
  }
  st->cancel_requested.fetch_or(detail::fiber_state::cancel_external, std::memory_order_relaxed);  // the next park() sees it
}

bool cancel_requested() noexcept {
  if (detail::io_thread::current() == nullptr) return false;
  detail::fiber_state* st = detail::current_fiber_state();
  return st != nullptr && st->cancel_requested.load(std::memory_order_relaxed) != 0;
}

std::uint64_t id() noexcept {
  if (detail::io_thread::current() == nullptr) return 0;
  detail::fiber_state* st = detail::current_fiber_state();
  return st != nullptr ? st->id : 0;
}

}  // namespace this_fiber
}  // namespace fibers
