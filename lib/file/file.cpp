// lib/file/file.cpp - fibers::file, read_file and write_file over run_file_op.
#include "fibers/file.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>

#include "fibers/error.hpp"
#include "file/file_op.hpp"

namespace fibers {
namespace {

using detail::file_op;
using detail::file_op_kind;
using detail::run_file_op;

clock::time_point limit_of(deadline dl) noexcept { return dl.is_set() ? dl.when() : clock::time_point::max(); }

/// run_file_op with the result turned into `ec` (errno) when negative.
std::int64_t run(file_op& op, clock::time_point until, bool cancelable, bool bounded, std::error_code& ec) noexcept {
  const std::int64_t r = run_file_op(op, until, cancelable, bounded, ec);
  if (ec) return -1;
  if (r < 0) {
    ec.assign(static_cast<int>(-r), std::generic_category());
    return -1;
  }
  return r;
}

std::string named(const char* op, const std::string& path) { return std::string(op) + " " + path; }

std::error_code bad_fd() noexcept { return std::make_error_code(std::errc::bad_file_descriptor); }

}  // namespace

file::file(int fd, std::string path, bool seekable) noexcept : fd_(fd), seekable_(seekable), path_(std::move(path)) {}

file::file(file&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), seekable_(o.seekable_), pos_(std::exchange(o.pos_, 0)), path_(std::move(o.path_)) {}

file& file::operator=(file&& o) noexcept {
  if (this != &o) {
    std::error_code ec;
    close(ec);
    fd_ = std::exchange(o.fd_, -1);
    seekable_ = o.seekable_;
    pos_ = std::exchange(o.pos_, 0);
    path_ = std::move(o.path_);
  }
  return *this;
}

file::~file() {
  std::error_code ec;
  close(ec);
}

file file::open(std::string_view path, int flags, mode_t mode, std::error_code& ec, deadline dl) {
  std::string p(path);
  if (p.empty() || p.find('\0') != std::string::npos) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  file_op op{.kind = file_op_kind::open, .path = p.c_str(), .flags = flags | O_CLOEXEC, .mode = mode};
  // Not bounded: opening a FIFO waits for its other end.
  const std::int64_t fd = run(op, limit_of(dl), true, false, ec);
  if (fd < 0) return {};
  // lseek does no I/O: ESPIPE tells a pipe, FIFO, socket or terminal from a file.
  const bool seekable = ::lseek(static_cast<int>(fd), 0, SEEK_CUR) >= 0;
  return file(static_cast<int>(fd), std::move(p), seekable);
}

file file::open(std::string_view path, int flags, mode_t mode, deadline dl) {
  std::error_code ec;
  file f = open(path, flags, mode, ec, dl);
  if (ec) throw_error(ec, named("open", std::string(path)));
  return f;
}

namespace {

// The loops behind read/read_at and write/write_at. `off` -1: the fd's own position (pipes).
std::size_t read_loop(int fd, bool seekable, std::int64_t off, mutable_buffer buf, std::error_code& ec,
                      clock::time_point until) noexcept {
  ec.clear();
  if (fd < 0) {
    ec = bad_fd();
    return 0;
  }
  std::size_t got = 0;
  do {
    file_op op{.kind = file_op_kind::read, .fd = fd, .buf = static_cast<char*>(buf.data) + got,
               .len = buf.size - got, .off = off < 0 ? -1 : off + static_cast<std::int64_t>(got)};
    const std::int64_t n = run(op, until, true, seekable, ec);
    if (n <= 0) break;  // end of file, or ec
    got += static_cast<std::size_t>(n);
    // A seekable file reads short only at its end: go on until full or a read returns 0.
    // A pipe returns what it had; waiting for more is the caller's choice.
  } while (seekable && off >= 0 && got < buf.size);
  return got;
}

std::size_t write_loop(int fd, bool seekable, std::int64_t off, const_buffer buf, std::error_code& ec,
                       clock::time_point until) noexcept {
  ec.clear();
  if (fd < 0) {
    ec = bad_fd();
    return 0;
  }
  std::size_t put = 0;
  while (put < buf.size) {
    file_op op{.kind = file_op_kind::write, .fd = fd,
               .buf = const_cast<char*>(static_cast<const char*>(buf.data)) + put, .len = buf.size - put,
               .off = off < 0 ? -1 : off + static_cast<std::int64_t>(put)};
    const std::int64_t n = run(op, until, true, seekable, ec);
    if (ec) break;
    if (n == 0) {  // cannot happen for files; do not spin if it does
      ec = std::make_error_code(std::errc::io_error);
      break;
    }
    put += static_cast<std::size_t>(n);
  }
  return put;
}

}  // namespace

std::size_t file::read_at(std::uint64_t offset, mutable_buffer buf, std::error_code& ec, deadline dl) {
  return read_loop(fd_, seekable_, static_cast<std::int64_t>(offset), buf, ec, limit_of(dl));
}

std::size_t file::read_at(std::uint64_t offset, mutable_buffer buf, deadline dl) {
  std::error_code ec;
  const std::size_t n = read_at(offset, buf, ec, dl);
  throw_if_error(ec, named("read", path_));
  return n;
}

std::size_t file::write_at(std::uint64_t offset, const_buffer buf, std::error_code& ec, deadline dl) {
  return write_loop(fd_, seekable_, static_cast<std::int64_t>(offset), buf, ec, limit_of(dl));
}

void file::write_at(std::uint64_t offset, const_buffer buf, deadline dl) {
  std::error_code ec;
  write_at(offset, buf, ec, dl);
  throw_if_error(ec, named("write", path_));
}

std::size_t file::read(mutable_buffer buf, std::error_code& ec, deadline dl) {
  const std::size_t n = read_loop(fd_, seekable_, seekable_ ? static_cast<std::int64_t>(pos_) : -1, buf, ec, limit_of(dl));
  pos_ += n;
  return n;
}

std::size_t file::read(mutable_buffer buf, deadline dl) {
  std::error_code ec;
  const std::size_t n = read(buf, ec, dl);
  throw_if_error(ec, named("read", path_));
  return n;
}

std::size_t file::write(const_buffer buf, std::error_code& ec, deadline dl) {
  const std::size_t n = write_loop(fd_, seekable_, seekable_ ? static_cast<std::int64_t>(pos_) : -1, buf, ec, limit_of(dl));
  pos_ += n;
  return n;
}

void file::write(const_buffer buf, deadline dl) {
  std::error_code ec;
  write(buf, ec, dl);
  throw_if_error(ec, named("write", path_));
}

std::uint64_t file::size(std::error_code& ec, deadline dl) {
  ec.clear();
  if (fd_ < 0) {
    ec = bad_fd();
    return 0;
  }
  file_op op{.kind = file_op_kind::size, .fd = fd_};
  const std::int64_t r = run(op, limit_of(dl), true, true, ec);
  return r < 0 ? 0 : static_cast<std::uint64_t>(r);
}

std::uint64_t file::size(deadline dl) {
  std::error_code ec;
  const std::uint64_t n = size(ec, dl);
  throw_if_error(ec, named("size", path_));
  return n;
}

namespace {
void simple_op(int fd, file_op_kind kind, std::int64_t arg, std::error_code& ec, deadline dl) noexcept {
  ec.clear();
  if (fd < 0) {
    ec = bad_fd();
    return;
  }
  file_op op{.kind = kind, .fd = fd, .off = arg};
  run(op, limit_of(dl), true, true, ec);
}
}  // namespace

void file::fsync(std::error_code& ec, deadline dl) { simple_op(fd_, file_op_kind::fsync, 0, ec, dl); }

void file::fsync(deadline dl) {
  std::error_code ec;
  fsync(ec, dl);
  throw_if_error(ec, named("fsync", path_));
}

void file::fdatasync(std::error_code& ec, deadline dl) { simple_op(fd_, file_op_kind::fdatasync, 0, ec, dl); }

void file::fdatasync(deadline dl) {
  std::error_code ec;
  fdatasync(ec, dl);
  throw_if_error(ec, named("fdatasync", path_));
}

void file::truncate(std::uint64_t length, std::error_code& ec, deadline dl) {
  simple_op(fd_, file_op_kind::truncate, static_cast<std::int64_t>(length), ec, dl);
}

void file::truncate(std::uint64_t length, deadline dl) {
  std::error_code ec;
  truncate(length, ec, dl);
  throw_if_error(ec, named("truncate", path_));
}

void file::close(std::error_code& ec) {
  ec.clear();
  if (fd_ < 0) return;
  file_op op{.kind = file_op_kind::close, .fd = std::exchange(fd_, -1)};
  // Not cancelable, no limit: the fd must be closed whatever happens to the caller.
  run(op, clock::time_point::max(), false, true, ec);
}

void file::close() {
  std::error_code ec;
  const std::string p = path_;
  close(ec);
  throw_if_error(ec, named("close", p));
}

// --- read_file / write_file -------------------------------------------------------------

namespace {

/// read_file; on failure `what` names the operation that failed.
std::string read_file_impl(std::string_view path, std::error_code& ec, deadline dl, const char*& what) {
  const deadline until = deadline::at(limit_of(dl));  // one limit for the whole call
  what = "open";
  file f = file::open(path, O_RDONLY, 0, ec, until);
  if (ec) return {};
  what = "size";
  const std::uint64_t size = f.size(ec, until);
  if (ec) return {};
  what = "read";
  // One byte more than the size, so a file that has not grown is read with one full read and
  // one that returns 0 (files in /proc report size 0: start with a page and grow).
  std::string s;
  s.resize(size > 0 ? static_cast<std::size_t>(size) + 1 : 4096);
  std::size_t filled = 0;
  for (;;) {
    if (filled == s.size()) s.resize(s.size() * 2);
    const std::size_t n = f.read({s.data() + filled, s.size() - filled}, ec, until);
    filled += n;
    if (ec) return {};
    if (n == 0) break;
  }
  s.resize(filled);
  f.close(ec);  // read-only: a close error loses nothing
  ec.clear();
  return s;
}

/// Removes a temporary file whatever happens to the caller (not cancelable).
void remove_quietly(const std::string& path) noexcept {
  file_op op{.kind = file_op_kind::unlink, .path = path.c_str()};
  std::error_code ec;
  run(op, clock::time_point::max(), false, true, ec);
}

/// write_file; on failure `what` names the operation and the path it failed on.
void write_file_impl(std::string_view path_view, const_buffer data, const write_file_options& opts,
                     std::error_code& ec, deadline dl, std::string& what) {
  const deadline until = deadline::at(limit_of(dl));
  const std::string path(path_view);
  if (!opts.atomic_replace) {
    what = named("open", path);
    file f = file::open(path, O_WRONLY | O_CREAT | O_TRUNC, opts.mode, ec, until);
    if (ec) return;
    what = named("write", path);
    f.write_at(0, data, ec, until);
    if (ec) return;
    if (opts.sync) {
      what = named("fdatasync", path);
      f.fdatasync(ec, until);
      if (ec) return;
    }
    what = named("close", path);
    f.close(ec);
    return;
  }
  // The temporary sits next to the target (rename only replaces within a file system), hidden,
  // named so that two writers never pick the same one (O_EXCL makes sure).
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  static std::atomic<std::uint64_t> counter{0};
  std::string tmp;
  file f;
  for (int attempt = 0;; ++attempt) {
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ".tmp-%d-%llu-%llx", static_cast<int>(::getpid()),
                  static_cast<unsigned long long>(counter.fetch_add(1, std::memory_order_relaxed)),
                  static_cast<unsigned long long>(clock::now().time_since_epoch().count()));
    tmp = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + "." + base + suffix;
    what = named("open", tmp);
    f = file::open(tmp, O_WRONLY | O_CREAT | O_EXCL, opts.mode, ec, until);
    if (ec != std::errc::file_exists || attempt == 8) break;
  }
  if (ec) return;
  auto fail = [&] {
    std::error_code ignored;
    f.close(ignored);
    remove_quietly(tmp);
  };
  what = named("write", tmp);
  f.write_at(0, data, ec, until);
  if (ec) return fail();
  // Data first: a rename that reaches the disk before the data would show an empty file after
  // a crash.
  what = named("fsync", tmp);
  f.fsync(ec, until);
  if (ec) return fail();
  what = named("close", tmp);
  f.close(ec);
  if (ec) return fail();
  what = "rename " + tmp + " -> " + path;
  file_op op{.kind = file_op_kind::rename, .path = tmp.c_str(), .path2 = path.c_str()};
  run(op, until.when(), true, true, ec);
  if (ec) return fail();
  // The rename itself is made durable by syncing the directory.
  what = named("fsync", dir);
  file d = file::open(dir, O_RDONLY | O_DIRECTORY, 0, ec, until);
  if (ec) return;
  d.fsync(ec, until);
}

}  // namespace

std::string read_file(std::string_view path, std::error_code& ec, deadline dl) {
  const char* what = nullptr;
  return read_file_impl(path, ec, dl, what);
}

std::string read_file(std::string_view path, deadline dl) {
  std::error_code ec;
  const char* what = nullptr;
  std::string s = read_file_impl(path, ec, dl, what);
  if (ec) throw_error(ec, named(what, std::string(path)));
  return s;
}

void write_file(std::string_view path, const_buffer data, const write_file_options& opts, std::error_code& ec,
                deadline dl) {
  std::string what;
  write_file_impl(path, data, opts, ec, dl, what);
}

void write_file(std::string_view path, const_buffer data, const write_file_options& opts, deadline dl) {
  std::error_code ec;
  std::string what;
  write_file_impl(path, data, opts, ec, dl, what);
  if (ec) throw_error(ec, what);
}

}  // namespace fibers
