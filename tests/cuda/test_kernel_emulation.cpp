// The fused GPU kernels (src/cuda/mma_kernel.cuh, compiled unchanged by the host compiler against
// tests/cuda/emulation/common.cuh) run on the CPU: every CUDA thread is a fiber (ucontext), the
// blocks of a grid run one after another, a warp's lanes meet at each collective (ldmatrix, mma,
// shuffle, __syncwarp) and a block's threads at __syncthreads; shared memory starts as garbage.
// cp.async copies land either at issue or only when the issuing lane waits for their group, so a
// missing wait or barrier shows in one mode or the other, and a barrier that not every thread
// reaches is reported as a deadlock. Every configuration that w4a16.cu / w8a16.cu launch, and the
// GEMV-style kernel, is checked like tests/cuda/test_gpu_kernels.cpp checks the real GPU: a float64
// reference within the float32 accumulation bound, one-hot activations reproduce the dequantized
// weight exactly, nothing is written outside y. What this cannot show: timing, the hardware's own
// behaviour where it differs from the PTX ISA's description, and the sm_89+ e4m3 conversion
// instruction (the emulation takes the sm_80 path).
#include <gtest/gtest.h>

#include <ucontext.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>

#include <quanto/cuda/repack.hpp>
#include <quanto/quanto.hpp>

#include "../support/random_weight.hpp"
#include "mma_kernel.cuh"  // the copy next to the stand-in common.cuh

thread_local uint3 threadIdx;
uint3 blockIdx, blockDim, gridDim;

QUANTO_BEGIN_NAMESPACE
namespace cuda::dev {
/// The kernels' `extern __shared__` array: one block runs at a time.
alignas(16) unsigned char smem[256 * 1024];
}  // namespace cuda::dev
QUANTO_END_NAMESPACE

// ---- the fiber runtime -----------------------------------------------------------------------------------

namespace emu {

bool deferred_copies = false;
unsigned char* smem_base = quanto::cuda::dev::smem;

struct pending_copy {
  std::uint32_t dst;
  unsigned char data[16];
};

struct fiber {
  ucontext_t ctx{};
  std::vector<char> stack;
  int wait = 0;  // 0: runnable, 1: at a warp barrier, 2: at the block barrier
  bool done = false;
  std::vector<std::vector<pending_copy>> groups;  // committed cp.async groups, oldest first
  std::vector<pending_copy> open;                 // not yet committed
};

struct block_run {
  std::vector<fiber> fibers;
  ucontext_t scheduler{};
  int current = 0;
  std::function<void()> kernel;
  std::vector<std::array<std::array<std::uint32_t, 16>, 32>> exchange;  // per warp, per lane
  std::string error;
};
block_run* run = nullptr;

fiber& self() { return run->fibers[static_cast<std::size_t>(run->current)]; }
int lane() { return run->current % 32; }

void yield() { swapcontext(&self().ctx, &run->scheduler); }
void sync_warp() {
  self().wait = 1;
  yield();
}
void sync_block() {
  self().wait = 2;
  yield();
}
std::uint32_t (*exchange(const std::uint32_t* in, int words))[16] {
  auto& buf = run->exchange[static_cast<std::size_t>(run->current / 32)];
  for (int i = 0; i < words; ++i) buf[static_cast<std::size_t>(lane())][static_cast<std::size_t>(i)] = in[i];
  sync_warp();  // every lane has published
  return reinterpret_cast<std::uint32_t(*)[16]>(buf.data());
}
void exchange_done() { sync_warp(); }  // every lane has read

void land(const pending_copy& c) { std::memcpy(smem_base + c.dst, c.data, 16); }
void cp_async(std::uint32_t dst, const void* src, bool valid) {
  pending_copy c{dst, {}};
  if (valid) std::memcpy(c.data, src, 16);  // zero-fill otherwise
  if (deferred_copies)
    self().open.push_back(c);
  else
    land(c);
}
void cp_commit() {
  fiber& f = self();
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}
void cp_wait(int n) {
  fiber& f = self();
  while (static_cast<int>(f.groups.size()) > n) {
    for (const auto& c : f.groups.front()) land(c);
    f.groups.erase(f.groups.begin());
  }
}

void entry() {
  run->kernel();
  self().done = true;
  yield();
}

/// Gives a fiber its stack and entry point (kept out of the callers' frames: getcontext returns twice).
[[gnu::noinline]] void prepare(fiber& f) {
  f.stack.resize(std::size_t{256} << 10);
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack.data();
  f.ctx.uc_stack.ss_size = f.stack.size();
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, entry, 0);
}

/// Runs thread i of the current block until its next barrier or its end.
[[gnu::noinline]] void resume(block_run& r, int i) {
  r.current = i;
  threadIdx = {static_cast<unsigned>(i), 0, 0};
  swapcontext(&r.scheduler, &r.fibers[static_cast<std::size_t>(i)].ctx);
}

/// Runs one block (blockIdx set) to its end; returns an error message or nothing.
std::string run_block(int threads, const std::function<void()>& kernel) {
  block_run r;
  r.kernel = kernel;
  r.fibers.resize(static_cast<std::size_t>(threads));
  r.exchange.resize(static_cast<std::size_t>((threads + 31) / 32));
  run = &r;
  for (auto& f : r.fibers) prepare(f);
  std::string error;
  for (;;) {
    for (int i = 0; i < threads; ++i)  // every runnable thread to its next barrier or its end
      if (!r.fibers[static_cast<std::size_t>(i)].done && !r.fibers[static_cast<std::size_t>(i)].wait) resume(r, i);
    bool all_done = true, released = false;
    for (const auto& f : r.fibers) all_done = all_done && f.done;
    if (all_done) break;
    for (int w = 0; w * 32 < threads; ++w) {  // a warp barrier opens when every live lane is at it
      bool any = false, all = true;
      for (int l = 0; l < 32; ++l) {
        const fiber& f = r.fibers[static_cast<std::size_t>(w * 32 + l)];
        if (f.done) continue;
        any = true;
        all = all && f.wait == 1;
      }
      if (any && all) {
        for (int l = 0; l < 32; ++l) r.fibers[static_cast<std::size_t>(w * 32 + l)].wait = 0;
        released = true;
      }
    }
    if (!released) {  // the block barrier opens when every live thread is at it
      bool all = true;
      for (const auto& f : r.fibers) all = all && (f.done || f.wait == 2);
      if (all) {
        for (auto& f : r.fibers) f.wait = 0;
        released = true;
      }
    }
    if (!released) {
      error = "deadlock: threads wait at different barriers";
      break;
    }
  }
  for (const auto& f : r.fibers)
    if (error.empty() && (!f.groups.empty() || !f.open.empty()))
      error = "cp.async copies left pending at the end of the kernel";
  run = nullptr;
  return error;
}

/// Runs `kernel` as every thread of every block of `grid` (`threads` per block). Returns an error
/// message (a deadlock, copies left pending), empty when the launch ran through.
std::string launch(uint3 grid, int threads, const std::function<void()>& kernel, unsigned seed) {
  gridDim = grid;
  blockDim = {static_cast<unsigned>(threads), 1, 1};
  std::mt19937 rng(seed);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = {x, y, z};
        for (auto& b : quanto::cuda::dev::smem) b = static_cast<unsigned char>(rng());  // garbage, never zeros
        const std::string error = run_block(threads, kernel);
        if (!error.empty())
          return "block (" + std::to_string(x) + ", " + std::to_string(y) + ", " + std::to_string(z) + "): " + error;
      }
  return {};
}

}  // namespace emu

// ---- the checks ------------------------------------------------------------------------------------------

namespace {

using namespace quanto;
namespace qc = quanto::cuda;
namespace dev = quanto::cuda::dev;
using dev::wcode;

template <class T>
using device_t = std::conditional_t<std::is_same_v<T, float16>, __half, __nv_bfloat16>;

using quanto_test::random_weight;

/// x [m, k] (ldx = k + 8), y [(m + 2), ldy = n + 8] poisoned with NaN, the split-k partial sums.
template <class T>
struct problem {
  std::int64_t m, n, k, ldx, ldy;
  std::vector<T> x, bias, y;
  std::vector<float> partial;
  bool with_bias = true;
  std::vector<std::int64_t> hot;  // one-hot positions, when set

  problem(std::int64_t m_, std::int64_t n_, std::int64_t k_, unsigned seed)
      : m(m_), n(n_), k(k_), ldx(k_ + 8), ldy(n_ + 8) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    x.resize(static_cast<std::size_t>(m * ldx));
    for (auto& v : x) v = T(d(rng));
    bias.resize(static_cast<std::size_t>(n));
    for (auto& v : bias) v = T(0.5f * d(rng));
  }
  void one_hot(unsigned seed) {
    std::mt19937 rng(seed);
    hot.resize(static_cast<std::size_t>(m));
    for (auto& v : hot) v = static_cast<std::int64_t>(rng() % static_cast<unsigned>(k));
    for (auto& v : x) v = T(0.0f);
    for (std::int64_t i = 0; i < m; ++i)
      x[static_cast<std::size_t>(i * ldx + hot[static_cast<std::size_t>(i)])] = T(1.0f);
    with_bias = false;
  }
};

template <class T>
void expect_result(const problem<T>& p, const tensor<T>& wdq, const std::string& what) {
  const double u = std::is_same_v<T, float16> ? 0x1p-11 : 0x1p-8;
  int bad = 0;
  for (std::int64_t i = 0; i < p.m + 2; ++i)
    for (std::int64_t j = 0; j < p.ldy; ++j) {
      const double got = to_float(p.y[static_cast<std::size_t>(i * p.ldy + j)]);
      if (i >= p.m || j >= p.n) {
        if (p.y[static_cast<std::size_t>(i * p.ldy + j)].to_bits() != 0xFFFF && ++bad <= 3)
          ADD_FAILURE() << what << ": wrote outside y at (" << i << ", " << j << ")";
        continue;
      }
      if (!p.hot.empty()) {
        const double want = to_float(wdq[static_cast<std::size_t>(j * p.k + p.hot[static_cast<std::size_t>(i)])]);
        if (!(got == want) && ++bad <= 3)
          ADD_FAILURE() << what << ": one-hot y[" << i << ", " << j << "] = " << got << ", weight " << want;
        continue;
      }
      double ref = 0, mag = 0;
      for (std::int64_t e = 0; e < p.k; ++e) {
        const double pr = static_cast<double>(to_float(p.x[static_cast<std::size_t>(i * p.ldx + e)])) *
                          static_cast<double>(to_float(wdq[static_cast<std::size_t>(j * p.k + e)]));
        ref += pr;
        mag += std::fabs(pr);
      }
      if (p.with_bias) {
        ref += to_float(p.bias[static_cast<std::size_t>(j)]);
        mag += std::fabs(to_float(p.bias[static_cast<std::size_t>(j)]));
      }
      const double bound = u * std::fabs(ref) + static_cast<double>(2 * p.k + 32) * 0x1p-24 * mag + 1e-4;
      if (!(std::fabs(got - ref) <= bound) && ++bad <= 3)
        ADD_FAILURE() << what << ": y[" << i << ", " << j << "] = " << got << ", float64 reference " << ref;
    }
  EXPECT_EQ(bad, 0) << what;
}

/// Runs a kernel over `grid` (grid.y = splits), then the split-k reduction (splitk_reduce's
/// arithmetic: float sums in split order, plus the bias, one rounding) on the CPU.
template <class T>
void run_kernel(problem<T>& p, const void* codes, const void* meta, int group_steps, int splits, uint3 grid,
                int threads, const std::function<void(const dev::mma_params&)>& kernel, unsigned seed,
                const std::string& what) {
  using E = dev::elem<device_t<T>>;
  p.y.assign(static_cast<std::size_t>((p.m + 2) * p.ldy), T::from_bits(0xFFFF));
  p.partial.assign(static_cast<std::size_t>(splits * p.m * p.n), std::nanf(""));
  dev::mma_params mp{};
  mp.codes = static_cast<const unsigned char*>(codes);
  mp.meta = meta;
  mp.x = p.x.data();
  mp.y = p.y.data();
  mp.bias = p.with_bias ? p.bias.data() : nullptr;
  mp.partial = p.partial.data();
  mp.ldx = p.ldx;
  mp.ldy = p.ldy;
  mp.m = static_cast<int>(p.m);
  mp.n = static_cast<int>(p.n);
  mp.k = static_cast<int>(p.k);
  mp.group_steps = group_steps;
  mp.splits = splits;
  grid.y = static_cast<unsigned>(splits);
  const std::string error = emu::launch(
      grid, threads, [&] { kernel(mp); }, seed);
  ASSERT_TRUE(error.empty()) << what << ": " << error;
  if (splits == 1) return;
  for (std::int64_t r = 0; r < p.m; ++r)
    for (std::int64_t c = 0; c < p.n; c += 2) {
      float a0 = 0, a1 = 0;
      for (int s = 0; s < splits; ++s) {
        a0 += p.partial[static_cast<std::size_t>((s * p.m + r) * p.n + c)];
        a1 += p.partial[static_cast<std::size_t>((s * p.m + r) * p.n + c + 1)];
      }
      if (p.with_bias) {
        a0 += to_float(p.bias[static_cast<std::size_t>(c)]);
        a1 += to_float(p.bias[static_cast<std::size_t>(c + 1)]);
      }
      const std::uint32_t v = E::pack2(a0, a1);
      p.y[static_cast<std::size_t>(r * p.ldy + c)] = T::from_bits(static_cast<std::uint16_t>(v & 0xFFFF));
      p.y[static_cast<std::size_t>(r * p.ldy + c + 1)] = T::from_bits(static_cast<std::uint16_t>(v >> 16));
    }
}

/// Both cp.async modes, random activations with a bias, then one-hot activations.
template <class T, class F>
void run_both(std::int64_t m, std::int64_t n, std::int64_t k, const tensor<T>& wdq, const void* codes, const void* meta,
              int group_steps, int splits, uint3 grid, int threads, const F& kernel, unsigned seed,
              const std::string& name) {
  for (const bool deferred : {false, true}) {
    emu::deferred_copies = deferred;
    const std::string what = name + (deferred ? " (copies land at wait)" : " (copies land at issue)");
    problem<T> p(m, n, k, seed);
    run_kernel(p, codes, meta, group_steps, splits, grid, threads, kernel, seed, what);
    expect_result(p, wdq, what);
    p.one_hot(seed + 1);
    run_kernel(p, codes, meta, group_steps, splits, grid, threads, kernel, seed + 2, what + " one-hot");
    expect_result(p, wdq, what + " one-hot");
  }
  emu::deferred_copies = false;
}

std::string shape_name(std::int64_t m, std::int64_t n, std::int64_t k, int splits) {
  return " m " + std::to_string(m) + " [" + std::to_string(n) + ", " + std::to_string(k) + "] split " +
         std::to_string(splits);
}

/// qint4 through mma_kernel configuration (MT, NT, WK, WN).
template <class T, bool ZP, int MT, int NT, int WK, int WN>
void w4_mma(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t group, int splits, unsigned seed) {
  using S = std::conditional_t<ZP, group_affine<true>, group_affine<false>>;
  const auto q = quantize_weight<qint4>(random_weight<T>(n, k, seed), S{group});
  const auto pk = qc::repack_w4a16(q);
  const uint3 grid{static_cast<unsigned>((n + 64 * NT * WN - 1) / (64 * NT * WN)), 1,
                   static_cast<unsigned>((m + 16 * MT - 1) / (16 * MT))};
  const auto kernel = [](const dev::mma_params& mp) {
    dev::mma_kernel<device_t<T>, ZP ? wcode::u4_zp : wcode::u4, MT, NT, WK, WN, 4>(mp);
  };
  const std::string name = std::string("w4a16 ") + (std::is_same_v<T, float16> ? "f16" : "bf16") + (ZP ? " zp" : "") +
                           " MT " + std::to_string(MT) + " NT " + std::to_string(NT) + " group " +
                           std::to_string(pk.group) + shape_name(m, n, k, splits);
  run_both(m, n, k, q.dequantize(), pk.codes.data(), pk.meta.data(), static_cast<int>(pk.group / 16), splits, grid,
           WK * WN * 32, kernel, seed, name);
}

template <class Q, class T, int MT, int NT, int WK, int WN>
void w8_mma(std::int64_t m, std::int64_t n, std::int64_t k, qaxis axis, int splits, unsigned seed) {
  const auto q = quantize_weight<Q>(random_weight<T>(n, k, seed), symmetric{axis});
  const auto pk = qc::repack_w8a16(q);
  const uint3 grid{static_cast<unsigned>((n + 64 * NT * WN - 1) / (64 * NT * WN)), 1,
                   static_cast<unsigned>((m + 16 * MT - 1) / (16 * MT))};
  constexpr wcode C = std::is_same_v<Q, qint8> ? wcode::i8 : wcode::e4m3;
  const auto kernel = [](const dev::mma_params& mp) { dev::mma_kernel<device_t<T>, C, MT, NT, WK, WN, 4>(mp); };
  const std::string name = std::string("w8a16 ") + (std::is_same_v<Q, qint8> ? "int8 " : "e4m3fn ") +
                           (std::is_same_v<T, float16> ? "f16" : "bf16") + " MT " + std::to_string(MT) +
                           shape_name(m, n, k, splits);
  run_both(m, n, k, q.dequantize(), pk.codes.data(), pk.scale.data(), 1, splits, grid, WK * WN * 32, kernel, seed,
           name);
}

template <class T, bool ZP>
void w4_gemv(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t group, int splits, unsigned seed) {
  using S = std::conditional_t<ZP, group_affine<true>, group_affine<false>>;
  const auto q = quantize_weight<qint4>(random_weight<T>(n, k, seed), S{group});
  const auto pk = qc::repack_w4a16(q);
  const auto kernel = [](const dev::mma_params& mp) { dev::w4_gemv_kernel<device_t<T>, ZP>(mp); };
  const std::string name = std::string("gemv ") + (std::is_same_v<T, float16> ? "f16" : "bf16") + (ZP ? " zp" : "") +
                           " group " + std::to_string(pk.group) + shape_name(m, n, k, splits);
  run_both(m, n, k, q.dequantize(), pk.codes.data(), pk.meta.data(), static_cast<int>(pk.group / 16), splits,
           uint3{static_cast<unsigned>(n / 64), 1, 1}, 256, kernel, seed, name);
}

// The configurations of w4a16.cu: m <= 16 (MT 1, NT 2, 8 warps along k), m <= 32 (MT 2), larger
// (MT 4, 4 x 2 warps); n that leaves the last block's tiles partly empty, several groups per warp,
// group sizes 32 ... 144 (one per row), k split over blocks.
TEST(CudaKernelEmulation, W4A16TensorCores) {
  w4_mma<float16, false, 1, 2, 8, 1>(5, 192, 512, 128, 1, 1);
  w4_mma<float16, false, 1, 2, 8, 1>(16, 128, 512, 128, 3, 2);
  w4_mma<bfloat16, true, 1, 2, 8, 1>(3, 128, 384, 96, 2, 3);
  w4_mma<bfloat16, false, 2, 1, 8, 1>(20, 128, 256, 32, 1, 4);
  w4_mma<float16, true, 2, 1, 8, 1>(32, 64, 256, 64, 2, 5);
  w4_mma<bfloat16, false, 4, 1, 2, 4>(70, 320, 256, 64, 1, 6);
  w4_mma<float16, false, 4, 1, 2, 4>(33, 256, 144, 144, 2, 7);
}

// The configurations of w8a16.cu (one n64 tile per warp at small m), int8 and e4m3fn, per row and
// per tensor.
TEST(CudaKernelEmulation, W8A16TensorCores) {
  w8_mma<qint8, float16, 1, 1, 8, 1>(4, 128, 256, qaxis::first, 1, 8);
  w8_mma<qfloat8_e4m3fn, bfloat16, 1, 1, 8, 1>(1, 64, 512, qaxis::first, 4, 9);
  w8_mma<qfloat8_e4m3fn, float16, 2, 1, 8, 1>(17, 128, 256, qaxis::first, 1, 10);
  w8_mma<qint8, bfloat16, 4, 1, 2, 4>(65, 192, 128, qaxis::none, 2, 11);
}

TEST(CudaKernelEmulation, W4A16Gemv) {
  w4_gemv<float16, false>(1, 128, 512, 128, 1, 12);
  w4_gemv<float16, false>(4, 192, 256, 64, 2, 13);
  w4_gemv<bfloat16, true>(3, 64, 384, 96, 1, 14);
  w4_gemv<bfloat16, false>(2, 64, 144, 144, 3, 15);
}

}  // namespace
