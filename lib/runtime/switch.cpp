// lib/runtime/switch.cpp - the context switch (jump_context, context.hpp) on x86-64 ELF.
//
// Boost.Context's jump_fcontext ends with `jmp *%r8` to the resumed context's return address.
// The `call` into it pushed an entry on the CPU's return-stack predictor that no `ret` pops, so
// after every switch the predictor is one entry off: each return on the resumed side, all the
// way up its call chain, is predicted to go where the one before should have gone, and
// mispredicts (bench/README.md, issue 13: after a switch the profile's samples sit on the
// instruction after each call of park, suspend and join). This is the same switch, frame for
// frame (so make_fcontext's fresh contexts and their trampoline work unchanged), ending with
// `ret` instead: the return address is popped off the resumed stack and the predictor's entry
// with it. Between contexts at the same call site (a yield to a yield) the prediction is then
// right; elsewhere only that first return mispredicts.
//
// Frame (0x40 bytes below the return address), as Boost 1.81 lays it out:
//   0x00 MXCSR, 0x04 x87 control word, 0x10 r12, 0x18 r13, 0x20 r14, 0x28 r15, 0x30 rbx,
//   0x38 rbp, 0x40 return address.
#include "runtime/context.hpp"

#if FIBERS_OWN_JUMP
__asm__(R"(
    .pushsection .text
    .globl fibers_jump_context
    .hidden fibers_jump_context
    .type fibers_jump_context,@function
    .align 16
fibers_jump_context:
    .cfi_startproc
    leaq  -0x40(%rsp), %rsp
    stmxcsr (%rsp)
    fnstcw  0x4(%rsp)
    movq  %r12, 0x10(%rsp)
    movq  %r13, 0x18(%rsp)
    movq  %r14, 0x20(%rsp)
    movq  %r15, 0x28(%rsp)
    movq  %rbx, 0x30(%rsp)
    movq  %rbp, 0x38(%rsp)
    movq  %rsp, %rax
    movq  %rdi, %rsp
    ldmxcsr (%rsp)
    fldcw   0x4(%rsp)
    movq  0x10(%rsp), %r12
    movq  0x18(%rsp), %r13
    movq  0x20(%rsp), %r14
    movq  0x28(%rsp), %r15
    movq  0x30(%rsp), %rbx
    movq  0x38(%rsp), %rbp
    leaq  0x40(%rsp), %rsp
    movq  %rsi, %rdx
    movq  %rax, %rdi
    ret
    .cfi_endproc
    .size fibers_jump_context,.-fibers_jump_context
    .popsection
)");
#endif
