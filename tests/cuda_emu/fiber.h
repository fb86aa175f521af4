// Minimal fibers for the emulator's threads (emu.cc): a context is a saved stack
// pointer, and a switch saves the callee-saved registers on the current stack and
// restores the other's (x86-64 System V; a few instructions, no
// system call, which is what makes a 256-thread block with hundreds of barriers cheap).
// Elsewhere the same interface over ucontext (correct, ~50x slower).
#pragma once

#include <cstddef>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {

struct FiberContext {
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
};

// Prepares ctx to start entry() on [stack, stack + size) at its first switch-in;
// entry must never return (it switches away for the last time instead).
void fiber_init(FiberContext& ctx, char* stack, size_t size, void (*entry)());

// Saves the running context into from and resumes to.
void fiber_switch(FiberContext& from, FiberContext& to);

}  // namespace emu
