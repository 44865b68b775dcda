// Field tables: a struct lists each of its members once, with the name it is known by, its
// bounds and its unit; generic code walks that list to encode and decode the struct on the
// wire (common/ipc/field_codec.hpp) and to read it from the configuration file
// (common/config). The default of a field is its member initializer, never written here.
//
//   struct Settings {
//     uint32_t expire = 4 * 86400;
//     std::vector<std::string> domains;
//     static constexpr auto fields() {
//       return std::tuple{
//           fields::field(&Settings::expire, "limits.expire",
//                         {.max = 365 * 86400, .unit = fields::kDays}),
//           fields::field(&Settings::domains, "domains", {.length = 253, .count = 1000}),
//       };
//     }
//     friend bool operator==(const Settings&, const Settings&) = default;
//   };
//
// Header only and free of any library: every process includes it.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace postern::fields {

// The suffixes the configuration file accepts after a number, each scaling it: s, m, h, d
// (seconds, minutes, hours, days) for durations stored in seconds; K, M, G (powers of 1024)
// for sizes stored in octets. Empty: a plain count.
using Unit = std::string_view;
constexpr Unit kCount{};
constexpr Unit kSeconds = "s";
constexpr Unit kHours = "smh";  // durations of at most a day or so
constexpr Unit kDays = "smhd";
constexpr Unit kOctets = "KMG";

// Where a field's value comes from, for the configuration walk (the wire carries every field).
enum class Origin : uint8_t {
  file,    // a key of the configuration file, at the field's name
  parent,  // filled in by the parent (derived from other keys, or from the host); not a key
};

// Everything generic code needs to check a field besides its type. Which bounds apply follows
// from the member's type: a std::string uses length; a number min and max; an enum names (or
// values); a std::vector count, and for its elements what applies to them (length for
// strings, min and max for numbers); std::optional what applies to its value. A nested struct
// brings its own table.
struct Bounds {
  size_t length = 0;  // strings: longest, in octets; 0: the wire's own limit (wire::kMaxString)
  size_t count = 0;   // vectors: most elements; a vector field must set it
  uint64_t min = 0;   // unsigned numbers: smallest and largest value (signed: unchecked)
  uint64_t max = std::numeric_limits<uint64_t>::max();
  std::span<const std::string_view> names = {};  // enums: the spelling of values 0..n-1
  uint32_t values = 0;                           // enums without names: values 0..values-1
  Unit unit = kCount;
  Origin origin = Origin::file;
  // A key whose syntax the generic walk does not know (a list or a keyword, an address): the
  // configuration reader calls the hook registered under this name instead. Empty: generic.
  std::string_view hook = {};
  // The configuration file must give this key whenever the mapping holding it is there.
  bool required = false;

  // How many values an enum field has.
  constexpr uint32_t enum_count() const {
    return names.empty() ? values : static_cast<uint32_t>(names.size());
  }
};

// One entry of a table: the member, its name (a configuration key, or a dotted path such as
// "limits.expire" relative to the struct's place in the file), its bounds.
template <typename Struct, typename Member>
struct Field {
  using StructType = Struct;
  using MemberType = Member;
  Member Struct::*member;
  std::string_view name;
  Bounds bounds;
};

template <typename Struct, typename Member>
constexpr Field<Struct, Member> field(Member Struct::*member, std::string_view name,
                                      Bounds bounds = {}) {
  return Field<Struct, Member>{member, name, bounds};
}

// A struct with a field table.
template <typename T>
concept Described = requires {
  {T::fields()};
};

template <typename T>
struct IsVector : std::false_type {};
template <typename T, typename A>
struct IsVector<std::vector<T, A>> : std::true_type {};
template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

// Calls visit(field) for each entry of T's table, in order.
template <Described T, typename Visit>
constexpr void for_each_field(Visit&& visit) {
  std::apply([&](const auto&... field) { (visit(field), ...); }, T::fields());
}

// How many entries T's table has.
template <Described T>
constexpr size_t field_count() {
  return std::tuple_size_v<decltype(T::fields())>;
}

// True when T's table names no member twice and no name twice: a cheap guard against a line
// copied and not edited. Use as static_assert(fields::well_formed<T>()).
template <Described T>
constexpr bool well_formed() {
  bool ok = true;
  size_t i = 0;
  for_each_field<T>([&](const auto& a) {
    size_t j = 0;
    for_each_field<T>([&](const auto& b) {
      if (j > i && a.name == b.name) ok = false;
      if constexpr (std::is_same_v<decltype(a), decltype(b)>) {
        if (j > i && a.member == b.member) ok = false;
      }
      ++j;
    });
    if (a.name.empty()) ok = false;
    ++i;
  });
  return ok;
}

}  // namespace postern::fields
