// fibers/runtime.hpp - the runtime: I/O threads, each running fibers over its own reactor.
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fibers/detail/unique_function.hpp"
#include "fibers/fiber.hpp"

namespace fibers {

namespace detail {
class io_thread;
}
struct thread_stats;
class runtime;
std::vector<thread_stats> stats(const runtime& rt);

/// How an I/O thread's stream sockets wait and move bytes (runtime_options::sockets).
enum class socket_io {
  /// FIBERS_SOCKET_IO from the environment if it is set ("epoll" or "io_uring"; anything else
  /// is an error naming the variable), else epoll.
  by_environment,
  /// Readiness: each socket sits in the thread's epoll set; a read or write is a system call,
  /// and a fiber that finds the socket empty or full parks until epoll reports it ready.
  epoll,
  /// Completion: reads, writes and readiness waits of connected stream sockets (TCP, Unix, and
  /// the TLS streams over them) are io_uring operations, queued as their fibers park and
  /// submitted together when the thread next enters the ring (once it has no ready fiber left,
  /// and every 128 scheduler rounds under load); the thread waits in the ring, which watches
  /// the epoll set for everything else (listeners, UDP, DNS, user fds). Fewer system calls
  /// per message: about half of epoll's for a proxy (bench/README.md). It pays with many
  /// operations per wait and loses on large streaming messages (a recv completes with the
  /// first segment that arrives). Needs Linux >= 6.1 (IORING_SETUP_DEFER_TASKRUN);
  /// elsewhere, or where io_uring is not permitted, the runtime uses epoll
  /// (runtime::sockets() says which). Sockets behave the same either way: deadlines, close()
  /// and cancellation wake a blocked call, and bytes a canceled read had already received are
  /// returned, not lost.
  io_uring,
};

/// Settings for a runtime.
struct runtime_options {
  /// Number of I/O threads (each runs a scheduler + reactor). At least 1.
  std::size_t io_threads = 1;
  /// Stack size of the fibers the runtime spawns, in bytes (default from the meson option
  /// default_stack_kib, 64 KiB unless configured). One spawn can ask for another size with
  /// spawn_options::stack_size.
  std::size_t stack_size = 0;
  /// Overflow detection. Every stack comes from a pooled slab with a guard page below it (an
  /// overflow faults at once and is reported with the fiber's name): on Linux >= 6.13 a guard
  /// region, which costs no memory and no mapping, so every stack has one. On older kernels
  /// only while the process holds fewer than vm.max_map_count/4 guarded stacks (16,382 by
  /// default); beyond that cap, stacks get a canary at their limit, checked at every switch and
  /// when the fiber ends. The canary costs one more resident page per such fiber, so a
  /// program parking a million fibers on an old kernel may turn it off (then only the
  /// stack-pointer check at each switch remains). It is never used on guarded stacks.
  bool stack_canary = true;
  /// Blocked-thread detector (asyncio's slow-callback warning): when an I/O thread runs one
  /// fiber for longer than this without switching, the fiber's name and where it is (the
  /// interrupted instruction and its frame-pointer chain, symbolized) are printed to stderr.
  /// Negative: the default - the environment variable FIBERS_WATCHDOG_MS if set, else 100 ms
  /// in debug builds of the library (NDEBUG not defined) and off in release builds. Zero: off.
  /// The report samples the stalled thread with a signal (SIGRTMIN+4, async-signal-safe
  /// handler); a blocking syscall it interrupts is restarted (SA_RESTART) or sees EINTR.
  std::chrono::milliseconds watchdog{-1};
  /// How stream sockets do their I/O (see socket_io). Default: FIBERS_SOCKET_IO, else epoll.
  socket_io sockets = socket_io::by_environment;
};

/// Owns N I/O threads. Each runs its own fiber scheduler whose idle wait is the thread's
/// reactor (epoll), so a fiber that waits for a socket, a timer or another thread parks and
/// the thread runs other fibers. Fibers stay on the thread that spawned them.
///
///     fibers::runtime rt;                       // one I/O thread
///     int n = rt.run([] { return serve(); });   // blocks this thread until serve() returns
///
/// Destroying the runtime cancels every fiber still running (their blocking calls fail with
/// errc::canceled), waits for them to end, then joins the threads.
class runtime {
 public:
  /// Starts `io_threads` I/O threads.
  explicit runtime(std::size_t io_threads = 1);
  /// Starts the runtime described by `opts`.
  explicit runtime(const runtime_options& opts);
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;
  ~runtime();

  /// Runs `fn` as a fiber on I/O thread 0 and blocks the calling (non-runtime) thread until it
  /// returns; returns its result or rethrows its exception. Throws std::logic_error when called
  /// from a runtime thread (that would deadlock it; use spawn() there).
  template <class F>
  std::invoke_result_t<F&> run(F&& fn);

  /// Spawns a detached fiber running `fn` on I/O thread `thread` (default 0). Callable from any
  /// thread; wakes the target thread through its reactor.
  void post(detail::unique_function fn, std::size_t thread = 0);

  /// Spawns a fiber running `fn` on I/O thread `thread` and returns its handle (join it from
  /// any thread or fiber; cancel() works across threads). Callable from any thread; a fiber
  /// caller parks briefly until the target thread has created the fiber. Like spawn(), the
  /// new fiber inherits the calling fiber's deadline (with_deadline, a scope's) but is not
  /// canceled with it; scope::spawn_on starts a child that is.
  template <class F>
  fiber spawn_on(std::size_t thread, F&& fn) {
    return spawn_on_erased(thread, {}, detail::unique_function(std::forward<F>(fn)));
  }
  /// Named form of spawn_on.
  template <class Name, class F>
    requires std::is_convertible_v<Name, std::string>
  fiber spawn_on(std::size_t thread, Name&& name, F&& fn) {
    return spawn_on_erased(thread, {.name = std::string(std::forward<Name>(name))},
                           detail::unique_function(std::forward<F>(fn)));
  }
  /// spawn_on with a name and a stack size (see spawn_options).
  template <class F>
  fiber spawn_on(std::size_t thread, spawn_options opts, F&& fn) {
    return spawn_on_erased(thread, std::move(opts), detail::unique_function(std::forward<F>(fn)));
  }

  /// Number of I/O threads.
  std::size_t io_threads() const noexcept;

  /// The socket I/O the runtime's threads use: socket_io::io_uring when it was asked for and
  /// this kernel allows it on every I/O thread, else socket_io::epoll.
  socket_io sockets() const noexcept;

  /// The I/O thread last seen running on CPU `cpu`, or nullopt when none was (each thread notes
  /// its CPU each time it polls its reactor; the lowest index wins when several were). See
  /// fibers/affinity.hpp for what it is for.
  std::optional<std::size_t> thread_on_cpu(int cpu) const noexcept;

  /// The runtime owning the calling thread, or nullptr on any other thread.
  static runtime* current() noexcept;

  /// Index of the calling I/O thread in its runtime; throws std::logic_error elsewhere.
  static std::size_t current_thread_index();

 private:
  void run_erased(detail::unique_function fn);  // blocks until fn has run on thread 0
  fiber spawn_on_erased(std::size_t thread, spawn_options opts, detail::unique_function fn);
  friend std::vector<thread_stats> stats(const runtime& rt);
  struct impl;
  std::unique_ptr<impl> impl_;
};

template <class F>
std::invoke_result_t<F&> runtime::run(F&& fn) {
  using R = std::invoke_result_t<F&>;
  if constexpr (std::is_void_v<R>) {
    run_erased([&fn] { fn(); });
  } else {
    std::optional<R> result;
    run_erased([&fn, &result] { result.emplace(fn()); });
    return std::move(*result);
  }
}

/// Spawns a fiber on I/O thread `thread` of the calling fiber's runtime (see
/// runtime::spawn_on). Throws std::logic_error outside a runtime thread.
template <class F>
fiber spawn_on(std::size_t thread, F&& fn) {
  runtime* rt = runtime::current();
  if (rt == nullptr) throw std::logic_error("fibers::spawn_on: not on a runtime thread");
  return rt->spawn_on(thread, std::forward<F>(fn));
}

/// Runs `fn` on a fresh one-thread runtime and returns its result (asyncio.run).
template <class F>
std::invoke_result_t<F&> run(F&& fn) {
  runtime rt;
  return rt.run(std::forward<F>(fn));
}

}  // namespace fibers
