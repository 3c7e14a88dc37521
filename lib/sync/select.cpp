// lib/sync/select.cpp - the type-erased engine of fibers::select.
//
// Like Go's selectgo: lock every channel involved in address order (so two selects over the
// same channels cannot deadlock), try the cases starting at a random one (fairness), and if
// none is ready queue one node per channel case, all sharing one waiter: the first
// counterpart to claim the waiter completes its case and records the index; the other nodes
// are dropped by whoever finds them, or removed by us after waking.
#include "fibers/select.hpp"

#include <random>
#include <vector>

namespace fibers::detail {
namespace {

std::size_t random_below(std::size_t n) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
}

class lock_set {
 public:
  lock_set(select_case* const* cases, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (detail::spin_lock* m = cases[i]->mutex()) mutexes_.push_back(m);
    }
    std::sort(mutexes_.begin(), mutexes_.end());
    mutexes_.erase(std::unique(mutexes_.begin(), mutexes_.end()), mutexes_.end());
  }
  void lock() {
    for (detail::spin_lock* m : mutexes_) m->lock();
  }
  void unlock() {
    for (auto it = mutexes_.rbegin(); it != mutexes_.rend(); ++it) (*it)->unlock();
  }

 private:
  std::vector<detail::spin_lock*> mutexes_;
};

}  // namespace

std::size_t run_select(select_case* const* cases, std::size_t n) {
  lock_set locks(cases, n);
  clock::time_point until = clock::time_point::max();
  std::size_t timeout_index = n;
  std::size_t default_index = n;
  for (std::size_t i = 0; i < n; ++i) {
    if (cases[i]->is_default()) default_index = i;
    if (cases[i]->until() < until) {
      until = cases[i]->until();
      timeout_index = i;
    }
  }

  locks.lock();
  const std::size_t start = random_below(n);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (start + k) % n;
    if (cases[i]->mutex() == nullptr) continue;
    wake_batch wake;
    const op_result r = cases[i]->try_now(wake);
    if (r == op_result::would_block) continue;
    locks.unlock();
    wake.run();
    cases[i]->finish(r == op_result::closed);
    return i;
  }
  if (default_index != n) {
    locks.unlock();
    cases[default_index]->finish(false);
    return default_index;
  }

  waiter w;
  std::size_t fired = n;
  for (std::size_t i = 0; i < n; ++i) {
    if (cases[i]->mutex() != nullptr) cases[i]->enqueue(w, &fired, i);
  }
  locks.unlock();
  const wake_reason r = park(w, until, true, "select");
  locks.lock();
  for (std::size_t i = 0; i < n; ++i) {
    if (cases[i]->mutex() != nullptr) cases[i]->dequeue();
  }
  locks.unlock();

  switch (r) {
    case wake_reason::ready:
    case wake_reason::closed:
      cases[fired]->finish(r == wake_reason::closed);
      return fired;
    case wake_reason::timeout:
      if (timeout_index == n || clock::now() < until) {
        // Only the fiber's inherited deadline (with_deadline) can end a select without a
        // timeout case.
        throw std::system_error(std::make_error_code(std::errc::timed_out), "select");
      }
      cases[timeout_index]->finish(false);
      return timeout_index;
    default:
      throw canceled("select");
  }
}

}  // namespace fibers::detail
