// fibers/cpu.hpp - the CPU pool: compute work on worker threads with work stealing
// (cpu::async, task_group, parallel_for, parallel_reduce).
#pragma once

#include "fibers/detail/config.hpp"

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "fibers/error.hpp"
#include "fibers/future.hpp"

namespace fibers::cpu {

class pool;
class task_group;

namespace detail {

struct pool_impl;

/// One queued unit of work. Allocated by the templates below; `invoke` runs it and frees it.
struct task {
  using invoke_fn = void (*)(task*) noexcept;
  explicit task(invoke_fn f) noexcept : invoke(f) {}
  invoke_fn invoke;
  task* next = nullptr;  // link in the pool's injection queue
};

/// Reports the exception escaping a pool::submit() task and aborts (like std::thread).
[[noreturn]] void submit_task_threw() noexcept;

template <class F>
struct fn_task final : task {
  template <class G>
  explicit fn_task(G&& g) : task(&call), fn(std::forward<G>(g)) {}
  static void call(task* t) noexcept {
    std::unique_ptr<fn_task> self(static_cast<fn_task*>(t));
    try {
      self->fn();
    } catch (...) {
      submit_task_threw();
    }
  }
  F fn;
};

template <class F>
struct group_task final : task {
  template <class G>
  group_task(G&& g, task_group* grp) : task(&call), fn(std::forward<G>(g)), group(grp) {}
  static void call(task* t) noexcept;
  F fn;
  task_group* group;
};

/// Number of indices in [b, e) (b < e), computed without signed overflow.
template <std::integral I>
std::size_t span(I b, I e) noexcept {
  using U = std::make_unsigned_t<I>;
  return static_cast<std::size_t>(static_cast<U>(e) - static_cast<U>(b));
}

/// The grain parallel_for/reduce use when given 0: about 8 pieces per worker.
std::size_t auto_grain(std::size_t n, const pool& p) noexcept;

struct worker;

/// A plain thread's place among a pool's workers for the length of a parallel loop it calls
/// (see pool: "A plain thread that calls a parallel loop"). Joins in the constructor when the
/// calling thread is a plain thread and a place is free; leaves in the destructor.
class pool_guest {
 public:
  explicit pool_guest(pool& p) noexcept;
  pool_guest(const pool_guest&) = delete;
  pool_guest& operator=(const pool_guest&) = delete;
  ~pool_guest();
  /// True if the calling thread now runs the pool's tasks as one of its workers.
  bool joined() const noexcept { return slot_ != nullptr; }

 private:
  pool_impl* impl_;
  worker* slot_;
};

}  // namespace detail

/// A fixed set of worker threads that run compute tasks, balancing load by work stealing.
///
/// Each worker owns a Chase-Lev deque: tasks spawned on a worker (nested cpu::async, task_group,
/// parallel_for) go to its own deque, where it takes the newest first and idle workers steal
/// the oldest. Tasks submitted from other threads (I/O fibers, plain threads) go through a
/// shared FIFO injection queue, from which workers take one task at a time, the oldest first:
/// tasks submitted from outside start in submission order. Idle workers spin briefly, then
/// sleep until work arrives; they use no CPU while the pool is idle.
///
///     fibers::cpu::pool pool(4);
///     auto f = pool.async([] { return checksum(big_buffer); });
///     ...                          // on an I/O fiber: only this fiber waits in get()
///     auto sum = f.get();
///
///     fibers::cpu::parallel_for(0, n, [&](int i) { out[i] = transform(in[i]); });  // default pool
///
/// Waiting inside a CPU task does not deadlock the pool:
/// - future waits (get, wait, wait_for/until, when_all, when_any) and task_group::wait help:
///   they run other tasks of the pool (the worker's own deque first, newest first, so usually
///   the very task awaited) until the result is there, so nested `cpu::async(...).get()`
///   progresses at any depth with any number of workers. The helped tasks run nested on the
///   worker's stack (a thread stack, 8 MiB by default): helping nests at most 128 waits deep
///   per worker; deeper waits block as below. A timed wait returns once the task it is running
///   ends, so it can overrun its deadline by the length of one task.
/// - any other wait (channel, mutex, condition_variable, latch, ...) blocks the worker thread,
///   and the pool compensates as Go's runtime does for system calls: if no worker is idle at
///   that moment it starts a spare worker, so the pool keeps size() threads able to run
///   tasks. Spares sleep when idle and are joined with the pool; at most 256 are started
///   (past that, blocked workers are not replaced).
/// Two cautions follow from helping. A task that holds a lock across a future wait may run,
/// nested, a task that wants the same lock: do not hold locks across waits inside a task.
/// And a helped task that then blocks (say on a channel) keeps the waiting task under it on
/// the stack until it returns, even if the waiting task's result is ready meanwhile: it must
/// not wait for something only that buried task would do next.
///
/// A plain thread that calls a parallel loop (parallel_for, parallel_reduce) on the pool, or
/// waits for a task_group of it, takes part, as an external thread does in oneTBB's
/// task_arena::execute and task_group::wait: for the length of the call it is one of the pool's
/// workers (its own deque, stolen from by the others; pool::current()
/// is the pool), and one worker that is idle, or the next one to become idle, sleeps meanwhile,
/// so the loop runs on size() threads counting the caller. A short loop then costs no hand-off to
/// a worker and back. Like a worker's task_group::wait, the caller may run other tasks of the
/// pool while it waits for the loop's last pieces, so the call can return later by the length
/// of one such task; and they run on the caller's stack. At most 4 plain threads take part in a
/// pool at once; a fifth blocks until the workers have done its loop or group. I/O threads
/// never take part: a loop or wait called from a fiber parks the fiber, and the workers run
/// the tasks.
///
/// Destroying the pool runs every task already queued (and those they spawn), then joins the
/// workers. Submitting from outside the pool while it is being destroyed is an error (aborts).
class pool {
 public:
  /// Starts `threads` workers (0: std::thread::hardware_concurrency(), at least 1).
  explicit pool(std::size_t threads = 0);
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;
  /// Runs the queued tasks, then joins the workers. Must not be called from one of them.
  ~pool();

  /// Number of worker threads.
  std::size_t size() const noexcept;

  /// Queues `fn` to run on a worker, fire and forget. An exception escaping `fn` is printed
  /// and aborts the process (as on a std::thread); use async() to get it back instead.
  template <class F>
  void submit(F&& fn) {
    post(new detail::fn_task<std::decay_t<F>>(std::forward<F>(fn)));
  }

  /// Queues `fn` and returns a future for its result or exception. Waiting on the future from
  /// an I/O fiber parks only that fiber; from a plain thread it blocks the thread; from a CPU
  /// task it runs other tasks meanwhile (see the class comment).
  template <class F>
  auto async(F&& fn) -> future<fibers::detail::call_result_t<F>> {
    using R = fibers::detail::call_result_t<F>;
    static_assert(!std::is_reference_v<R>, "cpu::async: the function must return a value, not a reference");
    promise<R> p;
    auto f = p.get_future();
    submit([p = std::move(p), fn = std::forward<F>(fn)]() mutable noexcept { fibers::detail::fulfil(p, fn); });
    return f;
  }

  /// The pool whose worker is the calling thread (a plain thread taking part in a loop counts
  /// for the length of the call), or nullptr on any other thread.
  static pool* current() noexcept;

 private:
  friend class task_group;
  friend class detail::pool_guest;
  void post(detail::task* t) noexcept;  // takes ownership
  std::unique_ptr<detail::pool_impl> impl_;
};

/// The process-wide pool used by the free functions below, created on first use with
/// std::thread::hardware_concurrency() workers and destroyed at exit (after its queued tasks).
pool& default_pool();

/// The pool that the free functions use from the calling thread: the calling worker's own pool
/// inside a CPU task (so nested work stays on it and goes to the local deque), otherwise
/// default_pool().
pool& current_pool();

/// Runs `fn` on current_pool() and returns a future for its result (see pool::async).
///
///     auto f = fibers::cpu::async([&] { return render(scene); });
///     image img = f.get();   // from an I/O fiber: parks only this fiber
template <class F>
auto async(F&& fn) {
  return current_pool().async(std::forward<F>(fn));
}

/// Fork-join: a set of tasks spawned with run() and awaited with wait().
///
/// On a worker of the group's pool, wait() does not block the worker: it runs tasks (its own
/// deque first, then by stealing) until every task of the group has finished, and only sleeps
/// when there is nothing to run. A plain thread does the same for the length of the wait, in a
/// worker's place, as in a parallel loop (see pool). On an I/O thread it parks the calling
/// fiber until the group is done. This is the way to wait for sub-tasks inside a CPU task.
///
///     long fib(int n) {
///       if (n < 2) return n;
///       long a = 0;
///       fibers::cpu::task_group g;
///       g.run([&] { a = fib(n - 1); });
///       long b = fib(n - 2);
///       g.wait();
///       return a + b;
///     }
///
/// If a task throws, the group's tasks that have not started yet are skipped and wait()
/// rethrows the first exception. Tasks may capture the caller's locals by reference: wait()
/// (and the destructor) never return while one of them runs. A group can be reused after
/// wait(). run() may be called from the group's own tasks; wait() from one thread at a time.
class task_group {
 public:
  /// A group on current_pool().
  task_group() : task_group(current_pool()) {}
  /// A group whose tasks run on `p`.
  explicit task_group(pool& p) noexcept : pool_(&p) {}
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;
  /// Waits for tasks still running (an exception they threw is dropped).
  ~task_group();

  /// Spawns `fn` as a task of this group (onto the local deque when called on a worker).
  template <class F>
  void run(F&& fn) {
    spawn(new detail::group_task<std::decay_t<F>>(std::forward<F>(fn), this));
  }

  /// Waits until every task of the group has finished, running other tasks meanwhile when
  /// called on a worker or a plain thread; then rethrows the first exception a task threw.
  ///
  /// From a fiber this is a cancellation point that still waits: when the fiber is canceled or
  /// its inherited deadline (with_deadline, scope) passes, wait() skips the tasks that have not
  /// started, waits for the running ones (they may use the fiber's stack), then throws
  /// fibers::canceled or std::system_error(std::errc::timed_out).
  void wait();

  /// Skips the tasks of the group that have not started yet (running ones go on; they may poll
  /// stopping()). wait() still waits for the running ones. Any thread.
  void cancel() noexcept { failed_.store(true, std::memory_order_relaxed); }
  /// True once cancel() was called, a task threw, or the fiber in wait() was canceled or ran
  /// out of time (until that wait() returns).
  bool stopping() const noexcept { return failed_.load(std::memory_order_relaxed); }

  /// The pool this group's tasks run on.
  pool& get_pool() const noexcept { return *pool_; }

 private:
  template <class F>
  friend struct detail::group_task;
  friend struct detail::pool_impl;

  static constexpr std::uint64_t waiting_bit = std::uint64_t{1} << 63;  // a waiter sleeps
  static constexpr std::uint64_t count_mask = waiting_bit - 1;           // tasks not finished

  void spawn(detail::task* t) noexcept;
  void task_done(std::exception_ptr error) noexcept;

  pool* pool_;
  std::atomic<std::uint64_t> state_{0};  // count | waiting_bit
  std::atomic<bool> failed_{false};      // stopping(): skip tasks that have not started
  std::atomic<bool> error_claimed_{false};
  std::exception_ptr error_;             // the first exception; read after the count is 0
};

template <class F>
void detail::group_task<F>::call(task* t) noexcept {
  auto* self = static_cast<group_task*>(t);
  task_group* g = self->group;
  std::exception_ptr error;
  if (!g->stopping()) {
    try {
      self->fn();
    } catch (...) {
      error = std::current_exception();
    }
  }
  delete self;  // the captures go before the group counts the task done: wait() may return then
  g->task_done(std::move(error));
}

namespace detail {

// Splits [b, e) by recursive halving (the right halves become tasks of `p`) down to pieces of
// at most `grain` indices and calls leaf(b, e) on each piece that starts before the loop is
// stopped. An exception from a leaf stops the whole loop (root.cancel()) and is rethrown.
template <std::integral I, class Leaf>
void split_range(pool& p, I b, I e, std::size_t grain, Leaf& leaf, task_group& root) {
  task_group g(p);
  while (span(b, e) > grain && !root.stopping()) {
    const I mid = static_cast<I>(b + static_cast<I>(span(b, e) / 2));
    g.run([&p, mid, e, grain, &leaf, &root] { split_range(p, mid, e, grain, leaf, root); });
    e = mid;
  }
  try {
    if (!root.stopping()) leaf(b, e);
  } catch (...) {
    root.cancel();  // the rest of the loop, on every worker, stops at its next piece
    throw;
  }
  g.wait();
}

// The same for a reduction: leaf(b, e) returns the piece's value (nullopt when it saw the loop
// stopped), and the pieces are combined in index order. nullopt when the loop was stopped (a
// sibling threw, or the waiting fiber was canceled).
template <class T, std::integral I, class Leaf, class Reduce>
std::optional<T> reduce_range(pool& p, I b, I e, std::size_t grain, Leaf& leaf, Reduce& reduce,
                              task_group& root) {
  try {
    if (root.stopping()) return std::nullopt;
    if (span(b, e) <= grain) return leaf(b, e);
    const I mid = static_cast<I>(b + static_cast<I>(span(b, e) / 2));
    std::optional<T> right;
    task_group g(p);
    g.run([&] { right = reduce_range<T>(p, mid, e, grain, leaf, reduce, root); });
    std::optional<T> left = reduce_range<T>(p, b, mid, grain, leaf, reduce, root);
    g.wait();
    if (!left || !right) return std::nullopt;
    return std::optional<T>(std::in_place, reduce(std::move(*left), std::move(*right)));
  } catch (...) {
    root.cancel();
    throw;
  }
}

/// Runs body(root) on a worker of `p`: inline when already on one or when the calling plain
/// thread joins the pool for the call (pool_guest), otherwise as a task of `root` awaited with
/// root.wait() (so an I/O fiber parks instead of computing on its I/O thread, and a canceled
/// fiber stops the loop). The loop polls root.stopping().
template <class Body>
void on_pool(pool& p, Body&& body) {
  if (pool::current() == &p) {
    task_group root(p);
    body(root);
    return;
  }
  pool_guest guest(p);  // declared first: leaves after root's tasks are done
  task_group root(p);
  if (guest.joined()) {
    body(root);
  } else {
    root.run([&body, &root] { body(root); });
    root.wait();
  }
}

}  // namespace detail

/// A piece [begin(), end()) of a parallel loop's index range, as oneTBB's blocked_range: what
/// the range forms of parallel_for and parallel_reduce hand their body. A body that loops over
/// it with a plain `for (I i = r.begin(); i != r.end(); ++i)` lets the compiler vectorize.
template <std::integral I>
class blocked_range {
 public:
  /// [begin, end), split into pieces of at most `grain` indices (0: automatic, about 8 pieces
  /// per worker).
  constexpr blocked_range(I begin, I end, std::size_t grain = 0) noexcept
      : begin_(begin), end_(end), grain_(grain) {}
  /// First index.
  constexpr I begin() const noexcept { return begin_; }
  /// One past the last index.
  constexpr I end() const noexcept { return end_; }
  /// Number of indices (0 when end() <= begin()).
  constexpr std::size_t size() const noexcept { return empty() ? 0 : detail::span(begin_, end_); }
  /// True when there is no index.
  constexpr bool empty() const noexcept { return !(begin_ < end_); }
  /// The largest piece a loop hands its body (0: automatic).
  constexpr std::size_t grainsize() const noexcept { return grain_; }

 private:
  I begin_;
  I end_;
  std::size_t grain_;
};

/// Calls fn(i) for every i in [begin, end) on the workers of `p`, each index exactly once,
/// by recursive halving down to pieces of `grain` indices (0: automatic), and returns when all
/// calls have finished. The first exception thrown by fn is rethrown (indices not yet started
/// are then skipped; the other workers see the stop once the exception has been caught, and
/// unwinding the first exception of a process can take a millisecond, during which they go
/// on). A caller on a worker runs the loop there and helps while it waits, an I/O fiber parks
/// (as in task_group::wait()), a plain thread takes part (see pool). The loop checks for a stop
/// between indices, which keeps the compiler from vectorizing it: for short bodies use the
/// blocked_range form.
template <std::integral I, class F>
void parallel_for(pool& p, I begin, I end, F&& fn, std::size_t grain = 0) {
  if (!(begin < end)) return;
  const std::size_t g = grain != 0 ? grain : detail::auto_grain(detail::span(begin, end), p);
  detail::on_pool(p, [&](task_group& root) {
    auto leaf = [&](I b, I e) {
      for (I i = b; i < e && !root.stopping(); ++i) fn(i);
    };
    detail::split_range(p, begin, end, g, leaf, root);
  });
}

/// parallel_for on current_pool().
///
///     fibers::cpu::parallel_for(0, n, [&](int i) { out[i] = transform(in[i]); });
template <std::integral I, class F>
void parallel_for(I begin, I end, F&& fn, std::size_t grain = 0) {
  parallel_for(current_pool(), begin, end, std::forward<F>(fn), grain);
}

/// The range form: calls body(piece) with pieces (`blocked_range<I>`) that together cover
/// `range` exactly once, each at most range.grainsize() indices. Exceptions and waiting as in
/// the index form; a stop is seen between pieces.
///
///     using range = fibers::cpu::blocked_range<std::size_t>;
///     fibers::cpu::parallel_for(pool, range(0, n), [&](range r) {
///       for (std::size_t i = r.begin(); i != r.end(); ++i) y[i] = a * x[i] + y[i];
///     });
template <std::integral I, class F>
  requires std::invocable<F&, const blocked_range<I>&>
void parallel_for(pool& p, const blocked_range<I>& range, F&& body) {
  if (range.empty()) return;
  const std::size_t g = range.grainsize() != 0 ? range.grainsize() : detail::auto_grain(range.size(), p);
  detail::on_pool(p, [&](task_group& root) {
    auto leaf = [&](I b, I e) { body(blocked_range<I>(b, e, g)); };
    detail::split_range(p, range.begin(), range.end(), g, leaf, root);
  });
}

/// The range form on current_pool().
template <std::integral I, class F>
  requires std::invocable<F&, const blocked_range<I>&>
void parallel_for(const blocked_range<I>& range, F&& body) {
  parallel_for(current_pool(), range, std::forward<F>(body));
}

/// Computes reduce(init, reduce(map(begin), ... map(end - 1))) on the workers of `p`: pieces
/// of `grain` indices (0: automatic) are folded left to right and the pieces combined in index
/// order, so `reduce` must be associative but need not be commutative. Returns `init` for an
/// empty range. Exceptions and waiting as in parallel_for.
template <std::integral I, class T, class Map, class Reduce>
T parallel_reduce(pool& p, I begin, I end, T init, Map&& map, Reduce&& reduce, std::size_t grain = 0) {
  if (!(begin < end)) return init;
  const std::size_t g = grain != 0 ? grain : detail::auto_grain(detail::span(begin, end), p);
  std::optional<T> total;
  detail::on_pool(p, [&](task_group& root) {
    auto leaf = [&](I b, I e) -> std::optional<T> {
      std::optional<T> acc(std::in_place, map(b));
      for (I i = static_cast<I>(b + 1); i < e; ++i) {
        if (root.stopping()) return std::nullopt;
        acc.emplace(reduce(std::move(*acc), map(i)));
      }
      return acc;
    };
    total = detail::reduce_range<T>(p, begin, end, g, leaf, reduce, root);
  });
  if (!total) throw canceled("cpu::parallel_reduce");  // unreachable: a stop comes with an exception
  return reduce(std::move(init), std::move(*total));
}

/// parallel_reduce on current_pool().
///
///     auto sum = fibers::cpu::parallel_reduce(0, n, 0L, [&](int i) { return long(v[i]); },
///                                             std::plus<>());
template <std::integral I, class T, class Map, class Reduce>
T parallel_reduce(I begin, I end, T init, Map&& map, Reduce&& reduce, std::size_t grain = 0) {
  return parallel_reduce(current_pool(), begin, end, std::move(init), std::forward<Map>(map),
                         std::forward<Reduce>(reduce), grain);
}

/// The range form, as oneTBB's functional parallel_reduce: each piece computes
/// body(piece, identity) -> T, and the pieces' values are combined with `reduce` in index
/// order. `identity` must leave any value unchanged under `reduce` (0 for +, 1 for *); it is
/// also the result for an empty range. Exceptions and waiting as in parallel_for.
///
///     using range = fibers::cpu::blocked_range<std::size_t>;
///     double sum = fibers::cpu::parallel_reduce(pool, range(0, n), 0.0,
///         [&](range r, double acc) {
///           for (std::size_t i = r.begin(); i != r.end(); ++i) acc += x[i];
///           return acc;
///         },
///         std::plus<>());
template <std::integral I, class T, class Body, class Reduce>
  requires std::invocable<Body&, const blocked_range<I>&, T>
T parallel_reduce(pool& p, const blocked_range<I>& range, T identity, Body&& body, Reduce&& reduce) {
  if (range.empty()) return identity;
  const std::size_t g = range.grainsize() != 0 ? range.grainsize() : detail::auto_grain(range.size(), p);
  std::optional<T> total;
  detail::on_pool(p, [&](task_group& root) {
    auto leaf = [&](I b, I e) -> std::optional<T> {
      return std::optional<T>(std::in_place, body(blocked_range<I>(b, e, g), T(identity)));
    };
    total = detail::reduce_range<T>(p, range.begin(), range.end(), g, leaf, reduce, root);
  });
  if (!total) throw canceled("cpu::parallel_reduce");  // unreachable: a stop comes with an exception
  return std::move(*total);
}

/// The range form on current_pool().
template <std::integral I, class T, class Body, class Reduce>
  requires std::invocable<Body&, const blocked_range<I>&, T>
T parallel_reduce(const blocked_range<I>& range, T identity, Body&& body, Reduce&& reduce) {
  return parallel_reduce(current_pool(), range, std::move(identity), std::forward<Body>(body),
                         std::forward<Reduce>(reduce));
}

}  // namespace fibers::cpu
