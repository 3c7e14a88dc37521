// fibers/blocking.hpp - running calls that cannot be made non-blocking on a bounded pool of
// threads, so that only the calling fiber waits.
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>

#include "fibers/detail/unique_function.hpp"
#include "fibers/future.hpp"

namespace fibers {

/// Limits of a blocking_pool.
struct blocking_options {
  /// Most threads running calls at once; threads are started on demand up to this. At least 1.
  std::size_t max_threads = 64;
  /// Most calls waiting for a thread; one more fails with errc::resource_unavailable_try_again.
  /// At least 1.
  std::size_t max_queue = 4096;
  /// A thread idle this long exits (a later burst starts threads again).
  std::chrono::milliseconds idle_timeout{10'000};
};

/// Threads for calls that block the calling thread and have no non-blocking form: a legacy
/// library call, getaddrinfo, file I/O without io_uring. A fiber hands the call to the pool and
/// parks until it has run, so its I/O thread goes on running other fibers.
///
///     fibers::blocking_pool pool({.max_threads = 8});
///     auto rows = pool.run([&] { return legacy_db.query(sql); });   // parks only this fiber
///
///     auto st = fibers::blocking([&] { return ::stat_or_throw(path); });  // the default pool
///
/// Bounded: at most max_threads calls run at once and at most max_queue wait for a thread;
/// beyond that run()/async() throw std::system_error(std::errc::resource_unavailable_try_again)
/// at once instead of queueing without limit.
///
/// Destroying the pool waits for the calls already queued to run, then joins its threads.
class blocking_pool {
 public:
  /// A pool with no threads yet. Throws std::invalid_argument if max_threads or max_queue is
  /// 0 (such a pool could never run a call).
  explicit blocking_pool(const blocking_options& opts = {});
  blocking_pool(const blocking_pool&) = delete;
  blocking_pool& operator=(const blocking_pool&) = delete;
  /// Runs the calls still queued, then joins the threads.
  ~blocking_pool();

  /// Queues `fn` and returns a future for its result or exception (get() parks a fiber, blocks
  /// a plain thread). Throws std::system_error(errc::resource_unavailable_try_again) when
  /// max_queue calls are already waiting.
  template <class F>
  auto async(F&& fn) -> future<detail::call_result_t<F>> {
    using R = detail::call_result_t<F>;
    static_assert(!std::is_reference_v<R>, "fibers::blocking: the function must return a value, not a reference");
    promise<R> p;
    auto f = p.get_future();
    enqueue([p = std::move(p), fn = std::forward<F>(fn)]() mutable { detail::fulfil(p, fn); });
    return f;
  }

  /// Runs `fn` on a pool thread and returns its result or rethrows its exception; the calling
  /// fiber parks meanwhile (a plain thread blocks).
  ///
  /// A cancellation point: a canceled fiber stops waiting and gets fibers::canceled, and the
  /// fiber's inherited deadline (with_deadline, scope) applies: when it passes the fiber gets
  /// std::system_error(std::errc::timed_out). Either way `fn` cannot be interrupted: it still
  /// runs to completion on its thread and its result is dropped. So when the caller may be
  /// canceled, `fn` must not use the caller's locals by reference - they may be gone by then;
  /// capture by value or shared_ptr. Throws errc::resource_unavailable_try_again when the
  /// queue is full (see async()).
  template <class F>
  auto run(F&& fn) -> detail::call_result_t<F> {
    auto f = async(std::forward<F>(fn));
    if (!state_of(f)->wait_until(clock::time_point::max(), "fibers::blocking")) {
      throw std::system_error(std::make_error_code(std::errc::timed_out), "fibers::blocking");
    }
    return f.get();
  }

  /// Threads currently alive (running a call or idle).
  std::size_t threads() const;
  /// Calls waiting for a thread.
  std::size_t pending() const;

 private:
  void enqueue(detail::unique_function call);
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The process-wide pool used by fibers::blocking(), created on first use with the default
/// blocking_options and destroyed at exit (after the calls queued by then have run).
blocking_pool& default_blocking_pool();

/// Runs `fn` on the default blocking pool and returns its result; only the calling fiber waits.
/// See blocking_pool::run for cancellation, deadlines and the queue limit.
///
///     std::string data = fibers::blocking([path] { return legacy_read_file(path); });
template <class F>
auto blocking(F&& fn) -> detail::call_result_t<F> {
  return default_blocking_pool().run(std::forward<F>(fn));
}

}  // namespace fibers
