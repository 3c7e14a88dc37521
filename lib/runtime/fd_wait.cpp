// lib/runtime/fd_wait.cpp - see fd_wait.hpp.
#include "runtime/fd_wait.hpp"

#include <atomic>
#include <cerrno>
#include <new>
#include <vector>

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
  fd_node* prev = nullptr;
  fd_node* next = nullptr;
};

struct fd_entry {
  io_slot* slot = nullptr;  // registered while `head` is not empty (or until fd_closed)
  fd_node* head = nullptr;
  std::uint32_t gen = 0;    // close_gen(fd) when the slot was opened
};

// How many times each fd number has been through fd_closed(), process-wide: tells a
// registration made before a close (on any thread) from one made after the number was reused.
// Two levels, 1024 x 1024 fds, chunks allocated on first close and kept.
constexpr std::size_t gen_chunk = 1024, gen_chunks = 1024;
std::atomic<std::atomic<std::uint32_t>*> close_gens[gen_chunks];

std::atomic<std::uint32_t>* close_gen_of(int fd, bool create) noexcept {
  const auto u = static_cast<std::size_t>(fd);
  if (fd < 0 || u / gen_chunk >= gen_chunks) return nullptr;
  auto& slot = close_gens[u / gen_chunk];
  std::atomic<std::uint32_t>* c = slot.load(std::memory_order_acquire);
  if (c == nullptr && create) {
    auto* fresh = new (std::nothrow) std::atomic<std::uint32_t>[gen_chunk]();
    if (fresh == nullptr) return nullptr;
    if (slot.compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) c = fresh;
    else delete[] fresh;
  }
  return c != nullptr ? &c[u % gen_chunk] : nullptr;
}

std::uint32_t close_gen(int fd) noexcept {
  const auto* g = close_gen_of(fd, false);
  return g != nullptr ? g->load(std::memory_order_acquire) : 0;
}

/// Registrations alive on all threads: fd_closed posts to other threads only when some exist
/// elsewhere, so a close() in a process whose fibers wait on no fds costs one load.
std::atomic<long> registered_total{0};

struct fd_table {
  std::vector<fd_entry> entries;  // by fd number
  long registered = 0;            // entries of this thread with a slot
};

// The calling I/O thread's table: a plain pointer (constinit, no TLS initialiser), set on the
// first wait and cleared when the thread's thread_locals are destroyed, so fd_closed from a
// destructor that runs later sees nullptr.
constinit thread_local fd_table* tl_table = nullptr;

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
  // fire() only queues the fibers: none of them unlinks while this loop runs.
  for (fd_node* n = t.entries[static_cast<std::size_t>(slot.fd)].head; n != nullptr; n = n->next) {
    if ((n->events & events) != 0 || (events & io_hangup) != 0) n->w->fire(wake_reason::ready);
  }
}

void drop_slot(io_thread& thr, fd_table& t, fd_entry& e) noexcept {
  if (e.slot == nullptr) return;
  thr.reactor().close(e.slot);
  e.slot = nullptr;
  --t.registered;
  registered_total.fetch_sub(1, std::memory_order_relaxed);
}

/// Links `n` into its fd's entry, registering the fd on first use. Returns 0 or an errno.
int link(io_thread& thr, fd_table& t, fd_node& n) noexcept {
  const auto fd = static_cast<std::size_t>(n.fd);
  if (fd >= t.entries.size()) {
    try {
      t.entries.resize(std::max<std::size_t>(fd + 1, t.entries.size() * 2));
    } catch (const std::bad_alloc&) {
      return ENOMEM;
    }
  }
  fd_entry& e = t.entries[fd];
  const std::uint32_t gen = close_gen(n.fd);
  if (e.slot != nullptr && e.gen != gen) {
    // Registered before the fd was closed on another thread (whose task to take it down has
    // not run here yet): its waiters wait on a closed fd; this wait is for the new one.
    for (fd_node* o = e.head; o != nullptr; o = o->next) o->w->fire(wake_reason::closed);
    drop_slot(thr, t, e);
  }
  if (e.slot == nullptr) {
    std::error_code ec;
    e.slot = thr.reactor().open(n.fd, io_handler{on_event, &t}, ec);
    if (e.slot == nullptr) return ec.value() != 0 ? ec.value() : EINVAL;
    e.gen = gen;
    ++t.registered;
    registered_total.fetch_add(1, std::memory_order_relaxed);
  }
  n.prev = nullptr;
  n.next = e.head;
  if (e.head != nullptr) e.head->prev = &n;
  e.head = &n;
  return 0;
}

void unlink(io_thread& thr, fd_table& t, fd_node& n) noexcept {
  fd_entry& e = t.entries[static_cast<std::size_t>(n.fd)];
  if (n.prev != nullptr) n.prev->next = n.next;
  else e.head = n.next;
  if (n.next != nullptr) n.next->prev = n.prev;
  if (e.head == nullptr) drop_slot(thr, t, e);
}

/// Wakes this thread's waiters on `fd` with `closed` and deregisters it, if they registered
/// before close number `gen` of the fd.
void close_here(int fd, std::uint32_t gen) noexcept {
  fd_table* t = tl_table;
  io_thread* thr = io_thread::current();
  if (t == nullptr || thr == nullptr || fd < 0 || static_cast<std::size_t>(fd) >= t->entries.size()) return;
  fd_entry& e = t->entries[static_cast<std::size_t>(fd)];
  if (e.slot == nullptr || static_cast<std::int32_t>(e.gen - gen) >= 0) return;
  for (fd_node* n = e.head; n != nullptr; n = n->next) n->w->fire(wake_reason::closed);
  // The waiters unlink themselves when they run; a wait on a new fd with the same number
  // registers afresh (slot is null).
  drop_slot(*thr, *t, e);
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
  waiter w;
  std::size_t linked = 0;
  int failed = 0;
  for (; linked < n; ++linked) {
    nodes[linked].w = &w;
    nodes[linked].fd = fds[linked].fd;
    nodes[linked].events = fds[linked].events;
    if (fds[linked].fd < 0) {
      failed = EBADF;
      break;
    }
    failed = link(thr, *t, nodes[linked]);
    if (failed != 0) break;
  }
  wake_reason r = wake_reason::none;
  if (failed == 0) r = park(w, until, true, what, n == 1 ? fds[0].fd : -1);
  // Unlinking happens before anything else runs on this thread: a fire that lost the claim
  // (another fd woke us first) touched the waiter while it was still alive.
  for (std::size_t i = linked; i-- > 0;) unlink(thr, *t, nodes[i]);
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

void fd_closed(int fd) noexcept {
  if (registered_total.load(std::memory_order_relaxed) == 0) return;
  auto* g = close_gen_of(fd, true);
  if (g == nullptr) return;
  const std::uint32_t gen = g->fetch_add(1, std::memory_order_acq_rel) + 1;
  io_thread* self = io_thread::current();
  if (self != nullptr) close_here(fd, gen);
  const long here = self != nullptr && tl_table != nullptr ? tl_table->registered : 0;
  if (registered_total.load(std::memory_order_relaxed) <= here) return;  // none elsewhere
  io_thread::for_each([&](io_thread& other) {
    if (&other == self) return;
    try {
      other.post([fd, gen] { close_here(fd, gen); });
    } catch (...) {
      // Out of memory: a fiber there waits on until its deadline or its next event.
    }
  });
}

}  // namespace fibers::detail
