// lib/process/run.cpp - process::run: spawn, feed stdin, collect stdout and stderr, wait.
#include <string>

#include "fibers/error.hpp"
#include "fibers/process.hpp"
#include "fibers/scope.hpp"

namespace fibers::process {

namespace {
// Reads `s` to its end into `into`; errors other than the end (the child's side closing)
// are kept in `ec`.
void drain(unix_stream& s, std::string& into, std::error_code& ec, deadline dl) {
  char buf[16 * 1024];
  for (;;) {
    const std::size_t n = s.read_some(buf, ec, dl);
    if (ec || n == 0) return;
    into.append(buf, n);
  }
}
}  // namespace

result run(const std::vector<std::string>& argv, std::string_view input, deadline dl,
           const options& opts) {
  options o = opts;
  o.stdin_ = o.stdout_ = o.stderr_ = stdio::pipe;
  o.kill_on_destroy = true;  // whatever happens below, no child outlives this call
  child c = spawn(argv, o);
  if (!dl.is_set()) dl = deadline::never();
  result res;
  std::error_code out_ec, err_ec, wait_ec;
  {
    fibers::with_scope([&](fibers::scope& s) {
      s.spawn([&] {
        std::error_code ec;
        // A child that exits without reading everything: EPIPE / reset, not an error of run.
        c.stdin_pipe().write_all(input, ec, dl);
        c.close_stdin();
      });
      s.spawn([&] { drain(c.stdout_pipe(), res.out, out_ec, dl); });
      s.spawn([&] { drain(c.stderr_pipe(), res.err, err_ec, dl); });
      res.status = c.wait(wait_ec, dl);
      if (wait_ec) {
        // Deadline or cancellation: the child goes (and is reaped by ~child), the readers too.
        c.kill();
        c.stdout_pipe().close();
        c.stderr_pipe().close();
        c.close_stdin();
      }
    });  // a cancellation of the caller is rethrown here, after the children ended
  }
  if (wait_ec) throw_error(wait_ec, "run " + c.program() + " (pid " + std::to_string(c.pid()) + ")");
  for (const std::error_code* ec : {&out_ec, &err_ec}) {
    if (*ec && *ec != fibers::errc::closed) {
      throw_error(*ec, "run " + c.program() + ": reading its output");
    }
  }
  return res;
}

}  // namespace fibers::process
