// lib/runtime/spawn.cpp - spawn_fiber: a new fiber on the calling I/O thread.
#include <memory>
#include <new>

#include <boost/context/detail/fcontext.hpp>

#include "fibers/fiber.hpp"
#include "fibers/scope.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/stack_pool.hpp"

namespace fibers {

fiber spawn_fiber(spawn_options opts, detail::unique_function fn) {
  return detail::spawn_with_deadline(std::move(opts), std::move(fn), current_deadline());
}

fiber detail::spawn_with_deadline(spawn_options&& opts, detail::unique_function&& fn,
                                  clock::time_point inherited) {
  detail::io_thread& t = detail::require_io_thread("fibers::spawn");
  t.spawn_checkpoint();  // may yield to the loop, before the new fiber exists
  detail::stack_pool& pool = t.stacks(opts.stack_size);
  const detail::stack_pool::allocation stack = pool.allocate();
  const boost::context::stack_context& sc = stack.sc;
  // The fiber's state takes the top of its stack; its frames start below it.
  constexpr std::size_t state_room = (sizeof(detail::fiber_state) + 63) & ~std::size_t{63};
  void* where = static_cast<char*>(sc.sp) - state_room;
  // Nothing below throws: the name and the function are moved, not copied.
  auto* st = new (where) detail::fiber_state(std::move(opts.name), std::move(fn), &t);
  st->stack_limit = static_cast<char*>(sc.sp) - sc.size;  // lowest address of the stack
  st->stack_size = pool.stack_size();
  st->stack_canary = stack.canary;
  st->pool = &pool;
  st->inherited_deadline = inherited;
  st->stack = sc;
  sanitizer_fiber_created(st->san, st->stack_limit, st->stack_size);
  st->fctx = boost::context::detail::make_fcontext(where, sc.size - state_room, &detail::io_thread::fiber_entry);
  t.add_fiber(st);
  if (t.stopping()) st->cancel_requested.fetch_or(detail::fiber_state::cancel_external, std::memory_order_relaxed);
  t.make_ready_new(st);  // runs after the spawner parks or yields (launch::post)
  return fiber(st);
}

}  // namespace fibers
