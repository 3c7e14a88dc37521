// lib/runtime/fd_wait.cpp - see fd_wait.hpp.
#include "runtime/fd_wait.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <new>
#include <vector>

#include "fibers/fiber.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {

namespace {

/// One fiber's interest in one fd, linked into the fd's entry while it waits.
struct fd_node {
  waiter* w = nullptr;
  std::uint32_t events = 0;
  int fd = -1;
  clock::time_point since{};  // when it started waiting on a kept registration (the sweep)
  fd_node* prev = nullptr;
  fd_node* next = nullptr;
};

struct fd_entry {
  io_slot* slot = nullptr;  // registered with this thread's reactor (kept between waits)
  fd_node* head = nullptr;  // fibers waiting now
  std::uint32_t gen = 0;    // the fd number's generation when the slot was opened
  std::uint32_t edges = 0;  // io_event bits seen since the last fd_drained (fd_may_be_ready)
};

// Per fd number, process-wide: its generation, bumped by every close and every creation the
// hook sees (a registration made under an older generation is for a file that is gone), and
// the I/O threads (bit id % 64) that registered it since its last close. Two levels, 1024 x
// 1024 fds, chunks allocated on first registration and kept.
struct fd_global {
  std::atomic<std::uint32_t> gen{0};
  std::atomic<std::uint64_t> threads{0};
};
constexpr std::size_t chunk_size = 1024, chunk_count = 1024;
std::atomic<fd_global*> globals[chunk_count];

fd_global* global_of(int fd, bool create) noexcept {
  const auto u = static_cast<std::size_t>(fd);
  if (fd < 0 || u / chunk_size >= chunk_count) return nullptr;
  auto& slot = globals[u / chunk_size];
  fd_global* c = slot.load(std::memory_order_acquire);
  if (c == nullptr && create) {
    auto* fresh = new (std::nothrow) fd_global[chunk_size];
    if (fresh == nullptr) return nullptr;
    if (slot.compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) c = fresh;
    else delete[] fresh;
  }
  return c != nullptr ? &c[u % chunk_size] : nullptr;
}

/// A registration kept from an earlier wait may be for a file closed behind the hook's back
/// (fclose, a raw syscall) and the number reused by a creation the hook did not see: such a
/// wait parks at most this long, then registers the fd afresh and waits on.
constexpr clock::duration revalidate_after = std::chrono::seconds(1);

struct fd_table {
  std::vector<fd_entry> entries;  // by fd number
  bool sweeper = false;           // this thread's revalidation fiber runs (sweeper_main)
};

// The calling I/O thread's table: a plain pointer (constinit, no TLS initialiser), set on the
// first wait and cleared when the thread's thread_locals are destroyed, so fd_closed from a
// destructor that runs later sees nullptr.
// initial-exec, as io_thread::current_: the hook reads it on every read (fd_may_be_ready).
constinit thread_local fd_table* tl_table __attribute__((tls_model("initial-exec"))) = nullptr;

struct table_owner {
  fd_table table;
  table_owner() noexcept { tl_table = &table; }
  ~table_owner() { tl_table = nullptr; }
};

fd_table& table_here() {
  if (tl_table == nullptr) {
    static thread_local table_owner owner;
    (void)owner;
  }
  return *tl_table;
}

void on_event(void* ctx, io_slot& slot, std::uint32_t events) noexcept {
  auto& t = *static_cast<fd_table*>(ctx);
  if (slot.fd < 0 || static_cast<std::size_t>(slot.fd) >= t.entries.size()) return;
  fd_entry& e = t.entries[static_cast<std::size_t>(slot.fd)];
  e.edges |= events;  // kept when nobody waits: the next call must not skip its syscall
  // fire() only queues the fibers: none of them unlinks while this loop runs.
  for (fd_node* n = e.head; n != nullptr; n = n->next) {
    if ((n->events & events) != 0 || (events & io_hangup) != 0) n->w->fire(wake_reason::ready);
  }
}

void drop_slot(io_thread& thr, fd_entry& e) noexcept {
  if (e.slot == nullptr) return;
  thr.reactor().close(e.slot);
  e.slot = nullptr;
}

/// Registers e's fd (number `fd`) under generation `gen`. Returns 0 or an errno.
int open_slot(io_thread& thr, fd_table& t, fd_entry& e, int fd, fd_global* g, std::uint32_t gen) noexcept {
  std::error_code ec;
  e.slot = thr.reactor().open(fd, io_handler{on_event, &t}, ec);
  if (e.slot == nullptr) return ec.value() != 0 ? ec.value() : EINVAL;
  e.gen = gen;
  e.edges = io_readable | io_writable;  // unknown: edges before the registration were not seen
  g->threads.fetch_or(std::uint64_t{1} << (thr.id() % 64), std::memory_order_acq_rel);
  return 0;
}

/// Links `n` into its fd's entry, registering the fd if it is not registered under its
/// current generation. `fresh` says whether the registration was made now. 0 or an errno.
int link(io_thread& thr, fd_table& t, fd_node& n, bool& fresh) noexcept {
  const auto fd = static_cast<std::size_t>(n.fd);
  fd_global* g = global_of(n.fd, true);
  if (g == nullptr) return n.fd < 0 ? EBADF : ENOMEM;
  if (fd >= t.entries.size()) {
    try {
      t.entries.resize(std::max<std::size_t>(fd + 1, t.entries.size() * 2));
    } catch (const std::bad_alloc&) {
      return ENOMEM;
    }
  }
  fd_entry& e = t.entries[fd];
  const std::uint32_t gen = g->gen.load(std::memory_order_acquire);
  if (e.slot != nullptr && e.gen != gen) {
    // Registered before the number was closed or created again (the close's task for this
    // thread may not have run yet): its waiters wait on a file that is gone.
    for (fd_node* o = e.head; o != nullptr; o = o->next) o->w->fire(wake_reason::closed);
    drop_slot(thr, e);
  }
  fresh = e.slot == nullptr;
  if (fresh) {
    if (int err = open_slot(thr, t, e, n.fd, g, gen); err != 0) return err;
  }
  n.prev = nullptr;
  n.next = e.head;
  if (e.head != nullptr) e.head->prev = &n;
  e.head = &n;
  return 0;
}

void unlink(fd_table& t, fd_node& n) noexcept {
  fd_entry& e = t.entries[static_cast<std::size_t>(n.fd)];
  if (n.prev != nullptr) n.prev->next = n.next;
  else e.head = n.next;
  if (n.next != nullptr) n.next->prev = n.prev;
  // The registration stays for the next wait (no epoll_ctl per park).
}

/// Wakes this thread's waiters on `fd` with `closed` and deregisters it, if it was registered
/// before generation `gen` of the number.
void close_here(int fd, std::uint32_t gen) noexcept {
  fd_table* t = tl_table;
  io_thread* thr = io_thread::current();
  if (t == nullptr || thr == nullptr || fd < 0 || static_cast<std::size_t>(fd) >= t->entries.size()) return;
  fd_entry& e = t->entries[static_cast<std::size_t>(fd)];
  if (e.slot == nullptr || static_cast<std::int32_t>(e.gen - gen) >= 0) return;
  for (fd_node* n = e.head; n != nullptr; n = n->next) n->w->fire(wake_reason::closed);
  // The waiters unlink themselves when they run.
  drop_slot(*thr, e);
}

/// Registers afresh every fd of this thread on which a wait has been parked on a kept
/// registration for revalidate_after; returns whether any wait was parked on one at all.
bool sweep(io_thread& thr, fd_table& t, clock::time_point now) noexcept {
  bool any = false;
  for (std::size_t fd = 0; fd < t.entries.size(); ++fd) {
    fd_entry& e = t.entries[fd];
    if (e.slot == nullptr || e.head == nullptr) continue;
    bool stale = false;
    for (fd_node* n = e.head; n != nullptr; n = n->next) {
      if (n->since == clock::time_point{}) continue;  // a fresh registration, or its own timer
      any = true;
      stale = stale || now - n->since >= revalidate_after;
    }
    if (!stale) continue;
    const int num = static_cast<int>(fd);
    fd_global* g = global_of(num, false);
    drop_slot(thr, e);
    if (g == nullptr || open_slot(thr, t, e, num, g, e.gen) != 0) {
      // Cannot register it again: its waiters retry their calls, which report what it is now.
      for (fd_node* n = e.head; n != nullptr; n = n->next) n->w->fire(wake_reason::ready);
      continue;
    }
    for (fd_node* n = e.head; n != nullptr; n = n->next) n->since = now;
  }
  return any;
}

/// The thread's revalidation fiber: every revalidate_after, sweep(); ends after ten sweeps that
/// found no wait on a kept registration, or when canceled (the runtime ends).
void sweeper_main() noexcept {
  io_thread& thr = *io_thread::current();
  fd_table& t = *tl_table;
  for (int idle = 0; idle < 10;) {
    int err = 0;
    if (wait_fds(nullptr, 0, clock::now() + revalidate_after, "fd revalidation", &err) != fd_wait_result::timeout) {
      break;
    }
    idle = sweep(thr, t, clock::now()) ? 0 : idle + 1;
  }
  t.sweeper = false;
}

/// Starts the thread's revalidation fiber if it is not running. False if it cannot (no memory).
bool ensure_sweeper(fd_table& t) noexcept {
  if (t.sweeper) return true;
  try {
    // Not the caller's deadline: the sweep outlives any one wait.
    spawn_with_deadline({.name = "fd revalidation"}, [] { sweeper_main(); }, clock::time_point::max()).detach();
  } catch (...) {
    return false;
  }
  t.sweeper = true;
  return true;
}

}  // namespace

fiber_state* running_fiber_state() noexcept {
  io_thread* t = io_thread::current();
  if (t == nullptr) return nullptr;
  context* c = t->running();
  return c != nullptr && c->is_fiber ? static_cast<fiber_state*>(c) : nullptr;
}

fd_wait_result wait_fds(const fd_interest* fds, std::size_t n, clock::time_point until,
                        const char* what, int* err) noexcept {
  io_thread& thr = *io_thread::current();
  fd_table* t = nullptr;
  try {
    t = &table_here();
  } catch (...) {
    *err = ENOMEM;
    return fd_wait_result::unsupported;
  }
  constexpr std::size_t inline_nodes = 8;
  fd_node inline_buf[inline_nodes];
  std::vector<fd_node> heap_buf;
  fd_node* nodes = inline_buf;
  if (n > inline_nodes) {
    try {
      heap_buf.resize(n);
    } catch (const std::bad_alloc&) {
      *err = ENOMEM;
      return fd_wait_result::unsupported;
    }
    nodes = heap_buf.data();
  }
  // Started before any node is linked: a spawn may yield to the loop, whose reactor poll must
  // not find this fiber's waiter linked before it parks.
  const bool have_sweeper = n > 0 && ensure_sweeper(*t);
  waiter w;
  std::size_t linked = 0;
  int failed = 0;
  bool all_fresh = true;
  for (; linked < n; ++linked) {
    nodes[linked].w = &w;
    nodes[linked].fd = fds[linked].fd;
    nodes[linked].events = fds[linked].events;
    bool fresh = false;
    failed = fds[linked].fd < 0 ? EBADF : link(thr, *t, nodes[linked], fresh);
    if (failed != 0) break;
    all_fresh = all_fresh && fresh;
  }
  wake_reason r = wake_reason::none;
  // A kept registration may be for a file closed behind the hook's back: the thread's sweeper
  // re-registers it once this wait has been parked for revalidate_after. Without a sweeper
  // (no memory for one), the wait itself does, with a timer per park.
  bool own_timer = false;
  if (failed == 0 && !all_fresh) {
    if (have_sweeper) {
      const clock::time_point now = thr.coarse_now();
      for (std::size_t i = 0; i < linked; ++i) nodes[i].since = now;
    } else {
      own_timer = true;
    }
  }
  if (failed == 0) {
    for (;;) {
      clock::time_point limit = until;
      if (own_timer && !all_fresh) limit = std::min(limit, clock::now() + revalidate_after);
      r = park(w, limit, true, what, n == 1 ? fds[0].fd : -1);
      // Anything but the revalidation limit (an event, the call's own timeout, the fiber's
      // inherited deadline, a cancel) ends the wait.
      if (r != wake_reason::timeout || limit == until) break;
      const clock::time_point now = clock::now();
      if (now < limit || now >= until) break;
      // A long wait on kept registrations: register them afresh (one might be stale), then
      // wait on. The waiter is reused: nothing claimed it (park returned timeout by its claim).
      w.reason.store(wake_reason::none, std::memory_order_relaxed);
      w.woken.store(0, std::memory_order_relaxed);
      for (std::size_t i = 0; i < linked && failed == 0; ++i) {
        fd_entry& e = t->entries[static_cast<std::size_t>(nodes[i].fd)];
        if (e.slot == nullptr) continue;  // taken down meanwhile (close): nodes stay linked
        fd_global* g = global_of(nodes[i].fd, false);
        drop_slot(thr, e);
        failed = open_slot(thr, *t, e, nodes[i].fd, g, e.gen);
      }
      if (failed != 0) break;
      all_fresh = true;
    }
  }
  // Unlinking happens before anything else runs on this thread: a fire that lost the claim
  // (another fd woke us first) touched the waiter while it was still alive.
  for (std::size_t i = linked; i-- > 0;) unlink(*t, nodes[i]);
  if (failed != 0) {
    *err = failed;
    return fd_wait_result::unsupported;
  }
  switch (r) {
    case wake_reason::ready: return fd_wait_result::ready;
    case wake_reason::timeout: return fd_wait_result::timeout;
    case wake_reason::closed: return fd_wait_result::closed;
    default: return fd_wait_result::canceled;
  }
}

namespace {

/// This thread's entry for `fd` if it is registered under the number's current generation.
fd_entry* live_entry(int fd) noexcept {
  fd_table* t = tl_table;
  if (t == nullptr || fd < 0 || static_cast<std::size_t>(fd) >= t->entries.size()) return nullptr;
  fd_entry& e = t->entries[static_cast<std::size_t>(fd)];
  if (e.slot == nullptr) return nullptr;
  const fd_global* g = global_of(fd, false);
  if (g == nullptr || g->gen.load(std::memory_order_acquire) != e.gen) return nullptr;
  return &e;
}

}  // namespace

bool fd_may_be_ready(int fd, std::uint32_t events) noexcept {
  const fd_entry* e = live_entry(fd);
  return e == nullptr || (e->edges & (events | io_hangup)) != 0;
}

void fd_drained(int fd, std::uint32_t events) noexcept {
  if (fd_entry* e = live_entry(fd)) e->edges &= ~events;
}

void fd_created(int fd) noexcept {
  if (fd_global* g = global_of(fd, false)) g->gen.fetch_add(1, std::memory_order_acq_rel);
}

void fd_closed(int fd) noexcept {
  fd_global* g = global_of(fd, false);
  if (g == nullptr) return;  // never waited on by any thread
  const std::uint32_t gen = g->gen.fetch_add(1, std::memory_order_acq_rel) + 1;
  const std::uint64_t threads = g->threads.exchange(0, std::memory_order_acq_rel);
  if (threads == 0) return;
  io_thread* self = io_thread::current();
  if (self != nullptr) close_here(fd, gen);
  const std::uint64_t others = self != nullptr ? threads & ~(std::uint64_t{1} << (self->id() % 64)) : threads;
  if (others == 0) return;
  io_thread::for_each([&](io_thread& other) {
    if (&other == self || (others & (std::uint64_t{1} << (other.id() % 64))) == 0) return;
    try {
      other.post([fd, gen] { close_here(fd, gen); });
    } catch (...) {
      // Out of memory: a fiber there waits on until its deadline or its next event.
    }
  });
}

}  // namespace fibers::detail
