// lib/net/socket_base.cpp - fd ownership, reactor registration, close, timeouts.
#include "fibers/detail/socket_base.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <utility>

#include "net/io_wait.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {
namespace {

void fire_closed(waiter*& w) noexcept {
  if (w != nullptr) {
    waiter* x = w;
    w = nullptr;
    x->fire(wake_reason::closed);
  }
}

}  // namespace

socket_base::socket_base(socket_base&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      slot_(std::exchange(other.slot_, nullptr)),
      owner_(std::exchange(other.owner_, nullptr)),
      timeout_(other.timeout_),
      peer_(other.peer_) {}

socket_base& socket_base::operator=(socket_base&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    slot_ = std::exchange(other.slot_, nullptr);
    owner_ = std::exchange(other.owner_, nullptr);
    timeout_ = other.timeout_;
    peer_ = other.peer_;
  }
  return *this;
}

socket_base::~socket_base() { close(); }

void socket_base::adopt(int fd, const endpoint& peer) {
  io_thread* t = io_thread::current();
  if (t == nullptr) {
    ::close(fd);
    throw std::logic_error("fibers: sockets can only be used on a libfibers runtime thread");
  }
  std::error_code ec;
  io_slot* slot = t->reactor().open(fd, ec);
  if (slot == nullptr) {
    ::close(fd);
    throw std::system_error(ec, "register fd with " + std::string(t->reactor().name()));
  }
  close();
  fd_ = fd;
  slot_ = slot;
  owner_ = t;
  peer_ = peer;
}

void socket_base::close() noexcept {
  if (fd_ < 0) return;
  if (slot_ != nullptr) {
    if (io_thread::current() == owner_) {
      fire_closed(slot_->reader);
      fire_closed(slot_->writer);
      owner_->reactor().close(slot_);
    }
    // Off the owner thread the slot is not ours to touch (its reactor may even be gone);
    // closing the fd removes it from epoll and the slot stays unused.
  }
  ::close(fd_);
  fd_ = -1;
  slot_ = nullptr;
  owner_ = nullptr;
}

int socket_base::release() noexcept {
  if (fd_ < 0) return -1;
  if (slot_ != nullptr && io_thread::current() == owner_) {
    fire_closed(slot_->reader);
    fire_closed(slot_->writer);
    owner_->reactor().close(slot_);
  }
  slot_ = nullptr;
  owner_ = nullptr;
  return std::exchange(fd_, -1);
}

io_slot* socket_base::slot_for(const char* op, std::error_code& ec) const {
  if (slot_ == nullptr) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return nullptr;
  }
  if (io_thread::current() != owner_) {
    throw std::logic_error(std::string("fibers: ") + op +
                           ": socket used off the I/O thread that owns it (sockets are "
                           "pinned; hand the fd over with release())");
  }
  return slot_;
}

std::string socket_base::describe(const char* op) const {
  if (peer_.family() == AF_UNSPEC) return op;
  return std::string(op) + " " + peer_.to_string();
}

clock::time_point socket_base::resolve(deadline dl) const noexcept {
  if (dl.is_set()) return dl.when();
  if (timeout_) return deadline::after(*timeout_).when();
  return clock::time_point::max();
}

endpoint socket_base::local_endpoint() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    throw std::system_error(fd_ < 0 ? EBADF : errno, std::generic_category(), describe("getsockname"));
  }
  return endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace fibers::detail
