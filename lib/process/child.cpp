// lib/process/child.cpp - spawning children (posix_spawn) and waiting for them on a pidfd.
//
// posix_spawn (glibc clone(CLONE_VM|CLONE_VFORK) + exec) is safe in a multi-threaded process:
// the child runs no user code before exec, and glibc reports an exec failure as the return
// value. Pipes are AF_UNIX stream socketpairs: the parent's end is an ordinary unix_stream.
// wait() registers the pidfd (Linux >= 5.3) with the calling thread's reactor for the length
// of the wait; it becomes readable when the child exits.
#include "fibers/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fibers/blocking.hpp"
#include "fibers/error.hpp"
#include "fibers/fiber.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/waiter.hpp"
#include "sync/wait_helpers.hpp"

extern char** environ;

namespace fibers::process {

std::string exit_status::to_string() const {
  if (signal != 0) {
    const char* name = ::sigabbrev_np(signal);
    return std::string("killed by ") + (name != nullptr ? std::string("SIG") + name : "signal " + std::to_string(signal));
  }
  return "exit code " + std::to_string(code);
}

namespace {

// Closes an fd at scope exit unless released.
struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

struct spawn_resources {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  spawn_resources() {
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
  }
  ~spawn_resources() {
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  }
};

std::string env_name(const std::string& entry) { return entry.substr(0, entry.find('=')); }

struct pidfd_wait {
  detail::waiter* w = nullptr;
};

void on_pidfd(void* ctx, detail::io_slot&, std::uint32_t) noexcept {
  detail::take_and_fire(static_cast<pidfd_wait*>(ctx)->w, detail::wake_reason::ready);
}

// The threads that run posix_spawn for fibers: a few, started once. (The default blocking
// pool starts up to 64 threads on demand, from the calling thread: a burst of spawns from one
// I/O thread then spent tens of milliseconds there creating threads.) Two CPUs here; each
// spawn holds its thread ~1 ms, so 4 threads spawn ~4,000 children/s.
blocking_pool& spawner_pool() {
  static blocking_pool pool({.max_threads = 4, .max_queue = 1 << 16});
  return pool;
}

}  // namespace

child spawn(const std::vector<std::string>& argv, const options& opts) {
  if (argv.empty() || argv[0].empty()) {
    throw std::invalid_argument("fibers::process::spawn: argv is empty (argv[0] names the program)");
  }
  const std::string& prog = argv[0];
  spawn_resources r;
  fd_guard parent_end[3], child_end[3];
  const stdio kinds[3] = {opts.stdin_, opts.stdout_, opts.stderr_};
  for (int i = 0; i < 3; ++i) {
    if (kinds[i] == stdio::pipe) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        throw std::system_error(errno, std::generic_category(), "spawn " + prog + ": socketpair");
      }
      parent_end[i].fd = sv[0];
      child_end[i].fd = sv[1];
      // The child's stdin only reads and its stdout/stderr only write: say so to the socket.
      ::shutdown(sv[1], i == 0 ? SHUT_WR : SHUT_RD);
      posix_spawn_file_actions_adddup2(&r.fa, sv[1], i);
    } else if (kinds[i] == stdio::null) {
      posix_spawn_file_actions_addopen(&r.fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
    }
  }
  posix_spawn_file_actions_addclosefrom_np(&r.fa, 3);  // every other fd of the parent
  if (!opts.cwd.empty()) posix_spawn_file_actions_addchdir_np(&r.fa, opts.cwd.c_str());
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) sigaddset(&defaults, s);  // glibc skips its own
  }
  posix_spawnattr_setsigmask(&r.attr, &none);
  posix_spawnattr_setsigdefault(&r.attr, &defaults);
  posix_spawnattr_setflags(&r.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> env;
  if (opts.inherit_env) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string entry(*e);
      const std::string name = env_name(entry);
      bool replaced = false;
      for (const auto& add : opts.env) replaced = replaced || env_name(add) == name;
      if (!replaced) env.push_back(std::move(entry));
    }
  }
  for (const auto& add : opts.env) env.push_back(add);
  std::vector<char*> envp, args;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  pid_t pid = 0;
  auto do_spawn = [&]() noexcept {
    return ::posix_spawnp(&pid, prog.c_str(), &r.fa, &r.attr, args.data(), envp.data());
  };
  int rc;
  if (detail::io_thread::current() != nullptr && detail::current_fiber_state() != nullptr) {
    // posix_spawn holds its thread until the child has exec'd (vfork semantics: 0.5-1.5 ms
    // here, more under load): a pool thread does it while the fiber parks. Not a cancellation
    // point: once started, the child must not be lost, and the call uses this frame.
    auto f = spawner_pool().async(do_spawn);
    state_of(f)->wait_until(clock::time_point::max(), "process spawn", false);
    rc = f.get();
  } else {
    rc = do_spawn();
  }
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "spawn " + prog);
  for (auto& c : child_end) {
    if (c.fd >= 0) ::close(c.release());
  }
  child c;
  c.pid_ = pid;
  c.program_ = prog;
  c.kill_on_destroy_ = opts.kill_on_destroy;
  c.pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // -1 (ENOSYS): polled
  try {
    if (parent_end[0].fd >= 0) c.in_ = unix_stream(parent_end[0].release());
    if (parent_end[1].fd >= 0) c.out_ = unix_stream(parent_end[1].release());
    if (parent_end[2].fd >= 0) c.err_ = unix_stream(parent_end[2].release());
  } catch (...) {
    c.kill_on_destroy_ = true;  // not a runtime thread: the child goes, reaped
    throw;
  }
  return c;
}

child::child(child&& o) noexcept
    : pid_(std::exchange(o.pid_, 0)),
      pidfd_(std::exchange(o.pidfd_, -1)),
      reaped_(o.reaped_),
      kill_on_destroy_(o.kill_on_destroy_),
      status_(o.status_),
      program_(std::move(o.program_)),
      in_(std::move(o.in_)),
      out_(std::move(o.out_)),
      err_(std::move(o.err_)) {}

child& child::operator=(child&& o) noexcept {
  if (this != &o) {
    child gone(std::move(*this));
    pid_ = std::exchange(o.pid_, 0);
    pidfd_ = std::exchange(o.pidfd_, -1);
    reaped_ = o.reaped_;
    kill_on_destroy_ = o.kill_on_destroy_;
    status_ = o.status_;
    program_ = std::move(o.program_);
    in_ = std::move(o.in_);
    out_ = std::move(o.out_);
    err_ = std::move(o.err_);
  }
  return *this;
}

child::~child() {
  if (pid_ != 0 && !reaped_) {
    if (!kill_on_destroy_) {
      detail::fatal_misuse_f(
          "fibers::process::child destroyed while '%s' (pid %d) may still run: wait() for it, "
          "or spawn it with options::kill_on_destroy",
          program_.c_str(), static_cast<int>(pid_));
    }
    ::kill(pid_, SIGKILL);
    int st;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }  // SIGKILL: the child is gone in well under a millisecond
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

std::string child::describe(const char* op) const {
  return std::string(op) + " " + program_ + " (pid " + std::to_string(pid_) + ")";
}

bool child::reap(int flags, exit_status& st, std::error_code& ec) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, flags);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    ec.assign(errno, std::generic_category());  // ECHILD: reaped elsewhere (SIGCHLD ignored?)
    return false;
  }
  if (r == 0) return false;
  reaped_ = true;
  if (WIFEXITED(status)) {
    status_ = {WEXITSTATUS(status), 0};
  } else if (WIFSIGNALED(status)) {
    status_ = {-1, WTERMSIG(status)};
  }
  if (pidfd_ >= 0) ::close(std::exchange(pidfd_, -1));
  st = status_;
  return true;
}

std::optional<exit_status> child::try_wait() {
  if (pid_ == 0) return std::nullopt;
  if (reaped_) return status_;
  exit_status st;
  std::error_code ec;
  if (reap(WNOHANG, st, ec)) return st;
  if (ec) throw std::system_error(ec, describe("wait"));
  return std::nullopt;
}

exit_status child::wait(std::error_code& ec, deadline dl) {
  ec.clear();
  if (pid_ == 0) {
    ec = std::make_error_code(std::errc::no_child_process);
    return {};
  }
  if (reaped_) return status_;
  detail::io_thread& t = detail::require_fiber("fibers::process::child::wait");
  for (;;) {
    exit_status st;
    if (reap(WNOHANG, st, ec) || ec) return st;
    detail::wake_reason why;
    if (pidfd_ >= 0) {
      pidfd_wait pw;
      detail::io_slot* slot = t.reactor().open(pidfd_, detail::io_handler{on_pidfd, &pw}, ec);
      if (slot == nullptr) return {};
      // Registered: an exit from now on (or already) raises the edge this park waits for.
      if (reap(WNOHANG, st, ec) || ec) {
        t.reactor().close(slot);
        return st;
      }
      detail::waiter w;
      pw.w = &w;
      why = detail::park(w, dl.when(), true, "process wait", pidfd_);
      pw.w = nullptr;
      t.reactor().close(slot);
    } else {
      // No pidfd (Linux < 5.3): look again every 10 ms.
      detail::waiter w;
      why = detail::park(w, std::min(dl.when(), clock::now() + std::chrono::milliseconds(10)),
                         true, "process wait");
      if (why == detail::wake_reason::timeout && clock::now() < dl.when()) continue;
    }
    if (why == detail::wake_reason::canceled) {
      ec = make_error_code(fibers::errc::canceled);
      return {};
    }
    if (why == detail::wake_reason::timeout) {
      ec = std::make_error_code(std::errc::timed_out);
      return {};
    }
  }
}

exit_status child::wait(deadline dl) {
  std::error_code ec;
  exit_status st = wait(ec, dl);
  if (ec) throw_error(ec, describe("wait"));
  return st;
}

void child::kill(int sig) {
  if (pid_ == 0 || reaped_) return;
  if (::kill(pid_, sig) != 0 && errno != ESRCH) {
    throw std::system_error(errno, std::generic_category(), describe("kill"));
  }
}

}  // namespace fibers::process
