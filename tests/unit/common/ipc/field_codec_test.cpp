// Table-driven wire encoding (common/ipc/field_codec.hpp): round trips of every supported
// member type, and the bounds of the table enforced on decoding.
#include "common/ipc/field_codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/fields.hpp"

namespace postern::wire {
namespace {

enum class Colour : uint8_t { red, green, blue };
constexpr std::array<std::string_view, 3> kColourNames = {"red", "green", "blue"};

enum class Shade : uint8_t { light, dark };

struct Point {
  uint32_t x = 0;
  uint32_t y = 0;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&Point::x, "x", {.max = 100}),
        fields::field(&Point::y, "y", {.max = 100}),
    };
  }
  friend bool operator==(const Point&, const Point&) = default;
};

// A type without a table, written by a Codec: two bytes.
struct Pair {
  uint8_t a = 0;
  uint8_t b = 0;
  friend bool operator==(const Pair&, const Pair&) = default;
};

}  // namespace

template <>
struct Codec<Pair> {
  static constexpr size_t kMinSize = 2;
  static void encode(Writer& w, const Pair& p) {
    w.u8(p.a);
    w.u8(p.b);
  }
  static Pair decode(Reader& r) {
    Pair p;
    p.a = r.u8();
    p.b = r.u8();
    if (p.a > p.b) r.fail();
    return p;
  }
};

namespace {

struct Sample {
  std::string name = "default";
  uint32_t count = 7;
  uint64_t size = 35 * 1024 * 1024;
  int64_t when = -1;
  uint8_t small = 3;
  uint16_t port = 25;
  bool on = true;
  Colour colour = Colour::green;
  Shade shade = Shade::dark;
  std::vector<std::string> tags;
  std::vector<uint32_t> uids;
  std::optional<std::string> group;
  std::optional<std::vector<std::string>> users;
  Point origin;
  std::vector<Point> points;
  std::optional<Point> target;
  Pair pair;
  int32_t code = -5;

  static constexpr auto fields() {
    return std::tuple{
        fields::field(&Sample::name, "name", {.length = 8}),
        fields::field(&Sample::count, "count", {.min = 1, .max = 1000}),
        fields::field(&Sample::size, "size",
                      {.min = 1, .max = uint64_t{1} << 40, .unit = fields::kOctets}),
        fields::field(&Sample::when, "when"),
        fields::field(&Sample::small, "small"),
        fields::field(&Sample::port, "port", {.min = 1}),
        fields::field(&Sample::on, "on"),
        fields::field(&Sample::colour, "colour", {.names = kColourNames}),
        fields::field(&Sample::shade, "shade", {.values = 2}),
        fields::field(&Sample::tags, "tags", {.length = 4, .count = 3}),
        fields::field(&Sample::uids, "uids", {.count = 4, .max = 65535}),
        fields::field(&Sample::group, "group", {.length = 16}),
        fields::field(&Sample::users, "users", {.length = 8, .count = 2}),
        fields::field(&Sample::origin, "origin"),
        fields::field(&Sample::points, "points", {.count = 2}),
        fields::field(&Sample::target, "target"),
        fields::field(&Sample::pair, "pair", {.origin = fields::Origin::parent}),
        fields::field(&Sample::code, "code"),
    };
  }
  friend bool operator==(const Sample&, const Sample&) = default;
};
static_assert(fields::well_formed<Sample>());
static_assert(fields::field_count<Sample>() == 18);
// 4+4+8+8+1+2+1+4+4+4+4+1+1+(4+4)+4+1+2+4
static_assert(min_encoded_size<Sample>() == 65);
static_assert(min_encoded_size<Point>() == 8);

struct Twice {
  uint32_t a = 0;
  uint32_t b = 0;
  static constexpr auto fields() {
    return std::tuple{fields::field(&Twice::a, "a"), fields::field(&Twice::a, "b")};
  }
};
static_assert(!fields::well_formed<Twice>());

struct SameName {
  uint32_t a = 0;
  std::string b;
  static constexpr auto fields() {
    return std::tuple{fields::field(&SameName::a, "a"), fields::field(&SameName::b, "a")};
  }
};
static_assert(!fields::well_formed<SameName>());

std::vector<uint8_t> encode(const Sample& s) {
  Writer w;
  encode_fields(w, s);
  return w.take();
}

std::optional<Sample> decode(const std::vector<uint8_t>& bytes) {
  Reader r(bytes);
  Sample s = decode_fields<Sample>(r);
  if (!r.finish()) return std::nullopt;
  return s;
}

Sample full() {
  Sample s;
  s.name = "full";
  s.count = 1000;
  s.size = uint64_t{1} << 40;
  s.when = -1234567890123;
  s.small = 255;
  s.port = 65535;
  s.on = false;
  s.colour = Colour::blue;
  s.shade = Shade::light;
  s.tags = {"a", "bb", "cccc"};
  s.uids = {0, 65535};
  s.group = "wheel";
  s.users = std::vector<std::string>{"alice", "bob"};
  s.origin = Point{1, 2};
  s.points = {Point{3, 4}, Point{100, 0}};
  s.target = Point{5, 6};
  s.pair = Pair{1, 2};
  s.code = INT32_MIN;
  return s;
}

TEST(FieldCodec, DefaultsRoundTrip) {
  const Sample s;
  const auto bytes = encode(s);
  EXPECT_EQ(bytes.size(), min_encoded_size<Sample>() + std::string("default").size());
  auto back = decode(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, s);
}

TEST(FieldCodec, EveryTypeRoundTrips) {
  const Sample s = full();
  auto back = decode(encode(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, s);
  EXPECT_EQ(back->when, -1234567890123);
  EXPECT_EQ(back->colour, Colour::blue);
  EXPECT_EQ(back->code, INT32_MIN);
  ASSERT_TRUE(back->users);
  EXPECT_EQ(back->users->size(), 2U);
}

TEST(FieldCodec, EmptyOptionalsStayEmpty) {
  Sample s = full();
  s.group.reset();
  s.users.reset();
  s.target.reset();
  auto back = decode(encode(s));
  ASSERT_TRUE(back);
  EXPECT_FALSE(back->group);
  EXPECT_FALSE(back->users);
  EXPECT_FALSE(back->target);
  // An empty list is not an absent one.
  s.users = std::vector<std::string>{};
  back = decode(encode(s));
  ASSERT_TRUE(back);
  ASSERT_TRUE(back->users);
  EXPECT_TRUE(back->users->empty());
}

// Each case breaks one bound of the table; the encoder writes what it is given, and the
// decoder must refuse it.
TEST(FieldCodec, DecodingEnforcesTheTable) {
  const std::vector<std::pair<std::string, void (*)(Sample&)>> cases = {
      {"string longer than length", [](Sample& s) { s.name = "ninechars"; }},
      {"number below min", [](Sample& s) { s.count = 0; }},
      {"number above max", [](Sample& s) { s.count = 1001; }},
      {"u64 above max", [](Sample& s) { s.size = (uint64_t{1} << 40) + 1; }},
      {"u16 below min", [](Sample& s) { s.port = 0; }},
      {"named enum out of range", [](Sample& s) { s.colour = static_cast<Colour>(3); }},
      {"counted enum out of range", [](Sample& s) { s.shade = static_cast<Shade>(2); }},
      {"vector longer than count",
       [](Sample& s) {
         s.tags = {"a", "b", "c", "d"};
       }},
      {"vector item longer than length", [](Sample& s) { s.tags = {"toolong"}; }},
      {"vector item above max", [](Sample& s) { s.uids = {65536}; }},
      {"optional string too long", [](Sample& s) { s.group = std::string(17, 'g'); }},
      {"optional vector too long",
       [](Sample& s) {
         s.users = std::vector<std::string>{"a", "b", "c"};
       }},
      {"nested struct out of bounds", [](Sample& s) { s.origin.x = 101; }},
      {"struct in a vector out of bounds", [](Sample& s) { s.points[1].y = 101; }},
      {"vector of structs too long", [](Sample& s) { s.points.push_back(Point{}); }},
      {"optional struct out of bounds",
       [](Sample& s) {
         s.target = Point{0, 500};
       }},
      {"codec refuses",
       [](Sample& s) {
         s.pair = Pair{2, 1};
       }},
  };
  ASSERT_TRUE(decode(encode(full())));
  for (const auto& [what, breaks] : cases) {
    Sample s = full();
    breaks(s);
    EXPECT_FALSE(decode(encode(s))) << what;
  }
}

TEST(FieldCodec, BadFlagsAndTruncationFail) {
  const auto good = encode(full());
  // Every proper prefix fails, and so does a trailing byte.
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    EXPECT_FALSE(decode(cut)) << n;
  }
  auto longer = good;
  longer.push_back(0);
  EXPECT_FALSE(decode(longer));

  // The "on" flag sits after name (4+4), count (4), size (8), when (8), small (1), port (2).
  auto flag = good;
  const size_t on_at = 4 + 4 + 4 + 8 + 8 + 1 + 2;
  ASSERT_EQ(flag[on_at], 0);
  flag[on_at] = 2;
  EXPECT_FALSE(decode(flag));
}

// A forged count larger than the payload could hold is refused before anything is allocated.
TEST(FieldCodec, CountsAreCheckedAgainstTheElementSize) {
  struct Many {
    std::vector<Point> points;
    static constexpr auto fields() {
      return std::tuple{fields::field(&Many::points, "points", {.count = 1000000})};
    }
  };
  Writer w;
  w.count(1000);
  for (int i = 0; i < 999; ++i) {
    w.u32(1);
    w.u32(2);
  }
  w.u32(1);  // half of the last point
  Reader r(w.bytes());
  const Many m = decode_fields<Many>(r);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(m.points.empty());
}

TEST(FieldCodec, UnsetCountRefusesAnyElement) {
  struct Forgot {
    std::vector<uint32_t> items;
    static constexpr auto fields() { return std::tuple{fields::field(&Forgot::items, "items")}; }
  };
  Forgot f;
  f.items = {1};
  Writer w;
  encode_fields(w, f);
  Reader r(w.bytes());
  (void)decode_fields<Forgot>(r);
  EXPECT_FALSE(r.finish());
  // An empty list is fine.
  Writer empty;
  encode_fields(empty, Forgot{});
  Reader r2(empty.bytes());
  (void)decode_fields<Forgot>(r2);
  EXPECT_TRUE(r2.finish());
}

TEST(Fields, VisitsInTableOrder) {
  std::vector<std::string_view> names;
  fields::for_each_field<Sample>([&](const auto& field) { names.push_back(field.name); });
  ASSERT_EQ(names.size(), 18U);
  EXPECT_EQ(names.front(), "name");
  EXPECT_EQ(names[7], "colour");
  EXPECT_EQ(names.back(), "code");
  constexpr auto kTable = Sample::fields();
  static_assert(std::get<7>(kTable).bounds.enum_count() == 3);
  static_assert(std::get<8>(kTable).bounds.enum_count() == 2);
  static_assert(std::get<16>(kTable).bounds.origin == fields::Origin::parent);
}

}  // namespace
}  // namespace postern::wire
