// lib/runtime/spawn.cpp - spawn_fiber: builds the Boost.Fiber context of a new fiber.
//
// Kept apart from fiber.cpp because this file instantiates Boost.Context's fiber entry and exit
// templates. Under ThreadSanitizer it is compiled without instrumentation (lib/meson.build):
// those frames are entered on one fiber and left on another (a fiber's first jump back to its
// creator; its last frames returning while whoever drops its last reference resumes it to free
// its stack), which would unbalance TSan's per-fiber shadow call stacks.
#include <memory>
#include <new>

#include <boost/fiber/fiber.hpp>

#include "fibers/fiber.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/stack_pool.hpp"

namespace fibers {

fiber spawn_fiber(spawn_options opts, detail::unique_function fn) {
  detail::io_thread& t = detail::require_io_thread("fibers::spawn");
  const std::shared_ptr<detail::stack_pool>& pool = t.stacks(opts.stack_size);
  boost::context::stack_context sc = pool->allocate();
  const void* limit = static_cast<char*>(sc.sp) - sc.size;  // lowest address of the stack
  const bool canary = pool->last_canary();
  // The fiber's state takes the top of its stack; Boost puts its context record below it.
  constexpr std::size_t state_room = (sizeof(detail::fiber_state) + 63) & ~std::size_t{63};
  void* where = static_cast<char*>(sc.sp) - state_room;
  sc.sp = where;
  sc.size -= state_room;
  detail::fiber_state* st = nullptr;
  try {
    st = new (where) detail::fiber_state(std::move(opts.name), std::move(fn), &t);
    st->stack_limit = limit;
    st->stack_size = pool->stack_size();
    st->stack_canary = canary;
    sanitizer_fiber_created(st->san, st->stack_limit, st->stack_size);
    boost::fibers::fiber f(boost::fibers::launch::post,
                           static_cast<boost::fibers::fiber_properties*>(st), std::allocator_arg,
                           detail::pooled_stack(pool, sc), [st] { st->run(); });
    f.detach();  // the context holds itself until it ends; the handle's reference is below
  } catch (...) {
    if (st != nullptr) st->~fiber_state();
    pool->deallocate(sc);
    throw;
  }
  intrusive_ptr_add_ref(st->context());  // the handle's reference
  t.add_fiber(st);
  if (t.stopping()) st->cancel_requested.store(true, std::memory_order_relaxed);
  return fiber(st);
}

}  // namespace fibers
