// Weight types: the dtype names users give, IEEE half conversion (exhaustively, and against the CPU's own
// conversion where it has one), and Q8_0 blocks in llama.cpp's layout and rounding.
#include "model/weight_types.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "model/half.h"
#include "util/error.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace cortex::model {
namespace {

TEST(WeightTypesTest, ParsesTheThreeNamesAndRejectsOthersClearly) {
  EXPECT_EQ(parse_dtype("f32"), DType::kF32);
  EXPECT_EQ(parse_dtype("F16"), DType::kF16);
  EXPECT_EQ(parse_dtype("q8_0"), DType::kQ8_0);
  for (const char* bad : {"q4_0", "", "fp16", "bf16"}) {
    try {
      parse_dtype(bad);
      FAIL() << "expected an error for '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("use f32, f16 or q8_0"), std::string::npos) << e.what();
    }
  }
  EXPECT_STREQ(dtype_flag_name(DType::kQ8_0), "q8_0");
}

TEST(WeightTypesTest, EveryHalfSurvivesARoundTripThroughFloat) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(WeightTypesTest, FloatToHalfRoundsToNearestEven) {
  EXPECT_EQ(fp32_to_fp16(1.f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(65504.f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.f), 0x7c00);                // halfway to 65536: rounds up to infinity
  EXPECT_EQ(fp32_to_fp16(1.f + 1.f / 2048), 0x3c00);       // tie: stays even
  EXPECT_EQ(fp32_to_fp16(1.f + 3.f / 2048), 0x3c02);       // tie: to even, upwards
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.f, -25)), 0x0000);   // half the smallest subnormal: to even (0)
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);  // above it: the smallest subnormal
  EXPECT_EQ(fp32_to_fp16(-std::ldexp(1.f, -24)), 0x8001);
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f) || std::fabs(f) > 1e6f) continue;
    // The nearest half: no half lies strictly closer to f than ours.
    const uint16_t h = fp32_to_fp16(f);
    const double ours = fp16_to_fp32(h), err = std::fabs(ours - double{f});
    if (std::isinf(ours)) continue;
    for (int d : {-1, 1}) {
      const double other = fp16_to_fp32(static_cast<uint16_t>(h + d));
      if (!std::isinf(other) && std::signbit(other) == std::signbit(ours)) {
        ASSERT_LE(err, std::fabs(other - f)) << f;
      }
    }
#if defined(__F16C__)
    ASSERT_EQ(h, _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)) << f;
#endif
  }
}

TEST(WeightTypesTest, Q8_0BlocksFollowLlamaCppsLayoutAndRounding) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i)
    x[static_cast<size_t>(i)] = std::sin(0.37f * static_cast<float>(i)) * (i < 32 ? 1.f : 0.01f);
  x[5] = -2.f;  // the block's largest magnitude: q = -127
  std::vector<std::byte> bytes(dtype_bytes(DType::kQ8_0, 64));
  ASSERT_EQ(bytes.size(), 68u);
  convert_from_f32(bytes.data(), DType::kQ8_0, x.data(), 64);
  uint16_t d;
  std::memcpy(&d, bytes.data(), 2);  // the scale first, then 32 int8 values
  EXPECT_EQ(d, fp32_to_fp16(2.f / 127));
  EXPECT_EQ(static_cast<int8_t>(bytes[2 + 5]), -127);
  EXPECT_EQ(static_cast<int8_t>(bytes[2 + 0]), 0);
  EXPECT_EQ(static_cast<int8_t>(bytes[2 + 1]), static_cast<int8_t>(std::lround(x[1] * 127 / 2.f)));
  std::vector<float> back(64);
  convert_to_f32(back.data(), DType::kQ8_0, bytes.data(), 64);
  for (int i = 0; i < 64; ++i) {
    const float amax = i < 32 ? 2.f : 0.01f;
    // Half a step of the block's scale, plus the rounding of the scale to F16.
    EXPECT_NEAR(back[static_cast<size_t>(i)], x[static_cast<size_t>(i)], amax / 127 * 0.51f) << i;
  }
  std::vector<float> zeros(32, 0.f), out(32, 1.f);
  convert_from_f32(bytes.data(), DType::kQ8_0, zeros.data(), 32);
  convert_to_f32(out.data(), DType::kQ8_0, bytes.data(), 32);
  EXPECT_EQ(out, zeros);
  EXPECT_THROW(convert_from_f32(bytes.data(), DType::kQ8_0, x.data(), 31), Error);
}

TEST(WeightTypesTest, F16ConversionRejectsValuesBeyondItsRange) {
  std::vector<float> x(40, 1.f);
  x[33] = 1e6f;
  std::vector<uint16_t> h(40);
  EXPECT_THROW(convert_from_f32(h.data(), DType::kF16, x.data(), 40), Error);
  x[33] = 0.5f;
  convert_from_f32(h.data(), DType::kF16, x.data(), 40);
  std::vector<float> back(40);
  convert_to_f32(back.data(), DType::kF16, h.data(), 40);  // vector body and scalar tail
  EXPECT_EQ(back, x);
}

}  // namespace
}  // namespace cortex::model
