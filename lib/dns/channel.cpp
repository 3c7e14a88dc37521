// lib/dns/channel.cpp - c-ares driven by an I/O thread: one channel per thread and set of
// options, its sockets on the thread's reactor, its timeouts on the thread's timer heap.
//
// Everything here runs on the owning I/O thread: the resolving fibers, the reactor's
// io_handler calls and the timer's expiry. So the channel needs no lock, and c-ares is never
// entered from two places at once (its callbacks do not call back into it).
//
// A lookup is a heap record (`request`), not a frame on the fiber's stack: a fiber whose
// deadline passes or that is canceled returns at once and leaves the record behind
// ("abandoned", waiter == nullptr); c-ares' callback frees it when the query ends. ares_cancel
// is not used, because it ends every query of the channel, not one.
#include <ares.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dns/dns_internal.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail::dns {
namespace {

class channel;

enum class req_state : unsigned char { queued, in_flight, done };

/// One lookup. Owned by the resolving fiber until it gives up; then by the channel (queued)
/// or by c-ares' callback (in flight).
struct request {
  channel* ch = nullptr;
  waiter* w = nullptr;  // the resolving fiber; nullptr: abandoned, nobody reads the result
  bool parked = false;  // the fiber has parked on w (an answer given during submit must not wake it)
  std::string host;
  int family = AF_UNSPEC;
  req_state state = req_state::queued;
  bool launching = false;  // inside ares_getaddrinfo: an answer now is from the hosts file
  int status = ARES_SUCCESS;
  std::vector<endpoint> addrs;
  std::optional<std::uint32_t> ttl;  // smallest TTL of the DNS records; none: hosts file
};

/// What tells two channels apart (options that c-ares fixes at ares_init time).
struct channel_key {
  std::vector<std::string> servers;
  int attempts = 0;
  long timeout_ms = 0;
  std::size_t max_in_flight = 0;
  bool operator==(const channel_key&) const = default;
};

void init_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    const int st = ares_library_init(ARES_LIB_INIT_ALL);
    if (st != ARES_SUCCESS) {
      throw std::system_error(from_ares_status(st), std::string("fibers::dns: ares_library_init: ") + ares_strerror(st));
    }
  });
}

class channel {
 public:
  channel(const channel_key& key, io_thread& t) : key_(key), reactor_(t.reactor()), timers_(t.timers()) {
    init_library();
    // STAYOPEN: c-ares 1.18 otherwise closes its sockets whenever no query is left, and a
    // thread resolving now and then would open, register, deregister and close one per burst.
    init(ARES_FLAG_STAYOPEN);
    // With one server, c-ares' retries of SERVFAIL/REFUSED go back to that server and end as
    // ARES_ECONNREFUSED, hiding the server's answer. NOCHECKRESP passes the answer on instead
    // (server_failure, refused). With several servers the default is kept: such an answer
    // makes c-ares try the next server, and a failure on all of them reads as no_server.
    if (servers() <= 1) {
      ares_destroy(ch_);
      init(ARES_FLAG_STAYOPEN | ARES_FLAG_NOCHECKRESP);
    }
    // The first try's timeout, whatever set it (resolv.conf, the option, c-ares' default):
    // no query sent from now on can time out before now + first_try_ (see rearm()).
    ares_options saved{};
    int saved_mask = 0;
    if (ares_save_options(ch_, &saved, &saved_mask) == ARES_SUCCESS) {
      first_try_ = std::chrono::milliseconds(std::max(saved.timeout, 1));
      ares_destroy_options(&saved);
    }
    tm_.expire = &on_timer;
    tm_.owner = this;
  }

  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  // On the I/O thread as it ends (its fibers are gone): every request left is abandoned.
  ~channel() {
    timers_.erase(tm_);
    for (request* r : queue_) delete r;
    queue_.clear();
    destroying_ = true;
    // Ends the queries in flight (their callbacks see ARES_EDESTRUCTION and free their
    // records) and closes the sockets (sock_state_cb takes them off the reactor).
    ares_destroy(ch_);
  }

  const channel_key& key() const noexcept { return key_; }

  /// Starts `r` now, or queues it behind the lookups in flight. The callback may have run
  /// (r->state == done) by the time this returns: a hosts-file answer comes synchronously.
  void submit(request* r) {
    r->ch = this;
    queue_.push_back(r);
    after_ares();
  }

 private:
  /// ares_init_options with `flags` and the key's options; the key's servers, if any.
  void init(int flags) {
    ares_options o{};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS;
    o.flags = flags;
    o.sock_state_cb = &sock_state_cb;
    o.sock_state_cb_data = this;
    if (key_.attempts > 0) {
      mask |= ARES_OPT_TRIES;
      o.tries = key_.attempts;
    }
    if (key_.timeout_ms > 0) {
      mask |= ARES_OPT_TIMEOUTMS;
      o.timeout = static_cast<int>(key_.timeout_ms);
    }
    int st = ares_init_options(&ch_, &o, mask);
    if (st != ARES_SUCCESS) {
      throw std::system_error(from_ares_status(st), std::string("fibers::dns: ares_init_options: ") + ares_strerror(st));
    }
    if (!key_.servers.empty()) {
      std::string csv;
      for (const auto& sv : key_.servers) {
        if (!csv.empty()) csv += ',';
        csv += sv;
      }
      st = ares_set_servers_ports_csv(ch_, csv.c_str());
      if (st != ARES_SUCCESS) {
        ares_destroy(ch_);
        throw std::invalid_argument("fibers::dns::resolve: bad options.servers \"" + csv + "\": " + ares_strerror(st));
      }
    }
  }

  /// How many servers the channel asks.
  std::size_t servers() const noexcept {
    ares_addr_port_node* list = nullptr;
    if (ares_get_servers_ports(ch_, &list) != ARES_SUCCESS) return 0;
    std::size_t n = 0;
    for (auto* p = list; p != nullptr; p = p->next) ++n;
    ares_free_data(list);
    return n;
  }

  struct sock {
    int fd;
    io_slot* slot;
    bool tcp;
    bool want_write;     // c-ares has bytes to write on it
    bool write_pending;  // want_write just went on: try the write, no edge may come
  };

  sock* find(int fd) noexcept {
    for (auto& s : socks_) {
      if (s.fd == fd) return &s;
    }
    return nullptr;
  }

  static void sock_state_cb(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<channel*>(data);
    sock* s = self->find(fd);
    if (readable == 0 && writable == 0) {
      // c-ares closes the fd right after this.
      if (s != nullptr) {
        self->reactor_.close(s->slot);
        *s = self->socks_.back();
        self->socks_.pop_back();
      }
      return;
    }
    if (s == nullptr) {
      if (self->destroying_) return;
      std::error_code ec;
      io_slot* slot = self->reactor_.open(fd, io_handler{&on_io, self}, ec);
      if (slot == nullptr) {
        // Nothing will report this socket: its queries end in c-ares' timeout.
        std::fprintf(stderr, "libfibers: dns: cannot watch c-ares socket %d: %s\n", fd, ec.message().c_str());
        return;
      }
      int type = 0;
      socklen_t len = sizeof type;
      ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
      self->socks_.push_back(sock{fd, slot, type == SOCK_STREAM, false, false});
      s = &self->socks_.back();
    }
    // Edge-triggered: a socket that is writable already gives no new edge when c-ares starts
    // wanting to write (a query queued on an idle TCP connection), so try the write once.
    if (writable != 0 && !s->want_write) s->write_pending = true;
    s->want_write = writable != 0;
  }

  static void on_io(void* ctx, io_slot& slot, std::uint32_t events) noexcept {
    auto* self = static_cast<channel*>(ctx);
    const int fd = slot.fd;
    sock* s = self->find(fd);
    if (s == nullptr) return;
    const bool rd = (events & (io_readable | io_hangup)) != 0;
    const bool wr = (events & io_writable) != 0 && s->want_write;
    if (!rd && !wr) return;  // a UDP socket's write-space edges: nothing asked for them
    const bool tcp = s->tcp;
    ares_process_fd(self->ch_, rd ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
    // c-ares drains a UDP socket (it reads until EAGAIN) but reads one TCP message per call:
    // with edge-triggered events, go on while the socket is still open and readable.
    if (rd && tcp) {
      for (;;) {
        sock* again = self->find(fd);
        if (again == nullptr || again->slot != &slot) break;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) break;
        ares_process_fd(self->ch_, fd, ARES_SOCKET_BAD);
      }
    }
    self->after_ares();
  }

  static void on_timer(timer& t) noexcept {
    channel* self = static_cast<owned_timer&>(t).owner;
    ares_process_fd(self->ch_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // times out what is due
    self->after_ares();
  }

  static std::uint32_t ttl_of(int ttl) noexcept { return ttl > 0 ? static_cast<std::uint32_t>(ttl) : 0; }

  // c-ares 1.18 answers from the hosts file synchronously, inside ares_getaddrinfo (it has no
  // cache; a DNS answer always comes later, from ares_process_fd), with TTL 0 on every node:
  // `launching` tells that answer apart from DNS records whose TTL is 0.
  static void on_done(void* arg, int status, int /*timeouts*/, ares_addrinfo* ai) {
    auto* r = static_cast<request*>(arg);
    channel* self = r->ch;
    --self->in_flight_;
    r->status = status;
    r->state = req_state::done;
    if (ai != nullptr) {
      if (status == ARES_SUCCESS && r->w != nullptr) {
        std::size_t count = 0;
        for (ares_addrinfo_node* n = ai->nodes; n != nullptr; n = n->ai_next) ++count;
        r->addrs.reserve(count);
        for (ares_addrinfo_node* n = ai->nodes; n != nullptr; n = n->ai_next) {
          if (n->ai_addr == nullptr) continue;
          if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
          r->addrs.push_back(endpoint::from_sockaddr(n->ai_addr, static_cast<socklen_t>(n->ai_addrlen)));
          if (!r->launching) r->ttl = std::min(r->ttl.value_or(UINT32_MAX), ttl_of(n->ai_ttl));
        }
        // A CNAME on the way expires the answer too.
        if (!r->launching && r->ttl) {
          for (ares_addrinfo_cname* c = ai->cnames; c != nullptr; c = c->next) r->ttl = std::min(*r->ttl, ttl_of(c->ttl));
        }
      }
      ares_freeaddrinfo(ai);
    }
    if (r->w == nullptr) delete r;  // abandoned: its fiber has gone on
    else if (r->parked) r->w->fire(wake_reason::ready);
    // else: answered inside submit() (hosts file); the fiber, still running, sees `done`
  }

  /// After every entry into c-ares: starts queued lookups while there is room, tries the
  /// writes c-ares started wanting, and keeps the timer no later than c-ares' next timeout.
  void after_ares() noexcept {
    for (bool again = true; again;) {
      again = false;
      while (in_flight_ < key_.max_in_flight && !queue_.empty()) {
        request* r = queue_.front();
        queue_.pop_front();
        if (r->w == nullptr) {  // abandoned while queued
          delete r;
          continue;
        }
        launch(r);
      }
      for (std::size_t i = 0; i < socks_.size(); ++i) {
        if (!socks_[i].write_pending) continue;
        socks_[i].write_pending = false;
        ares_process_fd(ch_, ARES_SOCKET_BAD, socks_[i].fd);
        again = true;  // callbacks may have freed room or changed the socket list
        break;
      }
    }
    rearm();
  }

  void launch(request* r) noexcept {
    r->state = req_state::in_flight;
    ++in_flight_;
    ares_addrinfo_hints h{};
    h.ai_family = r->family;
    // NOSORT: c-ares' RFC 6724 sort connects a UDP socket per address (4 syscalls each); the
    // caller orders by family itself. ENVHOSTS: CARES_HOSTS names the hosts file (tests).
    h.ai_flags = ARES_AI_NOSORT | ARES_AI_ENVHOSTS;
    r->launching = true;
    ares_getaddrinfo(ch_, r->host.c_str(), nullptr, &h, &on_done, r);
    r->launching = false;  // r is alive: its waiter is set, so on_done did not free it
  }

  /// Keeps the timer at c-ares' next timeout. Whatever c-ares sent during the call that just
  /// returned (a new lookup, a retry, a switch to TCP) times out no earlier than now +
  /// first_try_, so an armed timer due before that cannot be late and ares_timeout (a walk over
  /// every query in flight) is not asked. In a burst that is the common case; ares_timeout is
  /// asked when the timer fired, when nothing is armed, and while the next timeout is further
  /// off than one first try (only retries with backoff are in flight).
  void rearm() noexcept {
    if (in_flight_ == 0) {
      timers_.erase(tm_);
      return;
    }
    const auto now = clock::now();
    if (tm_.armed() && tm_.when <= now + first_try_) return;
    timeval tv{};
    if (ares_timeout(ch_, nullptr, &tv) == nullptr) {
      timers_.erase(tm_);
      return;
    }
    const auto when = now + std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
    if (tm_.armed()) {
      if (tm_.when <= when) return;
      timers_.erase(tm_);
    }
    // Strictly in the future: expire_timers() pops due timers in a loop with one `now`.
    tm_.when = std::max(when, now + std::chrono::microseconds(1));
    timers_.push(tm_);
  }

  channel_key key_;
  reactor& reactor_;
  timer_heap& timers_;
  ares_channel ch_ = nullptr;
  struct owned_timer : timer {
    channel* owner = nullptr;
  };
  owned_timer tm_;
  clock::duration first_try_ = std::chrono::seconds(1);
  std::vector<sock> socks_;
  std::deque<request*> queue_;
  std::size_t in_flight_ = 0;
  bool destroying_ = false;
};

/// The calling I/O thread's channels, destroyed when the thread ends (thread_local: every I/O
/// thread is a std::thread whose thread_local objects die before its join() returns, while
/// its io_thread, reactor and timer heap still exist).
struct thread_channels {
  std::vector<std::unique_ptr<channel>> all;
  ~thread_channels() {
    // Newest first; each takes its sockets off the reactor.
    while (!all.empty()) all.pop_back();
  }
};

channel& channel_for(const fibers::dns::options& opts, io_thread& t) {
  static thread_local thread_channels channels;
  channel_key key{opts.servers, opts.attempts, static_cast<long>(opts.try_timeout.count()),
                  std::max<std::size_t>(opts.max_in_flight, 1)};
  for (auto& c : channels.all) {
    if (c->key() == key) return *c;
  }
  return *channels.all.emplace_back(std::make_unique<channel>(key, t));
}

}  // namespace

std::error_code cares_lookup(std::string host, int family, const fibers::dns::options& opts,
                             clock::time_point until, std::vector<endpoint>& out,
                             std::optional<std::uint32_t>* ttl) {
  io_thread& t = require_io_thread("fibers::dns::resolve");
  fiber_state* st = t.running_fiber();
  if (st == nullptr) throw std::logic_error("fibers::dns::resolve: called on an I/O thread's loop (a posted task), which cannot wait; call it from a fiber");
  // Nothing is sent for a caller that would not wait for the answer.
  if (st->cancel_requested.load(std::memory_order_relaxed) != 0) return make_error_code(errc::canceled);
  const clock::time_point limit = std::min(until, st->inherited_deadline);
  if (limit != clock::time_point::max() && limit <= clock::now()) return std::make_error_code(std::errc::timed_out);

  channel* chp = nullptr;
  try {
    chp = &channel_for(opts, t);
  } catch (const std::invalid_argument&) {
    throw;  // bad options.servers: the caller's mistake, in both forms
  } catch (const std::system_error& e) {
    return e.code();  // ares_init_options failed (memory, an unreadable resolv.conf, ...)
  }
  channel& ch = *chp;
  auto r = std::make_unique<request>();
  r->host = std::move(host);
  r->family = family;
  waiter w;
  r->w = &w;
  ch.submit(r.get());
  wake_reason why = wake_reason::ready;
  if (r->state != req_state::done) {
    r->parked = true;
    why = park(w, until, true, "resolve");
  }
  if (r->state != req_state::done) {
    // Timed out or canceled with the lookup queued or in flight: leave the record to the
    // channel (queued) or to c-ares' callback (in flight), which free it.
    r->w = nullptr;
    r.release();
    return why == wake_reason::canceled ? make_error_code(errc::canceled) : std::make_error_code(std::errc::timed_out);
  }
  if (const std::error_code ec = from_ares_status(r->status)) return ec;
  if (r->addrs.empty()) return make_error_code(fibers::dns_errc::no_data);
  if (ttl != nullptr) *ttl = r->ttl;
  if (out.empty()) out = std::move(r->addrs);
  else out.insert(out.end(), r->addrs.begin(), r->addrs.end());
  return {};
}

}  // namespace fibers::detail::dns
