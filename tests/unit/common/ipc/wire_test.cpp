// Payload encoding: round trips, and every way a hostile payload can be short or oversized.
#include "common/ipc/wire.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace postern::wire {
namespace {

TEST(Wire, RoundTripsEveryFieldKind) {
  Writer w;
  w.u8(0xab);
  w.u16(0xbeef);
  w.u32(0xdeadbeef);
  w.u64(std::numeric_limits<uint64_t>::max() - 1);
  w.i64(-42);
  w.boolean(true);
  w.str("hello");
  w.str("");
  const auto bytes = w.take();
  Reader r(bytes);
  EXPECT_EQ(r.u8(), 0xab);
  EXPECT_EQ(r.u16(), 0xbeef);
  EXPECT_EQ(r.u32(), 0xdeadbeefu);
  EXPECT_EQ(r.u64(), std::numeric_limits<uint64_t>::max() - 1);
  EXPECT_EQ(r.i64(), -42);
  EXPECT_TRUE(r.boolean());
  EXPECT_EQ(r.str(), "hello");
  EXPECT_EQ(r.str(), "");
  EXPECT_TRUE(r.finish());
}

TEST(Wire, IsLittleEndianOnTheWire) {
  Writer w;
  w.u32(0x01020304);
  EXPECT_EQ(w.bytes(), (std::vector<uint8_t>{4, 3, 2, 1}));
}

TEST(Wire, ShortInputFailsAndStaysFailed) {
  const std::vector<uint8_t> bytes{1, 2, 3};
  Reader r(bytes);
  EXPECT_EQ(r.u32(), 0u);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.u8(), 0u);
  EXPECT_FALSE(r.finish());
}

TEST(Wire, TrailingBytesFailFinish) {
  Writer w;
  w.u32(7);
  w.u8(0);
  const auto bytes = w.take();
  Reader r(bytes);
  EXPECT_EQ(r.u32(), 7u);
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.finish());
}

TEST(Wire, StringLongerThanItsLimitOrTheInputFails) {
  Writer w;
  w.str("abcdef");
  const auto bytes = w.take();
  Reader limited(bytes);
  limited.str(5);
  EXPECT_FALSE(limited.ok());

  std::vector<uint8_t> lying{0xff, 0xff, 0, 0, 'a'};  // claims 65535 bytes, has 1
  Reader r(lying);
  r.str();
  EXPECT_FALSE(r.ok());
}

TEST(Wire, BooleanOtherThanZeroOrOneFails) {
  const std::vector<uint8_t> bytes{2};
  Reader r(bytes);
  r.boolean();
  EXPECT_FALSE(r.ok());
}

TEST(Wire, CountBoundedByMaxAndByRemainingBytes) {
  Writer w;
  w.count(1000);
  auto bytes = w.take();
  Reader over_max(bytes);
  EXPECT_EQ(over_max.count(10), 0u);
  EXPECT_FALSE(over_max.ok());

  Reader over_input(bytes);  // 1000 elements of at least 1 byte cannot fit in 0 bytes
  EXPECT_EQ(over_input.count(100000), 0u);
  EXPECT_FALSE(over_input.ok());
}

TEST(Wire, EnumerationOutOfRangeFails) {
  enum class Colour : uint8_t { red, green };
  Writer w;
  w.enumeration(Colour::green);
  w.u32(2);
  const auto bytes = w.take();
  Reader r(bytes);
  EXPECT_EQ(r.enumeration<Colour>(2), Colour::green);
  EXPECT_TRUE(r.ok());
  r.enumeration<Colour>(2);
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace postern::wire
