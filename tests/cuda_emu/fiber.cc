// Fiber switch; see fiber.h. Compiled with -fcf-protection=none (CMakeLists.txt): the
// switch returns into another stack, which a CET shadow stack would reject, and without
// the property note the loader never enables one for the test binaries.
#include "tests/cuda_emu/fiber.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)

extern "C" void emu_fiber_switch(void** save_sp, void* load_sp);

// Frame below the return address: rbp rbx r12 r13 r14 r15 (48 bytes), then 16 bytes
// holding the x87 control word (at 0) and MXCSR (at 8).
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
  subq $16, %rsp
  fnstcw (%rsp)
  stmxcsr 8(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  fldcw (%rsp)
  ldmxcsr 8(%rsp)
  addq $16, %rsp
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
  auto* frame = reinterpret_cast<unsigned char*>(ret) - 64;
  std::memset(frame, 0, 64);
  const uint16_t fpcw = 0x037F;  // the x86-64 ABI's initial control words
  const uint32_t mxcsr = 0x1F80;
  std::memcpy(frame, &fpcw, sizeof fpcw);
  std::memcpy(frame + 8, &mxcsr, sizeof mxcsr);
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
