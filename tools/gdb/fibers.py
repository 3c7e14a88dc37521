# tools/gdb/fibers.py - gdb commands for libfibers programs.
#
#   (gdb) source tools/gdb/fibers.py
#   (gdb) info fibers            # every fiber of every I/O thread: id, name, what it waits for
#   (gdb) fiber bt ID [N]        # backtrace of a suspended fiber (its saved registers)
#
# Every libfibers wait goes through detail::park(), which records its own frame pointer
# (fiber_state::park_frame; libfibers is built with frame pointers). From it, x86-64 System V:
# the caller's RBP is at [frame], the return address at [frame+8], and the caller's stack
# pointer is frame+16. `fiber bt` loads those into the selected thread, runs `bt` (gdb's
# DWARF unwinder takes it from there), and puts the thread's real registers back. Live
# processes only (a core file's registers cannot be changed). Both commands need libfibers'
# debug info (its types); without it they say so instead of failing.
import gdb


_REGISTRY = "'fibers::detail::io_thread::registry()::threads'"


def _registry():
    """The I/O threads' registry (a std::vector), or a GdbError that says what is missing."""
    try:
        gdb.lookup_type("fibers::detail::io_thread")
        return gdb.parse_and_eval(_REGISTRY)
    except gdb.error:
        pass
    try:
        # Only the ELF symbol, without its type: the library was built without debug info.
        addr = int(gdb.parse_and_eval("&" + _REGISTRY))
    except gdb.error:
        raise gdb.GdbError("no libfibers in this process (not linked, or not loaded yet: "
                           "run or start the program first)") from None
    where = gdb.solib_name(addr) or gdb.current_progspace().filename
    raise gdb.GdbError("libfibers has no debug info (%s; built with --buildtype=release?): "
                       "rebuild it with -g, e.g. --buildtype=debugoptimized, to use "
                       "'info fibers' and 'fiber bt'" % where)


def _threads():
    reg = _registry()
    start = reg["_M_impl"]["_M_start"]
    finish = reg["_M_impl"]["_M_finish"]
    n = int(finish - start)
    return [start[i] for i in range(n)]


def _fibers():
    out = []
    for t in _threads():
        st = t["live_"]
        while int(st) != 0:
            out.append((t, st))
            st = st["next_live"]
    return out


def _name(st):
    s = st["name"]
    try:
        text = s["_M_dataplus"]["_M_p"].string(length=int(s["_M_string_length"]))
    except gdb.error:
        text = ""
    return text if text else "fiber-%d" % int(st["id"])


class InfoFibers(gdb.Command):
    """List libfibers fibers: info fibers"""

    def __init__(self):
        super().__init__("info fibers", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        fibers = _fibers()
        if not fibers:
            print("no libfibers fibers (is a runtime running?)")
        for t, st in fibers:
            what = st["wait_what"]
            state = "ready/running"
            if int(what) != 0:
                state = "waiting: " + what.string()
                if int(st["wait_fd"]) >= 0:
                    state += " fd %d" % int(st["wait_fd"])
            print("thread %d  fiber %d '%s'  %s" % (int(t["index_"]), int(st["id"]), _name(st), state))


class FiberPrefix(gdb.Command):
    """Commands on libfibers fibers."""

    def __init__(self):
        super().__init__("fiber", gdb.COMMAND_STACK, prefix=True)


class FiberBt(gdb.Command):
    """Backtrace of a suspended fiber: fiber bt ID [COUNT]"""

    def __init__(self):
        super().__init__("fiber bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if not args:
            raise gdb.GdbError("usage: fiber bt ID [COUNT]")
        wanted = int(args[0])
        count = args[1] if len(args) > 1 else ""
        for t, st in _fibers():
            if int(st["id"]) != wanted:
                continue
            if int(st["wait_what"]) == 0:
                raise gdb.GdbError("fiber %d is not suspended in a wait" % wanted)
            frame_ptr = int(st["park_frame"])
            u64 = gdb.lookup_type("unsigned long").pointer()
            rbp = int(gdb.Value(frame_ptr).cast(u64).dereference())
            rip = int(gdb.Value(frame_ptr + 8).cast(u64).dereference())
            rsp = frame_ptr + 16
            frame = gdb.selected_frame()
            saved = {r: int(frame.read_register(r)) for r in ("rsp", "rbp", "rip")}
            print("fiber %d '%s':" % (wanted, _name(st)))
            try:
                gdb.execute("set $rsp = %d" % rsp)
                gdb.execute("set $rbp = %d" % rbp)
                gdb.execute("set $rip = %d" % rip)
                gdb.execute("bt %s" % count)
            finally:
                gdb.execute("set $rsp = %d" % saved["rsp"])
                gdb.execute("set $rbp = %d" % saved["rbp"])
                gdb.execute("set $rip = %d" % saved["rip"])
            return
        raise gdb.GdbError("no fiber %d" % wanted)


InfoFibers()
FiberPrefix()
FiberBt()
