// Fiber switch; see fiber.h. Compiled with -fcf-protection=none (CMakeLists.txt): the
// switch returns into another stack, which a CET shadow stack would reject, and without
// the property note the loader never enables one for the test binaries.
#include "tests/cuda_emu/fiber.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)

extern "C" void emu_fiber_switch(void** save_sp, void* load_sp);

// Frame below the return address: rbp rbx r12 r13 r14 r15 (48 bytes). The FP control
// words (MXCSR, x87) are not switched: no emulated code changes them, and saving and
// loading them cost most of a switch.
asm(R"(
  .text
  .globl emu_fiber_switch
  .type emu_fiber_switch, @function
emu_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_fiber_switch, .-emu_fiber_switch
)");

namespace emu {

void fiber_init(FiberContext& ctx, char* stack, size_t size, void (*entry)()) {
  // The return slot 16-byte aligned, so entry starts with rsp = 8 (mod 16) as after a call.
  auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15);
  auto* ret = reinterpret_cast<uint64_t*>(top - 16);
  ret[0] = reinterpret_cast<uint64_t>(entry);
  ret[1] = 0;  // entry's own return address: it never returns
  auto* frame = reinterpret_cast<unsigned char*>(ret) - 48;  // the six callee-saved registers
  std::memset(frame, 0, 48);
  ctx.sp = frame;
}

void fiber_switch(FiberContext& from, FiberContext& to) { emu_fiber_switch(&from.sp, to.sp); }

}  // namespace emu

#else

namespace emu {

void fiber_init(FiberContext& ctx, char* stack, size_t size, void (*entry)()) {
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = stack;
  ctx.uc.uc_stack.ss_size = size;
  ctx.uc.uc_link = nullptr;
  makecontext(&ctx.uc, entry, 0);
}

void fiber_switch(FiberContext& from, FiberContext& to) { swapcontext(&from.uc, &to.uc); }

}  // namespace emu

#endif
