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

class stack_pool {
 public:
  /// Pool of stacks of `size` bytes (rounded up to whole pages; at least 8 KiB) for the I/O
  /// thread `owner` (frees on other threads go through a locked list).
  stack_pool(std::size_t size, const void* owner, bool canary = true);
  stack_pool(const stack_pool&) = delete;
  stack_pool& operator=(const stack_pool&) = delete;
  ~stack_pool();

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
  /// thread (a fiber's last reference may be dropped elsewhere).
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
  void carve_slab();

  const std::size_t size_;
  const void* const owner_;
  const bool canary_;
  std::vector<void*> free_;  // limits (lowest addresses) of free stacks; owner thread only
  std::mutex remote_mu_;
  std::vector<void*> remote_free_;  // freed on other threads
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
