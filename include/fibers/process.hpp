// fibers/process.hpp - child processes: spawn with pipes, wait without blocking the thread,
// and run-to-completion (asyncio's create_subprocess_exec, Go's os/exec).
#pragma once

#include "fibers/detail/config.hpp"

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "fibers/clock.hpp"
#include "fibers/stream_socket.hpp"

namespace fibers::process {

/// What a child's stdin, stdout or stderr is connected to.
enum class stdio {
  inherit,  ///< the parent's own
  null,     ///< /dev/null
  pipe,     ///< a stream in the parent (child::stdin_pipe() / stdout_pipe() / stderr_pipe())
};

/// How a child is started.
struct options {
  /// false: start from an empty environment.
  bool inherit_env = true;
  /// "NAME=value" entries added to (or replacing names in) the environment.
  std::vector<std::string> env{};
  /// Working directory ("": the parent's).
  std::string cwd{};
  /// What the child's stdin, stdout and stderr are (inherited by default).
  ///@{
  stdio stdin_ = stdio::inherit;
  stdio stdout_ = stdio::inherit;
  stdio stderr_ = stdio::inherit;
  ///@}
  /// When the handle is destroyed while the child runs: false (default) is a bug reported
  /// loudly (abort naming the program and pid); true kills it (SIGKILL) and reaps it.
  bool kill_on_destroy = false;
};

/// How a child ended.
struct exit_status {
  int code = -1;   ///< exit code, when it exited
  int signal = 0;  ///< the signal that killed it, or 0
  /// True if it exited (rather than being killed).
  bool exited() const noexcept { return signal == 0; }
  /// Exited with code 0.
  bool success() const noexcept { return signal == 0 && code == 0; }
  /// "exit code 3", "killed by SIGKILL".
  std::string to_string() const;
};

/// A running (or ended, not yet waited-for) child process. Every other fd of the parent is
/// closed in the child; its signal mask is empty and its signal dispositions are the defaults.
/// Pipes are Unix stream sockets in the parent (unix_stream: the same calls, deadlines and
/// cancellation as every socket) and a socket or pipe end in the child; a write to a child
/// that has closed its stdin is std::errc::broken_pipe, never SIGPIPE.
///
///     auto c = fibers::process::spawn({"sort"}, {.stdin_ = stdio::pipe, .stdout_ = stdio::pipe});
///     c.stdin_pipe().write_all("b\na\n");
///     c.close_stdin();
///     std::string out = read_all(c.stdout_pipe());
///     fibers::process::exit_status st = c.wait(5s);
class child {
 public:
  /// An empty handle.
  child() = default;
  /// Moves the handle; `o` is left empty.
  child(child&& o) noexcept;
  /// Replaces this handle (destroyed first, see ~child()) with `o`.
  child& operator=(child&& o) noexcept;
  /// See options::kill_on_destroy. A handle whose child was waited for (or that is empty) is
  /// destroyed quietly.
  ~child();

  /// The child's pid (0 for an empty handle).
  pid_t pid() const noexcept { return pid_; }
  /// The program name given to spawn (argv[0]).
  const std::string& program() const noexcept { return program_; }
  /// The parent's ends of the pipes (closed streams where stdio::pipe was not asked for).
  ///@{
  unix_stream& stdin_pipe() noexcept { return in_; }
  unix_stream& stdout_pipe() noexcept { return out_; }
  unix_stream& stderr_pipe() noexcept { return err_; }
  ///@}
  /// Closes the stdin pipe: the child reads end of file.
  void close_stdin() noexcept { in_.close(); }

  /// Waits for the child to end and reaps it. Parks only the calling fiber (pidfd watched by
  /// the reactor); a cancellation point; std::errc::timed_out at `dl` or the fiber's
  /// inherited deadline (the child keeps running). Returns at once once it has been reaped.
  /// Throws std::system_error naming the program and pid ("wait sleep (pid 123)").
  exit_status wait(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  exit_status wait(std::error_code& ec, deadline dl = {});
  /// Reaps the child if it has ended, without waiting.
  std::optional<exit_status> try_wait();
  /// Sends `sig` (default SIGKILL). Does nothing once the child has been reaped.
  void kill(int sig = 9);

 private:
  friend child spawn(const std::vector<std::string>& argv, const options& opts);
  bool reap(int flags, exit_status& st, std::error_code& ec);
  std::string describe(const char* op) const;
  pid_t pid_ = 0;
  int pidfd_ = -1;
  bool reaped_ = false;
  bool kill_on_destroy_ = false;
  exit_status status_{};
  std::string program_;
  unix_stream in_, out_, err_;
};

/// Starts `argv[0]` (searched in PATH when it has no '/') with arguments argv[1..]. Throws
/// std::system_error naming the program ("spawn nosuch-tool: No such file or directory") and
/// std::invalid_argument for an empty argv. Call on a runtime thread when a pipe is asked
/// for (the streams are registered with its reactor). On a fiber, the posix_spawn call (which
/// holds its thread until the child has exec'd) runs on a small pool of spawner threads while
/// the fiber parks; it is not a cancellation point.
child spawn(const std::vector<std::string>& argv, const options& opts = {});

/// What run() returns.
struct result {
  exit_status status;  ///< how the child ended
  std::string out;  ///< everything the child wrote to stdout
  std::string err;  ///< everything the child wrote to stderr
};

/// Runs a child to completion (subprocess.run): feeds `input` to its stdin (then closes it),
/// collects stdout and stderr concurrently (a chatty child cannot deadlock on a full pipe),
/// and waits. At `dl` (or the fiber's inherited deadline, or cancellation) the child is
/// killed and reaped, and the call throws (system_error timed_out / fibers::canceled). A child
/// that exits without reading all its input is not an error. On a fiber only.
result run(const std::vector<std::string>& argv, std::string_view input = {}, deadline dl = {},
           const options& opts = {});

}  // namespace fibers::process
