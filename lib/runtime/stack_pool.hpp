// lib/runtime/stack_pool.hpp - fiber stacks carved from large mmap'd slabs and recycled.
//
// Spawning must not mmap (a fresh protected stack costs ~15 µs): stacks come from a per-I/O
// thread free list, refilled by carving a slab of many stacks at once. Every stack gets a guard
// page below it: on Linux >= 6.13 a guard region (madvise MADV_GUARD_INSTALL: no mapping split,
// no memory, no limit); on older kernels a PROT_NONE page while the process is below a share
// of vm.max_map_count (each such guard splits the slab mapping, and the default limit is
// 65530), and beyond that a canary at its limit (if the runtime keeps canaries on), checked at
// each switch away from the fiber and when it ends. One pool serves one stack size; an I/O
// thread has one per size.
//
// Ownership: the I/O thread owns its pools (owned_stack_pool). A fiber keeps a plain pointer to
// its stack's pool, so spawn and the last release of a fiber touch no reference count. A handle
// may outlive its thread, though, and give its stack back later: when the thread is done with
// a pool it orphans it (under the remote-free mutex), and the pool deletes itself once its
// last outstanding stack has come back (at once if none is out).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <boost/context/stack_context.hpp>

namespace fibers::detail {

/// `size` rounded up to whole pages, at least 8 KiB: the size a stack_pool gives its stacks.
std::size_t round_to_pages(std::size_t size) noexcept;

class stack_pool;

/// Ends the owner's use of a pool: stack_pool::orphan.
struct stack_pool_orphaner {
  void operator()(stack_pool* p) const noexcept;
};
/// How an I/O thread holds its pools.
using owned_stack_pool = std::unique_ptr<stack_pool, stack_pool_orphaner>;

class stack_pool {
 public:
  /// Pool of stacks of `size` bytes (rounded up to whole pages; at least 8 KiB) for the I/O
  /// thread whose io_thread::id() is `owner_id` (frees on other threads go through a locked
  /// list).
  static owned_stack_pool create(std::size_t size, std::uint64_t owner_id, bool canary = true);
  stack_pool(const stack_pool&) = delete;
  stack_pool& operator=(const stack_pool&) = delete;

  /// The owner is done with the pool (its thread has ended, or will allocate no more): the
  /// pool is deleted now if no stack is out, else by the deallocate() that returns the last
  /// one. No allocate() after this; deallocate() from any thread.
  void orphan() noexcept;

  /// A stack from allocate().
  struct allocation {
    /// The bytes above sc.sp belong to the pool; a caller may keep some below sc.sp for itself
    /// (lowering sp and size alike).
    boost::context::stack_context sc;
    /// A canary sits at the stack's limit (it has no guard page below it; a guarded stack
    /// carries no canary, which keeps a parked fiber's bottom page untouched).
    bool canary;
  };
  /// A stack; throws std::bad_alloc when no slab can be mapped.
  allocation allocate();
  /// Returns a stack; `sc` as allocate() gave it, or with sp and size lowered alike. Any
  /// thread (a fiber's last reference may be dropped elsewhere), also after orphan(): then the
  /// last one deletes the pool.
  void deallocate(boost::context::stack_context& sc) noexcept;

  std::size_t stack_size() const noexcept { return size_; }
  /// Stacks carved from slabs so far (any thread may read it).
  std::uint64_t carved() const noexcept { return carved_.load(std::memory_order_relaxed); }

  /// The value at the limit of a stack that carries a canary (check_stack reads it).
  static constexpr std::uint64_t canary = 0x5AFE'F1BE'75AC'CA11ull;
  /// Stacks carved with a PROT_NONE guard page (not counting guard regions, which cost no
  /// mapping), process-wide, and the cap on them.
  static std::size_t guarded_stacks() noexcept;
  static std::size_t guard_cap() noexcept;

 private:
  stack_pool(std::size_t size, std::uint64_t owner_id, bool canary);
  ~stack_pool();
  void carve_slab();
  /// deallocate() off the owner thread, or after orphan().
  void deallocate_remote(void* entry) noexcept;

  const std::size_t size_;
  // The owner's io_thread::id(), not its address: a new I/O thread may be allocated where an
  // ended one was, and must not take the orphaned pool's stacks for its own.
  const std::uint64_t owner_id_;
  const bool canary_;
  std::vector<void*> free_;  // limits (lowest addresses) of free stacks; owner thread only
  std::mutex remote_mu_;
  // Under remote_mu_:
  std::vector<void*> remote_free_;  // freed on other threads
  bool orphaned_ = false;
  std::size_t outstanding_ = 0;  // once orphaned: stacks not back yet
  std::size_t lost_ = 0;         // stacks a full free list could not take (out of memory)
  std::vector<std::pair<void*, std::size_t>> slabs_;
  std::atomic<std::uint64_t> carved_{0};
  // Free-list entries are page-aligned limits; bit 0 marks a guarded stack.
  static constexpr std::uintptr_t guarded_bit = 1;
  // At the top of every stack, so deallocate() (maybe on another thread) knows its kind.
  struct alignas(64) stack_header {
    bool guarded;
  };
};

}  // namespace fibers::detail
