// The emulator's scheduler: blocks one at a time, each block's threads as fibers
// (fiber.h) switched only at barriers and shuffles; see emu.h for the model and
// README.md for what it checks. Errors (barrier deadlock or divergence, a shuffle
// naming an exited or missing lane) abort with the kernel, block and thread named.
#include "tests/cuda_emu/emu.h"

#include "tests/cuda_emu/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace emu {

thread_local uint3 tl_threadIdx, tl_blockIdx;
thread_local dim3 tl_blockDim, tl_gridDim;

// Set by runtime.cc's cudaFuncSetAttribute: the dynamic shared memory a kernel opted into.
std::map<const void*, int>& smem_opt_in();
void check_canaries(const char* kernel);
void set_last_error(cudaError_t e);

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;
constexpr size_t kDefaultSmem = 48 * 1024;
constexpr size_t kMaxOptInSmem = 227 * 1024;  // H100/H200: 227 KB per block

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Exited };

struct Fiber {
  FiberContext ctx;
  State state = State::Ready;
  unsigned warp_mask = 0;  // the mask it waits on at a warp barrier
};

struct Warp {
  unsigned exists = 0, exited = 0, arrived = 0;
  uint64_t slot[32] = {};
  std::vector<unsigned char> gather;
};

// One mmap'd stack per thread slot, reused by every block; a guard page below each.
char* fiber_stack(int i) {
  static thread_local std::vector<char*> stacks;  // per host thread: launches may run concurrently
  while (int(stacks.size()) <= i) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) fail("mmap of a fiber stack failed");
    mprotect(p, page, PROT_NONE);
    stacks.push_back(static_cast<char*>(p) + page);
  }
  return stacks[size_t(i)];
}

struct Block {
  const char* kernel = "";
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  int n = 0, live = 0, cur = 0, at_barrier = 0;
  std::vector<Fiber> fibers;
  std::vector<int> order;
  std::vector<Warp> warps;
  FiberContext sched;
  std::vector<unsigned char> dyn_smem;
  std::vector<std::pair<const void*, std::unique_ptr<unsigned char[]>>> static_smem;
};

thread_local Block* g_block = nullptr;

Block& block() {
  if (!g_block) fail("a device function (barrier, shuffle, shared memory) was called outside a kernel");
  return *g_block;
}

uint3 thread_of(const Block& b, int i) {
  const dim3& d = tl_blockDim;
  return uint3{unsigned(i) % d.x, unsigned(i) / d.x % d.y, unsigned(i) / (d.x * d.y)};
}

void yield() {
  Block& b = block();
  fiber_switch(b.fibers[size_t(b.cur)].ctx, b.sched);
}

void release_block_barrier(Block& b) {
  if (b.at_barrier == 0 || b.at_barrier != b.live) return;
  for (Fiber& f : b.fibers) {
    if (f.state == State::AtBlockBarrier) f.state = State::Ready;
  }
  b.at_barrier = 0;
}

std::string where(const Block& b, int i) {
  const uint3 t = thread_of(b, i);
  char buf[256];
  std::snprintf(buf, sizeof buf, "kernel %s block (%u,%u,%u) thread (%u,%u,%u)", b.kernel, tl_blockIdx.x,
                tl_blockIdx.y, tl_blockIdx.z, t.x, t.y, t.z);
  return buf;
}

void fiber_main() {
  Block& b = block();
  b.body(b.ctx);
  Fiber& me = b.fibers[size_t(b.cur)];
  me.state = State::Exited;
  --b.live;
  Warp& w = b.warps[size_t(b.cur / 32)];
  w.exited |= 1u << (b.cur % 32);
  for (int l = 0; l < 32; ++l) {
    const Fiber* f = w.arrived >> l & 1u ? &b.fibers[size_t(b.cur / 32 * 32 + l)] : nullptr;
    if (f && (f->warp_mask >> (b.cur % 32) & 1u))
      fail(("a lane exited while others wait for it at a warp barrier/shuffle: " + where(b, b.cur)).c_str());
  }
  release_block_barrier(b);
  fiber_switch(me.ctx, b.sched);  // never resumed: the next block starts it afresh
}

[[noreturn]] void deadlock(const Block& b) {
  int at_block = 0, at_warp = 0;
  for (const Fiber& f : b.fibers) {
    at_block += f.state == State::AtBlockBarrier;
    at_warp += f.state == State::AtWarpBarrier;
  }
  const std::string msg = "deadlock in " + where(b, 0) + ": " + std::to_string(at_block) +
                          " threads wait at __syncthreads, " + std::to_string(at_warp) +
                          " at a warp barrier/shuffle, " + std::to_string(b.n - b.live) +
                          " exited (barrier divergence: a GPU would hang or misbehave)";
  fail(msg.c_str());
}

// One sweep over the ready fibers in the block's order; false when none was ready.
bool sweep(Block& b) {
  bool ran = false;
  for (const int i : b.order) {
    if (b.fibers[size_t(i)].state != State::Ready) continue;
    b.cur = i;
    tl_threadIdx = thread_of(b, i);
    fiber_switch(b.sched, b.fibers[size_t(i)].ctx);
    ran = true;
  }
  return ran;
}

// The order threads first run in: ascending, descending or a pseudo-random
// permutation, by (launch + block) % 3, so one missing barrier shows in some order
// and a rerun of a launcher sees other orders than the first run.
void set_order(Block& b, uint64_t variant) {
  b.order.resize(size_t(b.n));
  for (int i = 0; i < b.n; ++i) b.order[size_t(i)] = variant % 3 == 1 ? b.n - 1 - i : i;
  if (variant % 3 != 2) return;
  uint64_t x = variant * 0x9E3779B97F4A7C15ull + 1;
  for (int i = b.n - 1; i > 0; --i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
    std::swap(b.order[size_t(i)], b.order[size_t(x % uint64_t(i + 1))]);
  }
}

void start_fibers(Block& b) {
  for (int i = 0; i < b.n; ++i) {
    Fiber& f = b.fibers[size_t(i)];
    f.state = State::Ready;
    // Stack tops staggered by i cache lines: equal offsets from page-aligned stacks
    // would all map to the same cache sets.
    fiber_init(f.ctx, fiber_stack(i), kStackBytes - size_t(i % 64) * 64 - size_t(i / 64 % 16) * 4096, fiber_main);
  }
  for (int w = 0; w < int(b.warps.size()); ++w) {
    const int lanes = std::min(32, b.n - 32 * w);
    Warp& warp = b.warps[size_t(w)];
    warp.exited = warp.arrived = 0;
    warp.exists = lanes == 32 ? ~0u : (1u << lanes) - 1;
  }
}

void run_block(Block& b, size_t smem, uint64_t variant) {
  b.live = b.n;
  b.at_barrier = 0;
  b.static_smem.clear();
  b.dyn_smem.assign(smem, 0xFF);
  start_fibers(b);
  set_order(b, variant);
  while (b.live > 0) {
    if (!sweep(b)) deadlock(b);
  }
}

bool valid(const char* name, const void* kernel, const Config& c) {
  const size_t threads = size_t(c.block.x) * c.block.y * c.block.z;
  const bool dims_ok = threads >= 1 && threads <= kMaxThreads && c.block.z <= 64 && c.grid.x >= 1 &&
                       c.grid.y >= 1 && c.grid.z >= 1 && c.grid.y <= 65535 && c.grid.z <= 65535;
  if (!dims_ok) {
    std::fprintf(stderr, "emu: %s launched with an invalid configuration grid (%u,%u,%u) block (%u,%u,%u)\n", name,
                 c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z);
    set_last_error(cudaErrorInvalidConfiguration);
    return false;
  }
  const auto it = smem_opt_in().find(kernel);
  const size_t limit = it == smem_opt_in().end()
                           ? kDefaultSmem
                           : std::max(kDefaultSmem, std::min(kMaxOptInSmem, size_t(it->second)));
  if (c.smem > limit) {
    std::fprintf(stderr, "emu: %s asks for %zu bytes of dynamic shared memory, %zu allowed (opt in with "
                 "cudaFuncSetAttribute above 48 KB)\n", name, c.smem, limit);
    set_last_error(cudaErrorInvalidValue);
    return false;
  }
  return true;
}

}  // namespace

bool launch_ok(const char* name, const void* kernel, const Config& cfg) { return valid(name, kernel, cfg); }

void fail(const char* what) {
  std::fprintf(stderr, "emu: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

void run_kernel(const char* name, const void* kernel, const Config& cfg, void (*body)(void*), void* ctx) {
  if (g_block) fail("kernel launched from device code (dynamic parallelism is not emulated)");
  if (!valid(name, kernel, cfg)) return;
  const DeviceAccess access;
  Block b;
  b.kernel = name;
  b.body = body;
  b.ctx = ctx;
  b.n = int(cfg.block.x * cfg.block.y * cfg.block.z);
  b.fibers.resize(size_t(b.n));
  b.warps.resize(size_t((b.n + 31) / 32));
  tl_blockDim = cfg.block;
  tl_gridDim = cfg.grid;
  g_block = &b;
  static thread_local uint64_t launches = 0;
  uint64_t k = launches++;
  for (unsigned z = 0; z < cfg.grid.z; ++z) {
    for (unsigned y = 0; y < cfg.grid.y; ++y) {
      for (unsigned x = 0; x < cfg.grid.x; ++x, ++k) {
        tl_blockIdx = uint3{x, y, z};
        run_block(b, cfg.smem, k);
      }
    }
  }
  g_block = nullptr;
  check_canaries(name);
}

void syncthreads() {
  Block& b = block();
  Fiber& me = b.fibers[size_t(b.cur)];
  me.state = State::AtBlockBarrier;
  ++b.at_barrier;
  release_block_barrier(b);
  if (me.state != State::Ready) yield();
}

void syncwarp(unsigned mask) {
  Block& b = block();
  const int lane = b.cur % 32;
  Warp& w = b.warps[size_t(b.cur / 32)];
  if (!(mask >> lane & 1u)) fail(("__syncwarp/shuffle by a lane not in its mask: " + where(b, b.cur)).c_str());
  if (mask & ~w.exists)
    fail(("warp mask names lanes past blockDim (partial warp): " + where(b, b.cur)).c_str());
  if (mask & w.exited) fail(("warp mask names lanes that have exited: " + where(b, b.cur)).c_str());
  Fiber& me = b.fibers[size_t(b.cur)];
  me.state = State::AtWarpBarrier;
  me.warp_mask = mask;
  w.arrived |= 1u << lane;
  if ((w.arrived & mask) == mask) {
    for (int l = 0; l < 32; ++l) {
      if (mask >> l & 1u) b.fibers[size_t(b.cur / 32 * 32 + l)].state = State::Ready;
    }
    w.arrived &= ~mask;
  }
  if (me.state != State::Ready) yield();
}

uint64_t warp_exchange(unsigned mask, uint64_t bits, int src_lane) {
  Block& b = block();
  Warp& w = b.warps[size_t(b.cur / 32)];
  w.slot[b.cur % 32] = bits;
  syncwarp(mask);
  if (src_lane < 0 || src_lane > 31 || !(mask >> src_lane & 1u))
    fail(("shuffle reads a lane outside its mask (undefined on a GPU): " + where(b, b.cur)).c_str());
  const uint64_t r = w.slot[src_lane];
  syncwarp(mask);  // nobody overwrites a slot before every lane has read
  return r;
}

int lane_id() { return block().cur % 32; }

void misaligned(const void* p, size_t align) {
  const std::string at = g_block ? where(*g_block, g_block->cur) : std::string("host code");
  char buf[128];
  std::snprintf(buf, sizeof buf, "pointer %p cast to a type needing %zu-byte alignment (misaligned address): ", p,
                align);
  fail((buf + at).c_str());
}

void check_launch_bounds(int max_threads, int) {
  const Block& b = block();
  if (b.n > max_threads)
    fail(("block of " + std::to_string(b.n) + " threads exceeds __launch_bounds__(" + std::to_string(max_threads) +
          "): " + where(b, b.cur)).c_str());
}

void warp_gather(const void* mine, size_t bytes, void* all) {
  Block& b = block();
  std::vector<unsigned char>& buf = b.warps[size_t(b.cur / 32)].gather;
  buf.resize(32 * bytes);
  std::memcpy(buf.data() + size_t(b.cur % 32) * bytes, mine, bytes);
  syncwarp(0xffffffffu);
  std::memcpy(all, buf.data(), 32 * bytes);
  syncwarp(0xffffffffu);
}

namespace {

float bf16_half(uint32_t reg, int half) { return std::bit_cast<float>((reg >> (16 * half) & 0xFFFFu) << 16); }

// PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type", with
// g = lane / 4, t = lane % 4: A element a_i (i = 0..7, two per register) is at row
// g + 8·((i / 2) % 2), column 2t + (i % 2) + 8·(i / 4); B element b_i (i = 0..3) at
// row 2t + (i % 2) + 8·(i / 2), column g; C/D element c_i at row g + 8·(i / 2),
// column 2t + (i % 2).
struct MmaOperands {
  float A[16][16], B[16][8];
};

MmaOperands mma_operands(const uint32_t (&regs)[32][6]) {
  MmaOperands m{};
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 8; ++i) {
      m.A[g + 8 * ((i / 2) % 2)][2 * t + i % 2 + 8 * (i / 4)] = bf16_half(regs[lane][i / 2], i % 2);
    }
    for (int i = 0; i < 4; ++i) m.B[2 * t + i % 2 + 8 * (i / 2)][g] = bf16_half(regs[lane][4 + i / 2], i % 2);
  }
  return m;
}

}  // namespace

void mma_m16n8k16_bf16(float& d0, float& d1, float& d2, float& d3, uint32_t a0, uint32_t a1, uint32_t a2,
                       uint32_t a3, uint32_t b0, uint32_t b1) {
  const uint32_t mine[6] = {a0, a1, a2, a3, b0, b1};
  uint32_t regs[32][6];
  warp_gather(mine, sizeof mine, regs);
  const MmaOperands m = mma_operands(regs);
  const int g = lane_id() / 4, t = lane_id() % 4;
  float* d[4] = {&d0, &d1, &d2, &d3};
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    float acc = *d[i];
    for (int k = 0; k < 16; ++k) acc += m.A[row][k] * m.B[k][col];
    *d[i] = acc;
  }
}

void* static_shared(const void* key, size_t bytes) {
  Block& b = block();
  for (auto& [k, p] : b.static_smem) {
    if (k == key) return p.get();
  }
  auto p = std::make_unique<unsigned char[]>(bytes);
  std::memset(p.get(), 0xFF, bytes);
  b.static_smem.emplace_back(key, std::move(p));
  return b.static_smem.back().second.get();
}

void* dynamic_shared() {
  Block& b = block();
  return b.dyn_smem.empty() ? nullptr : b.dyn_smem.data();
}

}  // namespace emu
