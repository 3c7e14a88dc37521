// lib/runtime/stack_pool.cpp
#include "runtime/stack_pool.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <new>

#include "runtime/io_thread.hpp"

namespace fibers::detail {
namespace {

constexpr std::size_t stacks_per_slab = 32;
std::atomic<std::size_t> guarded_count{0};

// Linux 6.13 guard regions: madvise(MADV_GUARD_INSTALL) makes pages fault like PROT_NONE
// without splitting the mapping or using memory, so every stack can have one. glibc 2.36 does
// not name it yet. Older kernels say EINVAL once and the pool falls back to mprotect.
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
std::atomic<bool> guard_regions_unsupported{false};

// Makes the page at `start` a guard page; false when the stack must do without one.
bool install_guard(char* start, std::size_t page) noexcept {
  if (!guard_regions_unsupported.load(std::memory_order_relaxed)) {
    if (::madvise(start, page, MADV_GUARD_INSTALL) == 0) return true;
    if (errno == EINVAL) guard_regions_unsupported.store(true, std::memory_order_relaxed);
  }
  if (guarded_count.load(std::memory_order_relaxed) < stack_pool::guard_cap() &&
      ::mprotect(start, page, PROT_NONE) == 0) {
    guarded_count.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

// Since Linux 6.13 (the release that brought guard regions), process_madvise(2) on the calling
// process takes any advice: one call applies it to every page listed, where madvise(2) takes
// one range per call (each a system call: ~1 µs on a paravirtualised VM, twice per stack).
// PIDFD_SELF_THREAD_GROUP (Linux 6.14, <linux/fcntl.h>) names the calling process, also in a
// forked child, without an fd. Any failure (an older kernel, a seccomp filter) falls back to
// madvise(2) for good.
constexpr int pidfd_self_process = -10001;
std::atomic<bool> batch_madvise_unsupported{false};

// Applies `advice` to the pages `pages[0..n)` in one system call. Returns how many of them
// (from the first) got it: n, or fewer when the call failed part-way or is not available.
std::size_t madvise_batch(iovec* pages, std::size_t n, int advice) noexcept {
#ifdef SYS_process_madvise
  if (!batch_madvise_unsupported.load(std::memory_order_relaxed)) {
    const long done = ::syscall(SYS_process_madvise, pidfd_self_process, pages, n, advice, 0u);
    if (done >= 0) return static_cast<std::size_t>(done) / pages[0].iov_len;
    batch_madvise_unsupported.store(true, std::memory_order_relaxed);
  }
#else
  (void)pages;
  (void)n;
  (void)advice;
#endif
  return 0;
}

std::size_t page_size() noexcept {
  static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

std::size_t read_guard_cap() noexcept {
  std::size_t max_maps = 65530;
  std::ifstream in("/proc/sys/vm/max_map_count");
  in >> max_maps;
  // Each guard page splits a slab mapping in two; keep guarded stacks to a quarter of the
  // limit so the process has mappings left for everything else.
  return max_maps / 4;
}

}  // namespace

std::size_t stack_pool::guard_cap() noexcept {
  static const std::size_t cap = read_guard_cap();
  return cap;
}

std::size_t stack_pool::guarded_stacks() noexcept { return guarded_count.load(std::memory_order_relaxed); }

std::size_t round_to_pages(std::size_t size) noexcept {
  const std::size_t p = page_size();
  const std::size_t s = size < 8192 ? 8192 : size;
  return (s + p - 1) / p * p;
}

stack_pool::stack_pool(std::size_t size, std::uint64_t owner_id, bool canary)
    : size_(round_to_pages(size)), owner_id_(owner_id), canary_(canary) {}

owned_stack_pool stack_pool::create(std::size_t size, std::uint64_t owner_id, bool canary) {
  return owned_stack_pool(new stack_pool(size, owner_id, canary));
}

stack_pool::~stack_pool() {
  for (auto& [base, len] : slabs_) ::munmap(base, len);
}

void stack_pool_orphaner::operator()(stack_pool* p) const noexcept { p->orphan(); }

void stack_pool::orphan() noexcept {
  // The owner thread has allocated its last stack: free_ is read here for the last time (the
  // caller is ordered after the owner thread, e.g. by joining it).
  bool last;
  {
    std::lock_guard lk(remote_mu_);
    orphaned_ = true;
    outstanding_ = carved() - free_.size() - remote_free_.size() - lost_;
    last = outstanding_ == 0;
  }
  if (last) delete this;
}

void stack_pool::carve_slab() {
  const std::size_t p = page_size();
  const std::size_t stride = size_ + p;  // one page per stack for a guard (or spare)
  const std::size_t len = stride * stacks_per_slab;
  void* base = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) throw std::bad_alloc();
  slabs_.emplace_back(base, len);
  carved_.fetch_add(stacks_per_slab, std::memory_order_relaxed);
  // Stack i: its guard page at base + i * stride, then the stack, whose top page every fiber
  // writes (our header, its state, its saved registers and first frames). One iovec array for
  // both lists (this may run on a spawning fiber's stack: keep the frame small).
  static_assert(stacks_per_slab <= 32, "the guarded mask has 32 bits");
  auto* slab = static_cast<char*>(base);
  iovec pages[stacks_per_slab];
  for (std::size_t i = 0; i < stacks_per_slab; ++i) pages[i] = {slab + i * stride, p};
  // Guard regions for the whole slab in one call where the kernel has them; one by one (and
  // the capped PROT_NONE fallback) for what that call did not cover.
  const bool regions = !guard_regions_unsupported.load(std::memory_order_relaxed);
  const std::size_t batch_guarded = regions ? madvise_batch(pages, stacks_per_slab, MADV_GUARD_INSTALL) : 0;
  std::uint32_t guarded = 0;
  for (std::size_t i = 0; i < stacks_per_slab; ++i) {
    if (i < batch_guarded || install_guard(slab + i * stride, p)) guarded |= std::uint32_t{1} << i;
  }
#ifdef MADV_POPULATE_WRITE
  // Fault the top pages in now rather than one page fault per spawn (a fault costs ~10-20 µs
  // on a paravirtualised VM); Linux < 5.14 says EINVAL and the pages fault lazily.
  for (std::size_t i = 0; i < stacks_per_slab; ++i) pages[i] = {slab + i * stride + size_, p};
  for (std::size_t i = madvise_batch(pages, stacks_per_slab, MADV_POPULATE_WRITE); i < stacks_per_slab; ++i) {
    ::madvise(pages[i].iov_base, p, MADV_POPULATE_WRITE);
  }
#endif
  // Pushed last to first, so the slab's first stack is handed out first.
  for (std::size_t i = stacks_per_slab; i-- > 0;) {
    const std::uintptr_t tag = ((guarded >> i) & 1) != 0 ? guarded_bit : 0;
    free_.push_back(reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(slab + i * stride + p) | tag));
  }
}

stack_pool::allocation stack_pool::allocate() {
  if (free_.empty()) {
    std::lock_guard lk(remote_mu_);
    free_.swap(remote_free_);
  }
  if (free_.empty()) carve_slab();
  const auto entry = reinterpret_cast<std::uintptr_t>(free_.back());
  free_.pop_back();
  const bool guarded = (entry & guarded_bit) != 0;
  void* limit = reinterpret_cast<void*>(entry & ~guarded_bit);
  const bool with_canary = canary_ && !guarded;
  if (with_canary) *static_cast<std::uint64_t*>(limit) = canary;
  // Our header takes the top bytes of the stack; the fiber gets the rest.
  char* top = static_cast<char*>(limit) + size_;
  auto* header = reinterpret_cast<stack_header*>(top - sizeof(stack_header));
  header->guarded = guarded;
  allocation a{};
  a.sc.sp = header;
  a.sc.size = size_ - sizeof(stack_header);
  a.canary = with_canary;
  return a;
}

void stack_pool::deallocate(boost::context::stack_context& sc) noexcept {
  auto* limit = static_cast<char*>(sc.sp) - sc.size;
  const bool guarded = reinterpret_cast<const stack_header*>(limit + size_ - sizeof(stack_header))->guarded;
  void* entry = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(limit) | (guarded ? guarded_bit : 0));
  // The owner thread is running, so the pool is not orphaned: no lock.
  if (const io_thread* t = io_thread::current(); t != nullptr && t->id() == owner_id_) {
    try {
      free_.push_back(entry);
      return;
    } catch (...) {
      // Out of memory growing the list: counted as lost below.
    }
    std::lock_guard lk(remote_mu_);
    ++lost_;
    return;
  }
  deallocate_remote(entry);
}

void stack_pool::deallocate_remote(void* entry) noexcept {
  bool last = false;
  {
    std::lock_guard lk(remote_mu_);
    if (orphaned_) {
      last = --outstanding_ == 0;  // the slabs go with the pool: no list to keep
    } else {
      try {
        remote_free_.push_back(entry);
      } catch (...) {
        ++lost_;  // out of memory: the stack stays in its slab until the pool goes
      }
    }
  }
  if (last) delete this;
}

}  // namespace fibers::detail
