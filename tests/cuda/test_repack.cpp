// The GPU kernel layouts, on the CPU (no CUDA needed): repacking is exactly invertible (byte for
// byte, for quantized weights and for arbitrary bytes), every element lands where fragment.hpp's
// index functions say, the kernels' read order is the inverse of those functions, the kernels'
// arithmetic (kernel_dequantize) equals the library's dequantize() bit for bit, and shapes the
// kernels do not take are refused with typed errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <quanto/cuda/repack.hpp>
#include <quanto/quanto.hpp>

#include "../support/random_weight.hpp"

namespace {

using namespace quanto;
using quanto_test::random_weight;
namespace qc = quanto::cuda;
namespace fr = quanto::cuda::fragment;

template <class X>
void expect_same_bytes(const tensor<X>& a, const tensor<X>& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(X))) << what;
}

/// A finite T with random bits (any exponent, subnormals included).
template <class T>
T random_finite(std::mt19937& rng) {
  for (;;) {
    const auto v = T::from_bits(static_cast<std::uint16_t>(rng()));
    if (v.is_finite()) return v;
  }
}

/// A qint4 weight in the file layout whose every byte is random: codes, scales and shifts.
template <class T, class Shift>
qbits_weight<qint4, T, Shift> random_file_qint4(const shape& s, std::optional<std::int64_t> group, unsigned seed) {
  std::mt19937 rng(seed);
  qbits_weight<qint4, T, Shift> w;
  w.original_shape = s;
  w.axis = qaxis::first;
  w.group_size = group;
  const shape cs = w.codes_shape();
  tensor<std::uint8_t> codes(cs);
  for (auto& c : codes) c = static_cast<std::uint8_t>(rng() & 0xF);
  w.packed = pack(codes.view(), 4);
  const shape ps = group ? shape{cs[0], 1} : map_params(s, qaxis::first).param_shape;
  w.scale = tensor<T>(ps);
  w.shift = tensor<Shift>(ps);
  for (std::size_t i = 0; i < w.scale.size(); ++i) {
    w.scale[i] = random_finite<T>(rng);
    if constexpr (std::is_same_v<Shift, std::uint8_t>)
      w.shift[i] = static_cast<std::uint8_t>(rng() % 16);
    else
      w.shift[i] = random_finite<T>(rng);
  }
  return w;
}

template <class Q, class T>
qbytes_weight<Q, T> random_file_qbytes(const shape& s, qaxis axis, unsigned seed) {
  std::mt19937 rng(seed);
  qbytes_weight<Q, T> w;
  w.axis = axis;
  w.data = tensor<typename Q::storage>(s);
  for (auto& c : w.data) {
    std::uint8_t b = static_cast<std::uint8_t>(rng());
    if constexpr (std::is_same_v<Q, qfloat8_e4m3fn>)
      if ((b & 0x7F) == 0x7F) b = 0x00;  // NaN codes are refused by the layout
    c = std::bit_cast<typename Q::storage>(b);
  }
  w.scale = tensor<T>(map_params(s, axis).param_shape);
  for (auto& v : w.scale) v = random_finite<T>(rng);
  return w;
}

template <class T, template <class> class H, class Shift>
void check_qint4_round_trip(const basic_qbits_weight<qint4, T, H, Shift>& w, const std::string& what) {
  const auto p = qc::repack_w4a16(w);
  EXPECT_EQ(p.codes.size() * 2, static_cast<std::size_t>(p.n * p.k)) << what;
  const auto back = qc::unpack_w4a16(p);
  ASSERT_EQ(back.shape(), w.shape()) << what;
  EXPECT_EQ(back.group_size, w.group_size) << what;
  EXPECT_EQ(back.axis, w.axis) << what;
  expect_same_bytes(back.packed, tensor<std::uint8_t>(quanto::detail::as_view(w.packed)), what + " packed");
  expect_same_bytes(back.scale, tensor<T>(quanto::detail::as_view(w.scale)), what + " scale");
  expect_same_bytes(back.shift, tensor<Shift>(quanto::detail::as_view(w.shift)), what + " shift");
}

template <class Q, class T, template <class> class H>
void check_qbytes_round_trip(const basic_qbytes_weight<Q, T, H>& w, const std::string& what) {
  const auto p = qc::repack_w8a16(w);
  EXPECT_EQ(p.codes.size(), static_cast<std::size_t>(p.n * p.k)) << what;
  const auto back = qc::unpack_w8a16(p);
  EXPECT_EQ(back.axis, w.axis) << what;
  expect_same_bytes(back.data, tensor<typename Q::storage>(quanto::detail::as_view(w.data)), what + " data");
  expect_same_bytes(back.scale, tensor<T>(quanto::detail::as_view(w.scale)), what + " scale");
}

// ---- round trips --------------------------------------------------------------------------------------

TEST(CudaRepack, Qint4RoundTripOfQuantizedWeights) {
  // (n, k, group): quanto's automatic rule (128 for these k, none for k <= 128), explicit groups,
  // one group per row; several groups per row everywhere it applies.
  struct case_t {
    std::int64_t n, k, group;
  };
  for (const case_t c : {case_t{64, 16, no_group}, case_t{64, 128, auto_group}, case_t{128, 256, auto_group},
                         case_t{192, 384, auto_group}, case_t{64, 512, 64}, case_t{128, 192, 96}, case_t{64, 96, 32},
                         case_t{64, 160, 16}, case_t{256, 1024, auto_group}, case_t{64, 336, no_group}}) {
    const std::string what =
        "[" + std::to_string(c.n) + ", " + std::to_string(c.k) + "] group " + std::to_string(c.group);
    const auto f16 = random_weight<float16>(c.n, c.k, 11);
    const auto b16 = random_weight<bfloat16>(c.n, c.k, 12);
    check_qint4_round_trip(quantize_weight<qint4>(f16, group_affine<>{c.group}), what + " f16");
    check_qint4_round_trip(quantize_weight<qint4>(b16, group_affine<>{c.group}), what + " bf16");
    check_qint4_round_trip(quantize_weight<qint4>(f16, group_affine<true>{c.group}), what + " f16 zero-point");
    check_qint4_round_trip(quantize_weight<qint4>(b16, group_affine<true>{c.group}), what + " bf16 zero-point");
  }
}

TEST(CudaRepack, Qint4RoundTripOfArbitraryBytes) {
  unsigned seed = 100;
  for (const shape& s : {shape{64, 128}, shape{128, 512}, shape{64, 4096}, shape{192, 48}})
    for (const std::optional<std::int64_t> g : {std::optional<std::int64_t>{}, std::optional<std::int64_t>{16},
                                                std::optional<std::int64_t>{s[1] >= 128 ? 128 : 16}}) {
      const std::string what = s.to_string() + " group " + (g ? std::to_string(*g) : "none");
      check_qint4_round_trip(random_file_qint4<float16, float16>(s, g, ++seed), what + " f16");
      check_qint4_round_trip(random_file_qint4<bfloat16, bfloat16>(s, g, ++seed), what + " bf16");
      check_qint4_round_trip(random_file_qint4<bfloat16, std::uint8_t>(s, g, ++seed), what + " bf16 zero-point");
      check_qint4_round_trip(random_file_qint4<float16, std::uint8_t>(s, g, ++seed), what + " f16 zero-point");
    }
  // a convolution weight [out, in, kh, kw] is the matrix [out, in*kh*kw] (here 144 = 9 * 16, ungrouped)
  const auto conv = random_file_qint4<float16, float16>(shape{64, 16, 3, 3}, std::nullopt, 7);
  check_qint4_round_trip(conv, "conv");
  // a view of memory that lives elsewhere (a mapped file) repacks the same
  check_qint4_round_trip(conv.view(), "conv view");
}

TEST(CudaRepack, Qint8AndFloat8RoundTrip) {
  unsigned seed = 200;
  for (const shape& s : {shape{64, 16}, shape{64, 4096}, shape{192, 336}, shape{128, 64, 1, 1}}) {
    const std::string what = s.to_string();
    check_qbytes_round_trip(random_file_qbytes<qint8, float16>(s, qaxis::first, ++seed), what + " qint8 f16");
    check_qbytes_round_trip(random_file_qbytes<qint8, bfloat16>(s, qaxis::first, ++seed), what + " qint8 bf16");
    check_qbytes_round_trip(random_file_qbytes<qint8, float16>(s, qaxis::none, ++seed), what + " qint8 per tensor");
    check_qbytes_round_trip(random_file_qbytes<qfloat8_e4m3fn, float16>(s, qaxis::first, ++seed), what + " e4m3fn f16");
    check_qbytes_round_trip(random_file_qbytes<qfloat8_e4m3fn, bfloat16>(s, qaxis::first, ++seed),
                            what + " e4m3fn bf16");
    check_qbytes_round_trip(random_file_qbytes<qfloat8_e4m3fn, bfloat16>(s, qaxis::none, ++seed),
                            what + " e4m3fn per tensor");
  }
  const auto w = random_weight<bfloat16>(128, 256, 3);
  check_qbytes_round_trip(quantize_weight<qint8>(w), "quantized qint8");
  check_qbytes_round_trip(quantize_weight<qfloat8_e4m3fn>(w), "quantized e4m3fn");
  check_qbytes_round_trip(quantize_weight<qint8>(w).view(), "quantized qint8 view");
}

// ---- one-hot: each element lands where the index functions say ---------------------------------------

TEST(CudaRepack, Qint4OneHotLandsAtTheIndexFunction) {
  const std::int64_t n = 128, k = 256, group = 64, k16 = k / 16, n64 = n / 64;
  std::mt19937 rng(5);
  for (int trial = 0; trial < 400; ++trial) {
    const std::int64_t i = rng() % n, e = rng() % k;
    const auto q = static_cast<std::uint8_t>(1 + rng() % 15);
    qbits_weight<qint4, float16> w;
    w.original_shape = shape{n, k};
    w.group_size = group;
    tensor<std::uint8_t> codes(w.codes_shape());
    codes[static_cast<std::size_t>(i * k + e)] = q;  // element (i, e) of the [n, k] weight
    w.packed = pack(codes.view(), 4);
    w.scale = tensor<float16>(shape{n * k / group, 1});
    w.shift = tensor<float16>(shape{n * k / group, 1});
    const std::int64_t gi = e / group;
    w.scale[static_cast<std::size_t>(i * (k / group) + gi)] = float16(0.5f);
    w.shift[static_cast<std::size_t>(i * (k / group) + gi)] = float16(-3.0f);
    const auto p = qc::repack_w4a16(w);
    // the only nonzero nibble
    std::int64_t found = -1, found_shift = -1;
    for (std::size_t b = 0; b < p.codes.size(); ++b)
      for (int sh : {0, 4})
        if ((p.codes[b] >> sh) & 0xF) {
          ASSERT_EQ(found, -1) << "two nonzero nibbles";
          found = static_cast<std::int64_t>(b);
          found_shift = sh;
          ASSERT_EQ((p.codes[b] >> sh) & 0xF, q);
        }
    const auto pos = fr::w4_position(static_cast<int>(e % 16), static_cast<int>(i % 64));
    EXPECT_EQ(found, fr::w4_tile_offset(i / 64, e / 16, k16) + pos.byte) << "(" << i << ", " << e << ")";
    EXPECT_EQ(found_shift, pos.shift);
    EXPECT_EQ(pos.lane, 4 * static_cast<int>(i % 8) + static_cast<int>(e % 8) / 2);
    // and its scale and shift
    const auto m = static_cast<std::size_t>(fr::w4_meta_index(gi, i, n64));
    for (std::size_t x = 0; x < p.meta.size(); ++x) {
      if (x == m)
        EXPECT_EQ(to_float(p.meta[x]), 0.5f);
      else if (x == m + 1)
        EXPECT_EQ(to_float(p.meta[x]), -3.0f);
      else
        ASSERT_EQ(p.meta[x].to_bits(), 0) << x;
    }
  }
}

TEST(CudaRepack, Qint8OneHotLandsAtTheIndexFunction) {
  const std::int64_t n = 192, k = 48, k16 = k / 16;
  std::mt19937 rng(6);
  for (int trial = 0; trial < 400; ++trial) {
    const std::int64_t i = rng() % n, e = rng() % k;
    qbytes_weight<qint8, bfloat16> w;
    w.data = tensor<std::int8_t>(shape{n, k});
    w.data[static_cast<std::size_t>(i * k + e)] = -77;
    w.scale = tensor<bfloat16>(shape{n, 1});
    w.scale[static_cast<std::size_t>(i)] = bfloat16(2.0f);
    const auto p = qc::repack_w8a16(w);
    std::int64_t found = -1;
    for (std::size_t b = 0; b < p.codes.size(); ++b)
      if (p.codes[b]) {
        ASSERT_EQ(found, -1);
        found = static_cast<std::int64_t>(b);
      }
    const auto pos = fr::w8_position(static_cast<int>(e % 16), static_cast<int>(i % 64));
    EXPECT_EQ(found, fr::w8_tile_offset(i / 64, e / 16, k16) + pos.byte) << "(" << i << ", " << e << ")";
    EXPECT_EQ(static_cast<std::int8_t>(p.codes[static_cast<std::size_t>(found)]), -77);
    for (std::size_t x = 0; x < p.scale.size(); ++x)
      EXPECT_EQ(to_float(p.scale[x]), x == static_cast<std::size_t>(fr::w8_scale_index(i)) ? 2.0f : 0.0f);
  }
}

// ---- the index functions are bijections and the read order is their inverse --------------------------

TEST(CudaRepack, IndexFunctionsAreBijections) {
  std::set<int> w4, w8, slots;
  for (int kk = 0; kk < 16; ++kk)
    for (int nn = 0; nn < 64; ++nn) {
      const auto p4 = fr::w4_position(kk, nn);
      EXPECT_TRUE(w4.insert(p4.byte * 2 + p4.shift / 4).second);
      EXPECT_GE(p4.byte, 16 * p4.lane);
      EXPECT_LT(p4.byte, 16 * p4.lane + 16);  // a lane's elements are its own 16 bytes
      const auto p8 = fr::w8_position(kk, nn);
      EXPECT_TRUE(w8.insert(p8.byte).second);
      EXPECT_EQ((p8.byte % 512) / 16, p8.lane);
    }
  EXPECT_EQ(w4.size(), 1024u);
  EXPECT_EQ(*w4.rbegin(), 1023);
  EXPECT_EQ(w8.size(), 1024u);
  EXPECT_EQ(*w8.rbegin(), 1023);
  for (int nn = 0; nn < 64; ++nn) {
    EXPECT_TRUE(slots.insert(fr::column_slot(nn)).second);
    EXPECT_EQ(fr::slot_column(fr::column_slot(nn)), nn);
  }
}

TEST(CudaRepack, ReadOrderInvertsTheIndexFunctions) {
  for (int lane = 0; lane < 32; ++lane) {
    for (int word = 0; word < 4; ++word)
      for (int p = 0; p < 8; ++p) {
        const auto el = fr::w4_element(lane, word, p);
        const auto pos = fr::w4_position(el.kk, el.nn);
        EXPECT_EQ(pos.lane, lane);
        EXPECT_EQ(pos.byte, 16 * lane + 4 * word + p / 2);
        EXPECT_EQ(pos.shift, 4 * (p % 2));
      }
    for (int h = 0; h < 2; ++h)
      for (int b = 0; b < 16; ++b) {
        const auto el = fr::w8_element(lane, h, b);
        EXPECT_EQ(fr::w8_position(el.kk, el.nn).byte, 512 * h + 16 * lane + b);
      }
    // Extraction e of word w (shift 4e, mask 0x000f000f) is mma register r = e % 2 of n8 block
    // j = 2w + e / 2: its low half is the B fragment's k = 2t + 8r, its high half k + 1, column g.
    for (int word = 0; word < 4; ++word)
      for (int e = 0; e < 4; ++e)
        for (int s = 0; s < 2; ++s) {
          const auto el = fr::w4_element(lane, word, e + 4 * s);
          EXPECT_EQ(el.kk, fr::b_row(lane, e % 2, s));
          EXPECT_EQ(el.nn, 8 * (2 * word + e / 2) + fr::b_col(lane));
        }
    // 8-bit: word j % 4 of half j / 4, bytes (0,1) = b0, (2,3) = b1
    for (int j = 0; j < 8; ++j)
      for (int r = 0; r < 2; ++r)
        for (int s = 0; s < 2; ++s) {
          const auto el = fr::w8_element(lane, j / 4, 4 * (j % 4) + 2 * r + s);
          EXPECT_EQ(el.kk, fr::b_row(lane, r, s));
          EXPECT_EQ(el.nn, 8 * j + fr::b_col(lane));
        }
  }
  // the C fragment covers the m16 x n8 block once
  std::set<int> c;
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(c.insert(fr::c_row(lane, i) * 8 + fr::c_col(lane, i)).second);
  EXPECT_EQ(c.size(), 128u);
  std::set<int> a;
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i)
      for (int s = 0; s < 2; ++s) EXPECT_TRUE(a.insert(fr::a_row(lane, i) * 16 + fr::a_col(lane, i, s)).second);
  EXPECT_EQ(a.size(), 256u);
}

// ---- the kernels' arithmetic equals the library's dequantization, bit for bit -------------------------

template <class T, class Shift>
void expect_kernel_dequantize_exact(const qbits_weight<qint4, T, Shift>& w, const std::string& what) {
  const auto p = qc::repack_w4a16(w);
  const tensor<T> got = qc::kernel_dequantize(p);
  tensor<T> want = w.dequantize();
  want.reshape(got.shape());
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(got[i].to_bits(), want[i].to_bits())
        << what << " element " << i << ": " << to_float(got[i]) << " vs " << to_float(want[i]);
}

TEST(CudaRepack, Qint4KernelArithmeticIsQuantos) {
  unsigned seed = 300;
  for (const shape& s : {shape{64, 128}, shape{128, 512}, shape{64, 48}})
    for (const std::optional<std::int64_t> g : {std::optional<std::int64_t>{}, std::optional<std::int64_t>{16}}) {
      const std::string what = s.to_string();
      // random bits everywhere: subnormal, huge and negative scales and shifts, overflow to inf
      expect_kernel_dequantize_exact(random_file_qint4<float16, float16>(s, g, ++seed), what + " f16 random bits");
      expect_kernel_dequantize_exact(random_file_qint4<bfloat16, bfloat16>(s, g, ++seed), what + " bf16 random bits");
      expect_kernel_dequantize_exact(random_file_qint4<float16, std::uint8_t>(s, g, ++seed),
                                     what + " f16 zp random bits");
      expect_kernel_dequantize_exact(random_file_qint4<bfloat16, std::uint8_t>(s, g, ++seed),
                                     what + " bf16 zp random bits");
    }
  for (const std::int64_t group : {auto_group, std::int64_t{32}, no_group}) {
    const auto f16 = random_weight<float16>(128, 256, 21);
    const auto b16 = random_weight<bfloat16>(128, 256, 22);
    expect_kernel_dequantize_exact(quantize_weight<qint4>(f16, group_affine<>{group}), "quantized f16");
    expect_kernel_dequantize_exact(quantize_weight<qint4>(b16, group_affine<>{group}), "quantized bf16");
    expect_kernel_dequantize_exact(quantize_weight<qint4>(b16, group_affine<true>{group}), "quantized bf16 zp");
    expect_kernel_dequantize_exact(quantize_weight<qint4>(f16, group_affine<true>{group}, hqq_optimizer{}),
                                   "hqq f16 zp");
    expect_kernel_dequantize_exact(quantize_weight<qint4>(f16, group_affine<>{group}, hqq_optimizer{}), "hqq f16");
  }
}

template <class Q, class T>
void expect_kernel_dequantize_exact(const qbytes_weight<Q, T>& w, const std::string& what) {
  const auto p = qc::repack_w8a16(w);
  const tensor<T> got = qc::kernel_dequantize(p);
  tensor<T> want = w.dequantize();
  want.reshape(got.shape());
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(got[i].to_bits(), want[i].to_bits())
        << what << " element " << i << ": " << to_float(got[i]) << " vs " << to_float(want[i]);
}

TEST(CudaRepack, Qint8AndFloat8KernelArithmeticIsQuantos) {
  unsigned seed = 400;
  for (const shape& s : {shape{64, 64}, shape{128, 256}}) {
    expect_kernel_dequantize_exact(random_file_qbytes<qint8, float16>(s, qaxis::first, ++seed), "qint8 f16");
    expect_kernel_dequantize_exact(random_file_qbytes<qint8, bfloat16>(s, qaxis::first, ++seed), "qint8 bf16");
    expect_kernel_dequantize_exact(random_file_qbytes<qint8, bfloat16>(s, qaxis::none, ++seed),
                                   "qint8 bf16 per tensor");
    expect_kernel_dequantize_exact(random_file_qbytes<qfloat8_e4m3fn, float16>(s, qaxis::first, ++seed), "e4m3fn f16");
    expect_kernel_dequantize_exact(random_file_qbytes<qfloat8_e4m3fn, bfloat16>(s, qaxis::first, ++seed),
                                   "e4m3fn bf16");
  }
  // every code once, with scale 1: the decode alone (all 256 int8 values, all 254 finite e4m3fn ones)
  for (int c = 0; c < 256; ++c) {
    EXPECT_EQ(to_float(qc::detail::kernel_decode_byte<qint8, float16>(static_cast<std::uint8_t>(c))),
              static_cast<float>(static_cast<std::int8_t>(c)));
    EXPECT_EQ(to_float(qc::detail::kernel_decode_byte<qint8, bfloat16>(static_cast<std::uint8_t>(c))),
              static_cast<float>(static_cast<std::int8_t>(c)));
    if ((c & 0x7F) == 0x7F) continue;
    const float want = to_float(float8_e4m3fn::from_bits(static_cast<std::uint8_t>(c)));
    const auto h = qc::detail::kernel_decode_byte<qfloat8_e4m3fn, float16>(static_cast<std::uint8_t>(c));
    const auto b = qc::detail::kernel_decode_byte<qfloat8_e4m3fn, bfloat16>(static_cast<std::uint8_t>(c));
    EXPECT_EQ(to_float(h), want) << c;
    EXPECT_EQ(to_float(b), want) << c;
    EXPECT_EQ(std::signbit(to_float(h)), std::signbit(want)) << c;  // -0 stays -0
    EXPECT_EQ(std::signbit(to_float(b)), std::signbit(want)) << c;
  }
  const auto w = random_weight<float16>(64, 4096, 9);
  expect_kernel_dequantize_exact(quantize_weight<qint8>(w), "quantized qint8");
  expect_kernel_dequantize_exact(quantize_weight<qfloat8_e4m3fn>(w), "quantized e4m3fn");
}

// ---- what the kernels do not take ---------------------------------------------------------------------

TEST(CudaRepack, RefusesShapesTheKernelsDoNotTake) {
  // n not a multiple of 64, k not a multiple of 16, groups not a multiple of 16
  const auto a = random_file_qint4<float16, float16>(shape{96, 128}, 128, 1);
  EXPECT_FALSE(qc::w4a16_supports(a));
  EXPECT_THROW(qc::repack_w4a16(a), unsupported_error);
  const auto b = random_file_qint4<float16, float16>(shape{64, 200}, std::nullopt, 2);
  EXPECT_FALSE(qc::w4a16_supports(b));
  EXPECT_THROW(qc::repack_w4a16(b), unsupported_error);
  const auto c = random_file_qint4<bfloat16, bfloat16>(shape{64, 128}, 8, 3);
  EXPECT_FALSE(qc::w4a16_supports(c));
  EXPECT_THROW(qc::repack_w4a16(c), unsupported_error);
  EXPECT_TRUE(qc::w4a16_supports(random_file_qint4<bfloat16, bfloat16>(shape{64, 192}, 96, 3)));
  try {
    qc::repack_w4a16(a);
  } catch (const unsupported_error& e) {
    EXPECT_NE(std::string(e.what()).find("dequantize_matmul_fallback"), std::string::npos) << e.what();
  }
  // axis -1 groups
  auto d = random_file_qint4<float16, float16>(shape{64, 128}, std::nullopt, 4);
  d.axis = qaxis::last;
  EXPECT_FALSE(qc::w4a16_supports(d));
  // 8-bit: scales per input column; a tail in n or k
  const auto e = random_file_qbytes<qint8, float16>(shape{64, 64}, qaxis::last, 5);
  EXPECT_FALSE(qc::w8a16_supports(e));
  EXPECT_THROW(qc::repack_w8a16(e), unsupported_error);
  EXPECT_THROW(qc::repack_w8a16(random_file_qbytes<qint8, float16>(shape{64, 40}, qaxis::first, 6)), unsupported_error);
  EXPECT_THROW(qc::repack_w8a16(random_file_qbytes<qfloat8_e4m3fn, float16>(shape{100, 64}, qaxis::first, 6)),
               unsupported_error);
  EXPECT_TRUE(qc::w8a16_supports(random_file_qbytes<qint8, float16>(shape{64, 64}, qaxis::none, 6)));
}

TEST(CudaRepack, RefusesBadParts) {
  // parts that do not fit together (a file's scale of the wrong shape)
  auto a = random_file_qint4<float16, float16>(shape{64, 256}, 128, 1);
  a.scale = tensor<float16>(shape{64, 1});
  EXPECT_THROW(qc::repack_w4a16(a), shape_error);
  auto b = random_file_qbytes<qint8, bfloat16>(shape{64, 64}, qaxis::first, 2);
  b.scale = tensor<bfloat16>(shape{32, 1});
  EXPECT_THROW(qc::repack_w8a16(b), shape_error);
  // a zero-point that no 4-bit code can have
  auto c = random_file_qint4<float16, std::uint8_t>(shape{64, 256}, 128, 3);
  c.shift[7] = 16;
  EXPECT_THROW(qc::repack_w4a16(c), value_error);
  // a NaN float8 code
  auto d = random_file_qbytes<qfloat8_e4m3fn, float16>(shape{64, 64}, qaxis::first, 4);
  d.data[100] = float8_e4m3fn::from_bits(0xFF);
  EXPECT_THROW(qc::repack_w8a16(d), value_error);
}

}  // namespace
