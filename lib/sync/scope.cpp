// lib/sync/scope.cpp - scope (children on the owner's thread: no locking needed) and
// inherited deadlines.
#include "fibers/scope.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "fibers/error.hpp"
#include "fibers/runtime.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/waiter.hpp"
#include "sync/wait_helpers.hpp"

namespace fibers {

struct scope::waiter_slot {
  detail::waiter w;
};

namespace {
detail::fiber_state& current_state(const char* what) {
  if (detail::io_thread::current() == nullptr || detail::current_fiber_state() == nullptr) {
    throw std::logic_error(std::string(what) + ": must be called on a libfibers fiber");
  }
  return *detail::current_fiber_state();
}
}  // namespace

scope::scope()
    : owner_(&current_state("fibers::scope")), deadline_(owner_->inherited_deadline) {}

scope::~scope() {
  if (phase_ == phase::ended) return;
  if (running_ > 0) {
    cancel();
    wait_children(false);
  }
  finish();
}

void scope::finish() noexcept {
  for (auto& [id, c] : children_) {
    if (c.f.joinable()) c.f.detach();  // all ended: child_done collected their errors
  }
  children_.clear();
  ended_early_.clear();
  if (owner_canceled_) {
    owner_canceled_ = false;
    owner_->withdraw_scope_cancel();
  }
  phase_ = phase::ended;
}

scope::child scope::spawn_erased(std::string name, detail::unique_function fn, std::size_t thread) {
  if (detail::io_thread::current() != owner_->home) {
    throw std::logic_error(
        "fibers::scope::spawn: called on another thread than the scope owner's (the scope's "
        "state belongs to that I/O thread; spawn from there, spawn_on to place a child)");
  }
  if (phase_ == phase::ended) {
    throw std::logic_error(
        "fibers::scope::spawn: the scope has ended (its join() returned); children can be "
        "added only until the scope has waited for all of them");
  }
  // Counted before it exists: spawn may yield (and spawn_on parks), and join() must not see
  // zero children meanwhile. A child on another thread may even end before spawn_on returns.
  ++running_;
  detail::io_thread* home = owner_->home;
  auto body = [this, home, dl = deadline_, fn = std::move(fn)]() mutable {
    detail::fiber_state* self = detail::current_fiber_state();
    self->inherited_deadline = dl;
    self->group = this;
    const std::uint64_t id = self->id;
    std::exception_ptr error;
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
    }
    fn = detail::unique_function{};
    if (detail::io_thread::current() == home) {
      child_done(id, error);
    } else {
      // The scope's state belongs to the owner's thread. The scope waits for this task (its
      // running_ count), so `this` is alive when it runs. noexcept: if the task cannot be
      // posted, a loud end beats an owner that waits forever.
      [&]() noexcept { home->post([this, id, error] { child_done(id, error); }); }();
    }
  };
  fiber f;
  try {
    if (thread == here) {
      f = fibers::spawn(std::move(name), std::move(body));
    } else {
      runtime* rt = home->owner();
      f = rt->spawn_on(thread, spawn_options{.name = std::move(name)}, std::move(body));
    }
  } catch (...) {
    child_done(0, nullptr);  // never started: uncount it (no fiber has id 0)
    throw;
  }
  if (canceled_) f.cancel();  // the scope was canceled meanwhile: its first wait fails
  // A child on another thread may have ended already: child_done ran while spawn_on parked
  // and found no handle. The scope waits through running_, never through the handles, which
  // are kept for cancel().
  const std::uint64_t id = f.id();
  for (auto& early : ended_early_) {
    if (early == id) {
      early = ended_early_.back();
      ended_early_.pop_back();
      f.detach();
      return child(this, id);
    }
  }
  children_.emplace(id, child_entry{std::move(f)});
  return child(this, id);
}

bool scope::forward_to_owner(const char* what, detail::unique_function f) {
  if (detail::io_thread::current() == owner_->home) return false;
  const detail::fiber_state* self =
      detail::io_thread::current() != nullptr ? detail::current_fiber_state() : nullptr;
  if (self == nullptr || self->group != this) {
    detail::fatal_misuse_f(
        "fibers::scope::%s: called from another thread than the scope owner's by a fiber that "
        "is not a child of the scope (the scope's state belongs to its owner's I/O thread; only "
        "its own children may cancel it from elsewhere)", what);
  }
  // A child of this scope is running, so the scope cannot end before the task runs: the
  // child's end is posted to the same queue after it.
  owner_->home->post(std::move(f));
  return true;
}

void scope::cancel_child(std::uint64_t id) {
  if (forward_to_owner("child::cancel", [this, id] { cancel_child(id); })) return;
  if (auto it = children_.find(id); it != children_.end()) {
    it->second.canceled_alone = true;
    it->second.f.cancel();
  }
}

bool scope::child_running(std::uint64_t id) const noexcept { return children_.contains(id); }

void scope::join_child(std::uint64_t id, deadline dl) {
  if (detail::io_thread::current() != owner_->home || detail::current_fiber_state() == nullptr) {
    throw std::logic_error(
        "fibers::scope::child::join: must be called by a fiber on the scope owner's I/O thread "
        "(the scope's state belongs to that thread)");
  }
  while (child_running(id)) {
    waiter_slot slot;
    child_joiners_.push_back(&slot);
    const auto r = detail::park(slot.w, dl.when(), true, "scope child join");
    if (r != detail::wake_reason::ready) std::erase(child_joiners_, &slot);
    if (r == detail::wake_reason::canceled) throw canceled("scope::child::join");
    if (r == detail::wake_reason::timeout) {
      throw std::system_error(std::make_error_code(std::errc::timed_out), "scope::child::join");
    }
  }
}

void scope::child_done(std::uint64_t id, std::exception_ptr e) noexcept {
  // Its handle goes now, not at the end of the scope, so a long-lived scope (an accept loop
  // spawning a child per connection) does not keep every ended child's stack.
  if (auto it = children_.find(id); it != children_.end()) {
    if (e && it->second.canceled_alone) {
      try {
        std::rethrow_exception(e);
      } catch (const canceled&) {
        e = nullptr;  // it did what child::cancel asked
      } catch (...) {
      }
    }
    it->second.f.detach();
    children_.erase(it);
  } else if (id != 0) {
    ended_early_.push_back(id);  // spawn_on has not returned its handle yet
  }
  if (e && !first_error_) {
    first_error_ = e;
    // The error is the cause of the cancellation (not a child's reaction to one): the other
    // children go, and so does the body if the owner is still running it.
    if (!canceled_ && phase_ == phase::body && !owner_canceled_) {
      owner_canceled_ = true;
      owner_->scope_cancel();
    }
    cancel();
  }
  // Every child::join() looks again (each waits for its own child; ends are rare enough).
  for (waiter_slot* j : std::exchange(child_joiners_, {})) j->w.fire(detail::wake_reason::ready);
  if (--running_ == 0 && parked_ != nullptr) parked_->w.fire(detail::wake_reason::ready);
}

void scope::cancel() noexcept {
  if ([&]() noexcept { return forward_to_owner("cancel", [this] { cancel(); }); }()) return;
  canceled_ = true;
  for (auto& [id, c] : children_) {
    if (c.f.joinable()) c.f.cancel();
  }
}

void scope::wait_children(bool cancelable) {
  while (running_ > 0) {
    waiter_slot slot;
    parked_ = &slot;
    const auto r = detail::park(slot.w, clock::time_point::max(), cancelable, "scope join");
    parked_ = nullptr;
    if (r == detail::wake_reason::canceled || r == detail::wake_reason::timeout) {
      // The owner was canceled or its inherited deadline passed: the children go too, and the
      // scope still waits for them before reporting it.
      cancel();
      wait_children(false);
      if (r == detail::wake_reason::canceled) throw canceled("scope::join");
      throw std::system_error(std::make_error_code(std::errc::timed_out), "scope::join");
    }
  }
}

void scope::join() {
  if (phase_ != phase::body) throw std::logic_error("fibers::scope::join called twice");
  phase_ = phase::joining;
  // The body is over: a cancellation this scope requested for it ends here, so that only a
  // cancellation from elsewhere interrupts the wait below.
  if (owner_canceled_) {
    owner_canceled_ = false;
    owner_->withdraw_scope_cancel();
  }
  try {
    wait_children(true);
  } catch (...) {
    finish();
    throw;
  }
  finish();
  if (first_error_) std::rethrow_exception(first_error_);
}

namespace detail {
void scope_body_failed(scope& s, std::exception_ptr body_error) {
  // Like ~scope: the children are canceled and awaited, their errors dropped, unless the body
  // only ended because a child's error canceled it.
  const bool canceled_by_child = s.owner_canceled_;
  if (s.running_ > 0) {
    s.cancel();
    s.wait_children(false);
  }
  s.finish();
  if (canceled_by_child && s.first_error_) {
    try {
      std::rethrow_exception(body_error);
    } catch (const canceled&) {
      std::rethrow_exception(s.first_error_);
    } catch (...) {
    }
  }
  std::rethrow_exception(body_error);
}
}  // namespace detail

deadline_scope::deadline_scope(deadline dl, const void* level) {
  detail::fiber_state& st = current_state("fibers::with_deadline");
  saved_ = st.inherited_deadline;
  saved_level_ = st.deadline_owner;
  if (dl.when() < st.inherited_deadline) {
    st.inherited_deadline = dl.when();
    st.deadline_owner = level;
  }
}

deadline_scope::~deadline_scope() {
  detail::fiber_state* st = detail::current_fiber_state();
  st->inherited_deadline = saved_;
  st->deadline_owner = saved_level_;
}

deadline_expired::deadline_expired(const void* owner, std::exception_ptr original)
    : canceled("an enclosing with_deadline's deadline passed"), owner_(owner), original_(std::move(original)) {}

namespace detail {

deadline_level::deadline_level(deadline dl) : scope_(dl, this) {}

void deadline_level::rethrow_current() const {
  try {
    throw;
  } catch (const deadline_expired& e) {
    // An enclosing level's expiry on its way out: ours to report if we are that level.
    if (e.owner_ == this) std::rethrow_exception(e.original_);
    throw;
  } catch (const std::system_error& e) {
    if (e.code() != std::errc::timed_out) throw;
    const fiber_state& st = *current_fiber_state();
    // Our own deadline (we set the one in effect), or one no with_deadline level owns: a plain
    // timeout, as before.
    if (st.deadline_owner == this || st.deadline_owner == nullptr) throw;
    // Not yet passed: the wait's own timeout (a socket deadline, say), not an inherited one.
    if (clock::now() < st.inherited_deadline) throw;
    throw deadline_expired(st.deadline_owner, std::current_exception());
  }
}

}  // namespace detail

clock::time_point current_deadline() noexcept {
  if (detail::io_thread::current() == nullptr) return clock::time_point::max();
  detail::fiber_state* st = detail::current_fiber_state();
  return st != nullptr ? st->inherited_deadline : clock::time_point::max();
}

}  // namespace fibers
